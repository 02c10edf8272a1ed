"""Experiment statistics (models/experiments.py) as specifications: each interval agrees with published
worked examples and with scipy where scipy has the method, and covers the truth as often as it claims
in simulation; the sequential test keeps its false-positive rate at most alpha however often it is
read, where a peeked fixed-horizon test does not, and still finds a real effect; the sample-ratio
check and the probability of being best behave as a report needs.

Simulations are vectorised (every simulated experiment at once) and seeded. Monte Carlo bounds: with
S simulations a rate's standard error is at most sqrt(q (1 - q) / S); a bound "within 3 standard
errors" fails a correct method with probability about 0.3%.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.stats.contingency import relative_risk

from models.experiments import (
    DECISION_RULE,
    SRM_ALPHA,
    ExperimentDataError,
    mean_difference,
    prob_best,
    proportion_interval,
    sequential_test,
    srm,
    uplift,
)

ALPHA = 0.05
DRAWS = 2_000


def mc_se(q: float, sims: int) -> float:
    return math.sqrt(q * (1 - q) / sims)


# Coverage of a discrete interval oscillates around the nominal level with n and p (Newcombe 1998a
# reports Wilson's mean coverage 0.952 with minimum near 0.83 for tiny n); at the sizes below the
# oscillation stays within 1 point, so the bound is 3 Monte Carlo standard errors plus 0.01.
COVERAGE_TOLERANCE = 3 * mc_se(1 - ALPHA, DRAWS) + 0.01


# --------------------------------------------------------------------------- Wilson


def test_wilson_interval_matches_newcombes_published_examples():
    """Newcombe (1998), "Two-sided confidence intervals for the single proportion", Stat Med 17:857,
    method 3 (score interval without continuity correction)."""
    published = {(81, 263): (0.2553, 0.3662), (15, 148): (0.0624, 0.1605), (0, 20): (0.0, 0.1611)}
    published[(1, 29)] = (0.0061, 0.1718)
    for (s, n), expected in published.items():
        assert proportion_interval(s, n, ALPHA) == pytest.approx(expected, abs=5e-5), (s, n)


def test_wilson_interval_matches_scipy_on_a_grid():
    for n in (1, 7, 50, 1_000):
        for s in sorted({0, 1, n // 3, n - 1, n}):
            ours = proportion_interval(s, n, 0.1)
            theirs = stats.binomtest(s, n).proportion_ci(confidence_level=0.9, method="wilson")
            assert ours == pytest.approx((theirs.low, theirs.high), abs=1e-12), (s, n)


@pytest.mark.parametrize(("p", "n"), [(0.03, 2_000), (0.2, 400), (0.5, 150)])
def test_wilson_interval_covers_the_true_rate_about_1_minus_alpha_of_the_time(p: float, n: int):
    successes = np.random.default_rng(1).binomial(n, p, DRAWS)
    low, high = proportion_interval(successes, np.full(DRAWS, n), ALPHA)
    coverage = np.mean((low <= p) & (p <= high))
    assert abs(coverage - (1 - ALPHA)) <= COVERAGE_TOLERANCE, coverage


def test_wilson_interval_of_an_empty_arm_is_the_whole_range():
    assert proportion_interval(0, 0) == (0.0, 1.0)


# --------------------------------------------------------------------------- Newcombe and Katz


# Newcombe (1998), "Interval estimation for the difference between independent proportions: comparison
# of eleven methods", Stat Med 17:873, Table II, method 10 (hybrid score, no continuity correction).
NEWCOMBE_TABLE_II = {
    (56, 70, 48, 80): (0.0524, 0.3339),
    (9, 10, 3, 10): (0.1705, 0.8090),
    (6, 7, 2, 7): (0.0582, 0.8062),
    (5, 56, 0, 29): (-0.0381, 0.1926),
    (0, 10, 0, 20): (-0.1611, 0.2775),
    (0, 10, 0, 10): (-0.2775, 0.2775),
    (10, 10, 0, 20): (0.6791, 1.0000),
    (10, 10, 0, 10): (0.6075, 1.0000),
}


def test_absolute_uplift_interval_matches_newcombes_table_ii():
    for counts, expected in NEWCOMBE_TABLE_II.items():
        result = uplift(*counts, alpha=ALPHA)
        assert result.absolute == pytest.approx(counts[0] / counts[1] - counts[2] / counts[3])
        assert (result.abs_low, result.abs_high) == pytest.approx(expected, abs=5e-5), counts


def test_uplift_matches_the_contingencytables_worked_example():
    """Fagerland, Lydersen & Laake, "Statistical Analysis of Contingency Tables" (2017), Perondi et al.
    (2004), 7/34 vs 1/34: Newcombe hybrid score 0.1765 (0.0189 to 0.3404); Katz log ratio 7.0000
    (0.9096 to 53.8695)."""
    result = uplift(7, 34, 1, 34)
    assert (result.absolute, result.abs_low, result.abs_high) == pytest.approx(
        (0.1765, 0.0189, 0.3404), abs=5e-5
    )
    assert (result.relative, result.rel_low, result.rel_high) == pytest.approx(
        (6.0, -0.0904, 52.8695), abs=5e-5
    )


def test_relative_uplift_interval_matches_scipys_katz_interval():
    for xt, nt, xc, nc in [(30, 1_000, 20, 1_000), (5, 90, 12, 110), (400, 9_000, 41, 1_000)]:
        rr = relative_risk(xt, nt, xc, nc)
        ci = rr.confidence_interval(confidence_level=0.95)
        result = uplift(xt, nt, xc, nc)
        assert (result.relative, result.rel_low, result.rel_high) == pytest.approx(
            (rr.relative_risk - 1, ci.low - 1, ci.high - 1), rel=1e-10
        )


def test_relative_uplift_is_undefined_on_a_zero_count_and_the_absolute_one_is_not():
    result = uplift(0, 500, 4, 50)
    assert result.relative == -1.0 and math.isnan(result.rel_low) and math.isnan(result.rel_high)
    assert result.abs_low < -0.08 < result.abs_high < 0
    assert math.isnan(uplift(3, 500, 0, 50).relative)


def test_uplift_intervals_cover_the_true_uplift_about_1_minus_alpha_of_the_time():
    """A 90/10 holdout at e-mail conversion rates: the shape where Wald intervals fail."""
    rng = np.random.default_rng(2)
    nt, nc, pt, pc = 4_500, 500, 0.06, 0.04
    xt, xc = rng.binomial(nt, pt, DRAWS), rng.binomial(nc, pc, DRAWS)
    result = uplift(xt, np.full(DRAWS, nt), xc, np.full(DRAWS, nc), ALPHA)
    absolute = np.mean((result.abs_low <= pt - pc) & (pt - pc <= result.abs_high))
    ok = ~np.isnan(result.rel_low)
    relative = np.mean((result.rel_low[ok] <= pt / pc - 1) & (pt / pc - 1 <= result.rel_high[ok]))
    assert ok.mean() > 0.99  # a zero count among 500 at 4% is rare
    assert abs(absolute - (1 - ALPHA)) <= COVERAGE_TOLERANCE, absolute
    assert abs(relative - (1 - ALPHA)) <= COVERAGE_TOLERANCE, relative


def test_counts_that_cannot_be_an_experiment_are_refused_by_field_and_position():
    with pytest.raises(ExperimentDataError, match=r"conv_t \(12\) exceed n_t \(10\) at position \(1,\)"):
        uplift([1, 12], [10, 10], [1, 1], [10, 10])
    with pytest.raises(ExperimentDataError, match=r"successes must be whole numbers >= 0 \(got 0.3\)"):
        proportion_interval(0.3, 10)
    with pytest.raises(ExperimentDataError, match="alpha must be between 0 and 1"):
        proportion_interval(3, 10, alpha=5)


# --------------------------------------------------------------------------- Welch and CUPED


def revenue(rng: np.random.Generator, shape: tuple[int, ...], buy: float, mean_order: float) -> np.ndarray:
    """Revenue per customer as shops see it: most customers 0, buyers' orders Gamma(2)-distributed."""
    return (rng.random(shape) < buy) * rng.gamma(2.0, mean_order / 2.0, shape)


