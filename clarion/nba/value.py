"""The inputs of an action's value that are not the customer's score: measured uplift, order value,
the offer's cost.

* **Uplift.** ``ml.campaign_uplift`` (campaign, segment, uplift, low, high, treated, control,
  source; written by `clarion results`) holds each campaign's measured uplift: the absolute
  difference in the share of customers who bought within the attribution window, treated minus
  holdout, overall (segment NULL, '' or 'all') and per segment. A figure counts only with at least
  ``experiments.min_evidence`` customers in each arm: the customer's segment's figure if it has
  that evidence, else the campaign's overall one, else the prior (models.nba.prior_uplift). No
  table yet (no campaign measured) means the prior for everyone.
* **Uplift model.** Where a campaign has no measured figure with enough evidence, a *validated*
  uplift model of past campaigns (``ml.customer_uplift``, written by `clarion results` only when the
  model beat random targeting of held-out customers) gives each customer's own predicted uplift,
  instead of the prior.
* **Order value.** The customer's own mean order value as of the scoring day
  (``marts.customer_features.avg_order_value_eur``: their orders before that day, cancelled ones
  left out). It is the most direct figure of what one more order from this customer is worth; the
  model's expected spend mixes in how often they buy, which the uplift already carries. A customer
  without orders gets the mean of that figure over the run's customers who have one (the shop's
  average order), and the decision says so.
* **Offer.** The brief's discount, parsed by models.nba.parse_discount.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import numpy as np

from clarion.config import Settings
from clarion.nba.eligibility import Facts, NbaError
from clarion.warehouse import relation_exists
from models.content.brief import Brief
from models.nba import Discount, DiscountError, parse_discount

OVERALL = ("", "all")


@dataclass(frozen=True)
class Measured:
    """A campaign's measured uplift: overall (None if not enough evidence) and per segment."""

    overall: float | None = None
    segments: dict[str, float] = field(default_factory=dict)


def measured_uplift(
    con: duckdb.DuckDBPyConnection, settings: Settings, campaigns: list[str]
) -> dict[str, Measured]:
    """The figures of ml.campaign_uplift with enough customers in both arms, per campaign."""
    if not relation_exists(con, "ml", "campaign_uplift") or not campaigns:
        return {}
    rows = con.execute(
        "select campaign, coalesce(segment, ''), uplift from ml.campaign_uplift "
        "where campaign in (select unnest(?)) and treated >= ? and control >= ? and uplift is not null "
        "order by campaign, segment",
        [campaigns, settings.experiments.min_evidence, settings.experiments.min_evidence],
    ).fetchall()
    out: dict[str, Measured] = {}
    for campaign, segment, uplift in rows:
        m = out.setdefault(campaign, Measured())
        if segment.lower() in OVERALL:
            out[campaign] = Measured(float(uplift), m.segments)
        else:
            m.segments[segment] = float(uplift)
    return out


def model_uplift(con: duckdb.DuckDBPyConnection, f: Facts) -> np.ndarray | None:
    """Each customer's uplift predicted by the validated uplift model (NaN for a customer it did not
    score), or None when no validated model has scored customers."""
    if not relation_exists(con, "ml", "customer_uplift"):
        return None
    rows = con.execute("select contact_id, uplift from ml.customer_uplift").fetchnumpy()
    if rows["contact_id"].size == 0:
        return None
    out = np.full(len(f), np.nan)
    order = np.argsort(rows["contact_id"])
    known = rows["contact_id"][order]
    at = np.searchsorted(known, f.contact_id)
    hit = (at < known.size) & (known[np.minimum(at, known.size - 1)] == f.contact_id)
    out[hit] = rows["uplift"][order][at[hit]]
    return out


def uplift_for(
    f: Facts,
    rows: np.ndarray,
    measured: Measured | None,
    prior_relative: float,
    model: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(uplift, scope) for customers `rows`: scope 2 = their segment's measured figure, 1 = the
    campaign's overall one, 3 = the validated uplift model's prediction for them, 0 = the prior."""
    p = f.purchase_probability[rows]
    uplift = prior_relative * p
    scope = np.zeros(rows.size, dtype=np.int8)
    if measured is None and model is not None:
        predicted = model[rows]
        hit = np.isfinite(predicted)
        uplift[hit] = predicted[hit]
        scope[hit] = 3
    if measured is None:
        return uplift, scope
    if measured.overall is not None:
        uplift = np.full(rows.size, measured.overall)
        scope[:] = 1
    segment = f.segment_codes[rows]
    for name, value in measured.segments.items():
        if name not in f.segment_names:
            continue
        hit = segment == f.segment_names.index(name)
        uplift[hit] = value
        scope[hit] = 2
    return uplift, scope


def order_values(f: Facts) -> tuple[np.ndarray, np.ndarray, float]:
    """(order value per customer, True where it is their own, the shop's average order)."""
    own = np.isfinite(f.order_value) & (f.order_value > 0)
    if not own.any():
        raise NbaError(
            f"no customer of the scoring run has an order value as of {f.as_of} in "
            "marts.customer_features (its features describe another day): score the published day, "
            f"or publish {f.as_of} first (`clarion transform --as-of {f.as_of}`)"
        )
    shop = float(f.order_value[own].mean())
    return np.where(own, f.order_value, shop), own, shop


def discount(settings: Settings, brief: Brief) -> Discount:
    try:
        return parse_discount(brief.offer.discount)
    except DiscountError as exc:
        path = settings.content.briefs / f"{brief.name}.yaml"
        raise NbaError(
            f"{path}: offer.discount {exc}, so next-best-action cannot weigh its cost; "
            "fix it, or set `active: false` to leave the campaign out"
        ) from None
