"""Product recommendations from order lines: two baselines, item-item co-occurrence and implicit ALS.

Pure arithmetic on arrays (no warehouse, no Prefect): customers and products are dense indexes,
days are integers (days since 1970-01-01). Every method ranks in three tiers so that everyone gets
``n`` products: first the method's own scores (> 0), then the top of the customer's favourite
category, then the shop's popularity; inactive products and products the customer bought within
``exclude_days`` are never recommended. Each row carries what its reason needs (the kind, the
product it was bought with and the exact share of that product's buyers), so the sentence shown
to a marketer is a fact about the person, re-derivable from their own order lines
(``reason_texts``).

The time-split evaluation that chooses a method is in models/recommend_evaluation.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from numba import njit

METHODS = ("popularity", "category", "cooccurrence", "als")  # simplest first: ties go to the simpler
POPULAR_DAYS = 90  # "most bought in the last 90 days"
CATEGORY_TOP = 10  # "popular in X": among the category's 10 most bought products
HALF_LIFE_DAYS = 180.0  # a basket item's weight halves every half-life before the day
SHRINK = 5.0  # P(j | i) shrunk towards 0 for items with few buyers (scores only; reasons are exact)
ALS_REASON_SHARE = 0.05  # an ALS row is explained by a co-purchase only when this share or more
CHUNK = 20_000  # customers scored at once: a dense (chunk x products) block
KINDS = ("bought_with", "category", "popular")
TIER_MODEL, TIER_CATEGORY, TIER_POPULAR = 3, 2, 1


@dataclass
class Lines:
    """Order lines: who (customer index), what (product index), when (day number)."""

    customer: np.ndarray
    product: np.ndarray
    day: np.ndarray
    n_customers: int
    n_products: int

    def where(self, keep: np.ndarray) -> Lines:
        return Lines(
            self.customer[keep], self.product[keep], self.day[keep], self.n_customers, self.n_products
        )


@dataclass
class Catalogue:
    """Per product index: its category code (into ``categories``, sorted) and whether it is for sale."""

    category: np.ndarray
    active: np.ndarray
    categories: list[str]


@dataclass
class Basis:
    """What every method shares, from the lines before ``day``: each customer's distinct products with
    the last day bought (CSR, data = day), line counts, popularity and favourite categories."""

    day: int
    bought: sp.csr_matrix
    popular_recent: np.ndarray  # lines per product in [day - 90, day)
    popular_all: np.ndarray  # lines per product before day
    popularity_order: np.ndarray  # product indexes, most bought first (recent, then all time, then id)
    favourite: np.ndarray  # per customer: category code with most lines (ties: first name), -1 none
    category_top: np.ndarray  # (categories x products) bool: among the category's CATEGORY_TOP
    co: np.ndarray | None = None  # (products x products) customers who bought both
    buyers: np.ndarray | None = None  # customers who bought each product


def basis(lines: Lines, catalogue: Catalogue, day: int) -> Basis:
    """The shared statistics of the lines strictly before ``day``."""
    before = lines.where(lines.day < day)
    n_p = lines.n_products
    key = before.customer.astype(np.int64) * n_p + before.product
    order = np.argsort(key, kind="stable")
    key, days = key[order], before.day[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if key.size else np.zeros(0, np.int64)
    last = np.maximum.reduceat(days, starts) if key.size else np.zeros(0, np.int32)
    rows, cols = key[starts] // n_p, key[starts] % n_p
    indptr = np.r_[0, np.cumsum(np.bincount(rows, minlength=lines.n_customers))]
    bought = sp.csr_matrix((last.astype(np.int32), cols.astype(np.int32), indptr), (lines.n_customers, n_p))
    recent = np.bincount(before.product[before.day >= day - POPULAR_DAYS], minlength=n_p)
    every = np.bincount(before.product, minlength=n_p)
    popularity_order = np.lexsort((np.arange(n_p), -every, -recent))
    n_cat = len(catalogue.categories)
    per_cat = np.bincount(
        before.customer.astype(np.int64) * n_cat + catalogue.category[before.product],
        minlength=lines.n_customers * n_cat,
    ).reshape(lines.n_customers, n_cat)
    favourite = np.where(per_cat.max(axis=1) > 0, per_cat.argmax(axis=1), -1)
    category_top = np.zeros((n_cat, n_p), dtype=bool)
    for c in range(n_cat):
        ranked = popularity_order[catalogue.category[popularity_order] == c]
        category_top[c, ranked[:CATEGORY_TOP]] = True
    return Basis(day, bought, recent, every, popularity_order, favourite, category_top)


def with_cooccurrence(b: Basis) -> Basis:
    """Add the customer-level co-occurrence counts (a customer's basket is every product they bought)."""
    if b.co is None:
        binary = b.bought.copy()
        binary.data = np.ones_like(binary.data, dtype=np.float32)
        b.co = (binary.T @ binary).toarray().astype(np.float64)
        b.buyers = np.diag(b.co).copy()
        np.fill_diagonal(b.co, 0.0)
    return b


def shares(b: Basis) -> np.ndarray:
    """share[i, j]: of the customers who bought i, the share who also bought j (exact, no shrinkage)."""
    with_cooccurrence(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b.buyers[:, None] > 0, b.co / np.maximum(b.buyers[:, None], 1.0), 0.0)


def repeat_buyers(b: Basis) -> int:
    """Customers with two or more distinct products: what a co-purchase model can learn from."""
    return int((np.diff(b.bought.indptr) >= 2).sum())


@dataclass
class Fitted:
    """A fitted method: ``scores(rows)`` gives a dense (rows x products) block, or None for baselines."""

    method: str
    basis: Basis
    weights: sp.csr_matrix | None = None  # recency weights of each customer's products
    similarity: np.ndarray | None = None  # co-occurrence: shrunk P(j | i)
    user_factors: np.ndarray | None = None
    item_factors: np.ndarray | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def scores(self, rows: np.ndarray) -> np.ndarray | None:
        if self.method == "cooccurrence":
            return np.asarray(self.weights[rows] @ self.similarity)
        if self.method == "als":  # nothing learnt about a customer without purchases: no score
            known = np.diff(self.basis.bought.indptr)[rows] > 0
            return (self.user_factors[rows] @ self.item_factors.T) * known[:, None]
        return None


def recency_weights(b: Basis) -> sp.csr_matrix:
    w = b.bought.copy().astype(np.float64)
    w.data = 0.5 ** ((b.day - b.bought.data) / HALF_LIFE_DAYS)
    return w


def fit(
    method: str,
    b: Basis,
    factors: int = 64,
    iterations: int = 15,
    num_threads: int = 0,
    seed: int = 7,
) -> Fitted:
    """Fit one of METHODS on the basis (the lines before its day)."""
    if method in ("popularity", "category"):
        return Fitted(method, b)
    if method == "cooccurrence":
        with_cooccurrence(b)
        similarity = b.co / (b.buyers[:, None] + SHRINK)
        return Fitted(method, b, weights=recency_weights(b), similarity=similarity)
    if method == "als":
        return _fit_als(b, factors, iterations, num_threads, seed)
    raise ValueError(f"unknown recommender method {method!r}; one of {', '.join(METHODS)}")


def _fit_als(b: Basis, factors: int, iterations: int, num_threads: int, seed: int) -> Fitted:
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.nearest_neighbours import bm25_weight
    from threadpoolctl import threadpool_limits

    user_items = recency_weights(b)
    user_items.data = np.ones_like(user_items.data) + user_items.data  # bought: 1, recently: up to 2
    weighted = bm25_weight(user_items.T.tocsr(), K1=100, B=0.8).T.tocsr().astype(np.float32)
    with threadpool_limits(1, "blas"):  # implicit parallelises itself; BLAS threads would contend
        model = AlternatingLeastSquares(
            factors=factors,
            iterations=iterations,
            regularization=0.05,
            num_threads=num_threads,
            random_state=seed,
            calculate_training_loss=False,
        )
        model.fit(weighted, show_progress=False)
    params = {"factors": factors, "iterations": iterations, "weighting": "bm25(K1=100, B=0.8)"}
    return Fitted(
        "als",
        b,
        user_factors=np.asarray(model.user_factors),
        item_factors=np.asarray(model.item_factors),
        params=params,
    )


@dataclass
class Recommended:
    """Ranked rows, ``n`` per customer asked for: customer, rank (1..n), product, score, tier, reason
    kind (index into KINDS), because (the product it was bought with, -1 none), support (exact share)."""

    customer: np.ndarray
    rank: np.ndarray
    product: np.ndarray
    score: np.ndarray
    tier: np.ndarray
    kind: np.ndarray
    because: np.ndarray
    support: np.ndarray

    def __len__(self) -> int:
        return int(self.customer.size)


def recommend(
    model: Fitted,
    catalogue: Catalogue,
    customers: np.ndarray,
    n: int,
    exclude_days: int,
) -> Recommended:
    """The top ``n`` products of each customer (indexes), by tiers: the method's scores above 0, the
    favourite category's top products, the shop's popularity; never inactive or recently bought."""
    b = model.basis
    n_p = b.bought.shape[1]
    n = min(n, int(catalogue.active.sum()))
    pop_key = np.empty(n_p)
    pop_key[b.popularity_order] = (n_p - np.arange(n_p)) / (n_p + 1.0)  # in (0, 1), most bought highest
    share = shares(b) if model.method in ("cooccurrence", "als") else None
    parts = []
    for start in range(0, customers.size, CHUNK):
        rows = customers[start : start + CHUNK]
        parts.append(_chunk(model, catalogue, rows, n, exclude_days, pop_key, share))
    return Recommended(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in Recommended.__dataclass_fields__)
    )


