"""BG/NBD and Gamma-Gamma (models/clv/) as specifications: they recover the parameters a simulation
was drawn from, predict that simulation's future, agree with the model's definition computed by
numerical integration, and refuse impossible inputs by row.

The simulators below are written from the models' stories, not from the library's formulas:
a BG/NBD customer makes a first purchase at day 0, then buys as a Poisson process with rate
lambda ~ Gamma(r, rate alpha) and, right after each repeat purchase, leaves for good with probability
p ~ Beta(a, b); a Gamma-Gamma customer's orders are Gamma(p, rate nu) with nu ~ Gamma(q, rate v).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate

from models.clv import BetaGeo, ConvergenceWarning, GammaGamma

# CDNOW-like heterogeneity in days (Fader, Hardie & Lee 2005 fitted r=0.24, alpha=4.4 weeks, a=0.79,
# b=2.4); a < 1 on purpose, the case where the expected-purchases formula needs care.
TRUTH = {"r": 0.75, "alpha": 40.0, "a": 0.8, "b": 2.5}
HORIZON = 180.0
CUSTOMERS = 20_000


def simulate_bgnbd(
    n: int, r: float, alpha: float, a: float, b: float, seed: int, horizon: float = HORIZON
) -> dict[str, np.ndarray]:
    """Customers acquired over two years, observed up to their own T, then followed `horizon` days on."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(r, 1.0 / alpha, n)
    drop = rng.beta(a, b, n)
    age = rng.uniform(90.0, 720.0, n)
    now = np.zeros(n)
    x, t_x, future = np.zeros(n), np.zeros(n), np.zeros(n)
    alive = np.ones(n, dtype=bool)
    active = np.arange(n)
    while active.size:  # one purchase per customer still in play per pass
        when = now[active] + rng.exponential(1.0 / lam[active])
        seen = when <= age[active]
        later = ~seen & (when <= age[active] + horizon)
        x[active[seen]] += 1
        t_x[active[seen]] = when[seen]
        future[active[later]] += 1
        now[active] = when
        leaves = rng.random(active.size) < drop[active]
        alive[active[leaves & seen]] = False
        active = active[~leaves & (seen | later)]
    return {"x": x, "t_x": t_x, "T": age, "future": future, "alive": alive}


