"""The uplift model and its Qini validation (models/uplift.py) as specifications.

Customers are simulated with a planted heterogeneous effect: the message raises the purchase
probability by 10 points for engaged customers (engagement > 0) and not at all for the others, on top
of a baseline that depends on recency alone. A learner that finds the effect must rank the engaged
above the rest, and its Qini coefficient must beat random targeting while staying under that of the
oracle ranking by the true effect.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.experiments import ExperimentDataError
from models.uplift import (
    TwoModelUplift,
    auuc,
    qini_coefficient,
    qini_curve,
    qini_vs_random,
    random_coefficients,
)

PLANTED = 0.10
FEATURES = ["engagement", "recency", "tenure", "noise"]


def simulate(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """(features, treated, converted, true uplift) for n customers, half of them treated at random."""
    rng = np.random.default_rng(seed)
    features = pd.DataFrame(rng.normal(size=(n, len(FEATURES))), columns=FEATURES)
    true_uplift = np.where(features["engagement"] > 0, PLANTED, 0.0)
    baseline = 1 / (1 + np.exp(2.2 - 0.6 * features["recency"].to_numpy()))
    treated = rng.random(n) < 0.5
    converted = (rng.random(n) < baseline + true_uplift * treated).astype(int)
    return features, treated, converted, true_uplift


@pytest.fixture(scope="module")
def fitted() -> dict:
    features, t, y, _ = simulate(20_000, seed=1)
    model = TwoModelUplift(seed=0).fit(features, t, y)
    features_new, t_new, y_new, truth = simulate(40_000, seed=2)  # customers the model never saw
    return {
        "model": model,
        "features": features_new,
        "t": t_new,
        "y": y_new,
        "truth": truth,
        "train": (features, t, y),
    }


def test_two_model_learner_ranks_the_high_uplift_group_above_the_low_one(fitted):
    predicted = fitted["model"].predict(fitted["features"])
    high, low = predicted[fitted["truth"] > 0].mean(), predicted[fitted["truth"] == 0].mean()
    assert high - low > PLANTED / 2
    assert abs(low) < PLANTED / 4  # the unaffected group is not credited with an effect
    # and the measured uplift (treated rate - control rate) of its top half exceeds its bottom half's
    top = predicted >= np.median(predicted)
    t, y = fitted["t"], fitted["y"]
    measured = [y[part & t].mean() - y[part & ~t].mean() for part in (top, ~top)]
    assert measured[0] - measured[1] > PLANTED / 2


def test_two_model_learner_beats_random_targeting(fitted):
    predicted = fitted["model"].predict(fitted["features"])
    versus = qini_vs_random(predicted, fitted["t"], fitted["y"], draws=100, seed=0)
    assert versus.qini > versus.random_p95
    assert versus.p_value == pytest.approx(1 / 101)  # no random ranking did as well
    assert abs(versus.random_mean) < versus.qini / 5


def test_qini_of_the_oracle_ranking_bounds_the_model_which_beats_random_scores(fitted):
    t, y = fitted["t"], fitted["y"]
    oracle = qini_coefficient(fitted["truth"], t, y)
    model = qini_coefficient(fitted["model"].predict(fitted["features"]), t, y)
    random = qini_coefficient(np.random.default_rng(3).random(len(y)), t, y)
    assert oracle >= model > random
    assert model > 0.5 * oracle  # the model finds most of what there is to find


def test_qini_curve_counts_incremental_conversions_by_depth():
    """Six customers ranked by score; at each depth k: treated converters minus control converters
    scaled to the treated count, per customer of the sample (counted by hand)."""
    score = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    treated = [1, 0, 1, 1, 0, 0]
    converted = [1, 0, 1, 0, 1, 0]
    curve = qini_curve(score, treated, converted)
    # k=1: 1 - 0; k=2: 1 - 0*1/1; k=3: 2 - 0*2/1; k=4: 2 - 0; k=5: 2 - 1*3/2; k=6: 2 - 1*3/3
    assert curve["qini"].tolist() == pytest.approx([0, 1 / 6, 1 / 6, 2 / 6, 2 / 6, 0.5 / 6, 1 / 6])
    assert curve["customers"].tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert curve["treated"].tolist() == [0, 1, 1, 2, 3, 3, 3]
    assert curve["random"].tolist() == pytest.approx([k / 6 * (1 / 6) for k in range(7)])
    assert auuc(score, treated, converted) == pytest.approx(np.trapezoid(curve["qini"], dx=1 / 6))


def test_tied_scores_form_one_step_so_a_constant_score_is_exactly_the_random_line(fitted):
    t, y = fitted["t"], fitted["y"]
    curve = qini_curve(np.zeros(len(y)), t, y)
    assert len(curve) == 2 and curve["qini"].tolist() == curve["random"].tolist()
    assert qini_coefficient(np.zeros(len(y)), t, y) == 0.0


def test_qini_curve_of_random_targeting_follows_the_straight_line_on_average(fitted):
    t, y = fitted["t"][:10_000], fitted["y"][:10_000]
    rng = np.random.default_rng(4)
    depths = np.linspace(0, 1, 11)
    curves = []
    for _ in range(100):
        curve = qini_curve(rng.random(len(y)), t, y)
        curves.append(np.interp(depths, curve["share"], curve["qini"]))
    end = qini_curve(np.zeros(len(y)), t, y)["qini"].iloc[-1]
    gap = np.abs(np.mean(curves, axis=0) - depths * end)
    assert gap.max() < 0.05 * end, gap / end
    assert np.std(curves, axis=0)[5] > 0.05 * end  # any single random curve is noisy: the mean is the line


def test_fitting_is_deterministic_for_a_seed(fitted):
    features, t, y = fitted["train"]
    first = fitted["model"].predict(fitted["features"][:2_000])
    again = TwoModelUplift(seed=0).fit(features, t, y).predict(fitted["features"][:2_000])
    other = (
        TwoModelUplift(seed=0, params={"feature_fraction": 0.5})
        .fit(features, t, y)
        .predict(fitted["features"][:2_000])
    )
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)  # params reach LightGBM


def test_predicted_arms_are_probabilities_whose_difference_is_the_uplift(fitted):
    treated, control = fitted["model"].predict_arms(fitted["features"][:1_000])
    assert np.all((treated > 0) & (treated < 1) & (control > 0) & (control < 1))
    assert np.array_equal(treated - control, fitted["model"].predict(fitted["features"][:1_000]))


def test_an_arm_without_converters_is_refused_with_what_to_do(fitted):
    features, t, y = fitted["train"]
    y = np.where(t, y, 0)  # nobody in the holdout converted
    with pytest.raises(ExperimentDataError, match=r"the control arm has 0 converters among \d+ customers"):
        TwoModelUplift().fit(features, t, y)


def test_predicting_without_a_fitted_feature_names_it(fitted):
    with pytest.raises(ExperimentDataError, match=r"lack the column\(s\) the model was fitted on: recency"):
        fitted["model"].predict(fitted["features"].drop(columns=["recency"]))


def _numpy_random_coefficient(codes: np.ndarray) -> float:
    """The running sums as numpy arrays, the way ``random_coefficients`` computed them before its
    compiled pass: the same float operations, so the same value to the last bit."""
    n = codes.shape[-1]
    n_t = np.cumsum(codes >> 1, dtype=np.int32)
    n_c = np.arange(1, n + 1, dtype=np.int32) - n_t
    scaled = np.multiply(np.cumsum(codes == 1, dtype=np.int32), n_t, dtype=np.float64)
    np.divide(scaled, n_c, out=scaled, where=n_c > 0)
    scaled[n_c == 0] = 0.0
    qini = np.cumsum(codes == 3, dtype=np.int32) - scaled
    qini /= n
    return (qini.sum() - qini[-1] * (n + 1) / 2) / n


def test_a_random_ranking_is_scored_exactly_as_a_model_ranking_in_that_order(fitted):
    """qini_vs_random's fast path against qini_coefficient, on shuffles of real treated/converted
    customers: a score falling with the position gives the same ranking with no ties."""
    t, y = fitted["t"][:5_000], fitted["y"][:5_000]
    rng = np.random.default_rng(11)
    codes = (t.astype(np.int8) << 1) | y.astype(np.int8)
    for _ in range(5):
        order = rng.permutation(t.size)
        score = -np.arange(t.size, dtype=float)
        expected = qini_coefficient(score, t[order], y[order])
        assert random_coefficients(codes[order]) == pytest.approx(expected, rel=1e-9, abs=1e-15)
        assert random_coefficients(codes[order]) == _numpy_random_coefficient(codes[order])
    score = rng.random(t.size)
    runs = [qini_vs_random(score, t, y, draws=30, seed=s) for s in (3, 3, 4)]
    assert runs[0] == runs[1]  # a seed fixes the draws
    assert runs[0].random_mean != runs[2].random_mean