def _chunk(
    model: Fitted,
    catalogue: Catalogue,
    rows: np.ndarray,
    n: int,
    exclude_days: int,
    pop_key: np.ndarray,
    share: np.ndarray | None,
) -> Recommended:
    b = model.basis
    m = rows.size
    fav = b.favourite[rows]
    raw = model.scores(rows)
    if raw is None:
        raw = np.zeros((m, 0))
    # a model score above 0 becomes TIER_MODEL + score / (the block's largest score, a hair more),
    # in the scores' own precision (ALS's are float32)
    most = raw.max() if raw.size else 0.0
    scale = 1.0 / ((most if most > 1e-12 else 1.0) * (1 + 1e-9))
    real = raw.dtype.type
    pick, picked = _ranked(
        raw,
        real(1e-12),
        real(scale),
        real(TIER_MODEL),
        pop_key + TIER_POPULAR,  # tier + a sub-key in (0, 1)
        fav if model.method != "popularity" else np.full(m, -1, dtype=fav.dtype),
        b.category_top,
        catalogue.active,
        rows,
        b.bought.indptr,
        b.bought.indices,
        b.bought.data,
        b.day - exclude_days,
        n,
    )
    valid = np.isfinite(picked).ravel()  # fewer than n products left for someone who bought most of them
    t = np.floor(np.where(np.isfinite(picked), picked, 0)).astype(np.int8).ravel()[valid]
    local = np.repeat(np.arange(m), n)[valid]
    customer = rows[local]
    product = pick.ravel().astype(np.int64)[valid]
    rank = np.tile(np.arange(1, n + 1, dtype=np.int32), m)[valid]
    score = (b.popular_recent[product]).astype(np.float64)
    if raw.shape[1]:
        score = np.where(t == TIER_MODEL, raw[local, product], score)
    kind = np.where(t == TIER_MODEL, 0, np.where(t == TIER_CATEGORY, 1, 2)).astype(np.int8)
    because = np.full(product.size, -1, dtype=np.int64)
    support = np.full(product.size, np.nan)
    if raw.shape[1] and share is not None:
        model_rows = np.flatnonzero(t == TIER_MODEL)
        contribution = model.similarity if model.method == "cooccurrence" else share
        weights = model.weights if model.method == "cooccurrence" else None
        a, best = _strongest(b.bought, weights, contribution, customer[model_rows], product[model_rows])
        s = share[a, product[model_rows]]
        if model.method == "als":  # the co-purchase sentence only when it is a real share
            weak = (s < ALS_REASON_SHARE) | (best <= 0)
            in_top = _in_category_top(b, customer[model_rows], product[model_rows])
            kind[model_rows[weak]] = np.where(in_top[weak], 1, 2)
            a, s = np.where(weak, -1, a), np.where(weak, np.nan, s)
        because[model_rows], support[model_rows] = a, s
    return Recommended(customer, rank, product, score, t, kind, because, support)


