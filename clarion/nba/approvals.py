"""A person's approval of a high-risk campaign's audience for next-best-action.

A brief with ``risk_tier: high`` (a steep discount, a sensitive audience) may be chosen for a
customer, but its decisions stay "needs approval" (not actionable) until one of the brief's
approvers approves its audience: `clarion nba approve NAME --by WHO`. The approval is bound to the
brief's sha256 (what the campaign says and to whom): change the brief and it needs approving
again. It is kept in ``ml.nba_approvals`` and in the audit log with the operating-system user, and
it makes the latest decisions for that campaign ready.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from clarion import audit
from clarion.config import Settings
from clarion.nba.decide import ensure_tables
from clarion.nba.eligibility import NbaError
from clarion.runs import NOT_SETTLED
from clarion.warehouse import Warehouse
from models.content.brief import BriefError, load_brief


def approve(settings: Settings, campaign: str, by: str) -> dict[str, Any]:
    if not by.strip():
        raise NbaError("say who approves: --by NAME")
    path = settings.content.briefs / f"{campaign}.yaml"
    if not path.exists():
        raise NbaError(f"no brief {path}: `clarion nba approve` takes a campaign's name")
    try:
        brief = load_brief(path)
    except BriefError as exc:
        raise NbaError(str(exc)) from None
    if brief.risk_tier != "high":
        raise NbaError(
            f"campaign {campaign} is not high risk (risk_tier: {brief.risk_tier}): its decisions need no "
            "approval"
        )
    if by not in brief.approvers:
        raise NbaError(
            f"{by!r} is not an approver of campaign {campaign}: its brief lists {list(brief.approvers)}"
        )
    sha = brief.sha256()
    ran_by = audit.os_identity()
    now = datetime.now(UTC)
    with Warehouse.from_settings(settings).connect("nba approve") as con:
        ensure_tables(con)
        con.execute(
            "insert into ml.nba_approvals values (?, ?, ?, ?, ?)", [campaign, sha, by, ran_by["os_user"], now]
        )
        latest = con.execute(
            "select nba_run_id from ml.next_best_action "
            f"where nba_run_id not in ({NOT_SETTLED}) order by decided_at desc limit 1"
        ).fetchone()
        ready = 0
        if latest:
            ready = con.execute(
                "update ml.next_best_action set status = 'ready' "
                "where nba_run_id = ? and action = ? and status = 'needs approval'",
                [latest[0], campaign],
            ).fetchone()[0]
        audit.AuditLog.for_settings(settings).record(
            con,
            audit.NBA_APPROVED,
            campaign,
            actor=by,
            run_id=latest[0] if latest else None,
            details={"brief_sha256": sha, "decisions_ready": int(ready), **ran_by},
        )
    return {
        "campaign": campaign,
        "by": by,
        "os_user": ran_by["os_user"],
        "brief_sha256": sha,
        "nba_run_id": latest[0] if latest else None,
        "decisions_ready": int(ready),
    }
