"""The review forms: approve, reject (a reason required) and edit one part (a reason required).

Each form carries the content sha256 the reviewer read. Under the writer lock (waiting at most
``api.write_wait_seconds`` for a running pipeline) the draft's current sha256 is compared with it: a
draft changed since the page was opened is not decided on ("reload and read it again"). Then the
same core functions as `clarion approve / reject / drafts edit` run, with the key's name as the
decider, ``via="web"`` and the key's principal (``api:<name>``), so the audit trail and the risk
tiers' distinct-approvers rule see who it was. The read snapshot is published as the lock is
released, and the page that follows shows the new state.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from clarion.api import writes
from clarion.api.auth import Principal
from clarion.api.web.pages import HtmlRoute, WebError, check_csrf, signed_in
from clarion.content import review
from clarion.content.store import ContentError, get_draft
from clarion.warehouse import Warehouse

router = APIRouter(route_class=HtmlRoute, include_in_schema=False)

SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_TEXT = 5000

# ?done= on the draft's page after a change: what the reviewer is told
DONE = {
    "approved": "Approved. The draft is recorded as approved under your key and can be exported.",
    "waiting": "Your approval is recorded. The campaign's risk tier asks for another approver before "
    "the draft can be exported.",
    "rejected": "Rejected. Your reason is on record; an edit reopens the draft.",
    "edited": "Your edit is saved and checked again. The draft needs a new approval.",
    "blocked": "Your edit is saved, but the new text fails a blocking check (see Checks): edit it again.",
}


def _field(value: str, name: str, todo: str, back: str) -> str:
    value = value.strip()
    if not value:
        raise WebError(400, f"{name.capitalize()} missing", f"The form arrived without a {name}.", todo, back)
    if len(value) > MAX_TEXT:
        raise WebError(
            400,
            f"{name.capitalize()} too long",
            f"The {name} has {len(value):,} characters.",
            f"Shorten it to at most {MAX_TEXT:,} characters.",
            back,
        )
    return value


def _write(
    request: Request, who: Principal, draft_id: str, shown: str, purpose: str, change: Callable[[Any], dict]
) -> dict[str, Any]:
    """Run ``change(settings)`` under the writer lock if the draft still has the content ``shown``."""
    back = f"/drafts/{draft_id}"
    if not SHA256.match(shown):
        raise WebError(
            400,
            "Form incomplete",
            "The form did not say which version of the draft you read.",
            "Reload the draft and submit the form on it.",
            back,
        )
    with writes.session(request, f"web app: {purpose} by api:{who.name}") as settings:
        wh = Warehouse.from_settings(settings)
        with wh.read() as con:
            try:
                current = get_draft(con, draft_id)
            except ContentError as exc:
                raise WebError(
                    404, "No such draft", str(exc), "Pick a draft in the queue.", "/drafts"
                ) from None
        if current["content_sha256"] != shown:
            raise WebError(
                409,
                "The draft changed since you opened it",
                f"Someone changed draft {draft_id} after you loaded the page (you read content "
                f"{shown[:12]}, it is now {current['content_sha256'][:12]}), so nothing was recorded.",
                "Reload the draft, read the new text, then decide again.",
                back,
            )
        try:
            result = change(settings)
        except ContentError as exc:  # refused as the CLI refuses it: its message says why
            raise WebError(400, "Not recorded", str(exc), "", back) from None
    return result


def _by(who: Principal) -> dict[str, str]:
    """How a web decision is recorded: through the web app, under the key's principal."""
    return {"via": "web", "principal": who.audit_name}


def _done(draft_id: str, outcome: str) -> Response:
    return RedirectResponse(f"/drafts/{draft_id}?done={outcome}#outcome", status_code=303)


Text = Annotated[str, Form()]


@router.post("/drafts/{draft_id}/approve")
def approve(
    request: Request, draft_id: str, content_sha256: Text = "", note: Text = "", csrf_token: Text = ""
) -> Response:
    who = signed_in(request, "draft:decide")
    check_csrf(request, csrf_token)
    by = _by(who)
    result = _write(
        request,
        who,
        draft_id,
        content_sha256.strip(),
        "approve",
        lambda s: review.decide(s, draft_id, "approve", who.name, note.strip()[:MAX_TEXT] or None, **by),
    )
    return _done(draft_id, "waiting" if result["waiting_for"] else "approved")


@router.post("/drafts/{draft_id}/reject")
def reject(
    request: Request, draft_id: str, content_sha256: Text = "", reason: Text = "", csrf_token: Text = ""
) -> Response:
    who = signed_in(request, "draft:decide")
    check_csrf(request, csrf_token)
    todo = "Say why the draft is rejected (the reason is kept with the decision)."
    why = _field(reason, "reason", todo, f"/drafts/{draft_id}")
    _write(
        request,
        who,
        draft_id,
        content_sha256.strip(),
        "reject",
        lambda s: review.decide(s, draft_id, "reject", who.name, why, **_by(who)),
    )
    return _done(draft_id, "rejected")


@router.post("/drafts/{draft_id}/edit")
def edit(
    request: Request,
    draft_id: str,
    content_sha256: Text = "",
    part: Text = "",
    text: Text = "",
    reason: Text = "",
    csrf_token: Text = "",
) -> Response:
    who = signed_in(request, "draft:edit")
    check_csrf(request, csrf_token)
    back = f"/drafts/{draft_id}"
    part = _field(part, "part", "Edit the draft from its page (each part has its own form).", back)
    new = _field(
        text.replace("\r\n", "\n"), "text", "Give the part's new text (an empty part is not allowed).", back
    )
    why = _field(reason, "reason", "Say why you changed the text (the reason is kept with the edit).", back)
    result = _write(
        request,
        who,
        draft_id,
        content_sha256.strip(),
        "edit",
        lambda s: review.edit(s, draft_id, part, new, who.name, reason=why, **_by(who)),
    )
    return _done(draft_id, "blocked" if result["status"] == "blocked" else "edited")
