"""`GET /api/v1/deployments` and `POST /api/v1/deployments/{name}/runs` through a live API (real
uvicorn) against the session's real Prefect server."""

from __future__ import annotations

import contextvars
import threading
from pathlib import Path
from uuid import UUID

import pytest
from api_helpers import LiveServer
from ops_helpers import PREFECT_YAML

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture
def ops_api(tmp_path: Path, monkeypatch):
    """This project's deployments registered, keys for three roles, and the API serving it."""
    from clarion.api import create_app
    from clarion.api.keys import KeyStore
    from clarion.config import load_settings
    from clarion.ops.deploy import deploy

    monkeypatch.chdir(tmp_path)
    (tmp_path / "clarion.yaml").write_text("warehouse:\n  path: var/warehouse.duckdb\n")
    (tmp_path / "prefect.yaml").write_text(PREFECT_YAML)
    settings = load_settings(tmp_path / "clarion.yaml", env={})
    deploy(settings, tmp_path / "clarion.yaml", paused=True)
    store = KeyStore.for_settings(settings)
    keys = {
        role: store.create(f"ops-{role}", role, by="tests")[1] for role in ("service", "marketer", "engineer")
    }
    server = LiveServer(create_app(settings))
    # the server thread sees this test's Prefect server, as an API process started with PREFECT_API_URL does
    server.thread = threading.Thread(
        target=contextvars.copy_context().run, args=(server.server.run,), daemon=True
    )
    with server:
        yield server, keys


def test_deployments_are_listed_for_every_role_that_reads_aggregates(ops_api) -> None:
    server, keys = ops_api
    with server.client(keys["marketer"]) as http:
        answer = http.get("/api/v1/deployments")
    assert answer.status_code == 200, answer.text
    listed = {d["full_name"]: d for d in answer.json()}
    writer = listed["clarion-pipeline/ops-writer"]
    assert writer["concurrency_limit"] == "clarion-warehouse" and writer["work_pool"] == "clarion"
    assert writer["schedules"] == [{"active": True, "cron": "0 5 * * *", "timezone": "UTC"}]
    assert listed["content-approval/ops-reader"]["concurrency_limit"] is None
    with server.client() as http:
        assert http.get("/api/v1/deployments").status_code == 401


def test_a_service_key_starts_a_run_recorded_under_its_name(ops_api) -> None:
    from prefect.client.orchestration import get_client

    server, keys = ops_api
    with server.client(keys["service"]) as http:
        answer = http.post(
            "/api/v1/deployments/ops-writer/runs", json={"parameters": {"stages": ["extract"]}}
        )
        by_full_name = http.post("/api/v1/deployments/content-approval/ops-reader/runs")
    assert answer.status_code == 202, answer.text
    started = answer.json()
    assert started["deployment"] == "clarion-pipeline/ops-writer" and started["state"] == "Scheduled"
    assert started["triggered_by"] == "api:ops-service"
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(started["flow_run_id"]))
    assert "triggered-by:api:ops-service" in run.tags and run.parameters["stages"] == ["extract"]
    assert (
        by_full_name.status_code == 202 and by_full_name.json()["deployment"] == "content-approval/ops-reader"
    )


def test_refusals_are_problems_that_say_what_to_do(ops_api) -> None:
    server, keys = ops_api
    with server.client(keys["marketer"]) as http:
        forbidden = http.post("/api/v1/deployments/ops-writer/runs")
    assert forbidden.status_code == 403 and "run:trigger" in forbidden.json()["detail"]
    with server.client(keys["engineer"]) as http:
        unknown = http.post("/api/v1/deployments/dialy/runs")
        bad = http.post("/api/v1/deployments/ops-writer/runs", json={"parameters": {"stagez": ["x"]}})
    assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/problem+json"
    assert "no deployment 'dialy'" in unknown.json()["detail"]
    assert "clarion-pipeline/ops-writer" in unknown.json()["detail"]
    assert bad.status_code == 422 and "takes no parameter 'stagez'" in bad.json()["detail"]
