"""What each campaign did, measured against its control group (`clarion results`).

Exposures come from ``marts.fct_campaign_exposures`` (one row per campaign and customer: the arm,
the variant, and what followed within ``experiments.attribution_days``). Treated and control
customers are followed the same way, so the difference between the arms is the campaign's effect;
every figure carries an interval at ``experiments.alpha``. The statistics themselves are pure
functions in ``models.experiments``; this module only counts and assembles.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

import duckdb
import numpy as np

from models import experiments as ex

EXPOSURES = "marts.fct_campaign_exposures"
# the smallest arm a per-segment figure is shown for: below it an interval says nothing useful
MIN_SEGMENT_ARM = 30


@dataclass
class Arm:
    """One arm of a campaign: the control group, one variant, or every variant pooled ("all")."""

    campaign: str
    arm: str  # control | treatment
    variant: str  # a variant id, "all" (every variant pooled) or "control"
    customers: int
    delivered: int
    opened: int
    clicked: int
    unsubscribed: int
    bounced: int
    converters: int
    conversions: int
    revenue_eur: float
    contaminated: int = 0
    conversion_rate: float = 0.0
    conversion_low: float = 0.0
    conversion_high: float = 0.0
    # against the control group (treatment arms only)
    uplift: dict[str, float] | None = None
    orders_uplift: dict[str, float] | None = None
    revenue_uplift: dict[str, float] | None = None
    incremental_revenue_eur: float | None = None
    incremental_revenue_low: float | None = None
    incremental_revenue_high: float | None = None
    verdict: str = ""  # winner | retired | running | only variant | control


@dataclass
class CampaignResult:
    campaign: str
    first_exposure: str
    last_exposure: str
    arms: list[Arm]
    srm_p: float | None  # sample-ratio mismatch of control vs treatment against the configured share
    srm_variants_p: float | None  # of the variants against an even split
    experiment: dict[str, Any] = field(default_factory=dict)
    segments: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


COUNTS_SQL = f"""
select campaign_id, arm, coalesce(variant_id, arm) as variant, count(*) as customers,
       count(*) filter (where delivered) as delivered, count(*) filter (where opened) as opened,
       count(*) filter (where clicked) as clicked, count(*) filter (where unsubscribed) as unsubscribed,
       count(*) filter (where bounced) as bounced, count(*) filter (where converted) as converters,
       coalesce(sum(conversions), 0)::bigint as conversions, coalesce(sum(revenue_eur), 0)::double as revenue,
       count(*) filter (where contaminated) as contaminated,
       min(exposed_at)::varchar as first_exposure, max(exposed_at)::varchar as last_exposure
from {EXPOSURES}
where (? is null or campaign_id = ?)
group by all
order by campaign_id, arm, variant
"""


def measure(
    con: duckdb.DuckDBPyConnection,
    campaign: str | None,
    alpha: float,
    holdout_share: float,
    segments: dict[int, str] | None = None,
) -> list[CampaignResult]:
    """Every campaign with exposures (or the one named): counts, rates, uplift against its control
    group, incremental revenue, sample-ratio checks, the variant experiment and per-segment uplift.
    ``segments``: each customer's segment (of the latest scoring run) for the per-segment figures."""
    rows = con.execute(COUNTS_SQL, [campaign, campaign]).fetchall()
    by_campaign: dict[str, list[tuple]] = {}
    for r in rows:
        by_campaign.setdefault(r[0], []).append(r)
    results = []
    for name, groups in by_campaign.items():
        people = con.execute(
            "select arm, coalesce(variant_id, arm) as variant, contact_id, converted, conversions, "
            f"revenue_eur, exposed_at::date as day from {EXPOSURES} where campaign_id = ? "
            "order by exposed_at, contact_id",
            [name],
        ).fetchnumpy()
        results.append(_campaign(name, groups, people, alpha, holdout_share, segments or {}))
    return results


