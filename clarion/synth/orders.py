"""Orders and their items: a Poisson purchase process per contact, bent by the planted drivers.

Purchases follow a Poisson process whose rate drops after the onset; the drivers leave traces
before it (a late or lost parcel shortly before a delivery-driven decline, only discounted orders
before a price-driven one). The process runs past the cutoff so the truth knows who buys next;
only the orders before the cutoff land in the export.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from clarion.contract import (
    CURRENCIES,
    DELIVERY_STATUSES,
    ENTITIES,
    ORDER_CHANNELS,
    ORDER_STATUSES,
    PRODUCT_CATEGORIES,
)
from clarion.synth import vocab
from clarion.synth.arrays import (
    DAY,
    Counters,
    Timeline,
    cents_to_decimal,
    choice_cdf,
    group_positions,
    pick,
    season,
    ts_array,
    uniform_between,
)
from clarion.synth.personas import (
    DELIVERY,
    EXTRA_ITEMS,
    P_DISCOUNT,
    POST_ONSET_RATE,
    PRICE,
    PRICE_RAMP_DAYS,
    People,
)

CURRENCY_OF_COUNTRY = np.array(
    [CURRENCIES.index(c) for c in ("GBP", "EUR", "EUR", "USD", "EUR", "EUR", "EUR", "SEK", "EUR", "EUR")]
)
FX_PER_EUR = {"EUR": 1.0, "GBP": 0.85, "USD": 1.08, "SEK": 11.3}
FX = np.array([FX_PER_EUR[c] for c in CURRENCIES])
DISCOUNT_PCT = np.array([10, 15, 20, 25])
DISCOUNT_CODES = ("SAVE10", "SPRING15", "VIP20", "FLASH25")
STATUS_WEIGHT = np.array([0.91, 0.06, 0.03])  # completed, returned, cancelled (ORDER_STATUSES order)
P_ORDER_AT_SIGNUP = 0.85  # most people sign up at checkout
SIGNUP_ORDER_DELAY = 0.5 * DAY  # mean
STRAW_DAYS = (7, 60)  # the delivery that went wrong, this many days before a delivery-driven decline
CATEGORY_MIX = np.array([0.22, 0.14, 0.16, 0.14, 0.12, 0.08, 0.06, 0.08])  # PRODUCT_CATEGORIES order
# Taste: a contact's favourite category, and products bought together (companions). An order's
# first item comes from the favourite category this often (else from global popularity); each
# further item is a companion of the first, from the favourite category, or global popularity.
P_FIRST_FAVOURITE = 0.55
P_NEXT = np.array([0.40, 0.35, 0.25])  # companion, favourite category, global
# Companions come from the product's own category and the ones bought alongside it.
RELATED_CATEGORIES = {
    "apparel": ("accessories", "footwear"),
    "footwear": ("apparel", "outdoor"),
    "accessories": ("apparel", "beauty"),
    "home": ("beauty", "kids"),
    "beauty": ("home", "accessories"),
    "outdoor": ("footwear", "electronics"),
    "electronics": ("outdoor", "home"),
    "kids": ("home", "apparel"),
}


@dataclass(frozen=True)
class Catalog:
    table: pa.Table
    price_cents: np.ndarray  # EUR cents per product index
    popularity_cdf: np.ndarray
    category: np.ndarray  # index into PRODUCT_CATEGORIES per product index
    category_mix: np.ndarray  # each category's share of the popularity (favourites are drawn by it)
    # products by category, and within a category by index, with the popularity's cdf within its
    # category plus the category's index: a draw in category c is searchsorted(.., c + u)
    by_category: np.ndarray
    category_key: np.ndarray
    companions: np.ndarray  # (products, 3) product indexes, -1 where a product has only 2
    n_companions: np.ndarray


@dataclass(frozen=True)
class OrderResult:
    orders: pa.Table  # the history before the cutoff, ids assigned
    items: pa.Table
    future_orders: pa.Table  # orders after the cutoff, ids not yet assigned (see generator)
    future_items: pa.Table
    # the history's orders by index into people, sorted by (owner, time): tickets refer to them
    owner: np.ndarray
    time: np.ndarray
    ids: np.ndarray
    delivery: np.ndarray  # index into DELIVERY_STATUSES
    # the future's orders, for the truth
    future_owner: np.ndarray
    future_time: np.ndarray
    future_eur: np.ndarray
    future_cancelled: np.ndarray
    planted_ids: np.ndarray  # the order id of each planted order, in the order they were given
    favourite: np.ndarray  # each contact's favourite category (index into PRODUCT_CATEGORIES)


def make_catalog(
    rng: np.random.Generator,
    n_products: int,
    tl: Timeline,
    rng_companions: np.random.Generator | None = None,
) -> Catalog:
    """The products. ``rng_companions`` (its own stream, so the catalogue's draws stay as they were)
    fixes which products are bought together; without it a fixed default seed is used."""
    cat = choice_cdf(rng, CATEGORY_MIX, n_products)
    medians = np.array([vocab.PRODUCT_WORDS[c][0] for c in PRODUCT_CATEGORIES])
    price = medians[cat] * rng.lognormal(0.0, 0.35, n_products)
    price_cents = (np.round(price) * 100 - 1).astype(np.int64)  # 44.99-style prices
    price_cents = np.maximum(price_cents, 199)
    names = []
    adj_idx = rng.integers(0, 1000, n_products)
    noun_idx = rng.integers(0, 1000, n_products)
    for i in range(n_products):
        _, adjs, nouns = vocab.PRODUCT_WORDS[PRODUCT_CATEGORIES[cat[i]]]
        names.append(f"{adjs[adj_idx[i] % len(adjs)]} {nouns[noun_idx[i] % len(nouns)]}")
    ids = np.arange(1, n_products + 1)
    sku = [f"SKU-{PRODUCT_CATEGORIES[c][:3].upper()}-{i:05d}" for c, i in zip(cat, ids, strict=True)]
    popularity = 1.0 / np.arange(1, n_products + 1) ** 1.05
    popularity = popularity[rng.permutation(n_products)]
    updated = uniform_between(rng, np.full(n_products, tl.start), np.full(n_products, tl.cutoff - 1))
    table = pa.table(
        {
            "product_id": pa.array(ids, pa.int64()),
            "sku": pa.array(sku),
            "name": pa.array(names),
            "category": pick(PRODUCT_CATEGORIES, cat),
            "price": cents_to_decimal(price_cents),
            "currency": pa.array(["EUR"] * n_products),
            "active": pa.array(rng.random(n_products) < 0.95),
            "updated_at": ts_array(updated),
        },
        schema=ENTITIES["products"].arrow_schema(),
    )
    popularity = popularity / popularity.sum()
    by_category = np.lexsort((np.arange(n_products), cat))
    within = popularity[by_category]
    sums = np.bincount(cat, weights=popularity, minlength=len(PRODUCT_CATEGORIES))
    cdf = np.cumsum(within)
    starts = np.searchsorted(cat[by_category], np.arange(len(PRODUCT_CATEGORIES)))
    before = np.concatenate([[0.0], cdf])[starts]  # popularity of the categories before each one
    cat_sorted = cat[by_category]
    key = cat_sorted + (cdf - before[cat_sorted]) / np.maximum(sums[cat_sorted], 1e-300)
    companions, n_companions = _companions(
        rng_companions if rng_companions is not None else np.random.default_rng(3), cat, popularity
    )
    return Catalog(
        table=table,
        price_cents=price_cents,
        popularity_cdf=np.cumsum(popularity),
        category=cat,
        category_mix=sums / sums.sum(),
        by_category=by_category,
        category_key=key,
        companions=companions,
        n_companions=n_companions,
    )


def _companions(
    rng: np.random.Generator, cat: np.ndarray, popularity: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Two or three products bought with each product: one from its own category, the others from
    its related categories, chosen with a mild lean to popular products (sqrt of popularity)."""
    n = len(cat)
    out = np.full((n, 3), -1, dtype=np.int64)
    count = 2 + (rng.random(n) < 0.5)
    weight = np.sqrt(popularity)
    members = {c: np.flatnonzero(cat == c) for c in range(len(PRODUCT_CATEGORIES))}
    for i in range(n):
        own = PRODUCT_CATEGORIES[cat[i]]
        sources = [cat[i], *(PRODUCT_CATEGORIES.index(r) for r in RELATED_CATEGORIES[own])]
        for slot in range(count[i]):
            pool = members[sources[slot]]
            pool = pool[(pool != i) & ~np.isin(pool, out[i, :slot])]
            if len(pool) == 0:  # a tiny catalogue: any other product
                pool = np.setdiff1d(np.arange(n), np.concatenate([[i], out[i, :slot]]))
            if len(pool) == 0:
                count[i] = slot
                break
            w = weight[pool]
            out[i, slot] = pool[
                min(np.searchsorted(np.cumsum(w / w.sum()), rng.random(), side="right"), len(pool) - 1)
            ]
    return out, count


def companion_table(catalog: Catalog) -> pa.Table:
    """truth/product_companions: each product's companions (product ids), the pairs that taste plants."""
    product = np.repeat(np.arange(len(catalog.n_companions)), catalog.n_companions)
    slot = np.concatenate([np.arange(k) for k in catalog.n_companions]) if len(product) else product
    return pa.table(
        {
            "product_id": pa.array(product + 1, pa.int64()),
            "companion_product_id": pa.array(catalog.companions[product, slot] + 1, pa.int64()),
        }
    )


def draw_products(
    rng_items: np.random.Generator,
    catalog: Catalog,
    n_contacts: int,
    item_owner: np.ndarray,
    first_of: np.ndarray,
    is_first: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Each item's product (index), with the contact's taste: see P_FIRST_FAVOURITE and P_NEXT.

    ``item_owner``: each item's contact; ``first_of``: the position of its order's first item;
    ``is_first``: whether it is the first. All draws come from ``rng_items`` alone. Returns the
    products and each contact's favourite category (for the truth)."""
    n_cat = len(catalog.category_mix)
    favourite = choice_cdf(rng_items, catalog.category_mix, n_contacts)
    k = len(item_owner)
    u_mode, u_pick, u_comp = rng_items.random(k), rng_items.random(k), rng_items.random(k)
    last = len(catalog.price_cents) - 1
    glob = np.minimum(np.searchsorted(catalog.popularity_cdf, u_pick, side="right"), last)
    fav = favourite[item_owner]
    # a category without products (tiny catalogues) falls back to global popularity
    has = np.bincount(catalog.category, minlength=n_cat)[fav] > 0
    pos = np.searchsorted(catalog.category_key, fav + u_pick, side="right")
    pos = np.minimum(pos, last)
    in_fav = np.where(has, catalog.by_category[pos], glob)
    in_fav = np.where(catalog.category[in_fav] == fav, in_fav, glob)
    product = np.where(u_mode < P_FIRST_FAVOURITE, in_fav, glob)
    first_product = product[first_of]
    slot = np.minimum((u_comp * catalog.n_companions[first_product]).astype(np.int64), 2)
    companion = catalog.companions[first_product, slot]
    companion = np.where(companion >= 0, companion, glob)
    further = np.where(u_mode < P_NEXT[0], companion, np.where(u_mode < P_NEXT[0] + P_NEXT[1], in_fav, glob))
    return np.where(is_first, product, further), favourite


def simulate_orders(
    rng: np.random.Generator,
    rng_items: np.random.Generator,
    people: People,
    tl: Timeline,
    catalog: Catalog,
    counters: Counters,
    planted_owner: np.ndarray | None = None,
    planted_time: np.ndarray | None = None,
) -> OrderResult:
    """The chunk's orders and items, history and future; ids continue from ``counters``.

    ``planted_owner``/``planted_time``: extra orders a campaign caused (campaigns.plant_conversions),
    made like any other order except that they are never cancelled (a conversion that stands)."""
    n = people.n
    end = tl.future_end
    seg_a_hi = np.minimum(people.onset, end)
    owners, times, straw = [], [], []

    def poisson_segment(lo: np.ndarray, hi: np.ndarray, rate: np.ndarray) -> None:
        length = np.maximum(hi - lo, 0).astype(np.float64)
        k = rng.poisson(rate * length * 1.25)
        owner = np.repeat(np.arange(n), k)
        t = lo[owner] + rng.random(len(owner)) * length[owner]
        keep = rng.random(len(t)) < season(t) / 1.25
        owners.append(owner[keep])
        times.append(t[keep].astype(np.int64))
        straw.append(np.zeros(keep.sum(), dtype=bool))

    poisson_segment(people.signup, seg_a_hi, people.base_rate)
    poisson_segment(seg_a_hi, np.full(n, end), people.base_rate * POST_ONSET_RATE[people.persona])
    first = np.flatnonzero(rng.random(n) < P_ORDER_AT_SIGNUP)
    owners.append(first)
    times.append(people.signup[first] + rng.exponential(SIGNUP_ORDER_DELAY, len(first)).astype(np.int64))
    straw.append(np.zeros(len(first), dtype=bool))
    # the delivery that went wrong shortly before a delivery-driven decline
    d = np.flatnonzero((people.drivers & DELIVERY) > 0)
    lead = uniform_between(rng, np.full(len(d), STRAW_DAYS[0] * DAY), np.full(len(d), STRAW_DAYS[1] * DAY))
    t_straw = people.onset[d] - lead
    ok = t_straw > people.signup[d]
    owners.append(d[ok])
    times.append(t_straw[ok])
    straw.append(np.ones(ok.sum(), dtype=bool))
    planted_owner = np.zeros(0, dtype=np.int64) if planted_owner is None else planted_owner
    planted_time = np.zeros(0, dtype=np.int64) if planted_time is None else planted_time
    owners.append(planted_owner)
    times.append(planted_time)
    straw.append(np.zeros(len(planted_owner), dtype=bool))

    owner = np.concatenate(owners)
    t = np.concatenate(times)
    forced_problem = np.concatenate(straw)
    planted_seq = np.full(len(owner), -1, dtype=np.int64)  # which planted order, -1 for the rest
    planted_seq[len(owner) - len(planted_owner) :] = np.arange(len(planted_owner))
    sort = np.lexsort((t, owner))
    owner, t, forced_problem, planted_seq = owner[sort], t[sort], forced_problem[sort], planted_seq[sort]
    m = len(owner)
    persona = people.persona[owner]
    onset = people.onset[owner]
    drivers = people.drivers[owner]

    # discounts: price-sensitive people buy on promotion, and only on promotion after the onset
    p_disc = P_DISCOUNT[persona].copy()
    price_sens = (drivers & PRICE) > 0
    # from the persona's usual share to (nearly) every order over the months before the onset
    ramp = np.clip(1 - (onset[price_sens] - t[price_sens]) / (PRICE_RAMP_DAYS * DAY), 0.0, 1.0)
    p_disc[price_sens] = np.where(
        t[price_sens] < onset[price_sens], p_disc[price_sens] + ramp * (0.95 - p_disc[price_sens]), 1.0
    )
    discounted = rng.random(m) < p_disc
    disc_kind = rng.integers(0, len(DISCOUNT_PCT), m)

    # delivery: a bad stretch before a delivery-driven decline
    in_window = ((drivers & DELIVERY) > 0) & (t >= onset - 180 * DAY) & (t < onset)
    u = rng.random(m)
    late_p = np.where(in_window, 0.45, 0.06)
    lost_p = np.where(in_window, 0.15, 0.01)
    delivery = np.where(u < lost_p, 2, np.where(u < lost_p + late_p, 1, 0))
    delivery[forced_problem] = np.where(rng.random(forced_problem.sum()) < 0.6, 1, 2)
    channel = choice_cdf(rng, np.array([0.55, 0.25, 0.15, 0.05]), m)
    status = choice_cdf(rng, STATUS_WEIGHT, m)
    status[(planted_seq >= 0) & (status == 2)] = 0  # a planted conversion is a purchase that stands
    status[(delivery == 2) & (rng.random(m) < 0.5)] = 1  # lost parcels often end as returns/refunds
    status[(status == 1) & (t + 30 * DAY >= tl.cutoff) & (t < tl.cutoff)] = 0  # return not yet done
    delivery[status == 2] = 3  # cancelled: not shipped
    delivery[(channel == 2) & (status != 2)] = 0  # bought in store
    currency = CURRENCY_OF_COUNTRY[people.country[owner]]

    # items, amounts in exact cents
    n_items = 1 + rng.poisson(EXTRA_ITEMS[persona])
    item_order, item_pos = group_positions(n_items)
    ri = rng_items
    first_of = (np.cumsum(n_items) - n_items)[item_order]
    product, favourite = draw_products(ri, catalog, n, owner[item_order], first_of, item_pos == 0)
    qty = 1 + ri.poisson(0.25, len(item_order))
    unit = np.round(catalog.price_cents[product] * FX[currency[item_order]]).astype(np.int64)
    line = qty * unit
    starts = np.cumsum(n_items) - n_items
    subtotal = np.add.reduceat(line, starts)
    discount = np.where(discounted, np.round(subtotal * DISCOUNT_PCT[disc_kind] / 100), 0).astype(np.int64)
    total = subtotal - discount
    lag = np.where(status == 1, rng.integers(14, 31, m) * DAY, rng.integers(1, 7, m) * DAY)
    updated = np.minimum(t + lag + rng.integers(0, 3600, m), np.where(t < tl.cutoff, tl.cutoff - 1, end))

    hist = t < tl.cutoff
    order_ids = np.zeros(m, dtype=np.int64)
    order_ids[hist] = np.arange(counters.orders, counters.orders + hist.sum())
    counters.orders += int(hist.sum())

    def order_table(mask: np.ndarray, ids: np.ndarray) -> pa.Table:
        return pa.table(
            {
                "order_id": pa.array(ids, pa.int64()),
                "contact_id": pa.array(people.ids[owner[mask]]),
                "ordered_at": ts_array(t[mask]),
                "status": pick(ORDER_STATUSES, status[mask]),
                "channel": pick(ORDER_CHANNELS, channel[mask]),
                "currency": pick(CURRENCIES, currency[mask]),
                "subtotal_amount": cents_to_decimal(subtotal[mask]),
                "discount_amount": cents_to_decimal(discount[mask]),
                "total_amount": cents_to_decimal(total[mask]),
                "discount_code": pick(DISCOUNT_CODES, disc_kind[mask], mask=~discounted[mask]),
                "delivery_status": pick(DELIVERY_STATUSES, delivery[mask]),
                "updated_at": ts_array(updated[mask]),
            },
            schema=ENTITIES["orders"].arrow_schema(),
        )

    def item_table(order_mask: np.ndarray, order_id_of: np.ndarray, first_item_id: int) -> pa.Table:
        sel = order_mask[item_order]
        k = int(sel.sum())
        return pa.table(
            {
                "order_item_id": pa.array(np.arange(first_item_id, first_item_id + k), pa.int64()),
                "order_id": pa.array(order_id_of[item_order[sel]], pa.int64()),
                "product_id": pa.array(product[sel] + 1, pa.int64()),
                "quantity": pa.array(qty[sel], pa.int64()),
                "unit_price": cents_to_decimal(unit[sel]),
                "line_amount": cents_to_decimal(line[sel]),
                "updated_at": ts_array(np.minimum(t[item_order[sel]] + 60, updated[item_order[sel]])),
            },
            schema=ENTITIES["order_items"].arrow_schema(),
        )

    orders = order_table(hist, order_ids[hist])
    items = item_table(hist, order_ids, counters.order_items)
    counters.order_items += items.num_rows
    fut = ~hist
    # future orders carry a chunk-local sequence for now; the generator numbers them at the end
    local = np.zeros(m, dtype=np.int64)
    local[fut] = np.arange(fut.sum())
    future_orders = order_table(fut, local[fut])
    future_items = item_table(fut, local, 0)
    return OrderResult(
        orders=orders,
        items=items,
        future_orders=future_orders,
        future_items=future_items,
        owner=owner[hist],
        time=t[hist],
        ids=order_ids[hist],
        delivery=delivery[hist],
        future_owner=owner[fut],
        future_time=t[fut],
        future_eur=total[fut] / FX[currency[fut]] / 100.0,
        future_cancelled=status[fut] == 2,
        planted_ids=order_ids[np.argsort(planted_seq)[m - len(planted_owner) :]],
        favourite=favourite,
    )


def p_no_order(people: People, contact: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The chance that ``contact`` (index into people) places no order that stands (is not
    cancelled) in [lo, hi) under the process above, before any campaign effect: the Poisson rate
    (with the onset's drop and the season, taken at the window's middle), the order at signup and
    a delivery-driven decline's last order. Campaign effects are planted as exact lifts of the
    chance to buy, which needs it (campaigns.plant_conversions)."""
    stands = 1.0 - STATUS_WEIGHT[2]
    width = (hi - lo).astype(np.float64)
    before_onset = np.clip(people.onset[contact] - lo, 0, width)
    factor = before_onset + (width - before_onset) * POST_ONSET_RATE[people.persona[contact]]
    expected = people.base_rate[contact] * season(lo + width / 2) * factor
    p_none = np.exp(-expected * stands)
    since_signup = (lo - people.signup[contact]).astype(np.float64)
    to_signup = np.exp(-np.maximum(since_signup, 0) / SIGNUP_ORDER_DELAY)
    p_signup = P_ORDER_AT_SIGNUP * (
        to_signup - np.exp(-np.maximum(since_signup + width, 0) / SIGNUP_ORDER_DELAY)
    )
    p_none *= 1.0 - stands * p_signup
    onset = people.onset[contact].astype(np.float64)
    straw_lo, straw_hi = onset - STRAW_DAYS[1] * DAY, onset - STRAW_DAYS[0] * DAY
    overlap = np.clip(np.minimum(hi, straw_hi) - np.maximum(lo, straw_lo), 0, None)
    has_straw = (people.drivers[contact] & DELIVERY) > 0
    p_none *= 1.0 - stands * np.where(has_straw, overlap / (straw_hi - straw_lo), 0.0)
    return p_none
