"""A person's decisions on drafts: approve or reject (bound to the content's sha256 at that moment)
and edit (checked again; a new approval is needed)."""

from __future__ import annotations

import json
from typing import Any

import duckdb

from clarion import audit
from clarion.config import Settings
from clarion.content.store import (
    ContentError,
    DraftConflictError,
    ensure_tables,
    get_draft,
    unfinished_run,
    utc_now,
)
from clarion.oversight import tiers
from clarion.warehouse import Warehouse
from models.content.brief import Brief, BriefError, load_brief, validate_brief
from models.content.drafts import AI_DISCLOSURE, content_hash, preview
from models.content.guardrails import check_copy


class NotAnApproverError(ContentError):
    """The one who approves is not among the approvers the campaign's brief names."""

    http_status = 403


def _brief_for(settings: Settings, draft: dict[str, Any]) -> Brief:
    path = settings.content.briefs / f"{draft['campaign']}.yaml"
    provenance = draft["provenance"] or {}
    drafted = provenance.get("brief", {}).get("sha256")
    if not path.exists() and "brief_document" in provenance:
        return _inline_brief(draft, provenance["brief_document"], drafted)
    try:
        brief = load_brief(path)
    except BriefError as exc:
        raise ContentError(f"the brief of draft {draft['draft_id']} cannot be read: {exc}") from None
    if drafted and drafted != brief.sha256():
        raise ContentError(
            f"{path} changed since draft {draft['draft_id']} was written (brief sha256 {drafted[:12]} -> "
            f"{brief.sha256()[:12]}): draft again with `clarion content --campaign {brief.name}`"
        )
    return brief


def _inline_brief(draft: dict[str, Any], document: Any, drafted: str | None) -> Brief:
    """The brief an on-demand draft was given inline (no file of that name), from its provenance,
    validated again and bound to the sha256 recorded when it was drafted."""
    try:
        brief = validate_brief(document, f"the inline brief of draft {draft['draft_id']}")
    except BriefError as exc:
        raise ContentError(str(exc)) from None
    if brief.sha256() != drafted:
        raise ContentError(
            f"the inline brief stored with draft {draft['draft_id']} no longer matches its recorded sha256: "
            "it was changed outside Clarion; draft again"
        )
    return brief


def _intact(draft: dict[str, Any]) -> None:
    if content_hash(draft["content"]) != draft["content_sha256"]:
        raise ContentError(
            f"draft {draft['draft_id']}'s content no longer matches its recorded sha256: it was changed "
            "outside "
            "Clarion; use `clarion drafts edit` so the change is checked and recorded"
        )


def _finished(con: duckdb.DuckDBPyConnection, draft: dict[str, Any]) -> None:
    """A draft of a run that stopped before its drafting finished is never reviewed: the run may
    hold some campaigns' drafts and not others, and the next content run replaces it."""
    if unfinished_run(con, draft["run_id"]):
        raise ContentError(
            f"draft {draft['draft_id']} is from run {draft['run_id']}, which stopped before its drafting "
            "finished (killed or failed, or still drafting): draft again with `clarion content` (or "
            "`clarion run --resume`) and decide on the new drafts (`clarion drafts list`)"
        )


