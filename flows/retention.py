"""The daily retention run: `clarion retention apply` as a Prefect flow (the `retention` deployment).

The logic lives in ``clarion.privacy.retention``; this flow makes it a task, waits for a pipeline run
that holds the warehouse instead of failing, and publishes the counts per kind as a table artifact
(kinds, counts and run ids only: nothing about a person).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from clarion.config import Settings, load_settings
from clarion.privacy import retention as policy
from clarion.runtime import flow_run_logging


@task(name="apply-retention", cache_policy=NO_CACHE)
def apply_retention(settings: Settings, dry_run: bool, wait_seconds: float) -> dict[str, Any]:
    return policy.apply(settings, dry_run=dry_run, wait_seconds=wait_seconds)


@flow(name="retention", log_prints=False)
def retention(
    config_path: str | None = None, dry_run: bool = False, wait_seconds: float = 3600
) -> dict[str, Any]:
    """Remove (or redact) what outlived its retention period, counted in the audit log; with
    ``dry_run`` only list it. Waits up to ``wait_seconds`` for a run holding the warehouse."""
    logger = get_run_logger()
    settings = load_settings(config_path)
    flow_run_logging(settings)  # under a worker: clarion.* lines at their level, in the run's logs
    result = apply_retention(settings, dry_run, wait_seconds)
    verb = "would remove" if dry_run else "removed"
    logger.info("retention %s: %s %d item(s) %s", result["today"], verb, result["total"], result["counts"])
    create_markdown_artifact(key="retention", markdown=_markdown(result), description="Retention applied")
    return result


def _markdown(result: dict[str, Any]) -> str:
    title = "Retention (dry run: nothing changed)" if result["dry_run"] else "Retention applied"
    lines = [f"# {title}, {result['today']}", "", "| kind | count | what |", "|---|---:|---|"]
    lines += [f"| {i['kind']} | {i['count']:,} | {i['what']} |" for i in result["items"]]
    if not result["items"]:
        lines.append("| - | 0 | nothing has outlived its retention period |")
    return "\n".join(lines)
