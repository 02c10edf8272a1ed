"""The dbt project on PostgreSQL gives the same features as on DuckDB, and its docs generate.

One 300-customer CRM is extracted into DuckDB and built there (the project's default target). Its raw
tables are then copied as they are into a throwaway PostgreSQL schema and the same project is built
there with the `postgres` target: seed, every model and every data test must pass, and the features
and labels must equal DuckDB's value for value, whether the PostgreSQL session's time zone is UTC or
Europe/Berlin (as_of is 00:00 UTC: no server setting may move a window edge or a tenure).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import duckdb
import psycopg
import pytest
from extract_helpers import generated_project

from clarion.config import Settings
from clarion.transform.dbt import (
    MART_TABLES,
    dbt_args,
    dbt_environment,
    describe_failure,
    release_duckdb,
    run_dbt,
)

AS_OF = date(2026, 7, 1)
COMPARED = ("customer_features", "customer_labels")

# DuckDB's raw column types -> PostgreSQL's (UBIGINT, the row hash, does not fit a BIGINT)
PG_TYPES = {
    "BIGINT": "BIGINT",
    "INTEGER": "INTEGER",
    "VARCHAR": "TEXT",
    "BOOLEAN": "BOOLEAN",
    "DATE": "DATE",
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ",
    "TIMESTAMP": "TIMESTAMP",
    "DOUBLE": "DOUBLE PRECISION",
    "UBIGINT": "NUMERIC(20,0)",
}


def pg_type(duck_type: str) -> str:
    if duck_type.startswith("DECIMAL("):
        return "NUMERIC" + duck_type.removeprefix("DECIMAL")
    assert duck_type in PG_TYPES, f"no PostgreSQL type for DuckDB's {duck_type}: add it to PG_TYPES"
    return PG_TYPES[duck_type]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A 300-customer CRM extracted into DuckDB and built there (staging.*) for AS_OF."""
    settings = generated_project(tmp_path_factory.mktemp("transform_pg"), customers=300, seed=23)
    run_dbt(settings, "build", AS_OF)
    return settings


def duck(settings: Settings) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(settings.warehouse.path), read_only=True)


def copy_raw_to_postgres(settings: Settings, pg: psycopg.Connection, schema: str, scratch: Path) -> list[str]:
    """Every table of DuckDB's raw schema, with matching column types, into `schema`."""
    con = duck(settings)
    try:
        tables = [
            t
            for (t,) in con.execute(
                "select table_name from information_schema.tables where table_schema = 'raw' order by 1"
            ).fetchall()
        ]
        pg.execute(f'create schema "{schema}"')
        for table in tables:
            columns = con.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = 'raw' and table_name = ? order by ordinal_position",
                [table],
            ).fetchall()
            pg.execute(
                f'create table "{schema}"."{table}" ('
                + ", ".join(f'"{name}" {pg_type(kind)}' for name, kind in columns)
                + ")"
            )
            csv_path = scratch / f"{table}.csv"
            # NULL is written as an empty field, an empty string as "": PostgreSQL's CSV reads both back
            con.execute(f"copy (select * from raw.\"{table}\") to '{csv_path}' (format csv, header true)")
            with (
                pg.cursor() as cur,
                cur.copy(f'copy "{schema}"."{table}" from stdin (format csv, header true)') as copy,
                csv_path.open("rb") as fh,
            ):
                while chunk := fh.read(1 << 20):
                    copy.write(chunk)
            [(duck_rows,)] = con.execute(f'select count(*) from raw."{table}"').fetchall()
            [(pg_rows,)] = pg.execute(f'select count(*) from "{schema}"."{table}"').fetchall()
            assert pg_rows == duck_rows, (
                f"{table}: {pg_rows} rows copied to PostgreSQL, {duck_rows} in DuckDB"
            )
        return tables
    finally:
        con.close()


def read_table(cursor: Any, sql: str) -> tuple[list[str], dict[Any, dict[str, Any]]]:
    """(column names, rows by their first column) of a query."""
    cursor.execute(sql)
    names = [d[0] for d in cursor.description]
    rows = {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}
    return names, rows


