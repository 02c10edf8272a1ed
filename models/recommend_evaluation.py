"""The recommender's time-split evaluation: each method fitted on the lines before a cut day and
measured on the purchases after it (recall@k, NDCG@k with binary relevance, catalogue coverage), on
every customer or a seeded draw of them; and the choice of a method from those figures.

Pure arithmetic on arrays, like models/recommend.py, whose fit and ranking it measures.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from models.recommend import (
    METHODS,
    TIER_MODEL,
    Catalogue,
    Lines,
    Recommended,
    basis,
    fit,
    recommend,
    repeat_buyers,
)


def sample_customers(lines: Lines, size: int, seed: int = 7) -> tuple[Lines, np.ndarray]:
    """At most ``size`` customers drawn at random (seeded: the same customers for the same data) and
    their lines, customers renumbered 0..size-1 in the order of their old indexes; also the old
    indexes drawn. ``size`` 0, or no more customers than that: every customer, unchanged."""
    if size <= 0 or lines.n_customers <= size:
        return lines, np.arange(lines.n_customers)
    drawn = np.sort(np.random.default_rng(seed).choice(lines.n_customers, size, replace=False))
    new_index = np.full(lines.n_customers, -1, dtype=np.int64)
    new_index[drawn] = np.arange(size)
    kept = lines.where(new_index[lines.customer] >= 0)
    renumbered = new_index[kept.customer].astype(np.int32)
    return Lines(renumbered, kept.product, kept.day, size, lines.n_products), drawn


def evaluate(
    lines: Lines,
    catalogue: Catalogue,
    cut: int,
    end: int,
    exclude_days: int,
    k: int = 10,
    methods: tuple[str, ...] = METHODS,
    sample: int = 0,
    sample_seed: int = 7,
    **fit_params: Any,
) -> dict[str, Any]:
    """Fit each method on the lines before ``cut``; measure on the purchases in [cut, end).
    ``sample`` > 0: on at most that many customers drawn at random (:func:`sample_customers`),
    every method fitted on their lines and measured on their purchases; the cost of fitting ALS
    grows with the customers, the comparison stays like for like."""
    everyone = lines.n_customers
    lines, _ = sample_customers(lines, sample, sample_seed)
    b = basis(lines, catalogue, cut)
    after = lines.where((lines.day >= cut) & (lines.day < end))
    truth = np.unique(after.customer.astype(np.int64) * lines.n_products + after.product)
    bought_recently = b.bought.copy()
    bought_recently.data = (bought_recently.data >= cut - exclude_days).astype(np.int32)
    bought_recently.eliminate_zeros()
    rb = bought_recently.tocoo()
    truth = np.setdiff1d(truth, rb.row.astype(np.int64) * lines.n_products + rb.col)
    measured = np.unique(truth // lines.n_products)
    sizes = np.bincount(np.searchsorted(measured, truth // lines.n_products), minlength=measured.size)
    returning = np.diff(b.bought.indptr)[measured] > 0
    out: dict[str, Any] = {
        "k": k,
        "customers": int(measured.size),
        "returning_customers": int(returning.sum()),
        "repeat_buyers": repeat_buyers(b),
        "sampled_customers": int(lines.n_customers),
        "all_customers": int(everyone),
        "methods": {},
    }
    for method in methods:
        if method in ("cooccurrence", "als") and repeat_buyers(b) < 2:
            continue
        rec = recommend(fit(method, b, **fit_params), catalogue, measured, k, exclude_days)
        hit = np.isin(rec.customer.astype(np.int64) * lines.n_products + rec.product, truth)
        out["methods"][method] = _metrics(rec, hit, measured, sizes, returning, k, catalogue)
    return out


def _metrics(
    rec: Recommended,
    hit: np.ndarray,
    measured: np.ndarray,
    sizes: np.ndarray,
    returning: np.ndarray,
    k: int,
    catalogue: Catalogue,
) -> dict[str, Any]:
    at = np.searchsorted(measured, rec.customer)
    recall = np.bincount(at, weights=hit, minlength=sizes.size) / sizes
    ideal = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))[np.minimum(sizes, k) - 1]
    dcg = np.bincount(at, weights=hit / np.log2(rec.rank + 1.0), minlength=sizes.size)
    ndcg = dcg / ideal

    def mean(x: np.ndarray) -> float:
        return round(float(x.mean()), 4) if x.size else 0.0

    return {
        "recall_at_k": mean(recall),
        "ndcg_at_k": mean(ndcg),
        "ndcg_se": round(float(ndcg.std(ddof=1) / math.sqrt(ndcg.size)), 4) if ndcg.size > 1 else 0.0,
        "coverage": round(np.unique(rec.product).size / max(int(catalogue.active.sum()), 1), 4),
        "returning": {"recall_at_k": mean(recall[returning]), "ndcg_at_k": mean(ndcg[returning])},
        "from_model": round(float((rec.tier == TIER_MODEL).mean()), 4) if len(rec) else 0.0,
    }


def choose(evaluation: dict[str, Any]) -> tuple[str, str]:
    """The method with the best NDCG@k (to 4 decimals; ties: the simpler) and why, in words."""
    figures = evaluation["methods"]
    best = max(figures, key=lambda m: (figures[m]["ndcg_at_k"], -METHODS.index(m)))
    others = ", ".join(f"{m} {figures[m]['ndcg_at_k']:.4f}" for m in figures if m != best)
    why = (
        f"best NDCG@{evaluation['k']} in the time split "
        f"({figures[best]['ndcg_at_k']:.4f}; {others or 'no other'})"
    )
    return best, why
