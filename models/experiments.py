"""Experiment statistics for measured campaign results: rates with intervals, uplift against a holdout,
revenue differences, a sample-ratio check, an always-valid sequential test and a Bayesian probability
of being best.

Pure functions over counts and arrays (numpy/scipy): nothing here reads the warehouse, so
`clarion results` and the tests feed them the same numbers. Counts may be scalars or numpy arrays
(element-wise, for many campaigns or simulations at once).

Method, as the experimentation platforms state theirs (frequentist unless named otherwise):

=================================  ==========================================================
question                           method
=================================  ==========================================================
rate of one arm (open, click,      Wilson score interval: keeps its coverage near 0 and 1,
conversion)                        where e-mail rates live and the Wald interval collapses
uplift vs holdout, absolute        Newcombe's hybrid score interval (method 10 of Newcombe
                                   1998, Stat Med 17:873): two Wilson intervals combined
uplift vs holdout, relative        Katz log risk-ratio interval (undefined on a zero count)
revenue per customer               Welch t interval; CUPED with a pre-period covariate
                                   when one is given (Deng et al. 2013)
was the split what was planned     sample-ratio-mismatch chi-square test, flagged below
                                   SRM_ALPHA (results of a flagged experiment are not trusted)
which variant wins                 mSPRT always-valid p-value and confidence sequence
                                   (``sequential_test``): safe to look every day
how likely each variant is best    Beta(1, 1) posteriors, seeded Monte Carlo (``prob_best``):
                                   a description, not the decision
=================================  ==========================================================

Decision rule (``DECISION_RULE``): declare a winner only when the always-valid p-value < alpha; the
loser is retired. Until then the experiment keeps running, however good a variant looks.

Error rates:

* every fixed-horizon interval covers the truth with probability 1 - alpha at one planned look
  (checked by simulation in tests/test_experiments.py);
* the sequential test's false-positive rate is at most alpha over *any* number of looks, stopped
  whenever (Ville's inequality; the estimated variance makes this asymptotic). Measured in the tests
  on 2,000 simulated experiments with no effect, 5% conversion, read at 30 looks up to 9,000
  customers per arm: 1.5% declared a winner, where a fixed-horizon z-test read at the same looks
  declared one in 27.7% (the peeking problem a daily report would have);
* the price is width: at the planned sample size the always-valid interval is about 1.55 times the
  fixed-horizon one (alpha = 0.05). Measured power for 5.0% -> 6.5% at 9,000 customers per arm and
  30 looks: 0.93, half of the winners declared by the 14th look;
* SRM: a false alarm in 0.1% of fair experiments per check (SRM_ALPHA).

The sequential test (Johari, Koomen, Pekelis & Walsh, "Always valid inference", Operations
Research 2022; Robbins' normal mixture). The difference of conversion rates d = p_t - p_c has the
estimated variance V = p_t (1 - p_t) / n_t + p_c (1 - p_c) / n_c. Mixing the alternative over
theta ~ N(0, tau^2) gives the likelihood ratio against theta_0

    Lambda_n(theta_0) = sqrt(V / (V + tau^2)) * exp(tau^2 (d - theta_0)^2 / (2 V (V + tau^2))),

a martingale under the null, so P(Lambda_n >= 1/alpha at any n) <= alpha. The always-valid p-value
is p_n = min over looks k <= n of min(1, 1 / Lambda_k(0)), so it never rises; the always-valid
interval is the running intersection over looks of {theta_0 : Lambda_k(theta_0) < 1 / alpha},

    d_k +/- sqrt(V_k (1 + r_k) / r_k * (2 log(1 / alpha) + log(1 + r_k))),   r_k = tau^2 / V_k,

so p_n < alpha exactly when 0 is outside the interval (the test and the interval never disagree).

Choosing tau^2 for conversion rates: an absolute tau (say 1 point) would suit a 5% rate and be far
too wide for 0.5%, so tau is set relative to the data's own noise, as GrowthBook does (Waudby-Smith
et al. 2023, "Time-uniform central limit theory and asymptotic confidence sequences", eq. 161):
tau^2 = rho^2 s^2 with s^2 = V (n_t + n_c) the per-customer variance of the difference, i.e.
r = tau^2 / V = (n_t + n_c) rho^2. rho is chosen so the interval is narrowest when the two arms hold
``planned_n`` customers together: r* = planned_n rho^2 solves r = 2 log(1 / alpha) + log(1 + r)
(r* = 8.2 for alpha = 0.05; GrowthBook's closed form is one step of that fixed point). With
planned_n = 10,000 (two arms of 5,000), tau is about 1.2 percentage points at a 5% conversion rate and
0.4 points at 0.5%: a prior on effects of the size e-mail campaigns have, scaled to the rate. A wrong
planned_n costs width, never validity: when the arms reach n customers, a planned_n 10 times too large
widens the interval by 7%, one 10 times too small by 26%.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special, stats

from clarion.errors import ClarionError

DECISION_RULE = "declare a winner only when the always-valid p-value < alpha; the loser is retired"
SRM_ALPHA = 0.001  # below this, the split is not the planned one: results are not trusted
DEFAULT_PLANNED_N = 10_000  # customers in both arms together where the sequential interval is tightest
DEFAULT_DRAWS = 20_000  # Monte Carlo draws of prob_best: standard error at most 0.0035 per arm


class ExperimentDataError(ClarionError, ValueError):
    """Counts or values that cannot describe an experiment; the message names the field and position."""


# --------------------------------------------------------------------------- inputs


def _z(alpha: float) -> float:
    if not 0 < alpha < 1:
        raise ExperimentDataError(f"alpha must be between 0 and 1 (got {alpha})")
    return float(special.ndtri(1 - alpha / 2))


def _where(arr: np.ndarray, bad: np.ndarray) -> str:
    index = np.argwhere(bad)[0]
    return f" at position {tuple(int(i) for i in index)}" if arr.ndim else ""


def _counts(
    successes: Any, n: Any, what: str = "successes", n_name: str = "n"
) -> tuple[np.ndarray, np.ndarray]:
    """Counts as float arrays, refused (naming the field and position) unless 0 <= successes <= n."""
    s = np.asarray(successes, dtype=float)
    total = np.asarray(n, dtype=float)
    for name, arr in ((what, s), (n_name, total)):
        bad = ~np.isfinite(arr) | (arr < 0) | (arr != np.round(arr))
        if bad.any():
            raise ExperimentDataError(
                f"{name} must be whole numbers >= 0 (got {float(arr[bad].flat[0])}{_where(arr, bad)}): "
                "pass counts of customers, not rates"
            )
    s, total = np.broadcast_arrays(s, total)
    bad = s > total
    if bad.any():
        raise ExperimentDataError(
            f"{what} ({s[bad].flat[0]:.0f}) exceed {n_name} ({total[bad].flat[0]:.0f}){_where(s, bad)}: "
            "successes are counted among the arm's own customers"
        )
    return s, total


def _out(x: np.ndarray) -> Any:
    """A 0-d result as a float, anything else as the array."""
    x = np.asarray(x, dtype=float)
    return float(x) if x.ndim == 0 else x


# --------------------------------------------------------------------------- fixed-horizon intervals


def _wilson(s: np.ndarray, n: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(invalid="ignore", divide="ignore"):
        p = s / n
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
        low = np.where(s == 0, 0.0, centre - half)  # exact 0 and 1 at the edges, not 1e-17
        high = np.where(s == n, 1.0, centre + half)
    empty = n == 0  # no customers: the rate can be anything
    return np.where(empty, 0.0, low), np.where(empty, 1.0, high)


def proportion_interval(successes: Any, n: Any, alpha: float = 0.05) -> tuple[Any, Any]:
    """Wilson score interval for a rate (successes of n customers): unlike the textbook p +/- z se it
    stays inside [0, 1] and keeps its coverage for rare events, and it is what the uplift interval is
    built from. (0, 1) when n is 0."""
    s, total = _counts(successes, n)
    low, high = _wilson(s, total, _z(alpha))
    return _out(low), _out(high)


@dataclass(frozen=True)
class Uplift:
    """Treatment minus control: absolute (rate points) and relative (rate ratio - 1), each with its
    interval. NaN where undefined: an empty arm; relative figures on a control rate of 0; the relative
    interval when either arm has no conversion (report the absolute interval then)."""

    absolute: Any
    abs_low: Any
    abs_high: Any
    relative: Any
    rel_low: Any
    rel_high: Any


def uplift(conv_t: Any, n_t: Any, conv_c: Any, n_c: Any, alpha: float = 0.05) -> Uplift:
    """Uplift of the treated over the holdout: Newcombe's hybrid score interval for the difference
    (good coverage at small rates and small holdouts, where the Wald interval is too narrow) and the
    Katz log-ratio interval for the relative uplift."""
    xt, nt = _counts(conv_t, n_t, "conv_t", "n_t")
    xc, nc = _counts(conv_c, n_c, "conv_c", "n_c")
    z = _z(alpha)
    lt, ut = _wilson(xt, nt, z)
    lc, uc = _wilson(xc, nc, z)
    with np.errstate(invalid="ignore", divide="ignore"):
        pt, pc = xt / nt, xc / nc
        diff = pt - pc
        low = diff - np.sqrt((pt - lt) ** 2 + (uc - pc) ** 2)
        high = diff + np.sqrt((ut - pt) ** 2 + (pc - lc) ** 2)
        ratio = np.where(pc > 0, pt / pc, np.nan)
        se = np.sqrt(1 / xt - 1 / nt + 1 / xc - 1 / nc)
        defined = (xt > 0) & (xc > 0)
        rel_low = np.where(defined, ratio * np.exp(-z * se) - 1, np.nan)
        rel_high = np.where(defined, ratio * np.exp(z * se) - 1, np.nan)
    return Uplift(_out(diff), _out(low), _out(high), _out(ratio - 1), _out(rel_low), _out(rel_high))


@dataclass(frozen=True)
class MeanDifference:
    """Mean of the treated minus mean of the control (e.g. revenue per customer), with its interval,
    two-sided p-value, Welch degrees of freedom and the share of variance CUPED removed (0 without)."""

    difference: float
    low: float
    high: float
    p_value: float
    df: float
    variance_reduction: float


def _values(name: str, values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=float).ravel()
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ExperimentDataError(
            f"{name} holds a missing or infinite value at position {int(np.argmax(bad))}: "
            "count a customer without revenue as 0, not as missing"
        )
    if arr.size < 2:
        raise ExperimentDataError(f"{name} needs at least 2 customers (got {arr.size})")
    return arr


def mean_difference(
    x_t: Any, x_c: Any, alpha: float = 0.05, pre_t: Any = None, pre_c: Any = None
) -> MeanDifference:
    """Welch's interval for a difference of means (unequal variances and arm sizes, as a 90/10 holdout
    has). With each customer's pre-period value (``pre_t``, ``pre_c``: e.g. revenue in the weeks before
    exposure), CUPED first removes the part of the outcome the pre-period predicts,
    y - theta (x - mean x) with theta = cov(y, x) / var(x) over both arms: the same difference in
    expectation (randomisation makes x independent of the arm) with a variance smaller by the squared
    correlation, so a narrower interval for the same customers."""
    _z(alpha)  # refuses an alpha outside (0, 1)
    yt, yc = _values("x_t", x_t), _values("x_c", x_c)
    reduction = 0.0
    if (pre_t is None) != (pre_c is None):
        raise ExperimentDataError("give pre-period values for both arms (pre_t and pre_c) or for neither")
    if pre_t is not None:
        xt, xc = _values("pre_t", pre_t), _values("pre_c", pre_c)
        if xt.size != yt.size or xc.size != yc.size:
            raise ExperimentDataError(
                f"pre-period values must match the customers one to one (x_t {yt.size} vs pre_t "
                f"{xt.size}, x_c {yc.size} vs pre_c {xc.size})"
            )
        y, x = np.concatenate([yt, yc]), np.concatenate([xt, xc])
        var_x = x.var(ddof=1)
        if var_x > 0:
            theta = np.cov(y, x, ddof=1)[0, 1] / var_x
            before = y.var(ddof=1)
            yt, yc = yt - theta * (xt - x.mean()), yc - theta * (xc - x.mean())
            after = np.concatenate([yt, yc]).var(ddof=1)
            reduction = float(1 - after / before) if before > 0 else 0.0
    moments_t = Moments(yt.size, float(yt.mean()), float(yt.var(ddof=1)))
    moments_c = Moments(yc.size, float(yc.mean()), float(yc.var(ddof=1)))
    return welch(moments_t, moments_c, alpha, reduction)


@dataclass(frozen=True)
class Moments:
    """An arm's count, mean and sample variance (ddof 1): all Welch's interval reads of its customers,
    so a warehouse can compute them where the rows are (``avg``, ``var_samp``) and send three numbers."""

    n: int
    mean: float
    variance: float


def welch(t: Moments, c: Moments, alpha: float = 0.05, reduction: float = 0.0) -> MeanDifference:
    """Welch's interval for the difference of two arms' means, from their moments (``mean_difference``
    computes them from each customer's value, and CUPED before that)."""
    _z(alpha)
    for name, m in (("treated", t), ("control", c)):
        if m.n < 2:
            raise ExperimentDataError(f"the {name} arm needs at least 2 customers (got {m.n})")
        if not (np.isfinite(m.mean) and np.isfinite(m.variance)):
            raise ExperimentDataError(f"the {name} arm's mean or variance is missing or infinite")
    vt, vc = max(t.variance, 0.0) / t.n, max(c.variance, 0.0) / c.n
    diff = float(t.mean - c.mean)
    se = float(np.sqrt(vt + vc))
    if se == 0:  # every customer alike in both arms: the difference is known exactly
        return MeanDifference(diff, diff, diff, 1.0 if diff == 0 else 0.0, float("inf"), reduction)
    df = float((vt + vc) ** 2 / (vt**2 / (t.n - 1) + vc**2 / (c.n - 1)))
    half = float(stats.t.ppf(1 - alpha / 2, df)) * se
    p = float(2 * stats.t.sf(abs(diff) / se, df))
    return MeanDifference(diff, diff - half, diff + half, p, df, reduction)


def srm(observed_counts: Any, expected_shares: Any) -> Any:
    """Sample-ratio mismatch: the chi-square p-value of the arms' sizes against the planned shares
    (e.g. 90/10 for a 10% holdout). A p-value below SRM_ALPHA means assignment or tracking is broken
    (a filter that drops one arm's customers, a bug in the hash): the experiment's results are then not
    trusted, however significant they look. Arms along the last axis (a 2-D array checks many
    experiments at once); 1.0 when there are no customers yet."""
    obs = np.asarray(observed_counts, dtype=float)
    shares = np.asarray(expected_shares, dtype=float).ravel()
    if obs.ndim == 0 or obs.shape[-1] < 2 or obs.shape[-1] != shares.size:
        raise ExperimentDataError(
            f"srm needs one planned share per arm and at least two arms (got counts of shape {obs.shape} "
            f"and {shares.size} shares)"
        )
    _counts(obs, obs, "observed_counts")
    if not (np.all(np.isfinite(shares)) and np.all(shares > 0)):
        raise ExperimentDataError(f"expected_shares must all be > 0 (got {shares.tolist()})")
    total = obs.sum(axis=-1, keepdims=True)
    expected = shares / shares.sum() * total
    with np.errstate(invalid="ignore", divide="ignore"):
        statistic = np.sum((obs - expected) ** 2 / expected, axis=-1)
    p = np.where(total[..., 0] > 0, special.chdtrc(shares.size - 1, statistic), 1.0)
    return _out(p)


# --------------------------------------------------------------------------- the sequential test


def optimal_mixing_ratio(alpha: float) -> float:
    """r* = tau^2 / V at which the always-valid interval is narrowest: the root of
    r = 2 log(1/alpha) + log(1 + r) (a contraction, so a few fixed-point steps converge)."""
    c = -2.0 * np.log(alpha)
    r = c + np.log1p(c)
    for _ in range(50):
        r = c + np.log1p(r)
    return float(r)


@dataclass(frozen=True)
class SequentialResult:
    """The always-valid verdict after the last look, and its path over the looks (last axis).

    ``p_value`` never rises from one look to the next and ``low``/``high`` only narrow; ``significant``
    is ``p_value < alpha`` (the decision rule). ``difference`` is the latest p_t - p_c."""

    difference: Any
    p_value: Any
    low: Any
    high: Any
    significant: Any
    looks: int
    p_values: np.ndarray
    lows: np.ndarray
    highs: np.ndarray


def sequential_test(
    conv_t: Any,
    n_t: Any,
    conv_c: Any,
    n_c: Any,
    alpha: float = 0.05,
    planned_n: float = DEFAULT_PLANNED_N,
) -> SequentialResult:
    """Always-valid test of two conversion rates (mSPRT with a normal mixture; see the module
    docstring): read it after every batch of results and stop whenever it is significant, with a
    false-positive rate still at most alpha.

    Counts are cumulative, one entry per look in time order along the last axis (a scalar is one look;
    a 2-D array is many experiments at once). Passing every past look gives the running minimum
    p-value and running intersection interval; passing only today's counts is still valid, only less
    sharp. A look where either arm's variance estimate is 0 (no conversions yet) carries no evidence."""
    xt, nt = _counts(conv_t, n_t, "conv_t", "n_t")
    xc, nc = _counts(conv_c, n_c, "conv_c", "n_c")
    xt, nt, xc, nc = (np.atleast_1d(a) for a in np.broadcast_arrays(xt, nt, xc, nc))
    for name, arr in (("n_t", nt), ("conv_t", xt), ("n_c", nc), ("conv_c", xc)):
        back = np.diff(arr, axis=-1) < 0
        if back.any():
            raise ExperimentDataError(
                f"{name} must be cumulative (never smaller at a later look): it drops at look "
                f"{int(np.argwhere(back)[0][-1]) + 1}"
            )
    if not planned_n > 0:
        raise ExperimentDataError(f"planned_n must be > 0 (got {planned_n})")
    _z(alpha)  # refuses an alpha outside (0, 1)
    c = -2.0 * np.log(alpha)
    rho2 = optimal_mixing_ratio(alpha) / planned_n
    with np.errstate(invalid="ignore", divide="ignore"):
        pt, pc = xt / nt, xc / nc
        diff = pt - pc
        var = pt * (1 - pt) / nt + pc * (1 - pc) / nc
        informative = (nt > 0) & (nc > 0) & (var > 0)
        r = (nt + nc) * rho2  # tau^2 / V
        log_lambda = -0.5 * np.log1p(r) + r / (1 + r) * diff**2 / (2 * var)
        p_look = np.where(informative, np.minimum(1.0, np.exp(-log_lambda)), 1.0)
        half = np.sqrt(var * (1 + r) / r * (c + np.log1p(r)))
    low_look = np.where(informative, np.maximum(diff - half, -1.0), -1.0)
    high_look = np.where(informative, np.minimum(diff + half, 1.0), 1.0)
    p_path = np.minimum.accumulate(p_look, axis=-1)
    lows = np.maximum.accumulate(low_look, axis=-1)
    highs = np.minimum.accumulate(high_look, axis=-1)
    # Crossed bounds mean every theta was rejected at some look (coverage already failed, an event of
    # probability <= alpha): shown as the point where they crossed, which keeps "0 outside iff p < alpha".
    crossed = lows > highs
    mid = (lows + highs) / 2
    lows, highs = np.where(crossed, mid, lows), np.where(crossed, mid, highs)
    last = (..., -1)
    p_value = p_path[last]
    return SequentialResult(
        difference=_out(np.where(informative[last], diff[last], np.nan)),
        p_value=_out(p_value),
        low=_out(lows[last]),
        high=_out(highs[last]),
        significant=(p_value < alpha) if np.ndim(p_value) else bool(p_value < alpha),
        looks=int(p_path.shape[-1]),
        p_values=p_path,
        lows=lows,
        highs=highs,
    )


# --------------------------------------------------------------------------- Bayesian description


def prob_best(successes: Any, ns: Any, draws: int = DEFAULT_DRAWS, seed: int = 0) -> np.ndarray:
    """Probability that each arm has the highest conversion rate, under independent Beta(1, 1)
    priors (posterior Beta(1 + successes, 1 + n - successes)), by Monte Carlo with a seeded
    generator: the same counts and seed give the same figures. It describes the evidence for a
    report ("variant B is best with probability 0.93"); the decision stays with the sequential test."""
    if np.size(successes) != np.size(ns):
        raise ExperimentDataError(
            f"prob_best needs one count of customers per arm (got {np.size(successes)} successes and "
            f"{np.size(ns)} ns)"
        )
    s, total = _counts(np.ravel(successes), np.ravel(ns))
    if s.size < 2:
        raise ExperimentDataError(f"prob_best compares at least two arms (got {s.size})")
    if draws < 1:
        raise ExperimentDataError(f"draws must be >= 1 (got {draws})")
    rng = np.random.default_rng(seed)
    samples = rng.beta(1 + s, 1 + total - s, size=(int(draws), s.size))
    return np.bincount(samples.argmax(axis=1), minlength=s.size) / float(draws)
