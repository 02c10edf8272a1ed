"""Transform stage: gate raw, build with dbt into staging, gate the build, publish it to marts.

Write-audit-publish: dbt writes only to the ``staging`` schema; the marts suite judges that build;
only a build with no failing `fail` check is copied into ``marts`` (one transaction). A failure at
any step stops the stage (and the run) with the failing checks reported, and ``marts`` keeps the
last good build. dbt runs as one `dbt-build` task whose artifact lists every node with its status and
time; with ``transform.dbt_node_tasks`` it runs through prefect-dbt, every model and test a task of
its own (about 10 s more per run, measured in bench/RESULTS.md "End to end").
"""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from clarion.config import Settings
from clarion.extract.advice import stop_if_unusable
from clarion.extract.publish import ensure_tables as ensure_raw_tables
from clarion.privacy import pseudonym
from clarion.privacy.scrub import PII_FIELDS
from clarion.quality import reference
from clarion.quality.gate import GateResult, QualityGateError, ensure_tables, run_gate
from clarion.quality.suites import load_suite
from clarion.runtime import checkpoint
from clarion.transform import reuse
from clarion.transform.dbt import (
    DbtBuildError,
    dbt_args,
    dbt_environment,
    describe_failure,
    invoke_dbt,
    release_duckdb,
    resolve_as_of,
)
from clarion.transform.incremental import scope, scope_text
from clarion.transform.publish import clear_staging, publish
from clarion.warehouse import Warehouse


@task(name="quality-gate", task_run_name="gate {suite}", cache_policy=NO_CACHE)
def gate(settings: Settings, run_id: str, suite: str, candidate: str = "staging") -> GateResult:
    with Warehouse.from_settings(settings).connect(f"quality gate {suite}") as con:
        return run_gate(settings, con, suite, run_id, candidate=candidate)


@task(name="publish-marts", cache_policy=NO_CACHE)
def publish_marts(settings: Settings, run_id: str, as_of: date) -> dict[str, Any]:
    with Warehouse.from_settings(settings).connect("publish marts") as con:
        published = publish(con, run_id, as_of, settings.transform.horizon_days)
        # what this publication looks like, kept: later builds and `clarion check` compare with it
        reference.store(con, run_id, load_suite(settings.quality.suites_dir, "marts"))
        if not settings.transform.keep_staging:
            published["staging_dropped"] = len(clear_staging(con))
        return published


@task(name="dbt-build", cache_policy=NO_CACHE)
def dbt_build_task(settings: Settings, as_of: date, full_refresh: bool = False) -> None:
    """dbt build into staging with dbt's own runner, as one task; its artifact lists every node
    (also when one failed, so the UI shows which)."""
    result = invoke_dbt(settings, "build", as_of, *_refresh(full_refresh))
    nodes = getattr(result.result, "results", None) or []
    rows = [
        f"| {r.node.resource_type} | {r.node.name} | {r.status} | {r.execution_time:.2f} |"
        for r in sorted(nodes, key=lambda r: (str(r.node.resource_type), r.node.name))
    ]
    create_markdown_artifact(
        key="dbt-build",
        markdown="\n".join(["| type | node | status | seconds |", "|---|---|---|---:|", *rows]),
        description=f"dbt build: {len(rows)} nodes",
    )
    if not result.success:
        raise DbtBuildError(f"dbt build failed, nothing published: {describe_failure(result)}")


def _refresh(full_refresh: bool) -> tuple[str, ...]:
    return ("--full-refresh",) if full_refresh else ()


def dbt_build(settings: Settings, as_of: date, full_refresh: bool = False) -> None:
    """dbt build into staging; a failed model or test stops the stage. One task, or (with
    transform.dbt_node_tasks) each node a Prefect task through prefect-dbt. Incremental models
    (fct_campaign_exposures) compute only the customers whose inputs changed, unless
    ``full_refresh``."""
    if not settings.transform.dbt_node_tasks:
        dbt_build_task(settings, as_of, full_refresh)
        return
    from prefect_dbt import PrefectDbtRunner, PrefectDbtSettings

    target = settings.var_dir / "dbt" / "target"
    with dbt_environment(settings):
        runner = PrefectDbtRunner(
            settings=PrefectDbtSettings(
                project_dir=settings.transform.dbt_project_dir,
                profiles_dir=settings.transform.dbt_project_dir,
                target_path=target,
            ),
            raise_on_failure=False,
            disable_assets=True,  # a task per node is the lineage we need; asset events cost ~0.1 s each
        )
        try:
            result = runner.invoke(dbt_args(settings, "build", as_of, *_refresh(full_refresh)))
        finally:
            release_duckdb()
    if not result.success:
        raise DbtBuildError(f"dbt build failed, nothing published: {describe_failure(result)}")


