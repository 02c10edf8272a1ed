"""Training a model version: stacked snapshots, the recipe twice (validation, production), the card,
the registry, and the promotion decision, each step in the audit log."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from clarion import audit
from clarion import fairness as fair
from clarion.config import Settings
from clarion.oversight.rates import card_figures as oversight_figures
from clarion.quality.snapshot import gate_snapshots
from clarion.runtime import checkpoint
from clarion.segment import snapshots
from clarion.segment.scoring import thresholds
from clarion.segment.snapshots import Plan, SegmentError
from clarion.warehouse import Warehouse, relation_exists
from models import customer_base, metrics
from models.card import render
from models.explain import dependence, explain, global_drivers
from models.features import FAMILY_OF, FEATURES
from models.registry import Registry, Version
from models.train import LABEL, ModelParams, TrainingError, fit, matrix, validate

log = logging.getLogger(__name__)
DRIVER_SAMPLE = 100_000  # customers whose SHAP values describe the model's global drivers
MIN_DAY_CUSTOMERS = 50


def registry(settings: Settings) -> Registry:
    return Registry(settings.var_dir / "registry")


def params(settings: Settings) -> ModelParams:
    s = settings.segment
    return ModelParams(
        trees=s.trees, leaves=s.leaves, max_depth=s.max_depth, threads=settings.warehouse.threads
    )


def data_fingerprint(settings: Settings) -> str:
    """What the model learnt from: the extracted files' hashes and raw row counts."""
    h = hashlib.sha256()
    with Warehouse.from_settings(settings).connect("segment fingerprint") as con:
        files = (
            con.execute(
                "select coalesce(string_agg(sha256, ',' order by source, entity, file), '') "
                "from audit.extract_files"
            ).fetchone()[0]
            if relation_exists(con, "audit", "extract_files")
            else ""
        )
        counts = con.execute(
            "select string_agg(table_name || '=' || estimated_size, ',' order by table_name) "
            "from duckdb_tables() where schema_name = 'raw'"
        ).fetchone()[0]
    h.update(f"{files}|{counts}".encode())
    return h.hexdigest()[:16]


def coverage(settings: Settings) -> dict[str, date | None]:
    """The first day each event history covers (None: no such events). A snapshot day whose
    windows reach before it would see engagement or tickets that were never recorded, not absent."""
    with Warehouse.from_settings(settings).connect("segment coverage") as con:
        (email,) = con.execute("select min(occurred_at) from raw.email_events").fetchone()
        (tickets,) = con.execute("select min(created_at) from raw.support_tickets").fetchone()
    return {
        "email_events": email.date() if email else None,
        "support_tickets": tickets.date() if tickets else None,
    }


WINDOWS = {"email_events": 180, "support_tickets": 365}  # the longest window each history feeds


def covered_days(days: snapshots.TrainingDays, since: dict[str, date | None]) -> snapshots.TrainingDays:
    """Drop the snapshot days whose feature windows reach before an event history begins; keep at
    least the newest day of each list (a short history trains on what there is, and the card says)."""

    def ok(day: date) -> bool:
        return all(
            start is None or day - timedelta(days=WINDOWS[name]) >= start for name, start in since.items()
        )

    production = tuple(d for d in days.production if ok(d)) or days.production[:1]
    validation = tuple(d for d in days.validation_fit if ok(d)) or days.validation_fit[:1]
    return snapshots.TrainingDays(production, validation, days.validation_day)


