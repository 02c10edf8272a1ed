"""Reason codes: the features pushing a customer's score most, in words a marketer can check.

For a customer more likely to lapse than to buy (churn risk >= 0.5), the reasons are the feature
families that raise the risk most; otherwise those that lower it most. At most ``limit`` reasons, each at
least ``min_effect`` in log-odds, and only features the model used (a feature that no tree splits
on has no contribution). Each reason keeps the feature, its family, the direction, the effect and
the customer's value beside the sentence, so the text can always be traced to the SHAP value.
Reasons are per feature family (recency, engagement, support, ...): a family's effect is the sum
of its features' SHAP values, worded by its strongest feature.

The catalogue below is the one place sentences live; every model feature must have an entry
(tested), and a sentence only states the customer's own figures, the ones its entry ``reads``.

Reasons are computed for a whole chunk of customers at once and kept in columns (`ReasonCodes`):
a sentence is rendered once per distinct set of figures it reads, not once per customer, which
is what makes explaining a million customers a matter of seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from models.features import FAMILY_OF, FEATURES

Value = float | None
Row = Callable[[str], Value]


def _n(x: Value) -> str:
    return "no" if x is None else f"{x:,.0f}"


def _pct(x: Value) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


@dataclass(frozen=True)
class Sentence:
    """How one feature is put into words: the figures it reads, and the words around them."""

    reads: tuple[str, ...]
    render: Callable[..., str]  # one argument per name in `reads`, None where unknown

    def __call__(self, v: Row) -> str:
        return self.render(*(v(name) for name in self.reads))


def _days(days: Value, usual: Value) -> str:
    tail = f", {usual:.1f}x longer than usual for this customer" if usual is not None and usual >= 1.5 else ""
    return f"no purchase for {_n(days)} days{tail}"


def _rate_change(kind: str) -> Callable[[Value, Value], str]:
    def text(now: Value, before: Value) -> str:
        if now is None:
            return f"no marketing e-mails in the last 60 days to {kind}"
        if before is None or before == 0:
            return f"e-mail {kind}s: {_pct(now)} of the last 60 days' e-mails"
        change = (now - before) / before
        word = "fell" if change < 0 else "rose"
        shares = f"({_pct(before)} -> {_pct(now)})"
        return f"e-mail {kind}s {word} {abs(change) * 100:.0f}% in the last 60 days {shares}"

    return text


def _one(feature: str, render: Callable[[Value], str]) -> Sentence:
    return Sentence((feature,), render)


RECENCY = Sentence(("recency_days", "recency_vs_usual"), _days)
OPENS = Sentence(("open_rate_60d", "open_rate_prior_120d"), _rate_change("open"))
CLICKS = Sentence(("click_rate_60d", "click_rate_prior_120d"), _rate_change("click"))

CATALOGUE: dict[str, Sentence] = {
    "recency_days": RECENCY,
    "recency_vs_usual": RECENCY,
    "has_ordered": _one("has_ordered", lambda x: "has bought before" if x else "has never bought"),
    "orders_lifetime": _one("orders_lifetime", lambda x: f"{_n(x)} orders in total"),
    "orders_90d": _one("orders_90d", lambda x: f"{_n(x)} orders in the last 90 days"),
    "orders_365d": _one("orders_365d", lambda x: f"{_n(x)} orders in the last 12 months"),
    "spend_lifetime_eur": _one("spend_lifetime_eur", lambda x: f"EUR {_n(x)} spent in total"),
    "spend_90d_eur": _one("spend_90d_eur", lambda x: f"EUR {_n(x)} spent in the last 90 days"),
    "spend_365d_eur": _one("spend_365d_eur", lambda x: f"EUR {_n(x)} spent in the last 12 months"),
    "avg_order_value_eur": _one("avg_order_value_eur", lambda x: f"average order EUR {_n(x)}"),
    "mean_gap_days": _one("mean_gap_days", lambda x: f"usually {_n(x)} days between purchases"),
    "recent_gap_days": _one("recent_gap_days", lambda x: f"{_n(x)} days between the latest purchases"),
    "gap_trend_ratio": _one(
        "gap_trend_ratio",
        lambda x: (
            "no purchase rhythm yet"
            if x is None
            else f"purchases {'slowing' if x > 1 else 'speeding up'}: latest gaps {x:.1f}x the usual"
        ),
    ),
    "tenure_days": _one("tenure_days", lambda x: f"customer for {_n(x)} days"),
    "n_categories": _one("n_categories", lambda x: f"bought from {_n(x)} categories"),
    "top_category_share": _one("top_category_share", lambda x: f"{_pct(x)} of spend in one category"),
    "discount_share": _one("discount_share", lambda x: f"{_pct(x)} of orders used a discount"),
    "return_rate": _one("return_rate", lambda x: f"{_pct(x)} of orders returned"),
    "delivery_problems_180d": _one(
        "delivery_problems_180d", lambda x: f"{_n(x)} late or lost deliveries in the last 180 days"
    ),
    "delivery_problem_share_180d": _one(
        "delivery_problem_share_180d",
        lambda x: f"{_pct(x)} of the last 180 days' orders arrived late or were lost",
    ),
    "email_sends_60d": _one("email_sends_60d", lambda x: f"{_n(x)} marketing e-mails in the last 60 days"),
    "open_rate_60d": OPENS,
    "open_rate_prior_120d": OPENS,
    "open_rate_change": OPENS,
    "click_rate_60d": CLICKS,
    "click_rate_prior_120d": CLICKS,
    "click_rate_change": CLICKS,
    "days_since_last_open": _one(
        "days_since_last_open",
        lambda x: "never opened an e-mail" if x is None else f"last opened an e-mail {_n(x)} days ago",
    ),
    "unsubscribed": _one(
        "unsubscribed", lambda x: "unsubscribed from e-mail" if x else "still subscribed to e-mail"
    ),
    "tickets_90d": _one("tickets_90d", lambda x: f"{_n(x)} support tickets in the last 90 days"),
    "negative_tickets_90d": _one(
        "negative_tickets_90d", lambda x: f"{_n(x)} negative support tickets in the last 90 days"
    ),
    "negative_tickets_365d": _one(
        "negative_tickets_365d", lambda x: f"{_n(x)} negative support tickets in the last 12 months"
    ),
    "avg_satisfaction_365d": _one(
        "avg_satisfaction_365d",
        lambda x: (
            "no support surveys in the last 12 months"
            if x is None
            else f"support satisfaction {x:.1f} of 5 over the last 12 months"
        ),
    ),
}

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
    text: np.ndarray  # object array of sentences
    features: tuple[str, ...]
    families: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def arrow(self) -> pa.ListArray:
        """As the `reasons` column of ml.customer_scores: a list of structs per customer."""
        struct = pa.StructArray.from_arrays(
            [
                pa.array(np.asarray(self.features, dtype=object)[self.feature], pa.string()),
                pa.array(np.asarray(self.families, dtype=object)[self.family], pa.string()),
                pa.array(np.where(self.effect > 0, "raises_risk", "lowers_risk"), pa.string()),
                pa.array(self.effect, pa.float64()),
                pa.array(self.value, pa.float64(), from_pandas=True),  # NaN -> null
                pa.array(self.text, pa.string()),
            ],
            fields=list(REASON_TYPE),
        )
        return pa.ListArray.from_arrays(pa.array(self.offsets, pa.int32()), struct)

    def joined_text(self) -> pa.Array:
        """Each customer's sentences joined with '; ' ('' where there are none)."""
        texts = pa.ListArray.from_arrays(pa.array(self.offsets, pa.int32()), pa.array(self.text, pa.string()))
        return pc.binary_join(texts, "; ")

    def first_family(self) -> list[str | None]:
        has = np.diff(self.offsets) > 0
        names = np.full(len(self), None, dtype=object)
        names[has] = np.asarray(self.families, dtype=object)[self.family[self.offsets[:-1][has]]]
        return names.tolist()

    def rows(self) -> list[list[dict[str, Any]]]:
        """Per customer, a list of reason dicts (what `clarion explain` shows); for small chunks."""
        return self.arrow().to_pylist()