@njit(cache=True, nogil=True)
def _ranked(
    raw, eps, scale, tier, base, fav, category_top, active, rows, indptr, indices, bought_day, cutoff, n
):
    """Each customer's ``n`` largest tiered keys and their products, largest first; equal keys: the
    lower product first. The keys, a row at a time (the row stays in cache): the popularity key
    ``base``; one tier up (+1) for the favourite category's top products (``fav`` -1: none);
    ``raw * scale + tier`` where the method's score is above ``eps`` (``raw`` has no columns for a
    baseline; ``eps``, ``scale`` and ``tier`` are of its type, so ALS's float32 scores round as
    before); -inf for products not for sale and for those bought (``indptr``/``indices``/
    ``bought_day``, the basis's CSR) on ``cutoff`` or after. A row with fewer than ``n`` finite keys
    is filled with -inf (the caller drops those).

    The same keys, operation for operation, as the (customers x products) arrays this replaced,
    whose passes and n argmax scans took 5.0 of the 8.7 s of a million customers' top 5
    (tests/test_recommend_model.py compares the two)."""
    m, n_p = rows.size, base.size
    pick = np.zeros((m, n), dtype=np.int64)
    picked = np.full((m, n), -np.inf)
    if n == 0:
        return pick, picked
    key = np.empty(n_p, dtype=np.float64)
    model = raw.shape[1] > 0
    for i in range(m):
        f = fav[i]
        for j in range(n_p):
            v = base[j]
            if f >= 0 and category_top[f, j]:
                v += 1.0
            if model and raw[i, j] > eps:
                v = raw[i, j] * scale + tier
            key[j] = v if active[j] else -np.inf
        c = rows[i]
        for k in range(indptr[c], indptr[c + 1]):
            if bought_day[k] >= cutoff:
                key[indices[k]] = -np.inf
        # the n largest in one pass, kept in order: an equal key never passes an earlier column
        for j in range(n_p):
            v = key[j]
            if v > picked[i, n - 1]:
                r = n - 1
                while r > 0 and v > picked[i, r - 1]:
                    picked[i, r] = picked[i, r - 1]
                    pick[i, r] = pick[i, r - 1]
                    r -= 1
                picked[i, r] = v
                pick[i, r] = j
    return pick, picked


