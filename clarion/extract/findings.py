"""Field findings: a bad value in an optional column is nulled and recorded; the row still loads.

A contact whose ``country`` reads "Germany" is still a contact: rejecting it would also orphan
every order, event, ticket and consent it has. So only row-level problems (a missing or broken
key, cursor or required field, an orphan, a duplicate) quarantine a row; a value that breaks the
contract in a nullable column becomes NULL in ``raw`` and a row of ``quarantine.field_findings``
with where it came from (source, file and row or key), the field, the reason and the original
value (kept like quarantine keeps records, so it may hold PII and is never logged).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import duckdb

from clarion.extract.contract_sql import FILE, ROW, CheckSpec, field_findings, lit, q, typed

if TYPE_CHECKING:
    from clarion.extract.publish import PublishJob

TABLE = "quarantine.field_findings"
DDL = f"""
create table if not exists {TABLE} (
    load_id varchar, run_id varchar, source varchar, entity varchar, file varchar, row bigint,
    key varchar, field varchar, reason varchar, value varchar, found_at timestamptz
)
"""


def ensure_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(DDL)


def nulled_sql(spec: CheckSpec, relation: str) -> str:
    """``relation`` (landed and ``__t_*`` columns) with every invalid optional value set to NULL."""
    cases = field_findings(spec)
    if not cases:
        return relation
    replace = ", ".join(
        f"CASE WHEN ({case}) IS NOT NULL THEN NULL ELSE t.{typed(name)} END AS {typed(name)}"
        for name, case in cases.items()
    )
    return f"select * replace ({replace}) from ({relation}) t"


def record(
    con: duckdb.DuckDBPyConnection,
    spec: CheckSpec,
    relation: str,
    *,
    load_id: str,
    run_id: str,
    source: str,
    keyed: bool,
    replaces: str | None = None,
) -> dict[str, int]:
    """Record the findings of the rows ``relation`` gives (the rows that load); returns
    ``"field: reason" -> count``. ``replaces`` is a SELECT of the files (``keyed=False``) or keys
    (``keyed=True``) read again: their earlier findings are superseded by this load's."""
    ensure_table(con)
    entity = spec.entity
    if replaces is not None:
        where = "key" if keyed else "file"
        con.execute(
            f"delete from {TABLE} where source = ? and entity = ? and load_id <> ? "
            f"and {where} in ({replaces})",
            [source, entity.name, load_id],
        )
    cases = field_findings(spec)
    if not cases:
        return {}
    items = ", ".join(
        f"{{'field': {lit(name)}, 'reason': {case}, 'value': cast(t.{q(name)} as varchar)}}"
        for name, case in cases.items()
    )
    key = f"cast(t.{typed(entity.primary_key)} as varchar)"
    row = "null" if keyed else f"t.{q(ROW)}"
    con.execute(
        f"""
        insert into {TABLE}
        select ?, ?, ?, ?, file, row, key, f.field, f.reason, f.value, now()
        from (
            select t.{q(FILE)} as file, {row} as row, {key} as key,
                   unnest(list_filter([{items}], lambda x: x.reason is not null)) as f
            from ({relation}) t
        )
        """,
        [load_id, run_id, source, entity.name],
    )
    return {
        f"{field}: {reason}": n
        for field, reason, n in con.execute(
            f"select field, reason, count(*) from {TABLE} where load_id = ? and source = ? and entity = ? "
            "group by all order by 1, 2",
            [load_id, source, entity.name],
        ).fetchall()
    }


def record_job(con: duckdb.DuckDBPyConnection, job: PublishJob, loading: str) -> dict[str, int]:
    """The findings of a publish job's rows that load (``loading``); those of the files (or keys) it
    read again are replaced."""
    column = q(job.entity.primary_key) if job.keyed else q(FILE)
    replaces: str | None = f"select distinct cast({column} as varchar) from __landing"
    if job.keyed and job.entity.primary_key not in (job.check.landed or {}):
        replaces = None
    return record(
        con,
        job.check,
        loading,
        load_id=job.load_id,
        run_id=job.run_id,
        source=job.source,
        keyed=job.keyed,
        replaces=replaces,
    )