def reason_table(
    contributions: np.ndarray,
    x: np.ndarray,
    churn_risk: np.ndarray,
    used: set[str],
    limit: int = 4,
    min_effect: float = 0.02,
    features: tuple[str, ...] = FEATURES,
) -> ReasonCodes:
    """Up to `limit` reasons per customer (row of `contributions`, in purchase log-odds).

    One reason per feature family: a family's effect is the sum of its features' SHAP values (SHAP
    values add, so this is as faithful as a single feature's), and its sentence is that of the
    family's feature pushing hardest the same way. Recency in days and recency against the usual
    rhythm are then one reason, not two that read alike.
    """
    risk_effect = -contributions  # what a feature adds to the log-odds of *not* buying
    risk_effect[:, [f not in used for f in features]] = 0.0
    families = tuple(dict.fromkeys(FAMILY_OF[f] for f in features))
    columns = [[j for j, f in enumerate(features) if FAMILY_OF[f] == fam] for fam in families]
    lean = np.where(churn_risk >= 0.5, 1.0, -1.0)[:, None]  # +1: explain the risk; -1: explain staying
    family_effect = np.stack([risk_effect[:, cols].sum(axis=1) for cols in columns], axis=1)
    # per customer and family, the feature pushing hardest the way the customer leans
    strongest = np.stack(
        [np.asarray(cols)[np.argmax(risk_effect[:, cols] * lean, axis=1)] for cols in columns], axis=1
    )
    signed_family = family_effect * lean
    order = np.argsort(-signed_family, axis=1, kind="stable")[:, :limit]
    chosen = np.take_along_axis(signed_family, order, axis=1)
    keep = (chosen > 0) & (chosen >= min_effect)  # sorted, so the kept ones are a prefix
    row, _ = np.nonzero(keep)  # row-major: each customer's reasons in order
    family = order[keep]
    feature = np.take_along_axis(strongest, order, axis=1)[keep]
    offsets = np.zeros(len(x) + 1, dtype=np.int32)
    np.cumsum(keep.sum(axis=1), out=offsets[1:])
    return ReasonCodes(
        offsets=offsets,
        feature=feature,
        family=family,
        effect=np.take_along_axis(family_effect, order, axis=1)[keep].round(6),
        value=x[row, feature],
        text=_sentences(x, row, feature, features),
        features=tuple(features),
        families=families,
    )


