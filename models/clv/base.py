"""What BG/NBD and Gamma-Gamma share: input arrays and their checks (every bad row is named), the
maximum-likelihood optimiser, the fitted-parameters base class and its JSON persistence."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy import optimize

ArrayLike = np.ndarray | pd.Series | list[float] | float
FORMAT = "clarion.clv/1"
# Log-parameter box: wide enough for any data in days, narrow enough that exp() stays finite. A fit
# that ends on it means the data cannot pin that parameter down (reported through a warning).
LOG_BOUND = 18.0


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


def _rfm(frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> tuple[np.ndarray, ...]:  # noqa: N803
    x, t_x, age = _array("frequency", frequency), _array("recency", recency), _array("T", T)
    _check_rfm(x, t_x, age)
    return x, t_x, age


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
