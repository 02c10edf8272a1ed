"""The accounting of one load: read = loaded + quarantined + suppressed, from counts each side made.

``read`` is what the source holds for the load, counted apart from the parser: for files, an
independent scan of each text file's records, or a Parquet file's own row count; for a database, a
count the database makes on its own connection of the rows in the range the load reads; for an API,
the records in its raw HTTP pages (and, where the API says how many match, that total). Each is
checked against what the reader produced. ``loaded`` is what the insert or merge into raw reported;
``quarantined`` what the inserts into quarantine wrote; ``suppressed`` the rows of erased people the
load left out before either (``privacy.suppressions``, counted from the landed rows). When two sides disagree,
:class:`AccountingError` stops the load inside its transaction, so it rolls back.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import duckdb

from clarion.extract.readers import ExtractError

if TYPE_CHECKING:
    from clarion.extract.publish import PublishJob, PublishResult


log = logging.getLogger(__name__)


class AccountingError(ExtractError):
    """The independent counts of a load disagree: nothing of it is published."""


@dataclass(frozen=True)
class SourceCount:
    """What a database or API says a keyed load covers, counted apart from the landed rows
    (see :mod:`clarion.extract.source_counts`). ``counted``: a database's count of the range after
    the read (``before``: the same count before it); an API's records in its raw pages (``total``:
    how many it said match, when it says; ``distinct``: distinct record ids in the pages)."""

    counted: int
    what: str
    kind: Literal["database", "api"]
    before: int | None = None
    total: int | None = None
    distinct: int | None = None


def keyed_read_count(job: PublishJob, landed: int) -> int:
    """``read`` of a database or API load: the source's own count, checked against the ``landed``
    rows the reader produced. A database table that a writer changed during the read is accepted
    when the rows read lie between its counts before and after (what a read at one moment gives);
    that is noted in the load's message. Raises :class:`AccountingError` otherwise."""
    count = job.source_count
    if count is None:  # a keyed load without a source count: the landed rows are all there is
        return landed
    where = f"source {job.source}, entity {job.entity.name}"
    undone = "nothing was published (the load rolled back)"
    if count.kind == "api":
        if count.counted != landed:
            raise AccountingError(
                f"{where}: the API served {count.counted:,} {count.what} but the reader produced "
                f"{landed:,} rows; {undone}. Records were lost between the API's answers and the "
                "landing: run `clarion extract` again, and report it with this message if the counts "
                "differ again."
            )
        if count.total is not None and count.distinct is not None and count.distinct < count.total:
            raise AccountingError(
                f"{where}: the API said {count.total:,} records match but served {count.distinct:,} "
                f"distinct ones ({count.what}); {undone}. Its paging stopped early (a page without "
                "paging.next.after while records remained), or records were archived or changed while "
                "they were read. Run `clarion extract` again; if the counts differ again, the API is "
                "losing pages: report it to its provider with this message."
            )
        return count.counted
    before, after = count.before, count.counted
    if landed == after:
        return after
    if before is not None and before != after and min(before, after) <= landed <= max(before, after):
        note = (
            f"the {count.what} changed while they were read ({before:,} before the read, {after:,} "
            f"after; another writer): the {landed:,} read lie between, as a read at one moment gives, "
            "and what the writer changed is read by the next load"
        )
        log.warning("%s: %s", where, note)
        job.notes.append(note)
        return landed
    if before is None or before == after:
        raise AccountingError(
            f"{where}: the database counts {after:,} {count.what} but the reader produced {landed:,}; "
            f"{undone}. The reader lost rows (or read rows outside that range): run `clarion extract` "
            "again, and report it with this message if the counts differ again."
        )
    raise AccountingError(
        f"{where}: the {count.what} changed while they were read ({before:,} before the read, {after:,} "
        f"after) and the reader produced {landed:,}, which no moment of the table gives; {undone}. "
        "Another writer changed the table during the read: run `clarion extract` again (at a quieter "
        "time if it keeps happening)."
    )


AUDIT_DDL = (
    """
    create table if not exists audit.extract_loads (
        run_id varchar, load_id varchar, source varchar, entity varchar, status varchar,
        read bigint, loaded bigint, quarantined bigint, inserted bigint, updated bigint, unchanged bigint,
        superseded bigint,
        reasons varchar, files varchar, new_columns varchar, message varchar,
        started_at timestamptz, finished_at timestamptz, suppressed bigint default 0
    )
    """,
    # warehouses made before erasure existed gain the column (their loads suppressed nothing)
    "alter table audit.extract_loads add column if not exists suppressed bigint default 0",
    """
    create table if not exists audit.extract_files (
        source varchar, entity varchar, file varchar, size bigint, mtime_ns bigint, sha256 varchar,
        rows bigint, load_id varchar, run_id varchar, published_at timestamptz
    )
    """,
    # how the entity's settings read the file (mapping, formats, defaults): a change reads it again
    "alter table audit.extract_files add column if not exists settings_sha256 varchar",
)


