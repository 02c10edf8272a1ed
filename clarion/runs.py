"""The run registry (``audit.runs``): every pipeline or stage run, its outcome, config and code version.

A run that is killed stays ``running`` in the table until the next run takes the writer lock and
marks it ``interrupted`` (``clarion status`` already shows it so once no process holds the lock).
Each stage's summary is recorded as it completes, so ``clarion run --resume`` can continue an
interrupted or failed run from the first stage it did not finish. Outputs of a run that did not
complete never count as "the previous run" (see ``NOT_SETTLED``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

import clarion
from clarion.errors import ClarionError
from clarion.privacy.scrub import scrub

REPO_ROOT = Path(__file__).resolve().parents[1]


def new_run_id() -> str:
    """Sortable by start time, unique without coordination: 20261123T172301Z-1a2b3c4d."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The git commit of the code that ran (with -dirty for local edits), else the package version."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return f"clarion-{clarion.__version__}"


def start_run(
    con: duckdb.DuckDBPyConnection,
    *,
    run_id: str,
    command: str,
    config_hash: str,
    flow_run_id: str | None = None,
) -> None:
    con.execute(
        """
        insert into audit.runs (run_id, flow_run_id, command, status, started_at, config_hash, code_version)
        values (?, ?, ?, 'running', now(), ?, ?)
        """,
        [run_id, flow_run_id, command, config_hash, code_version()],
    )


def finish_run(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    *,
    status: str,
    stages: dict[str, Any],
    error: str | None = None,
) -> None:
    if status not in {"completed", "failed"}:
        raise ValueError(f"a run finishes as completed or failed, not {status!r}")
    # the error text of a failure quotes whatever the failing code quoted: scrubbed before it is kept
    error = scrub(error)[:2000] if error else None
    con.execute(
        "update audit.runs set status = ?, finished_at = now(), stages = ?, error = ? where run_id = ?",
        [status, json.dumps(stages, default=str, sort_keys=True), error, run_id],
    )


# Runs whose outputs must not be compared against: they stopped part-way. A run resumed to the end
# becomes completed again. Used as `run_id not in (NOT_SETTLED)` by "the previous scoring run".
NOT_SETTLED = "select run_id from audit.runs where status in ('failed', 'interrupted')"

# Runs whose content stage has not recorded its checkpoint (see `record_stage`): killed, failed or
# still drafting. A brief's drafts are committed one brief at a time, so such a run may hold some
# campaigns' drafts and not others: they are never offered for review, exported or reported, and
# the next content run replaces those nobody decided on. Drafts of a run that is not in audit.runs
# (drafted by a direct call of the library) count as finished.
CONTENT_UNFINISHED = "select run_id from audit.runs where json_extract(stages, '$.content') is null"
# Content runs of one on-demand draft each (clarion.content.ondemand): reviewed like any draft, but
# never a campaign's batch export, which a pending on-demand draft would otherwise displace.
ON_DEMAND_RUNS = "select run_id from audit.runs where command = 'draft on-demand'"


def record_stage(con: duckdb.DuckDBPyConnection, run_id: str, stage: str, summary: dict[str, Any]) -> None:
    """Checkpoint: the stage finished; its summary is kept with the run (what --resume skips)."""
    row = con.execute("select stages from audit.runs where run_id = ?", [run_id]).fetchone()
    stages = json.loads(row[0]) if row and row[0] else {}
    stages[stage] = summary
    con.execute(
        "update audit.runs set stages = ? where run_id = ?",
        [json.dumps(stages, default=str, sort_keys=True), run_id],
    )


def mark_interrupted(con: duckdb.DuckDBPyConnection, current: str) -> list[dict[str, Any]]:
    """Runs still ``running`` other than ``current`` lost their process (the caller holds the writer
    lock, so nobody else is writing): mark them ``interrupted`` and return them with their
    completed stages."""
    rows = con.execute(
        "select run_id, command, stages from audit.runs where status = 'running' and run_id <> ?", [current]
    ).fetchall()
    for run_id, _, _ in rows:
        con.execute(
            "update audit.runs set status = 'interrupted', error = ? where run_id = ?",
            ["the process ended before the run finished (killed or crashed)", run_id],
        )
    return [
        {"run_id": r[0], "command": r[1], "completed_stages": list(json.loads(r[2]) if r[2] else {})}
        for r in rows
    ]


def resumable(con: duckdb.DuckDBPyConnection, run_id: str | None, config_hash: str) -> dict[str, Any]:
    """The run to resume: the one named, or the latest `clarion run` if it failed or was interrupted,
    and only under the settings it started with. The caller holds the writer lock, so a run still
    marked ``running`` has lost its process."""
    if run_id is None:
        row = con.execute(
            "select run_id from audit.runs where command = 'clarion run' order by started_at desc limit 1"
        ).fetchone()
        if row is None:
            raise ClarionError("nothing to resume: no `clarion run` has been recorded; run `clarion run`")
        run_id = row[0]
    row = con.execute(
        "select run_id, command, status, stages, config_hash, code_version from audit.runs where run_id = ?",
        [run_id],
    ).fetchone()
    if row is None:
        raise ClarionError(f"no run {run_id!r} in audit.runs: `clarion status` lists the recent runs")
    keys = ("run_id", "command", "status", "stages", "config_hash", "code_version")
    run = dict(zip(keys, row, strict=True))
    run["stages"] = json.loads(run["stages"]) if run["stages"] else {}
    if run["status"] not in ("failed", "interrupted", "running"):
        raise ClarionError(
            f"run {run_id} is {run['status']}, so there is nothing to resume; `clarion run` starts a new run"
        )
    if run["command"] != "clarion run":
        raise ClarionError(
            f"run {run_id} was `{run['command']}`; only `clarion run` can be resumed: run that command again"
        )
    if run["config_hash"] != config_hash:
        raise ClarionError(
            f"run {run_id} ran with config {run['config_hash']}, and the settings are now {config_hash}: "
            "resuming would mix the two; `clarion run` starts afresh"
        )
    return run


def reopen(con: duckdb.DuckDBPyConnection, run_id: str, flow_run_id: str | None = None) -> None:
    """A resumed run is running again under its own id (and the new flow run)."""
    con.execute(
        "update audit.runs set status = 'running', error = null, finished_at = null, "
        "flow_run_id = coalesce(?, flow_run_id) where run_id = ?",
        [flow_run_id or None, run_id],
    )


def recent_runs(
    con: duckdb.DuckDBPyConnection, limit: int = 5, offset: int = 0, run_id: str | None = None
) -> list[dict[str, Any]]:
    """The newest runs first (``offset``: skip that many); ``run_id``: that run only."""
    rows = con.execute(
        """
        select run_id, flow_run_id, command, status, started_at, finished_at, stages, error
        from audit.runs where (? is null or run_id = ?) order by started_at desc limit ? offset ?
        """,
        [run_id, run_id, limit, offset],
    ).fetchall()
    keys = ("run_id", "flow_run_id", "command", "status", "started_at", "finished_at", "stages", "error")
    runs = []
    for row in rows:
        run = dict(zip(keys, row, strict=True))
        run["stages"] = json.loads(run["stages"]) if run["stages"] else {}
        for key in ("started_at", "finished_at"):
            if run[key] is not None:
                run[key] = run[key].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        runs.append(run)
    return runs


def process_alive(pid: int) -> bool:
    """Whether a process of this id runs on this machine (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sha256_file(path: Path) -> str:
    """The sha256 of a file, read in blocks (inputs, outputs and weights are hashed the same way)."""
    with Path(path).open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
