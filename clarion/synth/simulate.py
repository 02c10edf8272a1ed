"""Vectorised simulation of a CRM with planted behaviour, one chunk of contacts at a time.

Each contact gets a persona and, if declining or churned, one or two planted churn drivers with an
onset time. Purchases follow a Poisson process whose rate drops after the onset; the drivers leave
observable traces before it (e-mail engagement falls ~20-60 days ahead, negative tickets come in,
deliveries go wrong, only discounted orders happen). The process runs past the cutoff so the truth
knows who really buys next; only the history before the cutoff lands in the export.

Everything is numpy over whole chunks: no Python loop per order or event (tickets' text is the one
exception, at about 0.2 tickets per contact-year).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clarion.config import GenerateSettings
from clarion.contract import (
    AGE_BANDS,
    CONSENT_SOURCES,
    COUNTRIES,
    CURRENCIES,
    DELIVERY_STATUSES,
    ENTITIES,
    LAWFUL_BASES,
    ORDER_CHANNELS,
    ORDER_STATUSES,
    PRODUCT_CATEGORIES,
    TICKET_CATEGORIES,
    TICKET_CHANNELS,
)
from clarion.synth import vocab

DAY = 86_400
YEAR = 365.25 * DAY
NEVER = np.iinfo(np.int64).max // 4  # "no such time": far beyond any horizon, safe to add to

PERSONAS = ("loyal_high_value", "regular", "discount_seeker", "declining", "churned", "new")
LOYAL, REGULAR, DISCOUNT, DECLINING, CHURNED, NEW = range(6)
DRIVERS = ("engagement_drop", "negative_support", "delivery_problems", "price_sensitivity")
ENGAGEMENT, SUPPORT, DELIVERY, PRICE = (1 << i for i in range(4))  # bit flags

# Persona parameters, indexed by persona code.
PERSONA_WEIGHT = np.array([0.10, 0.30, 0.15, 0.15, 0.20, 0.10])
ORDERS_PER_YEAR = np.array([11.0, 4.0, 5.0, 5.0, 5.0, 5.0])
EXTRA_ITEMS = np.array([1.3, 0.5, 0.5, 0.5, 0.5, 0.6])  # items per order = 1 + Poisson(this)
P_DISCOUNT = np.array([0.08, 0.15, 0.80, 0.15, 0.15, 0.25])
OPEN_RATE = np.array([0.55, 0.30, 0.35, 0.32, 0.28, 0.42])
CLICK_RATE = np.array([0.35, 0.18, 0.30, 0.18, 0.15, 0.25])  # given an open
POST_ONSET_RATE = np.array([1.0, 1.0, 1.0, 0.25, 0.02, 0.08])  # purchase rate factor after onset
DECLINE_AFTER_DAYS = 420  # mean wait for a decline's onset, after the first 120 days
CHURN_AFTER_DAYS = 300  # mean wait for a churn's onset, after the first 150 days
PRICE_RAMP_DAYS = 180  # a price-driven decline: discounts take over in the months before the onset
DRIVER_WEIGHT = np.array([0.35, 0.25, 0.20, 0.20])
# Age tilts persona mix a little (so fairness checks have something real to measure); row 6 = unknown.
AGE_TILT = np.array(
    [
        [0.6, 0.9, 1.6, 1.0, 1.1, 1.3],
        [0.9, 1.0, 1.2, 1.0, 1.0, 1.1],
        [1.1, 1.0, 1.0, 1.0, 1.0, 1.0],
        [1.2, 1.0, 0.9, 1.0, 1.0, 0.9],
        [1.3, 1.0, 0.8, 1.0, 0.9, 0.8],
        [1.4, 1.1, 0.7, 1.0, 0.9, 0.7],
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
    ]
)
AGE_WEIGHT = np.array([0.10, 0.20, 0.20, 0.18, 0.16, 0.16])
COUNTRY_WEIGHT = np.array([0.22, 0.18, 0.14, 0.14, 0.08, 0.07, 0.06, 0.05, 0.03, 0.03])
CURRENCY_OF_COUNTRY = np.array(
    [CURRENCIES.index(c) for c in ("GBP", "EUR", "EUR", "USD", "EUR", "EUR", "EUR", "SEK", "EUR", "EUR")]
)
FX_PER_EUR = {"EUR": 1.0, "GBP": 0.85, "USD": 1.08, "SEK": 11.3}
FX = np.array([FX_PER_EUR[c] for c in CURRENCIES])
DISCOUNT_PCT = np.array([10, 15, 20, 25])
DISCOUNT_CODES = ("SAVE10", "SPRING15", "VIP20", "FLASH25")
CAMPAIGN_WEEKDAYS = (1, 4)  # Tuesday and Friday sends
P_TARGETED = 0.35  # chance a subscribed contact is in a given campaign's audience


@dataclass(frozen=True)
class Timeline:
    """All times are int64 seconds since the epoch, UTC."""

    start: int
    cutoff: int  # first second after the export's last day: history is [start, cutoff)
    future_end: int
    email_start: int

    @classmethod
    def from_settings(cls, g: GenerateSettings) -> Timeline:
        if g.cutoff <= g.start:
            raise ValueError(f"generate.cutoff ({g.cutoff}) must be after generate.start ({g.start})")

        def ts(d: date) -> int:
            return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())

        cutoff = ts(g.cutoff) + DAY
        start = ts(g.start)
        if cutoff - start < 400 * DAY:
            raise ValueError("generate.start must be at least 400 days before generate.cutoff")
        return cls(
            start=start,
            cutoff=cutoff,
            future_end=cutoff + g.future_days * DAY,
            email_start=max(start, cutoff - g.email_history_days * DAY),
        )


@dataclass(frozen=True)
class Catalog:
    table: pa.Table
    price_cents: np.ndarray  # EUR cents per product index
    popularity_cdf: np.ndarray


@dataclass(frozen=True)
class Campaigns:
    times: np.ndarray  # send times, sorted
    ids: pa.Array


@dataclass
class Counters:
    """Next id per entity; chunks run in order so ids are contiguous and deterministic."""

    orders: int = 1
    order_items: int = 1
    email_events: int = 1
    support_tickets: int = 1
    consents: int = 1


@dataclass
class ChunkResult:
    tables: dict[str, pa.Table]  # contract entities, history before the cutoff
    truth: pa.Table  # one row per contact
    ticket_truth: pa.Table
    future_orders: pa.Table  # orders after the cutoff, ids not yet assigned (see generator)
    future_items: pa.Table


# --------------------------------------------------------------------------------------------------
# helpers


def cents_to_decimal(cents: np.ndarray) -> pa.Array:
    """Exact money: a decimal128 value *is* its unscaled integer, so cents become decimal(14,2) as is."""
    cents = np.ascontiguousarray(cents, dtype=np.int64)
    words = np.empty((len(cents), 2), dtype=np.int64)
    words[:, 0] = cents
    words[:, 1] = cents >> 63  # sign extension into the high word
    return pa.Array.from_buffers(pa.decimal128(14, 2), len(cents), [None, pa.py_buffer(words.tobytes())])


def ts_array(seconds: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(np.asarray(seconds, dtype=np.int64), type=pa.timestamp("s", tz="UTC"), mask=mask)


def pick(values: tuple[str, ...] | list[str], idx: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(values, pa.string()).take(pa.array(idx, type=pa.int64(), mask=mask))


def choice_cdf(rng: np.random.Generator, weights: np.ndarray, size: int) -> np.ndarray:
    cdf = np.cumsum(weights / weights.sum())
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(weights) - 1)


def season(t: np.ndarray) -> np.ndarray:
    """Demand multiplier in [0.75, 1.25], highest in mid-December."""
    doy = (t / DAY) % 365.25
    return 1.0 + 0.25 * np.cos(2 * np.pi * (doy - 350) / 365.25)


def uniform_between(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.maximum(np.asarray(hi, dtype=np.float64), lo)
    return (lo + rng.random(len(lo)) * (hi - lo)).astype(np.int64)


def group_positions(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ragged groups of the given sizes: each element's group and its position in the group."""
    group = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    pos = np.arange(int(counts.sum())) - np.repeat(starts, counts)
    return group, pos


