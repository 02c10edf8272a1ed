"""Reading back what a flow run left in the Prefect server the tests run against."""

from __future__ import annotations

from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
)


def flow_run(flow_run_id: str):
    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(flow_run_id))


def artifacts(flow_run_id: str) -> list:
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)]))
        )


def subflow_names(flow_run_id: str) -> list[str]:
    """Names of the flows run as subflows of this run (their parent task belongs to it)."""
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[UUID(flow_run_id)])
            )
        )
        return sorted(client.read_flow(child.flow_id).name for child in children)


def child_flow_run(flow_run_id: str, flow_name: str) -> str:
    """The id of the subflow run of ``flow_name`` under a flow run."""
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[UUID(flow_run_id)])
            )
        )
        for child in children:
            if client.read_flow(child.flow_id).name == flow_name:
                return str(child.id)
    raise LookupError(f"no {flow_name} subflow under {flow_run_id}")


def task_runs(flow_run_id: str) -> dict[str, tuple[str, int]]:
    """Task run name -> (final state type, how many times it ran) for one flow run."""
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[UUID(flow_run_id)]))
        )
    return {r.name: (r.state.type.value, r.run_count) for r in runs}


def flow_run_events(
    flow_run_ids: list[str], names: list[str], wait_for: tuple[str, str], timeout: float = 60
) -> set[tuple[str, str]]:
    """(event, flow run id) of the events named ``names`` the server stored about these flow runs,
    read once it holds ``wait_for`` (an (event, flow run id) pair sent after the ones of interest:
    the server stores events in batches, a few seconds after they are sent). At most 50 (the API's
    page)."""
    import time

    resources = [f"prefect.flow-run.{i}" for i in flow_run_ids]
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            response = client.request(
                "POST",
                "/events/filter",
                json={"filter": {"resource": {"id": resources}, "event": {"name": names}}, "limit": 50},
            )
            found = {
                (e["event"], e["resource"]["prefect.resource.id"].removeprefix("prefect.flow-run."))
                for e in response.json()["events"]
            }
            if wait_for in found or time.monotonic() > deadline:
                return found
            time.sleep(0.5)
