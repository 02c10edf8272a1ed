"""The main flow: the stages in order, under one warehouse writer lock, recorded in ``audit.runs``.

Stages are subflows so each shows in the Prefect UI with its own state, logs and artifacts. They
receive the validated settings and the run id; their logic lives in the libraries (``clarion``,
``models``), and this module only orders them. `clarion run` runs them all; the stage verbs
(`clarion extract`, ...) run this same flow limited to their stage.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from clarion import audit, lineage, runs
from clarion.config import Settings, load_settings
from clarion.errors import ClarionError, storage_error
from clarion.meter import measure_stage
from clarion.ops import alerts
from clarion.privacy import scrub
from clarion.runtime import check_writable, checkpoint, flow_run_logging
from clarion.warehouse import Warehouse
from flows import subflows_share_heartbeat


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[..., dict[str, Any]]  # (settings, run_id, **options) -> summary
    description: str


@flow(name="prepare-warehouse", log_prints=False)
def prepare_warehouse(settings: Settings, run_id: str) -> dict[str, Any]:
    """Create the warehouse file, its schemas and core tables if missing; report what it holds."""
    logger = get_run_logger()
    warehouse = Warehouse.from_settings(settings)
    warehouse.ensure()
    inventory = warehouse.inventory()
    tables = sum(len(t) for t in inventory["schemas"].values())
    logger.info(
        "warehouse %s ready: %d schemas, %d tables", warehouse.path, len(inventory["schemas"]), tables
    )
    return {"warehouse": str(warehouse.path), "schemas": len(inventory["schemas"]), "tables": tables}


def _prepare(settings: Settings, run_id: str, **_: Any) -> dict[str, Any]:
    return prepare_warehouse(settings, run_id)


def _extract(settings: Settings, run_id: str, source: str | None = None, **_: Any) -> dict[str, Any]:
    from flows.extract import extract

    summary = extract(settings, run_id, source)
    return {k: v for k, v in summary.items() if k != "entities"} | {"accounting": summary["entities"]}


def _voc(settings: Settings, run_id: str, **_: Any) -> dict[str, Any]:
    from flows.voc import voc

    return voc(settings, run_id)


def _recommend(settings: Settings, run_id: str, **_: Any) -> dict[str, Any]:
    from flows.recommend import recommend

    return recommend(settings, run_id)


def _transform(
    settings: Settings, run_id: str, as_of: date | None = None, full_refresh: bool = False, **_: Any
) -> dict[str, Any]:
    from flows.transform import transform

    return transform(settings, run_id, as_of, full_refresh)


def _segment(
    settings: Settings,
    run_id: str,
    as_of: date | None = None,
    horizon_days: int | None = None,
    retrain: bool | None = None,
    full_refresh: bool = False,
    **_: Any,
) -> dict[str, Any]:
    from flows.segment import segment

    return segment(settings, run_id, as_of, horizon_days, retrain, full_refresh)


def _results(settings: Settings, run_id: str, **_: Any) -> dict[str, Any]:
    from flows.results import results

    return results(settings, run_id)


def _nba(settings: Settings, run_id: str, **_: Any) -> dict[str, Any]:
    from flows.nba import nba

    return nba(settings, run_id)


def _content(settings: Settings, run_id: str, campaigns: list[str] | None = None, **_: Any) -> dict[str, Any]:
    from flows.content import content

    return content(settings, run_id, campaigns)


def _report(settings: Settings, run_id: str, **_: Any) -> dict[str, Any]:
    from flows.report import report

    return report(settings, run_id)


def _check(settings: Settings, run_id: str, **_: Any) -> dict[str, Any]:
    from flows.transform import check

    return check(settings, run_id)


STAGES: list[Stage] = [
    Stage("prepare", _prepare, "warehouse file, schemas and core tables"),
    Stage("extract", _extract, "CRM sources into raw, rejected rows into quarantine"),
    Stage("voc", _voc, "support tickets into topics and sentiment (scrubbed of PII before embedding)"),
    Stage("transform", _transform, "gate raw, dbt build into staging, gate it, publish to marts"),
    Stage("segment", _segment, "train or reuse the promoted model; score, explain, segment customers"),
    Stage("recommend", _recommend, "top products per customer, with reasons; recommender card"),
    Stage("results", _results, "campaign results against control groups; variant experiments decided"),
    Stage("nba", _nba, "next best action per customer: eligibility, expected incremental value, budgets"),
    Stage("content", _content, "draft copy per brief and target segment, check it, queue it for approval"),
    Stage("report", _report, "the marketer report (HTML + PDF), e-mailed to report.recipients"),
]
ON_DEMAND = [Stage("check", _check, "the quality gates alone")]  # not part of `clarion run`
StageName = Literal[
    "prepare",
    "extract",
    "voc",
    "transform",
    "segment",
    "recommend",
    "results",
    "nba",
    "content",
    "report",
    "check",
]


@flow(name="clarion-pipeline", log_prints=False)
def pipeline(
    config_path: str | None = None,
    wait_seconds: float | None = None,
    stages: list[StageName] | None = None,
    source: str | None = None,
    as_of: date | None = None,
    horizon_days: int | None = None,
    retrain: bool | None = None,
    campaigns: list[str] | None = None,
    resume: str | None = None,
    full_refresh: bool = False,
) -> dict[str, Any]:
    """Run the stages in order (all, or the ones named), recorded as one run in audit.runs.

    One writer at a time: a second run waits up to ``wait_seconds`` or stops with a message.
    ``source`` limits extraction to one configured source; ``as_of`` sets the day the features
    describe (default: the day after the latest order); ``horizon_days`` and ``retrain`` go to
    the segment stage (defaults: segment.horizon_days, segment.retrain); ``campaigns`` limits the
    content stage to those briefs; ``full_refresh`` has the transform rebuild its incremental
    models (customer_features, fct_campaign_exposures) for every customer, not only those whose
    data changed, and the segment stage fit the day's lifecycle models again and rescore everyone.

    A run whose process died is marked interrupted by the next run. ``resume`` ("latest" or a run
    id) continues an interrupted or failed `clarion run` under its own run id: the stages it
    completed are kept (each is checkpointed as it finishes), the rest are run again. Stages redo
    cleanly (each replaces what it wrote for the run), so either way the outputs equal a clean run's.
    """
    scrub.install()  # a deployment's run starts here, not in the CLI: no PII in its log lines either
    settings = load_settings(config_path)
    flow_run_logging(settings)  # under a worker: clarion.* lines at their level, in the run's logs
    watch = alerts.Watch(settings, str(flow_run.get_id() or ""))
    try:
        with subflows_share_heartbeat():  # the stages' subflows: this flow's heartbeat is the run's
            result = _run(
                settings,
                watch,
                wait_seconds,
                stages,
                source,
                as_of,
                horizon_days,
                retrain,
                campaigns,
                resume,
                full_refresh,
            )
    except Exception as exc:  # a crash or a cancellation is told by the late-run automation instead
        watch.failed(exc)
        raise
    finally:
        told = watch.send()  # after the lock is released; never raises, never hides the run's result
    return result | {"alerts": told}


def _run(
    settings: Settings,
    watch: alerts.Watch,
    wait_seconds: float | None,
    stages: list[StageName] | None,
    source: str | None,
    as_of: date | None,
    horizon_days: int | None,
    retrain: bool | None,
    campaigns: list[str] | None,
    resume: str | None,
    full_refresh: bool = False,
) -> dict[str, Any]:
    logger = get_run_logger()
    check_writable(settings)  # a deployment's run meets a read-only var/ here (the CLI checked before)
    warehouse = Warehouse.from_settings(settings)
    if resume is not None and (
        full_refresh or any(v is not None for v in (stages, source, as_of, horizon_days, retrain, campaigns))
    ):
        raise ClarionError(
            "resume continues the interrupted `clarion run` as it was started: "
            "give no stages or other options with it"
        )
    run_id = watch.run_id = runs.new_run_id()
    chosen = [
        s
        for s in STAGES + ON_DEMAND
        if (stages is None and s in STAGES)
        or s.name == "prepare"
        or (stages is not None and s.name in stages)
    ]
    command = "clarion run" if stages is None else "clarion " + " ".join(s.name for s in chosen[1:])
    summaries: dict[str, Any] = {}
    done: dict[str, Any] = {}  # stages a resumed run completed before
    events = audit.AuditLog.for_settings(settings)
    config_hash = settings.fingerprint()
    flow_run_id = str(flow_run.get_id() or "")
    with warehouse.writing(command, wait_seconds):
        with warehouse.connect(command) as con:
            for lost in runs.mark_interrupted(con, run_id):
                logger.warning(
                    "run %s was interrupted after %s; its outputs do not count as a finished run "
                    "(`clarion run --resume` continues it)",
                    lost["run_id"],
                    ", ".join(s.name for s in STAGES[1:] if s.name in lost["completed_stages"]) or "no stage",
                )
                events.record(
                    con,
                    audit.RUN_INTERRUPTED,
                    lost["run_id"],
                    run_id=lost["run_id"],
                    details={"completed_stages": lost["completed_stages"], "found_by": run_id},
                )
            previous = con.execute(
                "select run_id, config_hash from audit.runs order by started_at desc limit 1"
            ).fetchone()
            if resume is not None:
                target = runs.resumable(con, None if resume == "latest" else resume, config_hash)
                run_id, done = target["run_id"], target["stages"]
                watch.run_id = run_id
                runs.reopen(con, run_id, flow_run_id)
                events.record(
                    con,
                    audit.RUN_RESUMED,
                    run_id,
                    run_id=run_id,
                    details={
                        "kept_stages": [s.name for s in STAGES[1:] if s.name in done],
                        "code_version": runs.code_version(),
                        "previous_code_version": target["code_version"],
                    },
                )
                previous = None  # the settings are the run's own
            else:
                runs.start_run(
                    con, run_id=run_id, command=command, config_hash=config_hash, flow_run_id=flow_run_id
                )
                events.record(
                    con,
                    audit.RUN_STARTED,
                    run_id,
                    run_id=run_id,
                    details={
                        "command": command,
                        "config_hash": config_hash,
                        "code_version": runs.code_version(),
                    },
                )
            if previous is not None and previous[1] != config_hash:
                events.record(
                    con,
                    audit.CONFIG_CHANGED,
                    "settings",
                    run_id=run_id,
                    details={"from": previous[1], "to": config_hash, "previous_run": previous[0]},
                )
        verb = "resumed" if resume is not None else "started"
        logger.info("run %s %s (config %s, code %s)", run_id, verb, config_hash, runs.code_version())
        current: str | None = None
        try:
            for stage in chosen:
                current = watch.stage = stage.name
                if stage.name in done and stage.name != "prepare":
                    logger.info("stage %s completed before the interruption: kept", stage.name)
                    summaries[stage.name] = done[stage.name]
                    continue
                with measure_stage() as meter:  # this stage's own wall, CPU and peak memory
                    summary = stage.run(
                        settings,
                        run_id,
                        source=source,
                        as_of=as_of,
                        horizon_days=horizon_days,
                        retrain=retrain,
                        campaigns=campaigns,
                        full_refresh=full_refresh,
                    )
                checkpoint(f"stage.{stage.name}")  # the stage's work done, its checkpoint not recorded
                summaries[stage.name] = {**summary, "meter": meter}
                with warehouse.connect(command) as con:
                    runs.record_stage(con, run_id, stage.name, summaries[stage.name])
        except BaseException as exc:
            try:
                with warehouse.connect(command) as con:
                    runs.finish_run(
                        con,
                        run_id,
                        status="failed",
                        stages=summaries,
                        error=scrub.scrub_exception(exc),
                    )
                    events.record(  # the error's class only: its message may quote data
                        con,
                        audit.RUN_FAILED,
                        run_id,
                        run_id=run_id,
                        details={"status": "failed", "error": type(exc).__name__, "stage": current},
                    )
                    watch.recorded(con)  # a model kept before the failure is told too
            except Exception as unrecorded:  # e.g. the disk that failed the stage is still full
                logger.warning(
                    "run %s failed and its failure could not be recorded (%s); the next run marks it "
                    "interrupted",
                    run_id,
                    type(unrecorded).__name__,
                )
            scrub.scrub_chain(exc)  # the failure state and the logged traceback quote it: no PII there
            failure = None if isinstance(exc, ClarionError) else storage_error(exc, f"stage {current}")
            if failure is not None:
                raise scrub.scrub_chain(failure) from exc
            raise
        with warehouse.connect(command) as con:
            runs.finish_run(con, run_id, status="completed", stages=summaries)
            manifest = lineage.write(settings, run_id, con, reason="run finished")
            events.record(  # the manifest's hash: a manifest rewritten in place no longer matches it
                con,
                audit.RUN_FINISHED,
                run_id,
                run_id=run_id,
                details={
                    "status": "completed",
                    "stages": list(summaries),
                    "manifest": manifest.name,
                    "manifest_sha256": runs.sha256_file(manifest),
                },
            )
            watch.recorded(con)
        logger.info("lineage manifest %s", manifest)
    create_markdown_artifact(
        key="clarion-run-summary",
        markdown=_summary_markdown(run_id, settings, summaries),
        description=f"Clarion run {run_id}",
    )
    return {
        "run_id": run_id,
        "command": command,
        "status": "completed",
        "resumed": resume is not None,
        "kept_stages": [s.name for s in STAGES[1:] if s.name in done],
        "warehouse": str(warehouse.path),
        "manifest": str(manifest),
        "stages": summaries,
    }


def _summary_markdown(run_id: str, settings: Settings, summaries: dict[str, Any]) -> str:
    lines = [
        f"# Clarion run `{run_id}`",
        "",
        f"Warehouse: `{Path(settings.warehouse.path)}` · config `{settings.fingerprint()}` · "
        f"code `{runs.code_version()}`",
        "",
        "| stage | result |",
        "|---|---|",
    ]
    for name, summary in summaries.items():
        shown = {k: v for k, v in summary.items() if k not in ("accounting", "gates")}
        lines.append(f"| {name} | `{json.dumps(shown, default=str, sort_keys=True)}` |")
    return "\n".join(lines)
