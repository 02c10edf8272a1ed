"""SHAP values of the model that scored each customer, and the reasons read from them.

Exact path-dependent TreeSHAP gives, per customer, one contribution per feature plus the base value,
in the forest's margin (log-odds of buying). They add up to the margin: checked on every customer.
Two implementations give the same values (tests check both against shap's TreeExplainer):
`models.treeshap` (a table lookup per leaf, several times faster on compact forests) is used
whenever it supports the forest, LightGBM's ``pred_contrib=True`` otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import lightgbm as lgb
import numpy as np

from models.treeshap import LeafTreeShap, supports

ADDITIVITY_TOLERANCE = 1e-6


class AdditivityError(AssertionError):
    pass


@dataclass
class Explanation:
    contributions: np.ndarray  # customers x features, in margin units
    base_value: float
    margin: np.ndarray
    method: str = "lightgbm-pred-contrib"


def chunks(rows: int, size: int) -> Iterator[slice]:
    for start in range(0, rows, size):
        yield slice(start, min(rows, start + size))


@lru_cache(maxsize=4)
def _leaf_explainer(forest: lgb.Booster) -> LeafTreeShap | None:
    threads = int(forest.params.get("num_threads", 2) or 2) if forest.params else 2
    return LeafTreeShap(forest, threads) if supports(forest) else None


def explain(
    forest: lgb.Booster,
    x: np.ndarray,
    chunk_rows: int = 100_000,
    margin: np.ndarray | None = None,
    method: str = "auto",
) -> Explanation:
    """Contributions for every row, in chunks (each chunk uses every thread). `margin`: the forest's
    raw scores of `x` if the caller has them (the additivity check compares with it). `method`:
    "auto" (the leaf tables when they support the forest), "leaf" or "lightgbm"."""
    leaf = _leaf_explainer(forest) if method in ("auto", "leaf") else None
    if method == "leaf" and leaf is None:
        raise ValueError("this forest has categorical splits or too deep paths for the leaf tables")
    contrib = leaf.contributions if leaf else lambda rows: forest.predict(rows, pred_contrib=True)
    n_features = x.shape[1]
    contributions = np.empty((x.shape[0], n_features))
    base = np.empty(x.shape[0])
    known = margin is not None
    margin = np.asarray(margin, dtype=float) if known else np.empty(x.shape[0])
    for part in chunks(x.shape[0], chunk_rows):
        out = contrib(x[part])
        contributions[part] = out[:, :n_features]
        base[part] = out[:, n_features]
        if not known:
            margin[part] = forest.predict(x[part], raw_score=True)
    gap = np.abs(contributions.sum(axis=1) + base - margin)
    if len(gap) and gap.max() > ADDITIVITY_TOLERANCE:
        worst = int(gap.argmax())
        raise AdditivityError(
            f"SHAP values do not add up to the model's margin for row {worst}: off by {gap[worst]:.2e}"
        )
    used = "leaf-tables" if leaf else "lightgbm-pred-contrib"
    return Explanation(contributions, float(base[0]) if len(base) else 0.0, margin, used)


def global_drivers(expl: Explanation, features: tuple[str, ...]) -> list[dict[str, float]]:
    """Mean |SHAP| per feature (how much it moves scores overall), largest first."""
    mean_abs = np.abs(expl.contributions).mean(axis=0) if len(expl.contributions) else np.zeros(len(features))
    mean = expl.contributions.mean(axis=0) if len(expl.contributions) else np.zeros(len(features))
    order = np.argsort(-mean_abs, kind="stable")
    return [
        {"feature": features[i], "mean_abs_shap": float(mean_abs[i]), "mean_shap": float(mean[i])}
        for i in order
        if mean_abs[i] > 0
    ]


def dependence(
    expl: Explanation, x: np.ndarray, features: tuple[str, ...], feature: str, bins: int = 5
) -> list[dict[str, float]]:
    """How one feature's SHAP value moves with its value: mean SHAP per quantile bin."""
    j = features.index(feature)
    values, shap = x[:, j], expl.contributions[:, j]
    known = ~np.isnan(values)
    out = []
    if (~known).any():
        out.append(
            {
                "from": None,
                "to": None,
                "customers": int((~known).sum()),
                "mean_shap": float(shap[~known].mean()),
            }
        )
    if known.any():
        edges = np.unique(np.quantile(values[known], np.linspace(0, 1, bins + 1)))
        which = np.clip(np.searchsorted(edges, values[known], side="right") - 1, 0, max(0, len(edges) - 2))
        for b in range(max(1, len(edges) - 1)):
            mask = which == b
            if mask.any():
                out.append(
                    {
                        "from": float(edges[b]),
                        "to": float(edges[min(b + 1, len(edges) - 1)]),
                        "customers": int(mask.sum()),
                        "mean_shap": float(shap[known][mask].mean()),
                    }
                )
    return out
