"""A person's decisions on drafts: approve or reject (bound to the content's sha256 at that moment)
and edit (checked again; a new approval is needed)."""

from __future__ import annotations

import json
from typing import Any

import duckdb

from clarion import audit
from clarion.config import Settings
from clarion.content.store import ContentError, ensure_tables, get_draft, unfinished_run, utc_now
from clarion.warehouse import Warehouse
from models.content.brief import Brief, BriefError, load_brief
from models.content.drafts import SAMPLE_FIRST_NAME, content_hash
from models.content.guardrails import check_copy


def _brief_for(settings: Settings, draft: dict[str, Any]) -> Brief:
    path = settings.content.briefs / f"{draft['campaign']}.yaml"
    try:
        brief = load_brief(path)
    except BriefError as exc:
        raise ContentError(f"the brief of draft {draft['draft_id']} cannot be read: {exc}") from None
    drafted = (draft["provenance"] or {}).get("brief", {}).get("sha256")
    if drafted and drafted != brief.sha256():
        raise ContentError(
            f"{path} changed since draft {draft['draft_id']} was written (brief sha256 {drafted[:12]} -> "
            f"{brief.sha256()[:12]}): draft again with `clarion content --campaign {brief.name}`"
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
    settings: Settings, did: str, decision: str, by: str, note: str | None, via: str = "cli"
) -> dict[str, Any]:
    """Approve or reject one draft; an approval binds the draft's current content hash."""
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
        if draft["status"] == "blocked":
            failed = [c["name"] for c in draft["checks"] if not c["passed"] and c["severity"] == "block"]
            raise ContentError(
                f"draft {did} failed blocking checks ({', '.join(failed)}) and cannot be approved; edit it "
                "(`clarion drafts edit`) or draft again"
            )
        if draft["status"] in ("approved", "rejected"):
            last = con.execute(
                "select decided_by, decided_at from content.decisions where draft_id = ? "
                "order by decided_at desc limit 1",
                [did],
            ).fetchone()
            who = f" by {last[0]} at {last[1]}" if last else ""
            raise ContentError(f"draft {did} is already {draft['status']}{who}; an edit reopens it")
        brief = _brief_for(settings, draft)
        if decision == "approve" and by not in brief.approvers:
            raise ContentError(
                f"{by!r} is not an approver of campaign {brief.name}: its brief lists {list(brief.approvers)}"
            )
        now = utc_now()
        ran_by = audit.os_identity()
        _ensure_os_user(con)
        con.execute(
            "insert into content.decisions (draft_id, decision, decided_by, note, content_sha256, via, "
            "decided_at, os_user) values (?, ?, ?, ?, ?, ?, ?, ?)",
            [did, decision, by, note, draft["content_sha256"], via, now, ran_by["os_user"]],
        )
        status = "approved" if decision == "approve" else "rejected"
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
                **ran_by,
            },
        )
    return {
        "draft_id": did,
        "status": status,
        "by": by,
        "os_user": ran_by["os_user"],
        "content_sha256": draft["content_sha256"],
        "via": via,
    }


def edit(settings: Settings, did: str, part: str, text: str, by: str) -> dict[str, Any]:
    """A person's change to one part of a draft: checked again, and back to pending (a new approval
    is needed; the old one stays on record, bound to the old content)."""
    with Warehouse.from_settings(settings).connect("content edit") as con:
        ensure_tables(con)
        draft = get_draft(con, did)
        _finished(con, draft)
        _intact(draft)
        if part not in draft["content"]:
            raise ContentError(f"draft {did} has parts {list(draft['content'])}, not {part!r}")
        brief = _brief_for(settings, draft)
        content = {**draft["content"], part: text}
        preview = {k: v.replace("{first_name}", SAMPLE_FIRST_NAME) for k, v in content.items()}
        checks = check_copy(preview, brief, draft["channel"], templates=_as_template(content, brief))
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
        _ensure_os_user(con)
        con.execute(
            "insert into content.decisions (draft_id, decision, decided_by, note, content_sha256, via, "
            "decided_at, os_user) values (?, 'edit', ?, ?, ?, 'cli', ?, ?)",
            [did, by, f"edited {part}", sha, now, ran_by["os_user"]],
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
                **ran_by,
            },
        )
    return {"draft_id": did, "status": status, "content_sha256": sha, "checks": checks.to_json()}


def _ensure_os_user(con) -> None:
    """content.decisions records the operating-system user beside the claimed ``decided_by``
    (warehouses made before it have no such column: add it, empty for their old rows)."""
    con.execute("alter table content.decisions add column if not exists os_user varchar")


def _as_template(content: dict[str, str], brief: Brief) -> dict[str, str]:
    """Offer facts back into placeholders, so the placeholder checks can read an edited text."""
    facts = sorted(((k, v) for k, v in brief.facts().items() if v), key=lambda kv: -len(kv[1]))
    out = {}
    for part, text in content.items():
        for key, value in facts:
            text = text.replace(value, "{" + key + "}")
        out[part] = text
    return out
