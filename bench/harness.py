"""Run one measured call in a fresh process: wall time, CPU time and peak RSS of that call alone.

A fresh process per measurement keeps one stage's memory from inflating the next one's peak, and
makes the numbers what a user running that command would see.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("RESULTS.md")
OUT = Path(__file__).with_name("out")


@dataclass
class Measurement:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    result: dict[str, Any]


def measure(target: str, **kwargs: Any) -> Measurement:
    """Call ``module:function(**kwargs)`` in a child process; the function returns a JSON-able dict."""
    spec = json.dumps({"target": target, "kwargs": kwargs})
    proc = subprocess.run(
        [sys.executable, "-m", "bench.harness", spec], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{target} failed:\n{proc.stderr[-4000:]}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return Measurement(data["wall_s"], data["cpu_s"], data["peak_rss_mb"], data["result"])


def _child(spec: str) -> None:
    job = json.loads(spec)
    module, _, name = job["target"].partition(":")
    func = getattr(importlib.import_module(module), name)
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    result = func(**job["kwargs"])
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": _peak_rss_mb(), "result": result}))


def _peak_rss_mb() -> float:
    """This process's own peak RSS. Not ru_maxrss: Linux carries that across execve, so a child
    would report its parent's peak. VmHWM belongs to the address space exec created."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return f"{os.cpu_count()} cores ({cpu}), {mem_gb:.0f} GB RAM, Python {platform.python_version()}"


def write_section(name: str, markdown: str, stamp: str | None = None) -> None:
    """Replace this suite's section of RESULTS.md (between markers), leaving the others alone.
    ``stamp``: when the figures were measured, if not now (a table rendered again from its records)."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    stamp = stamp or datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = f"{start}\n_Measured {stamp} on {machine()}._\n\n{markdown.strip()}\n{end}"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\nWritten by `make bench`.\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)
    OUT.mkdir(exist_ok=True)


def workdir_settings(workdir: str, **overrides: Any) -> Any:
    """Settings of a throwaway project in `workdir` (never the repository's clarion.yaml)."""
    from clarion.config import load_settings

    empty = Path(workdir) / "clarion.yaml"
    empty.write_text("{}\n")
    base = {"var_dir": workdir, "warehouse": {"path": f"{workdir}/warehouse.duckdb"}}
    return load_settings(empty, env={}, overrides={**base, **overrides})


def report(
    name: str,
    records: list[dict[str, Any]],
    notes: str,
    rows_md: list[str],
    title: str | None = None,
    stamp: str | None = None,
) -> str:
    """Keep a suite's raw records (bench/out/<name>.json) and its section of RESULTS.md."""
    OUT.mkdir(exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(records, indent=2))
    table = "\n".join(rows_md)
    write_section(name, f"## {title or name.capitalize()}\n\n{notes}\n\n{table}\n", stamp)
    return table


if __name__ == "__main__":
    _child(sys.argv[1])
