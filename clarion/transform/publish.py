"""Write-audit-publish: the staging build becomes the published marts in one transaction.

Until this point nothing in ``marts`` has changed. Either every mart table is replaced by its
staging build, or (on any error) none is, and readers of ``marts`` never see a mix of two builds.
"""

from __future__ import annotations

import contextlib
import json
from datetime import date
from typing import Any

import duckdb

from clarion.errors import storage_error
from clarion.runtime import checkpoint
from clarion.transform.dbt import MART_TABLES


def publish(con: duckdb.DuckDBPyConnection, run_id: str, as_of: date, horizon_days: int) -> dict[str, Any]:
    counts: dict[str, int] = {}
    con.execute("begin transaction")
    try:
        for table in MART_TABLES:
            con.execute(f'create or replace table marts."{table}" as select * from staging."{table}"')
            counts[table] = con.execute(f'select count(*) from marts."{table}"').fetchone()[0]
        con.execute("delete from audit.publications where run_id = ?", [run_id])  # a redone stage
        con.execute(
            "insert into audit.publications values (?, ?, ?, ?, now())",
            [run_id, as_of, horizon_days, json.dumps(counts)],
        )
        checkpoint("transform.publish")  # every mart replaced, nothing committed
        con.execute("commit")
    except BaseException as exc:
        with contextlib.suppress(duckdb.Error):  # a commit that failed has rolled back already
            con.execute("rollback")
        doing = "publishing the marts (nothing published: marts keep the last good build)"
        failure = storage_error(exc, doing)
        if failure is not None:
            raise failure from exc
        raise
    return {"as_of": as_of.isoformat(), "tables": counts}


def clear_staging(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Drop the staging build once it is published (transform.keep_staging: false)."""
    objects = con.execute(
        "select table_name, table_type from information_schema.tables where table_schema = 'staging'"
    ).fetchall()
    # views first: they depend on the tables
    for name, kind in sorted(objects, key=lambda o: o[1] != "VIEW"):
        con.execute(f'drop {"view" if kind == "VIEW" else "table"} if exists staging."{name}"')
    return sorted(name for name, _ in objects)
