"""Gamma-Gamma (Fader, Hardie & Lee 2005; Fader & Hardie 2013): how much a customer spends per
order. See ``models.clv`` for units and references."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy import special

from models.clv.base import (
    ArrayLike,
    _array,
    _check_weights,
    _first_bad,
    _like,
    _minimise,
    _Parametric,
    _positive,
    _same_length,
)

log = logging.getLogger(__name__)


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
