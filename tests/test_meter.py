"""The per-stage meter: each stage's own wall time, CPU time and peak memory.

Bounds are loose on purpose (other processes share the machine): they check what is counted, not
how fast this machine is.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from clarion import meter
from clarion.meter import measure_stage

MB = 1024 * 1024


def _allocate(mb: int) -> None:
    block = np.ones(mb * MB // 8)  # written, so every page is resident
    assert block.sum() == len(block)
    del block


def _busy(cpu_seconds: float) -> None:
    start = time.process_time()
    while time.process_time() - start < cpu_seconds:
        pass


needs_proc = pytest.mark.skipif(
    meter.peak_rss_method() == "ru_maxrss", reason="no /proc: only the lifetime peak is known"
)


TWO_STAGES = """
import json, sys, time
import numpy as np
from clarion import meter
from clarion.meter import measure_stage
if sys.argv[1] == "sampler":
    meter._method = "sampler"  # as where /proc/self/clear_refs is read-only
with measure_stage() as big:
    block = np.ones(200 * 1024 * 1024 // 8)  # written, so every page is resident
    assert block.sum() == len(block)
    time.sleep(0.1)  # a few samples while the block is held
    del block
with measure_stage() as idle:
    pass
print(json.dumps([big, idle]))
"""


def _two_stages(method: str) -> tuple[dict, dict]:
    """A 200 MB stage, then an idle one, in a fresh interpreter: in the test process itself the
    allocator may hand back memory an earlier test left resident, and the peak would not move."""
    out = subprocess.run(
        [sys.executable, "-c", TWO_STAGES, method], check=True, capture_output=True, text=True
    ).stdout
    big, idle = json.loads(out.strip().splitlines()[-1])
    return big, idle


@needs_proc
def test_a_stage_peak_counts_its_own_allocation_and_the_next_stage_starts_from_zero():
    big, idle = _two_stages("default")

    assert big["peak_rss_mb"] >= 150
    assert idle["peak_rss_mb"] <= big["peak_rss_mb"] - 150  # the mark was reset between stages
    assert big["peak_rss_method"] in ("clear_refs", "sampler")


@needs_proc
def test_the_process_peak_since_start_survives_the_resets_between_stages():
    with measure_stage() as big:
        _allocate(200)
    with measure_stage():
        pass

    assert meter.process_peak_rss_mb() >= big["peak_rss_mb"] - 0.1  # the figures are rounded


@needs_proc
def test_the_sampler_fallback_also_sees_a_stage_peak():
    big, idle = _two_stages("sampler")

    assert big["peak_rss_method"] == "sampler"
    assert big["peak_rss_mb"] >= 150
    assert idle["peak_rss_mb"] <= big["peak_rss_mb"] - 150


@needs_proc
def test_an_outer_measurement_keeps_the_peak_of_a_stage_measured_inside_it():
    with measure_stage() as outer:
        with measure_stage() as inner:
            _allocate(200)
        with measure_stage():
            pass  # resets the mark again

    assert inner["peak_rss_mb"] >= 150
    assert outer["peak_rss_mb"] >= inner["peak_rss_mb"]


def test_cpu_time_counts_a_busy_stage():
    with measure_stage() as busy:
        _busy(0.3)

    assert busy["cpu_s"] >= 0.2
    assert busy["wall_s"] >= busy["cpu_s"] * 0.9


def test_cpu_time_counts_the_children_a_stage_waits_for():
    code = "import time\ns = time.process_time()\nwhile time.process_time() - s < 0.3: pass"

    with measure_stage() as stage:
        subprocess.run([sys.executable, "-c", code], check=True)

    assert stage["cpu_s"] >= 0.2


def test_a_sleeping_stage_takes_wall_time_but_little_cpu():
    with measure_stage() as sleeping:
        time.sleep(0.3)

    assert sleeping["wall_s"] >= 0.25
    assert sleeping["cpu_s"] < sleeping["wall_s"]


def test_the_figures_are_filled_when_the_stage_fails():
    with pytest.raises(ValueError), measure_stage() as failed:
        raise ValueError("the stage broke")

    assert set(failed) >= {"wall_s", "cpu_s", "peak_rss_mb", "peak_rss_method"}


def test_every_stage_of_a_run_records_its_own_meter_and_the_cli_prints_their_times(small_run):
    from clarion.cli import _run_text

    result = small_run["result"]

    for name, summary in result["stages"].items():
        figures = summary["meter"]
        assert figures["wall_s"] > 0 and figures["cpu_s"] >= 0 and figures["peak_rss_mb"] > 0, name
    [line] = [x for x in _run_text(result).splitlines() if x.startswith("  time ")]
    assert line.startswith("  time       prepare ") and " s, extract " in line and "; peak RSS " in line
