"""Reason codes: the features pushing a customer's score most, in words a marketer can check.

Which way to explain: SHAP values add up from the model's base value (the average customer's
margin) to the customer's margin. A customer below the base value is less likely to buy than the
average customer: the reasons are the families that raise the risk most. A customer above it gets
the families that lower the risk most. (Not "above or below 50%": in a shop where 15% buy in the
horizon, a customer at 30% is twice as likely to buy as the average one, and their reasons must
say why they stay, not why they might leave.)

At most ``limit`` reasons, each at least ``min_effect`` in log-odds, only features the model used.
Reasons are per feature family (recency, engagement, support, ...): a family's effect is the sum of
its features' SHAP values, worded by its feature pushing hardest the customer's way. When another
feature of the family pushes the other way by at least ``min_effect``, the text says so, so that
crediting the family's net effect to one feature's words never overstates it.

Every sentence states the customer's own figures and only those: amounts in the shop's currency
(converted from the EUR the features are kept in), counts and shares rounded as printed, and
words (rose/fell, slowing/speeding up) that agree with the printed figures. A sentence that cannot
be true for a value (an average of no orders, a rhythm of one purchase) is never rendered: the
catalogue says what is true instead ("has not bought yet", "one purchase so far"). The catalogue
below is the one place sentences live; every model feature has an entry (tested).

Reasons are computed for a whole chunk of customers at once and kept in columns (`ReasonCodes`):
a sentence is rendered once per distinct set of figures it reads, not once per customer, which
is what makes explaining a million customers a matter of seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from models.features import CONTEXT, FAMILY_OF, FEATURES

Value = float | None


@dataclass(frozen=True)
class Wording:
    """How figures are put into words for one shop and one run."""

    currency: str = "EUR"
    units_per_eur: float = 1.0
    horizon_days: int = 90
    topics: tuple[tuple[int, str], ...] = ()  # (voc topic id, name) of the run's customer features

    def money(self, eur: float) -> str:
        return f"{self.currency} {eur * self.units_per_eur:,.0f}"

    def topic(self, topic_id: Value) -> str | None:
        if topic_id is None:
            return None
        return dict(self.topics).get(int(topic_id))


def topic_names(ids: Any, names: Any) -> tuple[tuple[int, str], ...]:
    """The (id, name) pairs of the voc topics in the features' columns top_complaint_topic_id_90d and
    top_complaint_topic_90d, for Wording.topics (one voc run: one name per id). Read once per
    distinct pair, not once per customer."""
    distinct = pd.DataFrame({"id": ids, "name": names}).dropna(subset=["name"]).drop_duplicates()
    pairs = set()
    for i, n in zip(distinct["id"], distinct["name"], strict=True):
        if isinstance(n, str):  # customers without complaints have neither (NULL, NaN or NA)
            try:
                pairs.add((int(i), n))
            except (TypeError, ValueError):
                continue
    return tuple(sorted(pairs))


def whole(x: float) -> int:
    """Round half away from zero, as people read figures (Python's round() goes to even)."""
    return math.floor(abs(x) + 0.5) * (1 if x >= 0 else -1)


def tenth(x: float) -> float:
    """To one decimal, half up: the ratios and averages printed as 1.3x, 4.5 of 5, 0.7 purchases."""
    return math.floor(x * 10 + 0.5) / 10


def percent(share: float) -> int:
    return whole(100 * share)


def count(n: float, noun: str, plural: str | None = None) -> str:
    k = whole(n)
    if k == 0:
        return f"no {plural or noun + 's'}"
    return f"{k:,} {noun if k == 1 else plural or noun + 's'}"


def days(n: float) -> str:
    k = whole(n)
    return "less than a day" if k == 0 else f"{k:,} day" + ("" if k == 1 else "s")


@dataclass(frozen=True)
class Sentence:
    """How one feature is put into words: the figures it reads, and the words around them.

    ``render`` takes the Wording, then one argument per name in ``reads`` (None where unknown), and
    returns a sentence that is true for every combination of values, unknown ones included."""

    reads: tuple[str, ...]
    render: Callable[..., str]

    def __call__(self, v: Callable[[str], Value], wording: Wording | None = None) -> str:
        return self.render(wording or Wording(), *(v(name) for name in self.reads))


NOT_BOUGHT = "has not bought yet"


def _recency(w: Wording, recency: Value, vs_usual: Value) -> str:
    if recency is None:
        return NOT_BOUGHT
    text = f"last purchase {days(recency)} ago"
    if vs_usual is None:
        return text
    r = tenth(vs_usual)
    if r > 1.0:
        return f"{text}, {r:.1f}x their usual gap between purchases"
    if r < 1.0:
        return f"{text}, within their usual gap between purchases ({r:.1f}x)"
    return f"{text}, about their usual gap between purchases"


def _orders(window: str) -> Callable[[Wording, Value], str]:
    def text(w: Wording, n: Value) -> str:
        return f"{count(n or 0, 'order')} {window}"

    return text


def _recent_orders(w: Wording, last_90: Value, last_365: Value) -> str:
    year = whole(last_365 or 0)
    in_year = f"{year:,}" if year else "none"
    return f"{count(last_90 or 0, 'order')} in the last 90 days, {in_year} in the last 12 months"


def _spend(window: str) -> Callable[[Wording, Value], str]:
    def text(w: Wording, eur: Value) -> str:
        if not eur or whole(eur * w.units_per_eur) == 0:
            return f"nothing spent {window}"
        return f"{w.money(eur)} spent {window}"

    return text


def _spend_trend(w: Wording, recent: Value, before: Value) -> str:
    def amount(eur: Value) -> str:
        return "nothing" if not eur or whole(eur * w.units_per_eur) == 0 else w.money(eur)

    return f"spent {amount(recent)} in the last 6 months, {amount(before)} in the 6 months before"


def _average_order(w: Wording, eur: Value) -> str:
    return NOT_BOUGHT if eur is None else f"average order {w.money(eur)}"


def _gap(what: str) -> Callable[[Wording, Value, Value], str]:
    def text(w: Wording, gap: Value, orders: Value) -> str:
        if gap is None:
            return NOT_BOUGHT if not orders else "one purchase so far: no rhythm of purchases yet"
        return f"{what} {days(gap)} between purchases"

    return text


def _gap_trend(w: Wording, ratio: Value, orders: Value) -> str:
    if ratio is None:
        if not orders:
            return NOT_BOUGHT
        return (
            "one purchase so far: no rhythm of purchases yet"
            if whole(orders) == 1
            else "too few gaps to compare"
        )
    r = tenth(ratio)
    if r > 1.0:
        return f"purchases slowing: the latest gaps are {r:.1f}x their usual"
    if r < 1.0:
        return f"purchases speeding up: the latest gaps are {r:.1f}x their usual"
    return "purchases at their usual pace"


def _same_window(w: Wording, n: Value) -> str:
    if not n or whole(n) == 0:
        return f"did not buy in the same {w.horizon_days} days last year"
    return f"{count(n, 'order')} in the same {w.horizon_days} days last year"


def _p_alive(w: Wording, p: Value, purchase_days: Value) -> str:
    if p is None:
        return NOT_BOUGHT
    if not purchase_days or whole(purchase_days) <= 1:
        return (
            "one purchase so far: too early to tell from their purchase pattern whether they are still active"
        )
    return f"their purchase pattern gives a {percent(p)}% chance they are still an active customer"


def _expected_orders(w: Wording, e: Value) -> str:
    if e is None:
        return NOT_BOUGHT
    r = tenth(e)
    if r == 0:
        return f"their purchase pattern suggests fewer than 0.1 purchases in the next {w.horizon_days} days"
    return f"their purchase pattern suggests {r:.1f} purchases in the next {w.horizon_days} days"


def _expected_value(w: Wording, eur: Value) -> str:
    return NOT_BOUGHT if eur is None else f"an expected order value of {w.money(eur)}"


def _share_of_orders(what: str) -> Callable[[Wording, Value, Value], str]:
    def text(w: Wording, share: Value, orders: Value) -> str:
        if not orders:
            return NOT_BOUGHT
        return f"{percent(share or 0)}% of orders {what}"

    return text


def _recent_discount(w: Wording, share_180: Value, share_all: Value) -> str:
    if share_180 is None:
        return "no orders in the last 180 days"
    return (
        f"{percent(share_180)}% of the last 180 days' orders used a discount "
        f"({percent(share_all or 0)}% of all their orders)"
    )


def _top_category(w: Wording, share: Value, categories: Value) -> str:
    if not categories:
        return NOT_BOUGHT
    return f"{percent(share or 0)}% of spend in one category"


def _categories(w: Wording, n: Value) -> str:
    return NOT_BOUGHT if not n else f"bought from {count(n, 'category', 'categories')}"


def _delivery_share(w: Wording, share: Value, orders_180: Value) -> str:
    if not orders_180:
        return "no orders in the last 180 days"
    return f"{percent(share or 0)}% of the last 180 days' orders arrived late or were lost"


def _rate_change(kind: str) -> Callable[[Wording, Value, Value], str]:
    def text(w: Wording, now: Value, before: Value) -> str:
        if now is None:
            return "no marketing e-mails in the last 60 days"
        b = percent(now)
        if before is None:
            return f"e-mail {kind}s: {b}% of the last 60 days' e-mails (none in the 120 days before)"
        a = percent(before)
        if a == b:
            return f"e-mail {kind}s steady at {b}% of e-mails (last 60 days against the 120 before)"
        word = "rose" if b > a else "fell"
        return f"e-mail {kind}s {word} from {a}% to {b}% of e-mails (last 60 days against the 120 before)"

    return text


def _last_open(w: Wording, n: Value) -> str:
    return "no e-mail opens on record" if n is None else f"last opened an e-mail {days(n)} ago"


def _satisfaction(w: Wording, x: Value) -> str:
    if x is None:
        return "no support survey answers in the last 12 months"
    return f"support satisfaction {tenth(x):.1f} of 5 over the last 12 months"


def _complaints(w: Wording, about: Value, topic_id: Value, window: str) -> str:
    """ "(2 complaints about “late · delivery”)": the voc topic the customer complained about most in
    the last 90 days (classifier-negative tickets), said beside the support figures (with its window
    where the sentence's own is another); nothing without such complaints or a named topic."""
    name = w.topic(topic_id)
    if not about or name is None:
        return ""
    when = "" if window == COMPLAINT_WINDOW else f" {COMPLAINT_WINDOW}"
    return f" ({count(about, 'complaint')} about “{name}”{when})"


COMPLAINT_WINDOW = "in the last 90 days"
COMPLAINT_FIGURES = ("top_complaint_topic_count_90d", "top_complaint_topic_id_90d")


def _support_count(feature: str, noun: str, window: str) -> Sentence:
    def text(w: Wording, n: Value, about: Value, topic_id: Value) -> str:
        return f"{count(n or 0, noun)} {window}" + _complaints(w, about, topic_id, window)

    return Sentence((feature, *COMPLAINT_FIGURES), text)


def _satisfaction_topic(w: Wording, x: Value, about: Value, topic_id: Value) -> str:
    return _satisfaction(w, x) + _complaints(w, about, topic_id, "over the last 12 months")


def _topic_share(share: Value) -> str:
    if share is None:
        return "no support tickets on record in the last 12 months"
    return f"{percent(share)}% of their support tickets in the last 12 months on one topic"


def _one(feature: str, render: Callable[[Wording, Value], str]) -> Sentence:
    return Sentence((feature,), render)


RECENCY = Sentence(("recency_days", "recency_vs_usual"), _recency)
OPENS = Sentence(("open_rate_60d", "open_rate_prior_120d"), _rate_change("open"))
CLICKS = Sentence(("click_rate_60d", "click_rate_prior_120d"), _rate_change("click"))
SPEND_TREND = Sentence(("spend_180d_eur", "spend_prior_180d_eur"), _spend_trend)

CATALOGUE: dict[str, Sentence] = {
    "recency_days": RECENCY,
    "recency_vs_usual": RECENCY,
    "has_ordered": _one("has_ordered", lambda w, x: "has bought before" if x else NOT_BOUGHT),
    "orders_lifetime": _one("orders_lifetime", _orders("in total")),
    "orders_30d": _one("orders_30d", _orders("in the last 30 days")),
    "orders_90d": _one("orders_90d", _orders("in the last 90 days")),
    "orders_180d": _one("orders_180d", _orders("in the last 180 days")),
    "orders_365d": _one("orders_365d", _orders("in the last 12 months")),
    "orders_decayed_90d": Sentence(("orders_90d", "orders_365d"), _recent_orders),
    "spend_lifetime_eur": _one("spend_lifetime_eur", _spend("in total")),
    "spend_90d_eur": _one("spend_90d_eur", _spend("in the last 90 days")),
    "spend_180d_eur": SPEND_TREND,
    "spend_prior_180d_eur": SPEND_TREND,
    "spend_365d_eur": _one("spend_365d_eur", _spend("in the last 12 months")),
    "avg_order_value_eur": _one("avg_order_value_eur", _average_order),
    "mean_gap_days": Sentence(("mean_gap_days", "orders_lifetime"), _gap("usually")),
    "recent_gap_days": Sentence(("recent_gap_days", "orders_lifetime"), _gap("lately")),
    "gap_trend_ratio": Sentence(("gap_trend_ratio", "orders_lifetime"), _gap_trend),
    "orders_same_window_last_year": _one("orders_same_window_last_year", _same_window),
    "p_alive": Sentence(("p_alive", "purchase_days"), _p_alive),
    "expected_orders_horizon": _one("expected_orders_horizon", _expected_orders),
    "expected_order_value_eur": _one("expected_order_value_eur", _expected_value),
    "tenure_days": _one("tenure_days", lambda w, x: f"customer for {days(x or 0)}"),
    "first_order_days": _one(
        "first_order_days", lambda w, x: NOT_BOUGHT if x is None else f"first purchase {days(x)} ago"
    ),
    "n_categories": _one("n_categories", _categories),
    "top_category_share": Sentence(("top_category_share", "n_categories"), _top_category),
    "discount_share": Sentence(("discount_share", "orders_lifetime"), _share_of_orders("used a discount")),
    "discount_share_180d": Sentence(("discount_share_180d", "discount_share"), _recent_discount),
    "discount_share_change_180d": Sentence(("discount_share_180d", "discount_share"), _recent_discount),
    "return_rate": Sentence(("return_rate", "orders_lifetime"), _share_of_orders("returned")),
    "delivery_problems_180d": _one(
        "delivery_problems_180d",
        lambda w, x: (
            f"{count(x or 0, 'late or lost delivery', 'late or lost deliveries')} in the last 180 days"
        ),
    ),
    "delivery_problem_share_180d": Sentence(("delivery_problem_share_180d", "orders_180d"), _delivery_share),
    "email_sends_60d": _one(
        "email_sends_60d", lambda w, x: f"{count(x or 0, 'marketing e-mail')} in the last 60 days"
    ),
    "open_rate_60d": OPENS,
    "open_rate_prior_120d": OPENS,
    "open_rate_change": OPENS,
    "click_rate_60d": CLICKS,
    "click_rate_prior_120d": CLICKS,
    "click_rate_change": CLICKS,
    "days_since_last_open": _one("days_since_last_open", _last_open),
    "unsubscribed": _one(
        "unsubscribed", lambda w, x: "unsubscribed from e-mail" if x else "has not unsubscribed from e-mail"
    ),
    "tickets_90d": _support_count("tickets_90d", "support ticket", "in the last 90 days"),
    "negative_tickets_90d": _support_count(
        "negative_tickets_90d", "negative support ticket", "in the last 90 days"
    ),
    "complaints_90d": _support_count("complaints_90d", "complaint", "in the last 90 days"),
    "top_complaint_topic_count_90d": _support_count("complaints_90d", "complaint", "in the last 90 days"),
    "top_topic_share_365d": Sentence(("top_topic_share_365d",), lambda w, x: _topic_share(x)),
    "negative_tickets_365d": _support_count(
        "negative_tickets_365d", "negative support ticket", "in the last 12 months"
    ),
    "avg_satisfaction_365d": Sentence(("avg_satisfaction_365d", *COMPLAINT_FIGURES), _satisfaction_topic),
}

SENTENCE_NUMBER: dict[int, int] = {}  # id of each distinct sentence of the catalogue -> a number
for _sentence in CATALOGUE.values():
    SENTENCE_NUMBER.setdefault(id(_sentence), len(SENTENCE_NUMBER))

# how "other <family> figures pull the other way" names each family
FAMILY_NOUN = {
    "recency": "recency",
    "frequency": "order-count",
    "monetary": "spending",
    "rhythm": "rhythm",
    "seasonality": "seasonal",
    "lifecycle": "purchase-pattern",
    "tenure": "tenure",
    "assortment": "assortment",
    "price": "discount",
    "returns": "returns",
    "delivery": "delivery",
    "engagement": "e-mail",
    "support": "support",
}
FIGURES: tuple[str, ...] = FEATURES + CONTEXT  # what sentences may read, in this column order

# How each figure is printed, so that sentences are rendered once per distinct *printed* set of
# figures (a million customers have a million distinct recencies, but a few thousand distinct
# "N days"). A sentence's words depend on its figures only through these printed values (whole
# numbers, tenths, percentages, amounts in the shop's currency), and the rounding below is the one
# the sentences use, so a figure and its printed value render the same text (tested).
TENTHS = {"recency_vs_usual", "gap_trend_ratio", "expected_orders_horizon", "avg_satisfaction_365d"}
SHARES = {
    "p_alive",
    "discount_share",
    "discount_share_180d",
    "return_rate",
    "top_category_share",
    "delivery_problem_share_180d",
    "top_topic_share_365d",
    "open_rate_60d",
    "open_rate_prior_120d",
    "click_rate_60d",
    "click_rate_prior_120d",
}
MONEY = {f for f in FEATURES if f.endswith("_eur")}  # amounts: printed whole in the shop's currency
UNROUNDED = {"open_rate_change", "click_rate_change", "discount_share_change_180d", "orders_decayed_90d"}


def _whole(x: np.ndarray) -> np.ndarray:
    return np.floor(np.abs(x) + 0.5) * np.sign(x)


def printed(figures: np.ndarray, names: tuple[str, ...], wording: Wording) -> np.ndarray:
    """The figures as the sentences print them (NaN stays NaN); see TENTHS, SHARES, MONEY."""
    out = np.array(figures, dtype=np.float64, copy=True)
    for j, name in enumerate(names):
        col = out[:, j]
        if name in UNROUNDED:
            continue
        if name in TENTHS:
            out[:, j] = np.floor(col * 10 + 0.5) / 10
        elif name in SHARES:
            out[:, j] = _whole(100 * col) / 100
        elif name in MONEY:
            out[:, j] = _whole(col * wording.units_per_eur) / wording.units_per_eur
        else:  # days and counts: whole numbers
            out[:, j] = _whole(col)
    return out


REASON_TYPE = pa.struct(
    [
        ("feature", pa.string()),
        ("family", pa.string()),
        ("direction", pa.string()),
        ("effect", pa.float64()),
        ("value", pa.float64()),
        ("text", pa.string()),
    ]
)


@dataclass(frozen=True)
class ReasonCodes:
    """The reasons of a chunk of customers, flat: customer i's are positions offsets[i]:offsets[i+1]."""

    offsets: np.ndarray  # int32, one more than customers
    feature: np.ndarray  # index into `features`
    family: np.ndarray  # index into `families`
    effect: np.ndarray  # log-odds of not buying: > 0 raises the risk
    value: np.ndarray  # the customer's value of `feature`, NaN where unknown
    text: pa.StringArray  # the sentences, one per reason
    features: tuple[str, ...]
    families: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def arrow(self) -> pa.ListArray:
        """As the `reasons` column of ml.customer_scores: a list of structs per customer."""
        struct = pa.StructArray.from_arrays(
            [
                pa.array(self.features, pa.string()).take(pa.array(self.feature)),
                pa.array(self.families, pa.string()).take(pa.array(self.family)),
                pa.array(["lowers_risk", "raises_risk"], pa.string()).take(
                    pa.array(self.effect > 0, pa.int8())
                ),
                pa.array(self.effect, pa.float64()),
                pa.array(self.value, pa.float64(), from_pandas=True),  # NaN -> null
                self.text,
            ],
            fields=list(REASON_TYPE),
        )
        return pa.ListArray.from_arrays(pa.array(self.offsets, pa.int32()), struct)

    def joined_text(self) -> pa.Array:
        """Each customer's sentences joined with '; ' ('' where there are none)."""
        texts = pa.ListArray.from_arrays(pa.array(self.offsets, pa.int32()), self.text)
        return pc.binary_join(texts, "; ")

    def first_family(self) -> list[str | None]:
        has = np.diff(self.offsets) > 0
        names = np.full(len(self), None, dtype=object)
        names[has] = np.asarray(self.families, dtype=object)[self.family[self.offsets[:-1][has]]]
        return names.tolist()

    def rows(self) -> list[list[dict[str, Any]]]:
        """Per customer, a list of reason dicts (what `clarion explain` shows); for small chunks."""
        return self.arrow().to_pylist()


def lean(margin: np.ndarray, base_value: float) -> np.ndarray:
    """+1 where the customer is less likely to buy than the average customer (explain the risk),
    -1 where more likely (explain why they stay). Exactly at the base value: -1."""
    return np.where(np.asarray(margin, dtype=float) < base_value, 1.0, -1.0)


def reason_table(
    contributions: np.ndarray,
    figures: np.ndarray,
    margin: np.ndarray,
    base_value: float,
    used: set[str],
    limit: int = 4,
    min_effect: float = 0.02,
    wording: Wording | None = None,
    said: dict[bytes, str] | None = None,
) -> ReasonCodes:
    """Up to `limit` reasons per customer (row of `contributions`, in purchase log-odds).

    `figures`: the customers' values of FIGURES (the features, then the context columns the
    sentences may quote). One reason per feature family: a family's effect is the sum of its
    features' SHAP values (SHAP values add, so this is as faithful as a single feature's), worded
    by the family's feature pushing hardest the customer's way.

    `said`: sentences rendered so far, to share across the chunks of one run (one Wording); a
    sentence is rendered once per distinct printed set of figures in the whole run.
    """
    wording = wording or Wording()
    features = FEATURES
    n_features = len(features)
    x = figures[:, :n_features]
    risk_effect = -contributions  # what a feature adds to the log-odds of *not* buying
    risk_effect[:, [f not in used for f in features]] = 0.0
    families = tuple(dict.fromkeys(FAMILY_OF[f] for f in features))
    columns = [[j for j, f in enumerate(features) if FAMILY_OF[f] == fam] for fam in families]
    side = lean(margin, base_value)[:, None]  # +1: explain the risk; -1: explain staying
    family_effect = np.stack([risk_effect[:, cols].sum(axis=1) for cols in columns], axis=1)
    signed_family = family_effect * side
    order = np.argsort(-signed_family, axis=1, kind="stable")[:, :limit]
    chosen = np.take_along_axis(signed_family, order, axis=1)
    keep = (chosen > 0) & (chosen >= min_effect)  # sorted, so the kept ones are a prefix
    row, _ = np.nonzero(keep)  # row-major: each customer's reasons in order
    family = order[keep]
    # per customer and family: the feature pushing hardest their way (its words carry the reason),
    # and whether another feature pushes the other way by at least min_effect (the text says so)
    pushing = risk_effect * side
    strongest = np.empty((len(x), len(columns)), dtype=np.int64)
    countered = np.empty((len(x), len(columns)), dtype=bool)
    for k, cols in enumerate(columns):
        block = pushing[:, cols]
        strongest[:, k] = np.asarray(cols)[np.argmax(block, axis=1)]
        countered[:, k] = (block <= -max(min_effect, 1e-12)).any(axis=1)
    feature = strongest[row, family]
    against = countered[row, family]
    text = _sentences(figures, row, feature, against, family, families, wording, {} if said is None else said)
    offsets = np.zeros(len(x) + 1, dtype=np.int32)
    np.cumsum(keep.sum(axis=1), out=offsets[1:])
    return ReasonCodes(
        offsets=offsets,
        feature=feature,
        family=family,
        effect=np.take_along_axis(family_effect, order, axis=1)[keep].round(6),
        value=x[row, feature],
        text=text,
        features=features,
        families=families,
    )


def reason_codes(*args: Any, **kwargs: Any) -> list[list[dict[str, Any]]]:
    """`reason_table` as one list of reason dicts per customer."""
    return reason_table(*args, **kwargs).rows()


def _sentences(
    figures: np.ndarray,
    row: np.ndarray,
    feature: np.ndarray,
    against: np.ndarray,
    family: np.ndarray,
    families: tuple[str, ...],
    wording: Wording,
    said: dict[bytes, str],
) -> pa.StringArray:
    """The sentence of each reason, rendered once per distinct tuple of the printed figures it
    reads and whether its family pushes both ways (and once per run, through `said`). Only the
    figures the reasons quote are rounded as printed."""
    pool: list[str] = []  # the chunk's distinct sentences; each reason is an index into it
    codes = np.empty(len(row), dtype=np.int32)
    index = {f: j for j, f in enumerate(FIGURES)}
    by_sentence: dict[int, list[int]] = {}
    for j in np.unique(feature).tolist():
        by_sentence.setdefault(id(CATALOGUE[FEATURES[j]]), []).append(j)
    for group in by_sentence.values():
        sentence = CATALOGUE[FEATURES[group[0]]]
        at = np.flatnonzero(np.isin(feature, group))
        values = np.empty((len(at), len(sentence.reads) + 3))
        values[:, 0] = SENTENCE_NUMBER[id(sentence)]  # which sentence: one `said` serves them all
        values[:, 1:-2] = printed(
            figures[np.ix_(row[at], [index[name] for name in sentence.reads])], sentence.reads, wording
        )
        values[:, -2] = against[at]
        values[:, -1] = family[at]  # a sentence shared by two families names each one's figures
        values[np.isnan(values)] = np.nan  # one bit pattern for unknown, so equal tuples are equal bytes
        keys = values.view(np.dtype((np.void, values.itemsize * values.shape[1]))).ravel()
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        codes[at] = len(pool) + inverse.ravel()
        for key, distinct in zip(keys[first].tolist(), values[first].tolist(), strict=True):
            text = said.get(key)
            if text is None:
                text = sentence.render(wording, *(None if v != v else v for v in distinct[1:-2]))
                if distinct[-2]:
                    text += f" (other {FAMILY_NOUN[families[int(distinct[-1])]]} figures pull the other way)"
                said[key] = text
            pool.append(text)
    return pa.array(pool, pa.string()).take(pa.array(codes))
