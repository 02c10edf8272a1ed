"""Next best action, the pure part: what an action is worth to a customer, and who gets which.

Expected incremental value of action a (a campaign on a channel) for customer i, in EUR::

    value = uplift x order_value - P(buy | treated) x offer_per_buyer - contact_cost
    P(buy | treated) = purchase_probability + uplift

* ``uplift``: the rise in the customer's probability of buying that the campaign causes. Measured
  (treated minus holdout) once the campaign has enough customers per arm, else the prior
  ``prior_relative_uplift x purchase_probability``. It is clipped to [-p, 1 - p] so that
  P(buy | treated) stays a probability.
* ``offer_per_buyer``: the brief's discount ('15%' of the order value, or a fixed 'EUR 10'). Every
  treated buyer redeems it, not only the ones the campaign won: that is why it is weighted by
  P(buy | treated), and why a discount sent to customers who would buy anyway loses money.
* ``contact_cost``: what sending one message costs.

`arbitrate` then gives each customer at most one action: their highest positive value, ties broken
by campaign name then channel (the action's index), campaigns' budgets filled greedily by value.
Arrays in, arrays out; no warehouse, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

# Why a (customer, action) pair is not eligible; code 0 is eligible. Rules are checked in this order,
# so a higher code means the pair passed more of them (push, never permitted, sorts before the
# consents that a customer can give). The wording of the first seven is the export's
# (clarion/content/export.py), so both count exclusions under the same names.
REASONS: tuple[str, ...] = (
    "",
    "erased",
    "marketing objection",
    "no push permission recorded in the CRM",
    "no email consent",
    "no sms consent",
    "no email on record",
    "no phone on record",
    "global control",
    "holdout",
    "frequency cap",
    "cool-down",
)
ELIGIBLE = 0
REASON_CODE = {text: code for code, text in enumerate(REASONS) if code}
BUDGET_REACHED = "budget reached"
NO_AUDIENCE = "in no active campaign's audience"
NOT_POSITIVE = "no action worth more than it costs"


class DiscountError(ValueError):
    pass


@dataclass(frozen=True)
class Discount:
    """A brief's discount as a cost: a share of the order value, or a fixed amount in EUR."""

    kind: Literal["percent", "amount"]
    amount: float
    text: str

    def per_buyer(self, order_value: np.ndarray) -> np.ndarray:
        """What the discount costs on one order of each customer's order value."""
        order_value = np.asarray(order_value, dtype=float)
        if self.kind == "percent":
            return order_value * (self.amount / 100.0)
        return np.full(order_value.shape, self.amount)


_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*(?:off)?\s*$", re.I)
_AMOUNT = re.compile(r"^\s*(?:(?:EUR|€)\s*(\d+(?:\.\d+)?)|(\d+(?:\.\d+)?)\s*(?:EUR|€))\s*(?:off)?\s*$", re.I)


def parse_discount(text: str) -> Discount:
    """'15%' -> 15% of the order value; 'EUR 10', '10 EUR', '€10' -> 10 EUR per order."""
    if m := _PERCENT.match(text or ""):
        share = float(m.group(1))
        if share > 100:
            raise DiscountError(f"{text!r} is more than the whole order")
        return Discount("percent", share, text)
    if m := _AMOUNT.match(text or ""):
        return Discount("amount", float(m.group(1) or m.group(2)), text)
    raise DiscountError(
        f"{text!r} cannot be costed: write a percentage of the order ('15%') or an amount in EUR ('EUR 10')"
    )


@dataclass(frozen=True)
class Values:
    """Per (customer, action) pair: the figures of the value formula, all in EUR except probabilities."""

    uplift: np.ndarray  # absolute rise in P(buy), clipped to [-p, 1 - p]
    p_treated: np.ndarray
    offer_cost: np.ndarray  # expected: P(buy | treated) x offer per buyer
    value: np.ndarray


def prior_uplift(purchase_probability: np.ndarray, relative: float) -> np.ndarray:
    """Before any evidence: the campaign raises each customer's purchase probability by `relative`."""
    return relative * np.asarray(purchase_probability, dtype=float)