def simulate_gamma_gamma(n: int, p: float, q: float, v: float, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = 1.0 + rng.poisson(3.0, n)
    nu = rng.gamma(q, 1.0 / v, n)
    orders = [rng.gamma(p, 1.0 / nu[i], int(k)) for i, k in enumerate(x)]
    return {"x": x, "m": np.array([o.mean() for o in orders]), "true_mean": p / nu}


@pytest.fixture(scope="module")
def world() -> dict[str, np.ndarray]:
    return simulate_bgnbd(CUSTOMERS, **TRUTH, seed=11)


@pytest.fixture(scope="module")
def fitted(world: dict[str, np.ndarray]) -> BetaGeo:
    return BetaGeo().fit(world["x"], world["t_x"], world["T"], seed=0)


# --------------------------------------------------------------------------- recovery and prediction


def test_bgnbd_fit_recovers_the_simulated_parameters(fitted: BetaGeo) -> None:
    # Over 12 simulations of 20,000 customers the estimates' relative sd was 1.5% (r), 2% (alpha),
    # 3% (a), 4.5% (b); 15% is more than 3 sd for each.
    assert fitted.fit_info_["converged"]
    for name, true in TRUTH.items():
        assert fitted.params_[name] == pytest.approx(true, rel=0.15), name


def test_gamma_gamma_fit_recovers_the_simulated_parameters() -> None:
    truth = {"p": 6.0, "q": 4.0, "v": 15.0}
    sim = simulate_gamma_gamma(50_000, **truth, seed=3)
    model = GammaGamma().fit(sim["x"], sim["m"])
    # relative sd over repeated 50,000-customer simulations: about 3% (p, v), 1% (q)
    for name, true in truth.items():
        assert model.params_[name] == pytest.approx(true, rel=0.12), name


def test_expected_purchases_match_the_simulated_future_in_every_decile(
    world: dict[str, np.ndarray], fitted: BetaGeo
) -> None:
    args = (world["x"], world["t_x"], world["T"])
    for model in (fitted, BetaGeo.from_params(**TRUTH)):
        predicted = model.expected_purchases(HORIZON, *args)
        decile = np.digitize(predicted, np.quantile(predicted, np.linspace(0.1, 0.9, 9)))
        for d in range(10):
            group = decile == d
            actual = world["future"][group]
            se = actual.std(ddof=1) / math.sqrt(group.sum())
            # 4 standard errors of the simulated mean, plus 5% for the fitted parameters' own noise
            assert abs(predicted[group].mean() - actual.mean()) <= 4 * se + 0.05 * actual.mean() + 1e-3, d
        assert predicted.mean() == pytest.approx(world["future"].mean(), rel=0.05)


def test_p_alive_separates_the_alive_from_the_dead_and_is_calibrated(
    world: dict[str, np.ndarray], fitted: BetaGeo
) -> None:
    p = fitted.p_alive(world["x"], world["t_x"], world["T"])
    alive = world["alive"]
    assert p[alive].mean() > p[~alive].mean() + 0.3
    assert p.mean() == pytest.approx(alive.mean(), abs=0.02)
    decile = np.digitize(p, np.quantile(p, np.linspace(0.1, 0.9, 9)))
    for d in np.unique(decile):
        group = decile == d
        assert abs(p[group].mean() - alive[group].mean()) < 0.06, d


def test_gamma_gamma_shrinks_towards_the_truth_better_than_the_raw_average() -> None:
    sim = simulate_gamma_gamma(20_000, p=6.0, q=4.0, v=15.0, seed=5)
    model = GammaGamma().fit(sim["x"], sim["m"])
    spend = model.expected_spend(sim["x"], sim["m"])
    truth = sim["true_mean"]
    # the posterior mean is the least-squares estimate; here it cuts the raw average's error by ~19%
    assert np.mean((spend - truth) ** 2) < 0.9 * np.mean((sim["m"] - truth) ** 2)
    decile = np.digitize(spend, np.quantile(spend, np.linspace(0.1, 0.9, 9)))
    for d in range(10):
        group = decile == d
        se = truth[group].std(ddof=1) / math.sqrt(group.sum())
        assert abs(spend[group].mean() - truth[group].mean()) <= 4 * se + 0.03 * truth[group].mean(), d


# --------------------------------------------------------------------------- the model's definition


def _gamma_beta_integral(r: float, alpha: float, a: float, b: float, integrand, lam_peak: float) -> float:
    """Integral of integrand(lam, p) against the Gamma(r, rate alpha) x Beta(a, b) mixing densities."""
    lam_top = 60.0 * max(lam_peak, r / alpha)
    log_gamma_norm = r * math.log(alpha) - math.lgamma(r)
    log_beta_norm = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)

    def inner(p: float) -> float:
        def f(lam: float) -> float:
            density = math.exp(log_gamma_norm + (r - 1) * math.log(lam) - alpha * lam)
            return integrand(lam, p) * density

        return integrate.quad(f, 0.0, lam_top, points=[lam_peak], limit=200, epsabs=0, epsrel=1e-9)[0]

    def outer(p: float) -> float:
        return inner(p) * math.exp(log_beta_norm + (a - 1) * math.log(p) + (b - 1) * math.log1p(-p))

    return integrate.quad(outer, 0.0, 1.0, limit=200, epsabs=0, epsrel=1e-9)[0]


