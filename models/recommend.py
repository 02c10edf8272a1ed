"""Product recommendations from order lines: two baselines, item-item co-occurrence and implicit ALS.

Pure arithmetic on arrays (no warehouse, no Prefect): customers and products are dense indexes,
days are integers (days since 1970-01-01). Every method ranks in three tiers so that everyone gets
``n`` products: first the method's own scores (> 0), then the top of the customer's favourite
category, then the shop's popularity; inactive products and products the customer bought within
``exclude_days`` are never recommended. Each row carries what its reason needs (the kind, the
product it was bought with and the exact share of that product's buyers), so the sentence shown
to a marketer is a fact about the person, re-derivable from their own order lines
(``reason_texts``).

The time-split evaluation (``evaluate``) fits on the lines before a cut day and measures the
purchases after it: recall@k, NDCG@k with binary relevance, catalogue coverage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

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
    n_p = pop_key.size
    key = np.broadcast_to(pop_key + TIER_POPULAR, (m, n_p)).copy()  # tier + a sub-key in (0, 1)
    if model.method != "popularity":  # the favourite category's top products: one tier up
        for c in np.unique(fav[fav >= 0]):
            key[np.ix_(np.flatnonzero(fav == c), np.flatnonzero(b.category_top[c]))] += 1.0
    raw = model.scores(rows)
    if raw is not None:
        positive = raw > 1e-12
        top = raw.max() if positive.any() else 1.0
        np.copyto(key, raw * (1.0 / (top * (1 + 1e-9))) + TIER_MODEL, where=positive)
    key[:, ~catalogue.active] = -np.inf
    recent = b.bought[rows]
    r_rows = np.repeat(np.arange(m), np.diff(recent.indptr))
    too_recent = recent.data >= b.day - exclude_days
    key[r_rows[too_recent], recent.indices[too_recent]] = -np.inf
    pick, picked = top_n(key, n)
    valid = np.isfinite(picked).ravel()  # fewer than n products left for someone who bought most of them
    t = np.floor(np.where(np.isfinite(picked), picked, 0)).astype(np.int8).ravel()[valid]
    local = np.repeat(np.arange(m), n)[valid]
    customer = rows[local]
    product = pick.ravel().astype(np.int64)[valid]
    rank = np.tile(np.arange(1, n + 1, dtype=np.int32), m)[valid]
    score = (b.popular_recent[product]).astype(np.float64)
    if raw is not None:
        score = np.where(t == TIER_MODEL, raw[local, product], score)
    kind = np.where(t == TIER_MODEL, 0, np.where(t == TIER_CATEGORY, 1, 2)).astype(np.int8)
    because = np.full(product.size, -1, dtype=np.int64)
    support = np.full(product.size, np.nan)
    if raw is not None and share is not None:
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


def top_n(key: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``n`` largest keys and their columns, largest first; equal keys: the lower column
    first, so who gets which product never depends on how a sort happened to split a tie. Columns
    at -inf fill a row with fewer than ``n`` finite keys (the caller drops them). ``key`` is spent:
    its picks are set to -inf. ``n`` passes of argmax (the first maximum, so the lowest column of a
    tie): about 13x faster than a partition and a sort of the picks for 500 products."""
    m = key.shape[0]
    rows = np.arange(m)
    pick = np.empty((m, n), dtype=np.int64)
    picked = np.empty((m, n), dtype=key.dtype)
    for j in range(n):
        at = key.argmax(axis=1)
        pick[:, j] = at
        picked[:, j] = key[rows, at]
        key[rows, at] = -np.inf
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
    contribution[i, product] (ties: the lower index), and that largest value."""
    if customer.size == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    starts, ends = bought.indptr[customer], bought.indptr[customer + 1]
    lengths = ends - starts
    pair = np.repeat(np.arange(customer.size), lengths)  # grouped: each pair's items are contiguous
    offset = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    at = offset + np.repeat(starts, lengths)
    items = bought.indices[at]  # ascending within a customer's row
    value = contribution[items, product[pair]]
    if weights is not None:
        value = value * weights.data[at]
    best = np.full(customer.size, -np.inf)
    has = lengths > 0
    best[has] = np.maximum.reduceat(value, (np.cumsum(lengths) - lengths)[has])
    top = np.flatnonzero(value == best[pair])
    _, first = np.unique(pair[top], return_index=True)  # the first, so the lowest product index
    chosen = np.full(customer.size, -1, dtype=np.int64)
    chosen[pair[top[first]]] = items[top[first]]
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


def day_number(values: Any) -> np.ndarray:
    """Dates or timestamps (numpy datetime64 of any unit) as day numbers since 1970-01-01."""
    return np.asarray(values).astype("datetime64[D]").astype(np.int64).astype(np.int32)


def ceil_tens(x: float) -> int:
    return max(10, 10 * math.ceil(x / 10))
