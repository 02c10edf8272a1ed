"""Probabilistic customer-base models: BG/NBD (who is still a customer, how often they will buy) and
Gamma-Gamma (how much they spend per order).

Both are fitted by maximum likelihood on a vectorised closed-form likelihood with an analytic gradient
(scipy's L-BFGS-B on log-parameters), so a snapshot of a million customers fits in seconds on two cores
without a probabilistic-programming stack. They are the "classic" baseline the churn model is compared
with, and their predictions are features of that model, each fitted as of one snapshot day.

Units: every duration is in days (floats). ``frequency`` is the number of *repeat* purchases (the first
purchase is not counted), ``recency`` is the time from the first to the last purchase, ``T`` is the time
from the first purchase to the snapshot day.

References: Fader, Hardie & Lee (2005), "Counting your customers the easy way: an alternative to the
Pareto/NBD model", Marketing Science 24(2); Fader & Hardie (2008), "Computing P(alive) using the BG/NBD
model"; Fader & Hardie (2013), "Overcoming the BG/NBD model's #NUM! error problem"; Fader, Hardie & Lee
(2005), "RFM and CLV: using iso-value curves for customer base analysis", JMR 42(4), and Fader & Hardie
(2013), "The Gamma-Gamma model of monetary value".
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy import integrate, optimize, special

log = logging.getLogger(__name__)

ArrayLike = np.ndarray | pd.Series | list[float] | float
FORMAT = "clarion.clv/1"
# Log-parameter box: wide enough for any data in days, narrow enough that exp() stays finite. A fit
# that ends on it means the data cannot pin that parameter down (reported through a warning).
LOG_BOUND = 18.0
# Around a = 1 the expected-purchases formula is 0/0 (a removable singularity); inside this gap it is
# interpolated linearly in a between a = 1 -/+ gap, where the formula is still accurate to ~1e-12.
A_GAP = 1e-3
# Likewise around a + b + x - 1 = 0 (x = 0 only): the mean of the values at b -/+ C_STEP.
C_GAP, C_STEP = 1e-9, 1e-7


class ConvergenceWarning(UserWarning):
    """The optimiser stopped without meeting its tolerance, or a parameter sits on its bound."""


# --------------------------------------------------------------------------- inputs and checks


def _array(name: str, values: ArrayLike) -> np.ndarray:
    if isinstance(values, pd.Series | pd.Index):  # nullable columns: missing values become NaN, then refused
        arr = values.to_numpy(dtype=float, na_value=np.nan)
    else:
        arr = np.asarray(values, dtype=float)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (one value per customer), got shape {arr.shape}")
    return arr


def _same_length(**arrays: np.ndarray) -> None:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise ValueError(f"inputs must have one value per customer, but their lengths differ ({shown})")


def _first_bad(checks: list[tuple[np.ndarray, Callable[[int], str]]]) -> None:
    """Raise for the lowest row index that fails any check, with that row's first failing rule."""
    first = None
    for bad, _ in checks:
        hits = np.flatnonzero(bad)
        if hits.size and (first is None or hits[0] < first):
            first = int(hits[0])
    if first is None:
        return
    for bad, message in checks:
        if bad[first]:
            raise ValueError(f"row {first}: {message(first)}")


def _check_rfm(x: np.ndarray, t_x: np.ndarray, age: np.ndarray) -> None:
    _same_length(frequency=x, recency=t_x, T=age)
    with np.errstate(invalid="ignore"):
        _first_bad(
            [
                (~np.isfinite(x), lambda i: f"frequency is {x[i]}; every customer needs a finite value"),
                (~np.isfinite(t_x), lambda i: f"recency is {t_x[i]}; every customer needs a finite value"),
                (~np.isfinite(age), lambda i: f"T is {age[i]}; every customer needs a finite value"),
                (
                    x < 0,
                    lambda i: f"frequency is {x[i]:g}; it counts repeat purchases and cannot be negative",
                ),
                (
                    x != np.round(x),
                    lambda i: f"frequency is {x[i]:g}; it counts repeat purchases and must be a whole number",
                ),
                (
                    t_x < 0,
                    lambda i: f"recency is {t_x[i]:g}; days from first to last purchase cannot be negative",
                ),
                (
                    t_x > age,
                    lambda i: (
                        f"recency ({t_x[i]:g}) is greater than T ({age[i]:g}); recency runs from the first "
                        "to the last purchase and T from the first purchase to the snapshot day, so "
                        "recency <= T (check that the snapshot day is not before the last purchase)"
                    ),
                ),
                (
                    (x == 0) & (t_x != 0),
                    lambda i: (
                        f"frequency is 0 but recency is {t_x[i]:g}; a customer without a repeat purchase "
                        "has recency 0 (frequency counts repeat purchases, not all purchases)"
                    ),
                ),
            ]
        )


