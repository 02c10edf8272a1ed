"""Next best action, the pure part (models/nba.py): the offer's cost, the value formula, the
arbitration (highest positive value, ties by campaign then channel, budgets greedy by value) and
the explanation's figures."""

from __future__ import annotations

import re
from datetime import date, datetime

import numpy as np
import pytest

from models.nba import (
    DiscountError,
    arbitrate,
    explain,
    incremental_value,
    parse_discount,
    prior_uplift,
)


@pytest.mark.parametrize(
    ("text", "order", "cost"),
    [
        ("15%", 58.10, 8.715),
        ("10 %", 200.0, 20.0),
        ("EUR 10", 58.10, 10.0),
        ("5 EUR", 1.0, 5.0),
        ("€7.5", 3, 7.5),
    ],
)
def test_a_discount_is_costed_as_a_share_of_the_order_or_a_fixed_amount(
    text: str, order: float, cost: float
) -> None:
    assert parse_discount(text).per_buyer(np.array([order]))[0] == pytest.approx(cost)


@pytest.mark.parametrize("text", ["free shipping", "USD 10", "150%", "", "10"])
def test_a_discount_that_cannot_be_costed_says_what_to_write(text: str) -> None:
    with pytest.raises(DiscountError, match=r"15%|whole order"):
        parse_discount(text)


def test_value_is_uplift_times_order_value_minus_the_offer_every_treated_buyer_gets_minus_contact() -> None:
    # p 0.20, uplift 2 pts, order EUR 50, 15% off (EUR 7.50 per buying customer), contact EUR 0.05:
    # 0.02 x 50 = 1.00 gained; 0.22 x 7.50 = 1.65 paid in discounts; 1.00 - 1.65 - 0.05 = -0.70
    v = incremental_value(np.array([0.2]), np.array([0.02]), np.array([50.0]), np.array([7.5]), 0.05)
    assert v.p_treated[0] == pytest.approx(0.22)
    assert v.offer_cost[0] == pytest.approx(1.65)
    assert v.value[0] == pytest.approx(-0.70)
    # the prior: 10% of a 0.40 purchase probability is 4 pts; EUR 5 off: 0.04 x 80 - 0.44 x 5 - 0.05 = 0.95
    up = prior_uplift(np.array([0.4]), 0.10)
    v = incremental_value(np.array([0.4]), up, np.array([80.0]), np.array([5.0]), 0.05)
    assert up[0] == pytest.approx(0.04) and v.value[0] == pytest.approx(0.95)


def test_uplift_is_clipped_so_that_the_treated_purchase_probability_stays_a_probability() -> None:
    v = incremental_value(
        np.array([0.95, 0.1]), np.array([0.2, -0.3]), np.array([10.0, 10.0]), np.zeros(2), 0.0
    )
    assert v.uplift.tolist() == pytest.approx([0.05, -0.1])
    assert v.p_treated.tolist() == pytest.approx([1.0, 0.0])


def _arbitrate(pairs: list[tuple[int, int, int, float, bool]], customers: int, budgets: list[int | None]):
    customer, action, campaign, value, eligible = (np.array(c) for c in zip(*pairs, strict=True))
    return arbitrate(
        customer, action, campaign, value.astype(float), eligible.astype(bool), customers, budgets
    )


def test_the_highest_positive_eligible_value_wins_and_nothing_positive_means_no_action() -> None:
    # actions: 0 = (campaign 0, email), 1 = (campaign 0, sms), 2 = (campaign 1, email)
    pairs = [
        (0, 0, 0, 1.0, True),
        (0, 1, 0, 3.0, False),  # worth most, not eligible
        (0, 2, 1, 2.0, True),
        (1, 0, 0, -0.5, True),
        (1, 2, 1, 0.0, True),  # zero is not positive
    ]
    r = _arbitrate(pairs, 3, [None, None])
    assert r.chosen.tolist() == [2, -1, -1]  # customer 2 is in no audience
    assert r.runner_up.tolist() == [0, 4, -1]  # customer 1: the best eligible option, though not worth it


def test_ties_go_to_the_campaign_first_in_name_order_then_the_channel() -> None:
    pairs = [(0, 2, 1, 1.0, True), (0, 1, 0, 1.0, True), (0, 0, 0, 1.0, True)]
    assert _arbitrate(pairs, 1, [None, None]).chosen.tolist() == [2]  # action 0: campaign 0, first channel
    assert _arbitrate(pairs[:1] + pairs[1:2], 1, [None, None]).chosen.tolist() == [1]


