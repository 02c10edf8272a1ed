"""Support tickets: a baseline of questions, complaints after bad deliveries, and the unhappy run of
tickets before a support-driven decline. Their text quotes names, e-mails and phones (PII) and a few
carry prompt injections; the truth records which, each ticket's true sentiment and its planted topic
(ticket_topics.py: finer than the category, with many wordings per topic and sentiment).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from clarion.contract import ENTITIES, TICKET_CATEGORIES, TICKET_CHANNELS
from clarion.synth import ticket_topics as tt
from clarion.synth import vocab
from clarion.synth.arrays import DAY, YEAR, Counters, Timeline, choice_cdf, pick, ts_array
from clarion.synth.orders import OrderResult
from clarion.synth.personas import SUPPORT, Names, People


def simulate_tickets(
    rng: np.random.Generator,
    people: People,
    names: Names,
    orders: OrderResult,
    tl: Timeline,
    counters: Counters,
) -> tuple[pa.Table, pa.Table]:
    """The chunk's tickets and their truth; ticket ids continue from ``counters``."""
    n = people.n
    # baseline tickets over the whole relationship
    span = np.maximum(tl.cutoff - people.signup, 0).astype(np.float64)
    k = rng.poisson(0.15 * span / YEAR)
    owner = [np.repeat(np.arange(n), k)]
    when = [people.signup[owner[0]] + (rng.random(len(owner[0])) * span[owner[0]]).astype(np.int64)]
    cat = [choice_cdf(rng, np.array([0.25, 0.2, 0.25, 0.15, 0.15]), len(owner[0]))]
    sent = [choice_cdf(rng, np.array([0.3, 0.45, 0.25]), len(owner[0]))]  # negative/neutral/positive
    linked = [np.full(len(owner[0]), -1)]
    # a late or lost parcel often becomes a delivery complaint
    bad = np.flatnonzero((orders.delivery == 1) | (orders.delivery == 2))
    bad = bad[rng.random(len(bad)) < 0.35]
    owner.append(orders.owner[bad])
    when.append(orders.time[bad] + rng.integers(5, 13, len(bad)) * DAY)
    cat.append(np.zeros(len(bad), dtype=np.int64))
    sent.append(np.where(rng.random(len(bad)) < 0.7, 0, 1))
    linked.append(bad)
    # planted: an unhappy run of tickets before a support-driven decline
    s = np.flatnonzero((people.drivers & SUPPORT) > 0)
    reps = rng.integers(1, 4, len(s))
    s_owner = np.repeat(s, reps)
    s_when = (
        people.onset[s_owner] - rng.integers(0, 61, len(s_owner)) * DAY - rng.integers(0, DAY, len(s_owner))
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
    valid = (when_a < tl.cutoff) & (when_a >= people.signup[owner_a])
    owner_a, when_a, cat_a, sent_a, linked_a = (x[valid] for x in (owner_a, when_a, cat_a, sent_a, linked_a))
    order = np.lexsort((when_a, owner_a))
    owner_a, when_a, cat_a, sent_a, linked_a = (x[order] for x in (owner_a, when_a, cat_a, sent_a, linked_a))
    m = len(owner_a)

    # the order a ticket talks about: its own, else the contact's latest order before it
    key_orders = orders.owner.astype(np.int64) * (1 << 40) + orders.time
    latest = np.searchsorted(key_orders, owner_a.astype(np.int64) * (1 << 40) + when_a, side="right") - 1
    has_prior = (latest >= 0) & (orders.owner[np.maximum(latest, 0)] == owner_a)
    ref_idx = np.where(linked_a >= 0, linked_a, np.where(has_prior, latest, -1))
    order_ref = np.where(ref_idx >= 0, orders.ids[np.maximum(ref_idx, 0)], -1)

    channel = choice_cdf(rng, np.array([0.5, 0.35, 0.15]), m)
    open_ = (when_a > tl.cutoff - 7 * DAY) & (rng.random(m) < 0.5)
    answered = rng.random(m) < 0.4
    score_lo = np.array([1, 3, 4])[sent_a]
    score = score_lo + rng.integers(0, 2, m)
    updated = np.minimum(when_a + rng.integers(3600, 5 * DAY, m), tl.cutoff - 1)
    injected = rng.random(m) < 0.03
    with_pii = rng.random(m) < 0.75
    linked_delivery = np.where(linked_a >= 0, orders.delivery[np.maximum(linked_a, 0)], 0)
    subjects, bodies, pii_flags, topics = _ticket_text(
        rng, names, owner_a, cat_a, sent_a, order_ref, injected, with_pii, linked_delivery
    )

    ids = np.arange(counters.support_tickets, counters.support_tickets + m)
    counters.support_tickets += m
    table = pa.table(
        {
            "ticket_id": pa.array(ids, pa.int64()),
            "contact_id": pa.array(people.ids[owner_a]),
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
            "topic": pick(tt.TOPIC_NAMES, topics),
            "contains_pii": pa.array(pii_flags),
            "is_prompt_injection": pa.array(injected),
        }
    )
    return table, truth


def _ticket_text(
    rng: np.random.Generator,
    names: Names,
    owner: np.ndarray,
    cat: np.ndarray,
    sentiment: np.ndarray,
    order_ref: np.ndarray,
    injected: np.ndarray,
    with_pii: np.ndarray,
    linked_delivery: np.ndarray,
) -> tuple[list[str], list[str], list[bool], np.ndarray]:
    """Subjects, bodies, PII flags and topics (index into ticket_topics.TOPIC_NAMES).

    The draws that existed before topics come first and in the same order; the topic and the
    wording's parts are drawn after them, so the stream's earlier draws are unchanged."""
    first, last = names.first, names.last
    email, phone = names.emails, names.phones
    m = len(owner)
    greet = rng.integers(0, len(vocab.GREETINGS), m)
    sign = rng.integers(0, len(vocab.SIGN_OFFS), m)
    extra = rng.integers(0, len(vocab.PII_LINES) + 2, m)  # some tickets give no contact data
    pick_body = rng.random(m)
    pick_subject = rng.random(m)
    pick_inj = rng.integers(0, len(vocab.PROMPT_INJECTIONS), m)
    topics = _topics(rng.random(m), cat, linked_delivery)
    parts_u = rng.random((m, 4))  # opening, closing, reference form, synonyms
    slot_pick = rng.integers(0, 1 << 30, (m, len(tt.SLOTS)))
    sentiments = ("negative", "neutral", "positive")
    subjects, bodies, pii = [], [], []
    for i in range(m):
        topic, feeling = tt.TOPIC_NAMES[topics[i]], sentiments[sentiment[i]]
        message = _message(topic, feeling, order_ref[i], pick_body[i], parts_u[i], slot_pick[i])
        o = owner[i]
        known = {"first": first[o], "last": last[o], "email": email[o], "phone": phone[o]}
        parts = [vocab.GREETINGS[greet[i]], message]
        has_pii = False
        if with_pii[i]:
            if extra[i] < len(vocab.PII_LINES):
                parts.append(vocab.PII_LINES[extra[i]].format(**known))
            parts.append(vocab.SIGN_OFFS[sign[i]].format(**known))
            has_pii = True
        if injected[i]:
            parts.insert(2, vocab.PROMPT_INJECTIONS[pick_inj[i]])
        subject_options = tt.SUBJECTS[topic]
        subjects.append(subject_options[int(pick_subject[i] * len(subject_options))])
        bodies.append("\n".join(p for p in parts if p))
        pii.append(has_pii)
    return subjects, bodies, pii, topics


def _topics(u: np.ndarray, cat: np.ndarray, linked_delivery: np.ndarray) -> np.ndarray:
    """Each ticket's topic: a complaint about a late or lost parcel is about that; the others are
    drawn within their category by the topics' weights."""
    topics = np.zeros(len(cat), dtype=np.int64)
    for c, category in enumerate(TICKET_CATEGORIES):
        mine = [i for i, (tc, _) in enumerate(tt.TOPICS.values()) if tc == category]
        weights = np.array([tt.TOPICS[tt.TOPIC_NAMES[i]][1] for i in mine])
        cdf = np.cumsum(weights / weights.sum())
        sel = cat == c
        topics[sel] = np.array(mine)[np.minimum(np.searchsorted(cdf, u[sel], side="right"), len(mine) - 1)]
    for status, topic in tt.TOPIC_OF_DELIVERY.items():
        topics[linked_delivery == status] = tt.TOPIC_NAMES.index(topic)
    return topics


def _message(topic: str, feeling: str, order_id: int, u_core: float, u: np.ndarray, slots: np.ndarray) -> str:
    """One line: opening + core + closing, the core's {slots} filled from synonyms."""
    cores = tt.CORES[(topic, feeling)]
    core = cores[int(u_core * len(cores))]
    has_order = order_id > 0
    legacy = f"#{order_id}" if has_order else "my last order"
    if has_order:
        ref = tt.REF_FORMS[int(u[2] * len(tt.REF_FORMS))].format(n=order_id)
    else:
        ref = tt.NO_ORDER_REFS[int(u[2] * len(tt.NO_ORDER_REFS))]
    words = {name: options[slots[j] % len(options)] for j, (name, options) in enumerate(tt.SLOTS.items())}
    core = core.format(order=legacy, ref=ref, **words)
    core = core[0].upper() + core[1:]
    opening = tt.OPENINGS[feeling][int(u[0] * len(tt.OPENINGS[feeling]))]
    closing = tt.CLOSINGS[feeling][int(u[1] * len(tt.CLOSINGS[feeling]))]
    return " ".join(p for p in (opening, core, closing) if p)
