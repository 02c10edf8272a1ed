"""Write-audit-publish: the staging build becomes the published marts in one transaction.

Until this point nothing in ``marts`` has changed. Either every mart table is replaced by its
staging build, or (on any error) none is, and readers of ``marts`` never see a mix of two builds.

Two marts hold rows that depend only on one customer's own inputs, which the build fingerprints
(``int_exposure_inputs``, dbt/macros/incremental.sql): ``fct_campaign_exposures`` and
``fct_email_events``. Their publication keeps the fingerprints it published
(``marts.fct_campaign_exposures__inputs``); the next one rewrites only the rows of the customers
whose fingerprint differs from those, and copies the rest of the marts whole.
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
from clarion.warehouse import relation_exists

BY_CUSTOMER = ("fct_campaign_exposures", "fct_email_events")  # a customer's rows: their inputs only
PUBLISHED_INPUTS = "fct_campaign_exposures__inputs"  # in marts: the fingerprints of what is published
CHANGED = "__publish_changed"
# Past this share of customers changed, a whole copy is cheaper than deleting and inserting them.
WHOLE_COPY_SHARE = 0.5


def publish(con: duckdb.DuckDBPyConnection, run_id: str, as_of: date, horizon_days: int) -> dict[str, Any]:
    counts: dict[str, int] = {}
    changed = _changed_customers(con)
    con.execute("begin transaction")
    try:
        for table in MART_TABLES:
            if changed is not None and table in BY_CUSTOMER and _same_columns(con, table):
                _rewrite_changed(con, table)
            else:
                con.execute(f'create or replace table marts."{table}" as select * from staging."{table}"')
            counts[table] = con.execute(f'select count(*) from marts."{table}"').fetchone()[0]
        if relation_exists(con, "staging", "int_exposure_inputs"):
            con.execute(
                f"create or replace table marts.{PUBLISHED_INPUTS} as "
                "select contact_id, fingerprint from staging.int_exposure_inputs"
            )
        else:  # a build without fingerprints: the next publication copies everything
            con.execute(f"drop table if exists marts.{PUBLISHED_INPUTS}")
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
    finally:
        con.execute(f"drop table if exists {CHANGED}")
    return {"as_of": as_of.isoformat(), "tables": counts} | (
        {"customers_rewritten": changed} if changed is not None else {}
    )


def _changed_customers(con: duckdb.DuckDBPyConnection) -> int | None:
    """Into temp table ``__publish_changed``: the customers whose fingerprint in this build differs
    from the published one (or who are new, or gone). None when the marts must be copied whole: no
    fingerprints on either side, or more than half the customers changed."""
    if not (
        relation_exists(con, "staging", "int_exposure_inputs")
        and relation_exists(con, "marts", PUBLISHED_INPUTS)
    ):
        return None
    con.execute(
        f"""
        create or replace temp table {CHANGED} as
        select coalesce(built.contact_id, published.contact_id) as contact_id
        from staging.int_exposure_inputs as built
        full outer join marts.{PUBLISHED_INPUTS} as published
            on built.contact_id = published.contact_id
        where built.fingerprint is distinct from published.fingerprint
        """
    )
    (changed,) = con.execute(f"select count(*) from {CHANGED}").fetchone()
    (customers,) = con.execute("select count(*) from staging.int_exposure_inputs").fetchone()
    if changed > WHOLE_COPY_SHARE * max(customers, 1):
        return None
    return int(changed)


def _same_columns(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    """The published table exists with the build's columns and types, in the same order."""
    if not relation_exists(con, "marts", table):
        return False
    return _columns(con, "marts", table) == _columns(con, "staging", table)


def _columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[tuple[str, str]]:
    return con.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = ? and table_name = ? order by ordinal_position",
        [schema, table],
    ).fetchall()


def _rewrite_changed(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Only the changed customers' rows: theirs deleted from the published table, the build's
    inserted. Every other customer's rows were published from the same inputs already."""
    con.execute(f'delete from marts."{table}" where contact_id in (select contact_id from {CHANGED})')
    con.execute(
        f'insert into marts."{table}" select * from staging."{table}" '
        f"where contact_id in (select contact_id from {CHANGED})"
    )


def clear_staging(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Drop the staging build once it is published (transform.keep_staging: false)."""
    objects = con.execute(
        "select table_name, table_type from information_schema.tables where table_schema = 'staging'"
    ).fetchall()
    # views first: they depend on the tables
    for name, kind in sorted(objects, key=lambda o: o[1] != "VIEW"):
        con.execute(f'drop {"view" if kind == "VIEW" else "table"} if exists staging."{name}"')
    return sorted(name for name, _ in objects)
