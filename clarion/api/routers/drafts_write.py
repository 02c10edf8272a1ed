"""Deciding on drafts through the API: approve, reject, edit (clarion.content.review, as the CLI does).

An approval or rejection names the ``content_sha256`` the decider read (GET /drafts/{id} shows it):
a draft edited since is refused with 409, so nobody approves words they did not see. The decision
is recorded with ``by`` = the key's name (an approver the campaign's brief lists), ``via = "api"``
and the principal ``api:<key name>``; the campaign's risk tier counts distinct principals.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field, field_validator

from clarion.api import writes
from clarion.api.auth import Principal, require
from clarion.api.problems import responses

router = APIRouter(prefix="/api/v1/drafts", tags=["drafts"])

DraftId = Annotated[
    str, Path(min_length=1, max_length=64, description="the draft's id (GET /drafts lists them)")
]
Sha256 = Annotated[
    str,
    Field(
        pattern=r"^[0-9a-f]{64}$",
        description="the content_sha256 of the draft as you read it (GET /drafts/{draft_id})",
    ),
]


def _text(value: str, what: str) -> str:
    if not value.strip():
        raise ValueError(f"{what} is empty: write {what}")
    return value


class Approval(BaseModel):
    content_sha256: Sha256
    note: str | None = Field(None, max_length=2000, description="why, or under which conditions")


class Rejection(BaseModel):
    content_sha256: Sha256
    reason: str = Field(min_length=1, max_length=2000, description="why the draft is rejected")

    @field_validator("reason")
    @classmethod
    def _reason(cls, v: str) -> str:
        return _text(v, "a reason")


class EditRequest(BaseModel):
    part: Literal["email_subject", "email_preheader", "email_body", "sms", "push"] = Field(
        description="the part of the draft to replace (one its channel has)"
    )
    text: str = Field(
        min_length=1, max_length=10_000, description="the new text; {first_name} is filled at export"
    )
    reason: str = Field(min_length=1, max_length=2000, description="why the text changes")

    @field_validator("text")
    @classmethod
    def _new_text(cls, v: str) -> str:
        return _text(v, "the new text")

    @field_validator("reason")
    @classmethod
    def _reason(cls, v: str) -> str:
        return _text(v, "a reason")


class DecisionOut(BaseModel):
    draft_id: str
    decision: Literal["approve", "reject"]
    status: str = Field(description="approved, rejected, or pending while the risk tier waits for more")
    by: str
    principal: str
    via: str
    risk_tier: str
    waiting_for: str | None = Field(description="what the risk tier still needs before export, if anything")
    content_sha256: str


class CheckOut(BaseModel):
    name: str
    severity: str
    passed: bool
    detail: str


class EditOut(BaseModel):
    draft_id: str
    status: str = Field(description="pending (it needs a new approval) or blocked (a blocking check failed)")
    content_sha256: str
    previous_sha256: str
    checks: list[CheckOut]


DECIDE_ERRORS = responses(400, 401, 403, 404, 409, 422)


@router.post(
    "/{draft_id}/approve",
    summary="Approve a draft, bound to the content you read",
    response_model=DecisionOut,
    responses=DECIDE_ERRORS,
)
def approve(
    draft_id: DraftId,
    body: Approval,
    request: Request,
    principal: Annotated[Principal, Depends(require("draft:decide"))],
) -> dict[str, Any]:
    return _decide(request, principal, draft_id, "approve", body.content_sha256, body.note)


@router.post(
    "/{draft_id}/reject",
    summary="Reject a draft (with a reason); it is never exported",
    response_model=DecisionOut,
    responses=DECIDE_ERRORS,
)
def reject(
    draft_id: DraftId,
    body: Rejection,
    request: Request,
    principal: Annotated[Principal, Depends(require("draft:decide"))],
) -> dict[str, Any]:
    return _decide(request, principal, draft_id, "reject", body.content_sha256, body.reason)


@router.post(
    "/{draft_id}/edit",
    summary="Replace one part of a draft: checked again, and it needs a new approval",
    response_model=EditOut,
    responses=responses(400, 401, 403, 404, 409, 422),
)
def edit(
    draft_id: DraftId,
    body: EditRequest,
    request: Request,
    principal: Annotated[Principal, Depends(require("draft:edit"))],
) -> dict[str, Any]:
    from clarion.content.review import edit as edit_draft

    with writes.session(request, "edit draft") as settings:
        result = edit_draft(
            settings,
            draft_id,
            body.part,
            body.text,
            by=principal.name,
            via="api",
            principal=principal.audit_name,
            reason=body.reason,
        )
    return result


def _decide(
    request: Request, principal: Principal, draft_id: str, decision: str, seen: str, note: str | None
) -> dict[str, Any]:
    from clarion.content.review import decide

    with writes.session(request, f"{decision} draft") as settings:
        result = decide(
            settings,
            draft_id,
            decision,
            by=principal.name,
            note=note,
            via="api",
            principal=principal.audit_name,
            seen_sha256=seen,
        )
    return {**result, "decision": decision}