def decide(
    settings: Settings,
    did: str,
    decision: str,
    by: str,
    note: str | None,
    via: str = "cli",
    principal: str | None = None,
    seen_sha256: str | None = None,
) -> dict[str, Any]:
    """Approve or reject one draft; an approval binds the draft's current content hash.

    ``principal`` is the authenticated principal of a caller that has one (the API); without it the
    approval is recorded under the operating-system account. ``seen_sha256`` is the content hash the
    decider read (the API requires it): a draft edited since is refused, so nobody approves words
    they did not see. The campaign's risk tier says how many distinct principals must approve before
    the draft is ``approved`` (clarion.oversight.tiers); a person may reject a draft that only the
    low-tier policy approved (an override)."""
    if decision not in ("approve", "reject"):
        raise ValueError(decision)
    if not by.strip():
        raise ContentError("say who decides: --by NAME")
    if decision == "reject" and not (note or "").strip():
        raise ContentError("a rejection needs a reason: --reason TEXT")
    with Warehouse.from_settings(settings).connect(f"content {decision}") as con:
        ensure_tables(con)
        draft = get_draft(con, did)
        _finished(con, draft)
        _intact(draft)
        _as_seen(draft, seen_sha256, decision)
        if draft["status"] == "blocked":
            failed = [c["name"] for c in draft["checks"] if not c["passed"] and c["severity"] == "block"]
            raise DraftConflictError(
                f"draft {did} failed blocking checks ({', '.join(failed)}) and cannot be approved; edit it "
                "(`clarion drafts edit`) or draft again"
            )
        brief = _brief_for(settings, draft)
        who = tiers.principal_for(settings, principal)
        tiers.ensure_columns(con)
        if _closed(con, brief, draft, decision):
            last = con.execute(
                "select decided_by, decided_at from content.decisions where draft_id = ? "
                "order by decided_at desc limit 1",
                [did],
            ).fetchone()
            said = f" by {last[0]} at {last[1]}" if last else ""
            raise DraftConflictError(f"draft {did} is already {draft['status']}{said}; an edit reopens it")
        if decision == "approve":
            if by not in brief.approvers:
                raise NotAnApproverError(
                    f"{by!r} is not an approver of campaign {brief.name}: its brief lists "
                    f"{list(brief.approvers)}"
                )
            tiers.refuse_repeat(con, draft, who, by)
        now = utc_now()
        ran_by = audit.os_identity()
        con.execute(
            "insert into content.decisions (draft_id, decision, decided_by, note, content_sha256, via, "
            "decided_at, os_user, principal) values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [did, decision, by, note, draft["content_sha256"], via, now, ran_by["os_user"], who],
        )
        waiting = tiers.unmet(con, brief, draft) if decision == "approve" else None
        status = "rejected" if decision == "reject" else ("pending" if waiting else "approved")
        con.execute(
            "update content.drafts set status = ?, updated_at = ? where draft_id = ?", [status, now, did]
        )
        audit.AuditLog.for_settings(settings).record(  # the note is free text: not in the audit log
            con,
            audit.DRAFT_APPROVED if decision == "approve" else audit.DRAFT_REJECTED,
            did,
            actor=by,
            details={
                "content_sha256": draft["content_sha256"],
                "via": via,
                "campaign": draft["campaign"],
                "channel": draft["channel"],
                "variant": draft["variant"],
                "principal": who,
                "risk_tier": brief.risk_tier,
                **({"waiting_for": waiting} if waiting else {}),
                **ran_by,
            },
        )
    return {
        "draft_id": did,
        "status": status,
        "by": by,
        "os_user": ran_by["os_user"],
        "principal": who,
        "risk_tier": brief.risk_tier,
        "waiting_for": waiting,
        "content_sha256": draft["content_sha256"],
        "via": via,
    }


def _as_seen(draft: dict[str, Any], seen: str | None, decision: str) -> None:
    if seen is not None and seen != draft["content_sha256"]:
        raise DraftConflictError(
            f"draft {draft['draft_id']}'s content is now sha256 {draft['content_sha256'][:12]}..., not "
            f"the {seen[:12]}... you read: it was edited since; read it again (GET the draft) and "
            f"{decision} what it says now, with its current content_sha256"
        )


def _closed(con, brief: Brief, draft: dict[str, Any], decision: str) -> bool:
    """Whether the draft takes no more decisions of this kind: a rejected one none (an edit reopens
    it); an approved one no further approval unless its tier (the brief's now) still asks for one,
    and no rejection unless only the low-tier policy approved it (a person overriding automation)."""
    if draft["status"] == "rejected":
        return True
    if draft["status"] != "approved":
        return False
    if decision == "approve":
        return tiers.unmet(con, brief, draft) is None
    return not tiers.policy_only(con, draft)


