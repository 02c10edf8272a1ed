"""Campaign triggers: customers who just crossed a brief's line start that campaign on their own.

After the segment stage scores a run, `detect` compares every customer's scores in it with the
previous settled scoring run and, for each brief with a ``trigger:`` (models.content.brief.Trigger),
stores who fired it in ``ml.trigger_hits`` (one row per customer, the rule they met, their scores
before and after) and returns one `Fired` per campaign with customers. The segment flow emits one
Prefect event per `Fired` (``clarion.trigger.fired``); the deployment trigger of prefect.yaml answers
with a run of ``triggered-campaign``, which calls `run` here: the campaign's approved copy exported
to those customers only, or a clear "waiting for approval".

Only counts, the rule and run ids leave the warehouse in an event; the customers stay in
``ml.trigger_hits``, which the triggered run reads. Detection is idempotent per (scoring run,
campaign): its trigger id is derived from both, a re-run replaces the same rows, and the event's id
is derived from the trigger id, so Prefect (which skips events it has seen) starts the campaign once.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb

from clarion import audit, runs
from clarion.config import Settings
from clarion.content.export import Subset, export
from clarion.content.store import ensure_tables as ensure_content_tables
from clarion.content.store import utc_now
from clarion.errors import ClarionError
from clarion.warehouse import Warehouse, relation_exists
from models.content.brief import Brief, load_briefs

log = logging.getLogger(__name__)

EVENT = "clarion.trigger.fired"
RESOURCE_PREFIX = "clarion.campaign."  # + the campaign's name: the event's resource id
# a rise of exactly churn_jump counts even when the two doubles' difference rounds just below it
JUMP_TOLERANCE = 1e-9
_EVENT_IDS = uuid.UUID("5d0c3c55-7f4e-4d0b-9a57-3f0e1c2a7b11")  # namespace of the events' ids

TRIGGER_DDL = """
    create table if not exists ml.trigger_hits (
        trigger_id varchar, campaign varchar, contact_id bigint, rule varchar,
        churn_before double, churn_after double, segment_before varchar, segment_after varchar,
        scoring_run_id varchar, previous_run_id varchar, detected_at timestamptz
    )
"""
WAITING = "waiting for approval"
EXPORTED = "exported"


class TriggerError(ClarionError):
    """A triggered campaign cannot run as asked."""


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists ml")
    con.execute(TRIGGER_DDL)


def trigger_id(scoring_run: str, campaign: str) -> str:
    """One trigger per campaign and scoring run: readable, and the same when detection runs again."""
    return f"{scoring_run}-{campaign}"


@dataclass(frozen=True)
class Fired:
    """A campaign's trigger that found customers in one scoring run (counts only)."""

    trigger_id: str
    campaign: str
    customers: int
    by_rule: dict[str, int]
    rule: dict[str, Any]
    scoring_run_id: str
    previous_run_id: str

    @property
    def event_id(self) -> uuid.UUID:
        return uuid.uuid5(_EVENT_IDS, self.trigger_id)

    def event(self) -> dict[str, Any]:
        """The keyword arguments of prefect.events.emit_event for this trigger: no customer in it."""
        return {
            "event": EVENT,
            "resource": {
                "prefect.resource.id": RESOURCE_PREFIX + self.campaign,
                "prefect.resource.name": self.campaign,
            },
            "payload": {
                "trigger_id": self.trigger_id,
                "campaign": self.campaign,
                "customers": self.customers,
                "by_rule": self.by_rule,
                "rule": self.rule,
                "scoring_run_id": self.scoring_run_id,
                "previous_run_id": self.previous_run_id,
            },
            "id": self.event_id,
        }


@dataclass
class Detection:
    """What one detection compared and which campaigns fired."""

    scoring_run_id: str | None
    previous_run_id: str | None = None
    checked: list[str] = field(default_factory=list)
    fired: list[Fired] = field(default_factory=list)
    note: str | None = None

    def summary(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "fired"}
        out["fired"] = [{**asdict(f), "event_id": str(f.event_id)} for f in self.fired]
        return out


def triggered_briefs(settings: Settings) -> list[Brief]:
    folder = settings.content.briefs
    return [b for b in load_briefs(folder) if b.trigger] if folder.is_dir() else []