def build_frames(settings: Settings, p: Plan) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """The stacked frames (validation fit, validation day, production fit) with lifecycle features."""
    s = settings.segment
    grid = snapshots.training_days(p.as_of, p.horizon_days, s.snapshots, s.snapshot_every_days)
    since = coverage(settings)
    days = covered_days(grid, since)
    per_mille = snapshots.sample_per_mille(settings, days.all, s.training_rows)
    started = time.perf_counter()
    stacked = snapshots.build(settings, days.all, p.horizon_days, per_mille)
    built_s = time.perf_counter() - started
    gate_snapshots(settings, stacked)  # the marts suite's rules, before a model learns from the days
    stacked, fits = customer_base.add_features(stacked, p.horizon_days, s.seed)
    day = pd.to_datetime(stacked["as_of"])
    incomplete = sorted({d.date() for d in day[~stacked["horizon_complete"].astype(bool)]})
    if incomplete:
        raise SegmentError(
            f"the labels of {', '.join(map(str, incomplete))} are not complete (the horizon ends after the "
            "latest order): use an earlier --as-of or a shorter --horizon-days"
        )
    frames = {
        "validation_fit": stacked[day.isin(pd.to_datetime(list(days.validation_fit)))],
        "validation": stacked[day == pd.Timestamp(days.validation_day)],
        "production": stacked[day.isin(pd.to_datetime(list(days.production)))],
    }
    for name, frame in frames.items():
        if len(frame) < MIN_DAY_CUSTOMERS:
            raise SegmentError(
                f"only {len(frame)} customer-days for the {name.replace('_', ' ')} snapshots "
                f"({days.validation_day} and before, horizon {p.horizon_days} days): a model needs history; "
                "use a later --as-of or a shorter --horizon-days"
            )
    info = {
        "production_days": [d.isoformat() for d in days.production],
        "validation_fit_days": [d.isoformat() for d in days.validation_fit],
        "valid_as_of": days.validation_day.isoformat(),
        "snapshot_every_days": s.snapshot_every_days,
        "days_dropped_for_coverage": sorted(d.isoformat() for d in set(grid.all) - set(days.all)),
        "history_since": {k: v.isoformat() if v else None for k, v in since.items()},
        "sample_per_mille": per_mille,
        "snapshot_seconds": built_s,
        "customer_base_fits": fits,
    }
    return frames, info


