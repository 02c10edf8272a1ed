"""Segment stage: train (or reuse the promoted model), score, explain, segment; a task per step;
then the campaign triggers of the new scores (flows/triggers.py: a subflow, one event per campaign).

The logic lives in ``clarion.segment.runner`` and ``models``; this flow orders the steps and
publishes the segment table and the model's validation as Prefect artifacts.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from clarion.config import Settings
from clarion.segment import runner
from flows.triggers import campaign_triggers


@task(name="scoring-snapshot", cache_policy=NO_CACHE)
def scoring_snapshot(
    settings: Settings, plan: runner.Plan, run_id: str | None = None, full_refresh: bool = False
) -> Any:
    return runner.scoring_snapshot(settings, plan, run_id, full_refresh)


@task(name="train-model", cache_policy=NO_CACHE)
def train(settings: Settings, plan: runner.Plan, scoring: Any, run_id: str | None = None) -> dict[str, Any]:
    return runner.train(settings, plan, scoring, run_id)


@task(name="score-explain-segment", cache_policy=NO_CACHE)
def score(
    settings: Settings, run_id: str, plan: runner.Plan, version: Any, scoring: Any, full_refresh: bool = False
) -> dict[str, Any]:
    return runner.score(settings, run_id, plan, version, scoring, full_refresh)


@flow(name="segment", log_prints=False)
def segment(
    settings: Settings,
    run_id: str,
    as_of: date | None = None,
    horizon_days: int | None = None,
    retrain: bool | None = None,
    full_refresh: bool = False,
) -> dict[str, Any]:
    """``full_refresh`` fits the day's lifecycle models again and rescores every customer."""
    logger = get_run_logger()
    plan = runner.plan(settings, as_of, horizon_days)
    logger.info("scoring customers as of %s, horizon %d days", plan.as_of, plan.horizon_days)
    frame = scoring_snapshot(settings, plan, run_id, full_refresh)
    trained = None
    if runner.needs_training(settings, plan, retrain):
        trained = train(settings, plan, frame, run_id)
        logger.info("model %s: %s", trained["version"], trained["decision"])
    version = runner.registry(settings).promoted()
    result = score(settings, run_id, plan, version, frame, full_refresh)
    fired = campaign_triggers(settings, run_id)  # customers who crossed a brief's trigger: one event each
    create_table_artifact(
        key="segments",
        table=[
            {
                "segment": g["segment"],
                "customers": g["customers"],
                "share": round(g["share"], 4),
                "mean churn risk": round(g["mean_churn_risk"], 3),
                "typical first reason": ", ".join(d["family"] for d in g["top_drivers"]),
            }
            for g in result["segments"]
        ],
        description=f"Segments as of {plan.as_of}, model {version.name}",
    )
    if trained:
        card = runner.registry(settings).get(trained["version"]).path / "card.md"
        create_markdown_artifact(
            key="model-card",
            markdown=card.read_text(),
            description=f"{trained['version']}: {trained['decision']}",
        )
    return {**result, "trained": trained, "triggers": fired}
