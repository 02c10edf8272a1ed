"""Publish one landed entity: contract check, quarantine, merge into ``raw``, accounting. One transaction.

Nothing reaches ``raw`` without passing the contract; nothing is dropped: every landed row ends in
``raw.<entity>`` (new, updated or unchanged) or in ``quarantine.<entity>`` with a reason, the field
and its file/row or key, and ``audit.extract_loads`` records read = loaded + quarantined. If
anything fails, the transaction rolls back and ``raw`` keeps the last good data.

The three numbers are counted apart, so the equation can fail: ``read`` is what the source holds,
counted apart from the reader (see :mod:`clarion.extract.accounting`), ``loaded`` is what the insert
or merge into raw reports (inserted + updated + unchanged + superseded), ``quarantined`` is what the
inserts into quarantine wrote. When they disagree the load raises :class:`AccountingError`, rolls back.
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
from clarion.extract import findings
from clarion.extract.accounting import AUDIT_DDL, SourceCount, account, keyed_read_count, read_count
from clarion.extract.contract_sql import (
    DUCKDB_TYPES,
    FILE,
    LINE_REASONS,
    ROW,
    SEQ,
    TEXT_TYPES,
    CheckSpec,
    check_sql,
    id_columns,
    id_source,
    lit,
    q,
    typed,
    typed_columns,
    typed_expr,
)
from clarion.extract.readers import consent_unknown_note
from clarion.privacy import suppression
from clarion.runtime import checkpoint
from clarion.subject.correct import apply_to_load

log = logging.getLogger(__name__)

META = [
    ("_source", "VARCHAR"),
    ("_load_id", "VARCHAR"),
    ("_loaded_at", "TIMESTAMPTZ"),
    ("_row_hash", "UBIGINT"),
]
INTERNAL = {FILE, ROW, SEQ}


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
        add_contract_columns(con, entity, f"raw.{q(entity.name)}")
        con.execute(quarantine_ddl(entity.name))
        if entity.keeps_history:
            con.execute(history_ddl(entity))
            add_contract_columns(con, entity, history_table(entity))
    for name in extra_quarantine:
        con.execute(quarantine_ddl(name))
    for ddl in AUDIT_DDL:
        con.execute(ddl)
    findings.ensure_table(con)


def add_contract_columns(con: duckdb.DuckDBPyConnection, entity: Entity, table: str) -> list[str]:
    """Columns the contract gained after this warehouse's table was made (email_events.variant_id
    came with campaign experiments), added empty: older rows never had them, and every load and
    model reads the table by column name."""
    existing = {row[0] for row in con.execute(f"describe {table}").fetchall()}
    added = [c for c in entity.columns if c.name not in existing]
    for c in added:
        con.execute(f"alter table {table} add column {q(c.name)} {DUCKDB_TYPES[c.type]}")
    return [c.name for c in added]


@dataclass
class LedgerFile:
    file: str
    size: int
    mtime_ns: int
    sha256: str
    rows: int
    settings_sha256: str = ""  # the entity's settings it was read with (see runner.settings_digest)


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
    suppressed: int = 0  # rows of erased people, dropped before raw or quarantine (privacy.suppressions)
    findings: dict[str, int] = field(default_factory=dict)  # "field: reason" -> rows loaded with it nulled
    released: int = 0  # quarantined orphans loaded because their parent arrived
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
    notes: list[str] = field(default_factory=list)  # findings about files for the accounting message
    started_at: Any = None
    counted: dict[str, int] = field(default_factory=dict)  # per file: records an independent scan found
    swallowed: dict[str, list[dict]] = field(default_factory=dict)  # per file: lines after a lone quote
    source_count: SourceCount | None = None  # keyed: what the database or API counted for the load
    consent_unknown: list[str] = field(default_factory=list)  # contacts: consent columns the export lacks


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
            if job.consent_unknown:
                (n,) = con.execute("select count(*) from __winners").fetchone()
                job.notes.append(consent_unknown_note(job.consent_unknown, n))
        if job.entity.name == "contacts":  # corrections and objections win over the source (Art. 16, 21)
            apply_to_load(con, job.notes)
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
        for view in ("__winners", "__checked", "__landing", "__landed"):
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
    _supersede_quarantine(con, job)
    _quarantine_lines(con, job, result)
    if job.landing_sql is None:
        result.read += keyed_read_count(job, 0) if job.keyed else read_count(job, {})
        result.status = "empty" if not result.quarantined else "loaded"
        return None
    con.execute(f"create temp view __landed as {job.landing_sql}")
    landed = {
        name: dtype
        for name, dtype, *_ in con.execute("describe temp.__landed").fetchall()
        if name not in INTERNAL and not name.startswith("_dlt_")
    }
    result.suppressed += suppression.drop_suppressed(con, "temp.__landed", "__landing", list(landed))
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
    loading = (
        f"select l.*, {', '.join(typed_columns(job.check))} "
        f"from __landing l anti join __excluded x on x.{q(SEQ)} = l.{q(SEQ)}"
    )
    result.findings = findings.record_job(con, job, loading)
    con.execute(f"create temp view __winners as {findings.nulled_sql(job.check, loading)}")
    if job.keyed:  # the database's or API's own count, checked against the rows that landed
        result.read += keyed_read_count(job, con.execute("select count(*) from __landed").fetchone()[0])
    else:
        by_file = dict(con.execute(f"select {q(FILE)}, count(*) from __landed group by 1").fetchall())
        result.read += read_count(job, by_file)
    _quarantine(con, job, result, list(landed))
    (result.superseded,) = con.execute("select count(*) from __losers where why is null").fetchone()
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
    key_is_id = e.primary_key in id_columns(e)
    key = typed_expr(e.column(e.primary_key), landed[e.primary_key], job.check.formats, id_column=key_is_id)
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
    if job.keyed:  # a key read again supersedes what an earlier read of it quarantined
        con.execute(
            f"delete from {table} where source = ? and load_id <> ? and key in "
            f"(select cast({q(e.primary_key)} as varchar) from __landing)",
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
    lines = ", ".join(lit(r) for r in LINE_REASONS)
    for reason, count in con.execute(
        f"select reason, count(*) from {table} where load_id = ? and reason not in ({lines}) group by 1",
        [job.load_id],
    ).fetchall():
        result.reasons[reason] = result.reasons.get(reason, 0) + count


def _supersede_quarantine(con: duckdb.DuckDBPyConnection, job: PublishJob) -> None:
    """A file read again (same path, still in the file ledger, new content) supersedes what its
    earlier read quarantined. Nothing else removes quarantine rows: a file that was moved away or
    deleted keeps its evidence, and so does it when a new file later arrives under the same name (the
    ledger forgot the path when the file left, so the new one is not a re-read)."""
    files = [f.file for f in job.ledger]
    if job.keyed or not files:
        return
    con.execute(
        f"delete from quarantine.{q(job.entity.name)} where source = ? and load_id <> ? and file in ("
        "select file from audit.extract_files where source = ? and entity = ? and file in "
        f"({', '.join(lit(f) for f in files)}))",
        [job.source, job.load_id, job.source, job.entity.name],
    )


def _quarantine_lines(con: duckdb.DuckDBPyConnection, job: PublishJob, result: PublishResult) -> None:
    """Lines that never became a row: CSV lines that did not parse (wrong number of fields), lines
    over the record limit, and the lines after a quote that never closes (the parser would have
    swallowed them into one value). Kept whole, located by file and line (or record number)."""
    table = f"quarantine.{q(job.entity.name)}"
    rows = [
        (
            file,
            m.get("row", m["line"]),  # an over-long line that kept its place has a record number
            m.get("reason", "malformed_row"),
            {k: m[k] for k in ("line", "bytes", "text") if k in m},
        )
        for file, items in job.malformed.items()
        for m in items
    ] + [
        (file, m["line"], "unbalanced_quote", {"line": m["line"], "text": m["text"]})
        for file, items in job.swallowed.items()
        for m in items
    ]
    if not rows:
        return
    con.executemany(
        f"insert into {table} values (?, ?, ?, ?, ?, null, ?, '', ?, now())",
        [
            [job.load_id, job.run_id, job.source, f, line, reason, json.dumps(record)]
            for f, line, reason, record in rows
        ],
    )
    lines = ", ".join(lit(r) for r in LINE_REASONS)
    for reason, written in con.execute(  # counted from what the table now holds for this load
        f"select reason, count(*) from {table} where load_id = ? and reason in ({lines}) group by 1",
        [job.load_id],
    ).fetchall():
        result.quarantined += written
        result.reasons[reason] = result.reasons.get(reason, 0) + written


def _load(con: duckdb.DuckDBPyConnection, job: PublishJob, result: PublishResult, extras: list[str]) -> None:
    """The winning rows, typed and fingerprinted, into raw: straight in when raw holds nothing of
    this entity yet (a first or full load), else through a merge."""
    e = job.entity
    raw = f"raw.{q(e.name)}"
    _add_extra_columns(con, raw, extras, result)
    sources = _id_sources(con, job, raw, extras)
    _add_extra_columns(con, raw, list(sources), result)
    values = (
        [f"{typed(c)} as {q(c)}" for c in e.column_names]
        + [f"cast({q(x)} as varchar) as {q(x)}" for x in extras]
        + [f"{expr} as {q(name)}" for name, expr in sources.items()]
    )
    # the source text of an id is a function of its key: left out of the fingerprint, so a raw table
    # that gained source_<column> from another file does not see every later row as changed
    hashed = ", ".join([typed(c) for c in e.column_names] + [f"cast({q(x)} as varchar)" for x in extras])
    extras = [*extras, *sources]
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


def _id_sources(
    con: duckdb.DuckDBPyConnection, job: PublishJob, raw: str, extras: list[str]
) -> dict[str, str]:
    """``source_<column>`` -> the original text of each id column whose value is not a number
    (``C536379``; NULL for a numeric id): kept when a loading row has one, or raw already has it."""
    existing = {r[0] for r in con.execute(f"describe {raw}").fetchall()}
    sources = {}
    for c in id_columns(job.entity):
        name = f"source_{c}"
        if job.check.landed.get(c) not in TEXT_TYPES or name in job.check.landed or name in extras:
            continue  # typed (a number already), or the file has such a column of its own
        expr = id_source(f"nullif(trim({q(c)}), '')")
        if name in existing or con.execute(f"select count({expr}) from __winners").fetchone()[0]:
            sources[name] = expr
    return sources


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
