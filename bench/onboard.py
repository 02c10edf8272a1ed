"""Bringing a shop's own export in: `clarion init` and an extract through SQL mappings, at several sizes.

The export is the payments-in-cents shape of issue 24 (tests/byo_shapes.py builds a small one by
hand): ``customers.csv`` without consent or dates (one id in seven written ``12402.0``),
``orders.csv`` without amounts, ``payments.csv`` in cents, about 2.5 orders per customer and 2
payments per order, written here with numpy.

*init*: profile every file, propose, check each proposed mapping by running it, write clarion.yaml.
*extract*: the extract's library path (what the flow runs) on the written config, fresh warehouse:
the two mappings run, then the contract check, quarantine, merge and accounting.
*Floor*, measured in the same run on the same files: DuckDB running the written config's two SELECTs
alone into Parquet, as the extract's mapping step does before its check. Each in its own process.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench.harness import OUT, measure, report

DATA = OUT / "data"


def ensure_shop(customers: int) -> Path:
    """The three CSV files for ``customers`` customers (seeded; written once per size)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    folder = DATA / f"shop-{customers}"
    done = folder / ".done"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(24)
    ids = np.arange(12_400, 12_400 + customers)
    written = np.where(ids % 7 == 3, np.char.add(ids.astype(str), ".0"), ids.astype(str))
    countries = np.array(["DE", "FR", "GB", "NL", "SE"])[ids % 5]
    pacsv.write_csv(
        pa.table(
            {
                "id": written,
                "email": np.char.add(np.char.add("person", ids.astype(str)), "@shop.example"),
                "first_name": np.char.add("Name", ids.astype(str)),
                "country": countries,
            }
        ),
        folder / "customers.csv",
    )
    per = rng.integers(1, 5, customers)  # 1-4 orders each
    owner = np.repeat(ids, per)
    n_orders = len(owner)
    order_ids = np.arange(900_000, 900_000 + n_orders)
    start = np.datetime64("2024-06-01T00:00:00")
    created = start + rng.integers(0, 700 * 86_400, n_orders).astype("timedelta64[s]")
    words = np.array(["complete", "complete", "complete", "refunded", "canceled"])
    states = words[rng.integers(0, 5, n_orders)]
    pacsv.write_csv(
        pa.table(
            {
                "id": order_ids,
                "customer_id": owner,
                "created": np.char.add(np.datetime_as_string(created, unit="s"), "Z"),
                "state": states,
            }
        ),
        folder / "orders.csv",
    )
    pays = rng.integers(1, 4, n_orders)
    pacsv.write_csv(
        pa.table(
            {
                "order_id": np.repeat(order_ids, pays),
                "amount_cents": rng.integers(100, 9_000, int(pays.sum())),
                "currency": np.full(int(pays.sum()), "EUR"),
                "status": np.array(["succeeded", "succeeded", "refunded", "failed"])[
                    rng.integers(0, 4, int(pays.sum()))
                ],
            }
        ),
        folder / "payments.csv",
    )
    done.write_text("")
    return folder


def rows_of(folder: Path) -> int:
    names = ("customers.csv", "orders.csv", "payments.csv")
    return sum(sum(1 for _ in (folder / f).open()) - 1 for f in names)


def run_init(folder: str, config: str) -> dict[str, Any]:
    from clarion.onboard.check import check_proposal
    from clarion.onboard.profile import profile_folder
    from clarion.onboard.propose import propose_files
    from clarion.onboard.write import write_config

    prop = propose_files(profile_folder(Path(folder)), folder, "shop")
    check_proposal(prop, Path(folder))
    write_config(prop, Path(config), force=True)
    return {"entities": [p.entity for p in prop.entities], "questions": len(prop.questions)}


def _settings(config: str, workdir: str) -> Any:
    from clarion.config import load_settings

    return load_settings(
        config,
        env={},
        overrides={"var_dir": workdir, "warehouse": {"path": f"{workdir}/warehouse.duckdb"}},
    )


def run_extract(config: str, workdir: str) -> dict[str, Any]:
    from bench.extract import extract_totals

    return extract_totals(_settings(config, workdir))


def floor_mappings(config: str, workdir: str) -> dict[str, Any]:
    """The written config's SELECTs alone, over the same files, into Parquet (DuckDB, 2 threads)."""
    from clarion.extract import mapping

    settings = _settings(config, workdir)
    source = settings.sources["shop"]
    rows = 0
    for entity, spec in (source.entities or {}).items():
        con, _ = mapping.connect("shop", entity, source.path, spec)
        try:
            out = f"{workdir}/floor_{entity}.parquet"
            con.execute(f"copy ({spec.sql}) to '{out}' (format parquet)")
            rows += con.execute(f"select count(*) from read_parquet('{out}')").fetchone()[0]
        finally:
            con.close()
    return {"rows": rows}


def main(sizes: list[int]) -> str:
    rows_md = [
        "| customers | rows in the files | init s | init peak MB | extract s | CPU s | peak RSS MB "
        "| rows loaded | floor s | extract / floor |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    records = []
    for n in sizes:
        folder = ensure_shop(n)
        work = Path(tempfile.mkdtemp(prefix=f"bench-onboard-{n}-"))
        try:
            config = str(work / "clarion.yaml")
            init = measure("bench.onboard:run_init", folder=str(folder), config=config)
            assert init.result["entities"] == ["contacts", "orders"], init.result
            floor = measure("bench.onboard:floor_mappings", config=config, workdir=str(work))
            run = measure("bench.onboard:run_extract", config=config, workdir=str(work / "var"))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        record = {
            "customers": n,
            "file_rows": rows_of(folder),
            "init_s": init.wall_s,
            "init_peak_rss_mb": init.peak_rss_mb,
            "questions": init.result["questions"],
            "extract_s": run.wall_s,
            "cpu_s": run.cpu_s,
            "peak_rss_mb": run.peak_rss_mb,
            "loaded": run.result["loaded"],
            "quarantined": run.result["quarantined"],
            "floor_s": floor.wall_s,
            "ratio": run.wall_s / floor.wall_s,
        }
        records.append(record)
        print(json.dumps(record), flush=True)
        rows_md.append(
            f"| {n:,} | {record['file_rows']:,} | {init.wall_s:.1f} | {init.peak_rss_mb:,.0f} "
            f"| {run.wall_s:.1f} | {run.cpu_s:.1f} | {run.peak_rss_mb:,.0f} | {record['loaded']:,} "
            f"| {floor.wall_s:.1f} | {record['ratio']:.1f}x |"
        )
    notes = (
        "A shop's own export (payments in cents, customers without consent or dates; "
        "`bench/onboard.py`): *init* is `clarion init` (profile, propose, run each proposed mapping, "
        "write clarion.yaml); *extract* is the extract's library path on the written config, fresh "
        "warehouse (mappings, contract check, merge, accounting). *Floor*: DuckDB running the same two "
        "SELECTs alone into Parquet. Each measurement in its own process."
    )
    return report("onboard", records, notes, rows_md, title="Bring your own CRM")
