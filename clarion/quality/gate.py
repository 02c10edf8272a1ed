"""Run a quality gate: metrics in DuckDB, every check validated with Great Expectations, results kept.

Great Expectations runs on pandas batches (its SQL datasource on DuckDB returns empty metrics; see
../shared/stack.md): the metrics frame for metric checks, and the columns a check needs for table
checks. Results go to ``audit.quality_results`` (and metrics to ``audit.quality_metrics``), and
into Great Expectations' Data Docs under ``var/gx``.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from clarion import audit
from clarion.config import Settings
from clarion.errors import ClarionError
from clarion.privacy.scrub import PII_FIELDS
from clarion.quality import metrics as m
from clarion.quality import reference as ref
from clarion.quality.suites import Check, Suite, load_suite
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
COMPARED = ("row_count_ratio", "psi")  # metrics measured against a previous publication
NOTHING = "nothing_to_measure"


class QualityGateError(ClarionError):
    """A `fail` check did not pass: nothing is published, later stages do not run."""

    exit_code = 4

    def __init__(self, gate: GateResult) -> None:
        self.gate = gate
        lines = [f"quality gate '{gate.suite}' failed: {len(gate.failures)} check(s) with severity fail"]
        lines += [f"  - {r.describe()}" for r in gate.failures]
        if gate.data_docs:
            lines.append(f"  Data Docs: {gate.data_docs}")
        lines.append(
            "  Nothing was published: marts keep the last good build. Fix the data (rejected rows:"
            " `clarion quarantine`), or, if the change is expected, edit the check in"
            f" {gate.suite}.yml of quality.suites_dir and raise its version; then run again."
        )
        super().__init__("\n".join(lines))


@dataclass
class CheckResult:
    check_id: str
    severity: str
    status: str  # passed | failed | skipped (no earlier publication) | nothing_to_measure | invalid
    kind: str  # the expectation, or metric:<name>
    table: str | None = None
    column: str | None = None
    observed: dict[str, Any] = field(default_factory=dict)
    sample: list[Any] = field(default_factory=list)
    why: str = ""

    def describe(self) -> str:
        if self.status == "invalid":
            return f"{self.check_id}: {self.why}"
        where = ".".join(x for x in (self.table, self.column) if x) or "all tables"
        shown_observed = {k: v for k, v in self.observed.items() if k not in ("measured", "outside")}
        measured, outside = self.observed.get("measured"), self.observed.get("outside")
        if measured is not None:  # a metric: how many of its measurements broke the bound
            unit = "table" if measured == 1 else "tables"
            shown_observed["out of bounds"] = f"{outside} of {measured} {unit}"
        seen = ", ".join(f"{k} {v}" for k, v in shown_observed.items() if v is not None)
        shown = [_sample_text(s, self.column) for s in self.sample[:5]]
        sample = f"; e.g. {', '.join(shown)}" if shown else ""
        why = f". {self.why}" if self.why else ""
        if self.status == NOTHING:
            seen = "nothing to measure" + (f" ({seen})" if seen else "")
        return f"{self.check_id} ({self.kind} on {where}): {seen}{sample}{why}"


@dataclass
class GateResult:
    suite: str
    version: int
    results: list[CheckResult]
    data_docs: str | None = None
    seconds: float = 0.0

    @property
    def failures(self) -> list[CheckResult]:
        """Broken `fail` checks, `fail` checks with nothing to measure, and any check whose table or
        column does not exist (whatever its severity: a check that cannot run guards nothing)."""
        return [
            r
            for r in self.results
            if r.status == "invalid" or (r.status in ("failed", NOTHING) and r.severity == "fail")
        ]

    @property
    def warnings(self) -> list[CheckResult]:
        return [r for r in self.results if r.status in ("failed", NOTHING) and r.severity == "warn"]

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> dict[str, Any]:
        counts = {s: sum(1 for r in self.results if r.status == s) for s in ("passed", "skipped", NOTHING)}
        return {
            "suite": self.suite,
            "version": self.version,
            "ok": self.passed,
            **counts,
            "failed": len(self.failures) + len(self.warnings),
            "failures": [r.describe() for r in self.failures],
            "warnings": [r.describe() for r in self.warnings],
            "data_docs": self.data_docs,
        }


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
    validator = _Validator(settings, checked, compared_with)
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
    present = {r[0] for r in con.execute(f'describe {schema}."{table}"').fetchall()}
    missing = sorted(columns - present - {"contact_id"})
    if missing:
        raise ClarionError(f"quality checks name columns {missing} that {schema}.{table} does not have")
    chosen = ", ".join(f'"{c}"' for c in sorted(columns & present)) or "1 as _row"  # a row count only
    return con.execute(f'select {chosen} from {schema}."{table}"').df()


class _Validator:
    """A Great Expectations file context under var/gx, with one validation per batch."""

    def __init__(self, settings: Settings, suite: Suite, compared_with: str | None = None) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        warnings.filterwarnings("ignore", module="great_expectations")
        logging.getLogger("great_expectations").setLevel(logging.ERROR)
        self.gx = gx
        self.suite = suite
        self.compared_with = compared_with
        self.sample = settings.quality.sample_failures
        self.build_docs = settings.quality.data_docs
        self.ctx = gx.get_context(mode="file", project_root_dir=str(Path(settings.var_dir).resolve()))
        self.ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.source = self.ctx.data_sources.add_or_update_pandas("clarion")

    def _validate(self, name: str, checks: list[Check], df: pd.DataFrame, index: list[str]) -> list[Any]:
        gx = self.gx
        try:
            asset = self.source.get_asset(name)
        except LookupError:
            asset = self.source.add_dataframe_asset(name)
        try:
            batch_definition = asset.get_batch_definition("whole")
        except KeyError:
            batch_definition = asset.add_batch_definition_whole_dataframe("whole")
        suite = self.ctx.suites.add_or_update(
            gx.ExpectationSuite(name=name, expectations=[c.gx_expectation() for c in checks])
        )
        definition = self.ctx.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=name, data=batch_definition, suite=suite)
        )
        checkpoint = self.ctx.checkpoints.add_or_update(
            gx.Checkpoint(
                name=name,
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="data-docs")] if self.build_docs else [],
                result_format={
                    "result_format": "COMPLETE",
                    "partial_unexpected_count": self.sample,
                    "unexpected_index_column_names": [c for c in index if c in df.columns],
                },
            )
        )
        run = checkpoint.run(batch_parameters={"dataframe": df})
        return [r for result in run.run_results.values() for r in result.results]

    def metrics(self, df: pd.DataFrame) -> list[CheckResult]:
        checks = self.suite.metric_checks
        if not checks:
            return []
        outcomes = self._validate(f"{self.suite.suite}.metrics", checks, df, ["table", "column"])
        return [self._metric_result(checks, r) for r in outcomes]

    def tables(self, tables: dict[str, pd.DataFrame]) -> list[CheckResult]:
        results: list[CheckResult] = []
        for table, df in tables.items():
            checks = self.suite.table_checks[table]
            outcomes = self._validate(f"{self.suite.suite}.{table}", checks, df, ["contact_id"])
            for r in outcomes:
                check = next(c for c in checks if c.id == r.expectation_config.meta["check"])
                outcome = r.result or {}
                observed = {
                    k: _plain(outcome.get(k))
                    for k in ("observed_value", "element_count", "unexpected_count", "unexpected_percent")
                    if outcome.get(k) is not None
                }
                sample = [
                    _plain(x) for x in (outcome.get("partial_unexpected_index_list") or [])[: self.sample]
                ]
                if not sample:
                    sample = [
                        _plain(x) for x in (outcome.get("partial_unexpected_list") or [])[: self.sample]
                    ]
                empty = outcome.get("element_count") == 0 and check.kwargs.get("column")
                results.append(
                    CheckResult(
                        check.id,
                        check.severity,
                        NOTHING if empty else "passed" if r.success else "failed",
                        check.expectation,
                        table,
                        check.kwargs.get("column"),
                        observed,
                        sample,
                        check.why,
                    )
                )
        return results

    def _metric_result(self, checks: list[Check], r: Any) -> CheckResult:
        check = next(c for c in checks if c.id == r.expectation_config.meta["check"])
        outcome = r.result or {}
        columns = [c for c in check.metric_columns if c]
        bounds = {"min": check.min, "max": check.max}
        if not outcome.get("element_count"):
            first = check.metric in COMPARED and self.compared_with is None
            return CheckResult(
                check.id,
                check.severity,
                "skipped" if first else NOTHING,
                f"metric:{check.metric}",
                _joined(check.tables),
                _joined(columns),
                {**bounds, "note": "no earlier publication to compare with" if first else "no rows measured"},
                [],
                check.why,
            )
        failing = [
            {k: _plain(v) for k, v in row.items() if k in ("table", "column", "value") and v is not None}
            for row in (outcome.get("unexpected_index_list") or [])
        ]
        observed = {
            **bounds,
            "measured": outcome.get("element_count"),
            "outside": outcome.get("unexpected_count"),
        }
        return CheckResult(
            check.id,
            check.severity,
            "passed" if r.success else "failed",
            f"metric:{check.metric}",
            _joined(check.tables),
            _joined(columns),
            observed,
            failing[: self.sample],
            check.why,
        )

    def docs(self) -> str | None:
        if not self.build_docs:
            return None
        sites = self.ctx.get_docs_sites_urls()
        return sites[0]["site_url"] if sites else None


def _sample_text(sample: Any, column: str | None = None) -> str:
    """A failing metric row as `table.column=value`; a failing table row as `value=...`.

    Messages leave the warehouse (the CLI, Prefect's failure state, logs), so a row's contact id is
    not in them (the rows are in audit.quality_results; the artifact names them by pseudonym) and a
    personal column's value is withheld."""
    if isinstance(sample, dict):
        value = sample.get("value")
        shown = f"{value:.4g}" if isinstance(value, float) else value
        if "table" in sample:
            where = ".".join(str(sample[k]) for k in ("table", "column") if sample.get(k))
            return f"{where}={shown}"
        return " ".join(
            f"{k}={'[withheld]' if (k in PII_FIELDS or column in PII_FIELDS) and v is not None else v}"
            for k, v in sample.items()
            if k != "contact_id"
        )
    return "[withheld]" if column in PII_FIELDS and sample is not None else str(sample)


def _joined(values: list[str] | None) -> str | None:
    return ",".join(values) if values else None


def _plain(value: Any) -> Any:
    """numpy scalars and dicts of them as plain JSON values."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        try:
            return value.item()
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, float) and value != value:
        return None
    return value
