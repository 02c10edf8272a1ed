"""What one extraction does, step by step: plan the (source, entity) steps, and run one step.

A step lands what is new (files not yet published, or rows whose cursor is at or after the latest
one already in ``raw`` for that source, less the look-back, and rows whose cursor is NULL) and
publishes it. Progress is only ever recorded by the
publish transaction: the file ledger and ``raw`` itself are the state, so a run killed at any
point simply reads the same things again next time, and never skips or doubles a row.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pyarrow.parquet as pq

from clarion.config import DatabaseSource, FileEntity, FilesSource, HubSpotSource, Settings
from clarion.contract import ENTITIES, load_order
from clarion.extract import mapping, orphans, transactions
from clarion.extract.accounting import SourceCount, record_unchanged
from clarion.extract.batches import ReadStats, imported_select
from clarion.extract.contract_sql import CheckSpec, Formats, q
from clarion.extract.publish import (
    LedgerFile,
    PublishJob,
    PublishResult,
    ensure_tables,
    publish,
)
from clarion.extract.readers import (
    EntityPlan,
    ExtractError,
    SourceFile,
    discover,
    plan_entity,
)
from clarion.extract.source_counts import PageCount, TableCount
from clarion.extract.sources import (
    Landed,
    database_resource,
    database_urls,
    file_resources,
    hubspot_resource,
    imported_table,
    land,
    root_cause,
    secret,
)
from clarion.privacy import suppression
from clarion.runtime import checkpoint
from clarion.subject.correct import apply_to_load
from clarion.warehouse import Warehouse

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    source: str
    entity: str  # a contract entity, or "transactions" for a transactions-only file

    @property
    def name(self) -> str:
        return f"{self.source}/{self.entity}"


def parents_of(step: Step) -> set[str]:
    if step.entity == "transactions":
        return set()
    return set(ENTITIES[step.entity].parents.values())


def plan_steps(settings: Settings, only_source: str | None = None) -> list[Step]:
    """Every (source, entity) to extract, parents before children within each source."""
    if only_source is not None and only_source not in settings.sources:
        raise ExtractError(
            f"no source named {only_source!r}; configured: {', '.join(settings.sources) or 'none'} "
            "(clarion.yaml: sources)"
        )
    names = [only_source] if only_source else (settings.extract.sources or list(settings.sources))
    order = load_order()
    steps: list[Step] = []
    for name in names:
        source = settings.sources[name]
        entities: list[str]
        if isinstance(source, FilesSource):
            if not source.path.is_dir():
                raise ExtractError(
                    f"source {name}: folder {source.path} does not exist; generate data with "
                    f"`clarion generate` or fix sources.{name}.path in clarion.yaml"
                )
            if source.entities is not None:
                entities = list(source.entities)
            else:
                entities = [e for e in ENTITIES if discover(source.path, e, FileEntity())]
            if source.transactions is not None:
                steps.append(Step(name, "transactions"))
            elif not entities:
                raise ExtractError(
                    f"source {name}: no entity files under {source.path} (expected names like contacts.csv, "
                    "orders.parquet); map yours with sources.<name>.entities in clarion.yaml"
                )
        elif isinstance(source, DatabaseSource):
            entities = list(source.entities) if source.entities is not None else list(ENTITIES)
        else:
            entities = list(dict.fromkeys(source.objects.values()))
        steps += [Step(name, e) for e in order if e in entities]
    return steps


def extract_step(settings: Settings, warehouse: Warehouse, run_id: str, step: Step) -> list[PublishResult]:
    """Land and publish one step. Raises ExtractError with the source named when it cannot."""
    try:
        results = _extract_step(settings, warehouse, run_id, step)
        return results + release_orphans(settings, warehouse, run_id, step, results)
    except ExtractError:
        raise
    except Exception as exc:  # a driver, HTTP or file error: say which source, keep secrets out
        kind = settings.sources[step.source].kind
        raise ExtractError(f"source {step.source} ({kind}): {step.entity} failed: {root_cause(exc)}") from exc


def formats_of(settings: Settings, source_name: str, entity: str) -> Formats:
    """How a source writes dates and decimals for an entity (what its quarantine records hold)."""
    source = settings.sources.get(source_name)
    if not isinstance(source, FilesSource):
        return Formats()
    spec = (source.entities or {}).get(entity) or FileEntity()
    return Formats.of(spec)


def release_orphans(
    settings: Settings, warehouse: Warehouse, run_id: str, step: Step, results: list[PublishResult]
) -> list[PublishResult]:
    """After a step, the quarantined orphans whose parent is now in raw load (see clarion.extract.orphans).
    Runs even when the step read nothing new: an earlier run may have stopped before releasing."""
    parents = ["contacts", "orders"] if step.entity == "transactions" else [step.entity]
    load_id = next((r.load_id for r in results if r.load_id), "") or f"release-{run_id}"
    released: list[PublishResult] = []
    with warehouse.connect(f"extract {step.name}") as con:
        for parent in parents:
            released += orphans.release(
                con,
                parent,
                run_id=run_id,
                load_id=load_id,
                formats=lambda source, entity: formats_of(settings, source, entity),
                future_hours=settings.extract.future_tolerance_hours,
            )
    return [r for r in released if r.released]


def retire_missing_files(con, step: Step, present: list[str]) -> None:
    """A file that left the source folder (processed and archived, rotated away, replaced by a fixed
    export under another name) leaves the file ledger, so it is read again if it ever comes back.
    Its quarantine rows stay: they are the evidence of what was rejected, and only a new read of the
    same file supersedes them. Rows it loaded stay in raw."""
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in present) or "''"
    con.execute(
        f"delete from audit.extract_files where source = ? and entity = ? and file not in ({listed})",
        [step.source, step.entity],
    )


def _extract_step(settings: Settings, warehouse: Warehouse, run_id: str, step: Step) -> list[PublishResult]:
    source = settings.sources[step.source]
    started = datetime.now(UTC)
    with warehouse.connect(f"extract {step.name}") as con:
        ensure_tables(con, extra_quarantine=("transactions",))
    if isinstance(source, FilesSource):
        return _files_step(settings, warehouse, run_id, step, source, started)
    if isinstance(source, DatabaseSource):
        dsn = secret(source.dsn_env, source.dsn_secret, "database DSN", step.source)
        since = _published_cursor(warehouse, step)
        if since is not None:  # late rows: committed after a newer one, with an older cursor
            since -= timedelta(hours=source.lookback_hours)
        table = TableCount(step.source, source, database_urls(dsn, source.kind)[0], step.entity)
        window = table.window(since)  # the range is fixed, and counted, before the read
        resource = database_resource(
            step.source, source, dsn, step.entity, window, settings.extract.batch_rows
        )
        counted = partial(table.source_count, window)  # the count after the read, once it has landed
    else:
        assert isinstance(source, HubSpotSource)
        token = secret(source.token_env, source.token_secret, "API token", step.source)
        obj = next(o for o, e in source.objects.items() if e == step.entity)
        pages = PageCount()
        since = _published_cursor(warehouse, step)
        resource = hubspot_resource(step.source, source, token, obj, step.entity, since, pages)
        counted = partial(pages.source_count, obj)
    return _land_and_publish(
        settings, warehouse, run_id, step, [resource], started, keyed=True, source_count=counted
    )


def _published_cursor(warehouse: Warehouse, step: Step) -> datetime | None:
    """Where this source's entity stands in raw: incremental loads start at the latest cursor value.
    Rows at exactly that value are read again (the merge finds them unchanged), so none is missed.
    A cursor that was in the future when it loaded (a skewed clock, within the future tolerance) does
    not count: it would hide every row changed between now and then."""
    cursor = q(ENTITIES[step.entity].cursor)
    with warehouse.connect(f"extract {step.name}") as con:
        (value,) = con.execute(
            f"select max({cursor}) from raw.{q(step.entity)} where _source = ? and {cursor} <= _loaded_at",
            [step.source],
        ).fetchone()
    return value


def _files_step(
    settings: Settings, warehouse: Warehouse, run_id: str, step: Step, source: FilesSource, started: datetime
) -> list[PublishResult]:
    spec: FileEntity
    if step.entity == "transactions":
        spec, contract = source.transactions, transactions.TRANSACTIONS
    else:
        spec, contract = (source.entities or {}).get(step.entity) or FileEntity(), ENTITIES[step.entity]
    if spec.sql is not None:  # the entity is a SELECT over the folder's files: its output is the file
        return _mapped_step(settings, warehouse, run_id, step, source, spec, contract, started)
    files = discover(source.path, step.entity, spec)
    if not files:
        raise ExtractError(f"source {step.source}: no files for {step.entity} under {source.path}")
    return _read_files(settings, warehouse, run_id, step, spec, contract, files, started, None)


def _mapped_step(
    settings: Settings,
    warehouse: Warehouse,
    run_id: str,
    step: Step,
    source: FilesSource,
    spec: FileEntity,
    contract,
    started: datetime,
) -> list[PublishResult]:
    """An entity mapped by SQL: unchanged when neither the SQL nor an input file changed since the
    ledger's record; else the SELECT's output is read like a Parquet file of the entity, and the
    ledger records it under ``<entity>.sql`` with the digest of the SQL and the inputs."""
    found = mapping.problems(step.source, step.entity, source.path, spec, contract)
    if found:
        raise mapping.MappingError("; ".join(found))
    tables = mapping.input_tables(source.path, spec)
    digest = mapping.digest(spec.model_dump_json(), tables, source.path)  # the SQL and every setting
    rel = f"{step.entity}.sql"
    with warehouse.connect(f"extract {step.name}") as con:
        (before,) = con.execute(
            "select max(sha256) from audit.extract_files where source = ? and entity = ? and file = ?",
            [step.source, step.entity, rel],
        ).fetchone()
    if before == digest:
        return _read_files(settings, warehouse, run_id, step, spec, contract, [], started, None)
    out_dir = settings.var_dir / "mapped" / step.source / step.entity
    try:
        mapped = mapping.run(step.source, step.entity, source.path, spec, out_dir)
        stat = mapped.path.stat()
        file = SourceFile(mapped.path, rel, "parquet", stat.st_size, stat.st_mtime_ns)
        plain = spec.model_copy(update={"sql": None, "inputs": None})
        return _read_files(settings, warehouse, run_id, step, plain, contract, [file], started, mapped)
    finally:  # the output holds the entity's rows, personal data included
        shutil.rmtree(out_dir, ignore_errors=True)


def _read_files(
    settings: Settings,
    warehouse: Warehouse,
    run_id: str,
    step: Step,
    spec: FileEntity,
    contract,
    files: list[SourceFile],
    started: datetime,
    mapped: mapping.Mapped | None,
) -> list[PublishResult]:
    """Publish the files of a step that are new or changed (a mapping's output is always new: an
    unchanged mapping comes here with no file)."""
    with warehouse.connect(f"extract {step.name}") as con:
        read_with = settings_digest(spec)
        published = {
            file: (size, mtime, digest)
            for file, size, mtime, digest, how in con.execute(
                "select file, size, mtime_ns, sha256, settings_sha256 from audit.extract_files "
                "where source = ? and entity = ?",
                [step.source, step.entity],
            ).fetchall()
            if how == read_with  # read with other settings (a fixed mapping, format): read again
        }
        if mapped is not None or files:  # an unchanged mapping keeps its ledger entry
            retire_missing_files(con, step, [f.rel for f in files])
    changed = [f for f in files if mapped is not None or not unchanged(f, published.get(f.rel))]
    if not changed:
        log.info("%s: %d file(s) unchanged since they were published", step.name, len(files))
        result = PublishResult(
            step.source, step.entity, "", status="unchanged", message="no new or changed file"
        )
        with warehouse.connect(
            f"extract {step.name}"
        ) as con:  # the run is on record even when it read nothing
            if step.entity == "contacts":  # a correction recorded since the last load applies now
                overlay: list[str] = []
                if apply_to_load(con, overlay):
                    result.message = "; ".join([result.message, *overlay])
            record_unchanged(con, run_id, result, started)
        return [result]
    plan = plan_entity(step.entity, spec, changed, contract.column_names, contract.required)
    notes = plan.notes
    for note in notes:
        log.warning("source %s: %s", step.source, note)
    if mapped is not None:  # the ledger records what the mapping read, not its output file
        for fp in plan.files:
            fp.sha256 = mapped.digest
        notes.append(
            f"{step.entity} mapped by SQL from "
            + ", ".join(f"{t} ({', '.join(fs)})" for t, fs in sorted(mapped.inputs.items()))
        )
    stats = ReadStats()
    for fp in plan.imported:  # a Parquet file's own row count: what landing must give back
        stats.counted[fp.file.rel] = pq.ParquetFile(fp.file.path).metadata.num_rows
    formats = Formats.of(spec)
    resources = file_resources(plan, settings.extract.batch_rows, stats)

    def ledger() -> list[LedgerFile]:
        return [
            LedgerFile(
                fp.file.rel,
                fp.file.size,
                fp.file.mtime_ns,
                fp.sha256,
                stats.rows.get(fp.file.rel, 0),
                read_with,
            )
            for fp in plan.files
            if not fp.unreadable  # not on record as read: it is tried again next run
        ]

    return _land_and_publish(
        settings,
        warehouse,
        run_id,
        step,
        resources,
        started,
        keyed=False,
        landing_sql=lambda landed: files_landing_sql(plan, landed, step.entity),
        formats=formats,
        rejected=plan.rejected,
        bad_files=plan.bad_files,
        notes=notes,
        stats=stats,
        ledger=ledger,
        currency=getattr(spec, "currency", None),
        extras=plan.loadable_extras,
        consent_unknown=plan.consent_unknown,
    )


def settings_digest(spec: FileEntity) -> str:
    """sha256 of how an entity's settings read its files (columns, formats, defaults, value maps): a
    file read with other settings is read again, so fixing a mapping takes effect on the next run.
    (A `load_time` default is the word, not the time: the same settings give the same digest.)"""
    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()


def unchanged(f: SourceFile, published: tuple[int, int, str] | None) -> bool:
    """Whether a file is the one already published: its sha256 decides. Another size or mtime is
    a change without hashing; the same size and mtime are not proof (a copy can restore the mtime),
    so then the file is hashed (measured here: 0.07 s of CPU, 0.2 s of wall time per 100 MB)."""
    if published is None:
        return False
    size, mtime_ns, digest = published
    if (f.size, f.mtime_ns) != (size, mtime_ns):
        return False
    return sha256_of(f.path) == digest


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(8 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def files_landing_sql(plan: EntityPlan, landed: Landed, entity: str) -> str | None:
    """The landed rows of a files step as one relation: parsed text files, plus each imported
    Parquet file read with its row numbers."""
    parts = []
    streamed = landed.files(entity)
    if streamed:
        parts.append(parquet_sql(streamed))
    for fp in plan.imported:
        [path] = landed.files(imported_table(entity, fp.index))
        parts.append(imported_select(fp, plan, path))
    return " UNION ALL BY NAME ".join(f"({p})" for p in parts) if parts else None


def parquet_sql(files: list[str]) -> str:
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    return f"SELECT * FROM read_parquet([{listed}], union_by_name = true)"


def _land_and_publish(
    settings: Settings,
    warehouse: Warehouse,
    run_id: str,
    step: Step,
    resources: list,
    started: datetime,
    *,
    keyed: bool,
    landing_sql: Callable[[Landed], str | None] | None = None,
    formats: Formats | None = None,
    rejected: dict[str, list[str]] | None = None,
    stats: ReadStats | None = None,
    ledger: Callable[[], list[LedgerFile]] | None = None,
    currency: str | None = None,
    extras: list[str] | None = None,
    bad_files: dict[str, tuple[str, str]] | None = None,
    notes: list[str] | None = None,
    source_count: Callable[[], SourceCount] | None = None,
    consent_unknown: list[str] | None = None,
) -> list[PublishResult]:
    """``source_count``: what the database or API counts for the load, asked once it has landed."""
    if resources:
        landed = land(settings, step.source, step.entity, resources)
    else:  # every changed file was empty: nothing for dlt to land, the ledger still records them
        landed = Landed(datetime.now(UTC).strftime("%s.%f"), {}, [])
    if landing_sql is None:
        files = landed.files(step.entity)
        sql = parquet_sql(files) if files else None
    else:
        sql = landing_sql(landed)
    log.info("%s: landed load %s", step.name, landed.load_id)
    checkpoint("extract.landed")  # landed, not yet published
    check_entity = transactions.TRANSACTIONS if step.entity == "transactions" else ENTITIES[step.entity]
    job = PublishJob(
        run_id=run_id,
        load_id=landed.load_id,
        source=step.source,
        entity=check_entity,
        landing_sql=sql,
        check=CheckSpec(
            check_entity,
            {},
            formats or Formats(),
            rejected or {},
            bad_files or {},
            settings.extract.future_tolerance_hours,
        ),
        keyed=keyed,
        malformed=stats.malformed if stats else {},
        counted=stats.counted if stats else {},
        swallowed=stats.swallowed if stats else {},
        ledger=ledger() if ledger else [],
        started_at=started,
        extras=extras,
        notes=notes or [],
        source_count=source_count() if source_count else None,
        consent_unknown=consent_unknown or [],
    )
    with warehouse.connect(f"extract {step.name}") as con:
        if step.entity == "transactions":
            results = transactions.publish_transactions(con, job, currency or "EUR")
        else:
            results = [publish(con, job)]
    if not settings.extract.keep_landing:
        for folder in landed.folders:
            shutil.rmtree(folder, ignore_errors=True)
    if any(r.suppressed for r in results):  # the landed files hold erased people as they arrived
        suppression.purge_landed(settings.var_dir, step.source, landed.load_id, landed.folders)
    for r in results:
        log.info(
            "%s/%s: published: read %d, loaded %d, quarantined %d (inserted %d, updated %d, unchanged %d)",
            r.source,
            r.entity,
            r.read,
            r.loaded,
            r.quarantined,
            r.inserted,
            r.updated,
            r.unchanged,
        )
    return results
