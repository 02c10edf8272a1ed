"""The nba stage: one decision per customer of the latest scoring run, into ``ml.next_best_action``.

For every scored customer the candidates are the active briefs whose audience holds them, on each
of their channels; eligibility (clarion.nba.eligibility) removes pairs, the value (models.nba, with
the inputs of clarion.nba.value) prices the rest, and models.nba.arbitrate picks at most one per
customer within each campaign's budget. Every customer gets a row, "no action" included, with the
figures that decided it; models.nba.explain turns a row into words (`clarion explain ID`).

A high-risk campaign's decisions are recorded with status "needs approval" until a person approves
the campaign's audience (`clarion nba approve NAME --by WHO`, bound to the brief's sha256).
A rerun of the stage within the same run replaces that run's rows.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from clarion import runs
from clarion.config import Settings
from clarion.nba import value as values
from clarion.nba.eligibility import Facts, NbaError, read_facts, reasons
from clarion.warehouse import Warehouse, relation_exists
from models.content.brief import Brief, load_briefs
from models.nba import (
    BUDGET_REACHED,
    NO_AUDIENCE,
    NOT_POSITIVE,
    REASONS,
    arbitrate,
    incremental_value,
)

log = logging.getLogger(__name__)

DDL = (
    """
    create table if not exists ml.next_best_action (
        run_id varchar, nba_run_id varchar, contact_id bigint, as_of date, segment varchar,
        action varchar, channel varchar, status varchar, reason varchar, value_eur double,
        runner_up varchar, runner_up_channel varchar, runner_up_value_eur double,
        uplift double, uplift_source varchar, uplift_scope varchar, purchase_probability double,
        expected_order_value_eur double, order_value_source varchar, offer_discount varchar,
        offer_cost_eur double, contact_cost_eur double, ineligible json, sends_in_window integer,
        last_sent_at timestamptz, decided_at timestamptz
    )
    """,
    """
    create table if not exists ml.nba_approvals (
        campaign varchar, brief_sha256 varchar, approved_by varchar, os_user varchar,
        approved_at timestamptz
    )
    """,
)
SCOPES = ("prior", "campaign", "segment", "customer")
SOURCES = ("prior", "measured", "model")
SOURCE_OF_SCOPE = np.array([0, 1, 1, 2])  # prior; campaign or segment: measured; customer: model


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    for ddl in DDL:
        con.execute(ddl)


def latest_scoring_run(con: duckdb.DuckDBPyConnection) -> tuple[str, date]:
    rows = (
        con.execute(
            "select run_id, any_value(as_of) from ml.customer_scores "
            f"where run_id not in ({runs.NOT_SETTLED}) group by run_id order by max(scored_at) desc limit 1"
        ).fetchall()  # fetchall: a half-read result would keep the connection from registering tables
        if relation_exists(con, "ml", "customer_scores")
        else []
    )
    if not rows:
        raise NbaError("no customer has been scored yet: run `clarion segment` (or `clarion run`) first")
    return rows[0][0], rows[0][1]


def approved(con: duckdb.DuckDBPyConnection, brief: Brief) -> bool:
    """Whether a person approved this campaign's audience as the brief now defines it."""
    [(count,)] = con.execute(
        "select count(*) from ml.nba_approvals where campaign = ? and brief_sha256 = ?",
        [brief.name, brief.sha256()],
    ).fetchall()
    return count > 0


@dataclass
class Pairs:
    """Every candidate (customer, action) pair, actions numbered by campaign name then channel."""

    customer: np.ndarray
    action: np.ndarray
    campaign: np.ndarray
    code: np.ndarray
    uplift: np.ndarray
    scope: np.ndarray
    offer_cost: np.ndarray
    value: np.ndarray