def fill_digits(rng: np.random.Generator, pattern: str, size: int) -> pa.Array:
    """'+44 7700 900###' -> random digits in place of each #, vectorised per run of #."""
    parts: list[pa.Array | str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] != "#":
            j = pattern.find("#", i)
            j = len(pattern) if j < 0 else j
            parts.append(pattern[i:j])
            i = j
            continue
        j = i
        while j < len(pattern) and pattern[j] == "#":
            j += 1
        width = j - i
        digits = pa.array(rng.integers(0, 10**width, size=size)).cast(pa.string())
        parts.append(pc.utf8_lpad(digits, width=width, padding="0"))
        i = j
    return pc.binary_join_element_wise(*parts, "")


# --------------------------------------------------------------------------------------------------
# global pieces: catalogue and e-mail campaigns


def make_catalog(rng: np.random.Generator, n_products: int, tl: Timeline) -> Catalog:
    cat = choice_cdf(rng, np.array([0.22, 0.14, 0.16, 0.14, 0.12, 0.08, 0.06, 0.08]), n_products)
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
    return Catalog(
        table=table, price_cents=price_cents, popularity_cdf=np.cumsum(popularity / popularity.sum())
    )


def make_campaigns(tl: Timeline) -> Campaigns:
    first_day = tl.email_start // DAY
    days = np.arange(first_day, tl.cutoff // DAY)
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    send_days = days[np.isin(weekday, CAMPAIGN_WEEKDAYS)]
    times = send_days * DAY + 9 * 3600  # 09:00 UTC
    ids = [f"CMP-{datetime.fromtimestamp(int(t), UTC):%Y%m%d}" for t in times]
    return Campaigns(times=times.astype(np.int64), ids=pa.array(ids))


# --------------------------------------------------------------------------------------------------
# one chunk


class ChunkSimulator:
    """Simulates ``n`` contacts with ids ``first_id..first_id+n-1``. Deterministic for its seed."""

    def __init__(
        self,
        seed: np.random.SeedSequence,
        first_id: int,
        n: int,
        tl: Timeline,
        catalog: Catalog,
        campaigns: Campaigns,
    ) -> None:
        streams = seed.spawn(6)
        self.rng_people, self.rng_orders, self.rng_items, self.rng_email, self.rng_tickets, self.rng_misc = (
            np.random.default_rng(s) for s in streams
        )
        self.n = n
        self.ids = np.arange(first_id, first_id + n, dtype=np.int64)
        self.tl = tl
        self.catalog = catalog
        self.campaigns = campaigns

    def run(self, counters: Counters) -> ChunkResult:
        self._people()
        self._names()
        orders, items, future_orders, future_items = self._orders(counters)
        events = self._email(counters)
        tickets, ticket_truth = self._tickets(counters, orders)
        consents = self._consents(counters)
        contacts = self._contacts_table()
        truth = self._truth(future_orders)
        return ChunkResult(
            tables={
                "contacts": contacts,
                "orders": orders,
                "order_items": items,
                "email_events": events,
                "support_tickets": tickets,
                "consents": consents,
            },
            truth=truth,
            ticket_truth=ticket_truth,
            future_orders=future_orders,
            future_items=future_items,
        )

    # -- people --------------------------------------------------------------------------------
    def _people(self) -> None:
        rng, n, tl = self.rng_people, self.n, self.tl
        age = choice_cdf(rng, AGE_WEIGHT, n)
        age_known = rng.random(n) >= 0.2
        tilt_row = np.where(age_known, age, 6)
        probs = PERSONA_WEIGHT * AGE_TILT[tilt_row]
        cdf = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
        persona = np.minimum((rng.random(n)[:, None] > cdf).sum(axis=1), len(PERSONAS) - 1)
        country = choice_cdf(rng, COUNTRY_WEIGHT, n)

        c, s = tl.cutoff, tl.start
        lo = np.full(n, s, dtype=np.int64)
        hi = np.full(n, c - 120 * DAY, dtype=np.int64)
        lo[persona == NEW] = c - 90 * DAY
        hi[persona == NEW] = c - DAY
        signup = uniform_between(rng, lo, hi)

        # consent, decided before drivers: an engagement drop needs e-mails to be observed in
        optin = rng.random(n) < 0.75
        optin_at = np.where(
            rng.random(n) < 0.7, signup, signup + rng.exponential(60 * DAY, n).astype(np.int64)
        )
        optin &= optin_at < c
        sms = rng.random(n) < 0.35
        sms_at = np.where(rng.random(n) < 0.6, signup, signup + rng.exponential(90 * DAY, n).astype(np.int64))
        sms &= sms_at < c
        sms_out = sms & (rng.random(n) < 0.08)
        sms_out_at = np.where(sms_out, uniform_between(rng, sms_at, np.full(n, c - 1)), NEVER)
        objection = rng.random(n) < 0.03
        objection_at = np.where(objection, uniform_between(rng, signup, np.full(n, c - 1)), NEVER)

        # planted drivers and their onset
        churny = (persona == DECLINING) | (persona == CHURNED)
        weights = np.broadcast_to(DRIVER_WEIGHT, (n, 4)).copy()
        weights[~optin, 0] = 0.0  # no e-mail, no visible engagement drop
        keys = rng.random((n, 4)) ** (1.0 / np.maximum(weights, 1e-12))  # weighted draw without replacement
        order = np.argsort(-keys, axis=1)
        two = rng.random(n) < 0.3
        drivers = np.where(churny, (1 << order[:, 0]) | np.where(two, 1 << order[:, 1], 0), 0)

        # Onsets come at a steady hazard after a first stretch of normal buying, whenever the
        # customer signed up: at any day of the history (and after the cutoff) some customers are
        # about to decline, as in a real shop. (Version 1 put every decline in the 8 months before
        # the export, so a model validated on an earlier day met more declines than it was trained
        # on: the past was not like the future, for no reason a shop would have.)
        onset = np.full(n, NEVER, dtype=np.int64)
        dec = persona == DECLINING
        onset[dec] = (
            signup[dec] + 120 * DAY + rng.exponential(DECLINE_AFTER_DAYS * DAY, dec.sum()).astype(np.int64)
        )
        ch = persona == CHURNED
        onset[ch] = (
            signup[ch] + 150 * DAY + rng.exponential(CHURN_AFTER_DAYS * DAY, ch.sum()).astype(np.int64)
        )
        # half of the new customers are one-and-done: they stop right after the cutoff, no driver
        new_drop = (persona == NEW) & (rng.random(n) < 0.5)
        onset[new_drop] = c + uniform_between(
            rng, np.zeros(new_drop.sum()), np.full(new_drop.sum(), 30 * DAY)
        )

        self.persona, self.country, self.age, self.age_known = persona, country, age, age_known
        self.signup, self.onset, self.drivers = signup, onset, drivers
        self.optin, self.optin_at = optin, optin_at
        self.optin_basis = np.where(rng.random(n) < 0.8, 0, 1)  # consent / legitimate_interest
        src_signup = choice_cdf(rng, np.array([0.6, 0.3, 0.0, 0.0, 0.1]), n)  # checkout/web/pref/import/store
        src_later = choice_cdf(rng, np.array([0.0, 0.3, 0.5, 0.2, 0.0]), n)
        self.optin_source = np.where(optin_at == signup, src_signup, src_later)
        self.sms, self.sms_at, self.sms_out, self.sms_out_at = sms, sms_at, sms_out, sms_out_at
        self.sms_source = np.where(sms_at == signup, src_signup, src_later)
        self.objection, self.objection_at = objection, objection_at
        self.objection_source = choice_cdf(rng, np.array([0, 0, 0.2, 0, 0, 0, 0.5, 0.3]), n)
        self.base_rate = ORDERS_PER_YEAR[persona] / YEAR * rng.lognormal(-0.1, 0.45, n)
        self.bad_address = rng.random(n) < 0.015
        # filled by _email
        self.unsub_at = np.full(n, NEVER, dtype=np.int64)

    # -- orders and items ---------------------------------------------------------------------
    def _orders(self, counters: Counters) -> tuple[pa.Table, pa.Table, pa.Table, pa.Table]:
        rng, tl, n = self.rng_orders, self.tl, self.n
        end = tl.future_end
        seg_a_hi = np.minimum(self.onset, end)
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

        poisson_segment(self.signup, seg_a_hi, self.base_rate)
        poisson_segment(seg_a_hi, np.full(n, end), self.base_rate * POST_ONSET_RATE[self.persona])
        first = np.flatnonzero(rng.random(n) < 0.85)  # most people sign up at checkout
        owners.append(first)
        times.append(self.signup[first] + rng.exponential(0.5 * DAY, len(first)).astype(np.int64))
        straw.append(np.zeros(len(first), dtype=bool))
        # the delivery that went wrong shortly before a delivery-driven decline
        d = np.flatnonzero((self.drivers & DELIVERY) > 0)
        t_straw = self.onset[d] - uniform_between(rng, np.full(len(d), 7 * DAY), np.full(len(d), 60 * DAY))
        ok = t_straw > self.signup[d]
        owners.append(d[ok])
        times.append(t_straw[ok])
        straw.append(np.ones(ok.sum(), dtype=bool))

        owner = np.concatenate(owners)
        t = np.concatenate(times)
        forced_problem = np.concatenate(straw)
        sort = np.lexsort((t, owner))
        owner, t, forced_problem = owner[sort], t[sort], forced_problem[sort]
        m = len(owner)
        persona = self.persona[owner]
        onset = self.onset[owner]
        drivers = self.drivers[owner]

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
        status = choice_cdf(rng, np.array([0.91, 0.06, 0.03]), m)
        status[(delivery == 2) & (rng.random(m) < 0.5)] = 1  # lost parcels often end as returns/refunds
        status[(status == 1) & (t + 30 * DAY >= tl.cutoff) & (t < tl.cutoff)] = 0  # return not yet done
        delivery[status == 2] = 3  # cancelled: not shipped
        delivery[(channel == 2) & (status != 2)] = 0  # bought in store
        currency = CURRENCY_OF_COUNTRY[self.country[owner]]

        # items, amounts in exact cents
        n_items = 1 + rng.poisson(EXTRA_ITEMS[persona])
        item_order, _ = group_positions(n_items)
        ri = self.rng_items
        product = np.searchsorted(self.catalog.popularity_cdf, ri.random(len(item_order)), side="right")
        product = np.minimum(product, len(self.catalog.price_cents) - 1)
        qty = 1 + ri.poisson(0.25, len(item_order))
        unit = np.round(self.catalog.price_cents[product] * FX[currency[item_order]]).astype(np.int64)
        line = qty * unit
        starts = np.cumsum(n_items) - n_items
        subtotal = np.add.reduceat(line, starts)
        discount = np.where(discounted, np.round(subtotal * DISCOUNT_PCT[disc_kind] / 100), 0).astype(
            np.int64
        )
        total = subtotal - discount
        lag = np.where(status == 1, rng.integers(14, 31, m) * DAY, rng.integers(1, 7, m) * DAY)
        updated = np.minimum(t + lag + rng.integers(0, 3600, m), np.where(t < tl.cutoff, tl.cutoff - 1, end))

        hist = t < tl.cutoff
        order_ids = np.zeros(m, dtype=np.int64)
        order_ids[hist] = np.arange(counters.orders, counters.orders + hist.sum())
        counters.orders += int(hist.sum())
        self.order_owner, self.order_time, self.order_ids = owner[hist], t[hist], order_ids[hist]
        self.order_delivery = delivery[hist]

        def order_table(mask: np.ndarray, ids: np.ndarray) -> pa.Table:
            return pa.table(
                {
                    "order_id": pa.array(ids, pa.int64()),
                    "contact_id": pa.array(self.ids[owner[mask]]),
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
        self.future_eur = total[fut] / FX[currency[fut]] / 100.0
        self.future_owner = owner[fut]
        self.future_time = t[fut]
        self.future_cancelled = status[fut] == 2
        return orders, items, future_orders, future_items

    # -- e-mail --------------------------------------------------------------------------------
    def _email(self, counters: Counters) -> pa.Table:
        rng, tl, n = self.rng_email, self.tl, self.n
        times = self.campaigns.times
        win_lo = np.maximum(self.optin_at, tl.email_start)
        win_hi = np.minimum(self.objection_at, tl.cutoff)
        win_hi = np.where(self.optin, win_hi, win_lo)
        lo = np.searchsorted(times, win_lo, side="left")
        hi = np.maximum(np.searchsorted(times, win_hi, side="left"), lo)
        contact, pos = group_positions(hi - lo)
        campaign = lo[contact] + pos
        targeted = rng.random(len(contact)) < P_TARGETED
        contact, campaign = contact[targeted], campaign[targeted]
        sent_at = times[campaign] + rng.integers(0, 7200, len(contact))
        # the send goes out up to 2 h after the campaign's slot: never after an objection
        legal = sent_at < self.objection_at[contact]
        contact, campaign, sent_at = contact[legal], campaign[legal], sent_at[legal]

        persona = self.persona[contact]
        onset = self.onset[contact]
        drop_lead = rng.integers(20, 61, n) * DAY
        drop_at = np.where((self.drivers & ENGAGEMENT) > 0, self.onset - drop_lead, NEVER)
        dropped = sent_at >= drop_at[contact]
        faded = (persona == CHURNED) & (sent_at >= onset)
        base_open = np.clip(OPEN_RATE[self.persona] + rng.normal(0, 0.08, n), 0.02, 0.95)
        p_open = base_open[contact] * np.where(dropped, 0.12, 1.0) * np.where(faded, 0.4, 1.0)
        p_click = CLICK_RATE[persona] * np.where(dropped, 0.3, 1.0)
        p_unsub = np.where(dropped, 0.03, np.where(faded, 0.01, 0.003))

        unsub_flag = rng.random(len(contact)) < p_unsub
        # nothing is sent after an unsubscribe: keep each contact's sends up to the first one
        cum = np.cumsum(unsub_flag)
        group_start = np.searchsorted(contact, contact, side="left")
        before = cum - unsub_flag - np.where(group_start > 0, cum[group_start - 1], 0)
        keep = before == 0
        # a bad address bounces on its first send and is never mailed again
        first_send = np.r_[True, contact[1:] != contact[:-1]]
        bounce = self.bad_address[contact] & first_send
        keep &= ~self.bad_address[contact] | first_send
        contact, campaign, sent_at = contact[keep], campaign[keep], sent_at[keep]
        p_open, p_click, unsub_flag, bounce = p_open[keep], p_click[keep], unsub_flag[keep], bounce[keep]
        unsub_flag &= ~bounce

        k = len(contact)
        opened = ~bounce & (rng.random(k) < p_open)
        open_at = sent_at + rng.exponential(5 * 3600, k).astype(np.int64) + 60
        clicked = opened & (rng.random(k) < p_click)
        click_at = open_at + rng.exponential(600, k).astype(np.int64) + 5
        unsub_at = np.where(opened, open_at, sent_at) + rng.exponential(3600, k).astype(np.int64) + 30
        opened &= open_at < tl.cutoff
        clicked &= opened & (click_at < tl.cutoff)
        unsub_flag &= unsub_at < tl.cutoff
        self.unsub_at[contact[unsub_flag]] = unsub_at[unsub_flag]

        kinds = [
            (np.ones(k, dtype=bool), sent_at, 0),
            (opened, open_at, 1),
            (clicked, click_at, 2),
            (unsub_flag, unsub_at, 3),
            (bounce, sent_at + 5, 4),
        ]
        ev_contact = np.concatenate([contact[m] for m, _, _ in kinds])
        ev_campaign = np.concatenate([campaign[m] for m, _, _ in kinds])
        ev_time = np.concatenate([ts[m] for m, ts, _ in kinds])
        ev_type = np.concatenate([np.full(m.sum(), code) for m, _, code in kinds])
        order = np.lexsort((ev_type, ev_time))
        ev_contact, ev_campaign, ev_time, ev_type = (
            ev_contact[order],
            ev_campaign[order],
            ev_time[order],
            ev_type[order],
        )
        ids = np.arange(counters.email_events, counters.email_events + len(ev_time))
        counters.email_events += len(ev_time)
        self.event_contact, self.event_time, self.event_type = ev_contact, ev_time, ev_type
        return pa.table(
            {
                "event_id": pa.array(ids, pa.int64()),
                "contact_id": pa.array(self.ids[ev_contact]),
                "campaign_id": self.campaigns.ids.take(pa.array(ev_campaign)),
                "event_type": pick(("sent", "open", "click", "unsubscribe", "bounce"), ev_type),
                "occurred_at": ts_array(ev_time),
            },
            schema=ENTITIES["email_events"].arrow_schema(),
        )

    # -- support tickets -------------------------------------------------------------------------
    def _tickets(self, counters: Counters, orders: pa.Table) -> tuple[pa.Table, pa.Table]:
        rng, tl, n = self.rng_tickets, self.tl, self.n
        # baseline tickets over the whole relationship
        span = np.maximum(tl.cutoff - self.signup, 0).astype(np.float64)
        k = rng.poisson(0.15 * span / YEAR)
        owner = [np.repeat(np.arange(n), k)]
        when = [self.signup[owner[0]] + (rng.random(len(owner[0])) * span[owner[0]]).astype(np.int64)]
        cat = [choice_cdf(rng, np.array([0.25, 0.2, 0.25, 0.15, 0.15]), len(owner[0]))]
        sent = [choice_cdf(rng, np.array([0.3, 0.45, 0.25]), len(owner[0]))]  # negative/neutral/positive
        linked = [np.full(len(owner[0]), -1)]
        # a late or lost parcel often becomes a delivery complaint
        bad = np.flatnonzero((self.order_delivery == 1) | (self.order_delivery == 2))
        bad = bad[rng.random(len(bad)) < 0.35]
        owner.append(self.order_owner[bad])
        when.append(self.order_time[bad] + rng.integers(5, 13, len(bad)) * DAY)
        cat.append(np.zeros(len(bad), dtype=np.int64))
        sent.append(np.where(rng.random(len(bad)) < 0.7, 0, 1))
        linked.append(bad)
        # planted: an unhappy run of tickets before a support-driven decline
        s = np.flatnonzero((self.drivers & SUPPORT) > 0)
        reps = rng.integers(1, 4, len(s))
        s_owner = np.repeat(s, reps)
        s_when = (
            self.onset[s_owner] - rng.integers(0, 61, len(s_owner)) * DAY - rng.integers(0, DAY, len(s_owner))
        )
        owner.append(s_owner)
        when.append(s_when)
        cat.append(np.array([1, 2, 4])[rng.integers(0, 3, len(s_owner))])
        sent.append(np.zeros(len(s_owner), dtype=np.int64))
        linked.append(np.full(len(s_owner), -1))

        owner_a = np.concatenate(owner)
        when_a = np.concatenate(when)
        cat_a = np.concatenate(cat)
        sent_a = np.concatenate(sent)
        linked_a = np.concatenate(linked)
        valid = (when_a < tl.cutoff) & (when_a >= self.signup[owner_a])
        owner_a, when_a, cat_a, sent_a, linked_a = (
            x[valid] for x in (owner_a, when_a, cat_a, sent_a, linked_a)
        )
        order = np.lexsort((when_a, owner_a))
        owner_a, when_a, cat_a, sent_a, linked_a = (
            x[order] for x in (owner_a, when_a, cat_a, sent_a, linked_a)
        )
        m = len(owner_a)

        # the order a ticket talks about: its own, else the contact's latest order before it
        key_orders = self.order_owner.astype(np.int64) * (1 << 40) + self.order_time
        latest = np.searchsorted(key_orders, owner_a.astype(np.int64) * (1 << 40) + when_a, side="right") - 1
        has_prior = (latest >= 0) & (self.order_owner[np.maximum(latest, 0)] == owner_a)
        ref_idx = np.where(linked_a >= 0, linked_a, np.where(has_prior, latest, -1))
        order_ref = np.where(ref_idx >= 0, self.order_ids[np.maximum(ref_idx, 0)], -1)

        channel = choice_cdf(rng, np.array([0.5, 0.35, 0.15]), m)
        open_ = (when_a > tl.cutoff - 7 * DAY) & (rng.random(m) < 0.5)
        answered = rng.random(m) < 0.4
        score_lo = np.array([1, 3, 4])[sent_a]
        score = score_lo + rng.integers(0, 2, m)
        updated = np.minimum(when_a + rng.integers(3600, 5 * DAY, m), tl.cutoff - 1)
        injected = rng.random(m) < 0.03
        with_pii = rng.random(m) < 0.75
        subjects, bodies, pii_flags = self._ticket_text(
            rng, owner_a, cat_a, sent_a, order_ref, injected, with_pii
        )

        ids = np.arange(counters.support_tickets, counters.support_tickets + m)
        counters.support_tickets += m
        table = pa.table(
            {
                "ticket_id": pa.array(ids, pa.int64()),
                "contact_id": pa.array(self.ids[owner_a]),
                "created_at": ts_array(when_a),
                "channel": pick(TICKET_CHANNELS, channel),
                "category": pick(TICKET_CATEGORIES, cat_a),
                "status": pa.array(np.where(open_, "open", "closed")),
                "subject": pa.array(subjects),
                "body": pa.array(bodies),
                "satisfaction_score": pa.array(score, pa.int64(), mask=~answered | open_),
                "updated_at": ts_array(updated),
            },
            schema=ENTITIES["support_tickets"].arrow_schema(),
        )
        truth = pa.table(
            {
                "ticket_id": pa.array(ids, pa.int64()),
                "sentiment": pick(("negative", "neutral", "positive"), sent_a),
                "contains_pii": pa.array(pii_flags),
                "is_prompt_injection": pa.array(injected),
            }
        )
        return table, truth

    def _ticket_text(
        self,
        rng: np.random.Generator,
        owner: np.ndarray,
        cat: np.ndarray,
        sentiment: np.ndarray,
        order_ref: np.ndarray,
        injected: np.ndarray,
        with_pii: np.ndarray,
    ) -> tuple[list[str], list[str], list[bool]]:
        first, last = self.first_names, self.last_names
        email, phone = self.emails, self.phones
        greet = rng.integers(0, len(vocab.GREETINGS), len(owner))
        sign = rng.integers(0, len(vocab.SIGN_OFFS), len(owner))
        extra = rng.integers(0, len(vocab.PII_LINES) + 2, len(owner))  # some tickets give no contact data
        pick_body = rng.random(len(owner))
        pick_subject = rng.random(len(owner))
        pick_inj = rng.integers(0, len(vocab.PROMPT_INJECTIONS), len(owner))
        sentiments = ("negative", "neutral", "positive")
        subjects, bodies, pii = [], [], []
        for i in range(len(owner)):
            category = TICKET_CATEGORIES[cat[i]]
            options = vocab.TICKET_BODIES[(category, sentiments[sentiment[i]])]
            ref = f"#{order_ref[i]}" if order_ref[i] > 0 else "my last order"
            body = options[int(pick_body[i] * len(options))].format(order=ref)
            o = owner[i]
            names = {"first": first[o], "last": last[o], "email": email[o], "phone": phone[o]}
            parts = [vocab.GREETINGS[greet[i]], body]
            has_pii = False
            if with_pii[i]:
                if extra[i] < len(vocab.PII_LINES):
                    parts.append(vocab.PII_LINES[extra[i]].format(**names))
                parts.append(vocab.SIGN_OFFS[sign[i]].format(**names))
                has_pii = True
            if injected[i]:
                parts.insert(2, vocab.PROMPT_INJECTIONS[pick_inj[i]])
            subject_options = vocab.TICKET_SUBJECTS[category]
            subjects.append(subject_options[int(pick_subject[i] * len(subject_options))])
            bodies.append("\n".join(p for p in parts if p))
            pii.append(has_pii)
        return subjects, bodies, pii

    # -- consents and contacts -------------------------------------------------------------------
    def _consents(self, counters: Counters) -> pa.Table:
        unsub = self.unsub_at < NEVER
        src = CONSENT_SOURCES
        parts = [
            # (mask, time, channel, event, source index, basis index or -1)
            (self.optin, self.optin_at, "email", "opt_in", self.optin_source, self.optin_basis),
            (unsub, self.unsub_at, "email", "opt_out", np.full(self.n, src.index("unsubscribe_link")), None),
            (self.sms, self.sms_at, "sms", "opt_in", self.sms_source, np.zeros(self.n, dtype=np.int64)),
            (
                self.sms_out,
                self.sms_out_at,
                "sms",
                "opt_out",
                np.full(self.n, src.index("preference_center")),
                None,
            ),
            (self.objection, self.objection_at, "all", "objection", self.objection_source, None),
        ]
        contact = np.concatenate([np.flatnonzero(m) for m, *_ in parts])
        when = np.concatenate([t[m] for m, t, *_ in parts])
        channel = np.concatenate([np.full(m.sum(), ch, dtype=object) for m, _, ch, *_ in parts])
        event = np.concatenate([np.full(m.sum(), ev, dtype=object) for m, _, _, ev, *_ in parts])
        source = np.concatenate([s[m] for m, _, _, _, s, _ in parts])
        basis = np.concatenate([b[m] if b is not None else np.full(m.sum(), -1) for m, *_, b in parts])
        order = np.lexsort((when, contact))
        contact, when, channel, event, source, basis = (
            x[order] for x in (contact, when, channel, event, source, basis)
        )
        ids = np.arange(counters.consents, counters.consents + len(contact))
        counters.consents += len(contact)
        return pa.table(
            {
                "consent_id": pa.array(ids, pa.int64()),
                "contact_id": pa.array(self.ids[contact]),
                "channel": pa.array(channel.astype(str)),
                "event": pa.array(event.astype(str)),
                "recorded_at": ts_array(when),
                "source": pick(src, source),
                "lawful_basis": pick(LAWFUL_BASES, np.maximum(basis, 0), mask=basis < 0),
            },
            schema=ENTITIES["consents"].arrow_schema(),
        )

    def _names(self) -> None:
        """Names, e-mails and phones; needed by tickets (which quote them) and the contacts table."""
        rng, n = self.rng_misc, self.n
        first = np.empty(n, dtype=object)
        last = np.empty(n, dtype=object)
        email_local = np.empty(n, dtype=object)
        phone = [None] * n
        for ci, code in enumerate(COUNTRIES):
            idx = np.flatnonzero(self.country == ci)
            if len(idx) == 0:
                continue
            firsts, lasts = vocab.NAME_POOLS[code]
            fi = rng.integers(0, len(firsts), len(idx))
            li = rng.integers(0, len(lasts), len(idx))
            first[idx] = np.array(firsts, dtype=object)[fi]
            last[idx] = np.array(lasts, dtype=object)[li]
            folded_f = np.array([vocab.ascii_fold(x) for x in firsts], dtype=object)[fi]
            folded_l = np.array([vocab.ascii_fold(x) for x in lasts], dtype=object)[li]
            email_local[idx] = folded_f + "." + folded_l
            phones = fill_digits(rng, vocab.PHONE_FORMATS[code], len(idx)).to_pylist()
            for j, p in zip(idx, phones, strict=True):
                phone[j] = p
        domain = np.array(vocab.EMAIL_DOMAINS, dtype=object)[rng.integers(0, len(vocab.EMAIL_DOMAINS), n)]
        self.first_names = first.tolist()
        self.last_names = last.tolist()
        self.emails = (email_local + self.ids.astype(str).astype(object) + "@" + domain).tolist()
        self.phones = phone

    def _contacts_table(self) -> pa.Table:
        c = self.tl.cutoff
        unsub = self.unsub_at < NEVER
        email_consent = self.optin & ~unsub
        email_at = np.where(unsub, self.unsub_at, self.optin_at)
        email_src = np.where(unsub, CONSENT_SOURCES.index("unsubscribe_link"), self.optin_source)
        sms_consent = self.sms & ~self.sms_out
        sms_at = np.where(self.sms_out, self.sms_out_at, self.sms_at)
        sms_src = np.where(self.sms_out, CONSENT_SOURCES.index("preference_center"), self.sms_source)
        changed = np.maximum.reduce(
            [
                self.signup,
                np.where(self.optin, email_at, 0),
                np.where(self.sms, sms_at, 0),
                np.where(self.objection, self.objection_at, 0),
            ]
        )
        updated = np.minimum(changed + 1, c - 1)
        # phone numbers are optional: some people never gave one
        has_phone = self.rng_misc.random(self.n) < 0.7
        return pa.table(
            {
                "contact_id": pa.array(self.ids),
                "first_name": pa.array(self.first_names, pa.string()),
                "last_name": pa.array(self.last_names, pa.string()),
                "email": pa.array(self.emails, pa.string()),
                "phone": pa.array(self.phones, pa.string(), mask=~has_phone),
                "country": pick(COUNTRIES, self.country),
                "signup_date": pa.array((self.signup // DAY).astype(np.int32), pa.date32()),
                "email_consent": pa.array(email_consent),
                "email_consent_at": ts_array(email_at, mask=~self.optin),
                "email_consent_source": pick(CONSENT_SOURCES, email_src, mask=~self.optin),
                "email_lawful_basis": pick(LAWFUL_BASES, self.optin_basis, mask=~self.optin),
                "sms_consent": pa.array(sms_consent),
                "sms_consent_at": ts_array(sms_at, mask=~self.sms),
                "sms_consent_source": pick(CONSENT_SOURCES, sms_src, mask=~self.sms),
                "sms_lawful_basis": pick(LAWFUL_BASES, np.zeros(self.n, dtype=np.int64), mask=~self.sms),
                "marketing_objection": pa.array(self.objection),
                "age_band": pick(AGE_BANDS, self.age, mask=~self.age_known),
                "updated_at": ts_array(updated),
            },
            schema=ENTITIES["contacts"].arrow_schema(),
        )

    # -- truth -----------------------------------------------------------------------------------
    def _truth(self, future_orders: pa.Table) -> pa.Table:
        n, c = self.n, self.tl.cutoff
        bought = ~self.future_cancelled
        in90 = bought & (self.future_time < c + 90 * DAY)
        orders_90 = np.bincount(self.future_owner[in90], minlength=n)
        spend_90 = np.bincount(self.future_owner[in90], weights=self.future_eur[in90], minlength=n)
        orders_all = np.bincount(self.future_owner[bought], minlength=n)
        spend_all = np.bincount(self.future_owner[bought], weights=self.future_eur[bought], minlength=n)
        names = [
            ";".join(d for i, d in enumerate(DRIVERS) if mask & (1 << i)) for mask in self.drivers.tolist()
        ]
        planted = (self.onset < NEVER) & (self.drivers > 0)
        return pa.table(
            {
                "contact_id": pa.array(self.ids),
                "persona": pick(PERSONAS, self.persona),
                "drivers": pa.array(names),
                "onset_date": pa.array(
                    (np.where(planted, self.onset, 0) // DAY).astype(np.int32), pa.date32(), mask=~planted
                ),
                "will_purchase_90d": pa.array(orders_90 > 0),
                "future_orders_90d": pa.array(orders_90, pa.int64()),
                "future_spend_90d_eur": pa.array(np.round(spend_90, 2)),
                "future_orders": pa.array(orders_all, pa.int64()),
                "future_spend_eur": pa.array(np.round(spend_all, 2)),
            }
        )