def _check_weights(weights: ArrayLike | None, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    w = _array("weights", weights)
    _same_length(rows=np.empty(n), weights=w)
    with np.errstate(invalid="ignore"):
        _first_bad([(~np.isfinite(w) | (w < 0), lambda i: f"weight is {w[i]}; weights must be >= 0")])
    if w.sum() <= 0:
        raise ValueError("weights sum to 0; at least one customer must carry weight")
    return w


def _subsample(n: int, max_rows: int | None, seed: int) -> np.ndarray | None:
    """Rows to fit on: all of them, or ``max_rows`` drawn without replacement with a seeded RNG. A
    likelihood over 200,000 customers already pins four parameters down far below their sampling
    noise, so fitting on more costs time and buys nothing."""
    if max_rows is None or n <= max_rows:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=max_rows, replace=False))


def _like(values: np.ndarray, template: Any, name: str) -> np.ndarray | pd.Series:
    """Data out as it came in: a Series keeps the caller's index, anything else gets an array."""
    if isinstance(template, pd.Series):
        return pd.Series(values, index=template.index, name=name)
    return values


def _minimise(
    objective: Callable[[np.ndarray], tuple[float, np.ndarray]], start: np.ndarray, names: list[str]
) -> tuple[np.ndarray, dict[str, Any]]:
    bounds = [(-LOG_BOUND, LOG_BOUND)] * len(start)
    res = optimize.minimize(
        objective,
        start,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-9},
    )
    theta = res.x
    on_bound = [n for n, v in zip(names, theta, strict=True) if abs(v) >= LOG_BOUND - 1e-6]
    # L-BFGS-B reports ABNORMAL when the line search cannot improve further at machine precision;
    # at a point whose gradient is ~0 that is a converged fit, not a failure.
    grad_norm = float(np.max(np.abs(res.jac)))
    converged = bool(res.success or grad_norm < 1e-5) and not on_bound
    if not converged:
        why = f"parameters on their bound: {on_bound}" if on_bound else res.message
        warnings.warn(
            f"maximum likelihood did not converge ({why}); the data may not identify the model "
            "(e.g. too few repeat purchases or too short a history)",
            ConvergenceWarning,
            stacklevel=3,
        )
    info = {"converged": converged, "iterations": int(res.nit), "max_abs_gradient": grad_norm}
    return theta, info


# --------------------------------------------------------------------------- BG/NBD


@dataclass(frozen=True)
class _BgData:
    """One fit's data, arranged so that each likelihood call is cheap. Customers without a repeat
    purchase contribute r log(alpha / (alpha + T)) only, so they are grouped by T; for the others every
    special function depends on x alone (a few hundred distinct values at most), leaving a handful of
    logs and exps per row."""

    once_age: np.ndarray  # distinct T of the customers with x == 0
    once_w: np.ndarray  # their total weight per T
    x: np.ndarray  # customers with x > 0 from here on
    t_x: np.ndarray
    age: np.ndarray
    w: np.ndarray
    ux: np.ndarray  # distinct frequencies
    inv: np.ndarray  # row -> index into ux
    wx: np.ndarray  # total weight per distinct frequency
    total: float

    @classmethod
    def build(cls, x: np.ndarray, t_x: np.ndarray, age: np.ndarray, w: np.ndarray) -> _BgData:
        once = x == 0
        once_age, once_inv = np.unique(age[once], return_inverse=True)
        rep = ~once
        ux, inv = np.unique(x[rep], return_inverse=True)
        return cls(
            once_age,
            np.bincount(once_inv, weights=w[once], minlength=len(once_age)),
            x[rep],
            t_x[rep],
            age[rep],
            w[rep],
            ux,
            inv,
            np.bincount(inv, weights=w[rep], minlength=len(ux)),
            float(w.sum()),
        )


