"""Scoring a run: every customer of the day scored, explained, put into words and into a segment,
written to ml.* in one transaction, a chunk of customers at a time."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from clarion import audit, runs
from clarion.config import Settings
from clarion.currency import shop_currency
from clarion.runtime import checkpoint
from clarion.segment import rescore
from clarion.segment.snapshots import Plan
from clarion.segment.writer import ChunkWriter
from clarion.warehouse import Warehouse, relation_exists
from models.explain import chunks, explain
from models.features import FEATURES, TOPIC_ID, TOPIC_NAME
from models.reasons import FIGURES, ReasonCodes, Wording, reason_table, topic_names
from models.registry import Version
from models.segments import Thresholds, assign, profiles
from models.train import columns as figure_columns
from models.train import season_term, stack

log = logging.getLogger(__name__)

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
    """
    create table if not exists ml.lifecycle_fits (
        run_id varchar, as_of date, fit json, fitted_at timestamptz
    )
    """,
    # added after the first release: where the customer stands against the average customer, and the
    # thresholds the segments used (relative ones move with the shop's purchase rate)
    "alter table ml.customer_scores add column if not exists margin double",
    "alter table ml.customer_scores add column if not exists base_margin double",
    "alter table ml.customer_scores add column if not exists vs_average varchar",
    "alter table ml.customer_scores add column if not exists average_probability double",
    "alter table ml.customer_scores add column if not exists currency varchar",
    "alter table ml.segments add column if not exists risk_high double",
    # what the row was computed from (clarion/segment/rescore.py): equal keys, equal rows
    "alter table ml.customer_scores add column if not exists inputs_key ubigint",
    "alter table ml.segments add column if not exists risk_low double",
    "alter table ml.segments add column if not exists shop_purchase_rate double",
)


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    for ddl in ML_DDL:
        con.execute(ddl)


def thresholds(settings: Settings, purchase_probability: np.ndarray) -> Thresholds:
    """The segment thresholds for this run: relative to the shop's mean purchase probability, or fixed."""
    s = settings.segment
    if s.risk_basis == "absolute":
        return Thresholds(s.risk_high, s.risk_low, s.value_high_quantile, s.new_days)
    rate = float(np.mean(purchase_probability)) if len(purchase_probability) else 0.0
    risk_high = 1.0 - s.at_risk_below * rate  # churn risk at or above: p below at_risk_below x rate
    risk_low = max(0.0, 1.0 - s.safe_from * rate)  # churn risk below: p from safe_from x rate
    return Thresholds(risk_high, min(risk_low, risk_high), s.value_high_quantile, s.new_days)


def run_thresholds(con: duckdb.DuckDBPyConnection, settings: Settings, run_id: str) -> dict[str, float]:
    """The churn-risk thresholds a scoring run's segments used (relative ones move with the shop's
    purchase rate), as recorded in ml.segments; the settings' fixed ones for runs that predate that."""
    s = settings.segment
    columns = {r[0] for r in con.execute("describe ml.segments").fetchall()}
    high = low = None
    if {"risk_high", "risk_low"} <= columns:
        high, low = con.execute(
            "select any_value(risk_high), any_value(risk_low) from ml.segments where run_id = ?", [run_id]
        ).fetchone()
    return {
        "risk_high": s.risk_high if high is None else float(high),
        "risk_low": s.risk_low if low is None else float(low),
        "value_high_quantile": s.value_high_quantile,
    }


POSITIONS = ("below", "close", "above")


def position(margin: np.ndarray, base_value: float, band: float) -> np.ndarray:
    """Where each customer stands against the average customer (the model's base value), as an
    index into POSITIONS."""
    gap = np.asarray(margin, dtype=float) - base_value
    return np.where(np.abs(gap) < band, 1, np.where(gap < 0, 0, 2)).astype(np.int8)


