"""`clarion results` as text: one block per campaign, the arms as a table, then the experiment."""

from __future__ import annotations

from typing import Any


def _pct(x: float | None) -> str:
    return "-" if x is None or x != x else f"{100 * x:.1f}%"


def _pts(x: float) -> str:
    return "-" if x != x else f"{100 * x:+.1f}"


def _eur(x: float | None) -> str:
    return "-" if x is None or x != x else f"{x:+,.0f}"


def measured(campaign: dict[str, Any]) -> bool:
    """A campaign with something to compare: a control group, or more than one variant."""
    arms = campaign["arms"]
    return any(a["arm"] == "control" for a in arms) or sum(a["arm"] == "treatment" for a in arms) > 1


def results_text(summary: dict[str, Any], every: bool = False) -> str:
    """The measured campaigns (``every``: each campaign), then how many were left out."""
    if not summary["campaigns"]:
        return "no campaign has sends or a control group on record yet"
    campaigns = [c for c in summary["campaigns"] if every or measured(c)]
    left_out = len(summary["campaigns"]) - len(campaigns)
    level = f"{1 - summary['alpha']:.0%}"
    lines: list[str] = []
    for c in campaigns:
        days = f"{c['first_exposure'][:10]} .. {c['last_exposure'][:10]}"
        lines.append(f"{c['campaign']}  exposed {days}  ({level} intervals)")
        header = (
            f"  {'variant':<9}{'customers':>10}{'delivered':>10}{'opened':>8}{'clicked':>8}{'unsub':>7}"
            f"{'converted':>10}  {'rate [' + level + ' CI]':<24}{'uplift, pts [CI]':<22}"
            f"{'incr. revenue EUR [CI]':<28}verdict"
        )
        lines.append(header)
        for a in c["arms"]:
            rate = f"{_pct(a['conversion_rate'])} [{_pct(a['conversion_low'])}, {_pct(a['conversion_high'])}]"
            u = a.get("uplift")
            uplift = f"{_pts(u['absolute'])} [{_pts(u['low'])}, {_pts(u['high'])}]" if u else ""
            inc = a.get("incremental_revenue_eur")
            revenue = (
                f"{_eur(inc)} [{_eur(a['incremental_revenue_low'])}, {_eur(a['incremental_revenue_high'])}]"
                if inc is not None
                else ""
            )
            counts = (
                f"{a['customers']:>10,}{a['delivered']:>10,}{a['opened']:>8,}{a['clicked']:>8,}"
                f"{a['unsubscribed']:>7,}{a['converters']:>10,}"
            )
            lines.append(f"  {a['variant']:<9}{counts}  {rate:<24}{uplift:<22}{revenue:<28}{a['verdict']}")
        e = c.get("experiment") or {}
        if e:
            tests = ", ".join(
                f"{v} vs {e['leader']}: {_pts(-t['difference'])} pts, always-valid p = {t['p_value']:.3g}"
                for v, t in e["tests"].items()
            )
            best = ", ".join(f"{v} {p:.2f}" for v, p in e["prob_best"].items())
            lines.append(f"  experiment: leader {e['leader']}; {tests}; P(best) {best}")
            lines.append(f"  rule: {e['rule']}")
        if c["srm_p"] is not None:
            lines.append(f"  sample ratio (control vs treated, planned share): p = {c['srm_p']:.3g}")
        if c["segments"]:
            segs = "; ".join(
                f"{s['segment']} {_pts(s['absolute'])} pts [{_pts(s['low'])}, {_pts(s['high'])}] "
                f"(n {s['treated']:,}/{s['control']:,})"
                for s in c["segments"]
            )
            lines.append(f"  uplift by segment: {segs}")
        lines.extend(f"  note: {n}" for n in c["notes"])
        lines.append("")
    if left_out:
        lines.append(
            f"{left_out:,} other campaign(s) had no control group and one variant: sends and conversions "
            "are counted, but their effect cannot be measured (`clarion results --all` lists them)"
        )
    lines.append(f"results run {summary['results_run_id']}: ml.campaign_results, ml.campaign_uplift")
    return "\n".join(lines)


def stage_text(s: dict[str, Any]) -> str:
    """The results stage in `clarion run`'s summary."""
    lines = [
        f"results    {s['with_control']:,} campaign(s) measured against a control group "
        f"({s['campaigns'] - s['with_control']:,} more without one); {s['experiments']:,} variant "
        f"experiment(s): {s['decided']:,} decided, {s['retired']:,} variant(s) retired"
    ]
    latest = s.get("latest")
    if latest and latest.get("uplift"):
        u = latest["uplift"]
        lead = f", leader {latest['leader']}" if latest.get("leader") else ""
        lines.append(
            f"  latest   {latest['campaign']}: {_pts(u['absolute'])} pts "
            f"[{_pts(u['low'])}, {_pts(u['high'])}] against its control group{lead}"
        )
    model = s.get("uplift_model") or {}
    if model.get("status"):
        lines.append(f"  uplift model: {model['status']}: {model['reason']}")
    lines.append("  every campaign's figures: clarion results")
    return "\n".join(lines)