def decide(settings: Settings, nba_run_id: str) -> dict[str, Any]:
    """Decide for every customer of the latest scoring run; write ``ml.next_best_action``."""
    started = time.perf_counter()
    briefs = sorted((b for b in load_briefs(settings.content.briefs) if b.active), key=lambda b: b.name)
    if not briefs:
        note = f"no active campaign briefs in {settings.content.briefs}: nothing to decide"
        log.info(note)
        return {"customers": 0, "campaigns": [], "note": note}
    discounts = [values.discount(settings, b) for b in briefs]  # a discount that cannot be costed stops here
    actions = [(k, ch) for k, b in enumerate(briefs) for ch in sorted(b.channels)]
    with Warehouse.from_settings(settings).connect("nba decide") as con:
        ensure_tables(con)
        run_id, as_of = latest_scoring_run(con)
        f = read_facts(con, settings, run_id, as_of, briefs)
        measured = values.measured_uplift(con, settings, [b.name for b in briefs])
        model = values.model_uplift(con, f)
        ok = [b.risk_tier != "high" or approved(con, b) for b in briefs]
        order_value, own, shop = values.order_values(f)
        pairs = _pairs(f, settings, briefs, actions, discounts, measured, order_value, model)
        result = arbitrate(
            pairs.customer,
            pairs.action,
            pairs.campaign,
            pairs.value,
            pairs.code == 0,
            len(f),
            [b.budget for b in briefs],
        )
        table = _rows(f, settings, briefs, actions, discounts, pairs, result, order_value, own)
        table = table.append_column("run_id", pa.repeat(pa.scalar(run_id), len(f)))
        approved_action = np.array([ok[k] for k, _ in actions] + [True])
        _write(con, nba_run_id, table, approved_action)
        summary = _summary(con, nba_run_id, f, briefs, pairs, result, measured)
    summary.update(
        {
            "scoring_run_id": run_id,
            "nba_run_id": nba_run_id,
            "as_of": str(as_of),
            "shop_average_order_eur": round(shop, 2),
            "seconds": round(time.perf_counter() - started, 2),
        }
    )
    return summary


def _pairs(
    f: Facts,
    settings: Settings,
    briefs: list[Brief],
    actions: list[tuple[int, str]],
    discounts: list[Any],
    measured: dict[str, values.Measured],
    order_value: np.ndarray,
    model: np.ndarray | None = None,
) -> Pairs:
    parts: dict[str, list[np.ndarray]] = {k: [] for k in Pairs.__dataclass_fields__}
    per_campaign = {}
    for k, b in enumerate(briefs):
        rows = np.flatnonzero(f.member[k])
        uplift, scope = values.uplift_for(
            f, rows, measured.get(b.name), settings.nba.prior_relative_uplift, model
        )
        v = incremental_value(
            f.purchase_probability[rows],
            uplift,
            order_value[rows],
            discounts[k].per_buyer(order_value[rows]),
            settings.nba.contact_cost,
        )
        per_campaign[k] = (rows, v, scope)
    for a, (k, channel) in enumerate(actions):
        rows, v, scope = per_campaign[k]
        parts["customer"].append(rows)
        parts["action"].append(np.full(rows.size, a, dtype=np.int32))
        parts["campaign"].append(np.full(rows.size, k, dtype=np.int32))
        parts["code"].append(reasons(f, rows, k, channel, settings.nba.frequency_cap))
        parts["uplift"].append(v.uplift)
        parts["scope"].append(scope)
        parts["offer_cost"].append(v.offer_cost)
        parts["value"].append(v.value)
    return Pairs(**{k: np.concatenate(v) for k, v in parts.items()})


