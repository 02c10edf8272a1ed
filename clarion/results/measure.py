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


# One row per campaign, arm and variant: the counts, and the moments (count, mean, sample variance)
# of orders and revenue per customer that Welch's interval reads.
COUNTS_SQL = f"""
select campaign_id, arm, coalesce(variant_id, arm) as variant, count(*) as customers,
       count(*) filter (where delivered) as delivered, count(*) filter (where opened) as opened,
       count(*) filter (where clicked) as clicked, count(*) filter (where unsubscribed) as unsubscribed,
       count(*) filter (where bounced) as bounced, count(*) filter (where converted) as converters,
       coalesce(sum(conversions), 0)::bigint as conversions, coalesce(sum(revenue_eur), 0)::double as revenue,
       count(*) filter (where contaminated) as contaminated,
       min(exposed_at)::varchar as first_exposure, max(exposed_at)::varchar as last_exposure,
       avg(conversions::double) as orders_mean, var_samp(conversions::double) as orders_variance,
       avg(revenue_eur::double) as revenue_mean, var_samp(revenue_eur::double) as revenue_variance
from {EXPOSURES}
where (? is null or campaign_id = ?)
group by all
order by campaign_id, arm, variant
"""
# One row per campaign, exposure day and variant (the control group's days are looks too).
DAYS_SQL = f"""
select campaign_id, exposed_at::date as day, arm, coalesce(variant_id, arm) as variant,
       count(*) as customers, count(*) filter (where converted) as converters
from {EXPOSURES}
where (? is null or campaign_id = ?)
group by all
order by campaign_id, day
"""
# One row per campaign, segment (of the scoring run; "unscored" for customers it did not score) and arm.
SEGMENTS_SQL = f"""
select e.campaign_id, coalesce(s.segment, 'unscored') as segment, e.arm,
       count(*) as customers, count(*) filter (where e.converted) as converters
from {EXPOSURES} as e
left join (select contact_id, segment from ml.customer_scores where run_id = ?) as s
    on s.contact_id = e.contact_id
where (? is null or e.campaign_id = ?)
group by all
"""


def measure(
    con: duckdb.DuckDBPyConnection,
    campaign: str | None,
    alpha: float,
    holdout_share: float,
    scoring_run: str | None = None,
) -> list[CampaignResult]:
    """Every campaign with exposures (or the one named): counts, rates, uplift against its control
    group, incremental revenue, sample-ratio checks, the variant experiment and per-segment uplift
    (by each customer's segment in ``scoring_run``, the latest scoring run; none without one).

    Three grouped queries read the exposures (per arm and variant, per exposure day, per segment),
    whatever the number of campaigns: no customer's row leaves the warehouse."""
    rows = con.execute(COUNTS_SQL, [campaign, campaign]).fetchall()
    by_campaign: dict[str, list[tuple]] = {}
    for r in rows:
        by_campaign.setdefault(r[0], []).append(r)
    days: dict[str, list[tuple]] = {}
    for r in con.execute(DAYS_SQL, [campaign, campaign]).fetchall():
        days.setdefault(r[0], []).append(r[1:])
    segments: dict[str, list[tuple]] = {}
    if scoring_run is not None:
        for r in con.execute(SEGMENTS_SQL, [scoring_run, campaign, campaign]).fetchall():
            segments.setdefault(r[0], []).append(r[1:])
    return [
        _campaign(
            name, groups, days[name], segments.get(name, []) if scoring_run else None, alpha, holdout_share
        )
        for name, groups in by_campaign.items()
    ]


def _arm(row: tuple) -> Arm:
    (campaign, arm, variant, customers, delivered, opened, clicked, unsub, bounced, converters, conversions,
     revenue, contaminated) = row[:13]  # fmt: skip
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


def _moments(row: tuple) -> tuple[ex.Moments, ex.Moments]:
    """An arm's (orders, revenue) moments per customer, from its COUNTS_SQL row."""
    n = int(row[3])
    orders_mean, orders_var, revenue_mean, revenue_var = row[15:19]
    return (
        ex.Moments(n, float(orders_mean), float(orders_var or 0.0)),  # var_samp of one row: null
        ex.Moments(n, float(revenue_mean), float(revenue_var or 0.0)),
    )


