"""Prefect's start-up before a small command: a temporary server per command vs the kept server.

Each size is a throwaway project (`clarion generate`), then `clarion extract` as a user types it, twice
each way: with no server (Prefect starts a temporary one inside the command) and after `clarion
prefect start` (the command finds the kept server). The floor, measured in the same run, is the
CLI process alone (`clarion --help`: the interpreter and the CLI's imports). The start-up cost is the
temporary-server time minus the kept-server time.
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

from bench.harness import report

CLARION = str(Path(sys.executable).with_name("clarion"))
QUIET = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1"}


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


def measure_size(customers: int, repeats: int = 2) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bench-prefect-"))
    try:
        _timed(root, "generate", "--customers", str(customers))
        floor = min(_timed(root, "--help") for _ in range(repeats))
        temporary = [_timed(root, "extract") for _ in range(repeats)]
        start = _timed(root, "prefect", "start")
        state = json.loads((root / "var" / "prefect" / "server.json").read_text())
        try:
            kept = [_timed(root, "extract") for _ in range(repeats)]
        finally:
            _timed(root, "prefect", "stop")
        return {
            "customers": customers,
            "floor_s": floor,
            "temporary_s": temporary,
            "kept_s": kept,
            "server_start_s": start,
            "server_ready_s": state["start_seconds"],
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(sizes: list[int]) -> str:
    records = [measure_size(n) for n in sizes]
    rows = [
        "| contacts | CLI alone (floor) | `clarion extract`, temporary server | same, kept server | "
        "Prefect start-up per command | `clarion prefect start` (once) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        temp, kept = min(r["temporary_s"]), min(r["kept_s"])
        rows.append(
            f"| {r['customers']:,} | {r['floor_s']:.1f} s | {temp:.1f} s ({temp / r['floor_s']:.1f}x) | "
            f"{kept:.1f} s ({kept / r['floor_s']:.1f}x) | {temp - kept:.1f} s | {r['server_start_s']:.1f} s |"
        )
    notes = (
        "Each command is a new process, as a user types it (best of two). *Temporary server*: no "
        "PREFECT_API_URL and no kept server, so Prefect starts one inside the command. *Kept server*: "
        "after `clarion prefect start`, the command finds it through var/prefect/server.json. The floor "
        "is `clarion --help` (the interpreter and the CLI's imports)."
    )
    return report("prefect-start", records, notes, rows, title="Prefect start-up before a small command")
