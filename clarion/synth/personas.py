"""Who the simulated contacts are: personas, planted churn drivers and their onset, consent, names.

Each contact gets a persona and, if declining or churned, one or two planted churn drivers with an
onset time; the other simulators (orders, campaigns, tickets) read these to leave the drivers'
traces in the data before the onset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clarion.contract import COUNTRIES
from clarion.synth import vocab
from clarion.synth.arrays import DAY, NEVER, YEAR, Timeline, choice_cdf, fill_digits, uniform_between

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


@dataclass(frozen=True)
class People:
    """One chunk's contacts: index i of every array is contact ``ids[i]``; times as in arrays.py."""

    ids: np.ndarray
    persona: np.ndarray
    country: np.ndarray
    age: np.ndarray
    age_known: np.ndarray
    signup: np.ndarray
    onset: np.ndarray  # NEVER for contacts who keep buying
    drivers: np.ndarray  # bit flags of DRIVERS
    optin: np.ndarray
    optin_at: np.ndarray
    optin_basis: np.ndarray
    optin_source: np.ndarray
    sms: np.ndarray
    sms_at: np.ndarray
    sms_out: np.ndarray
    sms_out_at: np.ndarray
    sms_source: np.ndarray
    objection: np.ndarray
    objection_at: np.ndarray
    objection_source: np.ndarray
    base_rate: np.ndarray  # orders per second before the onset
    bad_address: np.ndarray

    @property
    def n(self) -> int:
        return len(self.ids)


def simulate_people(rng: np.random.Generator, ids: np.ndarray, tl: Timeline) -> People:
    """Personas, consent and planted drivers of the contacts ``ids``."""
    n = len(ids)
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
    optin_at = np.where(rng.random(n) < 0.7, signup, signup + rng.exponential(60 * DAY, n).astype(np.int64))
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
    onset[ch] = signup[ch] + 150 * DAY + rng.exponential(CHURN_AFTER_DAYS * DAY, ch.sum()).astype(np.int64)
    # half of the new customers are one-and-done: they stop right after the cutoff, no driver
    new_drop = (persona == NEW) & (rng.random(n) < 0.5)
    onset[new_drop] = c + uniform_between(rng, np.zeros(new_drop.sum()), np.full(new_drop.sum(), 30 * DAY))

    optin_basis = np.where(rng.random(n) < 0.8, 0, 1)  # consent / legitimate_interest
    src_signup = choice_cdf(rng, np.array([0.6, 0.3, 0.0, 0.0, 0.1]), n)  # checkout/web/pref/import/store
    src_later = choice_cdf(rng, np.array([0.0, 0.3, 0.5, 0.2, 0.0]), n)
    objection_source = choice_cdf(rng, np.array([0, 0, 0.2, 0, 0, 0, 0.5, 0.3]), n)
    base_rate = ORDERS_PER_YEAR[persona] / YEAR * rng.lognormal(-0.1, 0.45, n)
    bad_address = rng.random(n) < 0.015
    return People(
        ids=ids,
        persona=persona,
        country=country,
        age=age,
        age_known=age_known,
        signup=signup,
        onset=onset,
        drivers=drivers,
        optin=optin,
        optin_at=optin_at,
        optin_basis=optin_basis,
        optin_source=np.where(optin_at == signup, src_signup, src_later),
        sms=sms,
        sms_at=sms_at,
        sms_out=sms_out,
        sms_out_at=sms_out_at,
        sms_source=np.where(sms_at == signup, src_signup, src_later),
        objection=objection,
        objection_at=objection_at,
        objection_source=objection_source,
        base_rate=base_rate,
        bad_address=bad_address,
    )


@dataclass(frozen=True)
class Names:
    """Names, e-mails and phones (PII): the contacts table holds them and tickets quote them."""

    first: list[str]
    last: list[str]
    emails: list[str]
    phones: list[str | None]


def simulate_names(rng: np.random.Generator, people: People) -> Names:
    n = people.n
    first = np.empty(n, dtype=object)
    last = np.empty(n, dtype=object)
    email_local = np.empty(n, dtype=object)
    phone = [None] * n
    for ci, code in enumerate(COUNTRIES):
        idx = np.flatnonzero(people.country == ci)
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
    return Names(
        first=first.tolist(),
        last=last.tolist(),
        emails=(email_local + people.ids.astype(str).astype(object) + "@" + domain).tolist(),
        phones=phone,
    )
