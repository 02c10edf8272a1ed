"""Reason codes by hand: which way they explain, which families, and sentences that are true.

The sentences are checked with tests/reason_oracle.py, which reads the printed figures and words
back and compares them with the customer's data; it does not render sentences itself. The same
oracle checks every customer of a real run in test_segment.py and test_segment_transactions.py.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from reason_oracle import COVERED, Shop, check

from models.features import FAMILIES, FEATURES
from models.reasons import CATALOGUE, FIGURES, Wording, lean, reason_codes, reason_table, topic_names

EUR = Shop("EUR", 1.0, 90)


def one_customer(shap: dict[str, float], values: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    contributions = np.zeros((1, len(FEATURES)))
    figures = np.full((1, len(FIGURES)), np.nan)
    for f, c in shap.items():
        contributions[0, FEATURES.index(f)] = c
    for f, v in values.items():
        figures[0, FIGURES.index(f)] = v
    return contributions, figures


def value_of(figures: np.ndarray, i: int = 0):
    def v(name: str) -> float | None:
        if name not in FIGURES:  # text columns (a topic's name): none in these hand-made figures
            return None
        x = figures[i, FIGURES.index(name)]
        return None if math.isnan(x) else float(x)

    return v


# -- which way ----------------------------------------------------------------------------------
def test_the_side_is_chosen_against_the_average_customer_not_against_one_half() -> None:
    """A shop where few buy: the average customer's margin is -2.0 (12%). This customer's margin is
    -1.2 (23%): twice as likely to buy as the average one, though below 50%. Their reasons must say
    why they stay (lower the risk); before, a churn risk >= 0.5 made them risk-raising reasons."""
    contributions, figures = one_customer(
        {"orders_365d": 0.6, "open_rate_60d": 0.3, "tenure_days": -0.1},
        {
            "orders_365d": 5,
            "orders_lifetime": 9,
            "open_rate_60d": 0.6,
            "open_rate_prior_120d": 0.5,
            "tenure_days": 400,
        },
    )
    base, margin = -2.0, np.array([-1.2])
    (reasons,) = reason_codes(contributions, figures, margin, base, set(FEATURES))
    assert [(r["family"], r["direction"]) for r in reasons] == [
        ("frequency", "lowers_risk"),
        ("engagement", "lowers_risk"),
    ]
    # the same SHAP values for a customer below the average: the risk-raising family only
    (below,) = reason_codes(contributions, figures, np.array([-2.5]), base, set(FEATURES))
    assert [(r["family"], r["direction"]) for r in below] == [("tenure", "raises_risk")]
    assert list(lean(np.array([-2.5, -2.0, -1.2]), base)) == [1.0, -1.0, -1.0]


def test_reasons_sum_each_family_and_skip_unused_features() -> None:
    buy = {  # SHAP values in log-odds of buying
        "open_rate_60d": 0.6,
        "click_rate_60d": -0.2,  # engagement: 0.6 - 0.2 = 0.4
        "recency_days": 0.2,
        "recency_vs_usual": 0.15,  # recency: 0.35
        "orders_365d": 0.3,  # frequency: 0.3
        "avg_satisfaction_365d": 0.1,  # support: 0.1
        "discount_share": 0.01,  # price: below min_effect
        "tenure_days": -0.5,  # tenure: pushes towards lapsing, not a reason to stay
    }
    values = {
        "open_rate_60d": 0.5,
        "open_rate_prior_120d": 0.25,
        "click_rate_60d": 0.1,
        "recency_days": 12.0,
        "recency_vs_usual": 0.5,
        "orders_365d": 4.0,
        "orders_lifetime": 7.0,
        "avg_satisfaction_365d": 4.5,
        "discount_share": 0.2,
        "tenure_days": 700.0,
    }
    contributions, figures = one_customer(buy, values)
    before = contributions.copy()
    margin, base = np.array([0.9]), 0.0  # above the average customer: why they stay

    (reasons,) = reason_codes(contributions, figures, margin, base, set(FEATURES), limit=4, min_effect=0.02)
    assert np.array_equal(contributions, before)  # the caller's SHAP values are left as they were
    assert [(r["family"], r["feature"]) for r in reasons] == [
        ("engagement", "open_rate_60d"),
        ("recency", "recency_days"),
        ("frequency", "orders_365d"),
        ("support", "avg_satisfaction_365d"),
    ]
    assert [r["effect"] for r in reasons] == pytest.approx([-0.4, -0.35, -0.3, -0.1])
    assert all(r["direction"] == "lowers_risk" for r in reasons)
    assert reasons[1]["text"] == "last purchase 12 days ago, within their usual gap between purchases (0.5x)"
    assert reasons[2]["text"] == "4 orders in the last 12 months"
    # engagement's net effect is credited to opens, but clicks pushed the other way: the text says so
    assert reasons[0]["text"].endswith("(other e-mail figures pull the other way)")
    assert "rose from 25% to 50%" in reasons[0]["text"]

    (three,) = reason_codes(contributions, figures, margin, base, set(FEATURES), limit=3, min_effect=0.02)
    assert [r["family"] for r in three] == ["engagement", "recency", "frequency"]
    (unused,) = reason_codes(contributions, figures, margin, base, set(FEATURES) - {"open_rate_60d"}, 4, 0.02)
    assert [r["family"] for r in unused] == ["recency", "frequency", "support"]

    (lapsing,) = reason_codes(contributions, figures, np.array([-0.9]), base, set(FEATURES), limit=4)
    assert [(r["family"], r["feature"], r["direction"]) for r in lapsing] == [
        ("tenure", "tenure_days", "raises_risk")
    ]
    assert lapsing[0]["effect"] == pytest.approx(0.5)
    for r in reasons + lapsing:
        assert check(r["feature"], r["text"], value_of(figures), EUR) == [], r


def test_a_family_pushing_one_way_only_is_not_called_mixed() -> None:
    contributions, figures = one_customer(
        {"open_rate_60d": 0.5, "click_rate_60d": 0.1, "click_rate_change": -0.01},  # -0.01 < min_effect
        {"open_rate_60d": 0.5, "open_rate_prior_120d": 0.5, "click_rate_60d": 0.2},
    )
    (reasons,) = reason_codes(contributions, figures, np.array([1.0]), 0.0, set(FEATURES), min_effect=0.02)
    assert reasons[0]["text"] == "e-mail opens steady at 50% of e-mails (last 60 days against the 120 before)"


def test_reasons_never_name_a_family_without_effect() -> None:
    """segment.min_reason_effect may be 0: a family whose SHAP values are all zero (or whose features
    the model never used) neither raises nor lowers the risk and must not become a reason."""
    contributions, figures = one_customer({"recency_days": -0.7}, {"recency_days": 40})
    (reasons,) = reason_codes(contributions, figures, np.array([-1.0]), 0.0, {"recency_days"}, min_effect=0.0)
    assert [r["feature"] for r in reasons] == ["recency_days"]
    assert all(r["direction"] == "raises_risk" and r["effect"] > 0 for r in reasons)


# -- sentences ----------------------------------------------------------------------------------
NO_ORDERS = {
    "has_ordered": 0,
    "orders_lifetime": 0,
    "orders_30d": 0,
    "orders_90d": 0,
    "orders_180d": 0,
    "orders_365d": 0,
    "orders_decayed_90d": 0,
    "purchase_days": 0,
    "spend_lifetime_eur": 0,
    "spend_90d_eur": 0,
    "spend_180d_eur": 0,
    "spend_prior_180d_eur": 0,
    "spend_365d_eur": 0,
    "n_categories": 0,
    "top_category_share": 0,
    "discount_share": 0,
    "return_rate": 0,
    "orders_same_window_last_year": 0,
    "delivery_problems_180d": 0,
    "delivery_problem_share_180d": 0,
    "email_sends_60d": 0,
    "tickets_90d": 0,
    "negative_tickets_90d": 0,
    "negative_tickets_365d": 0,
    "unsubscribed": 0,
    "tenure_days": 45,
}
ONE_ORDER = NO_ORDERS | {
    "has_ordered": 1,
    "orders_lifetime": 1,
    "orders_365d": 1,
    "orders_180d": 1,
    "orders_decayed_90d": 0.2,
    "purchase_days": 1,
    "recency_days": 150.4,
    "first_order_days": 150.4,
    "spend_lifetime_eur": 59.6,
    "spend_365d_eur": 59.6,
    "spend_180d_eur": 59.6,
    "avg_order_value_eur": 59.6,
    "n_categories": 1,
    "top_category_share": 1.0,
    "discount_share_180d": 0.0,
    "p_alive": 1.0,
    "expected_orders_horizon": 0.04,
    "expected_order_value_eur": 61.0,
    "open_rate_60d": 0.25,
    "email_sends_60d": 4,
}


@pytest.mark.parametrize("values", [NO_ORDERS, ONE_ORDER], ids=["no orders", "one order"])
def test_every_sentence_is_true_for_customers_with_little_history(values: dict[str, float]) -> None:
    """The sentences that used to read "no purchase for no days", "average order EUR no", "usually
    no days between purchases" or "100% chance still active" for one-order customers: each feature's
    sentence for a customer with no orders, and with one, checked by the oracle."""
    figures = np.full((1, len(FIGURES)), np.nan)
    for f, v in values.items():
        figures[0, FIGURES.index(f)] = v
    for feature in FEATURES:
        text = CATALOGUE[feature](value_of(figures))
        assert check(feature, text, value_of(figures), EUR) == [], (feature, text)
        assert not re.search(r"for no days|EUR no|\b0 days|usually no days", text), text


def test_amounts_read_in_the_shops_currency() -> None:
    """Features keep EUR; a USD shop reads USD at the seed's rate (1.08 per EUR)."""
    usd = Wording("USD", 1.08, 90)
    figures = np.full((1, len(FIGURES)), np.nan)
    for f, v in ONE_ORDER.items():
        figures[0, FIGURES.index(f)] = v
    text = CATALOGUE["spend_lifetime_eur"](value_of(figures), usd)
    assert text == "USD 64 spent in total"  # 59.6 x 1.08 = 64.4
    assert check("spend_lifetime_eur", text, value_of(figures), Shop("USD", 1.08, 90)) == []
    assert check("spend_lifetime_eur", text, value_of(figures), EUR)  # in a EUR shop that is wrong


