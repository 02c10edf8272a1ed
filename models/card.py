"""The model card: what the model is for, what it learnt from, how well it does, for whom, and its
limits. Markdown for people, JSON for tools, and an SVG calibration plot; no customer appears in it."""

from __future__ import annotations

import json
from typing import Any

from models.fairness import card_section as fairness_section


def calibration_svg(points: list[dict[str, Any]], size: int = 320) -> str:
    """Predicted (x) against observed (y) purchase rate per probability bin; the diagonal is perfect."""
    pad = 40
    span = size - 2 * pad

    def xy(pt: dict[str, Any]) -> str:
        return f"{pad + pt['predicted'] * span:.1f},{size - pad - pt['observed'] * span:.1f}"

    dots = []
    for pt in points:
        x, y = xy(pt).split(",")
        tip = f"{pt['bin']}: {pt['customers']} customers, predicted {pt['predicted']:.3f}, observed {pt['observed']:.3f}"
        radius = 3 + min(6, pt["customers"] ** 0.25)
        dots.append(
            f'<circle cx="{x}" cy="{y}" r="{radius:.1f}" fill="#1f6feb" fill-opacity="0.7"><title>{tip}</title></circle>'
        )
    line = " ".join(xy(pt) for pt in points)
    mid = size / 2
    return "".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" font-family="sans-serif" ',
            'font-size="11">',
            f'<rect x="{pad}" y="{pad}" width="{span}" height="{span}" fill="none" stroke="#999"/>',
            f'<line x1="{pad}" y1="{size - pad}" x2="{size - pad}" y2="{pad}" stroke="#bbb" stroke-dasharray="4"/>',
            f'<polyline points="{line}" fill="none" stroke="#1f6feb"/>',
            *dots,
            f'<text x="{mid}" y="{size - 8}" text-anchor="middle">predicted purchase probability</text>',
            f'<text x="12" y="{mid}" transform="rotate(-90 12 {mid})" text-anchor="middle">observed rate</text>',
            "</svg>\n",
        ]
    )


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:,.0f}"
    return str(v)


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0%}"


def oversight_section(figures: dict[str, Any] | None) -> str:
    """'Human oversight': how often people overrode drafts written for the segments of earlier
    model versions, and policy approvals, when this version was registered (its own figures follow
    in `clarion oversight` once content is drafted for its segments). Counts only."""
    head = "## Human oversight\n\n"
    if not figures or not figures.get("totals", {}).get("drafts"):
        return head + "No drafts had been reviewed when this version was registered.\n"
    t, a = figures["totals"], figures["automated"]
    lines = [
        f"Drafts reviewed by a person: {t['reviewed']} of {t['drafts']}; edited or rejected: {t['overridden']} "
        f"(override rate {_pct(t['override_rate'])}"
        + (f", trend {figures['direction']}" if figures.get("direction") else "")
        + f"). Drafts approved by the low-risk policy: {a['policy_approvals']}, overridden by a person: "
        f"{a['overridden']} ({_pct(a['override_rate'])}).",
        "",
        "| scoring model version | drafts | reviewed | edited | rejected | override rate |",
        "|---|---|---|---|---|---|",
        *(
            f"| {r['model_version']} | {r['drafts']} | {r['reviewed']} | {r['edited']} | {r['rejected']} "
            f"| {_pct(r['override_rate'])} |"
            for r in figures.get("by_scoring_model", [])
        ),
        "",
        "Last content runs (oldest first): "
        + ", ".join(f"{r['run_id']} {_pct(r['override_rate'])}" for r in figures.get("trend", []))
        + ".",
    ]
    return head + "\n".join(lines) + "\n"


METRICS = ("roc_auc", "pr_auc", "brier", "ece", "lift_top10", "capture_top10", "lift_top20", "capture_top20")