def _individual_likelihood(x: float, t_x: float, age: float):
    """FHL's L(lambda, p | x, t_x, T): still alive after x repeats, or left right after the x-th."""

    def alive(lam: float, p: float) -> float:
        return (1 - p) ** x * lam**x * math.exp(-lam * age)

    def left(lam: float, p: float) -> float:
        return p * (1 - p) ** (x - 1) * lam**x * math.exp(-lam * t_x) if x > 0 else 0.0

    return alive, left


CUSTOMERS_BY_HAND = [(0.0, 0.0, 100.0), (1.0, 30.0, 100.0), (4.0, 200.0, 365.0), (12.0, 650.0, 730.0)]


@pytest.mark.parametrize(("x", "t_x", "age"), CUSTOMERS_BY_HAND)
def test_log_likelihood_equals_the_integral_over_purchase_rate_and_dropout(
    x: float, t_x: float, age: float
) -> None:
    r, alpha, a, b = TRUTH.values()
    alive, left = _individual_likelihood(x, t_x, age)
    peak = x / max(t_x, 1.0)
    want = _gamma_beta_integral(r, alpha, a, b, lambda lam, p: alive(lam, p) + left(lam, p), peak)
    got = BetaGeo.from_params(**TRUTH).log_likelihood([x], [t_x], [age])[0]
    assert got == pytest.approx(math.log(want), abs=1e-6)


@pytest.mark.parametrize(("x", "t_x", "age"), CUSTOMERS_BY_HAND[1:])
def test_p_alive_is_bayes_rule_over_purchase_rate_and_dropout(x: float, t_x: float, age: float) -> None:
    r, alpha, a, b = TRUTH.values()
    alive, left = _individual_likelihood(x, t_x, age)
    peak = x / max(t_x, 1.0)
    p_alive = _gamma_beta_integral(r, alpha, a, b, alive, peak)
    p_left = _gamma_beta_integral(r, alpha, a, b, left, peak)
    got = BetaGeo.from_params(**TRUTH).p_alive([x], [t_x], [age])[0]
    assert got == pytest.approx(p_alive / (p_alive + p_left), rel=1e-6)


@pytest.mark.parametrize("a", [0.3, 0.8, 1.0, 1.0 + 2e-4, 1.7, 6.0])
@pytest.mark.parametrize(("x", "t_x", "age", "t"), [(0.0, 0.0, 60.0, 90.0), (3.0, 100.0, 300.0, 365.0)])
def test_expected_purchases_equal_the_integral_of_the_models_story(
    a: float, x: float, t_x: float, age: float, t: float
) -> None:
    # Alive at T after x repeats, a customer with (lambda, p) makes (1 - exp(-lambda p t)) / p
    # purchases in the next t days on average; weigh that by the posterior of (lambda, p).
    r, alpha, b = TRUTH["r"], TRUTH["alpha"], TRUTH["b"]
    alive, left = _individual_likelihood(x, t_x, age)
    peak = max(x, 1.0) / age

    def future(lam: float, p: float) -> float:
        return alive(lam, p) * -math.expm1(-lam * p * t) / p

    evidence = _gamma_beta_integral(r, alpha, a, b, lambda lam, p: alive(lam, p) + left(lam, p), peak)
    want = _gamma_beta_integral(r, alpha, a, b, future, peak) / evidence
    got = BetaGeo.from_params(r, alpha, a, b).expected_purchases(t, [x], [t_x], [age])[0]
    assert got == pytest.approx(want, rel=1e-5)


def test_expected_purchases_at_the_removable_singularity_a_plus_b_equal_one() -> None:
    # With x = 0 and a + b = 1 the closed form is 0 * inf; the value must still be the integral's.
    r, alpha, a, b, t, age = 0.75, 40.0, 0.3, 0.7, 90.0, 60.0
    alive, _ = _individual_likelihood(0.0, 0.0, age)

    def future(lam: float, p: float) -> float:
        return alive(lam, p) * -math.expm1(-lam * p * t) / p

    want = _gamma_beta_integral(r, alpha, a, b, future, 1.0 / age) / _gamma_beta_integral(
        r, alpha, a, b, alive, 1.0 / age
    )
    got = BetaGeo.from_params(r, alpha, a, b).expected_purchases(t, [0.0], [0.0], [age])[0]
    assert got == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize(("x", "m"), [(1.0, 12.0), (4.0, 35.0), (30.0, 28.0)])
