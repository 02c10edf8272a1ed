"""Value x risk segments, their profiles and typical drivers.

Rules, first match wins (thresholds from clarion.yaml, `segment:`):

| segment | rule |
|---|---|
| new | customer for fewer than `new_days` days |
| hibernating | no purchase in the last 12 months |
| at_risk_high_value | churn risk >= `risk_high` and 12-month spend in the top `1 - value_high_quantile` |
| at_risk_low_value | churn risk >= `risk_high` |
| champions | churn risk < `risk_low` and high value |
| loyal | churn risk < `risk_low` |
| promising | everyone else (neither clearly staying nor clearly lapsing) |

"High value" is measured on what customers spent (``spend_365d_eur``), not on the model's
expected value: a valuable customer about to lapse has a low expected value, which is the point.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

SEGMENTS = (
    "champions",
    "loyal",
    "promising",
    "new",
    "at_risk_high_value",
    "at_risk_low_value",
    "hibernating",
)
PROFILE_FEATURES = (
    "recency_days",
    "orders_365d",
    "spend_365d_eur",
    "avg_order_value_eur",
    "open_rate_60d",
    "discount_share",
    "negative_tickets_90d",
    "tenure_days",
)


@dataclass(frozen=True)
class Thresholds:
    risk_high: float = 0.6
    risk_low: float = 0.3
    value_high_quantile: float = 0.75
    new_days: int = 90


def assign(features: pd.DataFrame, churn_risk: np.ndarray, t: Thresholds) -> tuple[np.ndarray, float]:
    """The segment of every customer, and the spend that counts as high value in this population."""
    spend = features["spend_365d_eur"].fillna(0).to_numpy(dtype=float)
    buyers = spend[spend > 0]
    high_cut = float(np.quantile(buyers, t.value_high_quantile)) if len(buyers) else float("inf")
    high = spend >= high_cut
    new = features["tenure_days"].to_numpy(dtype=float) < t.new_days
    dormant = features["orders_365d"].fillna(0).to_numpy(dtype=float) == 0
    risky = churn_risk >= t.risk_high
    safe = churn_risk < t.risk_low
    segment = np.select(
        [new, dormant, risky & high, risky, safe & high, safe],
        ["new", "hibernating", "at_risk_high_value", "at_risk_low_value", "champions", "loyal"],
        default="promising",
    )
    return segment, high_cut


def profiles(
    features: pd.DataFrame,
    segment: np.ndarray,
    churn_risk: np.ndarray,
    expected_value: np.ndarray,
    first_family: list[str | None],
) -> list[dict[str, Any]]:
    """Per segment: size, share, mean risk and value, feature medians against the population's,
    and the reason families that most often come first for its customers."""
    total = len(segment)
    population = {f: _median(features[f]) for f in PROFILE_FEATURES}
    out = []
    for name in SEGMENTS:
        mask = segment == name
        n = int(mask.sum())
        if n == 0:
            continue
        firsts = Counter(first_family[i] for i in np.flatnonzero(mask) if first_family[i])
        out.append(
            {
                "segment": name,
                "customers": n,
                "share": n / total,
                "mean_churn_risk": float(churn_risk[mask].mean()),
                "mean_expected_value_eur": float(expected_value[mask].mean()),
                "profile": {
                    f: {"segment_median": _median(features.loc[mask, f]), "population_median": population[f]}
                    for f in PROFILE_FEATURES
                },
                "top_drivers": [{"family": f, "customers": c} for f, c in firsts.most_common(3)],
            }
        )
    return out


def _median(values: pd.Series) -> float | None:
    v = pd.to_numeric(values, errors="coerce").dropna()
    return float(v.median()) if len(v) else None