def score(
    settings: Settings,
    run_id: str,
    p: Plan,
    version: Version,
    scoring: pd.DataFrame,
    full_refresh: bool = False,
) -> dict[str, Any]:
    """Score, explain and segment every customer of the scoring snapshot; write ml.* in one
    transaction. SHAP values, reasons and rows are made and written a chunk of customers at a time
    (segment.explain_chunk_rows), so memory does not grow with the number of customers.

    Customers whose inputs are those of the previous scoring run keep its score, explanation and
    reasons (clarion/segment/rescore.py), unless segment.rescore is ``all`` or ``full_refresh``;
    every customer's segment is assigned again."""
    s = settings.segment
    timings = {"score_s": 0.0, "explain_s": 0.0, "reasons_s": 0.0, "write_s": 0.0}
    started = time.perf_counter()
    model = version.load()
    # the features, then the context columns sentences quote; the features also as one contiguous
    # matrix (LightGBM copies a strided one), the rest a chunk at a time
    columns = figure_columns(scoring, FIGURES)
    x = stack(columns[: len(FEATURES)], len(scoring))
    season = season_term(scoring)
    used = set(version.meta["used_features"])
    ids = scoring["contact_id"].to_numpy()
    gap = 0.0
    now = datetime.now(UTC)
    with Warehouse.from_settings(settings).connect("segment write") as con:
        ensure_tables(con)
        currency = shop_currency(settings, con)
        topics = topic_names(scoring[TOPIC_ID], scoring[TOPIC_NAME])  # the voc topics reasons name
        wording = Wording(currency.code, currency.units_per_eur, p.horizon_days, topics)
        previous = con.execute(
            "select run_id from ml.customer_scores where run_id <> ? "
            f"and run_id not in ({runs.NOT_SETTLED}) group by run_id order by max(scored_at) desc limit 1",
            [run_id],
        ).fetchone()
        keys = rescore.input_keys(columns, season, rescore.context_key(version.name, p, wording, s))
        reuse = previous is not None and s.rescore == "changed" and not full_refresh
        kept = rescore.kept(con, previous[0], ids, keys) if reuse else rescore.Kept.none(len(ids))
        # the customers to score: their positions, or every row as a slice (views, not copies)
        todo: np.ndarray | slice = np.flatnonzero(~kept.same)
        n_todo = len(todo)
        if n_todo == len(ids):
            todo = slice(0, n_todo)
        margin, prob, value = kept.margin, kept.purchase_probability, kept.expected_value_eur
        if n_todo:
            margin[todo], prob[todo], value[todo] = model.predict(x[todo], season[todo])
        churn = 1.0 - prob
        cut = thresholds(settings, prob)
        segment, high_cut = assign(scoring, churn, cut)
        first_family = kept.first_family
        base_value = kept.base_margin if kept.base_margin is not None else 0.0
        timings["score_s"] = time.perf_counter() - started
        con.execute("begin transaction")
        try:
            con.execute("delete from ml.customer_scores where run_id = ?", [run_id])
            con.execute("delete from ml.segments where run_id = ?", [run_id])
            started = time.perf_counter()
            copied = rescore.copy(con, kept, run_id, ids, segment, now)
            timings["copy_s"] = time.perf_counter() - started
            # each chunk's rows are inserted on a thread of their own while the next chunk is worded
            # (clarion/segment/writer.py), after its SHAP values, which use both cores; write_s is
            # building the rows and the time left waiting for inserts
            said: dict[bytes, str] = {}  # sentences rendered in this run (one wording), by figures
            ready: pa.Table | None = None  # the previous chunk's rows, not handed over yet
            with ChunkWriter(con, "ml.customer_scores") as writer:
                # a chunk's figures, reused: what is made of them copies what it quotes (ReasonCodes
                # keeps no view), so the rows in the writer's hands never change under it
                buffer = np.empty((min(n_todo, s.explain_chunk_rows), len(columns)))
                for part in chunks(n_todo, s.explain_chunk_rows):
                    rows = part if isinstance(todo, slice) else todo[part]
                    chunk = buffer[: part.stop - part.start]
                    started = time.perf_counter()
                    # additivity checked
                    expl = explain(model.propensity, x[rows], s.explain_chunk_rows, margin[rows])
                    gap = max(gap, _gap(expl))
                    base_value = expl.base_value
                    timings["explain_s"] += time.perf_counter() - started
                    started = time.perf_counter()
                    if ready is not None:
                        writer.put(ready)
                    timings["write_s"] += time.perf_counter() - started
                    started = time.perf_counter()
                    reasons = reason_table(
                        expl.contributions,
                        stack([c[rows] for c in columns], len(chunk), chunk),
                        margin[rows],
                        expl.base_value,
                        used,
                        s.reasons,
                        s.min_reason_effect,
                        wording,
                        said,
                    )
                    first_family[rows] = reasons.first_family()
                    timings["reasons_s"] += time.perf_counter() - started
                    started = time.perf_counter()
                    ready = _standing(
                        _rows(
                            run_id,
                            p,
                            version.name,
                            now,
                            ids[rows],
                            prob[rows],
                            value[rows],
                            segment[rows],
                            reasons,
                        ),
                        margin[rows],
                        expl.base_value,
                        float(model.calibrator(np.array([expl.base_value]), season[rows][:1])[0]),
                        s.close_to_average,
                        currency.code,
                        keys[rows],
                    )
                    timings["write_s"] += time.perf_counter() - started
                started = time.perf_counter()
                if ready is not None:
                    writer.put(ready)
                writer.wait()
            timings["write_s"] += time.perf_counter() - started
            timings["insert_thread_s"] = writer.insert_s
            summary = profiles(scoring, segment, churn, value, first_family.tolist())
            con.executemany(
                "insert into ml.segments by name select ? as run_id, ? as as_of, ? as model_version, "
                "? as segment, ? as customers, ? as share, ? as mean_churn_risk, "
                "? as mean_expected_value_eur, ? as profile, ? as top_drivers, ? as high_value_from_eur, "
                "? as scored_at, ? as risk_high, ? as risk_low, ? as shop_purchase_rate",
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
                        cut.risk_high,
                        cut.risk_low,
                        float(prob.mean()) if len(prob) else None,
                    ]
                    for g in summary
                ],
            )
            checkpoint("segment.scores")  # every score and segment written, none committed
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
        "rescored": {
            "customers": n_todo,
            "kept": copied,
            "from_run": kept.run_id or None,
            "full_refresh": full_refresh,
            "rescore": s.rescore,
        },
        "not_profiled": dict(scoring.attrs.get("not_profiled", {})),  # e.g. {"objection": n}
        "additivity_max_gap": gap,
        "base_margin": base_value,
        "currency": currency.code,
        "thresholds": {
            "basis": s.risk_basis,
            "shop_purchase_rate": float(prob.mean()) if len(prob) else None,
            "at_risk_from_churn_risk": cut.risk_high,
            "safe_below_churn_risk": cut.risk_low,
        },
        "segments": [
            {k: g[k] for k in ("segment", "customers", "share", "mean_churn_risk", "top_drivers")}
            for g in summary
        ],
        "moves_since_previous": moves,
        "timings": timings,
    }