def latest_settled_run(con: duckdb.DuckDBPyConnection) -> str | None:
    """The newest scoring run whose outputs count (as content drafting picks it)."""
    if not relation_exists(con, "ml", "segments"):
        return None
    row = con.execute(
        f"select run_id from ml.segments where run_id not in ({runs.NOT_SETTLED}) "
        "group by run_id order by max(scored_at) desc limit 1"
    ).fetchone()
    return row[0] if row else None


def previous_settled_run(con: duckdb.DuckDBPyConnection, scoring_run: str) -> str | None:
    """The newest settled scoring run scored before ``scoring_run``: what its customers are compared with.
    Runs that failed or were interrupted never count (runs.NOT_SETTLED)."""
    if not relation_exists(con, "ml", "segments"):
        return None
    row = con.execute(
        f"""
        select run_id from ml.segments
        where run_id <> $run and run_id not in ({runs.NOT_SETTLED})
        group by run_id
        having max(scored_at) < (select max(scored_at) from ml.segments where run_id = $run)
        order by max(scored_at) desc limit 1
        """,
        {"run": scoring_run},
    ).fetchone()
    return row[0] if row else None


def hits_sql(brief: Brief) -> str:
    """The customers who fire a brief's trigger, with $current and $previous scoring runs: in the
    campaign's audience now, and their churn risk rose by the jump (scored in both runs) or they are
    in the segment now and were not before (a customer scored for the first time has entered it)."""
    t = brief.trigger
    if t is None:
        raise ValueError(f"brief {brief.name} has no trigger")
    jumped = (
        f"coalesce(n.churn_risk - b.churn_risk >= {t.churn_jump!r} - {JUMP_TOLERANCE!r}, false)"
        if t.churn_jump is not None
        else "false"
    )
    entered = (
        f"(n.segment = '{t.enters_segment}' and b.segment is distinct from '{t.enters_segment}')"
        if t.enters_segment is not None  # a known segment name (validated), safe to quote
        else "false"
    )
    return f"""
        with now as (
            select contact_id, churn_risk, segment from ml.customer_scores
            where run_id = $current and {brief.audience.where()}
        ),
        compared as (
            select n.contact_id, b.churn_risk as churn_before, n.churn_risk as churn_after,
                   b.segment as segment_before, n.segment as segment_after,
                   {jumped} as jumped, {entered} as entered
            from now n
            left join (
                select contact_id, churn_risk, segment from ml.customer_scores where run_id = $previous
            ) b using (contact_id)
        )
        select contact_id,
               concat_ws(',', case when jumped then 'churn_jump' end,
                              case when entered then 'enters_segment' end) as rule,
               churn_before, churn_after, segment_before, segment_after
        from compared
        where jumped or entered
    """


def detect(settings: Settings, scoring_run: str | None = None) -> Detection:
    """Store who fires each triggered brief in ``scoring_run`` (default: the latest settled one)
    against the settled run before it, and record each campaign that fired in the audit log."""
    briefs = triggered_briefs(settings)
    if not briefs:
        return Detection(scoring_run, note=f"no brief in {settings.content.briefs} has a trigger")
    found = Detection(scoring_run, checked=[b.name for b in briefs])
    events = audit.AuditLog.for_settings(settings)
    with Warehouse.from_settings(settings).connect("trigger detection") as con:
        ensure_tables(con)
        current = scoring_run or latest_settled_run(con)
        previous = previous_settled_run(con, current) if current else None
        found.scoring_run_id, found.previous_run_id = current, previous
        if current is None or previous is None:
            found.note = "no earlier settled scoring run to compare with: triggers wait for the next run"
            return found
        for brief in briefs:
            fired = _store(con, brief, current, previous)
            if fired.customers:
                found.fired.append(fired)
                events.record(
                    con,
                    audit.TRIGGER_FIRED,
                    fired.trigger_id,
                    run_id=current,
                    details={k: v for k, v in asdict(fired).items() if k != "trigger_id"}
                    | {"event_id": str(fired.event_id)},
                )
            log.info("trigger of %s: %d customers", brief.name, fired.customers)
    return found


