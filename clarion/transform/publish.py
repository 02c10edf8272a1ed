"""Write-audit-publish: the staging build becomes the published marts in one transaction.

Until this point nothing in ``marts`` has changed. Either every mart table is replaced by its
staging build, or (on any error) none is, and readers of ``marts`` never see a mix of two builds.

Marts whose rows depend only on one customer's own inputs, which the build fingerprints
(dbt/macros/incremental.sql), are published incrementally: ``fct_campaign_exposures`` and
``fct_email_events`` (fingerprints ``int_exposure_inputs``), and ``customer_features``,
``fct_orders`` and ``dim_customers`` (``int_feature_inputs``, which also carry the day, so a new
day changes everyone's). Their publication keeps the fingerprints it published
(``marts.<model>__inputs``); the next one rewrites only the rows of the customers whose fingerprint
differs from those, and copies the rest of the marts whole.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import date
from typing import Any

import duckdb

from clarion.errors import storage_error
from clarion.runtime import checkpoint
from clarion.transform.dbt import MART_TABLES
from clarion.warehouse import relation_exists

BY_CUSTOMER = ("fct_campaign_exposures", "fct_email_events")  # a customer's rows: their inputs only
PUBLISHED_INPUTS = "fct_campaign_exposures__inputs"  # in marts: the fingerprints of what is published


@dataclass(frozen=True)
class ByCustomer:
    """Marts published a customer at a time: the build's fingerprints of their inputs, where the
    published ones are kept, the tables, and the summary's key for how many customers were rewritten."""

    inputs: str
    kept: str
    tables: tuple[str, ...]
    key: str
    changed: str  # temp table of the customers to rewrite


GROUPS = (
    ByCustomer(
        "int_exposure_inputs", PUBLISHED_INPUTS, BY_CUSTOMER, "customers_rewritten", "__publish_changed"
    ),
    ByCustomer(
        "int_feature_inputs",
        "customer_features__inputs",
        ("customer_features", "fct_orders", "dim_customers"),
        "features_rewritten",
        "__publish_changed_features",
    ),
)
# Past this share of customers changed, a whole copy is cheaper than deleting and inserting them.
WHOLE_COPY_SHARE = 0.5


def publish(con: duckdb.DuckDBPyConnection, run_id: str, as_of: date, horizon_days: int) -> dict[str, Any]:
    counts: dict[str, int] = {}
    changed = {group: _changed_customers(con, group) for group in GROUPS}
    con.execute("begin transaction")
    try:
        for table in MART_TABLES:
            group = next((g for g in GROUPS if table in g.tables), None)
            if group is not None and changed[group] is not None and _same_columns(con, table):
                _rewrite_changed(con, table, group.changed)
            else:
                con.execute(f'create or replace table marts."{table}" as select * from staging."{table}"')
            counts[table] = con.execute(f'select count(*) from marts."{table}"').fetchone()[0]
        for group in GROUPS:
            if _has_rows(con, group.inputs):
                con.execute(
                    f"create or replace table marts.{group.kept} as "
                    f"select contact_id, fingerprint from staging.{group.inputs}"
                )
            else:  # a build without fingerprints: the next publication copies everything
                con.execute(f"drop table if exists marts.{group.kept}")
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
        for group in GROUPS:
            con.execute(f"drop table if exists {group.changed}")
    rewritten = {group.key: n for group, n in changed.items() if n is not None}
    return {"as_of": as_of.isoformat(), "tables": counts} | rewritten


def _has_rows(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    return relation_exists(con, "staging", table) and bool(
        con.execute(f"select count(*) from staging.{table}").fetchone()[0]
    )


def _changed_customers(con: duckdb.DuckDBPyConnection, group: ByCustomer) -> int | None:
    """Into temp table ``group.changed``: the customers whose fingerprint in this build differs
    from the published one (or who are new, or gone). None when the group's marts must be copied
    whole: no fingerprints on either side, or more than half the customers changed."""
    if not (_has_rows(con, group.inputs) and relation_exists(con, "marts", group.kept)):
        return None
    con.execute(
        f"""
        create or replace temp table {group.changed} as
        select coalesce(built.contact_id, published.contact_id) as contact_id
        from staging.{group.inputs} as built
        full outer join marts.{group.kept} as published
            on built.contact_id = published.contact_id
        where built.fingerprint is distinct from published.fingerprint
        """
    )
    (changed,) = con.execute(f"select count(*) from {group.changed}").fetchone()
    (customers,) = con.execute(f"select count(*) from staging.{group.inputs}").fetchone()
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


def _rewrite_changed(con: duckdb.DuckDBPyConnection, table: str, changed: str) -> None:
    """Only the changed customers' rows: theirs deleted from the published table, the build's
    inserted. Every other customer's rows were published from the same inputs already."""
    con.execute(f'delete from marts."{table}" where contact_id in (select contact_id from {changed})')
    con.execute(
        f'insert into marts."{table}" select * from staging."{table}" '
        f"where contact_id in (select contact_id from {changed})"
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
