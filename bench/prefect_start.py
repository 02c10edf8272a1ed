"""Prefect's start-up before a small command: a temporary server per command vs the kept server.

Each size is a throwaway project (`clarion generate`), then `clarion extract` as a user types it, twice
each way: with no server (Prefect starts a temporary one inside the command) and after `clarion
prefect start` (the command finds the kept server). The floor, measured in the same run, is the
CLI process alone (`clarion --help`: the interpreter and the CLI's imports). The start-up cost is the
temporary-server time minus the kept-server time. With the kept server, each command's time to its
first work is measured too: from the command's launch to the moment its run recorded itself in
audit.runs (the lock taken, the run started), for `clarion extract` and for one whole `clarion run`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb

from bench.harness import report

CLARION = str(Path(sys.executable).with_name("clarion"))
QUIET = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",  # as clarion.runtime.prepare_prefect sets
}


def _env() -> dict[str, str]:
    env = {**os.environ, **QUIET}
    for name in ("PREFECT_API_URL", "PREFECT_HOME", "CLARION_CONFIG"):
        env.pop(name, None)
    return env


def _timed(root: Path, *args: str) -> float:
    started = time.perf_counter()
    done = subprocess.run([CLARION, *args], cwd=root, env=_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"clarion {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return seconds


def _first_work(root: Path, *args: str) -> dict[str, float]:
    """`clarion ARGS`: its whole time and the time from its launch to its run's start (audit.runs)."""
    launched = time.time()
    seconds = _timed(root, *args)
    con = duckdb.connect(str(root / "var" / "warehouse.duckdb"), read_only=True)
    try:
        (started,) = con.execute("select max(started_at) from audit.runs").fetchone()
    finally:
        con.close()
    return {"total_s": seconds, "first_work_s": started.timestamp() - launched}


NOOP = "from prefect import flow\n\n@flow\ndef noop():\n    return 1\n\nnoop()\n"


def _python(root: Path, code: str, **env: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env={**_env(), **env}, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"python -c failed:\n{done.stderr[-3000:]}")
    return seconds


def measure_noop(repeats: int = 3) -> dict[str, Any]:
    """Prefect alone: a flow that does nothing, in a new process, without a server and with the
    kept one; the floor is the interpreter (`python -c pass`)."""
    root = Path(tempfile.mkdtemp(prefix="bench-prefect-noop-"))
    try:
        home = str(root / "var" / "prefect")
        Path(home).mkdir(parents=True)
        floor = min(_python(root, "pass") for _ in range(repeats))
        imports = min(_python(root, "import prefect", PREFECT_HOME=home) for _ in range(repeats))
        temporary = [_python(root, NOOP, PREFECT_HOME=home) for _ in range(repeats)]
        _timed(root, "prefect", "start")
        url = json.loads((root / "var" / "prefect" / "server.json").read_text())["url"]
        try:
            kept = [_python(root, NOOP, PREFECT_HOME=home, PREFECT_API_URL=url) for _ in range(repeats)]
        finally:
            _timed(root, "prefect", "stop")
        return {"floor_s": floor, "import_s": imports, "temporary_s": temporary, "kept_s": kept}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def measure_size(customers: int, repeats: int = 2) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bench-prefect-"))
    try:
        _timed(root, "generate", "--customers", str(customers))
        floor = min(_timed(root, "--help") for _ in range(repeats))
        temporary = [_timed(root, "extract") for _ in range(repeats)]
        start = _timed(root, "prefect", "start")
        state = json.loads((root / "var" / "prefect" / "server.json").read_text())
        try:
            kept_runs = [_first_work(root, "extract") for _ in range(repeats)]
            whole = _first_work(root, "run")
        finally:
            _timed(root, "prefect", "stop")
        return {
            "customers": customers,
            "floor_s": floor,
            "temporary_s": temporary,
            "kept_s": [r["total_s"] for r in kept_runs],
            "kept_first_work_s": [r["first_work_s"] for r in kept_runs],
            "run_kept_s": whole["total_s"],
            "run_first_work_s": whole["first_work_s"],
            "server_start_s": start,
            "server_ready_s": state["start_seconds"],
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(sizes: list[int]) -> str:
    noop = measure_noop()
    records: list[dict[str, Any]] = [{"noop": noop}, *(measure_size(n) for n in sizes)]
    temp, kept = min(noop["temporary_s"]), min(noop["kept_s"])
    rows = [
        "| a flow that does nothing, new process | seconds | over the floor |",
        "|---|---:|---:|",
        f"| `python -c pass` (floor) | {noop['floor_s']:.2f} s | - |",
        f"| `import prefect` | {noop['import_s']:.2f} s | {noop['import_s'] - noop['floor_s']:.2f} s |",
        f"| flow run, temporary server | {temp:.1f} s | {temp - noop['floor_s']:.1f} s |",
        f"| flow run, kept server | {kept:.1f} s | {kept - noop['floor_s']:.1f} s |",
        "",
        "| contacts | CLI alone (floor) | `clarion extract`, temporary server | same, kept server | "
        "Prefect start-up per command | `clarion prefect start` (once) | kept server: `clarion extract` "
        "to first work | `clarion run` to first work (whole run) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records[1:]:
        temp, kept = min(r["temporary_s"]), min(r["kept_s"])
        rows.append(
            f"| {r['customers']:,} | {r['floor_s']:.1f} s | {temp:.1f} s ({temp / r['floor_s']:.1f}x) | "
            f"{kept:.1f} s ({kept / r['floor_s']:.1f}x) | {temp - kept:.1f} s | "
            f"{r['server_start_s']:.1f} s | {min(r['kept_first_work_s']):.1f} s | "
            f"{r['run_first_work_s']:.1f} s ({r['run_kept_s']:.0f} s) |"
        )
    notes = (
        "First Prefect alone (best of three): a flow that does nothing, started in a new process with no "
        "server (Prefect starts a temporary one) and with the server `clarion prefect start` keeps; what "
        "it takes over `python -c pass` is Prefect's start-up before any work. Then a real command: "
        "each command is a new process, as a user types it (best of two). *Temporary server*: no "
        "PREFECT_API_URL and no kept server, so Prefect starts one inside the command. *Kept server*: "
        "after `clarion prefect start`, the command finds it through var/prefect/server.json. The floor "
        "is `clarion --help` (the interpreter and the CLI's imports). *To first work*: with the kept "
        "server, from the command's launch to its run's start (the lock taken, the run recorded in "
        "audit.runs): best of two `clarion extract`, then one whole `clarion run` (its total in brackets)."
    )
    return report("prefect-start", records, notes, rows, title="Prefect start-up before a small command")