def reason_codes(*args: Any, **kwargs: Any) -> list[list[dict[str, Any]]]:
    """`reason_table` as one list of reason dicts per customer."""
    return reason_table(*args, **kwargs).rows()


def _sentences(x: np.ndarray, row: np.ndarray, feature: np.ndarray, features: tuple[str, ...]) -> np.ndarray:
    """The sentence of each reason, rendered once per distinct tuple of the figures it reads."""
    text = np.empty(len(row), dtype=object)
    index = {f: j for j, f in enumerate(features)}
    by_sentence: dict[int, list[int]] = {}
    for j in np.unique(feature).tolist():
        by_sentence.setdefault(id(CATALOGUE[features[j]]), []).append(j)
    for group in by_sentence.values():
        sentence = CATALOGUE[features[group[0]]]
        at = np.flatnonzero(np.isin(feature, group))
        figures = np.ascontiguousarray(x[row[at]][:, [index[name] for name in sentence.reads]])
        figures[np.isnan(figures)] = np.nan  # one bit pattern for unknown, so equal tuples are equal bytes
        keys = figures.view(np.dtype((np.void, figures.itemsize * figures.shape[1]))).ravel()
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        rendered = np.array(
            [sentence.render(*(None if v != v else v for v in values)) for values in figures[first].tolist()],
            dtype=object,
        )
        text[at] = rendered[inverse.ravel()]
    return text
