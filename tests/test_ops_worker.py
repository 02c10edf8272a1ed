"""prefect.yaml's deployments run by a real process worker (`clarion worker`) on the pool `clarion
deploy` made, against a real Prefect server started for this module, with the shared concurrency
limit keeping two writers apart in Prefect rather than on the warehouse's file lock."""

from __future__ import annotations

import time
from pathlib import Path
from uuid import UUID

import pytest
from ops_helpers import clarion_json, prefect_server, worker

from clarion.config import GenerateSettings
from clarion.synth.generator import generate

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

WRITERS = {
    "clarion-pipeline/daily",
    "clarion-pipeline/weekly-report",
    "clarion-pipeline/content",
    "triggered-campaign/triggered-campaign",
    "retention/retention",
}


@pytest.fixture(scope="module")
def ops(tmp_path_factory) -> dict:
    """A Prefect server of its own and a project with a generated 120-contact CRM."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    tmp = tmp_path_factory.mktemp("ops")
    root = tmp / "shop"
    root.mkdir()
    (root / "clarion.yaml").write_text(
        "warehouse:\n  path: var/warehouse.duckdb\ngenerate:\n  out: var/crm\n"
    )
    generate(GenerateSettings(customers=120, seed=5, defects=0.0), out=root / "var" / "crm")
    with prefect_server(tmp / "prefect-home", tmp / "server.log") as url:  # noqa: SIM117
        with temporary_settings(updates={PREFECT_API_URL: url}):  # this process's clients use it too
            yield {"root": root, "url": url, "tmp": tmp}


def _states(client, flow_run_id: UUID) -> list[tuple[str, str, object]]:
    return [(s.type.value, s.name, s.timestamp) for s in client.read_flow_run_states(flow_run_id)]


def _logs(client, flow_run_id: UUID) -> list:
    """The log lines of a flow run and of its subflows (the pipeline's stages)."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )

    children = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id]))
    )
    ids = [flow_run_id, *(c.id for c in children)]
    return client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)))


def test_a_worker_runs_the_deployments_one_writer_at_a_time_with_the_library_logs(ops) -> None:
    from prefect.client.orchestration import get_client
    from project_helpers import query

    from clarion.config import load_settings
    from clarion.ops.deploy import deploy
    from clarion.ops.deployments import listing, trigger

    root, url = ops["root"], ops["url"]
    settings = load_settings(root / "clarion.yaml", env={})
    first = clarion_json(root, url, "deploy", "--paused")
    assert first["pool"] == {"name": "clarion", "type": "process", "created": True}
    assert first["limit"] == {"name": "clarion-warehouse", "slots": 1, "created": True}
    assert {d["full_name"] for d in first["deployments"] if d["limited"]} == WRITERS
    import yaml

    declared = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]  # counted apart
    assert len(first["deployments"]) == len(declared) and first["folder"] == str(root)
    again = deploy(settings, root / "clarion.yaml", paused=True)  # idempotent: nothing new, same deployments
    assert again["pool"]["created"] is False and again["limit"]["created"] is False
    assert [d["id"] for d in again["deployments"]] == [d["id"] for d in first["deployments"]]

    log = ops["tmp"] / "worker.log"
    with worker(root, url, log) as process, get_client(sync_client=True) as client:
        writer = trigger(settings, "daily", {"stages": ["extract"]}, "api:ops-test")
        waiter = trigger(settings, "retention", None, "api:ops-test")
        a, b = UUID(writer["flow_run_id"]), UUID(waiter["flow_run_id"])
        started = time.monotonic()
        while True:  # both finish, whatever order the worker saw them in
            runs = [client.read_flow_run(a), client.read_flow_run(b)]
            if all(r.state.is_final() for r in runs):
                break
            assert process.poll() is None, f"clarion worker exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() - started < 150, f"{[r.state for r in runs]}\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        assert all(r.state.is_completed() for r in runs), (
            f"{[r.state for r in runs]}\n{log.read_text()[-3000:]}"
        )
        run_a, run_b = runs
        # one of the two waited in Prefect while the other ran: AwaitingConcurrencySlot, then Running
        # only once the first had finished
        (first_run, second_run) = sorted(runs, key=lambda r: r.start_time)
        history = _states(client, second_run.id)
        names = [name for _, name, _ in history]
        assert "AwaitingConcurrencySlot" in names, names
        awaiting = min(t for _, name, t in history if name == "AwaitingConcurrencySlot")
        running = min(t for kind, _, t in history if kind == "RUNNING")
        assert running >= first_run.end_time, (running, first_run.end_time)
        waited = (running - awaiting).total_seconds()
        print(f"\nsecond run ({second_run.name}) waited {waited:.1f} s in AwaitingConcurrencySlot")
        assert "triggered-by:api:ops-test" in run_a.tags and "triggered-by:api:ops-test" in run_b.tags

        logs = {r.id: _logs(client, r.id) for r in runs}
        listed = {d["full_name"]: d for d in listing(settings)}
    # the library's own log lines (clarion.*, not only Prefect's) reached the flow run's logs
    mine = [(entry.name, entry.message) for entry in logs[a] if entry.name.startswith("clarion.")]
    assert any(n == "clarion.extract.runner" and "landed load" in m for n, m in mine), mine
    # and the run that waited never waited on the warehouse's file lock
    assert not any("waiting up to" in entry.message for entry in logs[a] + logs[b])
    # the warehouse has the worker's run, recorded under its flow run
    [(status, stages)] = query(
        settings, "select status, stages from audit.runs where flow_run_id = ?", [str(a)]
    )
    assert status == "completed" and "extract" in stages
    assert query(settings, "select count(*) from raw.contacts")[0][0] > 0
    daily = listed["clarion-pipeline/daily"]
    assert daily["work_pool"] == "clarion" and daily["concurrency_limit"] == "clarion-warehouse"
    assert daily["last_run"]["flow_run_id"] == str(a) and daily["last_run"]["state"] == "Completed"
    assert daily["schedules"] == [{"active": True, "cron": "0 5 * * *", "timezone": "UTC"}]
    assert listed["content-approval/content-approval"]["concurrency_limit"] is None
