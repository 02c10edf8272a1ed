"""Great Expectations as the gates' validator: a file context under var/gx, one checkpoint per batch,
and the Data Docs built once per gate."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from clarion.config import Settings
from clarion.quality.results import COMPARED, NOTHING, CheckResult
from clarion.quality.suites import Check, Suite


class Validator:
    """A Great Expectations file context under var/gx, with one validation per batch."""

    def __init__(self, settings: Settings, suite: Suite, compared_with: str | None = None) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig
        from great_expectations.execution_engine import pandas_execution_engine

        # GX fingerprints every pandas batch below this many bytes (pandas' hash of every row, then
        # md5) into a batch marker that only its result pages show: 6.6 s of a 9.8 s marts gate at
        # 1,000,000 customers. The checks do not need it; 0 skips it for every batch.
        pandas_execution_engine.HASH_THRESHOLD = 0
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
        self.validated: list[Any] = []  # each validation's result and suite identifiers, for docs()
        if self.build_docs:
            _limit_docs_index(self.ctx, settings.quality.data_docs_index_results)

    def _validate(self, name: str, checks: list[Check], df: pd.DataFrame, index: list[str]) -> list[Any]:
        from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

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
                result_format={
                    "result_format": "COMPLETE",
                    "partial_unexpected_count": self.sample,
                    "unexpected_index_column_names": [c for c in index if c in df.columns],
                },
            )
        )
        run = checkpoint.run(batch_parameters={"dataframe": df})
        for identifier, result in run.run_results.items():
            self.validated += [identifier, ExpectationSuiteIdentifier(name=result.suite_name)]
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
        """The gate's pages and the index, built once for all its validations (a checkpoint's own
        UpdateDataDocsAction rebuilt the index after each one, reading every result ever kept)."""
        if not self.build_docs:
            return None
        if self.validated:
            self.ctx.build_data_docs(resource_identifiers=self.validated)
        sites = self.ctx.get_docs_sites_urls()
        return sites[0]["site_url"] if sites else None


def _limit_docs_index(ctx: Any, limit: int) -> None:
    """List only the newest ``limit`` validation results on each Data Docs index: building the
    index loads every result it lists, and a daily run adds six or seven."""
    sites = ctx.variables.data_docs_sites or {}
    changed = False
    for site in sites.values():
        index = site.setdefault("site_index_builder", {"class_name": "DefaultSiteIndexBuilder"})
        if index.get("validation_results_limit") != limit:
            index["validation_results_limit"] = limit
            changed = True
    if changed:
        ctx.variables.data_docs_sites = sites
        ctx.variables.save()


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
