"""dlt resources for each kind of CRM source, and the landing run that writes them as Parquet.

dlt does the extraction: reading, pagination, retries of HTTP calls, incremental cursors, load
packages. It lands each entity into the landing zone (``var/landing/<source>/<entity>/*.parquet``,
replaced on every run); :mod:`clarion.extract.publish` then checks and publishes it. Resources
yield Arrow tables, never Python dicts per row (dict rows are orders of magnitude slower in dlt).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import dlt
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clarion.config import DatabaseSource, HubSpotSource, Settings
from clarion.contract import ENTITIES
from clarion.extract.batches import ReadStats, read_batches
from clarion.extract.readers import FILE, ROW, SEQ, EntityPlan, ExtractError
from clarion.extract.source_counts import CursorWindow, PageCount, table_spec
from clarion.privacy.scrub import scrub


@dataclass
class Landed:
    load_id: str
    tables: dict[str, list[str]]  # landed table -> its Parquet files of this load
    folders: list[Path]  # what to delete once published

    def files(self, table: str) -> list[str]:
        return self.tables.get(table, [])


def landing_zone(settings: Settings) -> Path:
    return settings.var_dir / "landing"


def land(settings: Settings, source: str, entity: str, resources: list[Any]) -> Landed:
    """Run dlt resources into the landing zone; return where this load's files are, per table."""
    zone = landing_zone(settings)
    zone.mkdir(parents=True, exist_ok=True)
    pipeline = dlt.pipeline(
        pipeline_name=f"clarion_{source}",
        destination=dlt.destinations.filesystem(bucket_url=zone.resolve().as_uri()),
        dataset_name=source,
        pipelines_dir=str((settings.var_dir / "dlt").resolve()),
        progress=None,
    )
    try:
        info = pipeline.run(resources, loader_file_format="parquet")
    except Exception as exc:  # dlt wraps the cause in step errors: show the cause
        # the half-done package holds the rows: abort it (dlt restores its state), then delete it;
        # if dlt cannot (nothing pending), the folders go all the same
        with contextlib.suppress(Exception):
            pipeline.abort_packages()
        discard_packages(settings, source)
        raise ExtractError(f"source {source}: extracting {entity} failed: {root_cause(exc)}") from exc
    discard_packages(settings, source)  # the landing zone holds the rows now; dlt's copy goes
    load_id = info.loads_ids[-1] if info.loads_ids else ""
    tables: dict[str, list[str]] = {}
    folders = []
    for resource in resources:
        folder = zone / source / resource.table_name
        folders.append(folder)
        if load_id:
            tables[resource.table_name] = sorted(str(p) for p in folder.glob(f"{load_id}.*.parquet"))
    return Landed(load_id or datetime.now().strftime("%s.%f"), tables, folders)


def dlt_dir(settings: Settings, source: str) -> Path:
    """dlt's working folder of a source's pipeline (its state, schemas and load packages)."""
    return settings.var_dir / "dlt" / f"clarion_{source}"


def discard_packages(settings: Settings, source: str) -> list[str]:
    """Delete every load package of the source's dlt pipeline, and its run trace; return the load ids.

    Why: dlt keeps each loaded package (``load/loaded/<load_id>/completed_jobs/*.parquet``, with a
    ``.restore`` copy of the state) forever, so without this every e-mail address, phone number and
    ticket body ever extracted would sit under var/dlt in plain Parquet, out of reach of erasure
    and retention. Once dlt has written the landing zone, which is what Clarion publishes from, the
    package is a second copy nobody reads. dlt's own ``load.delete_completed_jobs`` setting would
    remove only the ``completed_jobs`` folder; the extract and normalize folders are empty after a
    successful load, and after a failed one :func:`land` aborts the pending package first. What
    remains is the pipeline's state (incremental cursors) and schema: no row values."""
    root = dlt_dir(settings, source)
    gone: list[str] = []
    for stage in ("load/loaded", "load/normalized", "normalize/extracted"):
        folder = root / stage
        if folder.is_dir():
            for package in folder.iterdir():
                if package.is_dir():
                    shutil.rmtree(package, ignore_errors=True)
                    gone.append(package.name)
    (root / "trace.pickle").unlink(missing_ok=True)  # the last run's trace: step details, kept
    return sorted(set(gone))


