"""The lifecycle features: a BG/NBD and a Gamma-Gamma model fitted on one day's customers.

For each snapshot day separately (never across days: a fit may only see what was known that day),
from each customer's purchase history before the day:

* frequency x: distinct purchase days minus one (repeat purchases), T: days since the first
  purchase, recency t_x: days from the first to the last purchase (T - recency_days);
* ``p_alive``: the BG/NBD probability that the customer has not silently dropped out;
* ``expected_orders_horizon``: expected purchases in the horizon (BG/NBD);
* ``purchase_probability_bgnbd``: P(at least one purchase in the horizon), exact under BG/NBD (a
  customer alive at T stays alive until the next purchase, which comes with probability
  1 - ((alpha + T) / (alpha + T + t))^(r + x)); the "BG/NBD alone" baseline of the model card;
* ``expected_order_value_eur``: the Gamma-Gamma estimate of the customer's mean order value
  (the population mean for one-order customers), from their mean order value in EUR.

Customers who never bought get NaN: the models have ``has_ordered`` for them. A day with too few
repeat buyers to fit (a new shop) gets NaN throughout, and says so in the fit summary.

Once a day's parameters are fitted, each customer's columns depend on their own history alone
(``columns``); a later run of the same day may reuse the recorded parameters (``apply_day``), so
that late rows move only their own customers' lifecycle features.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from models.clv import BetaGeo, GammaGamma

log = logging.getLogger(__name__)
COLUMNS = ("p_alive", "expected_orders_horizon", "purchase_probability_bgnbd", "expected_order_value_eur")
MIN_REPEAT_BUYERS = 20


def history(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(bought, x, t_x, T) in days from customer_features' columns."""
    bought = frame["first_order_days"].notna().to_numpy() & (frame["purchase_days"].fillna(0) > 0).to_numpy()
    age = frame["first_order_days"].to_numpy(dtype=float)
    recency = frame["recency_days"].to_numpy(dtype=float)
    x = np.maximum(frame["purchase_days"].fillna(0).to_numpy(dtype=float) - 1, 0)
    t_x = np.clip(age - recency, 0, age)
    t_x = np.where(x > 0, t_x, 0.0)
    return bought, x[bought], t_x[bought], age[bought]


def fit_day(frame: pd.DataFrame, horizon_days: int, seed: int = 7) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The lifecycle columns for one day's customers, and the fitted parameters."""
    bought, x, t_x, age = history(frame)
    repeat = int((x > 0).sum())
    summary: dict[str, Any] = {"customers": len(frame), "buyers": int(bought.sum()), "repeat_buyers": repeat}
    if repeat < MIN_REPEAT_BUYERS:
        summary["fitted"] = False
        summary["why"] = f"{repeat} repeat buyers (a fit needs {MIN_REPEAT_BUYERS})"
        return pd.DataFrame(np.nan, index=frame.index, columns=list(COLUMNS)), summary
    bg = BetaGeo().fit(x, t_x, age, seed=seed)
    monetary = frame["avg_order_value_eur"].to_numpy(dtype=float)[bought]
    gg: GammaGamma | None = GammaGamma()
    has_value = (x > 0) & np.isfinite(monetary) & (monetary > 0)
    try:
        gg.fit(x[has_value], monetary[has_value])
        summary["gamma_gamma"] = gg.params_
    except ValueError as exc:  # too few repeat buyers with a positive order value
        summary["gamma_gamma"] = {"fitted": False, "why": str(exc)}
        gg = None
    summary.update({"fitted": True, "bg_nbd": bg.params_})
    return columns(frame, horizon_days, bg, gg), summary


def kept_fit(fit: dict[str, Any]) -> tuple[BetaGeo, GammaGamma | None] | None:
    """The models of a recorded fit summary (ml.lifecycle_fits), or None if that day was not fitted."""
    if not fit.get("fitted") or "bg_nbd" not in fit:
        return None
    bg = BetaGeo.from_params(**{k: fit["bg_nbd"][k] for k in BetaGeo.names})
    gg_params = fit.get("gamma_gamma") or {}
    fitted_gg = all(k in gg_params for k in GammaGamma.names)  # else {"fitted": False, "why": ...}
    gg = GammaGamma.from_params(**{k: gg_params[k] for k in GammaGamma.names}) if fitted_gg else None
    return bg, gg


def apply_day(
    frame: pd.DataFrame, horizon_days: int, fit: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    """The lifecycle columns for one day's customers from a fit kept for that day, and its summary
    over these customers (with the kept fit's ``reused_from``, the run that fitted it); None if the
    kept fit cannot be applied (that day was not fitted)."""
    models = kept_fit(fit)
    if models is None:
        return None
    bought, x, _, _ = history(frame)
    summary: dict[str, Any] = {
        "customers": len(frame),
        "buyers": int(bought.sum()),
        "repeat_buyers": int((x > 0).sum()),
        "fitted": True,
        "bg_nbd": fit["bg_nbd"],
        "gamma_gamma": fit["gamma_gamma"],
    }
    if fit.get("reused_from"):
        summary["reused_from"] = fit["reused_from"]
    return columns(frame, horizon_days, *models), summary


def columns(frame: pd.DataFrame, horizon_days: int, bg: BetaGeo, gg: GammaGamma | None) -> pd.DataFrame:
    """The lifecycle columns of each customer, from fitted models: a function of the customer's own
    history alone once the parameters are given."""
    out = pd.DataFrame(np.nan, index=frame.index, columns=list(COLUMNS))
    bought, x, t_x, age = history(frame)
    alive = np.asarray(bg.p_alive(x, t_x, age), dtype=float)
    expected = np.asarray(bg.expected_purchases(horizon_days, x, t_x, age), dtype=float)
    p = bg.params_
    given_alive = 1.0 - ((p["alpha"] + age) / (p["alpha"] + age + horizon_days)) ** (p["r"] + x)
    monetary = frame["avg_order_value_eur"].to_numpy(dtype=float)[bought]
    spend = np.full(len(x), np.nan)
    if gg is not None:
        ok = np.isfinite(monetary) & (monetary > 0)
        spend[ok] = np.asarray(gg.expected_spend(x[ok], monetary[ok]), dtype=float)
    idx = frame.index[bought]
    out.loc[idx, "p_alive"] = alive
    out.loc[idx, "expected_orders_horizon"] = expected
    out.loc[idx, "purchase_probability_bgnbd"] = alive * given_alive
    out.loc[idx, "expected_order_value_eur"] = spend
    return out


def add_features(
    frame: pd.DataFrame, horizon_days: int, seed: int = 7, kept: dict[str, dict[str, Any]] | None = None
) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """`frame` with the lifecycle columns, each day fitted on its own; and each day's fit summary.

    ``kept`` (day -> a recorded fit summary of that day) reuses those parameters instead of fitting
    again: a later run of the same day whose new rows change only their own customers' columns."""
    parts, fits = [], {}
    for day, rows in frame.groupby("as_of", sort=True):
        key = pd.Timestamp(day).date().isoformat()
        applied = apply_day(rows, horizon_days, kept[key]) if kept and key in kept else None
        columns_, summary = applied if applied is not None else fit_day(rows, horizon_days, seed)
        parts.append(columns_)
        fits[key] = summary
    lifecycle = pd.concat(parts) if parts else pd.DataFrame(columns=list(COLUMNS))
    out = frame.drop(columns=[c for c in COLUMNS if c in frame.columns]).join(lifecycle)
    return out, fits