def _store(con: duckdb.DuckDBPyConnection, brief: Brief, current: str, previous: str) -> Fired:
    tid = trigger_id(current, brief.name)
    con.execute("begin transaction")
    try:
        con.execute("delete from ml.trigger_hits where trigger_id = ?", [tid])
        con.execute(
            f"""
            insert into ml.trigger_hits
            select $trigger_id, $campaign, contact_id, rule, churn_before, churn_after, segment_before,
                   segment_after, $current, $previous, $detected_at
            from ({hits_sql(brief)})
            """,
            {
                "trigger_id": tid,
                "campaign": brief.name,
                "current": current,
                "previous": previous,
                "detected_at": utc_now(),
            },
        )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    counts = con.execute(
        "select count(*), count(*) filter (where rule like '%churn_jump%'), "
        "count(*) filter (where rule like '%enters_segment%') from ml.trigger_hits where trigger_id = ?",
        [tid],
    ).fetchone()
    assert brief.trigger is not None
    rule = brief.trigger.rule()
    by_rule = {"churn_jump": counts[1], "enters_segment": counts[2]}
    return Fired(
        trigger_id=tid,
        campaign=brief.name,
        customers=int(counts[0]),
        by_rule={k: int(v) for k, v in by_rule.items() if k in rule},
        rule=rule,
        scoring_run_id=current,
        previous_run_id=previous,
    )


# -- the triggered campaign -----------------------------------------------------------------------
def run(settings: Settings, trigger: str, wait_seconds: float | None = None) -> dict[str, Any]:
    """The campaign's work for the customers of one trigger only: its newest approved copy exported to
    them (consent and the other exclusions apply as in any export), or, with nothing approved, the
    status "waiting for approval". Waits up to ``wait_seconds`` for a pipeline run that holds the
    warehouse (the event is emitted during the run's segment stage)."""
    wh = Warehouse.from_settings(settings)
    events = audit.AuditLog.for_settings(settings)
    with wh.writing(f"triggered campaign {trigger}", wait_seconds):
        with wh.connect(f"triggered campaign {trigger}") as con:
            ensure_tables(con)
            ensure_content_tables(con)
            rows = con.execute(
                "select contact_id, campaign, scoring_run_id from ml.trigger_hits where trigger_id = ? "
                "order by contact_id",
                [trigger],
            ).fetchall()
            if not rows:
                raise TriggerError(
                    f"no customers are stored for trigger {trigger!r} in ml.trigger_hits: it never fired, or "
                    "its id is mistyped (the event's payload.trigger_id names it; "
                    "`select distinct trigger_id from ml.trigger_hits` lists them)"
                )
            campaign, scoring_run = rows[0][1], rows[0][2]
            (approved,) = con.execute(
                "select count(*) from content.drafts where campaign = ? and status = 'approved'", [campaign]
            ).fetchone()
        contacts = frozenset(int(r[0]) for r in rows)
        summary: dict[str, Any] = {
            "trigger_id": trigger,
            "campaign": campaign,
            "scoring_run_id": scoring_run,
            "customers": len(contacts),
            "exports": [],
        }
        if approved:
            label = f"trigger-{scoring_run}"
            exports = export(settings, campaign, Subset(contacts, scoring_run, label))["exports"]
            summary["exports"] = [
                {
                    **{k: e[k] for k in ("channel", "recipients", "excluded", "path", "drafts_exported")},
                    # members of segments without approved copy (or no longer in the audience)
                    "without_approved_copy": len(contacts) - e["recipients"] - sum(e["excluded"].values()),
                }
                for e in exports
            ]
        if any(e["drafts_exported"] for e in summary["exports"]):
            summary["status"] = EXPORTED
            summary["recipients"] = sum(e["recipients"] for e in summary["exports"])
        else:
            summary["status"] = WAITING
            summary["recipients"] = 0
            summary["next"] = (
                f"approve the drafts of {campaign} (`clarion drafts list --campaign {campaign}`, "
                f"`clarion approve DRAFT_ID --by NAME`), then run this trigger again: prefect deployment "
                f"run 'triggered-campaign/triggered-campaign' -p trigger_id={trigger}"
            )
        with wh.connect(f"triggered campaign {trigger}") as con:
            events.record(
                con,
                audit.TRIGGER_RUN,
                trigger,
                details={k: summary[k] for k in ("campaign", "customers", "recipients", "status")}
                | {
                    "exports": [
                        {k: e[k] for k in ("channel", "recipients", "excluded")} for e in summary["exports"]
                    ]
                },
            )
    log.info("trigger %s of %s: %s (%d customers)", trigger, campaign, summary["status"], len(contacts))
    return summary
