"""The main Prefect flow: real flow runs on a real (temporary) Prefect server, a real DuckDB file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from prefect_api import artifacts, child_flow_run, flow_run, flow_run_events, subflow_names
from reliability_helpers import cli_env
from test_warehouse import start_holder, wait_locked

from clarion import runs
from clarion.errors import WarehouseBusyError
from flows import pipeline as pipeline_module
from flows.pipeline import Stage, pipeline

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture
def project_with_data(project, tmp_path):
    """A project whose default source (var/crm) holds a small generated CRM."""
    from clarion.synth.generator import generate

    settings = project()
    generate(settings.generate, out=tmp_path / "var" / "crm")
    return settings


def runs_table(db: Path) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(
            "select status, command, flow_run_id, error from audit.runs order by started_at"
        ).fetchall()
    finally:
        con.close()


def recent_runs_of(db: Path) -> list[dict]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return runs.recent_runs(con)
    finally:
        con.close()


def extract_contacts(db: Path, where: str = "true") -> int:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(f"select count(*) from raw.contacts where {where}").fetchone()[0]
    finally:
        con.close()


def objectors(db: Path) -> int:
    return extract_contacts(db, "marketing_objection")


def test_a_run_prepares_the_warehouse_records_itself_and_publishes_a_summary(small_run) -> None:
    settings, result = small_run["settings"], small_run["result"]  # the session's run of every stage
    assert result["status"] == "completed"
    assert result["stages"]["prepare"]["schemas"] == 7
    extract = result["stages"]["extract"]
    assert extract["read"] == extract["loaded"] + extract["quarantined"] > 0
    [(status, command, flow_run_id, error)] = runs_table(settings.warehouse.path)
    assert (status, command, error) == ("completed", "clarion run", None)
    run = flow_run(flow_run_id)
    assert run.state.is_completed()
    assert subflow_names(flow_run_id) == [
        "content",
        "extract",
        "nba",
        "prepare-warehouse",
        "recommend",
        "report",
        "results",
        "segment",
        "transform",
        "voc",
    ]
    # this project has no campaign briefs: the content stage says so and loads no model, and
    # next-best-action has nothing to decide
    assert result["stages"]["content"]["campaigns"] == []
    assert (
        result["stages"]["nba"]["campaigns"] == []
        and "no active campaign briefs" in result["stages"]["nba"]["note"]
    )
    assert "no campaign briefs" in result["stages"]["content"]["note"]
    # the report is written; with no recipients configured it is not sent, and says so
    report = result["stages"]["report"]
    assert Path(report["paths"]["pdf"]).read_bytes().startswith(b"%PDF") and report["sent"] is False
    assert report["customers"] == result["stages"]["segment"]["customers"]
    transform = result["stages"]["transform"]
    assert [g["suite"] for g in transform["gates"]] == ["raw", "marts"]
    assert all(g["ok"] and g["failed"] == 0 for g in transform["gates"])
    assert transform["published"]["customer_features"] == extract_contacts(settings.warehouse.path)
    segment = result["stages"]["segment"]  # every published customer scored, by a promoted model ...
    objecting = objectors(settings.warehouse.path)  # ... except those who object to profiling (Art. 21)
    assert segment["customers"] == transform["published"]["customer_features"] - objecting
    assert segment["not_profiled"] == {"objection": objecting} and objecting > 0
    assert segment["trained"]["decision"].startswith(f"promoted {segment['model_version']}")
    [summary] = [a for a in artifacts(flow_run_id) if a.key == "clarion-run-summary"]
    assert result["run_id"] in summary.data and "| prepare |" in summary.data


HEARTBEAT = "prefect.flow-run.heartbeat"


def test_only_the_run_sends_a_heartbeat_its_stage_subflows_share_it(small_run) -> None:
    """Prefect ends every flow run by waiting for its heartbeat thread, which sleeps in whole seconds:
    a stage's subflow with its own heartbeat lasted up to 1 s longer than its work. The run's flow
    sends the heartbeat that tells a crashed run; its stages send none."""
    flow_run_id = runs_table(small_run["settings"].warehouse.path)[0][2]  # the first run: the session's
    stages = [child_flow_run(flow_run_id, name) for name in subflow_names(flow_run_id)]
    done = ("prefect.flow-run.Completed", flow_run_id)
    events = flow_run_events([flow_run_id, *stages], [HEARTBEAT, done[0]], wait_for=done)
    assert done in events, "the server never stored the run's end"
    assert (HEARTBEAT, flow_run_id) in events
    assert [s for s in stages if (HEARTBEAT, s) in events] == []
    assert all(("prefect.flow-run.Completed", s) in events for s in stages)


def test_a_subflow_outside_the_block_keeps_its_own_heartbeat() -> None:
    """The block is what removes a subflow's heartbeat: the same subflow run before and after it sends
    one, inside it none."""
    from prefect import flow
    from prefect.runtime import flow_run as current

    from flows import subflows_share_heartbeat

    ids: dict[str, str] = {}

    @flow(name="heartbeat-probe")
    def probe(tag: str) -> None:
        ids[tag] = str(current.get_id())

    @flow(name="heartbeat-parent")
    def parent() -> None:
        ids["parent"] = str(current.get_id())
        probe("before")
        with subflows_share_heartbeat():
            probe("inside")
        probe("after")

    parent()
    events = flow_run_events(list(ids.values()), [HEARTBEAT], wait_for=(HEARTBEAT, ids["after"]))
    beating = {tag for tag, i in ids.items() if (HEARTBEAT, i) in events}
    assert beating == {"parent", "before", "after"}


def test_a_failing_stage_fails_the_flow_and_the_run_record_keeps_the_error(
    project_with_data, monkeypatch
) -> None:
    settings = project_with_data

    def broken(settings, run_id, **options):
        raise RuntimeError("stage blew up on purpose")

    prepare, extract = pipeline_module.STAGES[:2]
    monkeypatch.setattr(pipeline_module, "STAGES", [prepare, extract, Stage("broken", broken, "fails")])
    with pytest.raises(RuntimeError, match="blew up on purpose"):
        pipeline(config_path="clarion.yaml")
    [(status, _, flow_run_id, error)] = runs_table(settings.warehouse.path)
    assert status == "failed" and "RuntimeError: stage blew up on purpose" in error
    assert flow_run(flow_run_id).state.is_failed()
    [run] = recent_runs_of(settings.warehouse.path)
    assert set(run["stages"]) == {"prepare", "extract"}  # what finished is kept: --resume starts at "broken"


# The libraries only some stages need; each costs 0.5-3 s to import (great_expectations ~3 s with
# its own dependencies), paid before a command's first work when it is imported up front.
STAGE_LIBRARIES = (
    *("great_expectations", "lightgbm", "sklearn", "torch", "transformers"),
    *("dbt", "shap", "weasyprint", "dlt"),
)
EXTRACT_VERB = """
from clarion.cli import cli
try:
    cli(["extract"], prog_name="clarion")
