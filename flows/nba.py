"""Next-best-action stage: one decision per scored customer, and its summary as an artifact.

The logic lives in ``clarion.nba`` (eligibility, value, arbitration) and ``models.nba`` (the pure
arithmetic); this flow runs it as one task and publishes what it decided as a markdown artifact.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from clarion import nba as engine
from clarion.config import Settings


@task(name="decide-next-best-action", cache_policy=NO_CACHE)
def decide(settings: Settings, run_id: str) -> dict[str, Any]:
    return engine.decide(settings, run_id)


@flow(name="nba", log_prints=False)
def nba(settings: Settings, run_id: str) -> dict[str, Any]:
    logger = get_run_logger()
    summary = decide(settings, run_id)
    if summary.get("campaigns"):
        logger.info(
            "%d of %d customers get an action (scores of %s, as of %s)",
            summary["decided"],
            summary["customers"],
            summary["scoring_run_id"],
            summary["as_of"],
        )
    else:
        logger.info(summary.get("note", "nothing to decide"))
    create_markdown_artifact(
        key="next-best-action",
        markdown=engine.summary_markdown(summary),
        description=f"Next best action of run {run_id}",
    )
    return summary
