"""Recommendations at 10k / 100k / 1M customers and 500 products: the time-split evaluation of the
four methods, and fitting + recommending (top 5 with reasons) for every customer.

Order lines are written with numpy (not the full generator), with the generator's taste: each
customer has a favourite category (weights like the catalogue's category mix), each product 2-3
companions in related categories; an order's first item is 55% from the favourite category, else
global popularity; each further item is 40% a companion of the first, 35% the favourite category,
25% global popularity. About 3 orders of 1-3 items per customer over three years.

Each step runs in its own process (bench.harness.measure), reading the lines from Parquet:
*evaluate*: ``models.recommend_evaluation.evaluate`` (fit before the cut, four methods, top 10 for
everyone who bought after it); *cooccurrence* / *als*: basis, fit, top 5 for every customer, the reason texts.
*Floor*, in the same run: reading the same Parquet file and counting lines per product (numpy).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import OUT, measure, report

DATA = OUT / "data"
PRODUCTS, CATEGORIES = 500, 8
DAY = 20_635  # 2026-07-01 as a day number
SPAN = 3 * 365


def ensure_lines(customers: int) -> Path:
    """lines.parquet (customer, product, day) and products.parquet (category, active), once per size."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = DATA / f"recommend-{customers}"
    if (folder / ".done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(19)
    mix = np.array([110, 55, 85, 75, 63, 40, 38, 34], dtype=float)
    category = np.repeat(np.arange(CATEGORIES), (mix / mix.sum() * PRODUCTS).round().astype(int))[:PRODUCTS]
    category = np.r_[category, np.zeros(PRODUCTS - category.size, int)]
    popularity = rng.permutation(1.0 / np.arange(1, PRODUCTS + 1) ** 0.9)
    popularity /= popularity.sum()
    companions = np.stack(  # 3 companions: products of the next category (related), fixed
        [rng.choice(np.flatnonzero(category == (c + 1) % CATEGORIES), 3) for c in category]
    )
    favourite = rng.choice(CATEGORIES, customers, p=mix / mix.sum())
    orders = rng.geometric(1 / 3.0, customers)
    owner = np.repeat(np.arange(customers), orders)
    order_day = DAY - rng.integers(1, SPAN, owner.size)
    size = rng.choice([1, 2, 3], owner.size, p=[0.5, 0.3, 0.2])
    fav = favourite[owner]
    by_cat = [np.flatnonzero(category == c) for c in range(CATEGORIES)]
    cat_p = [popularity[ix] / popularity[ix].sum() for ix in by_cat]

    def from_favourite(cats: np.ndarray) -> np.ndarray:
        out = np.empty(cats.size, np.int64)
        for c in range(CATEGORIES):
            at = np.flatnonzero(cats == c)
            out[at] = rng.choice(by_cat[c], at.size, p=cat_p[c])
        return out

    first = np.where(
        rng.random(owner.size) < 0.55, from_favourite(fav), rng.choice(PRODUCTS, owner.size, p=popularity)
    )
    customer, product, day = [owner], [first], [order_day]
    for extra in (2, 3):
        has = size >= extra
        draw = rng.random(int(has.sum()))
        item = np.where(
            draw < 0.40,
            companions[first[has], rng.integers(0, 3, int(has.sum()))],
            np.where(
                draw < 0.75, from_favourite(fav[has]), rng.choice(PRODUCTS, int(has.sum()), p=popularity)
            ),
        )
        customer.append(owner[has]), product.append(item), day.append(order_day[has])
    pq.write_table(
        pa.table(
            {
                "customer": np.concatenate(customer).astype(np.int32),
                "product": np.concatenate(product).astype(np.int32),
                "day": np.concatenate(day).astype(np.int32),
            }
        ),
        folder / "lines.parquet",
    )
    active = rng.random(PRODUCTS) > 0.05
    pq.write_table(
        pa.table({"category": category.astype(np.int16), "active": active}), folder / "products.parquet"
    )
    (folder / ".done").write_text(json.dumps({"customers": customers}))
    return folder


def _load(folder: str) -> tuple[Any, Any]:
    import pyarrow.parquet as pq

    from models import recommend as rec

    t = pq.read_table(f"{folder}/lines.parquet")
    p = pq.read_table(f"{folder}/products.parquet")
    customers = json.loads((Path(folder) / ".done").read_text())["customers"]
    lines = rec.Lines(
        t["customer"].to_numpy(), t["product"].to_numpy(), t["day"].to_numpy(), customers, PRODUCTS
    )
    catalogue = rec.Catalogue(
        p["category"].to_numpy(),
        p["active"].to_numpy(zero_copy_only=False),
        [f"c{i}" for i in range(CATEGORIES)],
    )
    return lines, catalogue


def floor(folder: str) -> dict[str, Any]:
    import pyarrow.parquet as pq

    t = pq.read_table(f"{folder}/lines.parquet")
    counts = np.bincount(t["product"].to_numpy(), minlength=PRODUCTS)
    return {"lines": int(t.num_rows), "top": int(counts.argmax())}


def evaluate(folder: str) -> dict[str, Any]:
    from models import recommend_evaluation as evaluation_of

    lines, catalogue = _load(folder)
    e = evaluation_of.evaluate(lines, catalogue, DAY - 61, DAY, 180)
    return {"customers": e["customers"], "methods": e["methods"]}


def recommend(folder: str, method: str) -> dict[str, Any]:
    import time

    from models import recommend as rec

    lines, catalogue = _load(folder)
    steps = {}
    t = time.perf_counter()
    b = rec.basis(lines, catalogue, DAY)
    model = rec.fit(method, b)
    steps["fit_s"] = time.perf_counter() - t
    t = time.perf_counter()
    rows = rec.recommend(model, catalogue, np.arange(lines.n_customers), 5, 180)
    steps["recommend_s"] = time.perf_counter() - t
    t = time.perf_counter()
    _, texts = rec.reason_texts(
        rows, b, catalogue, [f"product {i}" for i in range(PRODUCTS)], np.diff(b.bought.indptr) > 0
    )
    steps["reasons_s"] = time.perf_counter() - t
    return steps | {"rows": len(rows), "texts": len(texts)}


def main(sizes: list[int]) -> str:
    rows_md = [
        "| customers | order lines | floor s | evaluate s (peak MB) "
        "| co-occurrence s: fit / recommend / reasons (peak MB) "
        "| ALS s: fit / recommend / reasons (peak MB) | co-occurrence / floor | ALS / floor |",
        "|---:|---:|---:|---|---|---|---:|---:|",
    ]
    records = []
    for n in sizes:
        folder = str(ensure_lines(n))
        fl = measure("bench.recommend:floor", folder=folder)
        ev = measure("bench.recommend:evaluate", folder=folder)
        co = measure("bench.recommend:recommend", folder=folder, method="cooccurrence")
        als = measure("bench.recommend:recommend", folder=folder, method="als")
        record = {
            "customers": n,
            "lines": fl.result["lines"],
            "floor_s": fl.wall_s,
            "floor_peak_mb": fl.peak_rss_mb,
            "evaluate_s": ev.wall_s,
            "evaluate_peak_mb": ev.peak_rss_mb,
            "evaluation": ev.result,
            "cooccurrence_s": co.wall_s,
            "cooccurrence_peak_mb": co.peak_rss_mb,
            "cooccurrence_steps": co.result,
            "als_s": als.wall_s,
            "als_peak_mb": als.peak_rss_mb,
            "als_steps": als.result,
        }
        records.append(record)
        print(json.dumps(record), flush=True)
        c, a = co.result, als.result
        rows_md.append(
            f"| {n:,} | {fl.result['lines']:,} | {fl.wall_s:.2f} | {ev.wall_s:.1f} ({ev.peak_rss_mb:,.0f}) "
            f"| {co.wall_s:.1f}: {c['fit_s']:.1f} / {c['recommend_s']:.1f} / {c['reasons_s']:.1f} "
            f"({co.peak_rss_mb:,.0f}) "
            f"| {als.wall_s:.1f}: {a['fit_s']:.1f} / {a['recommend_s']:.1f} / {a['reasons_s']:.1f} "
            f"({als.peak_rss_mb:,.0f}) | {co.wall_s / fl.wall_s:.1f}x | {als.wall_s / fl.wall_s:.1f}x |"
        )
    last = records[-1]["evaluation"] if records else {"methods": {}}
    quality = ", ".join(
        f"{m} recall@10 {f['recall_at_k']:.3f} / NDCG@10 {f['ndcg_at_k']:.3f} / coverage {f['coverage']:.0%}"
        for m, f in last["methods"].items()
    )
    notes = (
        "Order lines written with numpy with the generator's taste (favourite category, companion "
        "products; `bench/recommend.py`), 500 products. *evaluate*: "
        "`models.recommend_evaluation.evaluate`, the "
        "four methods fitted before the cut (latest day - 60) and scored for everyone who bought after "
        "it; *co-occurrence* / *ALS*: fit on every line, top 5 for every customer, the reason texts "
        "(each step's own clock in the cell). Each measurement in its own process, reading the lines "
        "from Parquet; *floor*: reading the same file and counting lines per product. The warehouse "
        f"read and write of the stage are not included. Evaluation at the largest size: {quality}."
    )
    shutil.rmtree(DATA / "recommend-tmp", ignore_errors=True)
    return report("recommend", records, notes, rows_md, title="Recommendations")