def test_mean_difference_matches_scipys_welch_test():
    rng = np.random.default_rng(3)
    x_t, x_c = revenue(rng, (900,), 0.1, 60.0), revenue(rng, (100,), 0.08, 55.0)
    result = mean_difference(x_t, x_c, alpha=0.1)
    welch = stats.ttest_ind(x_t, x_c, equal_var=False)
    ci = welch.confidence_interval(confidence_level=0.9)
    assert (result.difference, result.low, result.high) == pytest.approx(
        (x_t.mean() - x_c.mean(), ci.low, ci.high), rel=1e-10
    )
    assert result.p_value == pytest.approx(welch.pvalue, rel=1e-10)
    assert result.df == pytest.approx(welch.df, rel=1e-10)
    assert result.variance_reduction == 0.0


def test_welch_interval_covers_the_true_revenue_difference_about_1_minus_alpha_of_the_time():
    rng = np.random.default_rng(4)
    sims, nt, nc = DRAWS, 1_800, 200
    x_t, x_c = revenue(rng, (sims, nt), 0.10, 60.0), revenue(rng, (sims, nc), 0.08, 60.0)
    truth = 0.10 * 60.0 - 0.08 * 60.0
    covered = [
        (r.low <= truth <= r.high) for r in (mean_difference(a, b) for a, b in zip(x_t, x_c, strict=True))
    ]
    assert abs(np.mean(covered) - (1 - ALPHA)) <= COVERAGE_TOLERANCE, np.mean(covered)


