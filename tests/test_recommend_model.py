"""The recommender's arithmetic (models/recommend.py, models/recommend_evaluation.py) against
independent computations in pandas: the baselines' lists, the exact co-purchase shares, the
evaluation's recall@10 and NDCG@10, the filters, and the time split (nothing on or after the cut
day reaches the fit); the compiled ranking against dense keys sorted in full."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models import recommend as rec
from models import recommend_evaluation as ev

N_CUSTOMERS, N_PRODUCTS, CATEGORIES = 400, 40, ["apparel", "beauty", "home", "kids"]
DAY = 20_000  # the day recommendations are made for (a day number)


def _shop(seed: int = 1) -> tuple[rec.Lines, rec.Catalogue]:
    """Customers with a favourite category and a companion habit (product p with p + 1), over 400 days."""
    rng = np.random.default_rng(seed)
    category = (np.arange(N_PRODUCTS) % len(CATEGORIES)).astype(np.int16)
    active = np.ones(N_PRODUCTS, dtype=bool)
    active[[3, 17]] = False
    popularity = 1.0 / np.arange(1, N_PRODUCTS + 1) ** 0.8
    popularity /= popularity.sum()
    customer, product, day = [], [], []
    for c in range(N_CUSTOMERS - 20):  # the last 20 customers never buy
        fav = rng.integers(len(CATEGORIES))
        for _ in range(rng.integers(1, 6)):
            d = DAY - rng.integers(1, 400)
            first = (
                rng.choice(np.flatnonzero(category == fav))
                if rng.random() < 0.6
                else rng.choice(N_PRODUCTS, p=popularity)
            )
            customer.append(c), product.append(first), day.append(d)
            if rng.random() < 0.5:
                customer.append(c), product.append((first + 1) % N_PRODUCTS), day.append(d)
    lines = rec.Lines(
        np.array(customer, np.int32),
        np.array(product, np.int32),
        np.array(day, np.int32),
        N_CUSTOMERS,
        N_PRODUCTS,
    )
    return lines, rec.Catalogue(category, active, CATEGORIES)


def _frame(lines: rec.Lines) -> pd.DataFrame:
    return pd.DataFrame({"customer": lines.customer, "product": lines.product, "day": lines.day})


def _popularity_order(df: pd.DataFrame, day: int) -> list[int]:
    """Products by lines in the 90 days before ``day``, then all lines, then id."""
    before = df[df.day < day]
    recent = before[before.day >= day - 90].groupby("product").size()
    every = before.groupby("product").size()
    table = pd.DataFrame({"product": range(N_PRODUCTS)})
    table["recent"] = table["product"].map(recent).fillna(0)
    table["every"] = table["product"].map(every).fillna(0)
    return table.sort_values(["recent", "every", "product"], ascending=[False, False, True])[
        "product"
    ].tolist()


def _excluded(df: pd.DataFrame, customer: int, day: int, exclude_days: int) -> set[int]:
    mine = df[(df.customer == customer) & (df.day < day) & (df.day >= day - exclude_days)]
    return set(mine["product"])


def _favourite(df: pd.DataFrame, customer: int, day: int, catalogue: rec.Catalogue) -> int | None:
    mine = df[(df.customer == customer) & (df.day < day)]
    if mine.empty:
        return None
    counts = pd.Series(catalogue.category[mine["product"]]).value_counts()
    return int(min(c for c, n in counts.items() if n == counts.max()))  # ties: the first category name


def _popularity_list(df, catalogue, customer, day, n, exclude_days) -> list[int]:
    banned = _excluded(df, customer, day, exclude_days)
    return [p for p in _popularity_order(df, day) if catalogue.active[p] and p not in banned][:n]


def _category_list(df, catalogue, customer, day, n, exclude_days) -> list[int]:
    order = _popularity_order(df, day)
    fav = _favourite(df, customer, day, catalogue)
    top = [p for p in order if catalogue.category[p] == fav][: rec.CATEGORY_TOP] if fav is not None else []
    banned = _excluded(df, customer, day, exclude_days)
    chosen = [p for p in top if catalogue.active[p] and p not in banned]
    chosen += [p for p in order if catalogue.active[p] and p not in banned and p not in chosen]
    return chosen[:n]


def _lists(r: rec.Recommended) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for c, _, p in sorted(zip(r.customer.tolist(), r.rank.tolist(), r.product.tolist(), strict=True)):
        out.setdefault(c, []).append(p)
    return out


@pytest.mark.parametrize(
    ("method", "oracle"), [("popularity", _popularity_list), ("category", _category_list)]
)
def test_baselines_equal_their_independent_computation(method, oracle) -> None:
    lines, catalogue = _shop()
    df = _frame(lines)
    b = rec.basis(lines, catalogue, DAY)
    got = _lists(rec.recommend(rec.fit(method, b), catalogue, np.arange(N_CUSTOMERS), 5, 60))
    for c in range(N_CUSTOMERS):
        assert got[c] == oracle(df, catalogue, c, DAY, 5, 60), c


def test_shares_are_exact_shares_of_buyers() -> None:
    lines, catalogue = _shop()
    df = _frame(lines).drop_duplicates(["customer", "product"])
    share = rec.shares(rec.basis(lines, catalogue, DAY + 1))
    buyers = df.groupby("product")["customer"].apply(set)
    for i in range(0, N_PRODUCTS, 3):
        for j in range(N_PRODUCTS):
            want = (
                0.0 if i == j or i not in buyers else len(buyers[i] & buyers.get(j, set())) / len(buyers[i])
            )
            assert share[i, j] == pytest.approx(want, abs=1e-12), (i, j)


@pytest.mark.parametrize("method", ["cooccurrence", "als"])
def test_never_inactive_never_recently_bought_and_everyone_gets_n(method) -> None:
    lines, catalogue = _shop()
    df = _frame(lines)
    b = rec.basis(lines, catalogue, DAY)
    r = rec.recommend(rec.fit(method, b, factors=8, iterations=5), catalogue, np.arange(N_CUSTOMERS), 6, 90)
    lists = _lists(r)
    assert set(lists) == set(range(N_CUSTOMERS)) and all(len(v) == len(set(v)) == 6 for v in lists.values())
    assert catalogue.active[r.product].all()
    for c, products in lists.items():
        assert not set(products) & _excluded(df, c, DAY, 90), c
    # the co-purchase reason names a product the customer bought, with its exact share
    share = rec.shares(b)
    said = r.kind == 0
    assert said.any()
    for c, p, a, s in zip(r.customer[said], r.product[said], r.because[said], r.support[said], strict=True):
        assert ((df.customer == c) & (df["product"] == a) & (df.day < DAY)).any()
        assert s == share[a, p] > 0
    if method == "als":
        assert (r.support[said] >= rec.ALS_REASON_SHARE).all()


def test_the_fit_sees_nothing_on_or_after_its_day() -> None:
    lines, catalogue = _shop()
    cut = DAY - 60
    # after the cut, everyone buys product 30 (an unpopular one) again and again
    flood = rec.Lines(
        np.repeat(np.arange(N_CUSTOMERS, dtype=np.int32), 5),
        np.full(N_CUSTOMERS * 5, 30, np.int32),
        np.tile(np.arange(cut, cut + 5, dtype=np.int32), N_CUSTOMERS),
        N_CUSTOMERS,
        N_PRODUCTS,
    )
    flooded = rec.Lines(
        np.r_[lines.customer, flood.customer],
        np.r_[lines.product, flood.product],
        np.r_[lines.day, flood.day],
        N_CUSTOMERS,
        N_PRODUCTS,
    )
    everyone = np.arange(N_CUSTOMERS)
    for method in ("popularity", "cooccurrence"):
        before = _lists(
            rec.recommend(rec.fit(method, rec.basis(lines, catalogue, cut)), catalogue, everyone, 5, 0)
        )
        same = _lists(
            rec.recommend(rec.fit(method, rec.basis(flooded, catalogue, cut)), catalogue, everyone, 5, 0)
        )
        later = _lists(
            rec.recommend(rec.fit(method, rec.basis(flooded, catalogue, cut + 5)), catalogue, everyone, 5, 0)
        )
        assert same == before, method
        assert later != before, method  # the flood would change the lists: the split is what kept it out
    e1 = ev.evaluate(lines, catalogue, cut, DAY, 60, methods=("popularity", "cooccurrence"))
    assert e1["methods"]["popularity"]["ndcg_at_k"] > 0


def _oracle_evaluation(df: pd.DataFrame, catalogue: rec.Catalogue, cut: int, k: int, exclude: int) -> dict:
    """The baselines' recall@k, NDCG@k (per customer) and products shown, computed customer by
    customer in pandas from the lines in ``df`` alone."""
    after = df[(df.day >= cut) & (df.day < DAY)]
    out: dict[str, dict] = {m: {"recall": [], "ndcg": [], "shown": set()} for m in ("popularity", "category")}
    for c, bought in after.groupby("customer")["product"]:
        truth = set(bought) - _excluded(df, c, cut, exclude)
        if not truth:
            continue
        for method, oracle in (("popularity", _popularity_list), ("category", _category_list)):
            top = oracle(df, catalogue, c, cut, k, exclude)
            out[method]["shown"] |= set(top)
            hits = [p in truth for p in top]
            out[method]["recall"].append(sum(hits) / len(truth))
            dcg = sum(1 / math.log2(i + 2) for i, h in enumerate(hits) if h)
            ideal = sum(1 / math.log2(i + 2) for i in range(min(len(truth), k)))
            out[method]["ndcg"].append(dcg / ideal)
    return out


def _assert_figures(e: dict, oracle: dict, catalogue: rec.Catalogue) -> None:
    assert e["customers"] == len(oracle["popularity"]["recall"]) > 50
    for method, o in oracle.items():
        got = e["methods"][method]
        assert got["recall_at_k"] == pytest.approx(np.mean(o["recall"]), abs=1e-4)
        assert got["ndcg_at_k"] == pytest.approx(np.mean(o["ndcg"]), abs=1e-4)
        se = np.std(o["ndcg"], ddof=1) / math.sqrt(len(o["ndcg"]))
        assert got["ndcg_se"] == pytest.approx(se, abs=1e-4) and got["ndcg_se"] > 0
        assert got["coverage"] == pytest.approx(len(o["shown"]) / catalogue.active.sum(), abs=1e-4)


def test_evaluation_figures_equal_an_independent_computation() -> None:
    lines, catalogue = _shop(seed=2)
    cut, k, exclude = DAY - 60, 10, 60
    e = ev.evaluate(lines, catalogue, cut, DAY, exclude, methods=("popularity", "category"))
    _assert_figures(e, _oracle_evaluation(_frame(lines), catalogue, cut, k, exclude), catalogue)
    assert e["sampled_customers"] == e["all_customers"] == N_CUSTOMERS


def test_a_sampled_evaluation_is_the_evaluation_of_the_drawn_customers_alone() -> None:
    """With ``sample``, every method is fitted and measured on the drawn customers' lines only: the
    figures equal the pandas computation on those customers' lines (popularity counted among them),
    the draw is repeatable, and a sample as large as the shop changes nothing."""
    lines, catalogue = _shop(seed=2)
    cut, k, exclude, size = DAY - 60, 10, 60, 180
    _, drawn = ev.sample_customers(lines, size)
    assert drawn.size == np.unique(drawn).size == size and drawn.min() >= 0 and drawn.max() < N_CUSTOMERS
    assert np.array_equal(drawn, ev.sample_customers(lines, size)[1])
    assert not np.array_equal(drawn, ev.sample_customers(lines, size, seed=8)[1])
    e = ev.evaluate(lines, catalogue, cut, DAY, exclude, methods=("popularity", "category"), sample=size)
    assert (e["sampled_customers"], e["all_customers"]) == (size, N_CUSTOMERS)
    df = _frame(lines)
    mine = df[df.customer.isin(drawn.tolist())]
    assert 0 < len(mine) < len(df)
    _assert_figures(e, _oracle_evaluation(mine, catalogue, cut, k, exclude), catalogue)
    everyone = ev.evaluate(lines, catalogue, cut, DAY, exclude, methods=("popularity", "category"))
    assert e["methods"] != everyone["methods"]  # the draw measured something else than the whole shop
    as_large = ev.evaluate(
        lines, catalogue, cut, DAY, exclude, methods=("popularity", "category"), sample=N_CUSTOMERS
    )
    assert as_large == everyone


def test_the_best_ndcg_wins_and_ties_go_to_the_simpler() -> None:
    figures = {
        "popularity": {"ndcg_at_k": 0.2},
        "cooccurrence": {"ndcg_at_k": 0.2},
        "als": {"ndcg_at_k": 0.1},
    }
    assert ev.choose({"k": 10, "methods": figures})[0] == "popularity"
    figures["cooccurrence"]["ndcg_at_k"] = 0.21
    method, why = ev.choose({"k": 10, "methods": figures})
    assert method == "cooccurrence" and "0.2100" in why


def test_a_share_above_zero_never_reads_zero_percent() -> None:
    assert rec.percent(0.004) == "under 1%" and rec.percent(0.31) == "31%" and rec.percent(0.0) == "0%"


def _top_n(key: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The recommender's selection (``_ranked``) on keys given as they are: no popularity key (-inf),
    every score taken (above -inf), times 1, plus 0; no favourite, no exclusion, all for sale."""
    m, n_p = key.shape
    return rec._ranked(
        key,
        -np.inf,
        1.0,
        0.0,
        np.full(n_p, -np.inf),
        np.full(m, -1),
        np.zeros((1, n_p), dtype=bool),
        np.ones(n_p, dtype=bool),
        np.zeros(m, dtype=np.int64),
        np.zeros(2, dtype=np.int64),
        np.zeros(0, dtype=np.int32),
        np.zeros(0, dtype=np.int32),
        0,
        n,
    )