def record_lifecycle_fit(settings: Settings, run_id: str, p: Plan, fits: dict[str, Any]) -> None:
    """Keep the customer-base fit the run's lifecycle features came from (what produced a reason)."""
    now = datetime.now(UTC)
    with Warehouse.from_settings(settings).connect("segment lifecycle fit") as con:
        ensure_tables(con)
        con.execute("delete from ml.lifecycle_fits where run_id = ?", [run_id])
        for day, fit in fits.items():
            con.execute(
                "insert into ml.lifecycle_fits values (?, ?, ?, ?)", [run_id, day, json.dumps(fit), now]
            )


def kept_lifecycle_fit(settings: Settings, p: Plan) -> dict[str, dict[str, Any]]:
    """The day's lifecycle fit recorded by the latest settled run that scored it, to reuse
    (segment.lifecycle_fit: per_day): {day: fit summary with ``reused_from``}, or {} when there is
    none, it did not fit, or someone was erased since it was fitted (a fit never outlives the data
    of a person erased: Art. 17)."""
    with Warehouse.from_settings(settings).connect("segment kept lifecycle fit") as con:
        ensure_tables(con)
        row = con.execute(
            f"""
            select run_id, fit, fitted_at from ml.lifecycle_fits
            where as_of = ? and run_id not in ({runs.NOT_SETTLED})
            order by fitted_at desc limit 1
            """,
            [p.as_of],
        ).fetchone()
        if row is None:
            return {}
        run_id, fit, fitted_at = row[0], json.loads(row[1]), row[2]
        if relation_exists(con, "audit", "events"):
            (erased,) = con.execute(
                'select count(*) from audit.events where action = ? and "at" >= ?',
                [audit.SUBJECT_ERASED, fitted_at],
            ).fetchone()
            if erased:
                log.info("the lifecycle fit of %s predates an erasure: fitted again", p.as_of)
                return {}
    if not fit.get("fitted"):
        return {}
    return {p.as_of.isoformat(): {**fit, "reused_from": fit.get("reused_from") or run_id}}


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

    def same(value: Any, kind: pa.DataType) -> pa.Array:
        return pa.repeat(pa.scalar(value, kind), n)

    return pa.table(
        {
            "run_id": same(run_id, pa.string()),
            "contact_id": pa.array(ids, pa.int64()),
            "as_of": same(p.as_of, pa.date32()),
            "horizon_days": same(p.horizon_days, pa.int32()),
            "model_version": same(version, pa.string()),
            "purchase_probability": prob,
            "churn_risk": 1.0 - prob,
            "expected_value_eur": value,
            "segment": pa.array(segment, pa.string()),
            "reasons": reasons.arrow(),
            "reasons_text": reasons.joined_text(),
            "scored_at": same(now, pa.timestamp("us", tz="UTC")),
        }
    )


def _standing(
    table: pa.Table,
    margin: np.ndarray,
    base_value: float,
    average: float,
    band: float,
    currency: str,
    keys: np.ndarray,
) -> pa.Table:
    """Where each customer stands against the average customer, the run's currency and the
    customer's inputs key, as columns added to the chunk's rows."""
    n = len(table)
    columns = {
        "margin": pa.array(margin, pa.float64()),
        "base_margin": pa.repeat(pa.scalar(base_value, pa.float64()), n),
        "vs_average": pa.array(POSITIONS, pa.string()).take(pa.array(position(margin, base_value, band))),
        "average_probability": pa.repeat(pa.scalar(average, pa.float64()), n),
        "currency": pa.repeat(pa.scalar(currency, pa.string()), n),
        "inputs_key": pa.array(keys, pa.uint64()),
    }
    for name, column in columns.items():
        table = table.append_column(name, column)
    return table


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