def test_cuped_narrows_the_revenue_interval_and_keeps_its_coverage():
    """Customers who spent before spend after: a pre-period covariate correlated with the outcome."""
    rng = np.random.default_rng(5)
    sims, nt, nc, lift = 1_000, 900, 300, 2.0
    habit = rng.gamma(1.0, 20.0, (sims, nt + nc))
    pre = habit + rng.normal(0, 5, habit.shape)
    post = habit + rng.normal(0, 5, habit.shape)
    post[:, :nt] += lift
    plain, adjusted = [], []
    for y, x in zip(post, pre, strict=True):
        plain.append(mean_difference(y[:nt], y[nt:]))
        adjusted.append(mean_difference(y[:nt], y[nt:], pre_t=x[:nt], pre_c=x[nt:]))
    width = np.mean([r.high - r.low for r in adjusted]) / np.mean([r.high - r.low for r in plain])
    reduction = np.mean([r.variance_reduction for r in adjusted])
    coverage = np.mean([r.low <= lift <= r.high for r in adjusted])
    # var(habit) = 400, noise 25: corr(pre, post)^2 = (400 / 425)^2 = 0.886 of the variance is explained
    assert reduction == pytest.approx((400 / 425) ** 2, abs=0.03)
    assert width == pytest.approx(math.sqrt(1 - (400 / 425) ** 2), abs=0.03)
    assert abs(coverage - (1 - ALPHA)) <= 3 * mc_se(1 - ALPHA, sims) + 0.01, coverage


def test_mean_difference_refuses_missing_revenue_and_half_a_covariate():
    with pytest.raises(ExperimentDataError, match="x_c holds a missing or infinite value at position 2"):
        mean_difference([1.0, 2.0, 3.0], [1.0, 2.0, float("nan")])
    with pytest.raises(ExperimentDataError, match="both arms"):
        mean_difference([1.0, 2.0], [1.0, 2.0], pre_t=[1.0, 2.0])


# --------------------------------------------------------------------------- sample-ratio mismatch


def test_srm_flags_a_52_48_split_of_10000_customers_planned_50_50():
    assert srm([5_200, 4_800], [0.5, 0.5]) < SRM_ALPHA


