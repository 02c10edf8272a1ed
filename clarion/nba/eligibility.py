"""Who may be sent what: the facts about each scored customer, read in one pass, and the rules.

A (customer, campaign, channel) pair is eligible when the customer is in the campaign's audience
(the brief's rule, else its segments, as the content stage reads them) and none of these holds,
checked in this order (the first that holds is the pair's reason, in models.nba.REASONS):

1. erased (the suppression list, ``privacy.suppressions``); 2. marketing objection (``marts.dim_customers``);
3. no consent for the channel (``email_consent`` / ``sms_consent``; push has no permission in the
   CRM, as at export); 4. no address for it on record (``raw.contacts``: read as present or not);
5. in the global control group; 6. in the campaign's holdout (both from clarion.experiments);
7. frequency cap: ``nba.frequency_cap`` or more ``sent`` e-mails in the ``nba.cap_days`` days
   before the reference time; 8. cool-down: an e-mail sent in the ``nba.cooldown_days`` days
   before it.

The reference time is the scoring run's ``as_of`` (00:00 UTC), the data's "now": every other
figure of a decision (scores, order values) describes the customer as of that moment, and sends
recorded after it are not yet known to those figures. The cap and cool-down count the CRM's
e-mail events: the only contact history it exports, so one e-mail counts against every channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import duckdb
import numpy as np

from clarion.config import Settings
from clarion.errors import ClarionError
from clarion.experiments import GLOBAL, held_out_sql
from clarion.privacy.suppression import erased_sql
from clarion.warehouse import relation_exists
from models.content.brief import Brief
from models.nba import REASON_CODE


def audience_sql(brief: Brief) -> str:
    """The brief's audience as a condition on ml.customer_scores' columns: its rule if it has one
    (as the content stage drafts for it), else its segments."""
    if brief.audience.rule:
        return f"coalesce(({brief.audience.rule}), false)"  # validated: score columns, comparisons only
    names = ", ".join("'" + s.replace("'", "''") + "'" for s in brief.audience.segments)
    return f"coalesce(segment in ({names}), false)"


class NbaError(ClarionError):
    pass


@dataclass
class Facts:
    """One entry per scored customer, in contact_id order; `member` / `holdout` per brief."""

    as_of: date
    contact_id: np.ndarray
    segment_codes: np.ndarray  # index into segment_names
    segment_names: list[str]
    purchase_probability: np.ndarray
    order_value: np.ndarray  # their own mean order value, NaN without orders
    email_consent: np.ndarray
    sms_consent: np.ndarray
    objection: np.ndarray
    erased: np.ndarray
    has_email: np.ndarray
    has_phone: np.ndarray
    sends_in_window: np.ndarray  # `sent` e-mails in the cap window before the reference time
    last_sent_at: np.ndarray  # datetime64[us] (UTC), NaT when never sent before the reference time
    cooling: np.ndarray  # an e-mail sent within the cool-down before the reference time
    global_control: np.ndarray
    member: list[np.ndarray]
    holdout: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.contact_id)


def reference_time(as_of: date) -> datetime:
    """The moment caps and cool-downs count back from: the scoring day, 00:00 UTC."""
    return datetime.combine(as_of, time(0), tzinfo=UTC)


NEEDED = (("marts", "dim_customers"), ("marts", "customer_features"), ("marts", "fct_email_events"))


def read_facts(
    con: duckdb.DuckDBPyConnection, settings: Settings, run_id: str, as_of: date, briefs: list[Brief]
) -> Facts:
    """Everything the rules and the value need, in one query over the run's scores."""
    missing = [f"{s}.{t}" for s, t in NEEDED if not relation_exists(con, s, t)]
    if missing:
        raise NbaError(f"{', '.join(missing)} not published yet: run `clarion transform` (or `clarion run`)")
    x, n = settings.experiments, settings.nba
    now = reference_time(as_of)
    members = "".join(f", {audience_sql(b)} as m{i}" for i, b in enumerate(briefs))
    # the hash only for the campaign's audience (CASE evaluates lazily; AND would not)
    holdouts = "".join(
        f", case when s.m{i} then {held_out_sql('s.contact_id', b.name, x.holdout_share, x.seed)} "
        "else false end"
        for i, b in enumerate(briefs)
    )
    anyone = " or ".join(f"s.m{i}" for i in range(len(briefs))) or "false"
    erased = erased_sql(con, "s.contact_id")  # the suppression list (salted hashes), see clarion.privacy
    cur = con.cursor()  # its own connection: a half-read result on `con` would block this one
    rel = cur.sql(
        f"""
        with scores as (
            select contact_id, segment, purchase_probability{members}
            from ml.customer_scores where run_id = ?
        ),
        sends as (
            select contact_id, count(*) filter (where occurred_at >= ?) as sends,
                   max(occurred_at) as last_sent
            from marts.fct_email_events where event_type = 'sent' and occurred_at < ?
            group by contact_id
        ),
        addresses as (
            select contact_id,
                   bool_or(coalesce(trim(email), '') <> '') as has_email,
                   bool_or(coalesce(trim(phone), '') <> '') as has_phone
            from raw.contacts group by contact_id
        )
        select s.contact_id, s.segment, s.purchase_probability, f.avg_order_value_eur,
               coalesce(d.email_consent, false), coalesce(d.sms_consent, false),
               coalesce(d.marketing_objection, false), {erased},
               coalesce(a.has_email, false), coalesce(a.has_phone, false),
               coalesce(t.sends, 0), timezone('UTC', t.last_sent), coalesce(t.last_sent >= ?, false),
               case when {anyone} then {held_out_sql("s.contact_id", GLOBAL, x.global_control_share, x.seed)}
                    else false end
               {"".join(f", s.m{i}" for i in range(len(briefs)))}
               {holdouts}
        from scores s
        left join marts.customer_features f on f.contact_id = s.contact_id and f.as_of = ?
        left join marts.dim_customers d on d.contact_id = s.contact_id
        left join addresses a on a.contact_id = s.contact_id
        left join sends t on t.contact_id = s.contact_id
        order by s.contact_id
        """,
        params=[
            run_id,
            now - timedelta(days=n.cap_days),
            now,
            # no cool-down: nothing is "within 0 days" (a timestamp after any send)
            now - timedelta(days=n.cooldown_days) if n.cooldown_days else now + timedelta(days=1),
            as_of,
        ],
    )
    try:
        table = rel.to_arrow_table()  # Arrow, not fetchnumpy: strings and nulls cost far less
    finally:
        cur.close()
    cols = [c.combine_chunks() for c in table.columns]
    k = len(briefs)
    segment = cols[1].dictionary_encode()

    def num(i: int, kind: type = float) -> np.ndarray:
        return np.asarray(cols[i].to_numpy(zero_copy_only=False), dtype=kind)

    def flag(i: int) -> np.ndarray:
        return np.asarray(cols[i].fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)

    return Facts(
        as_of=as_of,
        contact_id=num(0, np.int64),
        segment_codes=np.asarray(
            segment.indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int32
        ),
        segment_names=[str(x) for x in segment.dictionary.to_pylist()],
        purchase_probability=num(2),
        order_value=num(3),  # null -> NaN
        email_consent=flag(4),
        sms_consent=flag(5),
        objection=flag(6),
        erased=flag(7),
        has_email=flag(8),
        has_phone=flag(9),
        sends_in_window=num(10, np.int64),
        last_sent_at=cols[11].to_numpy(zero_copy_only=False).astype("datetime64[us]"),  # null -> NaT
        cooling=flag(12),
        global_control=flag(13),
        member=[flag(14 + i) for i in range(k)],
        holdout=[flag(14 + k + i) for i in range(k)],
    )