def test_the_top_n_are_the_largest_keys_and_a_tie_goes_to_the_lower_product() -> None:
    """The selection against a full sort of each row by (key descending, product ascending): keys
    rounded so that most rows hold ties across the n-th place, and rows with fewer than n finite
    keys (their -inf fill is dropped by the caller, so only the finite picks are compared)."""
    rng = np.random.default_rng(5)
    key = np.round(rng.random((300, 60)) * 4, 1) + 1.0
    key[rng.random(key.shape) < 0.3] = -np.inf
    key[:10, 3:] = -np.inf  # at most 3 finite keys
    n = 5
    pick, picked = _top_n(key, n)
    ties = 0
    for r in range(key.shape[0]):
        order = np.lexsort((np.arange(key.shape[1]), -key[r]))[:n]  # lexsort: the last key first
        finite = np.isfinite(key[r, order])
        assert pick[r][finite].tolist() == order[finite].tolist()
        assert picked[r][finite].tolist() == key[r, order][finite].tolist()
        assert not np.isfinite(picked[r][~finite]).any()
        ties += int((key[r] == key[r, order[-1]]).sum() > 1)
    assert ties > 100  # the rule was exercised, not only distinct keys
    assert (~np.isfinite(picked[:10, 3:])).all()


def test_recommendations_do_not_depend_on_the_order_of_equal_scores() -> None:
    """Two products with equal keys at the n-th place: the lower index is recommended, whichever
    column a partition would have met first."""
    key = np.array([[1.5, 1.2, 1.2, 3.0, 1.2], [1.2, 1.2, 9.0, 1.2, 1.1]])
    pick, picked = _top_n(key, 2)
    assert pick.tolist() == [[3, 0], [2, 0]]
    assert picked.tolist() == [[3.0, 1.5], [9.0, 1.2]]


