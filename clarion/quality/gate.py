"""Run a quality gate: metrics in DuckDB, every check validated with Great Expectations, results kept.

Great Expectations runs on pandas batches (its SQL datasource on DuckDB returns empty metrics; see
../shared/stack.md): the metrics frame for metric checks, and the columns a check needs for table
checks (clarion/quality/validator.py). Results go to ``audit.quality_results`` (and metrics to
``audit.quality_metrics``), and into Great Expectations' Data Docs under ``var/gx``; the result
types are in clarion/quality/results.py.
"""

from __future__ import annotations

import json
import logging
import time

import duckdb
import pandas as pd

from clarion import audit
from clarion.config import Settings
from clarion.errors import ClarionError
from clarion.quality import metrics as m
from clarion.quality import reference as ref
from clarion.quality.results import NOTHING, CheckResult, GateResult
from clarion.quality.results import QualityGateError as QualityGateError  # the stages raise it
from clarion.quality.suites import Check, Suite, load_suite
from clarion.quality.validator import Validator
from clarion.warehouse import relation_exists

log = logging.getLogger(__name__)

QUALITY_DDL = (
    """
    create table if not exists audit.quality_results (
        run_id varchar, suite varchar, suite_version integer, check_id varchar, "table" varchar,
        "column" varchar, kind varchar, severity varchar, status varchar, observed varchar,
        sample varchar, evaluated_at timestamptz
    )
    """,
    """
    create table if not exists audit.quality_metrics (
        run_id varchar, suite varchar, "table" varchar, "column" varchar, metric varchar, value double,
        measured_at timestamptz
    )
    """,
    """
    create table if not exists audit.publications (
        run_id varchar, as_of date, horizon_days integer, tables varchar, published_at timestamptz
    )
    """,
    ref.PROFILE_DDL,
)


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    for ddl in QUALITY_DDL:
        con.execute(ddl)


def last_publication(con: duckdb.DuckDBPyConnection, before: str | None = None) -> str | None:
    """The run that last published marts, other than ``before`` (a resumed run redoing its own gate)."""
    row = con.execute(
        "select run_id from audit.publications where run_id is distinct from ? "
        "order by published_at desc limit 1",
        [before],
    ).fetchone()
    return row[0] if row else None


def run_gate(
    settings: Settings,
    con: duckdb.DuckDBPyConnection,
    suite_name: str,
    run_id: str,
    *,
    candidate: str = "staging",
) -> GateResult:
    """Validate the raw tables (suite raw) or a build (suite marts: ``candidate`` is ``staging``, an
    unpublished build, or ``marts``, the published one) against the previous publication."""
    started = time.perf_counter()
    suite = load_suite(settings.quality.suites_dir, suite_name)
    ensure_tables(con)
    schema = "raw" if suite_name == "raw" else candidate
    invalid = unknown_names(con, suite, schema)
    checked = suite.model_copy(update={"checks": [c for c in suite.checks if c.id not in invalid]})
    if suite_name == "raw":
        previous_run = last_publication(con, before=run_id)
        previous = m.as_lookup(
            con.execute(
                'select "table", "column", metric, value from audit.quality_metrics '
                "where run_id = ? and suite = 'raw'",
                [previous_run],
            ).fetchall()
        )
        compared_with = previous_run if previous else None
        values = m.raw_metrics(con, checked, previous)
        tables = {t: _load(con, "raw", t, checks) for t, checks in checked.table_checks.items()}
    else:
        reference = ref.for_build(con, checked, candidate, run_id)
        compared_with = reference.run_id if reference else None
        values = m.marts_metrics(con, checked, candidate, reference)
        tables = {t: _load(con, candidate, t, checks) for t, checks in checked.table_checks.items()}
    # A stage redone under the same run id (clarion run --resume) replaces its own earlier results.
    for table in ("quality_metrics", "quality_results"):
        con.execute(f"delete from audit.{table} where run_id = ? and suite = ?", [run_id, suite.suite])
    con.executemany(
        "insert into audit.quality_metrics values (?, ?, ?, ?, ?, ?, now())",
        [[run_id, suite.suite, t, c, metric, v] for t, c, metric, v in values],
    )
    validator = Validator(settings, checked, compared_with)
    results = list(invalid.values()) + validator.metrics(m.frame(values)) + validator.tables(tables)
    gate = GateResult(suite.suite, suite.version, results, validator.docs(), time.perf_counter() - started)
    con.executemany(
        "insert into audit.quality_results values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
        [
            [
                run_id,
                suite.suite,
                suite.version,
                r.check_id,
                r.table,
                r.column,
                r.kind,
                r.severity,
                r.status,
                json.dumps(r.observed, default=str),
                json.dumps(r.sample, default=str),
            ]
            for r in results
        ],
    )
    for r in gate.warnings:
        log.warning("quality %s: %s", suite.suite, r.describe())
    counts = gate.summary()
    audit.AuditLog.for_settings(settings).record(
        con,
        audit.GATE_PASSED if gate.passed else audit.GATE_FAILED,
        suite.suite,
        run_id=run_id,
        details={
            "suite": suite.suite,
            "suite_version": suite.version,
            "candidate": candidate if suite_name != "raw" else "raw",
            "checks": len(results),
            "passed": counts["passed"],
            "failed": len(gate.failures),
            "warnings": len(gate.warnings),
            "skipped": counts["skipped"],
            "nothing_to_measure": counts[NOTHING],
            "compared_with": compared_with,
            "failed_checks": sorted({r.check_id for r in gate.failures}),
        },
    )
    return gate