CONSENT = {"email": "email_consent", "sms": "sms_consent"}
ADDRESS = {"email": ("has_email", "no email on record"), "sms": ("has_phone", "no phone on record")}


def reasons(f: Facts, rows: np.ndarray, brief_index: int, channel: str, frequency_cap: int) -> np.ndarray:
    """The reason code (models.nba.REASONS; 0: eligible) of each of `rows` (indices into `f`) for
    the brief's campaign on `channel`: the first rule that holds, in the module's order."""
    checks: list[tuple[np.ndarray, str]] = [
        (f.erased[rows], "erased"),
        (f.objection[rows], "marketing objection"),
    ]
    if channel == "push":
        checks.append((np.ones(rows.size, dtype=bool), "no push permission recorded in the CRM"))
    else:
        checks.append((~getattr(f, CONSENT[channel])[rows], f"no {channel} consent"))
        has, why = ADDRESS[channel]
        checks.append((~getattr(f, has)[rows], why))
    checks += [
        (f.global_control[rows], "global control"),
        (f.holdout[brief_index][rows], "holdout"),
        (f.sends_in_window[rows] >= frequency_cap, "frequency cap"),
        (f.cooling[rows], "cool-down"),
    ]
    code = np.zeros(rows.size, dtype=np.int8)
    for applies, why in reversed(checks):  # the first rule that holds wins: written last
        code[applies] = REASON_CODE[why]
    return code
