"""Propensity and value models, trained on stacked snapshots, calibrated to the season, validated by time.

The recipe for a scoring day ``as_of`` and a horizon ``h`` (clarion.segment.snapshots picks the
days):

* a training frame stacks customers as of several past days (every few weeks over a year), each
  with the labels of its own complete horizon; customers of one day are sampled, never weighted.
* a fifth of the customers (by a hash of the id, the same on every day) never reach the forest:
  their rows on every day calibrate it. Another fifth, on the newest day only, stops the boosting
  early (customer-grouped and time-ordered: the forest that picks the number of trees learnt
  from older days and from other customers); the forest is then refitted on every non-calibration
  row with that many trees.
* the calibrator maps the forest's margin and the shop's season (how busy the coming horizon was a
  year earlier) to a probability: Platt scaling with a season term, or isotonic on the season-
  adjusted margin, whichever has the lower two-fold Brier score on the calibration customers.

Ranking figures (ROC AUC, PR AUC, lift) are computed on the raw margin: calibration is monotone
but isotonic creates ties, which would blur the ranking. Calibration (Brier, ECE) is reported on
the probabilities, separately.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from models import metrics
from models.features import BASELINE_FEATURES, FEATURES, SEASON

LABEL = "purchased_in_horizon"
SPEND = "spend_in_horizon_eur"
FOLDS = 5
CALIBRATION_FOLD = 0
EARLY_STOPPING_FOLD = 1
MIN_CLASS_ROWS = 5  # the calibration holdout needs this many buyers and non-buyers


class TrainingError(ValueError):
    """The data cannot train a model; the message says why and what to change."""


@dataclass(frozen=True)
class ModelParams:
    """A compact forest: explaining every customer costs trees x leaves x depth^2 (stack.md). At
    100k customers this one explains 74k customers/s on 2 cores for an out-of-time ROC AUC 0.004
    below a 120-tree, 15-leaf, depth-5 forest (13k/s); see bench/RESULTS.md. `trees` is the most
    the early stopping may keep."""

    trees: int = 60
    leaves: int = 8
    max_depth: int = 3
    learning_rate: float = 0.06
    min_child_samples: int = 40
    early_stopping_rounds: int = 10
    seed: int = 7
    threads: int = 2

    def lgb(self, objective: str) -> dict[str, Any]:
        params = {
            "objective": objective,
            "num_leaves": self.leaves,
            "max_depth": self.max_depth,
            "learning_rate": self.learning_rate,
            "min_data_in_leaf": self.min_child_samples,
            "feature_fraction": 0.9,
            "bagging_fraction": 0.9,
            "bagging_freq": 1,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.threads,
            "verbose": -1,
        }
        if objective == "tweedie":
            params["tweedie_variance_power"] = 1.5
        return params


def customer_fold(contact_ids: np.ndarray, folds: int = FOLDS) -> np.ndarray:
    """A customer's fold from a hash of the id (splitmix64), the same on every day and every run.

    Not ``id % folds``: ids that step by 5 or 10 (common in CRMs) would all land in one fold."""
    z = np.asarray(contact_ids, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(folds)).astype(np.int64)


def season_term(frame: pd.DataFrame) -> np.ndarray:
    """log of the shop's season index per row; 0 (an average season) where it is unknown."""
    if SEASON not in frame.columns:
        return np.zeros(len(frame))
    values = pd.to_numeric(frame[SEASON], errors="coerce").to_numpy(dtype=float)
    out = np.zeros(len(values))
    ok = np.isfinite(values) & (values > 0)
    out[ok] = np.log(values[ok])
    return out


@dataclass
class Calibrator:
    """Maps the forest's margin (and the season term) to a calibrated probability.

    platt: sigmoid(a * margin + b + c * season); isotonic: an increasing step function of
    margin + k * season, with k = c / a from the Platt fit on the same customers."""

    method: str  # "isotonic" | "platt"
    params: dict[str, Any]

    @classmethod
    def fit(cls, method: str, margin: np.ndarray, season: np.ndarray, y: np.ndarray) -> Calibrator:
        a, b, c = _platt(margin, season, y)
        if method == "platt":
            return cls("platt", {"a": a, "b": b, "c": c})
        k = c / a if a > 0 else 0.0
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(margin + k * season, y)
        return cls(
            "isotonic",
            {"x": iso.X_thresholds_.astype(float).tolist(), "y": iso.y_thresholds_.tolist(), "k": k},
        )

    def __call__(self, margin: np.ndarray, season: np.ndarray | None = None) -> np.ndarray:
        season = np.zeros(len(margin)) if season is None else np.asarray(season, dtype=float)
        if self.method == "platt":
            a, b, c = self.params["a"], self.params["b"], self.params.get("c", 0.0)
            return 1.0 / (1.0 + np.exp(-(a * margin + b + c * season)))
        k = self.params.get("k", 0.0)
        return np.interp(margin + k * season, self.params["x"], self.params["y"])

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "params": self.params}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibrator:
        return cls(data["method"], data["params"])


