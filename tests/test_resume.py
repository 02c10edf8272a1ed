"""Killed runs: `clarion run` after a kill (redo) or `clarion run --resume` (continue) ends with the
outputs of a run that was never interrupted; the interrupted run is recorded, and no log line of
any of these runs holds personal data.

The test kills real `clarion run` processes (SIGKILL to the process group) at points seen in their
own log, runs the CLI again, and compares marts, every customer's score and reasons, the segments and
the report figures with a clean run on the same generated CRM (the session's `small_run`).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest
from project_helpers import SMALL_CUSTOMERS, assert_same_outputs, run_outputs, small_project

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]

CLARION = str(Path(sys.executable).with_name("clarion"))


@pytest.fixture
def clean(small_run) -> dict[str, Any]:
    """The reference: one uninterrupted run of the same CRM and settings (shared with test_lineage)."""
    return small_run["outputs"]


@pytest.fixture
def env() -> dict[str, str]:
    """The CLI's environment, reporting to the session's Prefect test server."""
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CLARION_"))}
    env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    return env


class Session:
    """The CLI in one project folder; every line any command printed is kept for the PII scan."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env, self.output = root, env, ""

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [CLARION, *args], cwd=self.root, env=self.env, capture_output=True, text=True, timeout=600
        )
        self.output += proc.stdout + proc.stderr
        if ok:
            assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    def kill_run_when(self, marker: str, *args: str, timeout: float = 300) -> None:
        """Start `clarion run ARGS` and SIGKILL its whole process group when its log shows ``marker``."""
        log = self.root / "killed-run.log"
        with log.open("w") as fh:
            proc = subprocess.Popen(
                [CLARION, "run", *args],
                cwd=self.root,
                env=self.env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        try:
            while marker not in log.read_text():
                assert proc.poll() is None, f"the run ended before {marker!r}:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"no {marker!r} within {timeout} s"
                time.sleep(0.05)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        self.output += log.read_text()
        assert proc.returncode == -signal.SIGKILL

    def runs(self) -> list[dict[str, Any]]:
        return json.loads(self.run("status", "--json").stdout)["runs"]

    def events(self, action: str) -> list[tuple[str, str]]:
        con = duckdb.connect(str(self.root / "var" / "warehouse.duckdb"), read_only=True)
        try:
            return con.execute(
                "select subject, details from audit.events where action = ? order by seq", [action]
            ).fetchall()
        finally:
            con.close()

    def assert_no_personal_data_in_output(self) -> None:
        with (self.root / "var" / "crm" / "contacts.csv").open() as fh:
            people = list(csv.DictReader(fh))
        assert len(people) == SMALL_CUSTOMERS and len(self.output) > 5000  # the scan has something to read
        for p in people:
            for value in (p["email"], p["phone"], f"{p['first_name']} {p['last_name']}"):
                assert not value or value not in self.output, "personal data in the CLI's output/logs"


def test_killed_runs_are_resumed_or_redone_to_the_clean_runs_outputs(tmp_path, env, clean) -> None:
    """One project through: kill A while scoring -> resume A, killed again after scoring -> refusals
    -> `clarion run` redoes everything as B -> `--resume` has nothing left -> resume A by id."""
    cli = Session(small_project(tmp_path), env)

    # 1. Killed in the segment stage: nothing of it is saved; the stages before are checkpointed.
    cli.kill_run_when("scoring customers as of")
    [killed] = cli.runs()
    assert killed["status"] == "interrupted"  # no process holds the lock: status says so at once
    assert set(killed["stages"]) == {"prepare", "extract", "voc", "transform"}
    a = killed["run_id"]

    # 2. Resumed, and killed again once its scores are committed (the report stage has begun).
    cli.kill_run_when("for flow 'report'", "--resume")
    [again] = cli.runs()
    assert again["run_id"] == a and again["status"] == "interrupted"
    assert set(again["stages"]) == {
        "prepare",
        "extract",
        "voc",
        "transform",
        "segment",
        "recommend",
        "results",
        "nba",
        "content",
    }
    [(subject, details)] = cli.events("run.interrupted")  # the first kill, found by the resume
    assert subject == a and json.loads(details)["completed_stages"] == [
        "extract",
        "prepare",
        "transform",
        "voc",
    ]
    assert [s for s, _ in cli.events("run.resumed")] == [a]

    # 3. Resuming is refused under other settings or for an unknown run; refusals change nothing.
    changed = dict(env, CLARION_SEGMENT__RISK_HIGH="0.75")
    proc = subprocess.run(
        [CLARION, "run", "--resume"], cwd=cli.root, env=changed, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode != 0 and "resuming would mix the two" in proc.stderr, proc.stderr[-2000:]
    unknown = cli.run("run", "--resume-run", "20200101T000000Z-00000000", ok=False)
    assert unknown.returncode != 0 and "no run '20200101T000000Z-00000000'" in unknown.stderr
    assert "Traceback" not in proc.stderr + unknown.stderr
    assert [r["status"] for r in cli.runs()] == ["interrupted"]

    # 4. `clarion run` redoes every stage as run B. A's committed scores exist, yet B compares with
    #    nothing, as the clean run did: an unfinished run never counts as the previous one.
    b = json.loads(cli.run("run", "--json").stdout)
    assert b["resumed"] is False and b["kept_stages"] == []
    assert b["stages"]["segment"]["moves_since_previous"] == []
    found = [(subject, json.loads(details)) for subject, details in cli.events("run.interrupted")]
    assert [subject for subject, _ in found] == [a, a] and found[1][1]["found_by"] == b["run_id"]
    assert_same_outputs(run_outputs(cli.root, b["run_id"]), clean)
    report = cli.run("report", "--no-send", "--json")  # the latest *finished* scoring run
    assert json.loads(report.stdout)["run_id"] == b["run_id"]

    # 5. The latest run is finished: nothing to resume, said plainly.
    done = cli.run("run", "--resume", ok=False)
    assert (
        done.returncode != 0
        and f"run {b['run_id']} is completed, so there is nothing to resume" in done.stderr
    )
    assert "Traceback" not in done.stderr

    # 6. A resumed by id: only its report stage is left; its outputs are the clean run's too.
    resumed = json.loads(cli.run("run", "--resume-run", a, "--json").stdout)
    assert resumed["run_id"] == a and resumed["resumed"] is True
    assert resumed["kept_stages"] == [
        "extract",
        "voc",
        "transform",
        "segment",
        "recommend",
        "results",
        "nba",
        "content",
    ]
    assert {r["run_id"]: r["status"] for r in cli.runs()} == {a: "completed", b["run_id"]: "completed"}
    assert_same_outputs(run_outputs(cli.root, a), clean)

    assert "audit log verified" in cli.run("audit", "verify").stdout
    for run_id in (a, b["run_id"]):
        assert "output files match the manifest" in cli.run("lineage", "verify", run_id).stdout
    cli.assert_no_personal_data_in_output()