def test_gamma_gamma_log_likelihood_is_the_density_of_a_mean_of_gamma_orders(x: float, m: float) -> None:
    # The mean of x Gamma(p, rate nu) orders is Gamma(p x, rate nu x); integrate nu over Gamma(q, rate v).
    p, q, v = 6.0, 4.0, 15.0

    def joint(nu: float) -> float:
        mean_density = math.exp(
            p * x * math.log(nu * x) - math.lgamma(p * x) + (p * x - 1) * math.log(m) - nu * x * m
        )
        return mean_density * math.exp(q * math.log(v) - math.lgamma(q) + (q - 1) * math.log(nu) - v * nu)

    peak = (p * x + q - 1) / (x * m + v)
    want = integrate.quad(joint, 0.0, 50 * peak, points=[peak], limit=200, epsabs=0, epsrel=1e-10)[0]
    got = GammaGamma.from_params(p, q, v).log_likelihood([x], [m])[0]
    assert got == pytest.approx(math.log(want), abs=1e-7)


def test_expected_purchases_far_ahead_approach_p_alive_times_mean_purchases_before_dropout() -> None:
    # For t far beyond alpha + T, everyone still alive will have left: they make 1/p purchases on
    # average, E[1/p | Beta(a, b + x)] = (a + b + x - 1) / (a - 1). These parameters make scipy's
    # hypergeometric function fail, so this also checks the quadrature the library falls back on.
    model = BetaGeo.from_params(r=5.0, alpha=40.0, a=8.0, b=0.5)
    x, t_x, age = np.array([100.0, 2000.0]), np.array([600.0, 2900.0]), np.array([700.0, 3000.0])
    got = model.expected_purchases(1e5, x, t_x, age)
    want = model.p_alive(x, t_x, age) * (8.0 + 0.5 + x - 1) / (8.0 - 1)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_p_alive_is_one_without_a_repeat_purchase() -> None:
    model = BetaGeo.from_params(**TRUTH)
    assert np.all(model.p_alive([0, 0, 0], [0, 0, 0], [0, 30, 5000]) == 1.0)


def test_p_alive_rises_with_recency_and_falls_with_time_since() -> None:
    model = BetaGeo.from_params(**TRUTH)
    t_x = np.linspace(0, 365, 50)
    p = model.p_alive(np.full(50, 5.0), t_x, np.full(50, 365.0))
    assert np.all(np.diff(p) > 0)
    assert p[-1] > 0.5 > p[0]  # bought on the snapshot day vs five repeats, then a year of silence
    later = model.p_alive(np.full(50, 5.0), np.full(50, 100.0), np.linspace(100, 800, 50))
    assert np.all(np.diff(later) < 0)


def test_expected_purchases_grow_with_the_horizon_from_zero() -> None:
    model = BetaGeo.from_params(**TRUTH)
    horizons = np.array([0.0, 1, 7, 30, 90, 365, 3650, 36500])
    e = np.array([model.expected_purchases(t, [4.0], [200.0], [365.0])[0] for t in horizons])
    assert e[0] == 0.0
    assert np.all(np.diff(e) > 0)


