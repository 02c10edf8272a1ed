"""Recommend stage: each customer's top products with reasons, and the run's summary as an artifact.

The logic lives in ``clarion.recommend`` (read, evaluate, write) and ``models.recommend`` (the
methods and the time-split evaluation); this flow runs it as one task and publishes the
evaluation and the choice as a markdown artifact.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from clarion import recommend as engine
from clarion.config import Settings


@task(name="recommend-products", cache_policy=NO_CACHE)
def recommend_products(settings: Settings, run_id: str) -> dict[str, Any]:
    return engine.run(settings, run_id)


@flow(name="recommend", log_prints=False)
def recommend(settings: Settings, run_id: str) -> dict[str, Any]:
    logger = get_run_logger()
    if not settings.ml.recommendations.enabled:
        note = "recommendations are disabled (ml.recommendations.enabled: false)"
        logger.info(note)
        return {"recommended": 0, "note": note}
    summary = recommend_products(settings, run_id)
    if summary.get("recommended"):
        logger.info(
            "%d recommendations for %d customers by %s, as of %s",
            summary["recommended"],
            summary["customers"],
            summary["method"],
            summary["as_of"],
        )
    else:
        logger.info(summary.get("note", "nothing recommended"))
    create_markdown_artifact(
        key="recommendations",
        markdown=engine.summary_markdown(summary),
        description=f"Recommendations of run {run_id}",
    )
    return summary
