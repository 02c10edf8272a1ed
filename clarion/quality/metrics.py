"""Table-level metrics for the gates, computed in DuckDB: one row per (table, column, metric, value).

These are the facts no single row shows: how many rows there are against the last publication, what
share of an entity was quarantined, how old the latest load is, how many values are missing, and
how far a feature's distribution moved since the last published build (population stability index).
"""

from __future__ import annotations

import math
from typing import Any

import duckdb
import pandas as pd

from clarion.contract import ENTITIES
from clarion.quality.suites import Suite
from clarion.warehouse import relation_exists

Metric = tuple[str, str | None, str, float]  # table, column, metric, value
PSI_BINS = 10
PSI_EPSILON = 1e-4


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _count(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> int:
    return int(con.execute(f"select count(*) from {schema}.{_q(table)}").fetchone()[0])


def null_rates(con: duckdb.DuckDBPyConnection, schema: str, suite: Suite) -> list[Metric]:
    out = []
    for check in suite.metric_checks:
        if check.metric != "null_rate":
            continue
        for table in check.tables or []:
            for column in [c for c in check.metric_columns if c]:
                if relation_exists(con, schema, table):
                    (rate,) = con.execute(
                        f"select coalesce(avg(case when {_q(column)} is null then 1.0 else 0.0 end), 0) "
                        f"from {schema}.{_q(table)}"
                    ).fetchone()
                    out.append((table, column, "null_rate", float(rate)))
    return out


def raw_metrics(
    con: duckdb.DuckDBPyConnection, suite: Suite, previous: dict[tuple[str, str | None, str], float]
) -> list[Metric]:
    """Row counts (and their ratio to the last publication), quarantine share, hours since load."""
    out: list[Metric] = []
    for entity in ENTITIES:
        rows = _count(con, "raw", entity)
        out.append((entity, None, "row_count", float(rows)))
        before = previous.get((entity, None, "row_count"))
        if before:
            out.append((entity, None, "row_count_ratio", rows / before))
        quarantined = _count(con, "quarantine", entity) if relation_exists(con, "quarantine", entity) else 0
        if rows + quarantined:
            out.append((entity, None, "quarantine_rate", quarantined / (rows + quarantined)))
        (latest,) = con.execute(f"select max(_loaded_at) from raw.{_q(entity)}").fetchone()
        if latest is not None:
            (hours,) = con.execute(
                "select date_diff('second', ?::timestamptz, now()) / 3600.0", [latest]
            ).fetchone()
            out.append((entity, None, "hours_since_load", float(hours)))
    return out + null_rates(con, "raw", suite)


def marts_metrics(
    con: duckdb.DuckDBPyConnection, suite: Suite, candidate: str, published: str
) -> list[Metric]:
    """The candidate build against the published marts: row count ratios and feature drift."""
    out: list[Metric] = []
    tables = sorted({t for c in suite.metric_checks for t in (c.tables or [])})
    for table in tables:
        if not relation_exists(con, candidate, table):
            continue
        rows = _count(con, candidate, table)
        out.append((table, None, "row_count", float(rows)))
        if relation_exists(con, published, table):
            before = _count(con, published, table)
            if before:
                out.append((table, None, "row_count_ratio", rows / before))
    for check in suite.metric_checks:
        if check.metric != "psi":
            continue
        for table in check.tables or []:
            if not (relation_exists(con, candidate, table) and relation_exists(con, published, table)):
                continue
            for column in [c for c in check.metric_columns if c]:
                value = psi(con, f"{published}.{_q(table)}", f"{candidate}.{_q(table)}", column)
                if value is not None:
                    out.append((table, column, "psi", value))
    if any(c.metric == "unfinished_labels" for c in suite.metric_checks):
        out += unfinished_labels(con, candidate)
    return out + null_rates(con, candidate, suite)


def unfinished_labels(con: duckdb.DuckDBPyConnection, schema: str) -> list[Metric]:
    """Labels published for a horizon the loaded orders do not cover yet: counted from the orders
    table itself (not from the labels' own flag), so a labels model that says "complete" wrongly is
    seen. A label is only knowable once its horizon ends by 00:00 UTC after the latest order's day."""
    if not (relation_exists(con, schema, "customer_labels") and relation_exists(con, schema, "fct_orders")):
        return []
    (n,) = con.execute(
        f"""
        select count(*) from {schema}.customer_labels l
        where l.purchased_in_horizon is not null
          and cast(l.as_of as date) + l.horizon_days * interval 1 day > (
              select cast(max(ordered_at) at time zone 'UTC' as date) + interval 1 day
              from {schema}.fct_orders)
        """
    ).fetchone()
    return [("customer_labels", "purchased_in_horizon", "unfinished_labels", float(n))]


def psi(con: duckdb.DuckDBPyConnection, reference: str, current: str, column: str) -> float | None:
    """Population stability index of ``column``: decile bins of the reference, missing values as a
    bin of their own. Below 0.1 is stable, 0.1-0.25 a shift worth a look, above 0.25 a large shift."""
    col = _q(column)
    probs = [i / PSI_BINS for i in range(1, PSI_BINS)]
    (edges,) = con.execute(f"select quantile_cont({col}, {probs}) from {reference}").fetchone()
    if edges is None:
        return None
    edges = sorted({float(e) for e in edges if e is not None and math.isfinite(float(e))})
    binning = " + ".join(f"case when {col} >= {e!r} then 1 else 0 end" for e in edges) or "0"
    expr = f"case when {col} is null then -1 else {binning} end"

    def shares(table: str) -> dict[int, float]:
        rows = con.execute(f"select {expr} as b, count(*) from {table} group by 1").fetchall()
        total = sum(n for _, n in rows) or 1
        return {int(b): n / total for b, n in rows}

    ref, cur = shares(reference), shares(current)
    value = 0.0
    for b in set(ref) | set(cur):
        p, q = max(ref.get(b, 0.0), PSI_EPSILON), max(cur.get(b, 0.0), PSI_EPSILON)
        value += (q - p) * math.log(q / p)
    return value


def frame(metrics: list[Metric]) -> pd.DataFrame:
    return pd.DataFrame(metrics, columns=["table", "column", "metric", "value"]).astype(
        {"table": object, "column": object, "metric": object, "value": float}
    )


def as_lookup(rows: list[tuple[Any, ...]]) -> dict[tuple[str, str | None, str], float]:
    return {(t, c, m): v for t, c, m, v in rows}
