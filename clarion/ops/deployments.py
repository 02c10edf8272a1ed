"""The deployments registered on the Prefect server, and starting one of them from code (the API's
`GET /deployments` and `POST /deployments/{name}/runs`, built on these).

The server is the one PREFECT_API_URL names. A run started here is an ordinary deployment run: a
worker (or `clarion serve`) picks it up, under the deployment's concurrency limit. Who started it is
recorded on the flow run as the tag ``triggered-by:<principal>``, where the principal is the name of
an API key (``api:<key name>``) or a user name given on the command line: a name, never a person's
contact details.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from clarion.config import Settings
from clarion.ops.server import OpsError, require_server

TRIGGERED_BY = "triggered-by:"
PRINCIPAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._-]{0,79}")


class UnknownDeploymentError(OpsError):
    """No deployment of that name is registered."""

    http_status = 404


class DeploymentParameterError(OpsError):
    """The parameters do not fit the deployment's flow."""

    http_status = 422


def listing(settings: Settings) -> list[dict[str, Any]]:
    """Every deployment on the server: its name, flow, schedules, description, work pool, the
    parameters it accepts and the state of its latest run (None before the first)."""
    from prefect.client.orchestration import get_client

    require_server()
    with get_client(sync_client=True) as client:
        flows = {f.id: f.name for f in client.read_flows()}
        return [_describe(client, d, flows.get(d.flow_id, "?")) for d in _all(client)]


def trigger(
    settings: Settings, name: str, parameters: dict[str, Any] | None, principal: str
) -> dict[str, Any]:
    """Start a run of the deployment ``name`` (``daily``, or ``clarion-pipeline/daily`` when two flows
    have a deployment of that name) with ``parameters`` over its defaults, recorded as started by
    ``principal``. Returns the flow run's id, name and state (Scheduled: a worker takes it from there)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    if not isinstance(principal, str) or not PRINCIPAL.fullmatch(principal):
        raise OpsError(
            f"principal {principal!r} is not a name Clarion records: use letters, digits and : . _ - "
            "(at most 80), e.g. the API key's audit name `api:crm-sync`"
        )
    parameters = dict(parameters or {})
    require_server()
    with get_client(sync_client=True) as client:
        deployment = find(client, name)
        full_name = f"{client.read_flow(deployment.flow_id).name}/{deployment.name}"
        _check_parameters(deployment, full_name, parameters)
        try:
            run = client.create_flow_run_from_deployment(
                deployment.id, parameters=parameters, tags=[TRIGGERED_BY + principal]
            )
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code in (409, 422):  # the server's check against the flow's signature
                detail = exc.response.json().get("detail", exc.response.text)
                raise DeploymentParameterError(
                    f"{full_name} refused the parameters: {detail}; it takes {_accepted_text(deployment)}"
                ) from None
            raise
    return {
        "flow_run_id": str(run.id),
        "flow_run_name": run.name,
        "state": run.state.name if run.state else None,
        "deployment": full_name,
        "parameters": sorted(parameters),
        "triggered_by": principal,
    }


def find(client: Any, name: str) -> Any:
    """The deployment called ``name`` (``deployment`` or ``flow/deployment``), or an error naming
    the deployments that exist."""
    from prefect.exceptions import ObjectNotFound

    if not isinstance(name, str) or not name.strip():
        raise UnknownDeploymentError("give a deployment name, e.g. `daily`; " + _existing(client))
    if "/" in name:
        try:
            return client.read_deployment_by_name(name)
        except ObjectNotFound:
            raise UnknownDeploymentError(f"no deployment {name!r}; " + _existing(client)) from None
    matches = [d for d in _all(client) if d.name == name]
    if not matches:
        raise UnknownDeploymentError(f"no deployment {name!r}; " + _existing(client))
    if len(matches) > 1:
        flows = sorted(f"{client.read_flow(d.flow_id).name}/{name}" for d in matches)
        raise UnknownDeploymentError(
            f"{len(matches)} flows have a deployment {name!r}: {', '.join(flows)}; give it as flow/name"
        )
    return matches[0]


def _all(client: Any) -> list[Any]:
    from prefect.client.schemas.sorting import DeploymentSort

    return list(client.read_deployments(sort=DeploymentSort.NAME_ASC))


def _existing(client: Any) -> str:
    flows = {f.id: f.name for f in client.read_flows()}
    names = sorted(f"{flows.get(d.flow_id, '?')}/{d.name}" for d in _all(client))
    if not names:
        return "the server has no deployments: register them with `clarion deploy`"
    return f"the deployments are: {', '.join(names)}"


def _accepted(deployment: Any) -> list[str]:
    schema = deployment.parameter_openapi_schema or {}
    return sorted((schema.get("properties") or {}).keys())


def _accepted_text(deployment: Any) -> str:
    accepted = _accepted(deployment)
    return ", ".join(accepted) if accepted else "no parameters"


def _check_parameters(deployment: Any, full_name: str, parameters: dict[str, Any]) -> None:
    unknown = sorted(str(k) for k in parameters if k not in _accepted(deployment))
    if unknown:
        raise DeploymentParameterError(
            f"{full_name} takes no parameter {', '.join(repr(u) for u in unknown)}; "
            f"it takes {_accepted_text(deployment)}"
        )


def _describe(client: Any, deployment: Any, flow: str) -> dict[str, Any]:
    last = _last_run(client, deployment.id)
    return {
        "name": deployment.name,
        "flow": flow,
        "full_name": f"{flow}/{deployment.name}",
        "description": deployment.description,
        "schedules": [_schedule(s) for s in deployment.schedules or []],
        "paused": bool(deployment.paused),
        "work_pool": deployment.work_pool_name,
        "concurrency_limit": (
            deployment.global_concurrency_limit.name if deployment.global_concurrency_limit else None
        ),
        "parameters": _accepted(deployment),
        "last_run": last,
    }


def _schedule(schedule: Any) -> dict[str, Any]:
    inner = schedule.schedule
    described: dict[str, Any] = {"active": bool(schedule.active)}
    for key in ("cron", "timezone", "interval", "rrule"):
        value = getattr(inner, key, None)
        if value is not None:
            described[key] = value.total_seconds() if key == "interval" else value
    return described


def _last_run(client: Any, deployment_id: Any) -> dict[str, Any] | None:
    """The latest run that was due by now (a schedule's runs for the coming days are not runs yet)."""
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    runs = client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        flow_run_filter=FlowRunFilter(
            expected_start_time=FlowRunFilterExpectedStartTime(before_=datetime.now(UTC))
        ),
        sort=FlowRunSort.EXPECTED_START_TIME_DESC,
        limit=1,
    )
    if not runs:
        return None
    run = runs[0]
    return {
        "flow_run_id": str(run.id),
        "name": run.name,
        "state": run.state.name if run.state else None,
        "state_type": run.state.type.value if run.state else None,
        "start_time": run.start_time.isoformat() if run.start_time else None,
        "end_time": run.end_time.isoformat() if run.end_time else None,
    }