def root_cause(exc: BaseException) -> str:
    """The innermost exception's message, one line, with anything that looks like a secret masked.
    An HTTP error says its status, and for 401/403 that the credentials were refused."""
    seen = exc
    chain = [exc]
    while seen.__cause__ is not None or (seen.__context__ is not None and not seen.__suppress_context__):
        seen = seen.__cause__ or seen.__context__
        chain.append(seen)
    for err in chain:
        response = getattr(err, "response", None)
        status = getattr(response, "status_code", None)
        if status is not None:
            host = urlsplit(getattr(response, "url", "") or "").netloc
            refused = " (the API refused the credentials: check the token)" if status in (401, 403) else ""
            return redact(f"HTTP {status} {getattr(response, 'reason', '')} from {host}{refused}")
    text = f"{type(seen).__name__}: {str(seen).strip().splitlines()[0] if str(seen).strip() else ''}"
    return redact(text)


def redact(text: str) -> str:
    """Secrets masked, then personal data scrubbed: a driver's message may quote the row it refused."""
    text = re.sub(r"(://[^:/@\s]+:)[^@\s]*@", r"\1***@", text)
    text = re.sub(r"(?i)(password\s*=\s*)\S+", r"\1***", text)
    return scrub(re.sub(r"(?i)(bearer\s+)\S+", r"\1***", text))


def secret(env_name: str | None, block_name: str | None, what: str, source: str) -> str:
    """A secret's value from the environment or a Prefect Secret block; never logged."""
    if env_name:
        value = os.environ.get(env_name)
        if not value:
            raise ExtractError(
                f"source {source}: environment variable {env_name} is not set (it holds the {what})"
            )
        return value
    from prefect.blocks.system import Secret

    try:
        return Secret.load(block_name).get()
    except ValueError as exc:
        raise ExtractError(
            f"source {source}: no Prefect Secret block named {block_name!r} ({what}): {exc}"
        ) from None


# -- files -------------------------------------------------------------------------------------------


def file_resources(plan: EntityPlan, batch_rows: int, stats: ReadStats) -> list[Any]:
    """Text files stream through the Arrow reader into one table; each Parquet file is imported as
    it is (dlt links it into the landing zone) into a table of its own, read back with SQL."""
    resources = []
    if plan.streamed:

        @dlt.resource(name=plan.entity, write_disposition="replace")
        def rows() -> Iterator[pa.RecordBatch]:
            yield from read_batches(plan, batch_rows, stats)

        resources.append(rows())
    for fp in plan.imported:
        resources.append(_import(imported_table(plan.entity, fp.index), fp.file.path))
        stats.rows[fp.file.rel] = pq.ParquetFile(fp.file.path).metadata.num_rows
    return resources


def imported_table(entity: str, index: int) -> str:
    return f"{entity}_f{index}"


def _import(name: str, path: Path) -> Any:
    @dlt.resource(name=name, write_disposition="replace")
    def one_file() -> Iterator[Any]:
        meta = pq.ParquetFile(path)
        yield dlt.mark.with_file_import(
            str(path), "parquet", meta.metadata.num_rows, hints=meta.schema_arrow.empty_table()
        )

    return one_file()


# -- SQL databases ----------------------------------------------------------------------------------


