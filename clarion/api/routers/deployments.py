"""`GET /api/v1/deployments` and `POST /api/v1/deployments/{name}/runs`: the Prefect deployments
and starting a run of one (clarion.ops.deployments; the server PREFECT_API_URL names)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel, Field

from clarion.api.auth import Principal, require
from clarion.api.problems import responses

router = APIRouter(prefix="/api/v1", tags=["deployments"])


class LastRun(BaseModel):
    flow_run_id: str
    name: str
    state: str | None
    state_type: str | None
    start_time: str | None
    end_time: str | None


class Deployment(BaseModel):
    name: str
    flow: str
    full_name: str = Field(description="flow/deployment, what `prefect deployment run` takes")
    description: str | None
    schedules: list[dict[str, Any]]
    paused: bool
    work_pool: str | None
    concurrency_limit: str | None = Field(description="the global concurrency limit it shares, if any")
    parameters: list[str] = Field(description="the flow parameters a run may set")
    last_run: LastRun | None


class RunRequest(BaseModel):
    parameters: dict[str, Any] | None = Field(
        None, description='flow parameters over the deployment\'s defaults, e.g. {"stages": ["extract"]}'
    )


class RunStarted(BaseModel):
    flow_run_id: str
    flow_run_name: str
    state: str | None = Field(description="Scheduled: a worker starts it (or it waits for the limit)")
    deployment: str
    parameters: list[str] = Field(description="the parameters given")
    triggered_by: str = Field(description="recorded on the flow run as the tag triggered-by:<this>")


@router.get(
    "/deployments",
    response_model=list[Deployment],
    summary="The Prefect deployments with their schedules and latest run",
    responses=responses(401, 403, 503),
)
def deployments(
    request: Request, principal: Annotated[Principal, Depends(require("read:aggregates"))]
) -> list[dict[str, Any]]:
    from clarion.ops.deployments import listing

    return listing(request.app.state.settings)


@router.post(
    "/deployments/{name:path}/runs",
    response_model=RunStarted,
    status_code=202,
    summary="Start a run of a deployment (`daily`, or `flow/deployment`); a worker runs it",
    responses=responses(400, 401, 403, 404, 422, 503),
)
def start_run(
    name: str,
    request: Request,
    principal: Annotated[Principal, Depends(require("run:trigger"))],
    body: Annotated[RunRequest | None, Body()] = None,
) -> dict[str, Any]:
    from clarion.ops.deployments import trigger

    parameters = body.parameters if body is not None else None
    return trigger(request.app.state.settings, name, parameters, principal.audit_name)
