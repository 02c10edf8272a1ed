"""Who is moved by a campaign: a two-model uplift learner and its validation by Qini curve.

Uplift is the difference a message makes to one customer's chance to buy, P(buy | treated) -
P(buy | not treated). No customer is observed both ways, so it is learnt from past campaigns' treated
and holdout customers: the *two-model* learner (Kuenzel et al. 2019 call it the T-learner) fits one
classifier per arm and takes the difference of their predictions. It is the simplest learner that
can find an effect that depends on the customer, and its failure mode is known: with few holdout
customers the control model is noisy, so the learner is validated on held-out customers before next-
best-action trusts it.

Validation follows Radcliffe (2007), "Using control groups to target on predicted lift": rank the
held-out customers by predicted uplift, and at each depth k of that ranking count the incremental
conversions the targeting would have bought,

    qini(k) = R_t(k) - R_c(k) * N_t(k) / N_c(k)

(R: conversions, N: customers, among the top k, by arm), here divided by the number of customers so
that curves of different samples compare. Targeting at random gives, in expectation, the straight line
from (0, 0) to (1, qini(N)); ``qini_coefficient`` is the area between the model's curve and that line
(0 for random targeting, larger is better; a ranking by the true uplift bounds it), and
``qini_vs_random`` compares it with random rankings of the same customers. Customers with tied scores
are taken as one step, so a constant score gives exactly the random line.

Everything is pure: arrays or DataFrames in and out, randomness only through explicit seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from numba import njit

from models.experiments import ExperimentDataError

# A small forest: an uplift is a difference of two predictions, and deep trees on a 10% holdout
# overfit its noise. Deterministic: same seed and data, same predictions on any machine.
TREES = 60
PARAMS: dict[str, Any] = {
    "objective": "binary",
    "num_leaves": 15,
    "max_depth": 4,
    "learning_rate": 0.08,
    "min_data_in_leaf": 50,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 1,
    "verbose": -1,
}
ARMS = ("treatment", "control")
MIN_OUTCOMES = 10  # converters and non-converters each arm needs before a classifier can learn it
RANDOM_DRAWS = 200


def _inputs(treatment: Any, y: Any, rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(treatment).ravel()
    out = np.asarray(y, dtype=float).ravel()
    if rows is not None and not (t.size == out.size == rows):
        raise ExperimentDataError(
            "features, treatment and y must describe the same customers "
            f"(got {rows}, {t.size} and {out.size} rows)"
        )
    if t.size != out.size:
        raise ExperimentDataError(f"treatment and y differ in length ({t.size} vs {out.size})")
    if not np.isin(t, (0, 1)).all():
        raise ExperimentDataError(
            "treatment must be true/false (1 = treated, 0 = control) for every customer"
        )
    if not np.isin(out, (0.0, 1.0)).all():
        raise ExperimentDataError("y must be 0/1 (converted or not) for every customer")
    return t.astype(bool), out


def _saved_as(arm: str) -> str:
    return f"uplift_{arm}.txt"


def _frame(features: pd.DataFrame | np.ndarray) -> pd.DataFrame:
    """Features as a DataFrame with string column names (the caller's is never changed; one whose
    names are strings already is used as it is, not copied: at 1,000,000 customers it is gigabytes)."""
    frame = pd.DataFrame(features)
    if all(isinstance(c, str) for c in frame.columns):
        return frame
    return frame.set_axis([str(c) for c in frame.columns], axis=1)


class TwoModelUplift:
    """Two LightGBM classifiers, one on the treated and one on the control customers; the predicted
    uplift is their difference. scikit-learn style: ``fit(features, treatment, y)`` then
    ``predict(features)``, features a DataFrame or 2-D array with one row per customer."""

    def __init__(self, seed: int = 0, params: dict[str, Any] | None = None, trees: int = TREES) -> None:
        self.seed = seed
        self.params = params
        self.trees = trees

    def _lgb_params(self) -> dict[str, Any]:
        return {**PARAMS, "seed": self.seed, **(self.params or {})}

    def fit(self, features: pd.DataFrame | np.ndarray, treatment: Any, y: Any) -> TwoModelUplift:
        """Learn each arm's conversion probability from its own customers."""
        frame = _frame(features)
        t, out = _inputs(treatment, y, rows=len(frame))
        self.features_ = list(frame.columns)
        # every row as one float64 matrix, as LightGBM makes of a DataFrame (a view of a float64
        # frame, not a copy); each arm's rows are taken from it
        values = frame.to_numpy(dtype=np.float64)
        self.models_: dict[str, lgb.Booster] = {}
        for arm, mask in (("treatment", t), ("control", ~t)):
            converted = int(out[mask].sum())
            if min(converted, int(mask.sum()) - converted) < MIN_OUTCOMES:
                raise ExperimentDataError(
                    f"the {arm} arm has {converted} converters among {int(mask.sum())} customers: an uplift "
                    f"model needs at least {MIN_OUTCOMES} converters and {MIN_OUTCOMES} non-converters per "
                    "arm (wait for more campaign results, or use the measured uplift per segment)"
                )
            data = lgb.Dataset(values[mask], label=out[mask], feature_name=self.features_, free_raw_data=True)
            self.models_[arm] = lgb.train(self._lgb_params(), data, num_boost_round=self.trees)
        return self

    def save(self, folder: Path) -> dict[str, str]:
        """Write the two fitted classifiers as LightGBM text models into ``folder``; returns the
        file of each arm. ``load`` reads them back to the same predictions."""
        if not hasattr(self, "models_"):
            raise ExperimentDataError("the uplift model is not fitted: nothing to save")
        files = {arm: _saved_as(arm) for arm in ARMS}
        for arm, booster in self.models_.items():
            booster.save_model(str(Path(folder) / files[arm]))
        return files

    @staticmethod
    def saved_in(folder: Path) -> bool:
        """Whether ``folder`` holds both classifiers ``save`` writes."""
        return all((Path(folder) / _saved_as(arm)).exists() for arm in ARMS)

    @classmethod
    def load(cls, folder: Path, features: list[str]) -> TwoModelUplift:
        """The model ``save`` wrote into ``folder``, fitted on ``features`` (in that order)."""
        model = cls()
        model.features_ = list(features)
        model.models_ = {arm: lgb.Booster(model_file=str(Path(folder) / _saved_as(arm))) for arm in ARMS}
        return model

    def predict_arms(self, features: pd.DataFrame | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(P(buy | treated), P(buy | not treated)) per customer."""
        if not hasattr(self, "models_"):
            raise ExperimentDataError(
                "the uplift model is not fitted: call fit(features, treatment, y) first"
            )
        frame = _frame(features)
        missing = [c for c in self.features_ if c not in frame.columns]
        if missing:
            raise ExperimentDataError(
                f"features lack the column(s) the model was fitted on: {', '.join(missing)}"
            )
        frame = frame[self.features_]
        return self.models_["treatment"].predict(frame), self.models_["control"].predict(frame)

    def predict(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Predicted uplift per customer: P(buy | treated) - P(buy | not treated)."""
        treated, control = self.predict_arms(features)
        return treated - control


# --------------------------------------------------------------------------- Qini validation


def _qini_points(t_sorted: np.ndarray, y_sorted: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """qini(k) / N at the depths ``ends`` (last index of each step), along the last axis."""
    n = t_sorted.shape[-1]
    n_t = np.cumsum(t_sorted, axis=-1)[..., ends]
    r_t = np.cumsum(y_sorted * t_sorted, axis=-1)[..., ends]
    n_c = (ends + 1) - n_t
    r_c = np.cumsum(y_sorted * ~t_sorted, axis=-1)[..., ends]
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = np.where(n_c > 0, r_c * n_t / n_c, 0.0)
    return (r_t - scaled) / n


def qini_curve(uplift: Any, treatment: Any, y: Any) -> pd.DataFrame:
    """The Qini curve of a ranking: one row per step (customers sharing a score form one step), from
    the origin to everyone targeted. Columns: ``share`` targeted (0..1), ``customers``, ``treated``,
    ``control``, ``qini`` (incremental conversions per customer of the sample) and ``random`` (the
    straight line random targeting gives in expectation)."""
    t, out = _inputs(treatment, y)
    score = np.asarray(uplift, dtype=float).ravel()
    if score.size != t.size:
        raise ExperimentDataError(f"uplift and treatment differ in length ({score.size} vs {t.size})")
    if not np.isfinite(score).all():
        raise ExperimentDataError(
            f"uplift has a missing value at position {int(np.argmax(~np.isfinite(score)))}"
        )
    if t.size == 0:
        raise ExperimentDataError("the Qini curve needs at least one customer")
    order = np.argsort(-score, kind="stable")
    ranked = score[order]
    ends = np.flatnonzero(np.append(ranked[1:] != ranked[:-1], True))
    t_sorted = t[order]
    qini = _qini_points(t_sorted, out[order], ends)
    customers = ends + 1
    treated = np.cumsum(t_sorted)[ends]
    share = customers / t.size
    return pd.DataFrame(
        {
            "share": np.concatenate([[0.0], share]),
            "customers": np.concatenate([[0], customers]),
            "treated": np.concatenate([[0], treated]),
            "control": np.concatenate([[0], customers - treated]),
            "qini": np.concatenate([[0.0], qini]),
            "random": np.concatenate([[0.0], share * qini[-1]]),
        }
    )


def auuc(uplift: Any, treatment: Any, y: Any) -> float:
    """Area under the Qini curve (share targeted on x, incremental conversions per customer on y)."""
    curve = qini_curve(uplift, treatment, y)
    return float(np.trapezoid(curve["qini"], curve["share"]))


def qini_coefficient(uplift: Any, treatment: Any, y: Any) -> float:
    """Area between the Qini curve and the random-targeting line: what ranking by this score adds over
    targeting at random, averaged over every depth. 0 for random (or constant) scores."""
    curve = qini_curve(uplift, treatment, y)
    return float(np.trapezoid(curve["qini"] - curve["random"], curve["share"]))


@dataclass(frozen=True)
class RandomComparison:
    """A ranking's Qini coefficient against those of random rankings of the same customers:
    their mean and 95th percentile, and the share of random rankings doing at least as well
    (a permutation p-value, with the +1 that keeps it valid)."""

    qini: float
    random_mean: float
    random_p95: float
    p_value: float
    draws: int


def random_coefficients(codes: np.ndarray) -> float:
    """The Qini coefficient of ``codes``, a ranking of customers (best first) coded
    ``2 * treated + converted``, with no ties: what ``qini_coefficient`` gives a score that ranks
    them in that order, in integer running counts and one pass. The curve starts and ends on the
    random line, so the trapezoid over depths 0..n is the plain sum of qini(k) - (k / n) qini(n)."""
    n = codes.shape[-1]
    qini = _running_qini(np.ascontiguousarray(codes, dtype=np.int8))
    return (qini.sum() - qini[-1] * (n + 1) / 2) / n


@njit(cache=True, nogil=True)
def _running_qini(codes):
    """qini(k) / n at every depth k of the ranking ``codes``: treated conversions minus control
    conversions scaled by treated / control customers so far (0 before the first control customer).
    The same float operations, element by element, as the numpy running sums this replaced (one pass
    instead of three cumulative sums and their temporaries: 200 random rankings of a million
    validation customers took 3.2 s); the sum is left to numpy, whose pairwise sum it was."""
    n = codes.size
    qini = np.empty(n)
    treated = 0
    control_converted = 0
    treated_converted = 0
    for k in range(n):
        c = codes[k]
        treated += c >> 1
        control_converted += c == 1
        treated_converted += c == 3
        control = k + 1 - treated
        scaled = float(control_converted) * float(treated) / control if control > 0 else 0.0
        qini[k] = (treated_converted - scaled) / n
    return qini


def qini_vs_random(
    uplift: Any, treatment: Any, y: Any, draws: int = RANDOM_DRAWS, seed: int = 0
) -> RandomComparison:
    """Is the model's targeting better than chance on these customers? Each random ranking is a
    seeded shuffle of the customers (``Generator.permutation``, linear in their number), scored
    exactly as the model's is (``random_coefficients``)."""
    t, out = _inputs(treatment, y)
    model = qini_coefficient(uplift, t, out)
    rng = np.random.default_rng(seed)
    codes = (t.astype(np.int8) << 1) | out.astype(np.int8)
    # One draw at a time: running sums along a contiguous row are several times faster than along
    # the rows of a block, and memory stays at a few arrays of n.
    random = np.array([random_coefficients(rng.permutation(codes)) for _ in range(draws)])
    return RandomComparison(
        qini=model,
        random_mean=float(random.mean()),
        random_p95=float(np.quantile(random, 0.95)),
        p_value=float((1 + np.sum(random >= model)) / (1 + random.size)),
        draws=int(random.size),
    )