def unknown_names(con: duckdb.DuckDBPyConnection, suite: Suite, schema: str) -> dict[str, CheckResult]:
    """Checks that name a table or column ``schema`` does not have: each fails the suite (a check
    that cannot run guards nothing), with the check, the suite file and the unknown name."""
    columns: dict[str, set[str] | None] = {}

    def has(table: str, column: str | None) -> bool:
        if table not in columns:
            columns[table] = (
                {r[0] for r in con.execute(f"describe {schema}.{m.quote(table)}").fetchall()}
                if relation_exists(con, schema, table)
                else None
            )
        known = columns[table]
        return known is not None and (column is None or column in known)

    out: dict[str, CheckResult] = {}
    for check in suite.checks:
        for table, column in check.names:
            if table is None or has(table, column):
                continue
            what = (
                f"table {schema}.{table}" if columns[table] is None else f"column {schema}.{table}.{column}"
            )
            kind = f"metric:{check.metric}" if check.is_metric else check.expectation
            out[check.id] = CheckResult(
                check.id,
                check.severity,
                "invalid",
                kind,
                table,
                column,
                {"unknown": what},
                [],
                f"check {check.id} in {suite.path} names {what}, which does not exist: correct the name"
                " in the suite file (or remove the check) and raise its version",
            )
            break
    return out


def _load(con: duckdb.DuckDBPyConnection, schema: str, table: str, checks: list[Check]) -> pd.DataFrame:
    """Only the columns the checks look at (plus the key, for failing-row samples)."""
    columns = {"contact_id"}
    for c in checks:
        for key in ("column", "column_A", "column_B"):
            if key in c.kwargs:
                columns.add(c.kwargs[key])
        columns.update(c.kwargs.get("column_list", []))
    types = {r[0]: str(r[1]) for r in con.execute(f'describe {schema}."{table}"').fetchall()}
    missing = sorted(columns - types.keys() - {"contact_id"})
    if missing:
        raise ClarionError(f"quality checks name columns {missing} that {schema}.{table} does not have")
    chosen = (  # decimals as doubles: pandas holds a decimal column as Python objects, slow to check
        ", ".join(
            f'"{c}"::double as "{c}"' if types[c].startswith("DECIMAL") else f'"{c}"'
            for c in sorted(columns & types.keys())
        )
        or "1 as _row"  # a row count only
    )
    return con.execute(f'select {chosen} from {schema}."{table}"').df()