def test_srm_passes_fair_splits_including_a_10_percent_holdout():
    assert srm([5_000, 5_000], [0.5, 0.5]) == pytest.approx(1.0)
    assert srm([5_070, 4_930], [0.5, 0.5]) > 0.05  # 1.4 standard errors off: chance
    assert srm([9_030, 970], [0.9, 0.1]) > 0.05
    assert srm([9_000, 1_300], [0.9, 0.1]) < SRM_ALPHA  # the holdout grew: something leaks into it


def test_srm_agrees_with_scipys_chi_square_test():
    for counts, shares in [([5_200, 4_800], [1, 1]), ([900, 130, 95], [0.8, 0.1, 0.1]), ([3, 0], [0.5, 0.5])]:
        expected = np.asarray(shares) / np.sum(shares) * np.sum(counts)
        assert srm(counts, shares) == pytest.approx(stats.chisquare(counts, expected).pvalue, rel=1e-9)


def test_srm_false_alarm_rate_on_fair_splits_is_about_its_threshold():
    treated = np.random.default_rng(6).binomial(10_000, 0.5, 20_000)
    p = srm(np.stack([treated, 10_000 - treated], axis=1), [1, 1])
    for threshold in (0.01, SRM_ALPHA):
        alarms = np.mean(p < threshold)
        assert abs(alarms - threshold) <= 3 * mc_se(threshold, 20_000) + threshold / 5, (threshold, alarms)


# --------------------------------------------------------------------------- the sequential test


SIMS = 2_000
LOOKS = 30
PER_LOOK = 300  # customers per arm between two looks: 9,000 per arm at the last look


def simulate_looks(p_t: float, p_c: float, seed: int) -> tuple[np.ndarray, ...]:
    """SIMS experiments read at LOOKS looks: cumulative conversions and customers per arm."""
    rng = np.random.default_rng(seed)
    n = np.broadcast_to(np.arange(1, LOOKS + 1) * PER_LOOK, (SIMS, LOOKS))
    conv_t = rng.binomial(PER_LOOK, p_t, (SIMS, LOOKS)).cumsum(axis=1)
    conv_c = rng.binomial(PER_LOOK, p_c, (SIMS, LOOKS)).cumsum(axis=1)
    return conv_t, n, conv_c, n


def peeked_z_test_rejects(
    conv_t: np.ndarray, n_t: np.ndarray, conv_c: np.ndarray, n_c: np.ndarray
) -> np.ndarray:
    """What a fixed-horizon report read every day does: pooled two-proportion z-test at each look,
    stop at the first |z| > z_{1 - alpha/2}."""
    pooled = (conv_t + conv_c) / (n_t + n_c)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n_t + 1 / n_c))
    z = np.divide(conv_t / n_t - conv_c / n_c, se, out=np.zeros(se.shape), where=se > 0)
    return (np.abs(z) > stats.norm.ppf(1 - ALPHA / 2)).any(axis=1)


def test_sequential_test_keeps_false_positives_at_most_alpha_over_30_looks_where_peeking_does_not():
    counts = simulate_looks(0.05, 0.05, seed=7)
    sequential = sequential_test(*counts, alpha=ALPHA).significant.mean()
    peeking = peeked_z_test_rejects(*counts).mean()
    assert sequential <= ALPHA + 3 * mc_se(ALPHA, SIMS), sequential  # 0.065
    assert peeking > ALPHA + 3 * mc_se(ALPHA, SIMS), peeking  # about 0.27 at 30 looks


def test_sequential_test_false_positives_stay_below_alpha_at_rare_conversions_and_daily_looks():
    """0.5% conversion, 100 customers per arm between looks: few conversions at the early looks,
    where the normal approximation is at its worst."""
    rng = np.random.default_rng(8)
    looks = 60
    n = np.broadcast_to(np.arange(1, looks + 1) * 100, (SIMS, looks))
    conv_t = rng.binomial(100, 0.005, (SIMS, looks)).cumsum(axis=1)
    conv_c = rng.binomial(100, 0.005, (SIMS, looks)).cumsum(axis=1)
    rate = sequential_test(conv_t, n, conv_c, n).significant.mean()
    assert rate <= ALPHA + 3 * mc_se(ALPHA, SIMS), rate


