"""Reason codes: the features pushing a customer's score most, in words a marketer can check.

For a customer more likely to lapse than to buy (churn risk >= 0.5), the reasons are the feature
families that raise the risk most; otherwise those that lower it most. At most ``limit`` reasons, each at
least ``min_effect`` in log-odds, and only features the model used (a feature that no tree splits
on has no contribution). Each reason keeps the feature, its family, the direction, the effect and
the customer's value beside the sentence, so the text can always be traced to the SHAP value.
Reasons are per feature family (recency, engagement, support, ...): a family's effect is the sum
of its features' SHAP values, worded by its strongest feature.

The catalogue below is the one place sentences live; every model feature must have an entry
(tested), and a sentence only states the customer's own figures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from models.features import FAMILY_OF, FEATURES

Row = Callable[[str], float | None]


def _n(x: float | None) -> str:
    return "no" if x is None else f"{x:,.0f}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def _days(v: Row) -> str:
    usual = v("recency_vs_usual")
    tail = f", {usual:.1f}x longer than usual for this customer" if usual is not None and usual >= 1.5 else ""
    return f"no purchase for {_n(v('recency_days'))} days{tail}"


def _rate_change(kind: str, recent: str, prior: str) -> Callable[[Row], str]:
    def text(v: Row) -> str:
        now, before = v(recent), v(prior)
        if now is None:
            return f"no marketing e-mails in the last 60 days to {kind}"
        if before is None or before == 0:
            return f"e-mail {kind}s: {_pct(now)} of the last 60 days' e-mails"
        change = (now - before) / before
        word = "fell" if change < 0 else "rose"
        shares = f"({_pct(before)} -> {_pct(now)})"
        return f"e-mail {kind}s {word} {abs(change) * 100:.0f}% in the last 60 days {shares}"

    return text


CATALOGUE: dict[str, Callable[[Row], str]] = {
    "recency_days": _days,
    "recency_vs_usual": _days,
    "has_ordered": lambda v: "has bought before" if v("has_ordered") else "has never bought",
    "orders_lifetime": lambda v: f"{_n(v('orders_lifetime'))} orders in total",
    "orders_90d": lambda v: f"{_n(v('orders_90d'))} orders in the last 90 days",
    "orders_365d": lambda v: f"{_n(v('orders_365d'))} orders in the last 12 months",
    "spend_lifetime_eur": lambda v: f"EUR {_n(v('spend_lifetime_eur'))} spent in total",
    "spend_90d_eur": lambda v: f"EUR {_n(v('spend_90d_eur'))} spent in the last 90 days",
    "spend_365d_eur": lambda v: f"EUR {_n(v('spend_365d_eur'))} spent in the last 12 months",
    "avg_order_value_eur": lambda v: f"average order EUR {_n(v('avg_order_value_eur'))}",
    "mean_gap_days": lambda v: f"usually {_n(v('mean_gap_days'))} days between purchases",
    "recent_gap_days": lambda v: f"{_n(v('recent_gap_days'))} days between the latest purchases",
    "gap_trend_ratio": lambda v: (
        "no purchase rhythm yet"
        if v("gap_trend_ratio") is None
        else f"purchases {'slowing' if v('gap_trend_ratio') > 1 else 'speeding up'}: latest gaps "
        f"{v('gap_trend_ratio'):.1f}x the usual"
    ),
    "tenure_days": lambda v: f"customer for {_n(v('tenure_days'))} days",
    "n_categories": lambda v: f"bought from {_n(v('n_categories'))} categories",
    "top_category_share": lambda v: f"{_pct(v('top_category_share'))} of spend in one category",
    "discount_share": lambda v: f"{_pct(v('discount_share'))} of orders used a discount",
    "return_rate": lambda v: f"{_pct(v('return_rate'))} of orders returned",
    "delivery_problems_180d": lambda v: (
        f"{_n(v('delivery_problems_180d'))} late or lost deliveries in the last 180 days"
    ),
    "delivery_problem_share_180d": lambda v: (
        f"{_pct(v('delivery_problem_share_180d'))} of the last 180 days' orders arrived late or were lost"
    ),
    "email_sends_60d": lambda v: f"{_n(v('email_sends_60d'))} marketing e-mails in the last 60 days",
    "open_rate_60d": _rate_change("open", "open_rate_60d", "open_rate_prior_120d"),
    "open_rate_prior_120d": _rate_change("open", "open_rate_60d", "open_rate_prior_120d"),
    "open_rate_change": _rate_change("open", "open_rate_60d", "open_rate_prior_120d"),
    "click_rate_60d": _rate_change("click", "click_rate_60d", "click_rate_prior_120d"),
    "click_rate_prior_120d": _rate_change("click", "click_rate_60d", "click_rate_prior_120d"),
    "click_rate_change": _rate_change("click", "click_rate_60d", "click_rate_prior_120d"),
    "days_since_last_open": lambda v: (
        "never opened an e-mail"
        if v("days_since_last_open") is None
        else f"last opened an e-mail {_n(v('days_since_last_open'))} days ago"
    ),
    "unsubscribed": lambda v: (
        "unsubscribed from e-mail" if v("unsubscribed") else "still subscribed to e-mail"
    ),
    "tickets_90d": lambda v: f"{_n(v('tickets_90d'))} support tickets in the last 90 days",
    "negative_tickets_90d": lambda v: (
        f"{_n(v('negative_tickets_90d'))} negative support tickets in the last 90 days"
    ),
    "negative_tickets_365d": lambda v: (
        f"{_n(v('negative_tickets_365d'))} negative support tickets in the last 12 months"
    ),
    "avg_satisfaction_365d": lambda v: (
        "no support surveys in the last 12 months"
        if v("avg_satisfaction_365d") is None
        else f"support satisfaction {v('avg_satisfaction_365d'):.1f} of 5 over the last 12 months"
    ),
}

# values the sentences read besides the reason's own feature
CONTEXT = ("recency_days", "recency_vs_usual", "open_rate_prior_120d", "click_rate_prior_120d")


def reason_codes(
    contributions: np.ndarray,
    x: np.ndarray,
    churn_risk: np.ndarray,
    used: set[str],
    limit: int = 4,
    min_effect: float = 0.02,
    features: tuple[str, ...] = FEATURES,
) -> list[list[dict[str, Any]]]:
    """Up to `limit` reasons per customer (row of `contributions`, in purchase log-odds).

    One reason per feature family: a family's effect is the sum of its features' SHAP values (SHAP
    values add, so this is as faithful as a single feature's), and its sentence is that of the
    family's feature pushing hardest the same way. Recency in days and recency against the usual
    rhythm are then one reason, not two that read alike.
    """
    risk_effect = -contributions  # what a feature adds to the log-odds of *not* buying
    risk_effect[:, [f not in used for f in features]] = 0.0
    families = list(dict.fromkeys(FAMILY_OF[f] for f in features))
    columns = [[j for j, f in enumerate(features) if FAMILY_OF[f] == fam] for fam in families]
    lean = np.where(churn_risk >= 0.5, 1.0, -1.0)[:, None]  # +1: explain the risk; -1: explain staying
    family_effect = np.stack([risk_effect[:, cols].sum(axis=1) for cols in columns], axis=1)
    # per customer and family, the feature pushing hardest the way the customer leans
    strongest = np.stack(
        [np.asarray(cols)[np.argmax(risk_effect[:, cols] * lean, axis=1)] for cols in columns], axis=1
    )
    signed_family = family_effect * lean
    order = np.argsort(-signed_family, axis=1, kind="stable")[:, :limit]
    chosen = np.take_along_axis(signed_family, order, axis=1)
    keep = (chosen > 0) & (chosen >= min_effect)  # sorted, so the kept ones are a prefix
    effect = np.take_along_axis(family_effect, order, axis=1).round(6).tolist()
    picked = np.take_along_axis(strongest, order, axis=1).tolist()
    order_l, keep_l = order.tolist(), keep.tolist()
    index = {f: j for j, f in enumerate(features)}
    rows = x.tolist()  # plain floats: reading them is ~10x cheaper than numpy scalars
    out: list[list[dict[str, Any]]] = []
    for i, row in enumerate(rows):

        def v(name: str, row=row) -> float | None:
            value = row[index[name]]
            return None if value != value else value  # NaN: unknown

        reasons = []
        for k, ok in enumerate(keep_l[i]):
            if not ok:
                break
            feature = features[picked[i][k]]
            e = effect[i][k]
            reasons.append(
                {
                    "feature": feature,
                    "family": families[order_l[i][k]],
                    "direction": "raises_risk" if e > 0 else "lowers_risk",
                    "effect": e,
                    "value": v(feature),
                    "text": CATALOGUE[feature](v),
                }
            )
        out.append(reasons)
    return out


def as_text(reasons: list[dict[str, Any]]) -> str:
    return "; ".join(r["text"] for r in reasons)