def _in_category_top(b: Basis, customer: np.ndarray, product: np.ndarray) -> np.ndarray:
    fav = b.favourite[customer]
    return (fav >= 0) & b.category_top[np.maximum(fav, 0), product]


def _strongest(
    bought: sp.csr_matrix,
    weights: sp.csr_matrix | None,
    contribution: np.ndarray,
    customer: np.ndarray,
    product: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per (customer, product) pair: the customer's own product i with the largest weight x
    contribution[i, product] (ties: the lower index), and that largest value (-inf and -1 for a
    customer without products)."""
    return _strongest_pairs(
        bought.indptr,
        bought.indices,
        np.zeros(0) if weights is None else weights.data,
        contribution,
        customer,
        product,
    )


@njit(cache=True, nogil=True)
def _strongest_pairs(indptr, indices, weight, contribution, customer, product):
    """``_strongest`` a pair at a time; ``weight`` empty: no weights (a customer's row lists their
    products in ascending order, so the first maximum is the lowest product)."""
    chosen = np.full(customer.size, -1, dtype=np.int64)
    best = np.full(customer.size, -np.inf)
    weighted = weight.size > 0
    for p in range(customer.size):
        c, j = customer[p], product[p]
        for k in range(indptr[c], indptr[c + 1]):
            v = contribution[indices[k], j] * weight[k] if weighted else contribution[indices[k], j]
            if v > best[p]:
                best[p] = v
                chosen[p] = indices[k]
    return chosen, best


def popular_rank(counts: np.ndarray) -> np.ndarray:
    """1 + the number of products bought strictly more often: a rank no tie can make untrue."""
    ordered = np.sort(counts)
    return 1 + (counts.size - np.searchsorted(ordered, counts, side="right"))


def reason_texts(
    rec: Recommended,
    b: Basis,
    catalogue: Catalogue,
    names: list[str],
    has_history: np.ndarray,
) -> tuple[np.ndarray, list[str]]:
    """Each row's sentence as (codes, texts): rows share a text when their facts are the same."""
    n_p = len(names)
    recent_rank, all_rank = popular_rank(b.popular_recent), popular_rank(b.popular_all)
    base = n_p * n_p
    fav = b.favourite[rec.customer]
    code = np.where(
        rec.kind == 0,
        np.maximum(rec.because, 0) * n_p + rec.product,
        np.where(rec.kind == 1, base + np.maximum(fav, 0), 0),
    )
    recent = b.popular_recent[rec.product] > 0
    ceiling = np.where(recent, recent_rank[rec.product], all_rank[rec.product])
    tens = np.maximum(10, 10 * np.ceil(ceiling / 10)).astype(np.int64)
    popular = base + 1000 + tens * 4 + recent * 2 + ~has_history[rec.customer]
    code = np.where(rec.kind == 2, popular, code)
    unique, inverse = np.unique(code, return_inverse=True)
    pct = shares(b) if (rec.kind == 0).any() else None
    texts = []
    for c in unique.tolist():
        if c < base:
            a, j = divmod(c, n_p)
            texts.append(f"bought with {names[a]} by {percent(pct[a, j])} of its buyers")
        elif c < base + 1000:
            texts.append(f"popular in {catalogue.categories[c - base]}, the category they buy most")
        else:
            tens_, flags = divmod(c - base - 1000, 4)
            window = " in the last 90 days" if flags & 2 else ""
            own = " (no purchases of their own yet)" if flags & 1 else ""
            texts.append(f"one of the shop's {tens_} most bought products{window}{own}")
    return inverse.astype(np.int32), texts


def percent(share: float) -> str:
    """A share as a whole percentage; never "0%" for a share above zero."""
    whole = round(share * 100)
    return "under 1%" if whole == 0 and share > 0 else f"{whole}%"