def _dense_recommend(
    model: rec.Fitted, catalogue: rec.Catalogue, customers: np.ndarray, n: int, exclude_days: int
) -> list[tuple[int, int, float]]:
    """Each customer's ranked (product, key) pairs from the keys built as whole (customers x products)
    arrays, the way the recommender built them before its compiled pass, and a full sort of each row
    by (key descending, product ascending)."""
    b = model.basis
    n_p = b.bought.shape[1]
    n = min(n, int(catalogue.active.sum()))
    pop_key = np.empty(n_p)
    pop_key[b.popularity_order] = (n_p - np.arange(n_p)) / (n_p + 1.0)
    out = []
    for start in range(0, customers.size, rec.CHUNK):
        rows = customers[start : start + rec.CHUNK]
        m = rows.size
        fav = b.favourite[rows]
        key = np.broadcast_to(pop_key + rec.TIER_POPULAR, (m, n_p)).copy()
        if model.method != "popularity":
            for c in np.unique(fav[fav >= 0]):
                key[np.ix_(np.flatnonzero(fav == c), np.flatnonzero(b.category_top[c]))] += 1.0
        raw = model.scores(rows)
        if raw is not None:
            positive = raw > 1e-12
            top = raw.max() if positive.any() else 1.0
            np.copyto(key, raw * (1.0 / (top * (1 + 1e-9))) + rec.TIER_MODEL, where=positive)
        key[:, ~catalogue.active] = -np.inf
        recent = b.bought[rows]
        r_rows = np.repeat(np.arange(m), np.diff(recent.indptr))
        too_recent = recent.data >= b.day - exclude_days
        key[r_rows[too_recent], recent.indices[too_recent]] = -np.inf
        for r in range(m):
            order = np.lexsort((np.arange(n_p), -key[r]))[:n]
            out += [(int(rows[r]), int(j), float(key[r, j])) for j in order if np.isfinite(key[r, j])]
    return out