def _rows(
    f: Facts,
    settings: Settings,
    briefs: list[Brief],
    actions: list[tuple[int, str]],
    discounts: list[Any],
    pairs: Pairs,
    result: Any,
    order_value: np.ndarray,
    own: np.ndarray,
) -> pa.Table:
    """The decision rows, without run_id."""
    n = len(f)
    chosen, runner = result.chosen, result.runner_up
    has = chosen >= 0
    c = np.maximum(chosen, 0)
    r = np.maximum(runner, 0)

    def pick(values: np.ndarray, at: np.ndarray, where: np.ndarray) -> pa.Array:
        return pa.array(values[at], mask=~where)

    def label(index: np.ndarray, names: list[str], where: np.ndarray) -> pa.Array:
        return pa.DictionaryArray.from_arrays(pa.array(index.astype(np.int32), mask=~where), names)

    campaign_names = [b.name for b in briefs]
    action_campaign = np.array([k for k, _ in actions])
    action_channel = [ch for _, ch in actions]
    channels = sorted(set(action_channel))
    channel_index = np.array([channels.index(ch) for ch in action_channel])
    # why no action: a full budget, else nothing worth it, else the rule that stopped the pair that
    # came closest (rules are checked in order: the highest code passed the most of them)
    in_any = np.bincount(pairs.customer, minlength=n) > 0
    any_eligible = np.bincount(pairs.customer, weights=pairs.code == 0, minlength=n) > 0
    any_refused = np.bincount(pairs.customer, weights=result.refused, minlength=n) > 0
    closest = np.zeros(n, dtype=np.int16)
    np.maximum.at(closest, pairs.customer, pairs.code.astype(np.int16))
    why = [NO_AUDIENCE, BUDGET_REACHED, NOT_POSITIVE, *REASONS[1:]]
    reason = np.where(~in_any, 0, np.where(any_refused, 1, np.where(any_eligible, 2, 2 + closest)))
    action_of = np.where(has, pairs.action[c], len(actions))
    return pa.table(
        {
            "contact_id": pa.array(f.contact_id),
            "as_of": pa.repeat(pa.scalar(f.as_of, pa.date32()), n),
            "segment": pa.DictionaryArray.from_arrays(pa.array(f.segment_codes), f.segment_names),
            "action_index": pa.array(action_of.astype(np.int32)),
            "action": label(
                np.where(has, pairs.campaign[c], len(briefs)), [*campaign_names, "none"], np.ones(n, bool)
            ),
            "channel": label(channel_index[pairs.action[c]], channels, has),
            "reason": label(reason, why, ~has),
            "value_eur": pa.array(np.where(has, pairs.value[c], 0.0)),
            "runner_up": label(action_campaign[pairs.action[r]], campaign_names, runner >= 0),
            "runner_up_channel": label(channel_index[pairs.action[r]], channels, runner >= 0),
            "runner_up_value_eur": pick(pairs.value, r, runner >= 0),
            "uplift": pick(pairs.uplift, c, has),
            "uplift_source": label(SOURCE_OF_SCOPE[pairs.scope[c]], list(SOURCES), has),
            "uplift_scope": label(pairs.scope[c].astype(np.int32), list(SCOPES), has),
            "purchase_probability": pa.array(f.purchase_probability),
            "expected_order_value_eur": pa.array(order_value),
            "order_value_source": label(np.where(own, 0, 1), ["own", "shop average"], np.ones(n, bool)),
            "offer_discount": label(pairs.campaign[c], [d.text for d in discounts], has),
            "offer_cost_eur": pick(pairs.offer_cost, c, has),
            "contact_cost_eur": pa.array(np.where(has, settings.nba.contact_cost, np.nan), mask=~has),
            "sends_in_window": pa.array(f.sends_in_window.astype(np.int32)),
            "last_sent_at": pa.array(f.last_sent_at, pa.timestamp("us")),
            "ineligible": _why_not(f, briefs, actions, pairs, result),
        }
    )


def _why_not(
    f: Facts, briefs: list[Brief], actions: list[tuple[int, str]], pairs: Pairs, result: Any
) -> pa.Array:
    """Per customer, as JSON: each campaign of their audience that no channel was open for, and why
    (the reasons of its channels in channel order, or the budget). Built per distinct combination:
    a run has thousands of them, not a million."""
    n = len(f)
    key = np.zeros(n, dtype=np.int64)
    radix, words = 1, []
    for k in range(len(briefs)):
        mine = [a for a, (kk, _) in enumerate(actions) if kk == k]
        blocks = [np.flatnonzero(pairs.action == a) for a in mine]  # same customers, same order
        codes = np.stack([pairs.code[i] for i in blocks])
        refused = np.stack([result.refused[i] for i in blocks]).any(axis=0)
        listed = refused | (codes > 0).all(axis=0)
        combo = np.zeros(codes.shape[1], dtype=np.int64)
        for row in codes:
            combo = combo * 16 + row
        combo = np.where(refused, -1, combo)[listed]
        kinds, inverse = np.unique(combo, return_inverse=True)
        texts = [None]
        for kind in kinds.tolist():
            parts = []
            for _ in range(codes.shape[0] if kind >= 0 else 0):
                parts.append(REASONS[kind % 16])
                kind //= 16
            texts.append("; ".join(dict.fromkeys(reversed(parts))) if parts else BUDGET_REACHED)
        column = np.zeros(n, dtype=np.int64)
        column[pairs.customer[blocks[0]][listed]] = inverse + 1
        if radix * len(texts) >= 2**62:
            raise NbaError("too many campaigns to record why each was not chosen: split the briefs' folder")
        key += column * radix
        radix *= len(texts)
        words.append(texts)
    combos, inverse = np.unique(key, return_inverse=True)
    names = [b.name for b in briefs]
    documents = []
    for combo in combos.tolist():
        why = {}
        for k, texts in enumerate(words):
            combo, at = divmod(combo, len(texts))
            if at:
                why[names[k]] = texts[at]
        documents.append(json.dumps(why))
    return pa.DictionaryArray.from_arrays(pa.array(inverse.astype(np.int32)), documents)


