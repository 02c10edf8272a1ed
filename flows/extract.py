"""Extract stage: every configured CRM source into ``raw``, one Prefect task per source and entity.

A task lands and publishes one entity (retried with backoff when the source fails). Parents go
first; when a parent fails, its children are skipped rather than loaded as orphans. The accounting
table (read = loaded + quarantined + suppressed per source and entity) is published as a Prefect artifact. If
any entity failed, the stage fails after the others finish, naming the source, so later stages do
not run on partial data; what was published stays consistent and ``raw`` keeps its last good rows.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from clarion.config import Settings
from clarion.extract.readers import ExtractError
from clarion.extract.runner import Step, extract_step, parents_of, plan_steps
from clarion.warehouse import Warehouse

COLUMNS = ("read", "loaded", "quarantined", "suppressed", "inserted", "updated", "unchanged", "superseded")


@task(name="extract-entity", task_run_name="{step.source}/{step.entity}", cache_policy=NO_CACHE)
def extract_entity(settings: Settings, run_id: str, step: Step) -> list[dict[str, Any]]:
    results = extract_step(settings, Warehouse.from_settings(settings), run_id, step)
    return [r.as_dict() for r in results]


@flow(name="extract", log_prints=False)
def extract(settings: Settings, run_id: str, source: str | None = None) -> dict[str, Any]:
    """Land and publish every entity of every source (or one source), parents before children."""
    logger = get_run_logger()
    steps = plan_steps(settings, source)
    delays = [settings.extract.retry_delay_seconds * 2**i for i in range(settings.extract.retries)]
    run_entity = extract_entity.with_options(retries=settings.extract.retries, retry_delay_seconds=delays)
    rows: list[dict[str, Any]] = []
    failed: dict[str, str] = {}  # "source/entity" -> message
    skipped: list[str] = []
    for step in steps:
        broken = sorted(
            p for p in parents_of(step) if f"{step.source}/{p}" in failed or f"{step.source}/{p}" in skipped
        )
        if broken:  # loading children of a parent that did not load would quarantine them all as orphans
            skipped.append(step.name)
            message = f"skipped: {', '.join(broken)} did not load"
            rows.append(
                {"source": step.source, "entity": step.entity, "status": "skipped", "message": message}
            )
            continue
        try:
            rows += run_entity(settings, run_id, step)
        except Exception as exc:  # after retries: record, go on with the independent entities
            message = str(exc) if isinstance(exc, ExtractError) else f"{type(exc).__name__}: {exc}"
            failed[step.name] = message
            rows.append(
                {"source": step.source, "entity": step.entity, "status": "failed", "message": message}
            )
            logger.error("%s failed: %s", step.name, message)
    summary = _summary(rows)
    create_markdown_artifact(
        key="extract-accounting", markdown=_markdown(rows), description="Extract accounting"
    )
    if failed:
        also = f" Skipped, because a parent did not load: {', '.join(skipped)}." if skipped else ""
        raise ExtractError(
            f"extraction failed for {', '.join(failed)}: "
            + "; ".join(failed.values())
            + f".{also} What was published is consistent; fix the source and run again."
        )
    return summary


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    totals = {c: sum(r.get(c, 0) for r in rows) for c in COLUMNS}
    return {"entities": rows, **totals, "sources": sorted({r["source"] for r in rows})}


def _markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "# Extract accounting",
        "",
        "Every row read is either loaded into `raw`, quarantined with a reason (`quarantine.<entity>`), "
        "or suppressed (a person erased by `clarion subject erase`).",
        "",
        "| source | entity | status | " + " | ".join(COLUMNS) + " | reasons / notes |",
        "|---|---|---|" + "---:|" * len(COLUMNS) + "---|",
    ]
    for r in rows:
        reasons = ", ".join(f"{k} {v:,}" for k, v in sorted((r.get("reasons") or {}).items()))
        nulled = ", ".join(f"{k} {v:,}" for k, v in sorted((r.get("findings") or {}).items()))
        nulled = f"loaded with a field nulled: {nulled}" if nulled else ""
        notes = "; ".join(x for x in (reasons, nulled, r.get("message", ""), _new_columns(r)) if x)
        counts = " | ".join(f"{r.get(c, 0):,}" for c in COLUMNS)
        lines.append(f"| {r['source']} | {r['entity']} | {r['status']} | {counts} | {notes} |")
    return "\n".join(lines)


def _new_columns(r: dict[str, Any]) -> str:
    return f"new columns kept: {', '.join(r['new_columns'])}" if r.get("new_columns") else ""