except SystemExit as stop:
    assert not stop.code, stop.code
"""


def _libraries_loaded(code: str, cwd: Path) -> list[str]:
    """The STAGE_LIBRARIES a new interpreter holds after running `code`."""
    loaded = f"[m for m in {STAGE_LIBRARIES!r} if m in sys.modules]"
    probe = f"{code}\nimport json, sys\nprint(json.dumps({loaded}))"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_stages_libraries_are_imported_when_the_stage_runs_not_before(project_with_data) -> None:
    """`clarion run` starts its work after Prefect's and Clarion's own imports, not every stage's
    (about 5 s more); a stage verb imports only its stage's libraries."""
    root = project_with_data.warehouse.path.parents[1]
    assert _libraries_loaded("import flows.pipeline", root) == []
    assert _libraries_loaded(EXTRACT_VERB, root) == ["dlt"]  # the extract stage ran, with its own only
    assert extract_contacts(project_with_data.warehouse.path) > 0


def test_a_run_stops_before_touching_anything_while_another_process_writes(project) -> None:
    settings = project()
    holder = start_holder(settings.warehouse.path, "someone else's run", hold=8, rows=8)
    wait_locked(holder)
    with pytest.raises(WarehouseBusyError, match="someone else's run"):
        pipeline(config_path="clarion.yaml")
    assert holder.wait(timeout=60) == 0
    assert runs_table(settings.warehouse.path) == []  # the refused run never recorded itself


def test_a_run_with_wait_queues_behind_the_other_writer(project_with_data) -> None:
    settings = project_with_data
    holder = start_holder(settings.warehouse.path, "a short run", hold=3, rows=3)
    wait_locked(holder)
    result = pipeline(config_path="clarion.yaml", wait_seconds=60, stages=["extract"])
    assert result["status"] == "completed" and set(result["stages"]) == {"prepare", "extract"}
    assert holder.wait(timeout=30) == 0