def _greedy(customer, action, campaign, value, eligible, customers, budgets):
    """The rule as stated, one pair at a time: best pairs first; take it if the customer has nothing
    yet and the campaign has room."""
    order = sorted(
        (i for i in range(len(value)) if eligible[i] and value[i] > 0),
        key=lambda i: (-value[i], action[i], customer[i]),
    )
    chosen = [-1] * customers
    used = [0] * len(budgets)
    for i in order:
        k = campaign[i]
        if chosen[customer[i]] < 0 and (budgets[k] is None or used[k] < budgets[k]):
            chosen[customer[i]] = i
            used[k] += 1
    return chosen


@pytest.mark.parametrize("seed", range(12))
def test_budgets_are_filled_greedily_by_value_and_a_customer_whose_best_is_full_gets_the_next(
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    customers, campaigns, channels = 300, 4, 2
    rows = []
    for c in range(customers):
        for k in rng.choice(campaigns, size=rng.integers(0, campaigns + 1), replace=False):
            for ch in range(channels):
                value = float(rng.choice([-1.0, 0.5, 1.0, 2.0])) if seed % 2 else float(rng.normal(1, 1))
                rows.append((c, k * channels + ch, int(k), value, bool(rng.random() < 0.8)))
    budgets = [int(rng.integers(0, 60)), None, int(rng.integers(0, 60)), 5]
    customer, action, campaign, value, eligible = (np.array(x) for x in zip(*rows, strict=True))
    want = _greedy(customer, action, campaign, value, eligible, customers, budgets)
    got = arbitrate(customer, action, campaign, value.astype(float), eligible, customers, budgets)
    assert got.chosen.tolist() == want
    for k, b in enumerate(budgets):
        if b is not None:
            assert (campaign[got.chosen[got.chosen >= 0]] == k).sum() <= b
    # the same decisions whatever order the pairs come in
    perm = rng.permutation(len(rows))
    again = arbitrate(
        customer[perm],
        action[perm],
        campaign[perm],
        value[perm].astype(float),
        eligible[perm],
        customers,
        budgets,
    )
    assert [perm[i] if i >= 0 else -1 for i in again.chosen] == want
    # refused pairs are worth more to the customer than what they got, and their campaign is full
    for i in np.flatnonzero(got.refused):
        c = customer[i]
        assert budgets[campaign[i]] is not None and value[i] > 0 and eligible[i]
        if got.chosen[c] >= 0:
            assert value[i] >= value[got.chosen[c]]


ROW = {
    "action": "winback-summer",
    "channel": "email",
    "value_eur": 1.2345,
    "uplift": 0.0213,
    "uplift_source": "prior",
    "uplift_scope": "prior",
    "purchase_probability": 0.213,
    "expected_order_value_eur": 58.1,
    "order_value_source": "own",
    "offer_discount": "15%",
    "offer_cost_eur": 1.4012,
    "contact_cost_eur": 0.05,
    "status": "ready",
    "reason": None,
    "segment": "at_risk_low_value",
    "runner_up": "vip-thank-you",
    "runner_up_channel": "email",
    "runner_up_value_eur": 0.4,
    "ineligible": {"welcome-new": "frequency cap"},
    "sends_in_window": 3,
    "last_sent_at": datetime(2026, 6, 30, 10, 0),
    "as_of": date(2026, 7, 1),
    "reasons_text": "no orders in the last 180 days",
    "vs_average": "below",
}


def test_the_explanation_states_the_rows_own_figures() -> None:
    text = explain(ROW)
    assert text.startswith(
        "winback-summer by email: expected +EUR 1.23 (uplift 2.1 pts x their average order EUR 58.10 "
        "- offer EUR 1.40 - contact EUR 0.05)"
    )
    assert "runner-up vip-thank-you by email +EUR 0.40" in text
    assert "21.3% purchase probability" in text and "23.4% chance of buying" in text
    assert "welcome-new (frequency cap)" in text and "3 e-mail(s)" in text and "2026-06-30" in text
    assert text.endswith("why at risk: no orders in the last 180 days")
    none = explain({**ROW, "action": "none", "reason": "holdout", "status": "no action", "runner_up": None})
    assert none.startswith("no action: holdout") and "expected" not in none
    shop = explain({**ROW, "order_value_source": "shop average"})
    assert "x the shop's average order (none of their own yet) EUR 58.10 -" in shop


def test_every_number_in_an_explanation_comes_from_its_row() -> None:
    text = explain({**ROW, "reasons_text": ""})
    shown = set(re.findall(r"\d+(?:\.\d+)?", text))
    allowed = {
        "1.23", "2.1", "58.10", "1.40", "0.05", "0.40", "21.3", "23.4", "10", "3", "2026", "06", "30", "15",
    }  # fmt: skip
    assert shown <= allowed, shown - allowed
