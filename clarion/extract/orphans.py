"""Quarantined orphans are released when their parent arrives in a later load.

An order whose contact is not in ``raw`` is quarantined as ``orphan``. When that contact loads
later (it was itself quarantined, then fixed; or it simply arrives in a later export), the order
is not wrong any more. After each load of an entity, the orphans of its children whose parent now
exists are read back from their quarantine records, checked against the whole contract again (a
row can have more than one problem), and the rows that pass are merged into ``raw``: they leave
quarantine, each release is recorded in ``audit.orphan_releases``, and the accounting
(``audit.extract_loads``) gets a row with status ``released`` (read = loaded = released rows).
A row that still fails keeps its place in quarantine with its new reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import duckdb

from clarion.contract import ENTITIES, Entity
from clarion.extract import findings
from clarion.extract.accounting import account
from clarion.extract.contract_sql import (
    FILE,
    ROW,
    SEQ,
    CheckSpec,
    Formats,
    check_sql,
    id_key,
    lit,
    q,
    typed_columns,
)
from clarion.extract.publish import PublishJob, PublishResult, _load, _versions, transaction

log = logging.getLogger(__name__)

RELEASES = "audit.orphan_releases"
DDL = f"""
create table if not exists {RELEASES} (
    run_id varchar, load_id varchar, source varchar, entity varchar, file varchar, row bigint,
    key varchar, field varchar, quarantined_load_id varchar, released_at timestamptz
)
"""


def ensure_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(DDL)


def children_of(parent: str) -> list[Entity]:
    return [e for e in ENTITIES.values() if parent in e.parents.values()]


def _waiting(child: Entity, parent: str) -> str:
    """The quarantine rows of ``child`` that are orphans of ``parent`` whose parent key is now in raw."""
    pk = q(ENTITIES[parent].primary_key)
    fks = [fk for fk, p in child.parents.items() if p == parent]
    fields = ", ".join(lit(fk) for fk in fks)
    text = "nullif(trim(json_extract_string(w.record, '$.\"' || w.field || '\"')), '')"
    return (
        f"from quarantine.{q(child.name)} w where w.reason = 'orphan' and w.field in ({fields}) "
        f"and exists (select 1 from raw.{q(parent)} p where p.{pk} = "
        f"{id_key(text)})"
    )


def release(
    con: duckdb.DuckDBPyConnection,
    parent: str,
    *,
    run_id: str,
    load_id: str,
    formats: Callable[[str, str], Formats],
    future_hours: float,
) -> list[PublishResult]:
    """Release the orphans of ``parent``'s children that ``raw.<parent>`` now holds the parent of."""
    ensure_table(con)
    results = []
    for child in children_of(parent):
        sources = [s for (s,) in con.execute(f"select distinct source {_waiting(child, parent)}").fetchall()]
        for source in sorted(sources):
            job = PublishJob(
                run_id=run_id,
                load_id=load_id,
                source=source,
                entity=child,
                landing_sql=None,
                check=CheckSpec(child, {}, formats(source, child.name), future_hours=future_hours),
                keyed=False,
            )
            result = _release(con, job, parent)
            if result.released:
                log.info(
                    "%s/%s: %d quarantined orphan(s) released: their %s arrived",
                    source,
                    child.name,
                    result.released,
                    parent,
                )
            results.append(result)
    return results


def _release(con: duckdb.DuckDBPyConnection, job: PublishJob, parent: str) -> PublishResult:
    child, source = job.entity, job.source
    table = f"quarantine.{q(child.name)}"
    columns = child.column_names
    extract = ", ".join(
        f"json_extract_string(w.record, {lit('$.' + chr(34) + c + chr(34))}) as {q(c)}" for c in columns
    )
    result = PublishResult(source, child.name, job.load_id, status="released")
    with transaction(con):
        # the quarantine row's own id is the row's position: it locates the row to release
        con.execute(
            f"create or replace temp table __released_rows as select w.rowid as {q(SEQ)}, "
            f"w.file as {q(FILE)}, w.row as {q(ROW)}, {extract} {_waiting(child, parent)} and w.source = ?",
            [source],
        )
        (keyed,) = con.execute(f"select bool_and({q(FILE)} is null) from __released_rows").fetchone()
        job.keyed = bool(keyed)
        job.check.landed = {c: "VARCHAR" for c in columns}
        con.execute("create temp view __landing as select * from __released_rows")
        parents = {fk: (f"raw.{q(p)}", ENTITIES[p].primary_key) for fk, p in child.parents.items()}
        con.execute(f"create temp view __checked as {check_sql(job.check, 'temp.__landing', parents)}")
        con.execute(
            f"create temp table __bad as select {q(SEQ)}, __why from __checked where __why is not null"
        )
        _versions(con, job, job.check.landed)
        con.execute(
            f"create temp table __excluded as select {q(SEQ)}, __why as why from __bad "
            f"union all select {q(SEQ)}, why from __losers"
        )
        # still not loadable (another parent missing, say): stays quarantined, with its reason now
        con.execute(
            f"update {table} set reason = split_part(x.why, '|', 1), field = split_part(x.why, '|', 2) "
            f"from __excluded x where x.why is not null and {table}.rowid = x.{q(SEQ)}"
        )
        loading = (
            f"select l.*, {', '.join(typed_columns(job.check))} "
            f"from __landing l anti join __excluded x on x.{q(SEQ)} = l.{q(SEQ)}"
        )
        result.findings = findings.record(
            con, job.check, loading, load_id=job.load_id, run_id=job.run_id, source=source, keyed=job.keyed
        )
        con.execute(f"create temp view __winners as {findings.nulled_sql(job.check, loading)}")
        # what loads, and older versions of a key superseded by what loads; not the rows still failing
        failing = f"select {q(SEQ)} from __excluded where why is not null"
        free = f"select {q(SEQ)} from __landing anti join ({failing}) b using ({q(SEQ)})"
        (n,) = con.execute(f"select count(*) from ({free})").fetchone()
        if n:
            _load(con, job, result, [])
            con.execute(
                f"insert into {RELEASES} select ?, ?, ?, ?, w.file, w.row, w.key, w.field, w.load_id, now() "
                f"from {table} w where w.rowid in ({free})",
                [job.run_id, job.load_id, source, child.name],
            )
            con.execute(f"delete from {table} where rowid in ({free})")
        result.read = result.released = n  # loaded: what the merge reports, checked by account()
        result.status = "released" if n else "unchanged"
        result.message = (
            f"{n} quarantined orphan(s) re-checked and loaded: their {parent} arrived" if n else ""
        )
        if n:
            account(con, job, result)
        con.execute("drop table if exists temp.__released_rows")
    return result
