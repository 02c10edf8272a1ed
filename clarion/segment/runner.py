"""The segment stage's steps, without orchestration (flows/segment.py makes each one a task).

Snapshots: the published ``marts.customer_features`` describes customers as of the published
day; the training snapshots (as of ``as_of - h`` and ``as_of - 2h``) are built by the same dbt
models into a scratch schema (``ml_snapshot``) with the same code, read, and dropped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from clarion import audit, runs
from clarion.config import Settings
from clarion.errors import ClarionError
from clarion.transform.dbt import run_dbt
from clarion.warehouse import Warehouse, relation_exists
from models import metrics
from models.card import render
from models.explain import chunks, dependence, explain, global_drivers
from models.features import FAMILY_OF, FEATURES
from models.reasons import ReasonCodes, reason_table
from models.registry import Registry, Version
from models.segments import Thresholds, assign, profiles
from models.train import LABEL, ModelParams, fit, matrix, validate

log = logging.getLogger(__name__)
SNAPSHOT_SCHEMA = "ml_snapshot"
AS_OF_MODELS = ("customer_features", "customer_labels")  # the dbt models that read the day
DRIVER_SAMPLE = 100_000  # customers whose SHAP values describe the model's global drivers

ML_DDL = (
    """
    create table if not exists ml.customer_scores (
        run_id varchar, contact_id bigint, as_of date, horizon_days integer, model_version varchar,
        purchase_probability double, churn_risk double, expected_value_eur double, segment varchar,
        reasons struct(feature varchar, family varchar, direction varchar, effect double, value double,
                       text varchar)[],
        reasons_text varchar, scored_at timestamptz
    )
    """,
    """
    create table if not exists ml.segments (
        run_id varchar, as_of date, model_version varchar, segment varchar, customers bigint,
        share double, mean_churn_risk double, mean_expected_value_eur double, profile json,
        top_drivers json, high_value_from_eur double, scored_at timestamptz
    )
    """,
)


class SegmentError(ClarionError):
    pass


@dataclass
class Plan:
    as_of: date
    horizon_days: int
    published_as_of: date | None


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    for ddl in ML_DDL:
        con.execute(ddl)


def registry(settings: Settings) -> Registry:
    return Registry(settings.var_dir / "registry")


def plan(settings: Settings, as_of: date | None, horizon_days: int | None) -> Plan:
    with Warehouse.from_settings(settings).connect("segment plan") as con:
        ensure_tables(con)
        published = _published_as_of(con)
    if as_of is None and published is None:
        raise SegmentError("no published customer features: run `clarion transform` (or `clarion run`) first")
    return Plan(as_of or published, horizon_days or settings.segment.horizon_days, published)


def _published_as_of(con: duckdb.DuckDBPyConnection) -> date | None:
    if not relation_exists(con, "marts", "customer_features"):
        return None
    (day,) = con.execute("select max(as_of) from marts.customer_features").fetchone()
    return day


# -- snapshots --------------------------------------------------------------------------------
def snapshot(settings: Settings, day: date, horizon_days: int, published: date | None) -> pd.DataFrame:
    """Features as of `day` with labels over the horizon after it, and the protected attribute."""
    return snapshots(settings, (day,), horizon_days, published)[0]


def snapshots(
    settings: Settings, days: Sequence[date], horizon_days: int, published: date | None
) -> list[pd.DataFrame]:
    """`snapshot` for several days, one frame each, in the order given.

    A day the marts were published for (with the configured horizon) is read from them. The others
    are built by dbt into a scratch schema, dropped afterwards. Only ``customer_features`` and
    ``customer_labels`` read the day (tested), so the models under them (staging, ``int_orders``,
    the ticket sentiment table) are built once, from the same raw tables, and each further day
    rebuilds just those two on top: at 1,000,000 customers that saves one ``int_orders`` and one
    ``stg_support_tickets`` build (~15 s) per training run.
    """
    wh = Warehouse.from_settings(settings)
    shifted = settings.model_copy(
        update={"transform": settings.transform.model_copy(update={"horizon_days": horizon_days})}
    )
    frames: list[pd.DataFrame] = []
    built = False
    try:
        for day in days:
            if day == published and horizon_days == settings.transform.horizon_days:
                with wh.connect("segment read") as con:
                    frames.append(_read(con, "marts"))
                continue
            select = AS_OF_MODELS if built else tuple(f"+{m}" for m in AS_OF_MODELS)
            run_dbt(
                shifted,
                "build",
                day,
                "--select",
                *select,
                "--exclude-resource-type",
                "test",
                schema=SNAPSHOT_SCHEMA,
            )
            built = True
            with wh.connect("segment read") as con:
                frames.append(_read(con, SNAPSHOT_SCHEMA))
    finally:
        if built:
            with wh.connect("segment drop snapshot") as con:
                con.execute(f"drop schema if exists {SNAPSHOT_SCHEMA} cascade")
    return frames


def _read(con: duckdb.DuckDBPyConnection, schema: str) -> pd.DataFrame:
    return con.execute(
        f"""
        select f.*, l.purchased_in_horizon, l.spend_in_horizon_eur, c.age_band
        from {schema}.customer_features f
        join {schema}.customer_labels l using (contact_id)
        left join raw.contacts c using (contact_id)
        order by f.contact_id
        """
    ).df()


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


# -- training -----------------------------------------------------------------------------------
def params(settings: Settings) -> ModelParams:
    s = settings.segment
    return ModelParams(
        trees=s.trees, leaves=s.leaves, max_depth=s.max_depth, threads=settings.warehouse.threads
    )


def train(settings: Settings, p: Plan, scoring: pd.DataFrame, run_id: str | None = None) -> dict[str, Any]:
    """Fit the recipe twice (validation, production), register the version, promote it unless it is
    worse than the promoted one on the same validation customers; both steps go to the audit log."""
    h = p.horizon_days
    valid_day, train_day = p.as_of - timedelta(days=h), p.as_of - timedelta(days=2 * h)
    started = time.perf_counter()
    older, newer = snapshots(settings, (train_day, valid_day), h, p.published_as_of)
    for name, frame, day in (("training", older, train_day), ("validation", newer, valid_day)):
        if len(frame) < 50:
            raise SegmentError(
                f"only {len(frame)} customers had signed up by {day} for the {name} snapshot "
                f"(as_of {p.as_of} - {h if name == 'validation' else 2 * h} days): a model needs history; "
                "use a later --as-of or a shorter --horizon-days"
            )
    snap_s = time.perf_counter() - started
    hp = params(settings)
    checked = validate(older, newer, hp, settings.segment.calibration)
    production = fit(newer, hp, settings.segment.calibration)
    # the card's drivers: an even sample of the customers to score (every one of them is explained
    # by the scoring step anyway; at 1M customers, explaining them all here too costs ~14 s)
    x_score = matrix(scoring)[:: max(1, len(scoring) // DRIVER_SAMPLE)]
    expl = explain(production.propensity, x_score, settings.segment.explain_chunk_rows)
    drivers = [{**d, "family": FAMILY_OF[d["feature"]]} for d in global_drivers(expl, FEATURES)]
    fairness = _fairness(newer, checked["probabilities"])
    meta = {
        "horizon_days": h,
        "features": list(FEATURES),
        "used_features": production.used_features(),
        "params": hp.__dict__,
        "data": {
            "scoring_as_of": p.as_of.isoformat(),
            "valid_as_of": valid_day.isoformat(),
            "train_as_of": train_day.isoformat(),
            "train_customers": len(older),
            "valid_customers": len(newer),
            "train_positive_rate": float(older[LABEL].mean()),
            "valid_positive_rate": float(newer[LABEL].mean()),
            "fingerprint": data_fingerprint(settings),
            "config_fingerprint": settings.fingerprint(),
        },
        "metrics": {
            "propensity": checked["propensity"],
            "baseline": checked["baseline"],
            "value": checked["value"],
            "reliability": checked["reliability"],
            "calibration": production.calibration,
            "validation_calibration": checked["calibration"],
        },
        "global_drivers": drivers,
        "dependence": {d["feature"]: dependence(expl, x_score, FEATURES, d["feature"]) for d in drivers[:3]},
        "fairness": fairness,
    }
    files = render({**meta, "version": "{version}", "model": "purchase_propensity", "registered_at": _now()})
    reg = registry(settings)
    candidate = reg.register(production, checked["model"], meta, files)
    decision, outcome = _promote(settings, reg, candidate, newer)
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
                "horizon_days": h,
                "data_fingerprint": meta["data"]["fingerprint"],
                "config_fingerprint": meta["data"]["config_fingerprint"],
            },
        )
        events.record(con, outcome.pop("action"), outcome["version"], run_id=run_id, details=outcome)
    return {
        "version": candidate.name,
        "decision": decision,
        "snapshot_seconds": snap_s,
        "seconds": time.perf_counter() - started,  # the whole training step: snapshots to registry
        "validation": {
            k: checked["propensity"][k] for k in ("roc_auc", "pr_auc", "brier", "ece", "lift_top10")
        },
        "baseline": {k: checked["baseline"][k] for k in ("roc_auc", "pr_auc", "brier")},
        "calibration": production.calibration.get("method"),
    }


def _promote(
    settings: Settings, reg: Registry, candidate: Version, valid: pd.DataFrame
) -> tuple[str, dict[str, Any]]:
    """Promote the candidate or keep the promoted version: the decision, and its audit event
    (``action`` and details: which version is promoted now, the candidate, the one before, ROC AUCs)."""
    current = reg.promoted()
    new_auc = candidate.meta["metrics"]["propensity"]["roc_auc"]
    outcome: dict[str, Any] = {
        "action": audit.MODEL_PROMOTED,
        "version": candidate.name,
        "candidate": candidate.name,
        "previous": current.name if current else None,
        "candidate_roc_auc": new_auc,
        "previous_roc_auc": None,
    }
    if current is None:
        reg.promote(candidate.name, "first version")
        return f"promoted {candidate.name} (first version)", outcome | {"reason": "first version"}
    if current.meta["features"] != candidate.meta["features"]:
        why = f"{current.name} reads other features"
        reg.promote(candidate.name, why)
        return f"promoted {candidate.name} ({why})", outcome | {"reason": "features changed"}
    if current.meta["horizon_days"] != candidate.meta["horizon_days"]:
        days = (current.meta["horizon_days"], candidate.meta["horizon_days"])
        why = f"{current.name} predicts {days[0]} days, not {days[1]}"
        reg.promote(candidate.name, why)
        return f"promoted {candidate.name} ({why})", outcome | {"reason": "horizon changed"}
    y = valid[LABEL].astype(float).to_numpy()
    _, p_old, _ = current.load("validation").predict(matrix(valid))
    old = metrics.classification(y, p_old)
    new = candidate.meta["metrics"]["propensity"]
    outcome["previous_roc_auc"] = old["roc_auc"]
    tolerance = settings.segment.promote_tolerance
    if (new["roc_auc"] or 0) < (old["roc_auc"] or 0) - tolerance:
        why = (
            f"ROC AUC {new['roc_auc']:.4f} < {current.name}'s {old['roc_auc']:.4f} on the same validation "
            f"customers; {current.name} stays promoted "
            f"(`clarion models promote {candidate.name}` to override)"
        )
        reg.note("kept", current.name, why)
        kept = {"action": audit.MODEL_KEPT, "version": current.name, "reason": "candidate worse"}
        return f"kept {current.name}: {why}", outcome | kept | {"tolerance": tolerance}
    reg.promote(candidate.name, f"ROC AUC {new['roc_auc']:.4f} vs {old['roc_auc']:.4f} ({current.name})")
    decision = (
        f"promoted {candidate.name} (ROC AUC {new['roc_auc']:.4f} vs {current.name} {old['roc_auc']:.4f})"
    )
    return decision, outcome | {"reason": "not worse", "tolerance": tolerance}


def _fairness(valid: pd.DataFrame, p: np.ndarray) -> list[dict[str, Any]]:
    if "age_band" not in valid or valid["age_band"].isna().all():
        return []
    out = []
    y = valid[LABEL].astype(float).to_numpy()
    for group, idx in valid.groupby(valid["age_band"].fillna("unknown")).indices.items():
        m = metrics.classification(y[idx], p[idx]) if len(idx) >= 2 else None
        out.append(
            {
                "group": str(group),
                "customers": len(idx),
                "observed_rate": float(y[idx].mean()),
                "mean_predicted": float(p[idx].mean()),
                "roc_auc": m["roc_auc"] if m else None,
            }
        )
    return out


# -- scoring -----------------------------------------------------------------------------------
def score(
    settings: Settings, run_id: str, p: Plan, version: Version, scoring: pd.DataFrame
) -> dict[str, Any]:
    """Score, explain and segment every customer of the scoring snapshot; write ml.* in one
    transaction. SHAP values, reasons and rows are made and written a chunk of customers at a time
    (segment.explain_chunk_rows), so memory does not grow with the number of customers."""
    s = settings.segment
    timings = {"score_s": 0.0, "explain_s": 0.0, "reasons_s": 0.0, "write_s": 0.0}
    started = time.perf_counter()
    model = version.load()
    x = matrix(scoring)
    margin, prob, value = model.predict(x)
    churn = 1.0 - prob
    thresholds = Thresholds(s.risk_high, s.risk_low, s.value_high_quantile, s.new_days)
    segment, high_cut = assign(scoring, churn, thresholds)
    timings["score_s"] = time.perf_counter() - started
    used = set(version.meta["used_features"])
    ids = scoring["contact_id"].to_numpy()
    first_family: list[str | None] = []
    gap = 0.0
    now = datetime.now(UTC)
    with Warehouse.from_settings(settings).connect("segment write") as con:
        ensure_tables(con)
        previous = con.execute(
            "select run_id from ml.customer_scores where run_id <> ? "
            f"and run_id not in ({runs.NOT_SETTLED}) group by run_id order by max(scored_at) desc limit 1",
            [run_id],
        ).fetchone()
        con.execute("begin transaction")
        try:
            con.execute("delete from ml.customer_scores where run_id = ?", [run_id])
            con.execute("delete from ml.segments where run_id = ?", [run_id])
            for part in chunks(len(x), s.explain_chunk_rows):
                started = time.perf_counter()
                expl = explain(
                    model.propensity, x[part], s.explain_chunk_rows, margin[part]
                )  # additivity checked
                gap = max(gap, _gap(expl))
                timings["explain_s"] += time.perf_counter() - started
                started = time.perf_counter()
                reasons = reason_table(
                    expl.contributions, x[part], churn[part], used, s.reasons, s.min_reason_effect
                )
                first_family += reasons.first_family()
                timings["reasons_s"] += time.perf_counter() - started
                started = time.perf_counter()
                con.register(
                    "scored",
                    _rows(
                        run_id,
                        p,
                        version.name,
                        now,
                        ids[part],
                        prob[part],
                        value[part],
                        segment[part],
                        reasons,
                    ),
                )
                con.execute("insert into ml.customer_scores select * from scored")
                con.unregister("scored")
                timings["write_s"] += time.perf_counter() - started
            summary = profiles(scoring, segment, churn, value, first_family)
            con.executemany(
                "insert into ml.segments values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    [
                        run_id,
                        p.as_of,
                        version.name,
                        g["segment"],
                        g["customers"],
                        g["share"],
                        g["mean_churn_risk"],
                        g["mean_expected_value_eur"],
                        json.dumps(g["profile"]),
                        json.dumps(g["top_drivers"]),
                        high_cut,
                        now,
                    ]
                    for g in summary
                ],
            )
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
        moves = _moves(con, previous[0], run_id) if previous else []
    return {
        "as_of": p.as_of.isoformat(),
        "horizon_days": p.horizon_days,
        "model_version": version.name,
        "customers": len(x),
        "additivity_max_gap": gap,
        "segments": [
            {k: g[k] for k in ("segment", "customers", "share", "mean_churn_risk", "top_drivers")}
            for g in summary
        ],
        "moves_since_previous": moves,
        "timings": timings,
    }


def _gap(expl: Any) -> float:
    if not len(expl.margin):
        return 0.0
    return float(np.abs(expl.contributions.sum(axis=1) + expl.base_value - expl.margin).max())


def _rows(
    run_id: str,
    p: Plan,
    version: str,
    now: datetime,
    ids: np.ndarray,
    prob: np.ndarray,
    value: np.ndarray,
    segment: np.ndarray,
    reasons: ReasonCodes,
) -> pa.Table:
    n = len(ids)
    return pa.table(
        {
            "run_id": pa.array([run_id] * n, pa.string()),
            "contact_id": pa.array(ids, pa.int64()),
            "as_of": pa.array([p.as_of] * n, pa.date32()),
            "horizon_days": pa.array([p.horizon_days] * n, pa.int32()),
            "model_version": pa.array([version] * n, pa.string()),
            "purchase_probability": prob,
            "churn_risk": 1.0 - prob,
            "expected_value_eur": value,
            "segment": pa.array(segment, pa.string()),
            "reasons": reasons.arrow(),
            "reasons_text": reasons.joined_text(),
            "scored_at": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
        }
    )


def _moves(con: duckdb.DuckDBPyConnection, before: str, now: str) -> list[dict[str, Any]]:
    rows = con.execute(
        """
        select a.segment, b.segment, count(*) from ml.customer_scores a
        join ml.customer_scores b on a.contact_id = b.contact_id
        where a.run_id = ? and b.run_id = ? and a.segment <> b.segment
        group by 1, 2 order by 3 desc limit 10
        """,
        [before, now],
    ).fetchall()
    return [{"from": a, "to": b, "customers": n} for a, b, n in rows]


def scoring_snapshot(settings: Settings, p: Plan) -> pd.DataFrame:
    frame = snapshot(settings, p.as_of, p.horizon_days, p.published_as_of)
    if frame.empty:
        raise SegmentError(f"no customers had signed up before {p.as_of}: nothing to score")
    return frame


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run(
    settings: Settings,
    run_id: str,
    as_of: date | None = None,
    horizon_days: int | None = None,
    retrain: bool | None = None,
) -> dict[str, Any]:
    """The whole stage as one call (the flow runs the same steps as tasks)."""
    p = plan(settings, as_of, horizon_days)
    scoring = scoring_snapshot(settings, p)
    trained = train(settings, p, scoring, run_id) if needs_training(settings, p, retrain) else None
    result = score(settings, run_id, p, registry(settings).promoted(), scoring)
    return {**result, "trained": trained}


def needs_training(settings: Settings, p: Plan, retrain: bool | None) -> bool:
    """Train when asked to (flag, else segment.retrain), or when no promoted version fits."""
    asked = retrain if retrain is not None else settings.segment.retrain
    return asked or usable_version(settings, p) is None


def usable_version(settings: Settings, p: Plan) -> Version | None:
    """The promoted version, if it reads today's features and predicts this horizon."""
    current = registry(settings).promoted()
    if current is None:
        return None
    if current.meta["features"] != list(FEATURES) or current.meta["horizon_days"] != p.horizon_days:
        log.info("promoted %s does not fit (features or horizon changed): training", current.name)
        return None
    return current
