"""Publish one landed entity: contract check, quarantine, merge into ``raw``, accounting. One transaction.

Nothing reaches ``raw`` without passing the contract; nothing is dropped: every landed row ends in
``raw.<entity>`` (new, updated or unchanged) or in ``quarantine.<entity>`` with a reason, the field
and its file/row or key, and ``audit.extract_loads`` records read = loaded + quarantined. If
anything fails, the transaction rolls back and ``raw`` keeps the last good data.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb

from clarion.contract import ENTITIES, Entity
from clarion.extract.contract_sql import (
    DUCKDB_TYPES,
    FILE,
    ROW,
    SEQ,
    CheckSpec,
    check_sql,
    lit,
    q,
    typed,
    typed_columns,
    typed_expr,
)
from clarion.runtime import checkpoint

log = logging.getLogger(__name__)

META = [
    ("_source", "VARCHAR"),
    ("_load_id", "VARCHAR"),
    ("_loaded_at", "TIMESTAMPTZ"),
    ("_row_hash", "UBIGINT"),
]
INTERNAL = {FILE, ROW, SEQ}

AUDIT_DDL = (
    """
    create table if not exists audit.extract_loads (
        run_id varchar, load_id varchar, source varchar, entity varchar, status varchar,
        read bigint, loaded bigint, quarantined bigint, inserted bigint, updated bigint, unchanged bigint,
        superseded bigint,
        reasons varchar, files varchar, new_columns varchar, message varchar,
        started_at timestamptz, finished_at timestamptz
    )
    """,
    """
    create table if not exists audit.extract_files (
        source varchar, entity varchar, file varchar, size bigint, mtime_ns bigint, sha256 varchar,
        rows bigint, load_id varchar, run_id varchar, published_at timestamptz
    )
    """,
)


def raw_ddl(entity: Entity) -> str:
    cols = [f"{q(c.name)} {DUCKDB_TYPES[c.type]}" for c in entity.columns] + [f"{n} {t}" for n, t in META]
    return f"create table if not exists raw.{q(entity.name)} ({', '.join(cols)})"


HISTORY_META = [("_superseded_at", "TIMESTAMPTZ"), ("_superseded_by", "VARCHAR")]


def history_table(entity: Entity) -> str:
    return f"raw.{q(entity.name + '_history')}"


def history_ddl(entity: Entity) -> str:
    """Earlier versions of an entity's rows: what raw held before a newer version replaced it, and
    versions older than raw's that arrive late. Same columns as raw (without extra columns), plus
    when and by which load the version was superseded."""
    cols = [f"{q(c.name)} {DUCKDB_TYPES[c.type]}" for c in entity.columns] + [
        f"{n} {t}" for n, t in META + HISTORY_META
    ]
    return f"create table if not exists {history_table(entity)} ({', '.join(cols)})"


def record_history(con: duckdb.DuckDBPyConnection, entity: Entity, rows_sql: str, load_id: str) -> int:
    """Keep the rows `rows_sql` selects (raw's columns and META) as earlier versions, once each."""
    if not entity.keeps_history:
        return 0
    cols = [*entity.column_names, *(n for n, _ in META)]
    names = ", ".join(q(c) for c in cols)
    pk, cursor = q(entity.primary_key), q(entity.cursor)
    return con.execute(
        f"""
        insert into {history_table(entity)} ({names}, _superseded_at, _superseded_by)
        select {names}, now(), {lit(load_id)} from ({rows_sql}) as v
        where not exists (
            select 1 from {history_table(entity)} h
            where h.{pk} = v.{pk} and h.{cursor} = v.{cursor} and h._row_hash = v._row_hash
        )
        """
    ).fetchone()[0]


def quarantine_ddl(name: str) -> str:
    return f"""
    create table if not exists quarantine.{q(name)} (
        load_id varchar, run_id varchar, source varchar, file varchar, row bigint, key varchar,
        reason varchar, field varchar, record varchar, quarantined_at timestamptz
    )
    """


def ensure_tables(con: duckdb.DuckDBPyConnection, extra_quarantine: tuple[str, ...] = ()) -> None:
    """Every raw and quarantine table exists (empty if no source feeds it), so dbt can rely on them."""
    for entity in ENTITIES.values():
        con.execute(raw_ddl(entity))
        con.execute(quarantine_ddl(entity.name))
        if entity.keeps_history:
            con.execute(history_ddl(entity))
    for name in extra_quarantine:
        con.execute(quarantine_ddl(name))
    for ddl in AUDIT_DDL:
        con.execute(ddl)


@dataclass
class LedgerFile:
    file: str
    size: int
    mtime_ns: int
    sha256: str
    rows: int


@dataclass
class PublishResult:
    source: str
    entity: str
    load_id: str
    status: str = "loaded"  # loaded | unchanged | empty
    read: int = 0
    loaded: int = 0
    quarantined: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    superseded: int = 0  # valid rows replaced by a newer version of the same key
    reasons: dict[str, int] = field(default_factory=dict)
    new_columns: list[str] = field(default_factory=list)
    rejected_files: dict[str, list[str]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PublishJob:
    run_id: str
    load_id: str
    source: str
    entity: Entity
    landing_sql: str | None  # a SELECT giving the landed rows in the landing schema; None: nothing landed
    check: CheckSpec
    keyed: bool  # True: rows are located by primary key (database, API); False: by file and row
    malformed: dict[str, list[dict]] = field(default_factory=dict)
    ledger: list[LedgerFile] = field(default_factory=list)
    insert_only: bool = False  # derived rows never overwrite rows a real source gave
    extras: list[str] | None = None  # extra columns allowed into raw (None: every landed one)
    started_at: Any = None


def publish(con: duckdb.DuckDBPyConnection, job: PublishJob) -> PublishResult:
    """Check, quarantine, merge and account for one landed entity, all or nothing."""
    with transaction(con):
        result = new_result(job)
        landed = check_and_quarantine(con, job, result)
        if landed is not None:
            extras = [c for c in landed if c not in job.entity.column_names]
            if job.extras is not None:  # only columns of files that can load become raw columns
                extras = [c for c in extras if c in job.extras]
            _load(con, job, result, extras)
        account(con, job, result)
    return result


def new_result(job: PublishJob, entity: str | None = None) -> PublishResult:
    result = PublishResult(
        job.source, entity or job.entity.name, job.load_id, files=[f.file for f in job.ledger]
    )
    result.rejected_files = dict(job.check.rejected_files)
    return result


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    con.execute("begin transaction")
    try:
        yield
        checkpoint("extract.publish")  # every write of the entity done, none committed
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    finally:
        for temp in ("__bad", "__excluded", "__losers", "__fresh", "__ops", "__valid"):
            con.execute(f"drop table if exists temp.{temp}")
        for view in ("__winners", "__checked", "__landing"):
            con.execute(f"drop view if exists temp.{view}")


def check_and_quarantine(
    con: duckdb.DuckDBPyConnection, job: PublishJob, result: PublishResult
) -> dict[str, str] | None:
    """Apply the contract to the landed rows and quarantine the ones that fail.

    Sets up views ``__landing`` (the landed rows), ``__checked`` (typed ``__t_*`` columns and
    ``__why``, computed as the rows stream by, never stored whole) and ``__winners`` (the rows
    that load), and the small table ``__losers`` (rows of repeated keys that do not load).
    Returns the landed columns and their types, or None when nothing was landed.
    """
    e = job.entity
    _quarantine_malformed(con, job, result)
    if job.landing_sql is None:
        result.status = "empty" if not result.quarantined else "loaded"
        return None
    con.execute(f"create temp view __landing as {job.landing_sql}")
    landed = {
        name: dtype
        for name, dtype, *_ in con.execute("describe temp.__landing").fetchall()
        if name not in INTERNAL and not name.startswith("_dlt_")
    }
    job.check.landed = landed
    parents = {fk: (f"raw.{q(parent)}", ENTITIES[parent].primary_key) for fk, parent in e.parents.items()}
    con.execute(f"create temp view __checked as {check_sql(job.check, 'temp.__landing', parents)}")
    # the contract is evaluated once: what fails is kept (few rows), what passes is re-typed on load
    con.execute(f"create temp table __bad as select {q(SEQ)}, __why from __checked where __why is not null")
    _versions(con, job, landed)
    con.execute(
        f"create temp table __excluded as select {q(SEQ)}, __why as why from __bad "
        f"union all select {q(SEQ)}, why from __losers"
    )
    con.execute(
        f"create temp view __winners as select l.*, {', '.join(typed_columns(job.check))} "
        f"from __landing l anti join __excluded x on x.{q(SEQ)} = l.{q(SEQ)}"
    )
    (read,) = con.execute("select count(*) from __landing").fetchone()
    result.read += read
    _quarantine(con, job, result, list(landed))
    (result.superseded,) = con.execute("select count(*) from __losers where why is null").fetchone()
    result.loaded = result.read - result.quarantined
    return landed


def _versions(con: duckdb.DuckDBPyConnection, job: PublishJob, landed: dict[str, str]) -> None:
    """Several rows of one key in a load. At the same cursor value they are copies or a conflict no
    one can settle: the first in source order wins, the rest are duplicate_key. At different cursor
    values they are versions: the latest wins, older ones are superseded (valid history, not written).
    Only the rows of repeated keys are looked at, found with one pass over the key column.
    """
    e = job.entity
    con.execute(f"create temp table __losers ({q(SEQ)} bigint, why varchar)")
    if e.name not in ENTITIES or e.primary_key not in landed:
        return
    if e.cursor not in landed:
        return  # a required column: every row is already in __bad
    key = typed_expr(e.column(e.primary_key), landed[e.primary_key], job.check.formats)
    cursor = typed_expr(e.column(e.cursor), landed[e.cursor], job.check.formats)
    con.execute(
        f"""
        insert into __losers
        with repeated as (
            select k from (select {key} as k from __landing)
            where k is not null group by 1 having count(*) > 1
        ),
        candidates as (
            select l.{q(SEQ)} as seq, {key} as pk, {cursor} as cur
            from __landing l anti join __bad b on b.{q(SEQ)} = l.{q(SEQ)}
            where {key} in (select k from repeated)
        ),
        copies as (
            select seq from (
                select seq, row_number() over (partition by pk, cur order by seq) as rn from candidates
            ) where rn > 1
        ),
        older as (
            select seq from (
                select seq, row_number() over (partition by pk order by cur desc, seq desc) as rn
                from candidates where seq not in (select seq from copies)
            ) where rn > 1
        )
        select seq, 'duplicate_key|{e.primary_key}' from copies
        union all
        select seq, null from older
        """
    )


def _quarantine(
    con: duckdb.DuckDBPyConnection, job: PublishJob, result: PublishResult, cols: list[str]
) -> None:
    e = job.entity
    table = f"quarantine.{q(e.name)}"
    # the rows of a file (or key) read again supersede what an earlier read quarantined
    if job.keyed:
        con.execute(
            f"delete from {table} where source = ? and load_id <> ? and key in "
            f"(select cast({q(e.primary_key)} as varchar) from __landing)",
            [job.source, job.load_id],
        )
    else:
        con.execute(
            f"delete from {table} where source = ? and load_id <> ? and file in "
            f"(select distinct {q(FILE)} from __landing)",
            [job.source, job.load_id],
        )
    record = "to_json({" + ", ".join(f"{lit(c)}: l.{q(c)}" for c in cols) + "})"
    key = f"cast(l.{q(e.primary_key)} as varchar)" if e.primary_key in cols else "null"
    n = con.execute(
        f"""
        insert into {table}
        select ?, ?, ?, l.{q(FILE)}, {"null" if job.keyed else f"l.{q(ROW)}"}, {key},
               split_part(x.why, '|', 1), split_part(x.why, '|', 2), {record}, now()
        from __landing l join __excluded x on x.{q(SEQ)} = l.{q(SEQ)}
        where x.why is not null
        """,
        [job.load_id, job.run_id, job.source],
    ).fetchone()[0]
    result.quarantined += n
    for reason, count in con.execute(
        f"select reason, count(*) from {table} where load_id = ? and reason <> 'malformed_row' group by 1",
        [job.load_id],
    ).fetchall():
        result.reasons[reason] = result.reasons.get(reason, 0) + count


def _quarantine_malformed(con: duckdb.DuckDBPyConnection, job: PublishJob, result: PublishResult) -> None:
    """CSV lines that did not even parse (wrong number of fields): kept whole, located by line."""
    rows = [(file, m["line"], m["text"]) for file, items in job.malformed.items() for m in items]
    if not rows:
        return
    table = f"quarantine.{q(job.entity.name)}"
    files = sorted({r[0] for r in rows})
    con.execute(
        f"delete from {table} where source = ? and reason = 'malformed_row' and file in "
        f"({', '.join(lit(f) for f in files)})",
        [job.source],
    )
    con.executemany(
        f"insert into {table} values (?, ?, ?, ?, ?, null, 'malformed_row', '', ?, now())",
        [
            [job.load_id, job.run_id, job.source, f, line, json.dumps({"line": line, "text": text})]
            for f, line, text in rows
        ],
    )
    result.read += len(rows)
    result.quarantined += len(rows)
    result.reasons["malformed_row"] = result.reasons.get("malformed_row", 0) + len(rows)


def _load(con: duckdb.DuckDBPyConnection, job: PublishJob, result: PublishResult, extras: list[str]) -> None:
    """The winning rows, typed and fingerprinted, into raw: straight in when raw holds nothing of
    this entity yet (a first or full load), else through a merge."""
    e = job.entity
    raw = f"raw.{q(e.name)}"
    _add_extra_columns(con, raw, extras, result)
    values = [f"{typed(c)} as {q(c)}" for c in e.column_names] + [
        f"cast({q(x)} as varchar) as {q(x)}" for x in extras
    ]
    hashed = ", ".join([typed(c) for c in e.column_names] + [f"cast({q(x)} as varchar)" for x in extras])
    select = (
        f"select {', '.join(values)}, {lit(job.source)} as _source, {lit(job.load_id)} as _load_id, "
        f"now() as _loaded_at, hash({hashed}) as _row_hash from __winners"
    )
    if e.keeps_history:  # versions of one key in this load that a later one superseded
        superseded = (
            f"(select l.*, {', '.join(typed_columns(job.check))} from __landing l "
            f"semi join __losers x on x.{q(SEQ)} = l.{q(SEQ)} and x.why is null)"
        )
        record_history(con, e, select.replace("from __winners", f"from {superseded} as w"), job.load_id)
    (raw_rows,) = con.execute(f"select count(*) from {raw}").fetchone()
    if raw_rows == 0:
        columns = ", ".join(
            q(c) for c in [*e.column_names, *extras, "_source", "_load_id", "_loaded_at", "_row_hash"]
        )
        result.inserted += con.execute(f"insert into {raw} ({columns}) {select}").fetchone()[0]
        if result.inserted == 0:
            result.status = "unchanged"
        return
    con.execute(f"create temp table __fresh as {select}")
    merge_fresh(con, e, result, extras, insert_only=job.insert_only, load_id=job.load_id)


def _add_extra_columns(
    con: duckdb.DuckDBPyConnection, raw: str, extras: list[str], result: PublishResult
) -> None:
    existing = {r[0] for r in con.execute(f"describe {raw}").fetchall()}
    for extra in extras:
        if extra not in existing:
            con.execute(f"alter table {raw} add column {q(extra)} varchar")
            result.new_columns.append(extra)


def merge_fresh(
    con: duckdb.DuckDBPyConnection,
    e: Entity,
    result: PublishResult,
    extras: list[str],
    *,
    insert_only: bool,
    load_id: str | None = None,
) -> None:
    """Merge temp table ``__fresh`` into ``raw.<entity>``: insert new keys, update changed rows, leave
    unchanged ones, never let an older version overwrite a newer one. Counts go into ``result``. For
    an entity that keeps history, a replaced row and a late older version go to its history table."""
    raw = f"raw.{q(e.name)}"
    _add_extra_columns(con, raw, extras, result)
    pk, cursor = q(e.primary_key), q(e.cursor)
    columns = ", ".join(
        q(c) for c in [*e.column_names, *extras, "_source", "_load_id", "_loaded_at", "_row_hash"]
    )
    (raw_rows,) = con.execute(f"select count(*) from {raw}").fetchone()
    if raw_rows == 0:
        result.inserted += con.execute(
            f"insert into {raw} ({columns}) select {columns} from __fresh"
        ).fetchone()[0]
    else:
        con.execute(
            f"""
            create or replace temp table __ops as
            select f.{pk} as k,
                   case when r.{pk} is null then 'i'
                        when f.{cursor} < r.{cursor} then 'o'
                        when r._row_hash <> f._row_hash then 'u'
                        else 's' end as op
            from __fresh f left join {raw} r on r.{pk} = f.{pk}
            """
        )
        counts = dict(con.execute("select op, count(*) from __ops group by 1").fetchall())
        result.inserted += counts.get("i", 0)
        result.unchanged += counts.get("s", 0)
        result.superseded += counts.get("o", 0)  # older than what raw already holds: never overwrites
        if insert_only:
            result.unchanged += counts.get("u", 0)
            ops = "('i')"
        else:
            result.updated += counts.get("u", 0)
            ops = "('i', 'u')"
            if counts.get("u"):
                _keep_versions(con, e, raw, "u", load_id or result.load_id)  # what the update replaces
                con.execute(f"delete from {raw} where {pk} in (select k from __ops where op = 'u')")
        if counts.get("o"):
            _keep_versions(con, e, "__fresh", "o", load_id or result.load_id)  # late older versions
        con.execute(
            f"insert into {raw} ({columns}) select {columns} from __fresh "
            f"where {pk} in (select k from __ops where op in {ops})"
        )
    if result.inserted == 0 and result.updated == 0:
        result.status = "unchanged"  # raw did not change (rows quarantined again are still counted)


def _keep_versions(con: duckdb.DuckDBPyConnection, e: Entity, table: str, op: str, load_id: str) -> None:
    """The rows of `table` whose keys the merge marked `op`, into the entity's history."""
    columns = ", ".join(q(c) for c in [*e.column_names, *(n for n, _ in META)])
    rows = (
        f"select {columns} from {table} where {q(e.primary_key)} in (select k from __ops where op = '{op}')"
    )
    record_history(con, e, rows, load_id)


def account(con: duckdb.DuckDBPyConnection, job: PublishJob, result: PublishResult) -> None:
    if result.read != result.loaded + result.quarantined:  # the invariant, checked where it is made
        raise AssertionError(
            f"{job.source}/{job.entity.name}: read {result.read} != loaded {result.loaded} + "
            f"quarantined {result.quarantined}"
        )
    for f in job.ledger:
        con.execute(
            "delete from audit.extract_files where source = ? and entity = ? and file = ?",
            [job.source, job.entity.name, f.file],
        )
        con.execute(
            "insert into audit.extract_files values (?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
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
            ],
        )
    if result.rejected_files:
        result.message = "; ".join(
            f"{file} lacks {', '.join(cols)}: its rows were quarantined (missing_column)"
            for file, cols in result.rejected_files.items()
        )
    con.execute(
        "insert into audit.extract_loads values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
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
        ],
    )


def record_unchanged(
    con: duckdb.DuckDBPyConnection, run_id: str, result: PublishResult, started: Any
) -> None:
    """An accounting row for a step that found nothing new to read."""
    con.execute(
        "insert into audit.extract_loads values "
        "(?, ?, ?, ?, ?, 0, 0, 0, 0, 0, 0, 0, '{}', '[]', '[]', ?, ?, now())",
        [run_id, result.load_id, result.source, result.entity, result.status, result.message, started],
    )
