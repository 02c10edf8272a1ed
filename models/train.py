"""Propensity and value models, calibrated, trained and validated by time.

The recipe, for a scoring day ``as_of`` and a horizon ``h``:

* validation: fit on features as of ``as_of - 2h`` (labels: purchases in the following h days,
  all before ``as_of - h``), then measure on features as of ``as_of - h`` with the labels seen up to
  ``as_of``. Nothing the validation customers did after their feature date reaches the fit.
* production: the same recipe fitted on features as of ``as_of - h`` with labels up to ``as_of``
  (the freshest complete labels), then used to score features as of ``as_of``.

Each fit holds out a fifth of its customers (by id) to calibrate the probabilities: isotonic or
Platt, whichever has the lower Brier score in a two-fold comparison on that held-out fifth.
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
from models.features import BASELINE_FEATURES, FEATURES

LABEL = "purchased_in_horizon"
SPEND = "spend_in_horizon_eur"


@dataclass(frozen=True)
class ModelParams:
    """A compact forest: explaining every customer costs trees x leaves x depth^2 (stack.md). At
    100k customers this one explains 74k customers/s on 2 cores for an out-of-time ROC AUC 0.004
    below a 120-tree, 15-leaf, depth-5 forest (13k/s); see bench/RESULTS.md."""

    trees: int = 60
    leaves: int = 8
    max_depth: int = 3
    learning_rate: float = 0.06
    min_child_samples: int = 40
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


@dataclass
class Calibrator:
    """Maps the forest's raw margin to a calibrated probability."""

    method: str  # "isotonic" | "platt"
    params: dict[str, Any]

    @classmethod
    def fit(cls, method: str, margin: np.ndarray, y: np.ndarray) -> Calibrator:
        if method == "platt":
            lr = LogisticRegression(C=1e6, max_iter=1000).fit(margin.reshape(-1, 1), y)
            return cls("platt", {"a": float(lr.coef_[0][0]), "b": float(lr.intercept_[0])})
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(margin, y)
        return cls(
            "isotonic", {"x": iso.X_thresholds_.astype(float).tolist(), "y": iso.y_thresholds_.tolist()}
        )

    def __call__(self, margin: np.ndarray) -> np.ndarray:
        if self.method == "platt":
            return 1.0 / (1.0 + np.exp(-(self.params["a"] * margin + self.params["b"])))
        return np.interp(margin, self.params["x"], self.params["y"])

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "params": self.params}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibrator:
        return cls(data["method"], data["params"])


def choose_calibration(margin: np.ndarray, y: np.ndarray, method: str = "auto") -> tuple[Calibrator, dict]:
    """Fit the asked method, or the one with the lower two-fold Brier score on this held-out data.
    The two-fold (cross-fitted) probabilities also give an honest in-time ECE for the choice."""
    folds = np.arange(len(y)) % 2
    candidates = ("isotonic", "platt") if method == "auto" else (method,)
    brier, ece = {}, {}
    for candidate in candidates:
        p = np.empty(len(y))
        for k in (0, 1):
            train, test = folds != k, folds == k
            p[test] = Calibrator.fit(candidate, margin[train], y[train])(margin[test])
        brier[candidate] = float(np.mean((p - y) ** 2))
        ece[candidate] = metrics.expected_calibration_error(y, p)
    best = min(brier, key=brier.get)
    how = {
        "method": best,
        "chosen_by": "two-fold Brier on held-out customers" if method == "auto" else "config",
        "holdout_customers": len(y),
        "holdout_brier": brier,
        "holdout_ece": ece[best],
    }
    return Calibrator.fit(best, margin, y), how


def matrix(frame: pd.DataFrame, features: tuple[str, ...] = FEATURES) -> np.ndarray:
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise ValueError(f"customer_features lacks {missing}: rebuild the marts (`clarion transform`)")
    return frame.loc[:, list(features)].astype("float64").to_numpy()


def calibration_holdout(contact_ids: np.ndarray) -> np.ndarray:
    """A fifth of the customers, by id, never seen by the forest: they calibrate it."""
    return (np.asarray(contact_ids, dtype=np.int64) % 5) == 0


@dataclass
class Fitted:
    """One application of the recipe: the forest, its calibrator, and the value model."""

    propensity: lgb.Booster
    calibrator: Calibrator
    value: lgb.Booster
    calibration: dict[str, Any] = field(default_factory=dict)

    def margin(self, x: np.ndarray) -> np.ndarray:
        return self.propensity.predict(x, raw_score=True)

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(margin, calibrated purchase probability, expected spend in the horizon)."""
        m = self.margin(x)
        return m, self.calibrator(m), np.clip(self.value.predict(x), 0, None)

    def used_features(self) -> list[str]:
        gains = self.propensity.feature_importance("split")
        return [f for f, g in zip(self.propensity.feature_name(), gains, strict=True) if g > 0]


def fit(snapshot: pd.DataFrame, params: ModelParams, calibration: str = "auto") -> Fitted:
    if snapshot[LABEL].nunique() < 2:
        raise ValueError(
            f"every customer of the training snapshot as of {snapshot['as_of'].iloc[0]} has the same "
            f"label ({LABEL}={snapshot[LABEL].iloc[0]}): not enough history to learn who buys; "
            "generate or extract a longer history, or shorten segment.horizon_days"
        )
    x = matrix(snapshot)
    y = snapshot[LABEL].astype(float).to_numpy()
    hold = calibration_holdout(snapshot["contact_id"].to_numpy())
    data = lgb.Dataset(x[~hold], y[~hold], feature_name=list(FEATURES), free_raw_data=True)
    forest = lgb.train(params.lgb("binary"), data, num_boost_round=params.trees)
    calibrator, how = choose_calibration(forest.predict(x[hold], raw_score=True), y[hold], calibration)
    spend = snapshot[SPEND].fillna(0).astype(float).to_numpy()
    value = lgb.train(
        params.lgb("tweedie"),
        lgb.Dataset(x, spend, feature_name=list(FEATURES)),
        num_boost_round=params.trees,
    )
    return Fitted(forest, calibrator, value, how)


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


def validate(train: pd.DataFrame, valid: pd.DataFrame, params: ModelParams, calibration: str) -> dict:
    """Fit on the older snapshot, measure on the newer one: the out-of-time figures of the recipe."""
    model = fit(train, params, calibration)
    x = matrix(valid)
    y = valid[LABEL].astype(float).to_numpy()
    _, p, value = model.predict(x)
    result = {
        "model": model,
        "propensity": metrics.classification(y, p),
        "baseline": metrics.classification(y, baseline(train, valid)),
        "value": metrics.regression(valid[SPEND].fillna(0).to_numpy(), value),
        "reliability": metrics.reliability(y, p),
        "calibration": model.calibration,
        "probabilities": p,
    }
    return result
