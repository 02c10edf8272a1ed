"""`clarion generate` at several sizes, against a floor: writing the same tables, already in memory.

The floor process reads each generated file back (untimed) and times only writing it out again in
the same format, one file at a time. What the generator spends beyond that is the simulation.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import measure, report


def run_generate(customers: int, fmt: str, out: str, defects: float) -> dict[str, Any]:
    from clarion.config import GenerateSettings
    from clarion.synth.generator import generate

    result = generate(GenerateSettings(customers=customers, format=fmt, defects=defects), out=Path(out))
    rows = sum(v["rows"] for v in result.manifest["entities"].values())
    size = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file())
    return {"rows": rows, "bytes": size}


def write_floor(folder: str, fmt: str) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    manifest = json.loads((Path(folder) / "manifest.json").read_text())
    scratch = Path(tempfile.mkdtemp(prefix="floor-"))
    timed = 0.0
    try:
        for rel in manifest["files"]:
            src = Path(folder) / rel
            if fmt == "parquet":
                table = pq.read_table(src)
            else:  # latin-1 accepts the deliberately broken bytes; the byte count stays about the same
                header = src.open(encoding="latin-1").readline().strip().replace('"', "").split(",")
                table = pacsv.read_csv(
                    src,
                    read_options=pacsv.ReadOptions(encoding="latin-1"),
                    parse_options=pacsv.ParseOptions(newlines_in_values=True),
                    convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(header, pa.string())),
                )
            target = scratch / rel.replace("/", "_")
            started = time.perf_counter()
            if fmt == "parquet":
                pq.write_table(table, target, compression="zstd")
            else:
                pacsv.write_csv(table, target)
            timed += time.perf_counter() - started
            del table
            target.unlink()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"write_s": timed}


def main(sizes: list[int], formats: list[str], defects: float = 0.01) -> str:
    rows_md = [
        "| contacts | format | rows written | generate s | CPU s | peak RSS MB | rows/s "
        "| floor s (write only) | floor peak MB | generate / floor |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    records = []
    for fmt in formats:
        for n in sizes:
            out = Path(tempfile.mkdtemp(prefix=f"bench-gen-{fmt}-{n}-")) / "crm"
            try:
                gen = measure(
                    "bench.generate:run_generate", customers=n, fmt=fmt, out=str(out), defects=defects
                )
                floor = measure("bench.generate:write_floor", folder=str(out), fmt=fmt)
            finally:
                shutil.rmtree(out.parent, ignore_errors=True)
            write_s = floor.result["write_s"]
            rows = gen.result["rows"]
            record = {
                "contacts": n,
                "format": fmt,
                "rows": rows,
                "bytes": gen.result["bytes"],
                "wall_s": gen.wall_s,
                "cpu_s": gen.cpu_s,
                "peak_rss_mb": gen.peak_rss_mb,
                "floor_s": write_s,
                "floor_peak_rss_mb": floor.peak_rss_mb,
                "ratio": gen.wall_s / write_s,
            }
            records.append(record)
            print(json.dumps(record), flush=True)
            rows_md.append(
                f"| {n:,} | {fmt} | {rows:,} | {gen.wall_s:.1f} | {gen.cpu_s:.1f} | {gen.peak_rss_mb:,.0f} "
                f"| {rows / gen.wall_s:,.0f} | {write_s:.1f} | {floor.peak_rss_mb:,.0f} "
                f"| {gen.wall_s / write_s:.1f}x |"
            )
    notes = (
        f"Synthetic CRM generation (`clarion generate --defects {defects}`): all seven entities plus truth, "
        "future orders and the defects manifest. *Floor*: the same files' tables, already in memory, "
        "written again in the same format (pyarrow), timed alone. Peak RSS is the whole process."
    )
    return report("generate", records, notes, rows_md)
