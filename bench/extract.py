"""Extract at several sizes from Parquet files and from PostgreSQL, each against a floor.

*Extract* is the library path the Prefect flow runs (every source entity: dlt landing, contract
check, quarantine, merge into raw, accounting), on a fresh warehouse, without the Prefect server.
*Floors*, measured in the same run on the same data: for files, DuckDB reading the same Parquet
files into tables itself (``create table as select * from read_parquet(...)``); for PostgreSQL, the
rows leaving the server as fast as it can send them (``COPY (select * ...) TO STDOUT``, binary).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import OUT, measure, report, workdir_settings

DATA = OUT / "data"
PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def ensure_data(customers: int, fmt: str = "parquet") -> Path:
    """Generated once per size and kept under bench/out/data (the generator is deterministic)."""
    folder = DATA / f"crm-{customers}-{fmt}"
    manifest = folder / "manifest.json"
    from clarion.config import GenerateSettings
    from clarion.synth.generator import GENERATOR_VERSION, generate

    if manifest.exists():
        made = json.loads(manifest.read_text())
        if made["customers"] == customers and made.get("generator_version") == GENERATOR_VERSION:
            return folder

    DATA.mkdir(parents=True, exist_ok=True)
    generate(GenerateSettings(customers=customers, format=fmt, defects=0.01), out=folder)
    return folder


def ensure_postgres(customers: int) -> str:
    """The same CRM loaded into PostgreSQL schema bench_<size> (reused when it is already there)."""
    import psycopg

    schema = f"bench_{customers}"
    with psycopg.connect(PG_DSN, autocommit=True) as con:
        row = con.execute(
            "select count(*) from information_schema.tables where table_schema = %s", [schema]
        ).fetchone()
    if row[0] == 7:
        return schema
    from clarion.config import GenerateSettings
    from clarion.synth.generator import generate

    generate(
        GenerateSettings(customers=customers, defects=0.01),
        out=DATA / f"crm-{customers}-postgres-manifests",
        postgres_dsn=PG_DSN,
        pg_schema=schema,
    )
    return schema


def run_extract(source: dict[str, Any], workdir: str) -> dict[str, Any]:
    import os

    os.environ["BENCH_PG_DSN"] = PG_DSN
    return extract_totals(workdir_settings(workdir, sources={"crm": source}))


def extract_totals(settings: Any) -> dict[str, Any]:
    """Every step of the settings' sources, as the extract flow runs them; read/loaded/quarantined."""
    from clarion.extract.runner import extract_step, plan_steps
    from clarion.warehouse import Warehouse

    warehouse = Warehouse.from_settings(settings)
    totals = {"read": 0, "loaded": 0, "quarantined": 0}
    with warehouse.writing("bench"):
        for step in plan_steps(settings):
            for r in extract_step(settings, warehouse, "bench", step):
                for k in totals:
                    totals[k] += getattr(r, k)
    assert totals["read"] == totals["loaded"] + totals["quarantined"]
    return totals


def floor_parquet(folder: str, workdir: str) -> dict[str, Any]:
    import duckdb

    manifest = json.loads((Path(folder) / "manifest.json").read_text())
    con = duckdb.connect(f"{workdir}/floor.duckdb", config={"threads": "2", "memory_limit": "4GB"})
    rows = 0
    for entity, info in manifest["entities"].items():
        files = [str(Path(folder) / f) for f in info["files"]]
        con.execute(f"create table {entity} as select * from read_parquet({files}, union_by_name = true)")
        rows += con.execute(f"select count(*) from {entity}").fetchone()[0]
    con.close()
    return {"rows": rows}


def floor_postgres(schema: str) -> dict[str, Any]:
    import psycopg

    from clarion.contract import ENTITIES

    size = 0
    with psycopg.connect(PG_DSN) as con, con.cursor() as cur:
        for table in ENTITIES:
            with cur.copy(f'copy (select * from "{schema}"."{table}") to stdout (format binary)') as copy:
                for block in copy:
                    size += len(block)
    return {"bytes": size}


def main(sizes: list[int], kinds: list[str]) -> str:
    rows_md = [
        "| contacts | source | rows read | extract s | CPU s | peak RSS MB | rows/s | floor s "
        "| floor peak MB | extract / floor |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    records = []
    for kind in kinds:
        for n in sizes:
            work = Path(tempfile.mkdtemp(prefix=f"bench-extract-{kind}-{n}-"))
            try:
                if kind == "parquet":
                    folder = ensure_data(n)
                    source = {"kind": "files", "path": str(folder)}
                    floor = measure("bench.extract:floor_parquet", folder=str(folder), workdir=str(work))
                else:
                    schema = ensure_postgres(n)
                    source = {"kind": "postgres", "dsn_env": "BENCH_PG_DSN", "schema": schema}
                    floor = measure("bench.extract:floor_postgres", schema=schema)
                started = time.perf_counter()
                run = measure("bench.extract:run_extract", source=source, workdir=str(work))
                _ = time.perf_counter() - started
            finally:
                shutil.rmtree(work, ignore_errors=True)
            read = run.result["read"]
            record = {
                "contacts": n,
                "source": kind,
                "read": read,
                "loaded": run.result["loaded"],
                "quarantined": run.result["quarantined"],
                "wall_s": run.wall_s,
                "cpu_s": run.cpu_s,
                "peak_rss_mb": run.peak_rss_mb,
                "floor_s": floor.wall_s,
                "floor_peak_rss_mb": floor.peak_rss_mb,
                "ratio": run.wall_s / floor.wall_s,
            }
            records.append(record)
            print(json.dumps(record), flush=True)
            rows_md.append(
                f"| {n:,} | {kind} | {read:,} | {run.wall_s:.1f} | {run.cpu_s:.1f} | {run.peak_rss_mb:,.0f} "
                f"| {read / run.wall_s:,.0f} | {floor.wall_s:.1f} | {floor.peak_rss_mb:,.0f} "
                f"| {run.wall_s / floor.wall_s:.1f}x |"
            )
    notes = (
        "`clarion extract` on a fresh warehouse, all seven entities with 1% injected defects (the library "
        "path the flow runs, without the Prefect server's 10-20 s start). *Floor* for Parquet: DuckDB "
        "reading the same files into tables itself. *Floor* for PostgreSQL: the server sending the same "
        "tables with `COPY ... TO STDOUT (binary)`. Each measurement in its own process."
    )
    return report("extract", records, notes, rows_md)
