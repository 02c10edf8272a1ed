"""Table-level metrics for the gates, computed in DuckDB: one row per (table, column, metric, value).

These are the facts no single row shows: how many rows there are against the last publication, what
share of a load was quarantined, how old the latest load is, and how far a feature's distribution
moved since the last publication (population stability index). Row counts and missing values of one
table are Great Expectations expectations in the suites, not metrics.
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


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def count(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> int:
    return int(con.execute(f"select count(*) from {schema}.{quote(table)}").fetchone()[0])


_q, _count = quote, count


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
        (latest,) = con.execute(f"select max(_loaded_at) from raw.{_q(entity)}").fetchone()
        if latest is not None:
            (hours,) = con.execute(
                "select date_diff('second', ?::timestamptz, now()) / 3600.0", [latest]
            ).fetchone()
            out.append((entity, None, "hours_since_load", float(hours)))
    return out + quarantine_rates(con)


def quarantine_rates(con: duckdb.DuckDBPyConnection) -> list[Metric]:
    """The share of rows each entity's latest load rejected, from that load's own counts in
    ``audit.extract_loads`` (quarantined / read), one value per (source, entity): a small broken batch
    is judged on its own rows, not diluted by the history already in raw. A later load that read rows
    replaces an earlier one (a fixed export passes); loads that read nothing new do not count."""
    if not relation_exists(con, "audit", "extract_loads"):
        return []
    rows = con.execute(
        """
        select entity, quarantined::double / read from (
            select entity, read, quarantined,
                   row_number() over (
                       partition by source, entity order by finished_at desc, load_id desc) as n
            from audit.extract_loads where read > 0)
        where n = 1 order by entity
        """
    ).fetchall()
    return [(entity, None, "quarantine_rate", float(rate)) for entity, rate in rows]


def marts_metrics(
    con: duckdb.DuckDBPyConnection, suite: Suite, candidate: str, reference: Any | None
) -> list[Metric]:
    """The candidate build against a publication's stored profile (``reference``, a
    clarion.quality.reference.Profile; None: nothing to compare with): row count ratios and drift."""
    out: list[Metric] = []
    tables = sorted({t for c in suite.metric_checks for t in (c.tables or [])})
    for table in tables:
        if not relation_exists(con, candidate, table):
            continue
        rows = _count(con, candidate, table)
        out.append((table, None, "row_count", float(rows)))
        before = reference.rows.get(table) if reference is not None else None
        if before:
            out.append((table, None, "row_count_ratio", rows / before))
    for check in suite.metric_checks:
        if check.metric != "psi" or reference is None:
            continue
        for table in check.tables or []:
            if not relation_exists(con, candidate, table):
                continue
            for column in [c for c in check.metric_columns if c]:
                if (table, column) not in reference.bins:
                    continue
                edges, ref = reference.bins[(table, column)]
                cur = psi_shares(con, f"{candidate}.{_q(table)}", column, edges)
                if cur:
                    out.append((table, column, "psi", psi_value(ref, cur)))
    if any(c.metric == "unfinished_labels" for c in suite.metric_checks):
        out += unfinished_labels(con, candidate)
    return out


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
    edges = psi_edges(con, reference, column)
    if edges is None:
        return None
    cur = psi_shares(con, current, column, edges)
    return psi_value(psi_shares(con, reference, column, edges), cur) if cur else None


def psi_edges(con: duckdb.DuckDBPyConnection, relation: str, column: str) -> list[float] | None:
    """The reference's decile edges of ``column`` (None when it has no values)."""
    probs = [i / PSI_BINS for i in range(1, PSI_BINS)]
    (edges,) = con.execute(f"select quantile_cont({_q(column)}, {probs}) from {relation}").fetchone()
    if edges is None:
        return None
    return sorted({float(e) for e in edges if e is not None and math.isfinite(float(e))})


def psi_shares(
    con: duckdb.DuckDBPyConnection, relation: str, column: str, edges: list[float]
) -> dict[int, float]:
    """The share of ``relation``'s rows in each bin (-1: missing values); empty for an empty table."""
    col = _q(column)
    binning = " + ".join(f"case when {col} >= {e!r} then 1 else 0 end" for e in edges) or "0"
    expr = f"case when {col} is null then -1 else {binning} end"
    rows = con.execute(f"select {expr} as b, count(*) from {relation} group by 1").fetchall()
    total = sum(n for _, n in rows)
    return {int(b): n / total for b, n in rows} if total else {}


def psi_value(ref: dict[int, float], cur: dict[int, float]) -> float:
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