@pytest.mark.parametrize("a", [0.05, 0.5, 1 - 1e-4, 1.0, 1 + 1e-4, 1.5, 20.0])
@pytest.mark.parametrize("b", [0.05, 0.95, 2.5, 200.0])
def test_expected_purchases_are_finite_and_bounded_for_any_valid_input(a: float, b: float) -> None:
    # b = 0.95 with a = 0.05 puts a + b + x - 1 exactly at 0 for x = 0, a removable singularity.
    x = np.array([0, 0, 1, 3, 10, 100, 5000, 5, 0, 1.0])
    age = np.array([0, 500, 30, 200, 365, 700, 9000, 1e5, 1e5, 5.0])
    t_x = np.where(x > 0, np.minimum(age, [0, 0, 10, 150, 300, 690, 8999, 10, 0, 5.0]), 0.0)
    for r, alpha in [(0.1, 0.5), (0.75, 40.0), (5.0, 3000.0)]:
        model = BetaGeo.from_params(r, alpha, a, b)
        for t in (0.5, 90.0, 365.0, 1e5):
            e = model.expected_purchases(t, x, t_x, age)
            assert np.all(np.isfinite(e)), (r, alpha, t)
            # never more than a no-dropout customer at the posterior mean rate would buy
            assert np.all((e >= 0) & (e <= t * (r + x) / (alpha + age) * (1 + 1e-9))), (r, alpha, t)


def test_expected_purchases_are_continuous_through_a_equal_one() -> None:
    # a = 1 is a removable singularity of the closed form; the value there must sit on the curve.
    args = (90.0, [0.0, 3.0, 40.0], [0.0, 100.0, 300.0], [200.0, 300.0, 365.0])
    e = {
        a: BetaGeo.from_params(0.75, 40.0, a, 2.5).expected_purchases(*args)
        for a in (1 - 4e-3, 1 - 1e-7, 1.0, 1 + 1e-7, 1 + 4e-3)
    }
    np.testing.assert_allclose(e[1 - 1e-7], e[1.0], rtol=1e-6)
    np.testing.assert_allclose(e[1 + 1e-7], e[1.0], rtol=1e-6)
    # outside the interpolated gap on both sides: the midpoint equals the value at a = 1 to O(h^2)
    np.testing.assert_allclose((e[1 - 4e-3] + e[1 + 4e-3]) / 2, e[1.0], rtol=2e-5)
    assert np.all(e[1 - 4e-3] > e[1.0]) and np.all(e[1.0] > e[1 + 4e-3])  # more dropout-prone with a


def test_the_fit_is_a_maximum_of_the_likelihood(world: dict[str, np.ndarray], fitted: BetaGeo) -> None:
    model = BetaGeo(max_rows=None).fit(world["x"], world["t_x"], world["T"])
    args = (world["x"], world["t_x"], world["T"])
    best = model.log_likelihood(*args).sum()
    for name in TRUTH:
        for step in (0.99, 1.01):
            moved = BetaGeo.from_params(**{**model.params_, name: model.params_[name] * step})
            assert moved.log_likelihood(*args).sum() < best, (name, step)


def test_the_reported_fit_likelihood_is_the_mean_per_customer_log_likelihood(
    world: dict[str, np.ndarray],
) -> None:
    args = (world["x"], world["t_x"], world["T"])
    model = BetaGeo(max_rows=None).fit(*args)
    assert model.fit_info_["mean_log_likelihood"] == pytest.approx(
        model.log_likelihood(*args).mean(), rel=1e-12
    )
    sim = simulate_gamma_gamma(2_000, p=6.0, q=4.0, v=15.0, seed=9)
    x = np.concatenate([[0.0, 0.0], sim["x"]])  # customers without repeat orders are left out of the fit
    m = np.concatenate([[0.0, 5.0], sim["m"]])
    spend = GammaGamma().fit(x, m)
    assert spend.fit_info_["fit_rows"] == 2_000
    assert spend.fit_info_["mean_log_likelihood"] == pytest.approx(
        spend.log_likelihood(x, m)[2:].mean(), rel=1e-12
    )


