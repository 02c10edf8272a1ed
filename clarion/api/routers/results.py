"""Campaign results against their control groups (the latest `clarion results` measurement)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from clarion import results as campaign_results
from clarion.api.auth import require
from clarion.api.problems import Problem
from clarion.api.routers.common import ERRORS_404, Limit, Offset, plain, reader
from clarion.results import ResultsError
from clarion.results.views import measured
from clarion.warehouse import relation_exists

router = APIRouter(
    prefix="/api/v1/results", tags=["results"], dependencies=[Depends(require("read:aggregates"))]
)


class Results(BaseModel):
    results_run_id: str | None = Field(description="the measurement; null before the first")
    alpha: float = Field(description="1 - the confidence level of every interval")
    campaigns: list[dict[str, Any]] = Field(
        description="per campaign: exposure dates, arms (customers, delivered, opened, clicked, "
        "unsubscribed, converters, rate with interval, uplift, incremental revenue, verdict), "
        "experiment, sample-ratio check, uplift by segment, notes"
    )
    total: int = Field(description="campaigns matching (before limit and offset)")
    limit: int
    offset: int


@router.get(
    "",
    response_model=Results,
    summary="What each campaign did against its control group",
    responses=ERRORS_404,
)
def results(
    request: Request,
    campaign: Annotated[str | None, Query(max_length=100, description="one campaign only")] = None,
    every: Annotated[
        bool,
        Query(
            alias="all",
            description="also campaigns without a control group and with one variant (counts only), "
            "as `clarion results --all`",
        ),
    ] = False,
    limit: Limit = 50,
    offset: Offset = 0,
) -> dict[str, Any]:
    with reader(request).pinned() as (settings, cur):
        if not relation_exists(cur, "ml", "campaign_experiments"):
            summary = {"results_run_id": None, "alpha": settings.experiments.alpha, "campaigns": []}
        else:
            try:
                summary = campaign_results.load(settings, campaign)
            except ResultsError as exc:
                raise Problem(404, str(exc)) from None
    shown = [c for c in summary["campaigns"] if every or campaign is not None or measured(c)]
    return plain(
        {
            "results_run_id": summary["results_run_id"] or None,
            "alpha": summary["alpha"],
            "campaigns": shown[offset : offset + limit],
            "total": len(shown),
            "limit": limit,
            "offset": offset,
        }
    )