def _bg_repeat_terms(
    params: np.ndarray, x: np.ndarray, t_x: np.ndarray, age: np.ndarray, ux: np.ndarray, inv: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Log-likelihood of customers with x > 0 (FHL 2005, eq. 6) in logs:
    ll = A1 + log(exp(l2) + exp(l3)), l2 for "still alive at T", l3 for "left right after the last
    purchase", added by log-sum-exp so that neither under- or overflows for large x and T. Also
    returns w3 = exp(l3 - ll + A1), the posterior probability of the second branch."""
    r, alpha, a, b = params
    bl = special.betaln(a, b)
    a1 = special.gammaln(r + ux) - special.gammaln(r) + r * np.log(alpha)
    a2 = special.betaln(a, b + ux) - bl
    a3 = special.betaln(a + 1, b + ux - 1) - bl
    k = r + x
    log_at = np.log(alpha + age)
    log_atx = np.log(alpha + t_x)
    l2 = a2[inv] - k * log_at
    l3 = a3[inv] - k * log_atx
    lse = np.logaddexp(l2, l3)
    return a1[inv] + lse, np.exp(l3 - lse), log_at, log_atx


def _bg_log_likelihood(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, age: np.ndarray) -> np.ndarray:
    """Per customer, in the caller's order."""
    r, alpha = params[0], params[1]
    ll = r * (np.log(alpha) - np.log(alpha + age))  # x == 0: P(no purchase in T) = (alpha/(alpha+T))^r
    rep = x > 0
    if rep.any():
        ux, inv = np.unique(x[rep], return_inverse=True)
        ll[rep] = _bg_repeat_terms(params, x[rep], t_x[rep], age[rep], ux, inv)[0]
    return ll


def _bg_objective(theta: np.ndarray, d: _BgData) -> tuple[float, np.ndarray]:
    """Mean negative log-likelihood and its gradient in log-parameters. The gradient is analytic: with
    w3 = P(the customer's last purchase was their last, given the data), every derivative is a
    per-distinct-x digamma term plus a per-row mix of the two likelihood branches."""
    params = np.exp(theta)
    r, alpha, a, b = params
    # customers without a repeat purchase
    log_ratio0 = np.log(alpha) - np.log(alpha + d.once_age)
    total_ll = r * (d.once_w @ log_ratio0)
    g_r = d.once_w @ log_ratio0
    g_alpha = r * (d.once_w @ (1.0 / alpha - 1.0 / (alpha + d.once_age)))
    g_a = g_b = 0.0
    if len(d.x):
        ll, w3, log_at, log_atx = _bg_repeat_terms(params, d.x, d.t_x, d.age, d.ux, d.inv)
        w, ux = d.w, d.ux
        w2 = 1.0 - w3
        w3w = w3 * w
        dig = special.digamma
        total_ll += w @ ll
        g_r += d.wx @ (dig(r + ux) - dig(r) + np.log(alpha)) - (w @ (w2 * log_at) + w3w @ log_atx)
        g_alpha += r / alpha * d.wx.sum() - ((w * (r + d.x)) @ (w2 / (alpha + d.age) + w3 / (alpha + d.t_x)))
        g_a += d.wx @ (dig(a + b) - dig(a + b + ux)) + w3w.sum() / a
        g_b += (
            d.wx @ (dig(a + b) - dig(b) - dig(a + b + ux) + dig(b + ux)) - w3w @ (1.0 / (b + ux - 1))[d.inv]
        )
    grad = -np.array([g_r, g_alpha, g_a, g_b]) * params / d.total
    return float(-total_ll / d.total), grad


class _Parametric:
    """What both models share: named positive parameters, fit diagnostics, and JSON persistence."""

    names: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.params_: dict[str, float] = {}
        self.fit_info_: dict[str, Any] = {}

    def to_json(self) -> str:
        return _dump(type(self).__name__, self._params_dict(), self.fit_info_)

    @classmethod
    def from_json(cls, text: str) -> Any:
        params, info = _load(cls.__name__, cls.names, text)
        model = cls()
        model.params_ = _positive(cls.names, tuple(params[n] for n in cls.names))
        model.fit_info_ = info
        return model

    def _params_dict(self) -> dict[str, float]:
        if not self.params_:
            raise ValueError(f"this {type(self).__name__} is not fitted yet; call fit() or from_params()")
        return self.params_

    def _params(self) -> np.ndarray:
        p = self._params_dict()
        return np.array([p[n] for n in self.names])


class BetaGeo(_Parametric):
    """BG/NBD: while alive a customer buys as a Poisson process with rate lambda ~ Gamma(r, alpha), and
    after each repeat purchase drops out for good with probability p ~ Beta(a, b).

    Fitted on frequency/recency/T alone, it answers "is this customer still around?" (:meth:`p_alive`)
    and "how many orders in the next t days?" (:meth:`expected_purchases`), the two things a churn
    model most wants as features and the baseline it has to beat.

    ``max_rows``: fit on at most this many customers, drawn with the seed given to :meth:`fit`
    (``None``: all of them). Predictions are always for every customer passed in.
    """

    names: ClassVar[tuple[str, ...]] = ("r", "alpha", "a", "b")

    def __init__(self, max_rows: int | None = 200_000) -> None:
        super().__init__()
        self.max_rows = max_rows

    @classmethod
    def from_params(cls, r: float, alpha: float, a: float, b: float) -> BetaGeo:
        """A model with known parameters (a stored fit, another library's fit, a simulation's truth)."""
        model = cls()
        model.params_ = _positive(cls.names, (r, alpha, a, b))
        return model

    # ---- fitting

    def fit(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,  # noqa: N803 (the literature's name)
        weights: ArrayLike | None = None,
        seed: int = 0,
    ) -> BetaGeo:
        """Maximum likelihood. ``weights`` count each row that many times (e.g. identical customers
        collapsed into one row)."""
        x, t_x, age = _rfm(frequency, recency, T)
        if len(x) == 0:
            raise ValueError("no customers to fit on")
        w = _check_weights(weights, len(x))
        if not np.any((x > 0) & (w > 0)):
            raise ValueError(
                f"none of the {len(x):,} customers has a repeat purchase, so BG/NBD cannot tell buying "
                "from dropping out; fit on a longer history or a larger set of customers"
            )
        rows = _subsample(len(x), self.max_rows, seed)
        if rows is not None:
            x, t_x, age, w = x[rows], t_x[rows], age[rows], w[rows]
        data = _BgData.build(x, t_x, age, w)
        mean_x = float(np.average(x, weights=w))
        mean_age = float(np.average(age, weights=w))
        # Start where a no-dropout Poisson-gamma would put the mean rate (mean x / mean T), r = a = b = 1.
        start = np.log([1.0, float(np.clip(mean_age / max(mean_x, 1e-3), 1e-3, 1e6)), 1.0, 1.0])
        theta, info = _minimise(lambda th: _bg_objective(th, data), start, list(self.names))
        self.params_ = dict(zip(self.names, map(float, np.exp(theta)), strict=True))
        nll, _ = _bg_objective(theta, data)
        self.fit_info_ = {
            **info,
            "rows": len(_array("frequency", frequency)),
            "fit_rows": len(x),
            "seed": seed,
            "mean_log_likelihood": -nll,
        }
        log.info("BG/NBD fitted on %d of %d customers: %s", len(x), self.fit_info_["rows"], self.params_)
        return self

    # ---- predictions

    def log_likelihood(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,  # noqa: N803
    ) -> np.ndarray | pd.Series:
        """Each customer's log-likelihood of their (frequency, recency) over T days (FHL 2005, eq. 6)."""
        x, t_x, age = _rfm(frequency, recency, T)
        return _like(_bg_log_likelihood(self._params(), x, t_x, age), frequency, "log_likelihood")

    def p_alive(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,  # noqa: N803
    ) -> np.ndarray | pd.Series:
        """Probability that the customer has not dropped out by the snapshot day (Fader, Hardie & Lee
        2008). Always 1 without a repeat purchase: in BG/NBD dropout happens only right after one."""
        x, t_x, age = _rfm(frequency, recency, T)
        return _like(self._p_alive(x, t_x, age), frequency, "p_alive")

    def expected_purchases(
        self,
        t: ArrayLike,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,  # noqa: N803
    ) -> np.ndarray | pd.Series:
        """Expected number of purchases in the next ``t`` days (scalar or one per customer) given each
        customer's history (FHL 2005, eq. 10).

        The paper's hypergeometric term overflows for large x (Hardie's "#NUM!" note); it is computed
        after Euler's transformation, which cancels the (r + x) power analytically. The (a - 1) pole is
        removable (the expectation is finite for every a > 0): near a = 1 the value is interpolated in
        a, and any row where scipy's 2F1 still returns something non-finite or outside the bounds
        0 <= E <= P(alive) * t * (r + x) / (alpha + T) is recomputed by quadrature over the dropout
        probability, so valid inputs never give NaN or inf.
        """
        x, t_x, age = _rfm(frequency, recency, T)
        tt = _array("t", t)
        if len(tt) not in (1, len(x)):
            raise ValueError(f"t must be one horizon or one per customer ({len(x)}), got {len(tt)} values")
        tt = np.broadcast_to(tt, x.shape).astype(float)
        with np.errstate(invalid="ignore"):
            _first_bad([(~np.isfinite(tt) | (tt < 0), lambda i: f"t is {tt[i]}; t must be >= 0 days")])
        r, alpha, a, b = self._params()
        given_alive = _bg_given_alive(r, alpha, a, b, x, age, tt)
        alive = self._p_alive(x, t_x, age)
        return _like(alive * given_alive, frequency, "expected_purchases")

    # ---- internals

    def _p_alive(self, x: np.ndarray, t_x: np.ndarray, age: np.ndarray) -> np.ndarray:
        r, alpha, a, b = self._params()
        with np.errstate(divide="ignore"):
            log_odds_dead = (
                np.log(a)
                - np.log(b + np.maximum(x, 1.0) - 1.0)
                + (r + x) * np.log1p((age - t_x) / (alpha + t_x))
            )
        return np.where(x > 0, special.expit(-log_odds_dead), 1.0)


def _bg_given_alive(
    r: float, alpha: float, a: float, b: float, x: np.ndarray, age: np.ndarray, t: np.ndarray
) -> np.ndarray:
    """E[purchases in (T, T + t] | alive at T, history] for every row: the closed form, stepped over its
    two removable singularities (a = 1, and a + b + x - 1 = 0, which only x = 0 can reach) by linear
    interpolation, and quadrature for any row the closed form still gets wrong."""
    if abs(a - 1.0) < A_GAP:
        lo = _bg_closed_form(r, alpha, 1.0 - A_GAP, b, x, age, t)
        hi = _bg_closed_form(r, alpha, 1.0 + A_GAP, b, x, age, t)
        share = (a - (1.0 - A_GAP)) / (2 * A_GAP)
        out = (1 - share) * lo + share * hi
    else:
        out = _bg_closed_form(r, alpha, a, b, x, age, t)
    upper = t * (r + x) / (alpha + age)  # E[lambda] * t: dropping out can only lower it
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(out) | (out < 0) | (out > upper * (1 + 1e-9) + 1e-300)
    if bad.any():
        log.debug("expected_purchases: %d rows by quadrature", int(bad.sum()))
        out[bad] = _bg_quadrature(r, alpha, a, b, x[bad], age[bad], t[bad])
    return np.clip(out, 0.0, upper)


def _bg_closed_form(
    r: float, alpha: float, a: float, b: float, x: np.ndarray, age: np.ndarray, t: np.ndarray
) -> np.ndarray:
    """FHL 2005 eq. 10 divided by P(alive). With z = t / (alpha + T + t) and Euler's transformation of
    their 2F1(r+x, b+x; a+b+x-1; z), the (r + x) powers cancel analytically and nothing overflows:
        (a+b+x-1)/(a-1) * [1 - (1-z)^(a-1) * 2F1(a+b-1-r, a-1; a+b+x-1; z)].
    At c = a+b+x-1 = 0 exactly, c * 2F1(.; c; z) is 0 * inf; rows within C_GAP of it are the mean
    of the values at b -/+ C_STEP (scipy is accurate there, checked against mpmath to 1e-12)."""
    c = a + b + x - 1.0
    near = np.abs(c) < C_GAP
    if not near.any():
        return _bg_closed_form_at(r, alpha, a, b, x, age, t)
    out = np.empty(len(x))
    out[~near] = _bg_closed_form_at(r, alpha, a, b, x[~near], age[~near], t[~near])
    args = (x[near], age[near], t[near])
    below = _bg_closed_form_at(r, alpha, a, b - C_STEP, *args)
    out[near] = 0.5 * (below + _bg_closed_form_at(r, alpha, a, b + C_STEP, *args))
    return out


def _bg_closed_form_at(
    r: float, alpha: float, a: float, b: float, x: np.ndarray, age: np.ndarray, t: np.ndarray
) -> np.ndarray:
    c = a + b + x - 1.0
    z = t / (alpha + age + t)
    log_1mz = -np.log1p(t / (alpha + age))
    with np.errstate(all="ignore"):
        hyp = special.hyp2f1(a + b - 1.0 - r, a - 1.0, c, z)
        bracket = -np.expm1((a - 1.0) * log_1mz) - np.exp((a - 1.0) * log_1mz) * (hyp - 1.0)
        return c / (a - 1.0) * bracket


def _bg_quadrature(
    r: float, alpha: float, a: float, b: float, x: np.ndarray, age: np.ndarray, t: np.ndarray
) -> np.ndarray:
    """The same expectation by adaptive quadrature, row by row (a fallback for the rare rows where
    scipy's 2F1 fails, e.g. t far beyond alpha + T). Given alive, lambda ~ Gamma(r+x, alpha+T) and
    p ~ Beta(a, b+x); integrating lambda out leaves E_p[(1 - (1 + p s)^-(r+x)) / p], s = t/(alpha+T),
    a bounded integrand for every a > 0. For a < 1, v = p^a removes the density's p^(a-1) pole."""
    out = np.empty(len(x))
    power = min(a, 1.0)
    for i in range(len(x)):
        beta = b + x[i]
        s = t[i] / (alpha + age[i])
        marks = {min(1.0, 1.0 / s) if s > 0 else 1.0, a / (a + beta), min(1.0, 10 * a / (a + beta))}
        points = sorted(m**power for m in marks if 0 < m < 1)
        args = (a, beta, r + x[i], s, power, special.betaln(a, beta) + np.log(power))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", integrate.IntegrationWarning)
            out[i] = integrate.quad(
                _beta_integrand, 0.0, 1.0, args=args, points=points or None, limit=500, epsabs=0, epsrel=1e-10
            )[0]
    return out


def _beta_integrand(
    v: float, a: float, beta: float, k: float, s: float, power: float, log_norm: float
) -> float:
    """(1 - (1 + p s)^-k) / p times the Beta(a, beta) density, at p = v^(1/power), per unit of v."""
    p = v ** (1.0 / power)
    if p <= 0.0 or p >= 1.0:
        return 0.0  # quad's nodes are interior; only rounding lands here, on a set of measure zero
    gain = -np.expm1(-k * np.log1p(p * s)) / p
    log_density = (a - power) * np.log(p) + (beta - 1.0) * np.log1p(-p) - log_norm
    return float(gain * np.exp(log_density))


def _rfm(frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> tuple[np.ndarray, ...]:  # noqa: N803
    x, t_x, age = _array("frequency", frequency), _array("recency", recency), _array("T", T)
    _check_rfm(x, t_x, age)
    return x, t_x, age


# --------------------------------------------------------------------------- Gamma-Gamma


@dataclass(frozen=True)
class _GgData:
    """Customers with x > 0, arranged like _BgData: the gamma functions depend on x alone, and the
    parameter-free parts of the likelihood are summed once."""

    x: np.ndarray
    m: np.ndarray
    w: np.ndarray
    ux: np.ndarray
    wx: np.ndarray  # total weight per distinct x
    wx_log: float  # sum of w x (log m + log x)
    w_log_m: float  # sum of w log m
    total: float

    @classmethod
    def build(cls, x: np.ndarray, m: np.ndarray, w: np.ndarray) -> _GgData:
        ux, inv = np.unique(x, return_inverse=True)
        log_m = np.log(m)
        return cls(
            x,
            m,
            w,
            ux,
            np.bincount(inv, weights=w, minlength=len(ux)),
            float(w @ (x * (log_m + np.log(x)))),
            float(w @ log_m),
            float(w.sum()),
        )


def _gg_objective(theta: np.ndarray, d: _GgData) -> tuple[float, np.ndarray]:
    """Mean negative log-likelihood of the customers' mean order values and its gradient in
    log-parameters (Fader & Hardie 2013, "The Gamma-Gamma model of monetary value", eq. 4)."""
    p, q, v = np.exp(theta)
    pux = p * d.ux
    xm = d.x * d.m
    log_vxm = np.log(v + xm)
    ll = (
        d.wx @ (special.gammaln(pux + q) - special.gammaln(pux) - special.gammaln(q) + q * np.log(v))
        + p * d.wx_log
        - d.w_log_m
        - d.w @ ((p * d.x + q) * log_vxm)
    )
    dig_pxq = special.digamma(pux + q)
    g_p = d.wx @ (d.ux * (dig_pxq - special.digamma(pux))) + d.wx_log - (d.w * d.x) @ log_vxm
    g_q = d.wx @ (dig_pxq - special.digamma(q) + np.log(v)) - d.w @ log_vxm
    g_v = q / v * d.total - d.w @ ((p * d.x + q) / (v + xm))
    grad = -np.array([g_p, g_q, g_v]) * np.array([p, q, v]) / d.total
    return float(-ll / d.total), grad


class GammaGamma(_Parametric):
    """Gamma-Gamma: each order's value is Gamma(p, nu) around a customer's own mean, and nu varies
    across customers as Gamma(q, v). Shrinks a customer's observed mean order value towards the
    population's, the more the fewer orders they have: a one-order customer's average says little.

    Fitted on customers with frequency > 0 (others carry no spend information in this model), and it
    assumes spend per order is independent of how often a customer buys.
    """

    names: ClassVar[tuple[str, ...]] = ("p", "q", "v")

    @classmethod
    def from_params(cls, p: float, q: float, v: float) -> GammaGamma:
        model = cls()
        model.params_ = _positive(cls.names, (p, q, v))
        return model

    def fit(
        self, frequency: ArrayLike, monetary_value: ArrayLike, weights: ArrayLike | None = None
    ) -> GammaGamma:
        """Maximum likelihood over the customers with frequency > 0. ``monetary_value`` is each
        customer's mean order value, taken as given (the same orders that ``frequency`` counts)."""
        x, m = _spend(frequency, monetary_value)
        w = _check_weights(weights, len(x))
        use = (x > 0) & (w > 0)
        if use.sum() < 2:
            raise ValueError(
                "Gamma-Gamma needs at least two customers with frequency > 0 (a repeat purchase) to fit; "
                f"got {int(use.sum())}"
            )
        x, m, w = x[use], m[use], w[use]
        mean = float(np.average(m, weights=w))
        start = np.log([1.0, 2.0, mean])  # p = 1, q = 2: population mean p v / (q - 1) = observed mean
        data = _GgData.build(x, m, w)
        theta, info = _minimise(lambda th: _gg_objective(th, data), start, list(self.names))
        self.params_ = dict(zip(self.names, map(float, np.exp(theta)), strict=True))
        nll, _ = _gg_objective(theta, data)
        self.fit_info_ = {**info, "rows": len(use), "fit_rows": len(x), "mean_log_likelihood": -nll}
        log.info("Gamma-Gamma fitted on %d customers: %s", len(x), self.params_)
        return self

    def log_likelihood(self, frequency: ArrayLike, monetary_value: ArrayLike) -> np.ndarray | pd.Series:
        """Each customer's log-density of their mean order value given their frequency; 0 for
        customers with frequency 0 (the model conditions on frequency, they have no spend to explain)."""
        x, m = _spend(frequency, monetary_value)
        p, q, v = self._params()
        ll = np.zeros(len(x))
        pos = x > 0
        if pos.any():
            ll[pos] = _gg_rowwise(p, q, v, x[pos], m[pos])
        return _like(ll, frequency, "log_likelihood")

    def expected_spend(self, frequency: ArrayLike, monetary_value: ArrayLike) -> np.ndarray | pd.Series:
        """E[mean order value | x orders averaging m]: a weighted mix of the population mean
        p v / (q - 1) and the customer's own mean, with weight p x / (p x + q - 1) on their own.
        Customers with frequency 0 get the population mean (their ``monetary_value`` is ignored)."""
        x, m = _spend(frequency, monetary_value)
        p, q, v = self._params()
        if q <= 1.0:
            raise ValueError(
                f"the fitted q = {q:.3g} is <= 1, so the population mean order value p v / (q - 1) is "
                "infinite and the conditional mean is undefined; the spend data are too heavy-tailed for "
                "Gamma-Gamma (check for outlier orders or refunds recorded as orders)"
            )
        m = np.where(x > 0, m, 0.0)
        out = p * (v + x * m) / (p * x + q - 1.0)
        return _like(out, frequency, "expected_spend")

    def population_mean(self) -> float:
        """Mean order value of a new customer, p v / (q - 1) (infinite when q <= 1)."""
        p, q, v = self._params()
        return p * v / (q - 1.0) if q > 1.0 else float("inf")


def _gg_rowwise(p: float, q: float, v: float, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    px = p * x
    return (
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * np.log(v)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(v + x * m)
    )


def _spend(frequency: ArrayLike, monetary_value: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    x, m = _array("frequency", frequency), _array("monetary_value", monetary_value)
    _same_length(frequency=x, monetary_value=m)
    with np.errstate(invalid="ignore"):
        _first_bad(
            [
                (~np.isfinite(x), lambda i: f"frequency is {x[i]}; every customer needs a finite value"),
                (x < 0, lambda i: f"frequency is {x[i]:g}; it counts purchases and cannot be negative"),
                (
                    (x > 0) & ~np.isfinite(m),
                    lambda i: f"monetary_value is {m[i]}; a customer with purchases needs a finite mean",
                ),
                (
                    (x > 0) & (m <= 0),
                    lambda i: (
                        f"monetary_value is {m[i]:g}; Gamma-Gamma needs a positive mean order value "
                        "(drop zero-value or refunded orders before averaging)"
                    ),
                ),
            ]
        )
    return x, m


# --------------------------------------------------------------------------- persistence helpers


def _positive(names: tuple[str, ...], values: tuple[float, ...]) -> dict[str, float]:
    params = {n: float(v) for n, v in zip(names, values, strict=True)}
    bad = {n: v for n, v in params.items() if not (np.isfinite(v) and v > 0)}
    if bad:
        raise ValueError(f"parameters must be finite and > 0, got {bad}")
    return params


def _dump(model: str, params: dict[str, float], info: dict[str, Any]) -> str:
    return json.dumps({"format": FORMAT, "model": model, "params": params, "fit": info}, sort_keys=True)


def _load(model: str, names: tuple[str, ...], text: str) -> tuple[dict[str, float], dict[str, Any]]:
    doc = json.loads(text)
    if doc.get("format") != FORMAT or doc.get("model") != model:
        raise ValueError(
            f"not a stored {model} (format {doc.get('format')!r}, model {doc.get('model')!r}; "
            f"expected {FORMAT!r}, {model!r})"
        )
    params = doc.get("params", {})
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(f"stored {model} lacks parameters {missing}")
    return {n: float(params[n]) for n in names}, doc.get("fit", {})