def _arm(row: tuple) -> Arm:
    (campaign, arm, variant, customers, delivered, opened, clicked, unsub, bounced, converters, conversions,
     revenue, contaminated, _, _) = row  # fmt: skip
    return Arm(
        campaign, arm, variant, customers, delivered, opened, clicked, unsub, bounced, converters,
        conversions, revenue, contaminated,
    )  # fmt: skip


def _pooled(campaign: str, arms: list[Arm]) -> Arm:
    total = Arm(campaign, "treatment", "all", *([0] * 10))
    for a in arms:
        for f in ("customers", "delivered", "opened", "clicked", "unsubscribed", "bounced", "converters",
                  "conversions", "revenue_eur", "contaminated"):  # fmt: skip
            setattr(total, f, getattr(total, f) + getattr(a, f))
    return total


def _interval(u: ex.Uplift) -> dict[str, float]:
    return {
        "absolute": float(u.absolute),
        "low": float(u.abs_low),
        "high": float(u.abs_high),
        "relative": float(u.relative),
        "relative_low": float(u.rel_low),
        "relative_high": float(u.rel_high),
    }


def _difference(d: ex.MeanDifference) -> dict[str, float]:
    return {"difference": d.difference, "low": d.low, "high": d.high, "p_value": d.p_value}


def _campaign(
    name: str,
    groups: list[tuple],
    people: dict[str, np.ndarray],
    alpha: float,
    holdout_share: float,
    segments: dict[int, str],
) -> CampaignResult:
    arm_of, variant_of = people["arm"], people["variant"]
    contacts = people["contact_id"]
    converted = people["converted"].astype(bool)
    orders, revenue = people["conversions"].astype(float), people["revenue_eur"].astype(float)
    days = people["day"]
    control = next((_arm(g) for g in groups if g[1] == "control"), None)
    variants = [_arm(g) for g in groups if g[1] == "treatment"]
    notes: list[str] = []
    arms = ([control] if control else []) + variants
    if len(variants) > 1:
        arms.append(_pooled(name, variants))
    for a in arms:
        low, high = ex.proportion_interval(a.converters, a.customers, alpha)
        a.conversion_rate = a.converters / a.customers if a.customers else 0.0
        a.conversion_low, a.conversion_high = float(low), float(high)
    in_control = arm_of == "control"
    if control is None or control.customers < 2:
        notes.append(
            "no control group: conversions are counted, but the campaign's effect cannot be measured"
        )
    else:
        control.verdict = "control"
        for a in arms:
            if a.arm != "treatment":
                continue
            a.uplift = _interval(
                ex.uplift(a.converters, a.customers, control.converters, control.customers, alpha)
            )
            mask = (arm_of == "treatment") & ((variant_of == a.variant) if a.variant != "all" else True)
            if mask.sum() >= 2:
                a.orders_uplift = _difference(ex.mean_difference(orders[mask], orders[in_control], alpha))
                rev = ex.mean_difference(revenue[mask], revenue[in_control], alpha)
                a.revenue_uplift = _difference(rev)
                a.incremental_revenue_eur = rev.difference * a.customers
                a.incremental_revenue_low = rev.low * a.customers
                a.incremental_revenue_high = rev.high * a.customers
        if control.contaminated:
            notes.append(
                f"{control.contaminated:,} control customer(s) were also sent this campaign: the holdout "
                "leaked, so the measured uplift understates the effect; check the send list against the "
                "holdout (`clarion results` counts them as control, as assigned)"
            )
    treated = sum(v.customers for v in variants)
    srm_p = None
    if control is not None and holdout_share > 0 and treated:
        srm_p = float(ex.srm([treated, control.customers], [1 - holdout_share, holdout_share]))
        if srm_p < ex.SRM_ALPHA:
            notes.append(
                f"sample-ratio mismatch (p = {srm_p:.2g}): {control.customers:,} control vs {treated:,} "
                f"treated, planned {holdout_share:.0%} held out; the uplift is not to be trusted until the "
                "assignment or the tracking of sends is explained"
            )
    srm_variants_p = None
    if len(variants) > 1:
        srm_variants_p = float(ex.srm([v.customers for v in variants], [1.0] * len(variants)))
        if srm_variants_p < ex.SRM_ALPHA:
            notes.append(
                f"variants are not evenly split (p = {srm_variants_p:.2g}): check how the sends were split"
            )
    experiment = _experiment(variants, variant_of, arm_of, converted, days, alpha)
    first = min(g[13] for g in groups)
    last = max(g[14] for g in groups)
    return CampaignResult(
        name,
        first,
        last,
        arms,
        srm_p,
        srm_variants_p,
        experiment,
        _segments(contacts, arm_of, converted, segments, alpha) if control is not None else [],
        notes,
    )