@pytest.mark.parametrize("method", ["popularity", "category", "cooccurrence", "als"])
def test_the_compiled_ranking_equals_the_dense_keys_sorted_in_full(method: str) -> None:
    """Every method's recommendations (products, order, tiers) against the keys built as dense arrays
    and sorted in full: favourites, inactive and recently bought products, customers with fewer
    than n products left, ALS's float32 scores, and co-purchase scores rounded so that ties at the
    n-th place are common."""
    lines, catalogue = _shop(3)
    b = rec.basis(lines, catalogue, DAY)
    if method == "als":  # float32 factors, as implicit gives them, without fitting ALS here
        rng = np.random.default_rng(2)
        model = rec.Fitted(
            "als",
            b,
            user_factors=rng.standard_normal((N_CUSTOMERS, 4)).astype(np.float32),
            item_factors=rng.standard_normal((N_PRODUCTS, 4)).astype(np.float32),
        )
    else:
        model = rec.fit(method, b)
    if method == "cooccurrence":
        model.similarity = np.round(model.similarity, 1)  # equal scores: the tie rule decides
    few = rec.Catalogue(catalogue.category, np.zeros(N_PRODUCTS, dtype=bool), catalogue.categories)
    few.active[b.popularity_order[:3]] = True  # 3 for sale, bought by many within 400 days: fewer left
    customers = np.arange(N_CUSTOMERS)
    short = 0
    for cat, exclude_days in ((catalogue, 60), (few, 400)):
        got = rec.recommend(model, cat, customers, 5, exclude_days)
        want = _dense_recommend(model, cat, customers, 5, exclude_days)
        assert list(zip(got.customer.tolist(), got.product.tolist(), strict=True)) == [
            (c, p) for c, p, _ in want
        ]
        assert got.tier.tolist() == [int(np.floor(k)) for _, _, k in want]
        counts = np.bincount(got.customer, minlength=N_CUSTOMERS)
        assert got.rank.tolist() == [r for k in counts for r in range(1, k + 1)]
        short += int((counts < min(5, int(cat.active.sum()))).sum())
    assert short > 0  # customers with fewer products left than asked for were met
    if method == "cooccurrence":  # the n-th place was tied for many customers
        scores = model.scores(customers)
        fifth = np.sort(scores, axis=1)[:, -5]
        assert int(((scores == fifth[:, None]).sum(axis=1) > 1).sum()) > 50