def edit(
    settings: Settings,
    did: str,
    part: str,
    text: str,
    by: str,
    via: str = "cli",
    principal: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """A person's change to one part of a draft: checked again, and back to pending (a new approval
    is needed; the old one stays on record, bound to the old content). ``principal`` and ``via`` as
    in :func:`decide`; ``reason`` is kept with the decision row (free text: not in the audit log)."""
    with Warehouse.from_settings(settings).connect("content edit") as con:
        ensure_tables(con)
        draft = get_draft(con, did)
        _finished(con, draft)
        _intact(draft)
        if part not in draft["content"]:
            raise ContentError(f"draft {did} has parts {list(draft['content'])}, not {part!r}")
        brief = _brief_for(settings, draft)
        _keeps_disclosure(draft, brief, part, text)
        who = tiers.principal_for(settings, principal) if principal else tiers.os_principal()
        content = {**draft["content"], part: text}
        checks = check_copy(preview(content), brief, draft["channel"], templates=_as_template(content, brief))
        sha = content_hash(content)
        now = utc_now()
        ran_by = audit.os_identity()
        provenance = {
            **draft["provenance"],
            "checks": checks.to_json(),
            "content_sha256": sha,
            "edits": [
                *draft["provenance"].get("edits", []),
                {
                    "by": by,
                    "os_user": ran_by["os_user"],
                    "at": now.isoformat(timespec="seconds"),
                    "part": part,
                    "previous_sha256": draft["content_sha256"],
                },
            ],
        }
        status = "blocked" if checks.blocked else "pending"
        con.execute(
            "update content.drafts set content = ?, content_sha256 = ?, checks = ?, provenance = ?, "
            "status = ?, "
            "updated_at = ? where draft_id = ?",
            [
                json.dumps(content),
                sha,
                json.dumps(checks.to_json()),
                json.dumps(provenance),
                status,
                now,
                did,
            ],
        )
        tiers.ensure_columns(con)
        con.execute(
            "insert into content.decisions (draft_id, decision, decided_by, note, content_sha256, via, "
            "decided_at, os_user, principal) values (?, 'edit', ?, ?, ?, ?, ?, ?, ?)",
            [
                did,
                by,
                f"edited {part}" + (f": {reason.strip()}" if (reason or "").strip() else ""),
                sha,
                via,
                now,
                ran_by["os_user"],
                who,
            ],
        )
        audit.AuditLog.for_settings(settings).record(
            con,
            audit.DRAFT_EDITED,
            did,
            actor=by,
            details={
                "part": part,
                "previous_sha256": draft["content_sha256"],
                "content_sha256": sha,
                "status": status,
                "campaign": draft["campaign"],
                "channel": draft["channel"],
                "via": via,
                "principal": who,
                **ran_by,
            },
        )
    return {
        "draft_id": did,
        "status": status,
        "content_sha256": sha,
        "previous_sha256": draft["content_sha256"],
        "checks": checks.to_json(),
    }


def _keeps_disclosure(draft: dict[str, Any], brief: Brief, part: str, text: str) -> None:
    """An edit keeps the AI disclosure line: in the part that carried it, and in the e-mail body of
    any draft the model helped write where the brief asks for it (`disclose_ai`). A person may
    rewrite every other word; the line says the model helped, and it did."""
    had = AI_DISCLOSURE in draft["content"][part]
    due = part == "email_body" and draft["ai_generated"] and brief.disclose_ai
    if (had or due) and AI_DISCLOSURE not in text:
        raise ContentError(
            f"draft {draft['draft_id']}: the edit removes the AI disclosure line from {part}; the model "
            f"helped write this draft, so its {part} keeps the line {AI_DISCLOSURE!r} word for word: "
            "edit the rest and leave that line in"
        )


def _as_template(content: dict[str, str], brief: Brief) -> dict[str, str]:
    """Offer facts back into placeholders, so the placeholder checks can read an edited text."""
    facts = sorted(((k, v) for k, v in brief.facts().items() if v), key=lambda kv: -len(kv[1]))
    out = {}
    for part, text in content.items():
        for key, value in facts:
            text = text.replace(value, "{" + key + "}")
        out[part] = text
    return out