def _experiment(
    variants: list[Arm],
    variant_of: np.ndarray,
    arm_of: np.ndarray,
    converted: np.ndarray,
    days: np.ndarray,
    alpha: float,
) -> dict[str, Any]:
    """The variants against the leader: an always-valid test per challenger, with one look per day of
    exposures (cumulative counts), so reading the result every day keeps the error rate at alpha."""
    if len(variants) < 2:
        for v in variants:
            v.verdict = "only variant"
        return {}
    names = [v.variant for v in variants]
    best = ex.prob_best([v.converters for v in variants], [v.customers for v in variants], seed=0)
    leader = variants[int(np.argmax([v.conversion_rate for v in variants]))]
    looks = np.unique(days)
    treated = arm_of == "treatment"

    ends = np.searchsorted(days, looks, side="right") - 1  # days are sorted: the last row of each look

    def cumulative(variant: str) -> tuple[np.ndarray, np.ndarray]:
        mask = treated & (variant_of == variant)
        return np.cumsum(mask & converted)[ends], np.cumsum(mask)[ends]

    xl, nl = cumulative(leader.variant)
    tests = {}
    for v in variants:
        if v is leader:
            continue
        xv, nv = cumulative(v.variant)
        t = ex.sequential_test(xl, nl, xv, nv, alpha=alpha)
        tests[v.variant] = {
            "difference": float(t.difference),
            "low": float(t.low),
            "high": float(t.high),
            "p_value": float(t.p_value),
            "looks": t.looks,
        }
        v.verdict = "retired" if t.significant else "running"
    leader.verdict = (
        "winner" if all(v.verdict == "retired" for v in variants if v is not leader) else "leading"
    )
    return {
        "method": "always-valid mSPRT (normal mixture), leader vs each challenger, one look per exposure day",
        "rule": ex.DECISION_RULE,
        "alpha": alpha,
        "leader": leader.variant,
        "prob_best": dict(zip(names, (float(b) for b in best), strict=True)),
        "tests": tests,
    }


def _segments(
    contacts: np.ndarray,
    arm_of: np.ndarray,
    converted: np.ndarray,
    segments: dict[int, str],
    alpha: float,
) -> list[dict[str, Any]]:
    """Uplift of every variant pooled, per segment of the latest scoring run, where both arms hold at
    least MIN_SEGMENT_ARM customers."""
    if not segments:
        return []
    seg = np.array([segments.get(int(c), "unscored") for c in contacts], dtype=object)
    out = []
    for name in sorted(set(seg)):
        in_seg = seg == name
        t, c = in_seg & (arm_of == "treatment"), in_seg & (arm_of == "control")
        nt, nc = int(t.sum()), int(c.sum())
        if min(nt, nc) < MIN_SEGMENT_ARM:
            continue
        u = ex.uplift(int((converted & t).sum()), nt, int((converted & c).sum()), nc, alpha)
        out.append({"segment": name, "treated": nt, "control": nc, **_interval(u)})
    return out


def as_of_label(day: date | None) -> str:
    return day.isoformat() if day else ""
