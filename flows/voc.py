"""Voice-of-the-customer stage: support tickets into topics and sentiment, and its summary as an
artifact.

The logic lives in ``clarion.voc`` (scrub, embeddings cache, tables, card) and ``models.voc``
(clustering, naming, the classifier); this flow runs it as one task and publishes what it found
(topic names, counts, the silhouette curve, F1s: never ticket text) as a markdown artifact.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from clarion import voc as engine
from clarion.config import Settings


@task(name="topics-and-sentiment", cache_policy=NO_CACHE)
def topics_and_sentiment(settings: Settings, run_id: str) -> dict[str, Any]:
    return engine.run(settings, run_id)


@flow(name="voc", log_prints=False)
def voc(settings: Settings, run_id: str) -> dict[str, Any]:
    logger = get_run_logger()
    summary = topics_and_sentiment(settings, run_id)
    if "k" in summary:
        logger.info(
            "%d tickets in %d topics (card %s)", summary["tickets"], summary["k"], summary["model_version"]
        )
    else:
        logger.info(summary.get("note", "no topics"))
    create_markdown_artifact(
        key="voice-of-the-customer",
        markdown=engine.summary_markdown(summary),
        description=f"Voice of the customer of run {run_id}",
    )
    return summary
