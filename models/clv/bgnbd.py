"""BG/NBD (Fader, Hardie & Lee 2005): who is still a customer, and how often they will buy. See
``models.clv`` for units and references."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy import integrate, special

from models.clv.base import (
    ArrayLike,
    _array,
    _check_weights,
    _first_bad,
    _like,
    _minimise,
    _Parametric,
    _positive,
    _rfm,
    _subsample,
)

log = logging.getLogger(__name__)

# Around a = 1 the expected-purchases formula is 0/0 (a removable singularity); inside this gap it is
# interpolated linearly in a between a = 1 -/+ gap, where the formula is still accurate to ~1e-12.
A_GAP = 1e-3
# Likewise around a + b + x - 1 = 0 (x = 0 only): the mean of the values at b -/+ C_STEP.
C_GAP, C_STEP = 1e-9, 1e-7


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
