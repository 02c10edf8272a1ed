"""Pipeline runs (audit.runs): status, stage summaries, the scrubbed error, and each run's lineage."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field

from clarion.api.auth import require
from clarion.api.problems import Problem
from clarion.api.routers.common import ERRORS, ERRORS_404, Limit, Offset, plain, reader
from clarion.lineage import LineageError, latest_manifest
from clarion.privacy.scrub import scrub
from clarion.runs import recent_runs

router = APIRouter(prefix="/api/v1/runs", tags=["runs"], dependencies=[Depends(require("read:aggregates"))])

RunId = Annotated[str, Path(max_length=80, description="the run id, e.g. 20261204T160102Z-1a2b3c4d")]


class Run(BaseModel):
    run_id: str
    flow_run_id: str | None = None
    command: str | None = None
    status: str = Field(description="running, completed, failed or interrupted")
    started_at: str | None = None
    finished_at: str | None = None
    stages: dict[str, Any] = Field(description="each finished stage's summary, by stage name")
    error: str | None = Field(None, description="why it failed (scrubbed of personal data)")


class Runs(BaseModel):
    runs: list[Run]
    limit: int
    offset: int


def _run(run: dict[str, Any]) -> dict[str, Any]:
    return plain({**run, "error": scrub(run["error"]) if run["error"] else None})


@router.get("", response_model=Runs, summary="The newest runs first", responses=ERRORS)
def runs(request: Request, limit: Limit = 20, offset: Offset = 0) -> dict[str, Any]:
    with reader(request).cursor() as cur:
        found = recent_runs(cur, limit, offset)
    return {"runs": [_run(r) for r in found], "limit": limit, "offset": offset}


def _one(request: Request, run_id: str) -> dict[str, Any]:
    with reader(request).cursor() as cur:
        found = recent_runs(cur, 1, 0, run_id)
    if not found:
        raise Problem(404, f"no run {run_id!r} in the published snapshot: GET /api/v1/runs lists them")
    return found[0]


@router.get("/{run_id}", response_model=Run, summary="One run", responses=ERRORS_404)
def run(request: Request, run_id: RunId) -> dict[str, Any]:
    return _run(_one(request, run_id))


class Lineage(BaseModel):
    run_id: str
    revision: str = Field(description="the manifest file (manifest.json, manifest.r2.json, ...)")
    manifest: dict[str, Any] = Field(description="inputs, code, settings and outputs of the run")


@router.get(
    "/{run_id}/lineage",
    response_model=Lineage,
    summary="The run's lineage manifest (its latest revision)",
    responses=ERRORS_404,
)
def lineage(request: Request, run_id: RunId) -> dict[str, Any]:
    _one(request, run_id)
    try:
        path = latest_manifest(reader(request).settings(), run_id)
    except LineageError:
        raise Problem(404, f"run {run_id} has no lineage manifest: it is written when a run ends") from None
    return {"run_id": run_id, "revision": path.name, "manifest": plain(json.loads(path.read_text()))}