def test_gamma_gamma_expected_spend_mixes_population_and_own_mean() -> None:
    model = GammaGamma.from_params(p=6.0, q=4.0, v=15.0)
    population = 6.0 * 15.0 / (4.0 - 1.0)
    spend = model.expected_spend([0, 1, 1, 10_000], [123.0, 60.0, 10.0, 50.0])
    assert spend[0] == pytest.approx(population)  # a customer with no repeat order: the population mean
    weight = 6.0 / (6.0 + 4.0 - 1.0)  # p x / (p x + q - 1) on the customer's own mean, x = 1
    assert spend[1] == pytest.approx(weight * 60.0 + (1 - weight) * population)
    assert population > spend[2] > 10.0
    assert spend[3] == pytest.approx(50.0, rel=1e-3)


def test_gamma_gamma_refuses_to_predict_without_a_finite_population_mean() -> None:
    with pytest.raises(ValueError, match=r"q = 0.8 is <= 1"):
        GammaGamma.from_params(p=6.0, q=0.8, v=15.0).expected_spend([2], [50.0])


# --------------------------------------------------------------------------- the estimator's contract


def test_json_round_trip_keeps_every_prediction(world: dict[str, np.ndarray], fitted: BetaGeo) -> None:
    args = (world["x"][:500], world["t_x"][:500], world["T"][:500])
    again = BetaGeo.from_json(fitted.to_json())
    assert again.params_ == fitted.params_
    assert again.fit_info_ == fitted.fit_info_
    np.testing.assert_array_equal(again.expected_purchases(30, *args), fitted.expected_purchases(30, *args))
    gg = GammaGamma.from_params(6.0, 4.0, 15.0)
    assert GammaGamma.from_json(gg.to_json()).expected_spend([3], [20.0]) == gg.expected_spend([3], [20.0])
    with pytest.raises(ValueError, match="not a stored GammaGamma"):
        GammaGamma.from_json(fitted.to_json())
    with pytest.raises(ValueError, match="lacks parameters"):
        BetaGeo.from_json(json.dumps({**json.loads(fitted.to_json()), "params": {"r": 1.0}}))


def test_subsample_is_deterministic_and_capped(world: dict[str, np.ndarray]) -> None:
    args = (world["x"], world["t_x"], world["T"])
    one = BetaGeo(max_rows=5_000).fit(*args, seed=1)
    same = BetaGeo(max_rows=5_000).fit(*args, seed=1)
    other = BetaGeo(max_rows=5_000).fit(*args, seed=2)
    assert one.params_ == same.params_
    assert one.params_ != other.params_
    assert one.fit_info_["fit_rows"] == 5_000 and one.fit_info_["rows"] == CUSTOMERS


def test_weights_count_rows_as_repeated_customers(world: dict[str, np.ndarray]) -> None:
    # in whole days many customers share a history: one row each with its count fits the same model
    rows = np.column_stack([world["x"], np.floor(world["t_x"]), np.ceil(world["T"])])[:5_000]
    distinct, counts = np.unique(rows, axis=0, return_counts=True)
    assert len(distinct) < len(rows)
    weighted = BetaGeo().fit(*distinct.T, weights=counts)
    expanded = BetaGeo().fit(*rows.T)
    for name in TRUTH:
        assert weighted.params_[name] == pytest.approx(expanded.params_[name], rel=1e-5), name


def test_a_fit_the_data_cannot_identify_warns() -> None:
    # five histories cannot tell the gamma's shape from its scale: the optimiser runs to a bound
    x, t_x, age = [0, 1, 3, 7, 2.0], [0, 20, 90, 300, 10.0], [50, 60, 200, 320, 400.0]
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        model = BetaGeo().fit(x, t_x, age)
    assert not model.fit_info_["converged"]


def test_missing_values_in_nullable_columns_are_refused_by_row() -> None:
    x = pd.Series([1, None, 3], dtype="Int64")  # what a warehouse's nullable integer column becomes
    with pytest.raises(ValueError, match="row 1: frequency is nan"):
        BetaGeo.from_params(**TRUTH).p_alive(x, pd.Series([5.0, 0, 9]), pd.Series([10.0, 10, 10]))


