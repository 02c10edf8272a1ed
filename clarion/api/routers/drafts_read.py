"""Drafted campaign content as reviewers see it: the copy, its guardrail checks, provenance, the
AI-generated label, its brief and decisions. (Approve, reject, edit: drafts_write.)"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from clarion.api.auth import Principal, require
from clarion.api.problems import Problem
from clarion.api.routers.common import ERRORS, ERRORS_404, Limit, Offset, plain, reader, without_contact_ids
from clarion.content.store import ContentError, list_drafts, show_draft
from models.content.brief import BriefError, load_brief

router = APIRouter(prefix="/api/v1/drafts", tags=["drafts"])


class Draft(BaseModel):
    draft_id: str
    run_id: str | None = None
    scoring_run_id: str | None = None
    campaign: str
    segment: str | None = None
    channel: str | None = None
    variant: str | None = None
    status: str
    content: dict[str, Any] | None = Field(description="the parts of the copy (subject, body, ...)")
    content_sha256: str = Field(description="approve/reject name this exact content")
    fallback: bool | None = None
    ai_generated: bool | None = Field(description="drafted by the language model (labelled so)")
    checks: Any = Field(description="the guardrail checks and their outcomes")
    provenance: dict[str, Any] | None = Field(description="model, prompt, brief, segment, run")
    created_at: str
    updated_at: str


class Decision(BaseModel):
    decision: str
    by: str
    note: str | None = None
    content_sha256: str | None = None
    via: str | None = None
    at: str


class BriefOut(BaseModel):
    name: str
    sha256: str
    unchanged: bool = Field(description="the brief file is the one the draft was written from")
    brief: dict[str, Any] = Field(description="audience, offer facts, channel, tone, approvers")


class DraftDetail(Draft):
    decisions: list[Decision]
    brief: BriefOut | None = Field(
        description="the campaign's brief; null when its file is gone or unreadable"
    )


class Drafts(BaseModel):
    drafts: list[Draft]
    total: int = Field(description="drafts matching the filters")
    limit: int
    offset: int


def _shown(draft: dict[str, Any], principal: Principal) -> dict[str, Any]:
    draft = plain(draft)
    return draft if principal.may("read:contact_id") else without_contact_ids(draft)


@router.get("", response_model=Drafts, summary="Drafts, newest first", responses=ERRORS)
def drafts(
    request: Request,
    principal: Annotated[Principal, Depends(require("read:drafts"))],
    status: Annotated[
        str | None, Query(max_length=20, description="pending, approved, rejected, ...")
    ] = None,
    campaign: Annotated[str | None, Query(max_length=100)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> dict[str, Any]:
    with reader(request).pinned() as (settings, _):
        found = list_drafts(settings, status=status, campaign=campaign)
    return {
        "drafts": [_shown(d, principal) for d in found[offset : offset + limit]],
        "total": len(found),
        "limit": limit,
        "offset": offset,
    }


@router.get(
    "/{draft_id}",
    response_model=DraftDetail,
    summary="One draft with its decisions",
    responses=ERRORS_404,
)
def draft(
    request: Request,
    draft_id: Annotated[str, Path(max_length=100)],
    principal: Annotated[Principal, Depends(require("read:drafts"))],
) -> dict[str, Any]:
    with reader(request).pinned() as (settings, _):
        try:
            found = show_draft(settings, draft_id)
        except ContentError:
            raise Problem(404, f"no draft {draft_id!r}: GET /api/v1/drafts lists them") from None
    found["brief"] = _brief(settings, found)
    return _shown(found, principal)


def _brief(settings: Any, draft: dict[str, Any]) -> dict[str, Any] | None:
    try:
        brief = load_brief(settings.content.briefs / f"{draft['campaign']}.yaml")
    except (BriefError, OSError):
        return None
    drafted = (draft["provenance"] or {}).get("brief", {}).get("sha256")
    return {
        "name": brief.name,
        "sha256": brief.sha256(),
        "unchanged": drafted == brief.sha256(),
        "brief": brief.model_dump(mode="json"),
    }