def test_direction_words_agree_with_the_printed_figures() -> None:
    """'rose 0%' and 'speeding up: latest gaps 1.0x' came from choosing the word before rounding."""
    cases = {
        "gap_trend_ratio": ({"gap_trend_ratio": 1.02, "orders_lifetime": 5}, "purchases at their usual pace"),
        "open_rate_60d": (
            {"open_rate_60d": 0.301, "open_rate_prior_120d": 0.298},
            "e-mail opens steady at 30% of e-mails (last 60 days against the 120 before)",
        ),
        "recency_days": (
            {"recency_days": 30.2, "recency_vs_usual": 0.97},
            "last purchase 30 days ago, about their usual gap between purchases",
        ),
    }
    for feature, (values, expected) in cases.items():
        figures = np.full((1, len(FIGURES)), np.nan)
        for f, v in values.items():
            figures[0, FIGURES.index(f)] = v
        text = CATALOGUE[feature](value_of(figures))
        assert text == expected
        assert check(feature, text, value_of(figures), EUR) == []


def test_the_oracle_catches_false_sentences() -> None:
    """The oracle must be able to fail: sentences that are false for the data are caught."""
    data = {
        "orders_lifetime": 3,
        "orders_365d": 1,
        "recency_days": 12.0,
        "recency_vs_usual": 1.4,
        "open_rate_60d": 0.3,
        "open_rate_prior_120d": 0.4,
        "spend_lifetime_eur": 100.0,
        "gap_trend_ratio": 1.3,
        "mean_gap_days": None,
    }

    def v(name: str) -> float | None:
        return data.get(name)

    false = [
        ("orders_365d", "1 orders in the last 12 months"),
        ("orders_365d", "2 orders in the last 12 months"),
        ("recency_days", "last purchase 0 days ago"),
        ("recency_days", "last purchase 12 days ago, within their usual gap between purchases (1.4x)"),
        ("recency_days", "no purchase for no days"),
        (
            "open_rate_60d",
            "e-mail opens rose from 40% to 30% of e-mails (last 60 days against the 120 before)",
        ),
        ("spend_lifetime_eur", "USD 100 spent in total"),
        ("spend_lifetime_eur", "EUR 90 spent in total"),
        ("gap_trend_ratio", "purchases speeding up: the latest gaps are 1.3x their usual"),
        ("mean_gap_days", "usually no days between purchases"),
    ]
    for feature, text in false:
        assert check(feature, text, v, EUR), (feature, text)


