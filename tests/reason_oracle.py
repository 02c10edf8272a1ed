"""An independent check that a reason sentence is true for the customer it is about.

Written apart from models/reasons.py on purpose: it does not render sentences and compare strings
(that would check the catalogue against itself). It reads a sentence the way a person would: it
finds the figures printed in it (counts, days, percentages, amounts with their currency, ratios)
and the words that carry a direction (rose/fell, slowing/speeding up, within/longer than usual,
"has not bought yet", "one purchase so far"), and checks each against the customer's own data:
the printed figure must be the data's value as printed (within half a unit of the last printed
digit), the words must agree with the printed figures and with the data, singular and plural
must agree with the count, and a sentence about an unknown value must say it is unknown.

`check(feature, text, value, wording)` returns the problems found (an empty list: the sentence is
true). `value(name)` gives the customer's figure (None where unknown); `wording` gives the
currency code, its units per EUR and the horizon in days.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

Value = Callable[[str], float | None]
NUM = r"(\d[\d,]*(?:\.\d+)?)"


@dataclass(frozen=True)
class Shop:
    currency: str
    units_per_eur: float
    horizon_days: int


def _num(s: str) -> float:
    return float(s.replace(",", ""))


def _close(printed: float, actual: float | None, unit: float) -> bool:
    return actual is not None and abs(printed - actual) <= unit / 2 + 1e-9


def _count_words(text: str, noun: str, plural: str, actual: float | None, problems: list[str]) -> None:
    """ "no <plural>" or "<n> <noun|plural>" at the start of `text`: the figure and the grammar."""
    m = re.match(rf"^(no|{NUM}) ({re.escape(noun)}|{re.escape(plural)})\b", text)
    if not m:
        problems.append(f"no count of {plural} in {text!r}")
        return
    n = 0.0 if m.group(1) == "no" else _num(m.group(2))
    if m.group(1) == "no" and m.group(3) != plural:
        problems.append(f"'no {m.group(3)}' should be plural")
    if m.group(1) != "no" and (n == 1) != (m.group(3) == noun):
        problems.append(f"{n:g} {m.group(3)}: singular/plural disagree")
    if not _close(n, actual or 0.0, 1):
        problems.append(f"printed {n:g} {plural}, data {actual}")


def _days(text: str, actual: float | None, problems: list[str], what: str) -> None:
    m = re.search(rf"(less than a day|{NUM} days?)", text)
    if not m:
        problems.append(f"no number of days for {what} in {text!r}")
        return
    if actual is None:
        problems.append(f"{what}: printed a figure for an unknown value")
        return
    if m.group(1) == "less than a day":
        if not actual < 0.5 + 1e-9:
            problems.append(f"{what}: 'less than a day' but {actual:.3f} days")
        return
    n = _num(m.group(2))
    if n == 0:
        problems.append(f"{what}: '0 days' is not a duration")
    if (n == 1) != (not m.group(1).endswith("days")):
        problems.append(f"{what}: {m.group(1)!r} singular/plural")
    if not _close(n, actual, 1):
        problems.append(f"{what}: printed {n:g} days, data {actual:.3f}")


def _money(text: str, eur: float | None, shop: Shop, problems: list[str], what: str) -> None:
    m = re.search(rf"\b([A-Z]{{3}}) {NUM}", text)
    if not m:
        problems.append(f"no amount for {what} in {text!r}")
        return
    if m.group(1) != shop.currency:
        problems.append(f"{what}: amount in {m.group(1)}, the shop reads {shop.currency}")
    if eur is None or not _close(_num(m.group(2)), eur * shop.units_per_eur, 1):
        problems.append(f"{what}: printed {m.group(0)}, data EUR {eur} x {shop.units_per_eur}")
    if _num(m.group(2)) == 0:
        problems.append(f"{what}: an amount of 0 should read 'nothing'")


def _percent(text: str, share: float | None, problems: list[str], what: str, at: int = 0) -> float | None:
    found = re.findall(r"(\d+)%", text)
    if len(found) <= at:
        problems.append(f"no percentage for {what} in {text!r}")
        return None
    p = float(found[at])
    if not _close(p, None if share is None else 100 * share, 1):
        problems.append(f"{what}: printed {p:g}%, data {share}")
    return p


def _not_bought(text: str, bought: bool, problems: list[str]) -> bool:
    """True when the sentence is the 'has not bought yet' one (and checks it is right to be)."""
    says = text == "has not bought yet"
    if says and bought:
        problems.append("says 'has not bought yet' of a customer with orders")
    if not says and not bought:
        problems.append(f"{text!r} about a customer with no orders")
    return says


ORDER_WINDOWS = {
    "orders_lifetime": "in total",
    "orders_30d": "in the last 30 days",
    "orders_90d": "in the last 90 days",
    "orders_180d": "in the last 180 days",
    "orders_365d": "in the last 12 months",
}


def _complaint_topic(text: str, v: Value, problems: list[str]) -> None:
    """ "(N complaints about “topic”)": N is the customer's complaints about their top complaint topic
    in 90 days, and the topic is theirs (its name, from the features' text column); a customer with
    such complaints and a known topic must have it said."""
    m = re.search(r"\((no|\d[\d,]*) (complaints?) about “([^”]+)”(?: in the last 90 days)?\)", text)
    if (
        m
        and not text.endswith("in the last 90 days)")
        and not text.split(" (")[0].endswith("in the last 90 days")
    ):
        problems.append(f"{text!r}: the complaints' window (90 days) is not said")
    name = v("top_complaint_topic_90d")
    about = v("top_complaint_topic_count_90d") or 0
    if m is None:
        if "“" in text:
            problems.append(f"unreadable complaint clause in {text!r}")
        elif about and name is not None:
            problems.append(f"{text!r} does not name their complaint topic {name!r}")
        return
    n = 0.0 if m.group(1) == "no" else _num(m.group(1))
    if (n == 1) != (m.group(2) == "complaint"):
        problems.append(f"{m.group(0)!r}: singular/plural disagree")
    if not _close(n, about, 1) or n == 0:
        problems.append(f"printed {n:g} complaints about the topic, data {about}")
    if m.group(3) != name:
        problems.append(f"topic {m.group(3)!r} is not the customer's ({name!r})")


def check(feature: str, text: str, v: Value, shop: Shop) -> list[str]:
    problems: list[str] = []
    text = re.sub(r" \(other [a-z-]+ figures pull the other way\)$", "", text)
    bought = bool(v("orders_lifetime"))
    h = shop.horizon_days

    if feature in ("recency_days", "recency_vs_usual"):
        if _not_bought(text, v("recency_days") is not None, problems):
            return problems
        _days(text.split(", ")[0], v("recency_days"), problems, "recency")
        usual = v("recency_vs_usual")
        m = re.search(rf"(?:, {NUM}x their usual gap|\({NUM}x\)|(about their usual gap))", text)
        if usual is None:
            if "usual" in text:
                problems.append("compares with a usual gap the customer does not have")
        elif not m:
            problems.append(f"no comparison with the usual gap in {text!r}")
        elif m.group(3):
            if abs(usual - 1.0) > 0.05 + 1e-9:
                problems.append(f"'about their usual gap' but {usual:.3f}x")
        else:
            r = _num(m.group(1) or m.group(2))
            if not _close(r, usual, 0.1):
                problems.append(f"printed {r}x, data {usual:.3f}")
            if m.group(1) and not r > 1.0:
                problems.append(f"{r}x printed as longer than usual")
            if m.group(2) and not (r < 1.0 and "within their usual gap" in text):
                problems.append(f"{r}x printed as within the usual gap")
    elif feature == "has_ordered":
        if text != ("has bought before" if bought else "has not bought yet"):
            problems.append(f"{text!r} with {v('orders_lifetime')} orders")
    elif feature in ORDER_WINDOWS:
        window = ORDER_WINDOWS[feature]
        if not text.endswith(window):
            problems.append(f"{text!r} does not say {window}")
        _count_words(text, "order", "orders", v(feature), problems)
    elif feature == "orders_decayed_90d":
        m = re.match(rf"^(.*) in the last 90 days, (none|{NUM}) in the last 12 months$", text)
        if not m:
            problems.append(f"unexpected shape {text!r}")
        else:
            _count_words(m.group(1), "order", "orders", v("orders_90d"), problems)
            year = 0.0 if m.group(2) == "none" else _num(m.group(2))
            if m.group(2) == "0" or not _close(year, v("orders_365d") or 0.0, 1):
                problems.append(f"12-month orders printed {m.group(2)}, data {v('orders_365d')}")
    elif feature in ("spend_lifetime_eur", "spend_90d_eur", "spend_365d_eur"):
        eur = v(feature) or 0.0
        if text.startswith("nothing spent"):
            if eur * shop.units_per_eur >= 0.5:
                problems.append(f"'nothing spent' but EUR {eur}")
        else:
            _money(text, eur, shop, problems, feature)
    elif feature in ("spend_180d_eur", "spend_prior_180d_eur"):
        m = re.match(r"^spent (.+) in the last 6 months, (.+) in the 6 months before$", text)
        if not m:
            problems.append(f"unexpected shape {text!r}")
        else:
            for part, name in ((m.group(1), "spend_180d_eur"), (m.group(2), "spend_prior_180d_eur")):
                eur = v(name) or 0.0
                if part == "nothing":
                    if eur * shop.units_per_eur >= 0.5:
                        problems.append(f"{name}: 'nothing' but EUR {eur}")
                else:
                    _money(part, eur, shop, problems, name)
    elif feature == "avg_order_value_eur":
        if not _not_bought(text, v(feature) is not None, problems):
            _money(text, v(feature), shop, problems, feature)
    elif feature in ("mean_gap_days", "recent_gap_days", "gap_trend_ratio"):
        gap = v(feature)
        orders = v("orders_lifetime") or 0
        if gap is None:
            if orders == 0:
                _not_bought(text, False, problems)
            elif orders == 1:
                if not text.startswith("one purchase so far"):
                    problems.append(f"{text!r} for a one-order customer")
            elif "too few gaps" not in text:
                problems.append(f"{text!r} with {orders} orders and no gap figure")
        elif feature == "gap_trend_ratio":
            m = re.search(rf"{NUM}x their usual", text)
            if text == "purchases at their usual pace":
                if abs(gap - 1.0) > 0.05 + 1e-9:
                    problems.append(f"'usual pace' at {gap:.3f}x")
            elif not m:
                problems.append(f"no ratio in {text!r}")
            else:
                r = _num(m.group(1))
                if not _close(r, gap, 0.1):
                    problems.append(f"printed {r}x, data {gap:.3f}")
                if ("slowing" in text) != (r > 1.0) or ("speeding up" in text) != (r < 1.0):
                    problems.append(f"{text!r}: the word disagrees with {r}x")
        else:
            _days(text, gap, problems, feature)
    elif feature == "orders_same_window_last_year":
        if f"the same {h} days last year" not in text:
            problems.append(f"{text!r} does not name the {h}-day window")
        n = v(feature) or 0
        if text.startswith("did not buy"):
            if n >= 0.5:
                problems.append(f"'did not buy' but {n} orders")
        else:
            _count_words(text, "order", "orders", n, problems)
    elif feature == "p_alive":
        p = v("p_alive")
        if p is None:
            _not_bought(text, False, problems)
        elif (v("purchase_days") or 0) <= 1:
            if not text.startswith("one purchase so far"):
                problems.append(f"{text!r} for a one-purchase customer")
        else:
            _percent(text, p, problems, "p_alive")
            if "still an active customer" not in text:
                problems.append(f"{text!r} does not say what the chance is of")
    elif feature == "expected_orders_horizon":
        e = v(feature)
        if e is None:
            _not_bought(text, False, problems)
        elif f"in the next {h} days" not in text:
            problems.append(f"{text!r} does not name the {h}-day horizon")
        elif "fewer than 0.1" in text:
            if e >= 0.05 + 1e-9:
                problems.append(f"'fewer than 0.1' but {e:.3f}")
        else:
            m = re.search(rf"suggests {NUM} purchases", text)
            if not m or not _close(_num(m.group(1)), e, 0.1):
                problems.append(f"{text!r} against {e:.3f} expected purchases")
    elif feature == "expected_order_value_eur":
        if not _not_bought(text, v(feature) is not None, problems):
            _money(text, v(feature), shop, problems, feature)
    elif feature == "tenure_days":
        _days(text, v(feature), problems, "tenure")
    elif feature == "first_order_days":
        if not _not_bought(text, v(feature) is not None, problems):
            _days(text, v(feature), problems, "first purchase")
    elif feature == "n_categories":
        if not _not_bought(text, bool(v(feature)), problems):
            _count_words(text.removeprefix("bought from "), "category", "categories", v(feature), problems)
    elif feature == "top_category_share":
        if not _not_bought(text, bool(v("n_categories")), problems):
            _percent(text, v(feature), problems, feature)
    elif feature in ("discount_share", "return_rate"):
        if not _not_bought(text, bought, problems):
            _percent(text, v(feature), problems, feature)
    elif feature in ("discount_share_180d", "discount_share_change_180d"):
        if v("discount_share_180d") is None:
            if text != "no orders in the last 180 days":
                problems.append(f"{text!r} with no orders in 180 days")
        else:
            _percent(text, v("discount_share_180d"), problems, feature, 0)
            _percent(text, v("discount_share"), problems, "discount_share", 1)
    elif feature == "delivery_problems_180d":
        _count_words(text, "late or lost delivery", "late or lost deliveries", v(feature), problems)
    elif feature == "delivery_problem_share_180d":
        if not v("orders_180d"):
            if text != "no orders in the last 180 days":
                problems.append(f"{text!r} with no orders in 180 days")
        else:
            _percent(text, v(feature), problems, feature)
    elif feature == "email_sends_60d":
        _count_words(text, "marketing e-mail", "marketing e-mails", v(feature), problems)
    elif feature.startswith(("open_rate", "click_rate")):
        kind = "open" if feature.startswith("open") else "click"
        now, before = v(f"{kind}_rate_60d"), v(f"{kind}_rate_prior_120d")
        if now is None:
            if text != "no marketing e-mails in the last 60 days":
                problems.append(f"{text!r} without e-mails in 60 days")
        elif before is None:
            if "none in the 120 days before" not in text:
                problems.append(f"{text!r} compares with 120 days that had no e-mails")
            _percent(text, now, problems, f"{kind} rate")
        elif "rose" in text or "fell" in text:
            a = _percent(text, before, problems, f"earlier {kind} rate", 0)
            b = _percent(text, now, problems, f"recent {kind} rate", 1)
            if a is not None and b is not None and ("rose" in text) != (b > a):
                problems.append(f"{text!r}: the word disagrees with {a:g}% -> {b:g}%")
        elif "steady at" in text:
            _percent(text, now, problems, f"recent {kind} rate")
            _percent(text, before, problems, f"earlier {kind} rate")
        else:
            problems.append(f"unexpected shape {text!r}")
    elif feature == "days_since_last_open":
        if v(feature) is None:
            if text != "no e-mail opens on record":
                problems.append(f"{text!r} without opens")
        else:
            _days(text, v(feature), problems, "last open")
    elif feature == "unsubscribed":
        expected = "unsubscribed from e-mail" if v(feature) else "has not unsubscribed from e-mail"
        if text != expected:
            problems.append(f"{text!r}, data {v(feature)}")
    elif feature in ("tickets_90d", "negative_tickets_90d", "negative_tickets_365d"):
        noun = "support ticket" if feature == "tickets_90d" else "negative support ticket"
        _count_words(text, noun, noun + "s", v(feature), problems)
        _complaint_topic(text, v, problems)
    elif feature in ("complaints_90d", "top_complaint_topic_count_90d"):
        _count_words(text, "complaint", "complaints", v("complaints_90d"), problems)
        _complaint_topic(text, v, problems)
    elif feature == "top_topic_share_365d":
        if v(feature) is None:
            if not text.startswith("no support tickets on record"):
                problems.append(f"{text!r} without tickets")
        else:
            _percent(text, v(feature), problems, "topic share")
            if "on one topic" not in text:
                problems.append(f"{text!r} does not say the share is of one topic")
    elif feature == "avg_satisfaction_365d":
        if v(feature) is None:
            if not text.startswith("no support survey answers"):
                problems.append(f"{text!r} without survey answers")
        else:
            m = re.search(rf"satisfaction {NUM} of 5", text)
            if not m or not _close(_num(m.group(1)), v(feature), 0.1):
                problems.append(f"{text!r} against {v(feature)}")
        _complaint_topic(text, v, problems)
    else:
        problems.append(f"the oracle has no rule for {feature}")
    return problems


COVERED = {
    "recency_days", "recency_vs_usual", "has_ordered", "orders_lifetime", "orders_30d", "orders_90d",
    "orders_180d", "orders_365d", "orders_decayed_90d", "spend_lifetime_eur", "spend_90d_eur",
    "spend_180d_eur", "spend_prior_180d_eur", "spend_365d_eur", "avg_order_value_eur", "mean_gap_days",
    "recent_gap_days", "gap_trend_ratio", "orders_same_window_last_year", "p_alive",
    "expected_orders_horizon", "expected_order_value_eur", "tenure_days", "first_order_days",
    "n_categories", "top_category_share", "discount_share", "discount_share_180d",
    "discount_share_change_180d", "return_rate",
    "delivery_problems_180d", "delivery_problem_share_180d", "email_sends_60d", "open_rate_60d",
    "open_rate_prior_120d", "open_rate_change", "click_rate_60d", "click_rate_prior_120d",
    "click_rate_change", "days_since_last_open", "unsubscribed", "tickets_90d", "negative_tickets_90d",
    "negative_tickets_365d", "avg_satisfaction_365d", "complaints_90d", "top_complaint_topic_count_90d",
    "top_topic_share_365d",
}  # fmt: skip


def check_run(scores: Iterable[Any], figures: pd.DataFrame, shop: Shop) -> tuple[list[tuple], int, set[str]]:
    """Every reason of every scored customer (rows with `contact_id` and `reasons`) against that
    customer's own figures (`figures`, indexed by contact_id): the problems found, how many
    reasons were checked, and the families they came from."""
    problems: list[tuple] = []
    checked, families = 0, set()
    for rec in scores:
        row = figures.loc[rec.contact_id]

        def value(name: str, row: pd.Series = row) -> float | None:
            x = row[name]
            return None if pd.isna(x) else x if isinstance(x, str) else float(x)  # a topic's name: text

        for r in rec.reasons:
            checked += 1
            families.add(r["family"])
            problems += [
                (rec.contact_id, r["feature"], r["text"], p)
                for p in check(r["feature"], r["text"], value, shop)
            ]
    return problems, checked, families