def _pooled_moments(parts: list[ex.Moments]) -> ex.Moments:
    """The moments of several arms' customers together (Chan et al.'s parallel update): the same
    count, mean and sample variance as computed over the pooled customers."""
    n = sum(p.n for p in parts)
    mean = sum(p.n * p.mean for p in parts) / n
    m2 = sum((p.n - 1) * p.variance + p.n * (p.mean - mean) ** 2 for p in parts)
    return ex.Moments(n, mean, m2 / (n - 1) if n > 1 else 0.0)


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
    days: list[tuple],
    segments: list[tuple] | None,
    alpha: float,
    holdout_share: float,
) -> CampaignResult:
    """One campaign from its grouped rows: ``groups`` (COUNTS_SQL), ``days`` (DAYS_SQL, without the
    campaign) and ``segments`` (SEGMENTS_SQL, without the campaign; None without a scoring run)."""
    control_row = next((g for g in groups if g[1] == "control"), None)
    control = _arm(control_row) if control_row else None
    variant_rows = [g for g in groups if g[1] == "treatment"]
    variants = [_arm(g) for g in variant_rows]
    moments = {g[2]: _moments(g) for g in variant_rows}
    notes: list[str] = []
    arms = ([control] if control else []) + variants
    if len(variants) > 1:
        arms.append(_pooled(name, variants))
        orders, revenue = zip(*moments.values(), strict=True)
        moments["all"] = (_pooled_moments(list(orders)), _pooled_moments(list(revenue)))
    for a in arms:
        low, high = ex.proportion_interval(a.converters, a.customers, alpha)
        a.conversion_rate = a.converters / a.customers if a.customers else 0.0
        a.conversion_low, a.conversion_high = float(low), float(high)
    if control is None or control.customers < 2:
        notes.append(
            "no control group: conversions are counted, but the campaign's effect cannot be measured"
        )
    else:
        control.verdict = "control"
        held_orders, held_revenue = _moments(control_row)
        for a in arms:
            if a.arm != "treatment":
                continue
            a.uplift = _interval(
                ex.uplift(a.converters, a.customers, control.converters, control.customers, alpha)
            )
            if a.customers >= 2:
                orders_t, revenue_t = moments[a.variant]
                a.orders_uplift = _difference(ex.welch(orders_t, held_orders, alpha))
                rev = ex.welch(revenue_t, held_revenue, alpha)
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
    experiment = _experiment(variants, days, alpha)
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
        _segments(segments, alpha) if control is not None and segments else [],
        notes,
    )


def _experiment(variants: list[Arm], days: list[tuple], alpha: float) -> dict[str, Any]:
    """The variants against the leader: an always-valid test per challenger, with one look per day of
    exposures (cumulative counts), so reading the result every day keeps the error rate at alpha.
    ``days``: (day, arm, variant, customers, converters) rows; every arm's days are looks."""
    if len(variants) < 2:
        for v in variants:
            v.verdict = "only variant"
        return {}
    names = [v.variant for v in variants]
    best = ex.prob_best([v.converters for v in variants], [v.customers for v in variants], seed=0)
    leader = variants[int(np.argmax([v.conversion_rate for v in variants]))]
    looks = sorted({d[0] for d in days})
    look_of = {day: i for i, day in enumerate(looks)}

    def cumulative(variant: str) -> tuple[np.ndarray, np.ndarray]:
        converters, customers = np.zeros(len(looks), np.int64), np.zeros(len(looks), np.int64)
        for day, arm, v, n, x in days:
            if arm == "treatment" and v == variant:
                customers[look_of[day]] += n
                converters[look_of[day]] += x
        return np.cumsum(converters), np.cumsum(customers)

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


def _segments(rows: list[tuple], alpha: float) -> list[dict[str, Any]]:
    """Uplift of every variant pooled, per segment of the latest scoring run, where both arms hold at
    least MIN_SEGMENT_ARM customers. ``rows``: (segment, arm, customers, converters)."""
    counts: dict[str, dict[str, tuple[int, int]]] = {}
    for segment, arm, n, x in rows:
        counts.setdefault(segment, {})[arm] = (int(n), int(x))
    out = []
    for name in sorted(counts):
        (nt, xt), (nc, xc) = counts[name].get("treatment", (0, 0)), counts[name].get("control", (0, 0))
        if min(nt, nc) < MIN_SEGMENT_ARM:
            continue
        u = ex.uplift(xt, nt, xc, nc, alpha)
        out.append({"segment": name, "treated": nt, "control": nc, **_interval(u)})
    return out


def as_of_label(day: date | None) -> str:
    return day.isoformat() if day else ""
