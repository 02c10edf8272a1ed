"""`clarion deploy` and starting a deployment run from code (clarion.ops), against the session's
real Prefect server. Deployment names here are the test's own, so `clarion serve`'s tests on the same
server keep theirs."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import pytest
from ops_helpers import PREFECT_YAML

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture
def deployed(tmp_path: Path, monkeypatch) -> dict:
    """This project's two deployments registered with `clarion.ops.deploy` (paused schedules)."""
    from clarion.config import load_settings
    from clarion.ops.deploy import deploy

    monkeypatch.chdir(tmp_path)
    (tmp_path / "clarion.yaml").write_text("warehouse:\n  path: var/warehouse.duckdb\n")
    (tmp_path / "prefect.yaml").write_text(PREFECT_YAML)
    settings = load_settings(tmp_path / "clarion.yaml", env={})
    result = deploy(settings, tmp_path / "clarion.yaml", paused=True)
    return {"root": tmp_path, "settings": settings, "result": result}


def _read(full_name: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_deployment_by_name(full_name)


def test_deploy_registers_on_a_process_pool_and_links_only_the_writers_to_the_limit(deployed) -> None:
    from prefect.client.orchestration import get_client

    root, result = deployed["root"], deployed["result"]
    assert result["source"] == str(root / "prefect.yaml") and result["folder"] == str(root)
    assert [(d["full_name"], d["limited"]) for d in result["deployments"]] == [
        ("clarion-pipeline/ops-writer", True),
        ("content-approval/ops-reader", False),
    ]
    writer, reader = _read("clarion-pipeline/ops-writer"), _read("content-approval/ops-reader")
    with get_client(sync_client=True) as client:
        pool = client.read_work_pool("clarion")
    assert pool.type == "process"
    assert writer.work_pool_name == reader.work_pool_name == "clarion"
    assert writer.global_concurrency_limit.name == "clarion-warehouse"
    assert writer.global_concurrency_limit.limit == 1
    assert writer.concurrency_options.collision_strategy.value == "ENQUEUE"
    assert reader.global_concurrency_limit is None  # an approval waiting days must not hold the writers
    # runs in the project folder with its own settings file, from the installed code (nothing copied)
    assert writer.parameters["config_path"] == str(root / "clarion.yaml")
    assert writer.pull_steps == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(root)}}
    ]
    assert writer.job_variables["working_dir"] == str(root)
    assert writer.job_variables["env"]["PREFECT_LOGGING_EXTRA_LOGGERS"] == "clarion"
    assert writer.paused and [s.schedule.cron for s in writer.schedules] == ["0 5 * * *"]


