"""`clarion generate`: the synthetic CRM export, its planted truth and its defects manifest.

Output folder (CSV shown; Parquet has the same names)::

    contacts.csv products.csv orders.csv order_items.csv email_events.csv support_tickets.csv consents.csv
    contacts.part2.csv contacts.part3.csv orders.part2.csv   schema-drifted part files (only with --defects)
    truth/contacts.csv          persona, planted drivers and onset, what each contact buys after the cutoff,
                                favourite product category (taste)
    truth/tickets.csv           true sentiment, planted topic, PII and prompt-injection flags per ticket
    truth/product_companions.csv  the products bought together (each product's 2-3 companions)
    truth/future_orders.csv     the orders after the cutoff (never in the export), and their items
    truth/campaign_effects.csv  the planted uplift of each experiment's variants, per persona
    truth/campaign_assignment.csv  every experiment's audience: arm, variant, send time, planted order
    defects.csv                 every injected defect: kind, file, row, key, column, expected outcome, reason
    manifest.json               parameters, row counts and sha256 of every file

Contacts are simulated in fixed chunks of 50,000 in order, each from its own seed, so memory stays
bounded and the same seed and size give byte-identical files. The folder is written beside the
target and renamed into place at the end: an interrupted run leaves the previous export intact.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import clarion
from clarion.config import GenerateSettings
from clarion.contract import ENTITIES
from clarion.errors import GenerateError
from clarion.synth import defects as dfx
from clarion.synth.arrays import Counters, Timeline
from clarion.synth.campaigns import make_campaigns
from clarion.synth.orders import FX_PER_EUR, companion_table, make_catalog
from clarion.synth.personas import DRIVERS, PERSONAS
from clarion.synth.simulate import ChunkSimulator
from clarion.synth.sinks import FileSink, MariaDbSink, PostgresSink, redact_dsn, sha256_file

log = logging.getLogger(__name__)

CHUNK_CONTACTS = 50_000  # fixed: changing it changes the data a seed produces
GENERATOR = "clarion-synth"
GENERATOR_VERSION = 3
DEFECTS_FILE = "defects.csv"
MANIFEST_FILE = "manifest.json"
DEFECT_COLUMNS = ("kind", "entity", "file", "row", "key", "column", "expected", "reason", "value")
ENTITY_ORDER = (
    "contacts",
    "products",
    "orders",
    "order_items",
    "email_events",
    "support_tickets",
    "consents",
)

Progress = Callable[[int, int], None]


@dataclass
class GenerateResult:
    out: Path
    destination: str
    manifest: dict[str, Any]
    seconds: float

    def summary(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "out": str(self.out),
            "destination": self.destination,
            "customers": m["customers"],
            "seed": m["seed"],
            "format": m["format"],
            "rows": {e: v["rows"] for e, v in m["entities"].items()},
            "defects": m["defects"]["rows"],
            "seconds": round(self.seconds, 2),
        }


def generate(
    g: GenerateSettings,
    *,
    out: Path | None = None,
    postgres_dsn: str | None = None,
    pg_schema: str = "crm",
    mariadb_dsn: str | None = None,
    mariadb_database: str = "crm",
    progress: Progress | None = None,
) -> GenerateResult:
    started = time.perf_counter()
    if postgres_dsn and mariadb_dsn:
        raise GenerateError("give one database destination: PostgreSQL or MariaDB, not both")
    out = Path(out or g.out)
    if g.profile == "transactions":  # a transactions-only shop: clarion/synth/transactions.py
        from clarion.synth.transactions import generate_transactions

        if postgres_dsn or mariadb_dsn:
            raise GenerateError(
                "the transactions profile writes files only (a transactions export is a file); "
                "drop --postgres/--mariadb, or use --profile crm to load a database"
            )
        return generate_transactions(g, out, progress=progress)
    tl = Timeline.from_settings(g)
    _check_target(out)
    db: PostgresSink | MariaDbSink | None = None  # connect first: fail before touching disk
    destination = "files"
    if postgres_dsn:
        db = PostgresSink(postgres_dsn, pg_schema)
        destination = f"postgres:{pg_schema} at {redact_dsn(postgres_dsn)}"
    elif mariadb_dsn:
        db = MariaDbSink(mariadb_dsn, mariadb_database)
        destination = f"mariadb:{mariadb_database} at {redact_dsn(mariadb_dsn)}"
    staging = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        data_sink = db or FileSink(staging, g.format)
        side_sink = FileSink(staging, g.format)
        manifest = _run(
            g,
            tl,
            data_sink,
            side_sink,
            staging,
            destination_fmt="database" if db else g.format,
            progress=progress,
        )
        manifest["destination"] = destination
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    except BaseException:
        if db is not None:
            db.abort()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return GenerateResult(out, manifest["destination"], manifest, time.perf_counter() - started)


def _check_target(out: Path) -> None:
    """Only ever replace a folder this generator wrote: never delete somebody's files."""
    if out.exists() and not out.is_dir():
        raise GenerateError(f"--out {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()):
        marker = out / MANIFEST_FILE
        try:
            ours = json.loads(marker.read_text()).get("generator") == GENERATOR
        except (OSError, ValueError):
            ours = False
        if not ours:
            raise GenerateError(
                f"{out} is not empty and was not written by `clarion generate`; "
                "choose an empty or new folder with --out"
            )


def _run(
    g: GenerateSettings,
    tl: Timeline,
    data_sink: FileSink | PostgresSink | MariaDbSink,
    side_sink: FileSink,
    staging: Path,
    *,
    destination_fmt: str,
    progress: Progress | None,
) -> dict[str, Any]:
    catalog = make_catalog(
        np.random.default_rng(np.random.SeedSequence([g.seed, 0])),
        g.products,
        tl,
        rng_companions=np.random.default_rng(np.random.SeedSequence([g.seed, 3])),
    )
    campaigns = make_campaigns(tl)
    counters = Counters()
    ids = dfx.Ids({"contacts": g.customers + 1, "products": g.products + 1})
    entity_rows: Counter[str] = Counter()
    clean_rows: Counter[str] = Counter()
    files_of: dict[str, list[str]] = {e: [] for e in ENTITY_ORDER}
    defects_out = _DefectWriter(staging / DEFECTS_FILE)
    future = _FutureSpill(staging / ".future.arrows")
    personas: Counter[str] = Counter()
    drivers: Counter[str] = Counter()
    text = destination_fmt == "csv"
    n_chunks = -(-g.customers // CHUNK_CONTACTS)

    def emit(entity: str, table: pa.Table, rng: np.random.Generator, first_chunk: bool) -> None:
        table = dfx.as_text(table) if text else table
        clean_rows[entity] += table.num_rows
        injected = dfx.inject(
            entity,
            table,
            rate=g.defects,
            fmt=destination_fmt,
            rng=rng,
            ids=ids,
            first_chunk=first_chunk,
            drift_rows=_drift_rows(g),
        )
        first_row = data_sink.write(entity, injected.table)
        path = data_sink.path_of(entity)
        if path not in files_of[entity]:
            files_of[entity].append(path)
        entity_rows[entity] += injected.table.num_rows
        defects_out.add(
            _records(
                entity, injected.table, injected.kinds, injected.positions, path, first_row, destination_fmt
            )
        )
        for part, (kind, rows) in enumerate(injected.drift.items(), start=2):
            name = f"{entity}.part{part}"
            first = data_sink.write(name, rows)
            path = data_sink.path_of(name)
            files_of[entity].append(path)
            entity_rows[entity] += rows.num_rows
            positions = np.arange(rows.num_rows)
            defects_out.add(
                _records(entity, rows, [kind] * rows.num_rows, positions, path, first, destination_fmt)
            )

    for chunk in range(n_chunks):
        first_id = chunk * CHUNK_CONTACTS + 1
        n = min(CHUNK_CONTACTS, g.customers - chunk * CHUNK_CONTACTS)
        sim = ChunkSimulator(np.random.SeedSequence([g.seed, 1, chunk]), first_id, n, tl, catalog, campaigns)
        result = sim.run(counters)
        ids.next.update(
            orders=counters.orders,
            order_items=counters.order_items,
            email_events=counters.email_events,
            support_tickets=counters.support_tickets,
            consents=counters.consents,
        )
        defect_rng = np.random.default_rng(np.random.SeedSequence([g.seed, 2, chunk]))
        tables = dict(result.tables)
        if chunk == 0:
            tables["products"] = catalog.table
        for entity in ENTITY_ORDER:
            if entity in tables:
                emit(entity, tables[entity], defect_rng, first_chunk=chunk == 0)
        counters.orders, counters.order_items = ids.next["orders"], ids.next["order_items"]
        counters.email_events, counters.support_tickets = (
            ids.next["email_events"],
            ids.next["support_tickets"],
        )
        counters.consents = ids.next["consents"]
        side_sink.write("truth/contacts", result.truth)
        side_sink.write("truth/tickets", result.ticket_truth)
        side_sink.write("truth/campaign_assignment", result.assignment)
        personas.update(result.truth.column("persona").to_pylist())
        drivers.update(d for ds in result.truth.column("drivers").to_pylist() for d in ds.split(";") if d)
        future.add(result.future_orders, result.future_items)
        if progress:
            progress(min(g.customers, (chunk + 1) * CHUNK_CONTACTS), g.customers)

    future.write_renumbered(counters, side_sink)
    side_sink.write("truth/campaign_effects", campaigns.effects_table())
    side_sink.write("truth/product_companions", companion_table(catalog))
    infos = {**data_sink.close(), **side_sink.close()}
    defects_out.close()
    by_kind = defects_out.by_kind
    return {
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "clarion_version": clarion.__version__,
        "seed": g.seed,
        "customers": g.customers,
        "products": g.products,
        "format": g.format,
        "defect_rate": g.defects,
        "start": g.start.isoformat(),
        "cutoff": g.cutoff.isoformat(),
        "future_days": g.future_days,
        "email_history_days": g.email_history_days,
        "fx_per_eur": FX_PER_EUR,
        "entities": {
            e: {
                "files": files_of[e],
                "rows": entity_rows[e],
                "clean_rows": clean_rows[e],
                "primary_key": ENTITIES[e].primary_key,
            }
            for e in ENTITY_ORDER
        },
        "files": {k: asdict(v) for k, v in sorted(infos.items())},
        "truth": {
            "contacts": side_sink.path_of("truth/contacts"),
            "tickets": side_sink.path_of("truth/tickets"),
            "product_companions": side_sink.path_of("truth/product_companions"),
            "future_orders": side_sink.path_of("truth/future_orders"),
            "future_order_items": side_sink.path_of("truth/future_order_items"),
            "campaign_effects": side_sink.path_of("truth/campaign_effects"),
            "campaign_assignment": side_sink.path_of("truth/campaign_assignment"),
            "personas": dict(sorted(personas.items())),
            "drivers": {d: drivers.get(d, 0) for d in DRIVERS},
            "persona_names": list(PERSONAS),
        },
        "defects": {
            "file": DEFECTS_FILE,
            "sha256": sha256_file(staging / DEFECTS_FILE),
            "rows": sum(by_kind.values()),
            "by_kind": dict(sorted(by_kind.items())),
            "kinds": [
                {
                    "kind": k.name,
                    "entity": k.entity,
                    "column": k.column,
                    "reason": k.reason,
                    "expected": k.expected,
                    "description": k.description,
                    "formats": sorted(k.formats),
                }
                for k in dfx.KINDS
            ],
        },
    }


def _drift_rows(g: GenerateSettings) -> int:
    return int(max(3, min(dfx.DRIFT_MAX_ROWS, round(g.defects * g.customers / 10))))


def _records(
    entity: str,
    table: pa.Table,
    kinds: list[dfx.DefectKind],
    positions: np.ndarray,
    path: str,
    first_row: int,
    fmt: str,
) -> list[tuple]:
    """One manifest row per added defect row; values fetched column-wise, not row by row."""
    if not kinds:
        return []
    pk = ENTITIES[entity].primary_key
    take = pa.array(positions)
    keys = table.column(pk).take(take).to_pylist() if pk in table.column_names else [None] * len(kinds)
    records = []
    by_column: dict[str | None, list[int]] = {}
    for i, kind in enumerate(kinds):
        by_column.setdefault(kind.column, []).append(i)
    shown: dict[int, str] = {}
    for column, members in by_column.items():
        if column is None or column not in table.column_names:
            continue
        values = table.column(column).take(pa.array(positions[members])).to_pylist()
        for i, value in zip(members, values, strict=True):
            shown[i] = dfx.render_value(value)
    for i, kind in enumerate(kinds):
        row = "" if fmt == "database" else int(first_row + positions[i])  # a table has no row numbers
        if row != "" and kind.reason == "malformed_row":  # no record: located by its line (header first)
            row += 1
        key = "" if keys[i] is None else str(keys[i])
        records.append(
            (
                kind.name,
                entity,
                path,
                row,
                key,
                kind.column or "",
                kind.expected,
                kind.reason,
                shown.get(i, ""),
            )
        )
    return records


class _FutureSpill:
    """Future orders wait on disk, not in memory, until the last exported order id is known."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writers: dict[str, pa.ipc.RecordBatchFileWriter] = {}

    def add(self, orders: pa.Table, items: pa.Table) -> None:
        for name, table in (("orders", orders), ("items", items)):
            if name not in self._writers:
                self._writers[name] = pa.ipc.new_file(str(self.path) + f".{name}", table.schema)
            # exactly one batch per chunk, even an empty one, so orders and items stay in step
            self._writers[name].write_batch(_one_batch(table))

    def write_renumbered(self, counters: Counters, sink: FileSink) -> None:
        """Ids continue right after the last exported order, as if these orders had arrived next."""
        for writer in self._writers.values():
            writer.close()
        if not self._writers:
            return
        next_order, next_item = counters.orders, counters.order_items
        with pa.OSFile(str(self.path) + ".orders") as of, pa.OSFile(str(self.path) + ".items") as itf:
            orders_file, items_file = pa.ipc.open_file(of), pa.ipc.open_file(itf)
            for i in range(orders_file.num_record_batches):
                orders = pa.Table.from_batches([orders_file.get_batch(i)])
                items = pa.Table.from_batches([items_file.get_batch(i)])
                orders = orders.set_column(0, "order_id", pc.add(orders.column("order_id"), next_order))
                items = items.set_column(1, "order_id", pc.add(items.column("order_id"), next_order))
                item_ids = pa.array(np.arange(next_item, next_item + items.num_rows), pa.int64())
                items = items.set_column(0, "order_item_id", item_ids)
                next_order += orders.num_rows
                next_item += items.num_rows
                sink.write("truth/future_orders", orders)
                sink.write("truth/future_order_items", items)
        for suffix in (".orders", ".items"):
            Path(str(self.path) + suffix).unlink()


def _one_batch(table: pa.Table) -> pa.RecordBatch:
    batches = table.combine_chunks().to_batches(max_chunksize=None)
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=table.schema)


class _DefectWriter:
    """Streams the defects manifest to disk as chunks are written; keeps only counts in memory."""

    def __init__(self, path: Path) -> None:
        self._fh = path.open("w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._fh)
        self._csv.writerow(DEFECT_COLUMNS)
        self.by_kind: Counter[str] = Counter()

    def add(self, records: list[tuple]) -> None:
        self._csv.writerows(records)
        self.by_kind.update(f"{r[1]}/{r[0]}" for r in records)

    def close(self) -> None:
        self._fh.close()


def read_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        raise GenerateError(
            f"{folder} has no {MANIFEST_FILE}: generate it first with `clarion generate --out {folder}`"
        )
    return json.loads(path.read_text())
