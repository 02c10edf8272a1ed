"""The segment stage's steps, without orchestration (flows/segment.py makes each one a task).

* ``snapshots``: customers as of a day (the published marts, or dbt builds of past days, stacked);
* ``training``: the recipe, the card, the registry and the promotion decision;
* ``scoring``: every customer scored, explained, worded and segmented, written to ml.*.

This module holds the stage's outline and the decision whether to train.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

import pandas as pd

from clarion.config import Settings
from clarion.segment import scoring as scoring_step
from clarion.segment import snapshots, training
from clarion.segment.snapshots import AS_OF_MODELS, SNAPSHOT_SCHEMA, Plan, SegmentError
from models import customer_base
from models.features import FEATURES
from models.registry import Registry, Version

log = logging.getLogger(__name__)
__all__ = ["AS_OF_MODELS", "SNAPSHOT_SCHEMA", "Plan", "SegmentError"]

plan = snapshots.plan
train = training.train
score = scoring_step.score
ensure_tables = scoring_step.ensure_tables


def registry(settings: Settings) -> Registry:
    return training.registry(settings)


def scoring_snapshot(
    settings: Settings, p: Plan, run_id: str | None = None, full_refresh: bool = False
) -> pd.DataFrame:
    """The customers to score, with their lifecycle features as of the day: from the day's kept
    fit when an earlier run of the day recorded one (segment.lifecycle_fit: per_day), else fitted."""
    frame = snapshots.scoring(settings, p)
    kept = dict(frame.attrs)  # who was left out of profiling, and why
    reuse = settings.segment.lifecycle_fit == "per_day" and not full_refresh and run_id is not None
    day_fit = scoring_step.kept_lifecycle_fit(settings, p) if reuse else {}
    frame, fits = customer_base.add_features(frame, p.horizon_days, settings.segment.seed, day_fit)
    frame.attrs.update(kept)
    if run_id is not None:
        scoring_step.record_lifecycle_fit(settings, run_id, p, fits)
    return frame


def run(
    settings: Settings,
    run_id: str,
    as_of: date | None = None,
    horizon_days: int | None = None,
    retrain: bool | None = None,
    full_refresh: bool = False,
) -> dict[str, Any]:
    """The whole stage as one call (the flow runs the same steps as tasks)."""
    p = plan(settings, as_of, horizon_days)
    frame = scoring_snapshot(settings, p, run_id, full_refresh)
    trained = train(settings, p, frame, run_id) if needs_training(settings, p, retrain) else None
    result = score(settings, run_id, p, registry(settings).promoted(), frame, full_refresh)
    return {**result, "trained": trained}


def needs_training(settings: Settings, p: Plan, retrain: bool | None) -> bool:
    """Train when asked to (flag, else segment.retrain), or when no promoted version fits or it is stale."""
    asked = retrain if retrain is not None else settings.segment.retrain
    return asked or usable_version(settings, p) is None


def usable_version(settings: Settings, p: Plan) -> Version | None:
    """The promoted version, if it reads today's features, predicts this horizon, and is not stale."""
    current = registry(settings).promoted()
    if current is None:
        return None
    if current.meta["features"] != list(FEATURES) or current.meta["horizon_days"] != p.horizon_days:
        log.info("promoted %s does not fit (features or horizon changed): training", current.name)
        return None
    if current.meta.get("retrain_required"):  # flagged by an erasure: never reused
        log.info("promoted %s learnt from people since erased (retrain_required): training", current.name)
        return None
    if training.stale(settings, current, p.as_of):
        log.info(
            "promoted %s was trained for %s, over segment.max_model_age_days (%d) before %s: training",
            current.name,
            current.meta["data"]["scoring_as_of"],
            settings.segment.max_model_age_days,
            p.as_of,
        )
        return None
    return current