def database_urls(dsn: str, kind: str) -> tuple[str, str]:
    """(SQLAlchemy URL, connectorx URL) from a plain DSN such as postgresql://user@host/db."""
    parts = urlsplit(dsn)
    if kind == "postgres":
        if parts.scheme not in {"postgresql", "postgres", "postgresql+psycopg"}:
            raise ExtractError(f"a postgres source needs a postgresql:// DSN, got {parts.scheme}://")
        return urlunsplit(parts._replace(scheme="postgresql+psycopg")), urlunsplit(
            parts._replace(scheme="postgresql")
        )
    if parts.scheme not in {"mysql", "mariadb", "mysql+pymysql"}:
        raise ExtractError(f"a mariadb source needs a mysql:// DSN, got {parts.scheme}://")
    return urlunsplit(parts._replace(scheme="mysql+pymysql")), urlunsplit(parts._replace(scheme="mysql"))


def database_resource(
    source_name: str, source: DatabaseSource, dsn: str, entity: str, window: CursorWindow, chunk_rows: int
) -> Any:
    """One table, incremental by its cursor: the rows of ``window`` (changed since what raw already
    has, up to the newest cursor when the load began, and every row whose cursor is NULL).

    The cursor filter goes into dlt's SQL source as a WHERE clause rather than through
    ``dlt.sources.incremental``: dlt would keep its own position and use it instead, skipping rows
    that a run landed but never published. Raw is the one record of progress.
    """
    from dlt.sources.sql_database import sql_table

    spec = table_spec(source, entity)
    table, cursor, mapping = spec.table, spec.cursor, spec.mapping
    sa_url, cx_url = database_urls(dsn, source.kind)
    if spec.sql is not None:
        return _mapped_resource(sa_url, spec.sql, entity, cursor, window, min(source.chunk_size, chunk_rows))

    def in_window(query: Any, sa_table: Any) -> Any:
        if cursor not in sa_table.c:
            raise ExtractError(
                f"source {source_name}: table {table} has no cursor column {cursor!r}; "
                f"set sources.{source_name}.entities.{entity}.cursor in clarion.yaml"
            )
        return query.where(window.where(sa_table.c[cursor]))

    kwargs: dict[str, Any] = {}
    if source.backend == "connectorx":
        kwargs["backend_kwargs"] = {"conn": cx_url, "return_type": "arrow"}
    resource = sql_table(
        credentials=sa_url,
        table=table,
        schema=source.schema_name,
        backend=source.backend,
        chunk_size=min(source.chunk_size, chunk_rows),
        query_adapter_callback=in_window,
        reflection_level="minimal",  # types come from the Arrow data; our mapping renames columns
        **kwargs,
    )
    # the table's own key and column hints carry source names the mapping renames away
    resource.apply_hints(table_name=entity, columns={}, primary_key=[])
    counter = {"seq": 0}

    def to_landing(item: Any) -> pa.Table:
        table_ = item if isinstance(item, pa.Table) else pa.Table.from_batches([item])
        table_ = table_.rename_columns([mapping.get(c, c) for c in table_.column_names])
        return with_position(table_, counter)

    resource.add_map(to_landing)
    return resource


def _mapped_resource(
    sa_url: str, sql: str, entity: str, cursor: str, window: CursorWindow, chunk: int
) -> Any:
    """An entity read through a SQL mapping in the database's own SQL: the SELECT as a subquery,
    filtered to the load's window on its cursor column, streamed in chunks as Arrow tables (built
    column by column, never a dict per row)."""
    import sqlalchemy as sa

    from clarion.extract.source_counts import mapped_query

    @dlt.resource(name=entity, write_disposition="replace")
    def rows() -> Iterator[pa.Table]:
        engine = sa.create_engine(sa_url, poolclass=sa.pool.NullPool)
        counter = {"seq": 0}
        try:
            with engine.connect() as con:
                mapped = mapped_query(con, sql)
                query = sa.select(mapped).where(window.where(mapped.c[cursor]))
                result = con.execution_options(stream_results=True).execute(query)
                names = list(result.keys())
                while batch := result.fetchmany(chunk):
                    columns = [_column(c) for c in zip(*batch, strict=True)]
                    yield with_position(pa.table(dict(zip(names, columns, strict=True))), counter)
        finally:
            engine.dispose()

    return rows()