LOAD_COLUMNS = (
    "run_id, load_id, source, entity, status, read, loaded, quarantined, inserted, updated, unchanged, "
    "superseded, reasons, files, new_columns, message, started_at, finished_at"
)


def read_count(job: PublishJob, landed: dict[str, int]) -> int:
    """What the files hold, from the reader side: each file's independent count (its records as a
    scan of its bytes finds them, or a Parquet file's own row count), checked against what the parser
    produced (rows landed + lines that did not parse + lines an unbalanced quote swallowed)."""
    files = dict.fromkeys([f.file for f in job.ledger] + list(landed) + list(job.malformed))
    total = 0
    for file in files:
        malformed, swallowed = len(job.malformed.get(file, [])), len(job.swallowed.get(file, []))
        parsed = landed.get(file, 0) + malformed + swallowed
        counted = job.counted.get(file, parsed)  # a file no scan understands: the parser's count
        if counted != parsed:
            raise AccountingError(
                f"source {job.source}, entity {job.entity.name}, file {file}: an independent scan counts "
                f"{counted:,} records but the reader produced {parsed:,} ({landed.get(file, 0):,} rows, "
                f"{malformed:,} malformed lines, {swallowed:,} lines after an unbalanced quote); nothing "
                "was published. Check that the file is what its name says (JSON lines: one record per "
                f"line; CSV: the delimiter and quoting set under sources.{job.source} in clarion.yaml), "
                "fix it or its settings, then run `clarion extract` again."
            )
        total += counted
    return total


def account(
    con: duckdb.DuckDBPyConnection, job: PublishJob, result: PublishResult, loaded: int | None = None
) -> None:
    """Check read = loaded + quarantined from the counts each side made, then record the load.
    ``loaded``: rows that went on to something other than a merge into raw (transactions that orders
    are derived from); by default what the insert or merge into raw reported."""
    merged = result.inserted + result.updated + result.unchanged + result.superseded
    result.loaded = merged if loaded is None else loaded + result.superseded
    if result.read != result.loaded + result.quarantined + result.suppressed:  # checked where it is made
        files = ", ".join(result.files) or "no file"
        raise AccountingError(
            f"source {job.source}, entity {result.entity} ({files}): read {result.read:,} records but "
            f"{result.loaded:,} reached raw, {result.quarantined:,} went to quarantine and "
            f"{result.suppressed:,} were suppressed (erased people); nothing was "
            "published (the load rolled back). Keep the input, check raw for repeated keys "
            f"(raw.{result.entity} must hold each key once), and report it if raw is sound."
        )
    for f in job.ledger:
        con.execute(
            "delete from audit.extract_files where source = ? and entity = ? and file = ?",
            [job.source, job.entity.name, f.file],
        )
        con.execute(
            "insert into audit.extract_files (source, entity, file, size, mtime_ns, sha256, rows, load_id, "
            "run_id, published_at, settings_sha256) values (?, ?, ?, ?, ?, ?, ?, ?, ?, now(), ?)",
            [
                job.source,
                job.entity.name,
                f.file,
                f.size,
                f.mtime_ns,
                f.sha256,
                f.rows,
                job.load_id,
                job.run_id,
                f.settings_sha256,
            ],
        )
    if result.rejected_files or job.notes:
        result.message = "; ".join(
            [
                *(
                    f"{file} lacks {', '.join(cols)}: its rows were quarantined (missing_column)"
                    for file, cols in result.rejected_files.items()
                ),
                *job.notes,  # findings about files (empty, unreadable) that have no rows to quarantine
            ]
        )
    con.execute(
        f"insert into audit.extract_loads ({LOAD_COLUMNS}, suppressed) "
        "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now(), ?)",
        [
            job.run_id,
            job.load_id,
            job.source,
            job.entity.name,
            result.status,
            result.read,
            result.loaded,
            result.quarantined,
            result.inserted,
            result.updated,
            result.unchanged,
            result.superseded,
            json.dumps(result.reasons, sort_keys=True),
            json.dumps(result.files),
            json.dumps(result.new_columns),
            result.message,
            job.started_at,
            result.suppressed,
        ],
    )


def record_unchanged(
    con: duckdb.DuckDBPyConnection, run_id: str, result: PublishResult, started: Any
) -> None:
    """An accounting row for a step that found nothing new to read."""
    con.execute(
        f"insert into audit.extract_loads ({LOAD_COLUMNS}) values "
        "(?, ?, ?, ?, ?, 0, 0, 0, 0, 0, 0, 0, '{}', '[]', '[]', ?, ?, now())",
        [run_id, result.load_id, result.source, result.entity, result.status, result.message, started],
    )
