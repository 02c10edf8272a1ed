"""What a publication looked like, kept beside it: the reference the marts gate compares a build with.

At every publication the marts gate's comparison metrics are profiled on the published marts and stored
in ``audit.quality_references``: each table's row count, and for each drift-checked column the
reference bins (decile edges of the published values) with the share of rows in each bin. A build is
then compared with the previous publication's profile: the transform gate's staging build with the
last publication, and `clarion check` on the published marts with the publication before them, never
the marts with themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import duckdb

from clarion.quality import metrics as m
from clarion.quality.suites import Suite
from clarion.warehouse import relation_exists

PROFILE_DDL = """
    create table if not exists audit.quality_references (
        run_id varchar, "table" varchar, "column" varchar, row_count bigint, edges varchar, shares varchar,
        profiled_at timestamptz
    )
"""
BUILD_MARKER = "clarion_build"  # staging.<this>: the run whose dbt build the staging schema holds


@dataclass(frozen=True)
class Profile:
    """One publication's reference: row counts per table, bins and shares per (table, column)."""

    run_id: str
    rows: dict[str, int]
    bins: dict[tuple[str, str], tuple[list[float], dict[int, float]]]


def profile_rows(con: duckdb.DuckDBPyConnection, schema: str, suite: Suite) -> list[tuple]:
    """(table, column, row_count, edges json, shares json) for the tables and columns the suite's
    metric checks compare; tables missing from ``schema`` are left out."""
    out: list[tuple] = []
    tables = sorted({t for c in suite.metric_checks for t in (c.tables or [])})
    for table in tables:
        if relation_exists(con, schema, table):
            out.append((table, None, m.count(con, schema, table), None, None))
    for check in suite.metric_checks:
        if check.metric != "psi":
            continue
        for table in check.tables or []:
            if not relation_exists(con, schema, table):
                continue
            relation = f"{schema}.{m.quote(table)}"
            for column in [c for c in check.metric_columns if c]:
                if any(r[0] == table and r[1] == column for r in out):
                    continue
                edges = m.psi_edges(con, relation, column)
                if edges is None:
                    continue
                shares = m.psi_shares(con, relation, column, edges)
                out.append((table, column, None, json.dumps(edges), json.dumps(shares)))
    return out


def store(con: duckdb.DuckDBPyConnection, run_id: str, suite: Suite, schema: str = "marts") -> int:
    """Profile what ``run_id`` published (replacing a redone stage's own profile)."""
    con.execute(PROFILE_DDL)
    rows = profile_rows(con, schema, suite)
    con.execute("delete from audit.quality_references where run_id = ?", [run_id])
    con.executemany(
        "insert into audit.quality_references values (?, ?, ?, ?, ?, ?, now())",
        [[run_id, *r] for r in rows],
    )
    return len(rows)


def _profile(run_id: str, rows: list[tuple]) -> Profile:
    counts: dict[str, int] = {}
    bins: dict[tuple[str, str], tuple[list[float], dict[int, float]]] = {}
    for table, column, row_count, edges, shares in rows:
        if column is None:
            counts[table] = int(row_count)
        else:
            bins[(table, column)] = (json.loads(edges), {int(k): v for k, v in json.loads(shares).items()})
    return Profile(run_id, counts, bins)


def load(con: duckdb.DuckDBPyConnection, run_id: str | None) -> Profile | None:
    """The stored profile of publication ``run_id``; None when there is none."""
    if run_id is None or not relation_exists(con, "audit", "quality_references"):
        return None
    rows = con.execute(
        'select "table", "column", row_count, edges, shares from audit.quality_references where run_id = ?',
        [run_id],
    ).fetchall()
    return _profile(run_id, rows) if rows else None


def live(con: duckdb.DuckDBPyConnection, run_id: str, schema: str, suite: Suite) -> Profile | None:
    """The profile of a schema as it is now (a publication made before profiles were stored)."""
    rows = profile_rows(con, schema, suite)
    return _profile(run_id, rows) if rows else None


def for_build(con: duckdb.DuckDBPyConnection, suite: Suite, candidate: str, run_id: str) -> Profile | None:
    """What a build is compared with: an unpublished build with the last publication; the published
    marts with the publication before them (never the marts with themselves)."""
    published = [p for p in publications(con) if p != run_id]  # a redone stage: not its own
    if candidate == "marts":
        return load(con, published[1]) if len(published) > 1 else None
    if not published:
        return None
    stored = load(con, published[0])
    # The marts as last published; what the stored profile lacks (a publication older than profiles,
    # a column the suite began to watch since) is read from them.
    current = (
        live(con, published[0], "marts", suite)
        if relation_exists(con, "marts", "customer_features")
        else None
    )
    if stored is None or current is None:
        return stored or current
    return Profile(stored.run_id, {**current.rows, **stored.rows}, {**current.bins, **stored.bins})


def publications(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Run ids of the publications, latest first."""
    if not relation_exists(con, "audit", "publications"):
        return []
    return [
        r[0]
        for r in con.execute("select run_id from audit.publications order by published_at desc").fetchall()
    ]


def mark_build(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """Record which run's dbt build the staging schema now holds."""
    con.execute(
        f"create or replace table staging.{BUILD_MARKER} as select ?::varchar as run_id, now() as built_at",
        [run_id],
    )


def unpublished_build(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether staging holds a build that was never published (one the marts gate stopped, say).
    Without a marker (a build older than markers) it counts as unpublished only if nothing was ever
    published."""
    if not relation_exists(con, "staging", "customer_features"):
        return False
    if not relation_exists(con, "staging", BUILD_MARKER):
        return not publications(con)
    (run_id,) = con.execute(f"select run_id from staging.{BUILD_MARKER}").fetchone()
    return run_id not in publications(con)