def same_value(a: Any, b: Any) -> bool:
    """Equal values across the engines: NULLs in the same places, booleans, integers, dates and text
    exactly, anything fractional within 1e-9 relative (1e-12 absolute about zero)."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float | Decimal) and isinstance(b, int | float | Decimal):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


@pytest.fixture(params=["UTC", "Europe/Berlin"])
def pg_environment(
    request: pytest.FixtureRequest, pg_schema: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, str]]:
    """The profile's PostgreSQL connection from the test DSN, with the session time zone a server may
    have (libpq's PGTZ); drops the build schema afterwards (pg_schema drops the raw one), whatever
    the test's outcome."""
    dsn, schema = pg_schema
    parts = urlsplit(dsn)
    monkeypatch.setenv("DBT_CLARION_PG_HOST", parts.hostname or "127.0.0.1")
    monkeypatch.setenv("DBT_CLARION_PG_PORT", str(parts.port or 5432))
    monkeypatch.setenv("DBT_CLARION_PG_USER", parts.username or "postgres")
    monkeypatch.setenv("DBT_CLARION_PG_PASSWORD", parts.password or "")
    monkeypatch.setenv("DBT_CLARION_PG_DATABASE", parts.path.lstrip("/") or "test")
    monkeypatch.setenv("PGTZ", request.param)
    try:
        with psycopg.connect(dsn) as pg:  # the same libpq as dbt-postgres: the session sees PGTZ
            assert pg.execute("show timezone").fetchone() == (request.param,)
        yield dsn, schema
    finally:
        with psycopg.connect(dsn, autocommit=True) as pg:
            pg.execute(f'drop schema if exists "{schema}_build" cascade')


@pytest.mark.postgres
@pytest.mark.slow  # a whole dbt build on PostgreSQL, twice (two time zones): in the slow set, run by CI
def test_the_dbt_project_builds_the_same_features_on_postgresql(
    built: Settings, pg_environment: tuple[str, str], tmp_path: Path
) -> None:
    try:
        import dbt.adapters.postgres  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"dbt-postgres is not installed, so the profile's postgres target cannot run: {exc}")
    from dbt.cli.main import dbtRunner

    dsn, schema = pg_environment
    build_schema = f"{schema}_build"
    with psycopg.connect(dsn, autocommit=True) as pg:
        tables = copy_raw_to_postgres(built, pg, schema, tmp_path)
    assert {"contacts", "orders", "order_items", "email_events", "consents"} <= set(tables)

    # the same project and vars, target postgres; dbt's files apart from the DuckDB build's
    pg_settings = built.model_copy(update={"var_dir": tmp_path / "var"})
    with dbt_environment(pg_settings, schema=build_schema, raw_schema=schema, target="postgres"):
        try:
            result = dbtRunner().invoke(dbt_args(pg_settings, "build", AS_OF, target="postgres"))
        finally:
            release_duckdb()
    assert result.success, f"dbt build on PostgreSQL failed: {describe_failure(result)}"
    kinds = {r.node.resource_type for r in result.result.results}
    assert {"seed", "model", "test"} <= {str(k) for k in kinds}, kinds
    not_passed = [
        (r.node.name, str(r.status))
        for r in result.result.results
        if str(r.status) not in {"success", "pass"}
    ]
    assert not not_passed, not_passed

    con = duck(built)
    try:
        with psycopg.connect(dsn) as pg:
            for table in MART_TABLES:
                [(duck_count,)] = con.execute(f"select count(*) from staging.{table}").fetchall()
                [(pg_count,)] = pg.execute(f'select count(*) from "{build_schema}".{table}').fetchall()
                assert pg_count == duck_count, (
                    f"{table}: {pg_count} rows on PostgreSQL, {duck_count} on DuckDB"
                )
                assert duck_count > 0, f"{table} is empty: nothing was compared"
            for table in COMPARED:
                duck_cols, duck_rows = read_table(con.cursor(), f"select * from staging.{table} order by 1")
                pg_cols, pg_rows = read_table(
                    pg.cursor(), f'select * from "{build_schema}".{table} order by 1'
                )
                assert pg_cols == duck_cols, f"{table}: columns differ"
                assert duck_cols[0] == "contact_id"
                assert pg_rows.keys() == duck_rows.keys(), f"{table}: contact ids differ"
                diffs = [
                    (contact_id, column, duck_row[column], pg_rows[contact_id][column])
                    for contact_id, duck_row in duck_rows.items()
                    for column in duck_cols
                    if not same_value(duck_row[column], pg_rows[contact_id][column])
                ]
                assert not diffs, (
                    f"{table}: {len(diffs)} values differ (id, column, DuckDB, PostgreSQL): {diffs[:10]}"
                )
        # the comparison saw real features, not columns of NULLs
        _, features = read_table(con.cursor(), "select * from staging.customer_features")
        assert sum(row["has_ordered"] for row in features.values()) > 100
        assert sum(row["recency_days"] is not None for row in features.values()) > 100
        assert sum(row["mean_gap_days"] is not None for row in features.values()) > 50
    finally:
        con.close()


def test_dbt_docs_generate_works(built: Settings) -> None:
    target = built.var_dir / "dbt" / "target"
    for name in ("catalog.json", "manifest.json"):
        (target / name).unlink(missing_ok=True)
    run_dbt(built, "docs generate", AS_OF)

    manifest = json.loads((target / "manifest.json").read_text())
    assert "model.clarion.customer_features" in manifest["nodes"]
    catalog = json.loads((target / "catalog.json").read_text())
    node = catalog["nodes"]["model.clarion.customer_features"]
    assert node["metadata"]["schema"] == "staging"
    columns = {c.lower() for c in node["columns"]}
    assert {"contact_id", "recency_days", "tenure_days", "spend_lifetime_eur"} <= columns
    assert "model.clarion.customer_labels" in catalog["nodes"]
