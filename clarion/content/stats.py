"""`clarion drafts stats`: how good one content run's drafts are, and what marketers did with drafts.

Reads ``content.drafts`` and ``content.decisions`` on a read-only snapshot and hands the rows to
:mod:`models.content.evaluate` (the definitions live there). The run is the latest content run that
finished drafting (``runs.CONTENT_UNFINISHED``) and is a batch run: an on-demand run holds one draft
someone asked for while waiting (``runs.ON_DEMAND_RUNS``), not a campaign's drafts, so it is measured
only when named. The decisions are those on every finished run's drafts (of the campaign, if one is
named): a trend over weeks needs more than one run.

Aggregates only: counts, rates and scores; no copy, no recipient, no reviewer's name or note.
"""

from __future__ import annotations

from typing import Any

import duckdb

from clarion.config import Settings
from clarion.content.store import DRAFT_COLUMNS, ContentError, draft_row
from clarion.runs import CONTENT_UNFINISHED, ON_DEMAND_RUNS
from clarion.warehouse import Warehouse, relation_exists
from models.content.evaluate import evaluate


def latest_run(con: duckdb.DuckDBPyConnection, campaign: str | None = None) -> str | None:
    """The newest finished batch content run (that drafted ``campaign``, if given)."""
    row = con.execute(
        f"""
        select run_id from content.drafts
        where run_id not in ({CONTENT_UNFINISHED}) and run_id not in ({ON_DEMAND_RUNS})
          and (? is null or campaign = ?)
        group by run_id order by max(created_at) desc, run_id desc limit 1
        """,
        [campaign, campaign],
    ).fetchone()
    return row[0] if row else None


def run_drafts(
    con: duckdb.DuckDBPyConnection, run_id: str, campaign: str | None = None
) -> list[dict[str, Any]]:
    rows = con.execute(
        f"select {', '.join(DRAFT_COLUMNS)} from content.drafts "
        "where run_id = ? and (? is null or campaign = ?) order by campaign, segment, channel, variant",
        [run_id, campaign, campaign],
    ).fetchall()
    return [draft_row(r) for r in rows]


def decision_rows(con: duckdb.DuckDBPyConnection, campaign: str | None = None) -> list[dict[str, Any]]:
    """Decisions on drafts of finished runs: campaign, decision, when, and whether a person gave it."""
    if not relation_exists(con, "content", "decisions"):
        return []
    rows = con.execute(
        f"""
        select d.campaign, x.decision, x.decided_at, coalesce(x.via, '') as via
        from content.decisions x join content.drafts d using (draft_id)
        where d.run_id not in ({CONTENT_UNFINISHED}) and (? is null or d.campaign = ?)
        order by x.decided_at
        """,
        [campaign, campaign],
    ).fetchall()
    return [dict(zip(("campaign", "decision", "decided_at", "via"), r, strict=True)) for r in rows]


def stats(
    con: duckdb.DuckDBPyConnection, campaign: str | None = None, run_id: str | None = None
) -> dict[str, Any]:
    """The content evaluation of one run (default: the latest finished batch run), per campaign."""
    if not relation_exists(con, "content", "drafts"):
        raise ContentError("no drafts yet: `clarion content` writes them (after `clarion segment`)")
    if run_id is None:
        run_id = latest_run(con, campaign)
        if run_id is None:
            which = f" of campaign {campaign!r}" if campaign else ""
            raise ContentError(
                f"no finished content run{which}: `clarion content` drafts; then `clarion drafts stats`"
            )
    drafts = run_drafts(con, run_id, campaign)
    if not drafts:
        which = f" for campaign {campaign!r}" if campaign else ""
        raise ContentError(
            f"run {run_id!r} has no drafts{which}: `clarion drafts list` shows the drafts and their runs"
        )
    finished = not con.execute(
        f"select count(*) from ({CONTENT_UNFINISHED}) where run_id = ?", [run_id]
    ).fetchone()[0]
    return {
        "run_id": run_id,
        "finished": finished,
        "campaign": campaign,
        "created_at": min(d["created_at"] for d in drafts),
        **evaluate(drafts, decision_rows(con, campaign)),
    }


def read_stats(settings: Settings, campaign: str | None = None, run_id: str | None = None) -> dict[str, Any]:
    """:func:`stats` on a read-only snapshot of the warehouse (the CLI's entry point)."""
    with Warehouse.from_settings(settings).read() as con:
        return stats(con, campaign, run_id)
