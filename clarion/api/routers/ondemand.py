"""`POST /api/v1/drafts/on-demand`: one checked draft while the caller waits (clarion.content.ondemand).

The app holds one `Drafter` (created at the first request, its models then kept warm); drafts are
generated one at a time. The draft is stored as the batch stage stores drafts, so the approve,
reject and edit routes and `clarion export` take it from there.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from clarion.api.auth import Principal, require
from clarion.api.problems import Problem, responses
from clarion.content.ondemand import Drafter, OnDemandError

router = APIRouter(prefix="/api/v1", tags=["drafts"])
_creating = threading.Lock()


class OnDemandRequest(BaseModel):
    brief: str | dict[str, Any] = Field(
        description="a campaign name (a brief in content.briefs), or a whole brief as an object, "
        "validated as brief files are",
        examples=["winback-summer"],
    )
    segment: str | None = Field(
        None, description="a segment the brief targets", examples=["at_risk_high_value"]
    )
    pseudonym: str | None = Field(
        None, description="a customer's pseudonym (p_ + 16 hex digits): drafts for their segment"
    )
    channel: str = Field(description="one of the brief's channels", examples=["email"])


def drafter(request: Request) -> Drafter:
    """The app's one Drafter, created at the first request (loading the models takes seconds)."""
    state = request.app.state
    if getattr(state, "drafter", None) is None:
        with _creating:
            if getattr(state, "drafter", None) is None:
                state.drafter = Drafter(state.settings)
    return state.drafter


@router.post(
    "/drafts/on-demand",
    status_code=201,
    summary="Draft copy for one brief, audience and channel now; stored pending approval",
    responses=responses(400, 401, 403, 409),
)
async def on_demand(
    body: OnDemandRequest,
    request: Request,
    principal: Annotated[Principal, Depends(require("draft:generate"))],
) -> dict[str, Any]:
    settings = request.app.state.settings
    try:
        return await run_in_threadpool(
            drafter(request).draft,
            settings,
            brief=body.brief,
            segment=body.segment,
            pseudonym=body.pseudonym,
            channel=body.channel,
            by=principal.audit_name,
            wait_seconds=settings.api.write_wait_seconds,
        )
    except OnDemandError as exc:
        raise Problem(400, str(exc), errors=exc.problems) from None