def test_sequential_test_finds_a_real_effect():
    """5.0% -> 6.5% conversion (a 30% relative uplift), 9,000 customers per arm at the last look:
    power above 0.8, and most experiments stop before the last look."""
    counts = simulate_looks(0.065, 0.05, seed=9)
    result = sequential_test(*counts, alpha=ALPHA, planned_n=18_000)
    assert result.significant.mean() > 0.8
    first = np.argmax(result.p_values < ALPHA, axis=1)[result.significant]
    assert np.median(first) < LOOKS - 1
    assert np.all(result.difference[result.significant] > 0)  # never the wrong direction here


def test_always_valid_interval_covers_the_true_difference_at_every_look_at_once():
    counts = simulate_looks(0.07, 0.05, seed=10)
    result = sequential_test(*counts, alpha=ALPHA)
    always = np.all((result.lows <= 0.02) & (result.highs >= 0.02), axis=1).mean()
    assert always >= 1 - ALPHA - 3 * mc_se(ALPHA, SIMS), always


def test_sequential_p_value_never_rises_and_agrees_with_the_interval():
    counts = simulate_looks(0.055, 0.05, seed=11)
    result = sequential_test(*counts, alpha=ALPHA)
    assert np.all(np.diff(result.p_values, axis=1) <= 0)
    assert np.all(np.diff(result.lows, axis=1) >= 0) and np.all(np.diff(result.highs, axis=1) <= 0)
    zero_outside = (result.lows > 0) | (result.highs < 0)
    assert np.array_equal(result.p_values < ALPHA, zero_outside)
    assert 0 < result.significant.mean() < 1  # both outcomes occur, so the agreement is not vacuous


def test_one_experiment_read_once_gives_scalars():
    result = sequential_test(130, 2_000, 90, 2_000)
    assert result.looks == 1 and isinstance(result.p_value, float) and isinstance(result.significant, bool)
    assert result.difference == pytest.approx(0.02)
    assert result.low < result.difference < result.high


def test_an_experiment_without_conversions_yet_carries_no_evidence():
    result = sequential_test([0, 0], [50, 100], [0, 0], [50, 100])
    assert result.p_value == 1.0 and (result.low, result.high) == (-1.0, 1.0)


def test_sequential_test_refuses_counts_that_go_backwards():
    with pytest.raises(ExperimentDataError, match=r"n_c must be cumulative .* drops at look 2"):
        sequential_test([1, 2, 3], [100, 200, 300], [1, 2, 3], [100, 200, 150])


def test_the_decision_rule_is_stated():
    assert (
        DECISION_RULE == "declare a winner only when the always-valid p-value < alpha; the loser is retired"
    )


# --------------------------------------------------------------------------- probability of being best


def test_prob_best_sums_to_one_and_is_reproducible_with_its_seed():
    first = prob_best([40, 52, 47], [1_000, 1_000, 1_000], draws=5_000, seed=3)
    again = prob_best([40, 52, 47], [1_000, 1_000, 1_000], draws=5_000, seed=3)
    other = prob_best([40, 52, 47], [1_000, 1_000, 1_000], draws=5_000, seed=4)
    assert first.sum() == pytest.approx(1.0)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_prob_best_ranks_a_clearly_better_arm_first():
    result = prob_best([50, 80, 52], [1_000, 1_000, 1_000], draws=20_000, seed=0)
    assert np.argmax(result) == 1 and result[1] > 0.99


def test_prob_best_of_two_equal_arms_is_a_coin_flip():
    result = prob_best([50, 50], [1_000, 1_000], draws=20_000, seed=0)
    assert result == pytest.approx([0.5, 0.5], abs=3 * mc_se(0.5, 20_000))
