"""Wall time, CPU time and peak memory of one stage of a run, measured inside the running process.

Why here and not only in the benchmarks: "which stage is slow, which one needs the memory" is a
question users of a big CRM ask about their own runs, so every run records the answer beside each
stage's summary (``audit.runs``, `clarion run --json`).

Peak memory of one stage alone needs the process's high-water mark reset when the stage starts,
or every stage would report the largest peak before it. On Linux, writing "5" to
/proc/self/clear_refs resets it (VmHWM in /proc/self/status then counts from that moment). Where
that file is not writable (some sandboxes), a thread samples VmRSS every 20 ms instead, which can
miss a spike shorter than that. Without /proc at all, only the process's lifetime peak
(ru_maxrss) is known. ``peak_rss_method`` in the figures says which one was used.

The reset is process-wide and the kernel keeps one mark: after it, VmHWM, getrusage's ru_maxrss,
and what a parent reads for this process when it ends (RUSAGE_CHILDREN, `time -v`) all count from
the last reset only. ``process_peak_rss_mb()`` gives the peak since the process started, across
the resets.
"""

from __future__ import annotations

import contextlib
import resource
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")
SAMPLE_SECONDS = 0.02

_lock = threading.Lock()
_method: str | None = None  # decided on first use: clear_refs | sampler | ru_maxrss


class _Peak:
    """The highest VmHWM one open meter has seen; a meter opened inside it resets the mark, so the
    outer one is told the peak reached so far before that happens."""

    def __init__(self) -> None:
        self.mb = 0.0


_open: list[_Peak] = []
_before_resets = 0.0  # the highest mark the process reached before the latest reset


def _status_mb(field: str) -> float | None:
    try:
        text = STATUS.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return None


def _reset_high_water_mark() -> bool:
    try:
        with CLEAR_REFS.open("w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _lifetime_peak_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024  # bytes there, KiB here


def peak_rss_method() -> str:
    """How this process measures a stage's peak memory (decided once)."""
    global _method
    with _lock:
        if _method is None:
            hwm = _status_mb("VmHWM")
            if hwm is None:
                _method = "ru_maxrss"
            elif _reset_high_water_mark():
                _method = "clear_refs"
                _keep_process_peak(hwm)
            else:
                _method = "sampler"
        return _method


def _keep_process_peak(hwm: float) -> None:
    global _before_resets
    _before_resets = max(_before_resets, hwm)


def process_peak_rss_mb() -> float:
    """This process's peak RSS since it started, including the peaks before the meter's resets."""
    if peak_rss_method() == "ru_maxrss":
        return _lifetime_peak_mb()
    return max(_before_resets, _status_mb("VmHWM") or 0.0)


def _cpu_s() -> float:
    """User + system time of this process and of its children that have finished (dbt, git...)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _carry_peak() -> None:
    """Hand the mark reached so far to the open meters and the process figure, before a reset."""
    hwm = _status_mb("VmHWM") or 0.0
    for peak in _open:
        peak.mb = max(peak.mb, hwm)
    _keep_process_peak(hwm)


class _Sampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="clarion-meter", daemon=True)
        self.peak = _status_mb("VmRSS") or 0.0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(SAMPLE_SECONDS):
            self.peak = max(self.peak, _status_mb("VmRSS") or 0.0)

    def finish(self) -> float:
        self._stop_event.set()
        self.join()
        return max(self.peak, _status_mb("VmRSS") or 0.0)


@contextlib.contextmanager
def measure_stage() -> Iterator[dict[str, Any]]:
    """Measure the block; the yielded dict is filled when it ends (also when it raises) with
    ``wall_s``, ``cpu_s``, ``peak_rss_mb`` (this block alone), ``rss_start_mb`` (what the process
    already held when the block began, part of its peak) and ``peak_rss_method``.

    Usage: ``with measure_stage() as meter: run_the_stage()``, then ``meter["wall_s"]``.
    """
    method = peak_rss_method()
    figures: dict[str, Any] = {}
    own = _Peak()
    sampler: _Sampler | None = None
    if method == "clear_refs":
        with _lock:
            _carry_peak()
            _reset_high_water_mark()
            _open.append(own)
    elif method == "sampler":
        sampler = _Sampler()
        sampler.start()
    rss_start = _status_mb("VmRSS")
    cpu_start = _cpu_s()
    started = time.perf_counter()
    try:
        yield figures
    finally:
        wall = time.perf_counter() - started
        cpu = _cpu_s() - cpu_start
        if method == "clear_refs":
            with _lock:
                _carry_peak()
                _open.remove(own)
            peak = own.mb
        elif sampler is not None:
            peak = sampler.finish()
        else:
            peak = _lifetime_peak_mb()
        figures.update(
            wall_s=round(wall, 3),
            cpu_s=round(cpu, 3),
            peak_rss_mb=round(peak, 1),
            rss_start_mb=round(rss_start, 1) if rss_start is not None else None,
            peak_rss_method=method,
        )
