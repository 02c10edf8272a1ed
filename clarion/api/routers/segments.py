"""Segments of the latest finished scoring run: size, share, risk and value, profile, drivers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field

from clarion.api.auth import require
from clarion.api.problems import Problem
from clarion.api.routers.common import ERRORS, ERRORS_404, plain, reader
from clarion.segment.views import segments_listing

router = APIRouter(
    prefix="/api/v1/segments", tags=["segments"], dependencies=[Depends(require("read:aggregates"))]
)


class Segment(BaseModel):
    segment: str
    customers: int
    share: float = Field(description="share of the run's scored customers")
    mean_churn_risk: float | None = None
    mean_expected_value_eur: float | None = None
    profile: dict[str, Any] = Field(description="mean feature values of the segment")
    top_drivers: list[Any] = Field(description="reason families most often first for its customers")
    high_value_from_eur: float | None = None


class Segments(BaseModel):
    run_id: str | None = Field(description="the scoring run; null before the first one")
    as_of: str | None = None
    model_version: str | None = None
    segments: list[Segment]


class OneSegment(Segment):
    run_id: str
    as_of: str
    model_version: str


@router.get(
    "",
    response_model=Segments,
    summary="Every segment of the latest scoring run",
    responses=ERRORS,
)
def segments(request: Request) -> dict[str, Any]:
    with reader(request).cursor() as cur:
        return plain(segments_listing(cur))


@router.get(
    "/{name}",
    response_model=OneSegment,
    summary="One segment of the latest scoring run",
    responses=ERRORS_404,
)
def segment(request: Request, name: Annotated[str, Path(max_length=100)]) -> dict[str, Any]:
    with reader(request).cursor() as cur:
        listing = segments_listing(cur, name)
        if not listing["segments"]:
            known = [s["segment"] for s in segments_listing(cur)["segments"]]
            raise Problem(
                404,
                f"no segment {name!r} in the latest scoring run; segments: {', '.join(known) or 'none yet'}",
            )
    (seg,) = listing["segments"]
    return plain(
        {
            **seg,
            "run_id": listing["run_id"],
            "as_of": listing["as_of"],
            "model_version": listing["model_version"],
        }
    )