def _write(
    con: duckdb.DuckDBPyConnection, nba_run_id: str, table: pa.Table, approved_action: np.ndarray
) -> None:
    now = datetime.now(UTC)
    con = con.cursor()  # its own connection to the same database: nothing half-read blocks registering
    con.register("nba_rows", table)
    index = np.arange(len(approved_action), dtype=np.int32)
    con.register("nba_approved", pa.table({"action_index": index, "ok": approved_action}))
    try:
        con.execute("begin transaction")
        con.execute("delete from ml.next_best_action where nba_run_id = ?", [nba_run_id])
        con.execute(
            """
            insert into ml.next_best_action by name
            select r.run_id, ? as nba_run_id, r.contact_id, r.as_of, r.segment::varchar as segment,
                   r.action::varchar as action,
                   r.channel::varchar as channel,
                   case when r.action::varchar = 'none' then 'no action'
                        when ok.ok then 'ready' else 'needs approval' end as status,
                   r.reason::varchar as reason, r.value_eur, r.runner_up::varchar as runner_up,
                   r.runner_up_channel::varchar as runner_up_channel, r.runner_up_value_eur,
                   r.uplift, r.uplift_source::varchar as uplift_source,
                   r.uplift_scope::varchar as uplift_scope, r.purchase_probability,
                   r.expected_order_value_eur, r.order_value_source::varchar as order_value_source,
                   r.offer_discount::varchar as offer_discount, r.offer_cost_eur, r.contact_cost_eur,
                   r.ineligible::varchar::json as ineligible, r.sends_in_window,
                   timezone('UTC', r.last_sent_at) as last_sent_at, ? as decided_at
            from nba_rows r
            join nba_approved ok using (action_index)
            """,
            [nba_run_id, now],
        )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    finally:
        con.close()


def _summary(
    con: duckdb.DuckDBPyConnection,
    nba_run_id: str,
    f: Facts,
    briefs: list[Brief],
    pairs: Pairs,
    result: Any,
    measured: dict[str, values.Measured],
) -> dict[str, Any]:
    """Counts from the rows as written: actions by campaign and channel, why not, per campaign."""
    actions = [
        dict(zip(("campaign", "channel", "status", "customers", "value_eur"), row, strict=True))
        for row in con.execute(
            "select action, channel, status, count(*), round(sum(value_eur), 2) from ml.next_best_action "
            "where nba_run_id = ? and action <> 'none' group by all order by 1, 2, 3",
            [nba_run_id],
        ).fetchall()
    ]
    no_action = dict(
        con.execute(
            "select reason, count(*) from ml.next_best_action where nba_run_id = ? and action = 'none' "
            "group by reason order by 2 desc, 1",
            [nba_run_id],
        ).fetchall()
    )
    campaigns = []
    for k, b in enumerate(briefs):
        m = measured.get(b.name)
        campaigns.append(
            {
                "campaign": b.name,
                "channels": sorted(b.channels),
                "audience": int(f.member[k].sum()),
                "holdout": int(f.holdout[k].sum()),
                "global_control": int((f.member[k] & f.global_control).sum()),
                "budget": b.budget,
                "refused_by_budget": int(
                    np.unique(pairs.customer[result.refused & (pairs.campaign == k)]).size
                ),
                "risk_tier": b.risk_tier,
                "uplift": "prior"
                if m is None
                else ("measured" + (f" ({len(m.segments)} segments)" if m.segments else "")),
            }
        )
    return {
        "customers": len(f),
        "decided": int((result.chosen >= 0).sum()),
        "campaigns": campaigns,
        "actions": actions,
        "no_action": no_action,
    }


def as_json(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row with its JSON column parsed (for explain and the API)."""
    out = dict(row)
    if isinstance(out.get("ineligible"), str):
        out["ineligible"] = json.loads(out["ineligible"])
    return out
