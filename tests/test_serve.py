"""`clarion serve`: the deployments of prefect.yaml, served from one process against a real Prefect server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from serve_helpers import registered, serving, wait_for

from clarion.cli import cli

pytestmark = pytest.mark.usefixtures("prefect_server")

REPO = Path(__file__).resolve().parents[1]
NAMES = ["daily", "content-approval", "weekly-report", "content", "triggered-campaign", "retention", "alert"]


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def repo_deployments() -> list[dict]:
    return yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]


def expected_parameters(entry: dict, config: Path) -> dict:
    return {**entry["parameters"], "config_path": str(config.resolve())}


@pytest.fixture
def served_project(project, monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))  # not var/ of the repository
    project()
    return tmp_path


def test_list_shows_every_deployment_of_prefect_yaml_with_its_schedule(served_project) -> None:
    result = invoke("serve", "--list")
    assert result.exit_code == 0, result.output
    assert f"7 deployments from {REPO / 'prefect.yaml'}" in result.output
    for name in ("clarion-pipeline/daily", "content-approval/content-approval"):
        assert name in result.output
    for name in ("clarion-pipeline/weekly-report", "clarion-pipeline/content"):
        assert name in result.output
    assert "0 5 * * * (UTC)" in result.output and "0 7 * * 1 (UTC)" in result.output
    assert f"config_path={served_project / 'clarion.yaml'}" in result.output
    assert "prefect deployment run 'clarion-pipeline/daily'" in result.output


def test_list_json_equals_prefect_yaml_with_the_config_in_use(served_project) -> None:
    result = invoke("serve", "--list", "--json")
    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout)
    assert listing["source"] == str(REPO / "prefect.yaml")
    config = served_project / "clarion.yaml"
    got = listing["deployments"]
    assert [d["name"] for d in got] == [e["name"] for e in repo_deployments()] == NAMES
    for entry, served in zip(repo_deployments(), got, strict=True):
        assert served["entrypoint"] == entry["entrypoint"]
        assert served["description"] == entry["description"]
        assert served["schedules"] == entry.get("schedules", [])
        assert served["parameters"] == expected_parameters(entry, config)
        assert served["triggers"] == entry.get("triggers", [])


def test_a_prefect_yaml_beside_the_config_is_served_instead(served_project) -> None:
    (served_project / "prefect.yaml").write_text(
        "deployments:\n"
        "  - name: nightly\n"
        "    entrypoint: flows/pipeline.py:pipeline\n"
        "    parameters: {config_path: clarion.yaml, stages: [prepare]}\n"
        "    schedules: [{cron: '30 1 * * *', timezone: Europe/Paris}]\n"
    )
    listing = json.loads(invoke("serve", "--list", "--json").stdout)
    assert listing["source"] == str(served_project / "prefect.yaml")
    [only] = listing["deployments"]
    assert only["full_name"] == "clarion-pipeline/nightly"
    assert only["schedules"] == [{"cron": "30 1 * * *", "timezone": "Europe/Paris"}]


def test_an_unknown_entrypoint_names_the_deployment_and_the_field(tmp_path) -> None:
    from clarion.serve import ServeError, deployments

    bad = tmp_path / "prefect.yaml"
    bad.write_text(
        "deployments:\n"
        "  - name: daily\n    entrypoint: flows/pipeline.py:pipeline\n"
        "  - name: broken\n    entrypoint: flows/nope.py:pipeline\n"
    )
    with pytest.raises(ServeError) as caught:
        deployments(None, None, bad)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "deployments[1] (broken)" in message and "'flows/nope.py:pipeline'" in message
    assert "cannot be imported" in message and "flows/pipeline.py:pipeline" in message  # what to write


def test_a_missing_name_a_repeated_name_or_a_non_flow_is_refused_with_what_to_write(tmp_path) -> None:
    from clarion.serve import ServeError, deployments

    bad = tmp_path / "prefect.yaml"
    bad.write_text("deployments:\n  - entrypoint: flows/pipeline.py:pipeline\n")
    with pytest.raises(ServeError, match=r"deployments\[0\]: `name` is missing.*name: daily"):
        deployments(None, None, bad)  # type: ignore[arg-type]
    bad.write_text(
        "deployments:\n"
        "  - {name: x, entrypoint: flows/pipeline.py:pipeline}\n"
        "  - {name: x, entrypoint: flows/pipeline.py:pipeline}\n"
    )
    with pytest.raises(ServeError, match=r"two deployments are called 'clarion-pipeline/x'"):
        deployments(None, None, bad)  # type: ignore[arg-type]
    bad.write_text("deployments:\n  - name: x\n    entrypoint: flows/pipeline.py:STAGES\n")
    with pytest.raises(ServeError, match=r"deployments\[0\] \(x\).*names a list.*not a Prefect flow"):
        deployments(None, None, bad)  # type: ignore[arg-type]


def test_the_triggered_campaign_deployment_runs_on_the_trigger_event_with_its_trigger_id(
    served_project,
) -> None:
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

    from clarion.serve import specs
    from clarion.triggers import EVENT, RESOURCE_PREFIX

    listing = invoke("serve", "--list").output
    assert "trigger     on clarion.trigger.fired with trigger_id={{ event.payload.trigger_id }}" in listing
    [spec] = [s for s in specs(served_project / "clarion.yaml") if s.name == "triggered-campaign"]
    [trigger] = spec.to_deployment().triggers
    assert isinstance(trigger, DeploymentEventTrigger) and trigger.enabled
    assert trigger.expect == {EVENT} and trigger.match.root == {"prefect.resource.id": RESOURCE_PREFIX + "*"}
    assert trigger.parameters == {"trigger_id": "{{ event.payload.trigger_id }}"}
    assert spec.parameters["config_path"] == str(served_project / "clarion.yaml")


@pytest.mark.parametrize(
    ("triggers", "fragment"),
    [
        ("{expect: [x]}", "`triggers` must be a list"),
        ("[just-a-string]", "triggers[0] is not a mapping"),
        ("[{type: evnt, expect: [x]}]", "triggers[0] is not a Prefect deployment trigger"),
        ("[{type: event, expectt: [x]}]", "triggers[0] has keys ['expectt']"),
    ],
)
def test_a_bad_trigger_names_the_deployment_and_what_it_takes(tmp_path, triggers: str, fragment: str) -> None:
    from clarion.serve import ServeError, deployments

    bad = tmp_path / "prefect.yaml"
    bad.write_text(
        "deployments:\n"
        "  - name: on-event\n"
        "    entrypoint: flows/triggers.py:triggered_campaign\n"
        f"    triggers: {triggers}\n"
    )
    with pytest.raises(ServeError) as caught:
        deployments(None, None, bad)  # type: ignore[arg-type]
    assert "deployments[0] (on-event)" in str(caught.value) and fragment in str(caught.value)


def test_a_bad_prefect_yaml_is_a_one_line_error_on_the_command_line(served_project) -> None:
    (served_project / "prefect.yaml").write_text("deployments:\n  - name: x\n    entrypoint: nope.py:flow\n")
    result = CliRunner().invoke(cli, ["serve", "--list"])
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and "deployments[0] (x)" in result.output


@pytest.mark.slow
def test_serve_registers_the_deployments_and_runs_one_on_demand(served_project) -> None:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    log = served_project / "serve.log"
    with serving(served_project, log) as server:
        names = {
            f"{flow}/{name}": name
            for flow, name in [
                ("clarion-pipeline", "daily"),
                ("content-approval", "content-approval"),
                ("clarion-pipeline", "weekly-report"),
                ("clarion-pipeline", "content"),
                ("triggered-campaign", "triggered-campaign"),
                ("retention", "retention"),
                ("clarion-alert", "alert"),
            ]
        }
        by_name = {e["name"]: e for e in repo_deployments()}
        config = served_project / "clarion.yaml"
        with get_client(sync_client=True) as client:

            def all_registered() -> dict | None:
                found = {
                    n: registered(client, n, config, len(by_name[names[n]].get("triggers", [])))
                    for n in names
                }
                return found if all(found.values()) else None

            found = wait_for(f"deployments {sorted(names)}", all_registered, 180, log, server)
        for full_name, (deployment, owned) in found.items():
            entry = by_name[names[full_name]]
            assert deployment.paused  # --paused: nothing starts on its own
            assert deployment.work_pool_name is None  # served, not for a worker
            assert deployment.parameters == expected_parameters(entry, served_project / "clarion.yaml")
            crons = [(s.schedule.cron, s.schedule.timezone) for s in deployment.schedules]
            assert crons == [(s["cron"], s["timezone"]) for s in entry.get("schedules", [])]
            assert [a.trigger.expect for a in owned] == [set(t["expect"]) for t in entry.get("triggers", [])]

        run = run_deployment(
            "clarion-pipeline/daily", parameters={"stages": ["prepare"]}, timeout=180, poll_interval=2
        )
        assert run.state is not None and run.state.is_completed(), f"{run.state}\n{log.read_text()}"
        assert run.parameters["stages"] == ["prepare"]
        assert run.parameters["wait_seconds"] == by_name["daily"]["parameters"]["wait_seconds"] == 300
        assert (served_project / "var" / "warehouse.duckdb").is_file()
    assert server.returncode == 0, log.read_text()
    assert "Pausing all deployments" in log.read_text()  # Prefect turns the schedules off on the way out