def test_series_in_give_series_out_with_the_same_index() -> None:
    index = pd.Index(["c1", "c2", "c3"], name="contact_id")
    x, t_x, age = (pd.Series(v, index=index) for v in ([0.0, 2, 5], [0.0, 40, 300], [10.0, 100, 365]))
    out = BetaGeo.from_params(**TRUTH).p_alive(x, t_x, age)
    assert isinstance(out, pd.Series) and out.index.equals(index)
    assert isinstance(BetaGeo.from_params(**TRUTH).p_alive(x.to_numpy(), t_x, age), np.ndarray)


@pytest.mark.parametrize(
    ("x", "t_x", "age", "message"),
    [
        ([1, 2, 3], [10, 50, 20], [100, 100, 10], r"row 2: recency \(20\) is greater than T \(10\)"),
        ([1, -1, 3], [10, 0, 5], [100, 100, 10], "row 1: frequency is -1; .* cannot be negative"),
        ([1, 2, np.nan], [10, 5, 5], [100, 100, 10], "row 2: frequency is nan"),
        ([1, 2, 3], [10, np.nan, 5], [100, 100, 10], "row 1: recency is nan"),
        ([1, 2, 3], [10, 5, 5], [100, np.inf, 10], "row 1: T is inf"),
        ([1, 0, 3], [10, 5, 5], [100, 100, 10], "row 1: frequency is 0 but recency is 5"),
        ([1, 2.5, 3], [10, 5, 5], [100, 100, 10], "row 1: frequency is 2.5; .* whole number"),
        ([1, 2, 3], [10, 5], [100, 100, 10], r"lengths differ \(frequency=3, recency=2, T=3\)"),
    ],
)
def test_bad_rows_are_refused_by_row_and_reason(x: list, t_x: list, age: list, message: str) -> None:
    model = BetaGeo.from_params(**TRUTH)
    for call in (
        lambda: BetaGeo().fit(x, t_x, age),
        lambda: model.p_alive(x, t_x, age),
        lambda: model.expected_purchases(30, x, t_x, age),
    ):
        with pytest.raises(ValueError, match=message):
            call()


def test_horizons_are_one_for_all_or_one_per_customer() -> None:
    model = BetaGeo.from_params(**TRUTH)
    per_customer = model.expected_purchases([30.0, 60.0], [1, 1], [5, 5], [10, 10])
    assert per_customer[1] > per_customer[0]
    with pytest.raises(ValueError, match=r"one per customer \(2\), got 3"):
        model.expected_purchases([30.0, 60.0, 90.0], [1, 1], [5, 5], [10, 10])
    with pytest.raises(ValueError, match="row 1: t is -5"):
        model.expected_purchases([30.0, -5.0], [1, 1], [5, 5], [10, 10])


def test_the_first_bad_row_is_named_whatever_is_wrong_with_later_ones() -> None:
    with pytest.raises(ValueError, match="row 0: recency"):
        BetaGeo.from_params(**TRUTH).p_alive([1, -1], [20, 0], [10, 5])


def test_gamma_gamma_refuses_non_positive_spend_by_row() -> None:
    with pytest.raises(ValueError, match=r"row 2: monetary_value is 0; .* positive"):
        GammaGamma().fit([1, 3, 2, 0], [10.0, 20.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="row 1: monetary_value is nan"):
        GammaGamma.from_params(6.0, 4.0, 15.0).expected_spend([0, 1], [np.nan, np.nan])
    # a customer without repeat orders has no mean to check: theirs is ignored
    assert GammaGamma.from_params(6.0, 4.0, 15.0).expected_spend([0], [np.nan])[0] == pytest.approx(30.0)


def test_fit_refuses_data_without_a_repeat_purchase() -> None:
    with pytest.raises(ValueError, match="none of the 3 customers has a repeat purchase"):
        BetaGeo().fit([0, 0, 0], [0, 0, 0], [10, 20, 30])