def render(meta: dict[str, Any]) -> dict[str, str]:
    """card.md, card.json and calibration.svg for one version's meta."""
    m = meta["metrics"]
    prop, base = m["propensity"], m["baseline"]
    clv = m.get("customer_base")
    rows = [
        "| metric | model | recency/frequency baseline | BG/NBD alone |",
        "|---|---:|---:|---:|",
        *(f"| {k} | {_fmt(prop[k])} | {_fmt(base[k])} | {_fmt((clv or {}).get(k))} |" for k in METRICS),
    ]
    rel = [
        "| bin | customers | predicted | observed |",
        "|---|---:|---:|---:|",
        *(
            f"| {r['bin']} | {r['customers']:,} | {r['predicted']:.3f} | {r['observed']:.3f} |"
            for r in m["reliability"]
        ),
    ]
    drivers = [
        "| feature | family | mean abs SHAP (log-odds) | mean SHAP |",
        "|---|---|---:|---:|",
        *(
            f"| {d['feature']} | {d['family']} | {d['mean_abs_shap']:.4f} | {d['mean_shap']:+.4f} |"
            for d in meta["global_drivers"][:12]
        ),
    ]
    dep = []
    for feature, bins in meta.get("dependence", {}).items():
        dep.append(
            f"**{feature}**: "
            + "; ".join(
                ("missing" if b["from"] is None else f"{b['from']:.3g}-{b['to']:.3g}")
                + f" -> {b['mean_shap']:+.3f}"
                for b in bins
            )
        )
    fair = meta.get("fairness") or []
    data = meta["data"]
    value = m["value"]
    cal = m["calibration"]
    stop = cal.get("early_stopping") or {}
    trees = cal.get("trees", meta["params"]["trees"])
    stopping = (
        f"early stopping kept {trees} of at most {meta['params']['trees']} trees (on {stop.get('rows', 0):,} "
        "held-out customers of the newest day)"
        if stop.get("used")
        else f"{trees} trees ({stop.get('why', 'no early stopping')})"
    )
    days = data.get("production_days") or [data.get("valid_as_of")]
    fit_days = data.get("validation_fit_days") or [data.get("train_as_of")]
    dropped = data.get("days_dropped_for_coverage") or []
    coverage = (
        f" {len(dropped)} further day(s) were left out because an event history does not reach back "
        f"far enough for their windows (history since: {data.get('history_since')})."
        if dropped
        else ""
    )
    md = f"""# Model card: purchase propensity ({meta["version"]})

**Intended use.** Rank and segment existing customers by how likely they are to buy in the
{meta["horizon_days"]} days after the scoring day, explain each score with reason codes, and
choose whom to address with consented marketing. Churn risk is 1 - purchase probability. Expected
value is a second model's estimate of spend (EUR) in the same horizon.
**Not for** credit, pricing, employment, or any decision about a person beyond which marketing
message to offer; not for customers without purchase history beyond the "new" segment.

**Model.** LightGBM gradient-boosted trees (at most {meta["params"]["trees"]} trees, {meta["params"]["leaves"]}
leaves, depth {meta["params"]["max_depth"]}) on {len(meta["features"])} features of
`marts.customer_features` plus a BG/NBD and Gamma-Gamma fit per snapshot day (the lifecycle family;
{len(meta["used_features"])} features used by the trees); {stopping}. Probabilities calibrated with
{cal["method"]} on the margin and the shop's season ({cal.get("chosen_by", "")}). Trained {meta["registered_at"]}.

**Data.** Stacked snapshots: customers as of {len(days)} days from {days[-1]} to {days[0]}, every
{data.get("snapshot_every_days", "-")} days, each with the purchases of its own complete horizon
({data.get("production_rows", 0):,} customer-days; {data.get("sample_per_mille", 1000) / 10:g}% of each
day's customers, sampled by a hash of the id).{coverage} The out-of-time validation fits the same
recipe on {len(fit_days)} days up to {fit_days[0]} ({data.get("train_rows", data.get("train_customers", 0)):,}
customer-days) and measures on the customers as of {data["valid_as_of"]} ({data["valid_customers"]:,}), with
purchases up to {data["scoring_as_of"]}. Source fingerprint `{data["fingerprint"]}` (extracted files'
sha256 and raw row counts), config fingerprint `{data["config_fingerprint"]}`.

## Out-of-time validation

The model, a recency/frequency logistic regression, and the BG/NBD model's own probability of a
purchase in the horizon, on the same customers. Ranking figures (ROC AUC, PR AUC, lift, capture)
on the model's raw margin; calibration (Brier, ECE) on its probabilities.

{chr(10).join(rows)}

Value model: mean absolute error EUR {value["mae"]:.2f} per customer; predicted total EUR
{value["total_predicted"]:,.0f} against EUR {value["total_actual"]:,.0f} spent; the top 10% by
predicted value made {value["spend_capture_top10"]:.0%} of the spend.

## Calibration

Out of time (validation day, the plot and table below): ECE {prop["ece"]:.4f}, mean predicted
{prop.get("mean_predicted", float("nan")):.3f} against an observed purchase rate of {data["valid_positive_rate"]:.3f}
(training days: {data["train_positive_rate"]:.3f}). In time (customers held out of the production fit,
every day, cross-fitted): ECE {cal.get("holdout_ece", float("nan")):.4f} over
{cal.get("holdout_rows", cal.get("holdout_customers", 0)):,} customer-days; season coefficient
{cal.get("season_coefficient", 0.0):+.3f}.

![calibration](calibration.svg)

{chr(10).join(rel)}

## Global drivers

{chr(10).join(drivers)}

How the strongest drivers move the score (feature range -> mean SHAP, log-odds of buying):

{chr(10).join("- " + d for d in dep)}

{fairness_section(fair)}

{oversight_section(meta.get("oversight"))}

## Limitations

- Trained on one business's history; a change in assortment, prices or e-mail cadence moves the
  drivers. The marts gate watches feature drift; a version older than segment.max_model_age_days
  is retrained, and `clarion segment --retrain` retrains at any time.
- Customers with little history (the "new" segment) are scored from tenure and first orders only.
- Reason codes explain this model's scores, not the causes of a customer's behaviour.
- Calibration holds on average per probability bin (ECE {prop["ece"]:.4f}); single probabilities are
  estimates.
"""
    card = {
        k: meta[k]
        for k in ("version", "model", "horizon_days", "features", "used_features", "params", "data")
    }
    card.update(
        {
            "metrics": m,
            "global_drivers": meta["global_drivers"],
            "fairness": fair,
            "customer_base": meta.get("customer_base", {}),
            "oversight": meta.get("oversight", {}),
        }
    )
    return {
        "card.md": md,
        "card.json": json.dumps(card, indent=2, default=str),
        "calibration.svg": calibration_svg(m["reliability"]),
    }