def train(settings: Settings, p: Plan, scoring: pd.DataFrame, run_id: str | None = None) -> dict[str, Any]:
    """Fit the recipe twice (validation, production), register the version, promote it if it earns
    its place; both steps go to the audit log."""
    h = p.horizon_days
    started = time.perf_counter()
    frames, info = build_frames(settings, p)
    hp = params(settings)
    valid = frames["validation"]
    try:
        checked = validate(
            frames["validation_fit"],
            valid,
            hp,
            settings.segment.calibration,
            customer_base=valid["purchase_probability_bgnbd"].fillna(0).to_numpy(),
        )
        production = fit(frames["production"], hp, settings.segment.calibration)
    except TrainingError as exc:
        raise SegmentError(str(exc)) from None
    x_score = matrix(scoring)[:: max(1, len(scoring) // DRIVER_SAMPLE)]
    expl = explain(production.propensity, x_score, settings.segment.explain_chunk_rows)
    drivers = [{**d, "family": FAMILY_OF[d["feature"]]} for d in global_drivers(expl, FEATURES)]
    meta = {
        "horizon_days": h,
        "features": list(FEATURES),
        "used_features": production.used_features(),
        "params": asdict(hp),
        "data": {
            "scoring_as_of": p.as_of.isoformat(),
            **{k: v for k, v in info.items() if k != "customer_base_fits"},
            "train_as_of": info["validation_fit_days"][0],
            "train_rows": len(frames["validation_fit"]),
            "train_customers": int(frames["validation_fit"]["contact_id"].nunique()),
            "valid_customers": len(valid),
            "production_rows": len(frames["production"]),
            "train_positive_rate": float(frames["validation_fit"][LABEL].mean()),
            "valid_positive_rate": float(valid[LABEL].mean()),
            "fingerprint": data_fingerprint(settings),
            "config_fingerprint": settings.fingerprint(),
        },
        "metrics": {
            "propensity": checked["propensity"],
            "baseline": checked["baseline"],
            "customer_base": checked["customer_base"],
            "value": checked["value"],
            "reliability": checked["reliability"],
            "calibration": production.calibration,
            "validation_calibration": checked["calibration"],
        },
        "customer_base": info["customer_base_fits"],
        "global_drivers": drivers,
        "dependence": {d["feature"]: dependence(expl, x_score, FEATURES, d["feature"]) for d in drivers[:3]},
        "fairness": fairness(settings, valid, checked["probabilities"]),
        "oversight": oversight_figures(settings),  # human overrides so far (docs/privacy.md)
    }
    files = render({**meta, "version": "{version}", "model": "purchase_propensity", "registered_at": _now()})
    reg = registry(settings)
    candidate = left_by(reg, run_id, meta)
    if candidate is None:
        candidate = reg.register(production, checked["model"], meta | {"run_id": run_id}, files)
    else:  # the same fit, from the same data and settings: a second version would only differ in name
        log.info("%s was registered by this run before it was interrupted: deciding on it", candidate.name)
    checkpoint("segment.registered")  # a new version on disk, not yet promoted or audited
    decision, outcome = promote(settings, reg, candidate, valid)
    with Warehouse.from_settings(settings).connect("segment audit") as con:
        events = audit.AuditLog.for_settings(settings)
        events.record(
            con,
            audit.MODEL_REGISTERED,
            candidate.name,
            run_id=run_id,
            details={
                "version": candidate.name,
                "roc_auc": checked["propensity"]["roc_auc"],
                "baseline_roc_auc": checked["baseline"]["roc_auc"],
                "customer_base_roc_auc": checked["customer_base"]["roc_auc"],
                "ece": checked["propensity"]["ece"],
                "horizon_days": h,
                "data_fingerprint": meta["data"]["fingerprint"],
                "config_fingerprint": meta["data"]["config_fingerprint"],
            },
        )
        events.record(con, outcome.pop("action"), outcome["version"], run_id=run_id, details=outcome)
    promoted = reg.promoted()
    if promoted is None:  # the first version was held back (fairness): nothing may score
        raise SegmentError(f"{decision}; nothing scores until a version is promoted")
    if promoted.meta.get("retrain_required"):  # held back, and the one promoted learnt from erased people
        raise SegmentError(
            f"{decision}; {promoted.name} may not score either (it learnt from people since erased): "
            "nothing scores until a new version is promoted"
        )
    return {
        "version": candidate.name,
        "decision": decision,
        "snapshot_seconds": info["snapshot_seconds"],
        "seconds": time.perf_counter() - started,  # the whole training step: snapshots to registry
        "days": len(info["production_days"]),
        "rows": len(frames["production"]),
        "validation": {
            k: checked["propensity"][k] for k in ("roc_auc", "pr_auc", "brier", "ece", "lift_top10")
        },
        "baseline": {k: checked["baseline"][k] for k in ("roc_auc", "pr_auc", "brier", "ece")},
        "customer_base": {k: checked["customer_base"][k] for k in ("roc_auc", "pr_auc", "brier", "ece")},
        "calibration": production.calibration.get("method"),
    }


def left_by(reg: Registry, run_id: str | None, meta: dict[str, Any]) -> Version | None:
    """The version this run registered just before it was killed: the registry's last event is its
    registration (no promotion or keep decision followed). A resumed run decides on it rather than
    registering the same fit again under a new name."""
    events = reg.index().get("events", [])
    if run_id is None or not events or events[-1]["action"] != "registered":
        return None
    version = next((v for v in reg.versions() if v.name == events[-1]["version"]), None)
    keys = ("fingerprint", "config_fingerprint", "scoring_as_of")
    same = (
        version is not None
        and version.meta.get("run_id") == run_id
        and all(str(version.meta["data"].get(k)) == str(meta["data"].get(k)) for k in keys)
    )
    return version if same else None


def promote(
    settings: Settings, reg: Registry, candidate: Version, valid: pd.DataFrame
) -> tuple[str, dict[str, Any]]:
    """Promote the candidate or keep the promoted version: the decision, and its audit event
    (``action`` and details: which version is promoted now, the candidate, the one before, figures).

    A candidate earns promotion by ranking better than the recency/frequency baseline, ranking no
    worse than the promoted version on the same validation customers (within promote_tolerance),
    and calibrating no worse (ECE within calibration_tolerance). The first version is promoted
    even when it does not beat the baseline (something must score), and the decision says so."""
    s = settings.segment
    current = reg.promoted()
    m = candidate.meta["metrics"]
    new, base = m["propensity"], m["baseline"]
    outcome: dict[str, Any] = {
        "action": audit.MODEL_PROMOTED,
        "version": candidate.name,
        "candidate": candidate.name,
        "previous": current.name if current else None,
        "candidate_roc_auc": new["roc_auc"],
        "candidate_ece": new["ece"],
        "baseline_roc_auc": base["roc_auc"],
        "previous_roc_auc": None,
        "previous_ece": None,
    }
    unfair = fair.promotion_refusal(candidate.meta, candidate.name)
    if unfair:  # never promoted automatically, not even the first version: a person decides
        stays = f"{current.name} stays promoted" if current else "no version is promoted"
        why = f"{unfair}; {stays} (`clarion models promote {candidate.name}` after review to override)"
        reg.note("held", candidate.name, why)
        held = {"action": audit.MODEL_KEPT, "version": current.name if current else candidate.name}
        return f"not promoted {candidate.name}: {why}", outcome | held | {"reason": why}
    beats_baseline = (new["roc_auc"] or 0) > (base["roc_auc"] or 0)
    unusable = None
    if current is None:
        unusable = "first version"
    elif current.meta.get("retrain_required"):  # trained on people since erased (clarion subject erase)
        unusable = f"{current.name} must be retrained (it learnt from erased people)"
    elif current.meta["features"] != candidate.meta["features"]:
        unusable = f"{current.name} reads other features"
    elif current.meta["horizon_days"] != candidate.meta["horizon_days"]:
        days = (current.meta["horizon_days"], candidate.meta["horizon_days"])
        unusable = f"{current.name} predicts {days[0]} days, not {days[1]}"
    if unusable:  # something must score: the candidate, whatever its figures, and the note says so
        why = unusable + ("" if beats_baseline else "; it does NOT beat the recency/frequency baseline")
        reg.promote(candidate.name, why)
        return f"promoted {candidate.name} ({why})", outcome | {"reason": why}
    y = valid[LABEL].astype(float).to_numpy()
    margin, p_old, _ = current.load("validation").predict_frame(valid)
    old = metrics.classification(y, p_old, score=margin)
    outcome["previous_roc_auc"], outcome["previous_ece"] = old["roc_auc"], old["ece"]
    refusals = []
    if not beats_baseline:
        refusals.append(
            f"ROC AUC {new['roc_auc']:.4f} does not beat the recency/frequency baseline's "
            f"{base['roc_auc']:.4f}"
        )
    if (new["roc_auc"] or 0) < (old["roc_auc"] or 0) - s.promote_tolerance:
        refusals.append(
            f"ROC AUC {new['roc_auc']:.4f} < {current.name}'s {old['roc_auc']:.4f} on the same validation "
            f"customers (tolerance {s.promote_tolerance})"
        )
    if new["ece"] > old["ece"] + s.calibration_tolerance:
        refusals.append(
            f"ECE {new['ece']:.4f} > {current.name}'s {old['ece']:.4f} + {s.calibration_tolerance} "
            "on the same validation customers"
        )
    if refusals:
        why = (
            "; ".join(refusals)
            + f"; {current.name} stays promoted (`clarion models promote {candidate.name}` to override)"
        )
        reg.note("kept", current.name, why)
        kept = {"action": audit.MODEL_KEPT, "version": current.name, "reason": why}
        return f"kept {current.name}: {why}", outcome | kept
    versus = f" vs {current.name} {old['roc_auc']:.4f}"
    reg.promote(candidate.name, f"ROC AUC {new['roc_auc']:.4f}{versus}, ECE {new['ece']:.4f}")
    decision = f"promoted {candidate.name} (ROC AUC {new['roc_auc']:.4f}{versus}; ECE {new['ece']:.4f})"
    return decision, outcome | {"reason": "earns its place"}


def fairness(settings: Settings, valid: pd.DataFrame, p: np.ndarray) -> dict[str, Any]:
    """Per-group figures of the validation customers (models.fairness): calibration of the churn
    risk, and the decision the model drives, flagging a customer at risk (the segments' threshold)."""
    cut = thresholds(settings, p)
    churn = 1.0 - np.asarray(p, dtype=float)
    decision = (
        f"flagged at risk (churn risk >= {cut.risk_high:.3f}, the segments' threshold on the validation day) "
        "as a prediction of not buying within the horizon"
    )
    return fair.model_figures(settings, valid, churn, churn >= cut.risk_high, decision)


def stale(settings: Settings, version: Version, as_of: date) -> bool:
    """A version is stale when the day it scored for first lies more than max_model_age_days before
    the day to score: the shop has moved on since its training data ended."""
    trained_for = date.fromisoformat(version.meta["data"]["scoring_as_of"])
    return (as_of - trained_for).days > settings.segment.max_model_age_days


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