def incremental_value(
    purchase_probability: np.ndarray,
    uplift: np.ndarray,
    order_value: np.ndarray,
    offer_per_buyer: np.ndarray,
    contact_cost: float,
) -> Values:
    """The expected incremental value of each pair (the module's formula)."""
    p = np.asarray(purchase_probability, dtype=float)
    up = np.clip(np.asarray(uplift, dtype=float), -p, 1.0 - p)
    p_treated = p + up
    offer = p_treated * np.asarray(offer_per_buyer, dtype=float)
    value = up * np.asarray(order_value, dtype=float) - offer - contact_cost
    return Values(up, p_treated, offer, value)


@dataclass(frozen=True)
class Arbitration:
    chosen: np.ndarray  # per customer: index of the chosen pair, -1 for no action
    runner_up: np.ndarray  # per customer: best eligible pair of another campaign that had room, or -1
    refused: np.ndarray  # per pair: worth more to the customer than their choice, but its budget was full


def arbitrate(
    customer: np.ndarray,
    action: np.ndarray,
    campaign: np.ndarray,
    value: np.ndarray,
    eligible: np.ndarray,
    customers: int,
    budgets: Sequence[int | None],
) -> Arbitration:
    """At most one action per customer, deterministically.

    Pairs are ranked by value (highest first), then action index (actions are numbered in order of
    campaign name, then channel), then customer index: one strict order, so nothing depends on
    input order. A customer gets their best-ranked eligible pair of positive value whose campaign
    still has room; campaigns fill in rank order (greedy by value across all customers: the
    budget goes to the customers it is worth most to, and a customer whose best campaign is full
    gets their next best). ``budgets[k]``: most sends of campaign k, None for no limit.

    Computed as customer-proposing deferred acceptance, which with one common ranking of pairs
    gives exactly the greedy assignment, in a few vectorised rounds instead of a loop per pair.
    """
    customer = np.asarray(customer, dtype=np.int64)
    value = np.asarray(value, dtype=float)
    n = len(customer)
    # one strict order of all pairs: (action, customer) as one integer key, then a stable sort by value
    tie = np.argsort(np.asarray(action, dtype=np.int64) * max(customers, 1) + customer, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[tie[np.argsort(-value[tie], kind="stable")]] = np.arange(n)
    positive = np.asarray(eligible, dtype=bool) & (value > 0)
    campaign = np.asarray(campaign, dtype=np.int64)
    chosen = np.full(customers, -1, dtype=np.int64)

    def by_customer_then_rank(pairs: np.ndarray) -> np.ndarray:
        return pairs[np.argsort(customer[pairs] * max(n, 1) + rank[pairs])]  # unique keys: any sort

    # each customer's positive pairs, best first: the order they propose in
    offers = by_customer_then_rank(np.flatnonzero(positive))
    start = np.searchsorted(customer[offers], np.arange(customers), side="left")
    stop = np.searchsorted(customer[offers], np.arange(customers), side="right")
    limit = np.array([-1 if b is None else int(b) for b in budgets], dtype=np.int64)
    nxt = start.copy()  # each customer's next proposal (position in offers)
    held = np.empty(0, dtype=np.int64)  # pairs tentatively accepted by budgeted campaigns
    proposing = np.flatnonzero(nxt < stop)
    while proposing.size:
        pairs = offers[nxt[proposing]]
        free = limit[campaign[pairs]] < 0
        chosen[customer[pairs[free]]] = pairs[free]  # no budget: accepted for good
        pool = np.concatenate([held, pairs[~free]])
        pool = pool[np.argsort(campaign[pool] * max(n, 1) + rank[pool])]
        first = np.searchsorted(campaign[pool], campaign[pool], side="left")
        keep = (np.arange(pool.size) - first) < limit[campaign[pool]]
        held = pool[keep]
        rejected = customer[pool[~keep]]
        nxt[rejected] += 1
        proposing = rejected[nxt[rejected] < stop[rejected]]
    chosen[customer[held]] = held

    refused = np.zeros(n, dtype=bool)
    best = np.where(chosen >= 0, rank[np.maximum(chosen, 0)], np.iinfo(np.int64).max)
    refused[offers] = rank[offers] < best[customer[offers]]

    chosen_campaign = np.where(chosen >= 0, campaign[np.maximum(chosen, 0)], -1)
    full = np.zeros((customers, len(budgets)), dtype=bool)  # a campaign that refused the customer
    full[customer[refused], campaign[refused]] = True
    alternative = np.flatnonzero(
        np.asarray(eligible, dtype=bool) & ~full[customer, campaign] & (campaign != chosen_campaign[customer])
    )
    alternative = by_customer_then_rank(alternative)
    runner_up = np.full(customers, -1, dtype=np.int64)
    owner = customer[alternative]
    firsts = alternative[np.r_[True, owner[1:] != owner[:-1]]] if alternative.size else alternative
    runner_up[customer[firsts]] = firsts
    return Arbitration(chosen, runner_up, refused)


# -- the explanation of one decision ---------------------------------------------------------------
def _eur(x: float) -> str:
    return f"EUR {x:.2f}"


def _signed(x: float) -> str:
    return ("+" if x >= 0 else "-") + f"EUR {abs(x):.2f}"


WHY = {"below": "why at risk", "above": "why they stay", "close": "what moves their score"}


def explain(d: dict) -> str:
    """One decision in words, from the figures of its row of ``ml.next_best_action`` (and the
    customer's own reasons from their score) only: every number is re-derivable from that row."""
    parts: list[str] = []
    order = (
        "their average order"
        if d["order_value_source"] == "own"
        else "the shop's average order (none of their own yet)"
    )
    if d["action"] != "none":
        parts.append(
            f"{d['action']} by {d['channel']}: expected {_signed(d['value_eur'])} "
            f"(uplift {d['uplift'] * 100:.1f} pts x {order} {_eur(d['expected_order_value_eur'])} "
            f"- offer {_eur(d['offer_cost_eur'])} - contact {_eur(d['contact_cost_eur'])})"
        )
        if d["uplift_source"] == "measured":
            scope = f"segment {d['segment']}" if d.get("uplift_scope") == "segment" else "all its customers"
            parts.append(f"uplift measured against the campaign's holdout ({scope})")
        elif d["uplift_source"] == "model":
            parts.append(
                "uplift predicted for them by the uplift model of past campaigns (validated against "
                "random targeting of held-out customers; this campaign has no measured evidence yet)"
            )
        else:
            p = d["purchase_probability"]
            parts.append(
                f"uplift a prior (no measured evidence yet): +{d['uplift'] / p if p else 0:.0%} on their "
                f"{p:.1%} purchase probability"
            )
        p_treated = d["purchase_probability"] + d["uplift"]
        parts.append(
            f"offer {d['offer_discount']} paid on their {p_treated:.1%} chance of buying when contacted"
        )
        if d["status"] == "needs approval":
            parts.append(f"needs approval (high-risk campaign): clarion nba approve {d['action']} --by NAME")
    else:
        parts.append(f"no action: {d['reason']}")
    if d.get("runner_up"):
        label = "runner-up" if d["action"] != "none" else "best eligible option"
        parts.append(
            f"{label} {d['runner_up']} by {d['runner_up_channel']} {_signed(d['runner_up_value_eur'])}"
        )
    if d.get("ineligible"):
        parts.append("not chosen: " + ", ".join(f"{k} ({v})" for k, v in sorted(d["ineligible"].items())))
    if any("frequency cap" in r or "cool-down" in r for r in (d.get("ineligible") or {}).values()):
        last = f", the last on {d['last_sent_at']:%Y-%m-%d}" if d.get("last_sent_at") else ""
        parts.append(f"{d['sends_in_window']} e-mail(s) sent in the frequency-cap window{last}")
    if d.get("reasons_text"):
        parts.append(f"{WHY.get(d.get('vs_average') or '', 'their reasons')}: {d['reasons_text']}")
    return "; ".join(parts)