def _platt(margin: np.ndarray, season: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    x = np.column_stack([margin, season]) if np.any(season) else margin.reshape(-1, 1)
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(x, y)
    c = float(lr.coef_[0][1]) if x.shape[1] == 2 else 0.0
    return float(lr.coef_[0][0]), float(lr.intercept_[0]), c


def check_classes(y: np.ndarray, what: str) -> None:
    buyers = int(np.sum(y == 1))
    others = len(y) - buyers
    if buyers < MIN_CLASS_ROWS or others < MIN_CLASS_ROWS:
        raise TrainingError(
            f"{what} has {buyers} buyers and {others} non-buyers: calibrating needs at least "
            f"{MIN_CLASS_ROWS} of each. Use more history (more snapshot days or customers: "
            "segment.snapshots, segment.training_rows) or a horizon in which both happen "
            "(segment.horizon_days)."
        )


def choose_calibration(
    margin: np.ndarray, season: np.ndarray, y: np.ndarray, ids: np.ndarray, method: str = "auto"
) -> tuple[Calibrator, dict]:
    """Fit the asked method, or the one with the lower two-fold Brier score on these held-out
    customers. The folds split customers (by hash) within each class, so both folds hold buyers
    and non-buyers whenever the holdout has two of each; cross-fitted probabilities also give an
    honest in-time ECE for the choice."""
    check_classes(y, f"the calibration holdout ({len(y)} customer-days of a fifth of the customers)")
    folds = np.empty(len(y), dtype=np.int64)
    for label in (0, 1):
        at = np.flatnonzero(y == label)
        order = np.argsort(customer_fold(ids[at], 1 << 20), kind="stable")
        folds[at[order]] = np.arange(len(at)) % 2
    candidates = ("isotonic", "platt") if method == "auto" else (method,)
    brier, ece = {}, {}
    for candidate in candidates:
        p = np.empty(len(y))
        for k in (0, 1):
            train, test = folds != k, folds == k
            cal = Calibrator.fit(candidate, margin[train], season[train], y[train])
            p[test] = cal(margin[test], season[test])
        brier[candidate] = float(np.mean((p - y) ** 2))
        ece[candidate] = metrics.expected_calibration_error(y, p)
    best = min(brier, key=brier.get)
    chosen = Calibrator.fit(best, margin, season, y)
    how = {
        "method": best,
        "chosen_by": "two-fold Brier on held-out customers" if method == "auto" else "config",
        "holdout_rows": len(y),
        "holdout_brier": brier,
        "holdout_ece": ece[best],
        "season_coefficient": chosen.params.get("c", chosen.params.get("k", 0.0)),
    }
    return chosen, how


def columns(frame: pd.DataFrame, features: tuple[str, ...] = FEATURES) -> list[np.ndarray]:
    """The features as float64 columns (NaN where unknown), in `features` order."""
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise ValueError(f"customer_features lacks {missing}: rebuild the marts (`clarion transform`)")
    return [frame[f].to_numpy(dtype=np.float64, na_value=np.nan) for f in features]


def matrix(frame: pd.DataFrame, features: tuple[str, ...] = FEATURES) -> np.ndarray:
    """The features as a (customers x features) float64 matrix."""
    return stack(columns(frame, features), len(frame))


def stack(cols: list[np.ndarray], rows: int, out: np.ndarray | None = None, block: int = 4096) -> np.ndarray:
    """Columns side by side in a C-ordered matrix (`out`, or a new one), a block of rows at a time so
    that the rows being written stay in cache (numpy.column_stack writes each column down the whole
    matrix: 4x slower at a million rows)."""
    out = np.empty((rows, len(cols))) if out is None else out
    for start in range(0, rows, block):
        part = out[start : start + block]
        for j, col in enumerate(cols):
            part[:, j] = col[start : start + block]
    return out


@dataclass
class Fitted:
    """One application of the recipe: the forest, its calibrator, and the value model."""

    propensity: lgb.Booster
    calibrator: Calibrator
    value: lgb.Booster
    calibration: dict[str, Any] = field(default_factory=dict)

    def margin(self, x: np.ndarray) -> np.ndarray:
        return self.propensity.predict(x, raw_score=True)

    def predict(
        self, x: np.ndarray, season: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(margin, calibrated purchase probability, expected spend in the horizon)."""
        m = self.margin(x)
        return m, self.calibrator(m, season), np.clip(self.value.predict(x), 0, None)

    def predict_frame(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.predict(matrix(frame), season_term(frame))

    def used_features(self) -> list[str]:
        gains = self.propensity.feature_importance("split")
        return [f for f, g in zip(self.propensity.feature_name(), gains, strict=True) if g > 0]


def fit(frame: pd.DataFrame, params: ModelParams, calibration: str = "auto") -> Fitted:
    """The recipe on a stacked frame (one row per customer and day, complete labels)."""
    if frame.empty:
        raise TrainingError("no customers in the training snapshots: generate or extract a longer history")
    y = frame[LABEL].astype(float).to_numpy()
    if len(np.unique(y)) < 2:
        raise TrainingError(
            f"every customer of the training snapshots has the same label ({LABEL}={bool(y[0])}): "
            "not enough history to learn who buys; generate or extract a longer history, or "
            "shorten segment.horizon_days"
        )
    x = matrix(frame)
    ids = frame["contact_id"].to_numpy()
    days = pd.to_datetime(frame["as_of"]).to_numpy()
    fold = customer_fold(ids)
    hold = fold == CALIBRATION_FOLD
    names = list(FEATURES)
    trees, stopping = _trees(x, y, fold, days, params, names)
    forest = lgb.train(
        params.lgb("binary"), lgb.Dataset(x[~hold], y[~hold], feature_name=names), num_boost_round=trees
    )
    calibrator, how = choose_calibration(
        forest.predict(x[hold], raw_score=True), season_term(frame)[hold], y[hold], ids[hold], calibration
    )
    how["trees"] = trees
    how["early_stopping"] = stopping
    spend = frame[SPEND].fillna(0).astype(float).to_numpy()
    value = lgb.train(
        params.lgb("tweedie"),
        lgb.Dataset(x[~hold], spend[~hold], feature_name=names),
        num_boost_round=params.trees,
    )
    return Fitted(forest, calibrator, value, how)


def _trees(
    x: np.ndarray,
    y: np.ndarray,
    fold: np.ndarray,
    days: np.ndarray,
    params: ModelParams,
    names: list[str],
) -> tuple[int, dict[str, Any]]:
    """How many trees: early stopping on the newest day's early-stopping fold, learning from the
    older days' other customers. With a single day (or too few rows) there is nothing later to stop
    on, and the configured number is kept."""
    newest = days.max()
    check = (fold == EARLY_STOPPING_FOLD) & (days == newest)
    learn = (fold > EARLY_STOPPING_FOLD) & (days < newest)
    if check.sum() < 50 or learn.sum() < 200 or len(np.unique(y[check])) < 2:
        return params.trees, {"used": False, "why": "one snapshot day or too few customers to stop on"}
    booster = lgb.train(
        params.lgb("binary"),
        lgb.Dataset(x[learn], y[learn], feature_name=names),
        num_boost_round=params.trees,
        valid_sets=[lgb.Dataset(x[check], y[check], feature_name=names)],
        callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)],
    )
    best = int(booster.best_iteration or params.trees)
    return max(best, 1), {"used": True, "best_iteration": best, "rows": int(check.sum())}


def baseline(train: pd.DataFrame, valid: pd.DataFrame) -> np.ndarray:
    """Recency/frequency logistic regression: what a spreadsheet RFM score would give."""

    def design(frame: pd.DataFrame) -> np.ndarray:
        x = frame.loc[:, list(BASELINE_FEATURES)].astype("float64")
        never = x["recency_days"].isna()
        x["recency_days"] = np.log1p(x["recency_days"].fillna(10_000))  # never bought: very long ago
        x["orders_365d"] = np.log1p(x["orders_365d"])
        x["orders_lifetime"] = np.log1p(x["orders_lifetime"])
        x["never"] = never.astype(float)
        return x.to_numpy()

    lr = LogisticRegression(max_iter=2000).fit(design(train), train[LABEL].astype(int))
    return lr.predict_proba(design(valid))[:, 1]


def validate(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    params: ModelParams,
    calibration: str,
    customer_base: np.ndarray | None = None,
) -> dict:
    """Fit on the older days, measure on the newer day: the out-of-time figures of the recipe, beside
    the recency/frequency baseline and (when given) a customer-base model's own probability of a
    purchase in the horizon, all on the same customers."""
    model = fit(train, params, calibration)
    y = valid[LABEL].astype(float).to_numpy()
    margin, p, value = model.predict_frame(valid)
    base = baseline(train, valid)
    result = {
        "model": model,
        "propensity": metrics.classification(y, p, score=margin),
        "baseline": metrics.classification(y, base),
        "value": metrics.regression(valid[SPEND].fillna(0).to_numpy(), value),
        "reliability": metrics.reliability(y, p),
        "calibration": model.calibration,
        "probabilities": p,
        "margin": margin,
    }
    if customer_base is not None:
        result["customer_base"] = metrics.classification(y, customer_base)
    return result