def test_the_oracle_and_the_catalogue_cover_every_feature() -> None:
    assert set(FEATURES) <= set(CATALOGUE)
    assert set(FEATURES) <= COVERED
    assert {FAMILIES_OF for FAMILIES_OF in FAMILIES} >= {"lifecycle", "seasonality"}


def test_reason_columns_match_the_catalogue_sentence_by_sentence() -> None:
    """Sentences are rendered once per distinct set of figures and shared: every customer's text must
    still be the catalogue's sentence for that customer's own figures, unknown values included."""
    rng = np.random.default_rng(7)
    n = 3000
    contributions = rng.normal(0, 0.3, (n, len(FEATURES)))
    figures = rng.integers(0, 6, (n, len(FIGURES))).astype(float)  # few distinct figures: much sharing
    for f in (
        "recency_vs_usual",
        "open_rate_60d",
        "open_rate_prior_120d",
        "avg_satisfaction_365d",
        "p_alive",
    ):
        figures[:, FIGURES.index(f)] = rng.random(n) * 3  # continuous: little sharing
    # values on and around the rounding boundaries of what is printed (whole days and amounts,
    # tenths, percentages): rendering keyed on printed values must still say what each
    # customer's own value says
    halves = np.array([0.5, 1.5, 2.45, 2.5, 2.55, 0.005, 0.015, 0.125, 0.995, 1.05, 1.15, 0.95])
    for f in (
        "recency_days",
        "spend_lifetime_eur",
        "gap_trend_ratio",
        "expected_orders_horizon",
        "return_rate",
        "tenure_days",
        "avg_order_value_eur",
    ):
        figures[:, FIGURES.index(f)] = rng.choice(halves, n) * rng.choice([1, 10, 100], n)
    figures[rng.random(figures.shape) < 0.15] = np.nan
    margin = rng.normal(0, 1, n)
    usd = Wording("USD", 1.08, 90)
    table = reason_table(contributions, figures, margin, 0.1, set(FEATURES), 4, 0.02, usd)
    rows = table.rows()
    joined = table.joined_text().to_pylist()
    first = table.first_family()
    assert len(rows) == n and sum(map(len, rows)) == len(table.text) > n
    for i, reasons in enumerate(rows):
        for r in reasons:
            base_text = r["text"].split(" (other ")[0]
            assert base_text == CATALOGUE[r["feature"]](value_of(figures, i), usd), (i, r)
            assert (r["value"] is None) == (value_of(figures, i)(r["feature"]) is None)
            assert (r["direction"] == "raises_risk") == (margin[i] < 0.1)
        assert joined[i] == "; ".join(r["text"] for r in reasons)
        assert first[i] == (reasons[0]["family"] if reasons else None)
    assert {r["family"] for rs in rows for r in rs} <= set(FAMILIES)
    # the chunks of one run share what they rendered (`said`): the same sentences as one call, and
    # a sentence met again is taken from `said`, not rendered again
    said: dict[bytes, str] = {}
    halves = [
        reason_table(contributions[part], figures[part], margin[part], 0.1, set(FEATURES), 4, 0.02, usd, said)
        for part in (slice(0, n // 2), slice(n // 2, n))
    ]
    assert halves[0].text.to_pylist() + halves[1].text.to_pylist() == table.text.to_pylist()
    stale = dict.fromkeys(said, "stale")
    again = reason_table(contributions, figures, margin, 0.1, set(FEATURES), 4, 0.02, usd, stale)
    assert set(again.text.to_pylist()) == {"stale"}


def test_support_reasons_name_the_topic_the_customer_complains_about() -> None:
    """voc: a support reason says what the customer complained about, from their own complaint
    figures (classifier-negative tickets of 90 days by topic) and the topic names of the run."""
    wording = Wording(topics=((3, "late · delivery · parcel"), (5, "refund · weeks")))
    values = {
        "negative_tickets_90d": 3,
        "tickets_90d": 4,
        "complaints_90d": 3,
        "top_complaint_topic_count_90d": 2,
        "top_complaint_topic_id_90d": 3,
    }
    contributions, figures = one_customer({"negative_tickets_90d": -0.8}, values)
    (reasons,) = reason_codes(contributions, figures, np.array([-1.0]), 0.0, set(FEATURES), wording=wording)
    assert [r["family"] for r in reasons] == ["support"]
    text = reasons[0]["text"]
    assert (
        text
        == "3 negative support tickets in the last 90 days (2 complaints about “late · delivery · parcel”)"
    )
    data = {**values, "top_complaint_topic_90d": "late · delivery · parcel"}
    assert check("negative_tickets_90d", text, data.get, EUR) == []
    # the oracle catches the wrong topic, the wrong count, and a topic left unsaid
    assert check("negative_tickets_90d", text, {**data, "top_complaint_topic_90d": "refund · weeks"}.get, EUR)
    assert check("negative_tickets_90d", text, {**data, "top_complaint_topic_count_90d": 1}.get, EUR)
    assert check("negative_tickets_90d", "3 negative support tickets in the last 90 days", data.get, EUR)
    # a 12-month sentence says the complaints' own window
    year = CATALOGUE["negative_tickets_365d"](
        lambda n: {**values, "negative_tickets_365d": 5}.get(n), wording
    )
    assert year == (
        "5 negative support tickets in the last 12 months "
        "(2 complaints about “late · delivery · parcel” in the last 90 days)"
    )
    assert check("negative_tickets_365d", year, {**data, "negative_tickets_365d": 5}.get, EUR) == []
    unsaid = year.replace(" in the last 90 days", "")
    assert check("negative_tickets_365d", unsaid, {**data, "negative_tickets_365d": 5}.get, EUR)
    # no complaints, or a topic the run does not name: the figures alone
    quiet = {**values, "top_complaint_topic_count_90d": 0, "complaints_90d": 0}
    _, figures = one_customer({}, quiet)
    assert CATALOGUE["tickets_90d"](value_of(figures), wording) == "4 support tickets in the last 90 days"
    frame = pd.DataFrame({"id": pd.array([3, None, 5, 3], dtype="Int64"), "name": ["a", None, "b", "a"]})
    assert topic_names(frame["id"], frame["name"]) == ((3, "a"), (5, "b"))
    _, figures = one_customer({}, {**values, "top_complaint_topic_id_90d": 9})
    assert CATALOGUE["tickets_90d"](value_of(figures), wording) == "4 support tickets in the last 90 days"