def test_deploy_again_keeps_the_limit_that_a_plain_registration_deletes(deployed) -> None:
    """Prefect deletes the limit a deployment is linked to when the deployment is registered again
    with concurrency_limit null (what `prefect deploy` and `clarion serve` send). `clarion deploy`
    leaves that field out, and links the writers again, so running it twice, or after those, keeps
    one shared limit."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from clarion.ops.deploy import deploy
    from clarion.serve import specs

    root, settings = deployed["root"], deployed["settings"]
    again = deploy(settings, root / "clarion.yaml", paused=True)
    assert again["pool"]["created"] is False and again["limit"]["created"] is False
    assert [d["id"] for d in again["deployments"]] == [d["id"] for d in deployed["result"]["deployments"]]
    assert _read("clarion-pipeline/ops-writer").global_concurrency_limit.name == "clarion-warehouse"

    [writer] = [s for s in specs(root / "clarion.yaml") if s.name == "ops-writer"]
    writer.to_deployment(paused=True).apply(work_pool_name="clarion")  # as `prefect deploy` would
    with get_client(sync_client=True) as client, pytest.raises(ObjectNotFound):
        client.read_global_concurrency_limit_by_name("clarion-warehouse")  # gone, for every deployment
    restored = deploy(settings, root / "clarion.yaml", paused=True)
    assert restored["limit"]["created"] is True
    assert _read("clarion-pipeline/ops-writer").global_concurrency_limit.name == "clarion-warehouse"


def test_trigger_starts_a_run_recording_who_started_it(deployed) -> None:
    from prefect.client.orchestration import get_client

    from clarion.ops.deployments import listing, trigger

    settings, root = deployed["settings"], deployed["root"]
    started = trigger(settings, "ops-writer", {"stages": ["prepare", "extract"]}, "api:crm-sync")
    assert started["deployment"] == "clarion-pipeline/ops-writer" and started["state"] == "Scheduled"
    assert started["triggered_by"] == "api:crm-sync"
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(started["flow_run_id"]))
    assert run.name == started["flow_run_name"]
    assert "triggered-by:api:crm-sync" in run.tags
    # the given parameters over the deployment's defaults
    assert run.parameters["stages"] == ["prepare", "extract"] and run.parameters["wait_seconds"] == 300
    assert run.parameters["config_path"] == str(root / "clarion.yaml")
    # the full name works too
    other = trigger(settings, "content-approval/ops-reader", None, "api:crm-sync")
    assert other["deployment"] == "content-approval/ops-reader"

    listed = {d["full_name"]: d for d in listing(settings)}
    writer = listed["clarion-pipeline/ops-writer"]
    assert writer["last_run"]["flow_run_id"] == started["flow_run_id"]
    assert writer["last_run"]["state"] == "Scheduled"
    assert writer["flow"] == "clarion-pipeline" and writer["name"] == "ops-writer"
    assert writer["schedules"] == [{"active": True, "cron": "0 5 * * *", "timezone": "UTC"}]
    assert writer["concurrency_limit"] == "clarion-warehouse" and writer["work_pool"] == "clarion"
    assert "stages" in writer["parameters"] and "as_of" in writer["parameters"]
    assert writer["description"].startswith("Run the stages in order") and writer["paused"] is True


def test_an_unknown_deployment_names_the_ones_that_exist(deployed) -> None:
    from clarion.ops.deployments import UnknownDeploymentError, trigger

    with pytest.raises(UnknownDeploymentError) as caught:
        trigger(deployed["settings"], "dialy", None, "api:crm-sync")
    message = str(caught.value)
    assert "no deployment 'dialy'" in message
    assert "clarion-pipeline/ops-writer" in message and "content-approval/ops-reader" in message
    assert caught.value.http_status == 404
    with pytest.raises(UnknownDeploymentError, match="no deployment 'retention/ops-writer'"):
        trigger(deployed["settings"], "retention/ops-writer", None, "api:crm-sync")


def test_parameters_are_checked_against_the_flow_signature(deployed) -> None:
    from clarion.ops.deployments import DeploymentParameterError, trigger

    settings = deployed["settings"]
    with pytest.raises(DeploymentParameterError) as caught:
        trigger(settings, "ops-writer", {"stages": ["prepare"], "stagez": ["x"]}, "api:crm-sync")
    message = str(caught.value)
    assert "takes no parameter 'stagez'" in message and "stages" in message and "wait_seconds" in message
    with pytest.raises(DeploymentParameterError) as caught:  # a known name with a value of the wrong type
        trigger(settings, "ops-writer", {"stages": ["publish"]}, "api:crm-sync")
    assert "clarion-pipeline/ops-writer refused the parameters" in str(caught.value)
    assert "publish" in str(caught.value)


def test_a_principal_that_is_not_a_plain_name_is_refused(deployed) -> None:
    from clarion.ops.deployments import trigger
    from clarion.ops.server import OpsError

    for bad in ("jane.doe@example.com", "", "two words"):
        with pytest.raises(OpsError, match="is not a name Clarion records"):
            trigger(deployed["settings"], "ops-writer", None, bad)


def test_no_reachable_server_says_how_to_start_one(deployed) -> None:
    from api_helpers import free_port
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from clarion.ops.deployments import listing, trigger
    from clarion.ops.server import PrefectUnavailableError

    closed = f"http://127.0.0.1:{free_port()}/api"
    with temporary_settings(updates={PREFECT_API_URL: closed}):
        with pytest.raises(PrefectUnavailableError) as caught:
            trigger(deployed["settings"], "ops-writer", None, "api:crm-sync")
        assert f"no Prefect server answers at {closed}" in str(caught.value)
        assert "prefect server start" in str(caught.value) and caught.value.http_status == 503
        with pytest.raises(PrefectUnavailableError):
            listing(deployed["settings"])
    unset = pytest.raises(PrefectUnavailableError, match=r"PREFECT_API_URL is not set.*prefect server start")
    with temporary_settings(restore_defaults={PREFECT_API_URL}), unset:
        listing(deployed["settings"])


def test_a_worker_needs_the_pool_deploy_makes(deployed) -> None:
    from clarion.ops.server import OpsError
    from clarion.ops.worker import check_pool, command

    check_pool("clarion")  # made by deploy
    with pytest.raises(OpsError, match="no work pool 'elsewhere'; run `clarion deploy` first"):
        check_pool("elsewhere")
    argv = command("clarion", limit=2)
    assert argv[1:6] == ["-m", "prefect", "worker", "start", "--pool"]
    assert argv[7:9] == ["--type", "process"] and argv[-2:] == ["--limit", "2"]


def test_the_commands_print_what_they_did(deployed, monkeypatch) -> None:
    from click.testing import CliRunner

    from clarion.cli import cli

    monkeypatch.setenv("PREFECT_HOME", str(deployed["root"] / "prefect-home"))  # not the project's var/
    runner = CliRunner()
    done = runner.invoke(cli, ["deploy", "--paused"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert "work pool       clarion (process, exists)" in done.output
    assert "limit           clarion-warehouse (1 slot, exists)" in done.output
    assert "clarion-pipeline/ops-writer" in done.output and "limited: clarion-warehouse" in done.output
    assert "Start a worker: clarion worker" in done.output
    started = runner.invoke(
        cli, ["deployments", "run", "ops-writer", "--param", 'stages=["prepare"]', "--by", "oncall"]
    )
    assert started.exit_code == 0, started.output
    assert (
        started.output.startswith("clarion-pipeline/ops-writer: flow run ")
        and "(Scheduled)" in started.output
    )
    listed = runner.invoke(cli, ["deployments", "list"])
    assert "clarion-pipeline/ops-writer\n  schedule   0 5 * * * (UTC) (paused)" in listed.output
    assert "limit clarion-warehouse" in listed.output and "last run   Scheduled" in listed.output
    wrong = runner.invoke(cli, ["deployments", "run", "ops-writer", "--param", "stagez=x"])
    assert wrong.exit_code == 1 and "error: " in wrong.output and "'stagez'" in wrong.output
