"""Why the export holds a draft back, or lets it go: approved by the people its risk tier asks for,
unchanged since, under the brief as it is now, with the AI disclosure where the model helped write it.

Read-only, so the web app shows the same reason on the draft's page (`held_back`) that the export
records in content.exports.
"""

from __future__ import annotations

from typing import Any

import duckdb

from clarion.oversight import tiers
from clarion.runs import ON_DEMAND_RUNS
from models.content.brief import Brief
from models.content.drafts import AI_DISCLOSURE, content_hash

BRIEF_CHANGED = "brief changed since approval: re-approve"


def _approved(con: duckdb.DuckDBPyConnection, draft: dict[str, Any]) -> str | None:
    """Why a draft may not be exported, or None if it may."""
    if draft["status"] != "approved":
        return f"status {draft['status']}"
    last = con.execute(
        "select decision, content_sha256 from content.decisions where draft_id = ? and decision <> 'edit' "
        "order by decided_at desc limit 1",
        [draft["draft_id"]],
    ).fetchone()
    if last is None or last[0] != "approve":
        return "no approval on record"
    if last[1] != draft["content_sha256"] or content_hash(draft["content"]) != draft["content_sha256"]:
        return "content changed after approval"
    return None


def held_back(con: duckdb.DuckDBPyConnection, brief: Brief | None, draft: dict[str, Any]) -> str | None:
    """Why the export would hold ``draft`` back now (not approved, changed since, its brief changed
    since, no AI disclosure where one is due, a part its channel now has and it lacks, an approval
    its risk tier still asks for), or None when it would go out. ``brief``: the campaign's brief as
    it is now (`tiers.current_brief`). Read-only: the web app shows it on the draft's page. An
    on-demand draft is never in a campaign's batch export (its requester reads it through the API)."""
    if con.execute(f"select count(*) from ({ON_DEMAND_RUNS}) where run_id = ?", [draft["run_id"]]).fetchone()[
        0
    ]:
        return "drafted on demand: not part of the campaign's export (its requester reads it once approved)"
    return (
        _approved(con, draft)
        or _brief_changed(brief, draft)
        or _undisclosed(brief, draft)
        or _parts_missing(brief, draft)
        or tiers.unmet(con, brief, draft)
    )


def _brief_changed(brief: Brief | None, draft: dict[str, Any]) -> str | None:
    """A draft goes out under the brief it was drafted and approved under (an approval is refused
    against a changed brief, so the two are the same): its sha256 covers the parsed fields of what
    the campaign says and to whom (offer, audience, channels, templates, seeds, approvers...), not
    comments or layout of the file, nor next-best-action's delivery fields. A draft without a
    recorded brief cannot be shown to match one."""
    if brief is None:
        return None  # tiers.unmet says the brief cannot be read
    drafted = ((draft.get("provenance") or {}).get("brief") or {}).get("sha256")
    if drafted == brief.sha256():
        return None
    was = f"sha256 {drafted[:12]} -> {brief.sha256()[:12]}" if drafted else "no brief sha256 on record"
    return (
        f"{BRIEF_CHANGED} ({was}): draft again with `clarion content --campaign {brief.name}` and "
        "approve the new drafts"
    )


def _undisclosed(brief: Brief | None, draft: dict[str, Any]) -> str | None:
    """Copy the model helped write carries the AI disclosure line in the e-mail body (where the brief
    asks, `disclose_ai`, the default); an edit cannot remove it (review.edit), and nothing goes out
    without it. SMS and push rows carry it in the export's ai_disclosure column."""
    wanted = brief.disclose_ai if brief is not None else True
    if not (draft["ai_generated"] and wanted and draft["channel"] == "email"):
        return None
    if AI_DISCLOSURE in draft["content"].get("email_body", ""):
        return None
    return (
        f"the AI disclosure line is missing from the e-mail body ({AI_DISCLOSURE!r}): the model helped "
        "write this draft; draft again"
    )


def _parts_missing(brief: Brief | None, draft: dict[str, Any]) -> str | None:
    """A draft made before its channel gained a part (the e-mail preheader) has no text for it."""
    if brief is None:
        return None
    missing = [p for p in brief.parts(draft["channel"]) if p not in draft["content"]]
    if not missing:
        return None
    return f"the draft has no {', '.join(missing)}, which the {draft['channel']} copy now has: draft again"
