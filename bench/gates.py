"""The quality gates against the Data Docs history a daily run accumulates.

Every run keeps each gate's validation results under var/gx (about eight a run: a validation per
checked table and one for the metrics, per gate) and rebuilds the Data Docs index, which reads every
result it lists. On a 10,000-contact warehouse (raw tables from the cached Parquet CRM, dbt built once
into staging), each measurement is the raw gate then the marts gate (`run_gate`, as the transform
stage calls them) in a fresh process, on a copy of the warehouse whose var/gx already holds N earlier
validation results (copies of real ones, dated one per minute before the measurement). Floor: the same
two gates with `quality.data_docs: false` (the validations alone), measured in the same run.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.harness import OUT, measure, report, workdir_settings
from bench.transform import AS_OF, ensure_warehouse

CONTACTS = 10_000
HISTORIES = (0, 250, 1000)


def prepare() -> Path:
    """A warehouse with raw tables, a staging build and one gate of each kind already run (their
    results are the templates the history is copied from)."""
    folder = OUT / "gates" / f"base-{CONTACTS}"
    if (folder / "ready").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copy(ensure_warehouse(CONTACTS), folder / "warehouse.duckdb")
    measure("bench.gates:build_and_gate", workdir=str(folder))
    (folder / "ready").write_text("ok\n")
    return folder


def build_and_gate(workdir: str) -> dict[str, Any]:
    from clarion.transform.dbt import run_dbt

    settings = workdir_settings(workdir)
    run_dbt(settings, "build", AS_OF)
    return gates(workdir)


def gates(workdir: str, data_docs: bool = True) -> dict[str, Any]:
    """The raw gate, then the marts gate on the staging build, as the transform stage runs them."""
    import time

    from clarion.quality.gate import ensure_tables, run_gate
    from clarion.warehouse import Warehouse

    settings = workdir_settings(workdir, quality={"data_docs": data_docs})
    seconds = {}
    with Warehouse.from_settings(settings).connect("bench") as con:
        ensure_tables(con)
        for suite, candidate in (("raw", "staging"), ("marts", "staging")):
            started = time.perf_counter()
            gate = run_gate(settings, con, suite, "bench", candidate=candidate)
            seconds[suite] = time.perf_counter() - started
            assert gate.passed, gate.failures
    return {"raw_s": seconds["raw"], "marts_s": seconds["marts"]}


def with_history(base: Path, results: int) -> Path:
    """A copy of the base project whose var/gx holds ``results`` earlier validation results."""
    work = Path(tempfile.mkdtemp(prefix="bench-gates-"))
    shutil.copy(base / "warehouse.duckdb", work / "warehouse.duckdb")
    shutil.copytree(base / "gx", work / "gx")
    store = work / "gx" / "uncommitted" / "validations"
    templates = sorted(store.rglob("*.json"))
    start = datetime.now(UTC) - timedelta(minutes=results + 10)
    for i in range(results):
        template = templates[i % len(templates)]
        run_time = (start + timedelta(minutes=i)).strftime("%Y%m%dT%H%M%S.%fZ")
        target = template.parent.parent / run_time / template.name
        target.parent.mkdir(parents=True, exist_ok=True)
        data = json.loads(template.read_text())
        data.setdefault("meta", {}).setdefault("run_id", {})["run_time"] = run_time
        target.write_text(json.dumps(data))
    return work


def main() -> str:
    base = prepare()
    rows_md = [
        "| earlier results in var/gx | gates s (raw / marts) | floor s (no Data Docs) | / floor "
        "| process s (imports included) | peak MB |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    records = []
    for results in HISTORIES:
        work = with_history(base, results)
        try:
            floor = measure("bench.gates:gates", workdir=str(work), data_docs=False)
            run = measure("bench.gates:gates", workdir=str(work))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        seconds = run.result["raw_s"] + run.result["marts_s"]
        floor_s = floor.result["raw_s"] + floor.result["marts_s"]
        records.append(
            {
                "history": results,
                "gates_s": seconds,
                **run.result,
                "floor_s": floor_s,
                "process_s": run.wall_s,
                "peak_rss_mb": run.peak_rss_mb,
            }
        )
        rows_md.append(
            f"| {results:,} | {seconds:.2f} ({run.result['raw_s']:.2f} / {run.result['marts_s']:.2f}) "
            f"| {floor_s:.2f} | {seconds / floor_s:.1f}x | {run.wall_s:.2f} | {run.peak_rss_mb:,.0f} |"
        )
    return report("gates", records, __doc__.split("\n\n", 1)[1].replace("\n", " "), rows_md, "Quality gates")