def _column(values: tuple) -> pa.Array:
    """One column of a chunk as Arrow; a column with no value in it is text (the check types it)."""
    array = pa.array(values)
    return array.cast(pa.string()) if pa.types.is_null(array.type) else array


def with_position(table: pa.Table, counter: dict[str, int], file: str | None = None) -> pa.Table:
    """Add the landing's position columns: no file for keyed sources, the sequence as row."""
    n = table.num_rows
    seq = np.arange(counter["seq"] + 1, counter["seq"] + n + 1, dtype=np.int64)
    counter["seq"] += n
    return (
        table.append_column(FILE, pa.repeat(pa.scalar(file, pa.string()), n))
        .append_column(ROW, pa.array(seq))
        .append_column(SEQ, pa.array(seq))
    )


# -- HubSpot-v3-like REST API ----------------------------------------------------------------------------


def hubspot_resource(
    source_name: str,
    source: HubSpotSource,
    token: str,
    obj: str,
    entity: str,
    since: datetime | None,
    counted: PageCount,
) -> Any:
    """One HubSpot object: the whole list the first time, then a search on its modified date >= since.

    ``counted`` counts the records of every raw page as it arrives, and how many the API says there
    are: a search answers with its ``total``; the list endpoint does not, so before listing, a
    one-record search without filters asks for it (records created during the list only add to it)."""
    from dlt.sources.helpers.rest_client import RESTClient
    from dlt.sources.helpers.rest_client.auth import BearerTokenAuth
    from dlt.sources.helpers.rest_client.client import raise_for_status
    from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator

    mapping = dict(source.columns.get(entity, {}))
    columns = ENTITIES[entity].column_names
    reverse = {canonical: prop for prop, canonical in mapping.items()}
    wanted = [reverse.get(c, c) for c in columns]  # ask for the contract's properties only
    modified = source.modified_property(obj)
    hooks = {"response": [raise_for_status, counted.hook]}  # counted once the status is good

    @dlt.resource(name=entity, write_disposition="replace")
    def rows() -> Iterator[pa.Table]:
        client = RESTClient(base_url=source.base_url, auth=BearerTokenAuth(token), data_selector="results")
        if since is None:
            answer = client.post(
                f"/crm/v3/objects/{obj}/search", json={"limit": 1, "properties": ["hs_object_id"]}
            )
            answer.raise_for_status()
            total = answer.json().get("total")
            pages = client.paginate(
                f"/crm/v3/objects/{obj}",
                params={"limit": source.page_size, "properties": ",".join(wanted)},
                paginator=JSONResponseCursorPaginator(cursor_path="paging.next.after", cursor_param="after"),
                hooks=hooks,
            )
            counted.total = total if isinstance(total, int) else None
        else:
            body = {
                "filterGroups": [
                    {
                        "filters": [
                            {
                                "propertyName": modified,
                                "operator": "GTE",
                                "value": str(int(since.timestamp() * 1000)),
                            }
                        ]
                    }
                ],
                "sorts": [{"propertyName": modified, "direction": "ASCENDING"}],
                "limit": source.page_size,
                "properties": wanted,
            }
            pages = client.paginate(
                f"/crm/v3/objects/{obj}/search",
                method="POST",
                json=body,
                paginator=JSONResponseCursorPaginator(
                    cursor_path="paging.next.after", cursor_body_path="after"
                ),
                hooks=hooks,
            )
        counter = {"seq": 0}
        for page in pages:
            records = [r.get("properties", {}) for r in page]
            if not records:
                continue
            names = [k for k in wanted if any(k in r for r in records)]  # system properties left out
            table = pa.table(
                {mapping.get(k, k): pa.array([r.get(k) for r in records], pa.string()) for k in names}
            )
            missing = [c for c in columns if c not in table.column_names]
            for c in missing:  # a property left out of a page is absent, not a new schema
                table = table.append_column(c, pa.nulls(table.num_rows, pa.string()))
            yield with_position(table, counter)

    return rows()
