"""The run registry (``audit.runs``): every pipeline or stage run, its outcome, config and code version.

A run that is killed stays ``running`` in the table; ``clarion status`` reports it as interrupted
when no process holds the writer lock any more.
"""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

import clarion

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
    con.execute(
        "update audit.runs set status = ?, finished_at = now(), stages = ?, error = ? where run_id = ?",
        [status, json.dumps(stages, default=str, sort_keys=True), error, run_id],
    )


def recent_runs(con: duckdb.DuckDBPyConnection, limit: int = 5) -> list[dict[str, Any]]:
    rows = con.execute(
        """
        select run_id, flow_run_id, command, status, started_at, finished_at, stages, error
        from audit.runs order by started_at desc limit ?
        """,
        [limit],
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


def sha256_file(path: Path) -> str:
    """The sha256 of a file, read in blocks (inputs, outputs and weights are hashed the same way)."""
    with Path(path).open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