@flow(name="transform", log_prints=False)
def transform(
    settings: Settings, run_id: str, as_of: date | None = None, full_refresh: bool = False
) -> dict[str, Any]:
    logger = get_run_logger()
    with Warehouse.from_settings(settings).connect("transform") as con:
        ensure_tables(con)
        ensure_raw_tables(con)  # a warehouse older than a contract column gains it (empty) before dbt
        stop_if_unusable(con)  # files without the required columns: one message, not a failed gate
        day = resolve_as_of(settings, con, as_of)
    logger.info("features as of %s, labels over %d days", day, settings.transform.horizon_days)
    gates: list[GateResult] = []
    try:
        gates.append(gate(settings, run_id, "raw"))
        if not gates[-1].passed:
            raise QualityGateError(gates[-1])
        dbt_build(settings, day, full_refresh)
        with Warehouse.from_settings(settings).connect("transform") as con:
            reference.mark_build(con, run_id)
            reuse.record(settings, con)  # what training snapshots may read instead of building
            scopes = {model: scope(con, model, full_refresh) for model in ("exposures", "features")}
        for model, done in scopes.items():
            if done:
                logger.info(scope_text(done, model))
        checkpoint("transform.built")  # staging built, not yet gated or published
        gates.append(gate(settings, run_id, "marts"))
        if not gates[-1].passed:
            raise QualityGateError(gates[-1])
        published = publish_marts(settings, run_id, day)
    finally:
        create_markdown_artifact(
            key="quality-gates", markdown=gates_markdown(gates, settings), description="Quality gates"
        )
    return {
        "as_of": day.isoformat(),
        "gates": [g.summary() for g in gates],
        "published": published["tables"],
        "exposures": scopes["exposures"],
        "features": scopes["features"],
    }


@flow(name="check", log_prints=False)
def check(settings: Settings, run_id: str) -> dict[str, Any]:
    """The gates alone: raw, and the staging build if it was never published (compared with the last
    publication), else the published marts (compared with the publication before them)."""
    with Warehouse.from_settings(settings).connect("check") as con:
        ensure_tables(con)
        staged = reference.unpublished_build(con)
    gates = [
        gate(settings, run_id, "raw"),
        gate(settings, run_id, "marts", candidate="staging" if staged else "marts"),
    ]
    create_markdown_artifact(
        key="quality-gates", markdown=gates_markdown(gates, settings), description="Quality gates"
    )
    failed = [g for g in gates if not g.passed]
    if failed:
        raise QualityGateError(failed[0])
    return {"gates": [g.summary() for g in gates]}


def gates_markdown(gates: list[GateResult], settings: Settings | None = None) -> str:
    """The gates' table; a failing row's sample names the customer by pseudonym (``settings`` give
    the key), never by contact id, and a personal column's value is withheld."""
    shown = _SampleView(settings)
    lines = ["# Quality gates", ""]
    for g in gates:
        verdict = "passed" if g.passed else "FAILED"
        lines += [f"## {g.suite} (suite version {g.version}): {verdict}", ""]
        if g.data_docs:
            lines += [f"Data Docs: {g.data_docs}", ""]
        lines += ["| check | severity | status | where | observed | sample |", "|---|---|---|---|---|---|"]
        for r in g.results:
            where = ".".join(x for x in (r.table, r.column) if x)
            observed = ", ".join(f"{k} {v}" for k, v in r.observed.items() if v is not None)
            lines.append(
                f"| {r.check_id} | {r.severity} | {r.status} | {where} | {observed} "
                f"| {shown(r.sample[:3], r.column)} |"
            )
        lines.append("")
    return "\n".join(lines)


class _SampleView:
    """Failing rows as an artifact may show them: ``contact_id`` becomes ``customer`` (the keyed
    pseudonym, docs/privacy.md), a personal column's value ``[withheld]``. The key is read once, and
    only when a sample names a customer."""

    def __init__(self, settings: Settings | None) -> None:
        self.settings = settings
        self._p: Any = None

    def _pseudonym(self, contact_id: Any) -> str:
        if self.settings is None:
            return "[withheld]"
        if self._p is None:
            self._p = pseudonym.for_settings(self.settings)
        return self._p(contact_id)

    def __call__(self, sample: list[Any], column: str | None) -> str:
        out = []
        for row in sample:
            if isinstance(row, dict):
                row = {
                    ("customer" if k == "contact_id" else k): (
                        self._pseudonym(v)
                        if k == "contact_id"
                        else "[withheld]"
                        if (k in PII_FIELDS or column in PII_FIELDS) and v is not None
                        else v
                    )
                    for k, v in row.items()
                }
            elif column in PII_FIELDS and row is not None:
                row = "[withheld]"
            out.append(row)
        return str(out)
