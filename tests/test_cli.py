"""The command line: verbs, --json output, messages, and the demo path as a new user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_warehouse import start_holder, wait_locked

from clarion.cli import cli

REPO = Path(__file__).resolve().parents[1]
CLARION = str(Path(sys.executable).with_name("clarion"))


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_help_lists_every_verb_and_how_to_start() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for verb in ("generate", "run", "status", "config"):
        assert f"  {verb}" in result.output
    assert "clarion generate" in result.output and "CLARION_<SECTION>__<KEY>" in result.output


def test_generate_json_reports_what_it_wrote(project) -> None:
    project()
    result = invoke("generate", "--customers", "150", "--seed", "3", "--defects", "0.02", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    out = Path(summary["out"])
    assert out == Path.cwd() / "var" / "crm"
    assert summary["customers"] == 150 and summary["seed"] == 3 and summary["defects"] > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert summary["rows"] == {e: v["rows"] for e, v in manifest["entities"].items()}


def test_generate_rejects_bad_flags_with_the_setting_name(project) -> None:
    project()
    result = CliRunner().invoke(cli, ["generate", "--defects", "3"])
    assert result.exit_code == 2
    assert "generate.defects (from command line)" in result.output


def test_generate_out_on_the_command_line_is_relative_to_the_working_directory(project, tmp_path) -> None:
    project()
    result = invoke("generate", "--customers", "50", "--out", "here")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "here" / "manifest.json").is_file()


@pytest.mark.usefixtures("prefect_server")
def test_a_stage_verb_then_status_as_json(project, monkeypatch, tmp_path) -> None:
    """A stage verb runs the pipeline flow limited to its stage (`clarion run` end to end: the demo test)."""
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    project()
    assert invoke("generate", "--customers", "100").exit_code == 0
    run = invoke("extract", "--json")
    assert run.exit_code == 0, run.output
    summary = json.loads(run.stdout)
    assert summary["status"] == "completed"
    status = json.loads(invoke("status", "--json").stdout)
    assert status["runs"][0]["run_id"] == summary["run_id"]
    assert status["runs"][0]["status"] == "completed"
    audit = status["warehouse"]["schemas"]["audit"]
    assert audit["runs"] == 1 and audit["extract_loads"] == 7  # one accounting row per entity
    assert status["warehouse"]["schemas"]["raw"]["contacts"] >= 100
    assert status["generated"]["customers"] == 100
    human = invoke("status").output
    assert "completed" in human and "Synthetic CRM" in human


def test_status_names_the_writer_while_a_run_holds_the_warehouse(project) -> None:
    settings = project()
    holder = start_holder(settings.warehouse.path, "nightly run", hold=5, rows=5)
    wait_locked(holder)
    result = invoke("status")
    holder.wait(timeout=60)
    assert result.exit_code == 0
    assert "being written by 'nightly run'" in result.output and f"pid {holder.pid}" in result.output


def test_status_before_anything_exists_says_what_to_do(project) -> None:
    project()
    result = invoke("status")
    assert result.exit_code == 0
    assert "not created yet" in result.output and "clarion generate" in result.output


def test_run_while_another_writer_exits_3_with_the_message(project) -> None:
    settings = project()
    holder = start_holder(settings.warehouse.path, "other run", hold=30, rows=30)
    wait_locked(holder)
    try:
        # a real process, as a user would meet it: its own temporary Prefect server, no harness
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
        proc = subprocess.run([CLARION, "run"], capture_output=True, text=True, timeout=300, env=env)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "error: the warehouse" in proc.stderr and "'other run'" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_the_demo_path_works_for_a_new_user_in_an_empty_folder(tmp_path: Path) -> None:
    """What `make demo` runs, as separate processes, with the Prefect server it keeps."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CLARION_"))}
    env["CLARION_GENERATE__CUSTOMERS"] = "500"

    def clarion(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [CLARION, *args], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    generated = clarion("generate")
    assert "500 contacts" in generated.stdout
    started = clarion("prefect", "start", "--json")  # make demo keeps one Prefect server for its commands
    try:
        _the_demo_commands(clarion, tmp_path)
    finally:
        clarion("prefect", "stop")
    assert not json.loads(started.stdout)["already"]
    assert not (tmp_path / "var" / "prefect" / "server.json").exists()


def _the_demo_commands(clarion, tmp_path: Path) -> None:
    ran = clarion("run")
    assert "Starting temporary server" not in ran.stderr  # the kept server served it
    assert "completed" in ran.stdout
    assert "contacts" in ran.stdout and "quarantined" in ran.stdout  # the extract accounting table
    status = clarion("status")
    [audit_line] = [line for line in status.stdout.splitlines() if line.startswith("  audit ")]
    assert "extract_files 7, extract_loads 7, orphan_releases 0, publications 1," in audit_line
    assert "events " in audit_line
    assert "report of scoring run" in ran.stdout and "lineage    " in ran.stdout  # report, manifest
    pack = clarion("compliance", "export")  # the last step of `make demo`
    assert "compliance pack of run" in pack.stdout and "(chain verified)" in pack.stdout
    assert "gate marts  passed" in ran.stdout and "published to marts" in ran.stdout
    assert "customers as of 2026-07-01, model v0001" in ran.stdout  # the segment stage ran
    explained = clarion("explain", "1", "--json")
    assert json.loads(explained.stdout)["model_version"] == "v0001"
    [marts_line] = [line for line in status.stdout.splitlines() if line.startswith("  marts ")]
    assert "customer_features 500" in marts_line and "customer_labels 500" in marts_line
    [raw_line] = [line for line in status.stdout.splitlines() if line.startswith("  raw ")]
    assert "contacts 5" in raw_line and "orders " in raw_line
    assert (tmp_path / "var" / "prefect").is_dir()  # Prefect's history kept with the project
