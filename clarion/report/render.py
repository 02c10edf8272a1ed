"""The report as one self-contained HTML file (inline CSS, charts as inline SVG from `charts`, no
scripts, no external resources) and the short e-mail versions; `pdf` prints the HTML to PDF.

Every text that comes from data is escaped; nothing here reads the warehouse.
"""

from __future__ import annotations

from typing import Any

from clarion.report import content_quality, insights
from clarion.report.activity import content_html, quality_html, results_html
from clarion.report.charts import _heat, calibration, hbars, histogram
from clarion.report.fairness import html as fairness_html
from clarion.report.fmt import (
    BLUE,
    SEGMENT_COLOURS,
    _median,
    e,
    eur,
    label,
    n,
    num,
    pct,
    signed,
)
from clarion.report.oversight import html as oversight_html
from clarion.report.pdf import pdf

__all__ = ["email_html", "eur", "html", "label", "pdf", "text"]

CSS = """
@page { size: A4; margin: 14mm 12mm 16mm 12mm;
        @bottom-right { content: "page " counter(page) " of " counter(pages); font-size: 8pt; color: #6e7781;
                        font-family: "DejaVu Sans", Arial, sans-serif; }
        @bottom-left { content: "Clarion segment report: aggregates only, no customer data"; font-size: 8pt;
                       color: #6e7781; font-family: "DejaVu Sans", Arial, sans-serif; } }
@media screen { body { max-width: 1000px; margin: 0 auto; padding: 16px; } }
@media print { body { font-size: 9.5pt; } }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; color: #1f2328; font-size: 10.5pt;
       line-height: 1.4; }
h1 { font-size: 20pt; margin: 0 0 4px 0; }
h2 { font-size: 14pt; border-bottom: 2px solid #d0d7de; padding-bottom: 3px; margin: 26px 0 10px 0;
     break-after: avoid; }
h3 { font-size: 11.5pt; margin: 14px 0 6px 0; break-after: avoid; }
p.sub, .muted { color: #57606a; }
.note { background: #f6f8fa; border-left: 4px solid #d0d7de; padding: 6px 10px; margin: 8px 0; }
.cards { margin: 12px 0; }
.card { display: inline-block; vertical-align: top; width: 23.5%; min-width: 150px; margin: 0 1% 8px 0;
        border: 1px solid #d0d7de; border-radius: 6px; padding: 8px 10px; break-inside: avoid; }
.card .label { font-size: 8.5pt; color: #57606a; text-transform: uppercase; letter-spacing: .03em; }
.card .value { font-size: 15pt; font-weight: bold; white-space: nowrap; }
.card .delta { font-size: 9pt; color: #57606a; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 10px 0; font-size: 9pt; }
table.layout, table.layout > tbody > tr > td { border: none; padding: 0 8px 0 0; margin: 0; }
.small { font-size: 8.5pt; color: #57606a; }
th, td { border-bottom: 1px solid #d8dee4; padding: 4px 6px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.heat td { text-align: center; border: 1px solid #fff; }
table.heat th { text-align: center; font-size: 8.5pt; }
.swatch { display: inline-block; width: 9px; height: 9px; border-radius: 2px; margin-right: 5px; }
.chart { margin: 4px 0 10px 0; }
.pair { width: 100%; }
.pair > div { display: inline-block; vertical-align: top; width: 49%; }
.segment { border: 1px solid #d0d7de; border-radius: 6px; padding: 4px 10px; margin: 8px 0;
           break-inside: avoid; }
.segment ul { margin: 2px 0 4px 0; padding-left: 18px; }
.segment p { margin: 4px 0; }
.draft { border-top: 1px solid #d0d7de; padding: 5px 0 3px 0; break-inside: avoid; }
.copy { white-space: pre-wrap; font-size: 8.5pt; background: #f6f8fa; padding: 3px 6px; border-radius: 4px;
        margin: 2px 0; }
.part { font-size: 8pt; color: #57606a; }
.keep { break-inside: avoid; }
td.arrow { white-space: nowrap; font-size: 8pt; color: #57606a; }
table.profile td, table.profile th { padding: 2px 5px; }
.badge { display: inline-block; border-radius: 10px; padding: 0 7px; font-size: 8.5pt; margin: 1px 2px 1px 0;
         border: 1px solid #d0d7de; }
.ok { background: #dafbe1; border-color: #aceebb; }
.warn { background: #fff8c5; border-color: #eed888; }
.bad { background: #ffebe9; border-color: #ffcecb; }
.status-approved { background: #dafbe1; } .status-pending { background: #fff8c5; }
.status-blocked, .status-rejected { background: #ffebe9; }
footer { margin-top: 30px; font-size: 8.5pt; color: #57606a; border-top: 1px solid #d0d7de;
         padding-top: 6px; }
"""


# -- sections -------------------------------------------------------------------------------------
def _headline(d: dict[str, Any]) -> str:
    h, c = d["headline"], d.get("change") or {}
    horizon = d["run"].get("horizon_days") or "?"
    cards = [
        ("customers scored", n(h["customers"]), signed(c.get("customers")) if c else ""),
        (
            f"at risk (churn risk \u2265 {d['thresholds']['risk_high']:g})",
            pct(h["at_risk_share"]),
            (signed(c.get("at_risk_share"), "pp") + f" \u00b7 {n(h['at_risk_customers'])} customers")
            if c
            else f"{n(h['at_risk_customers'])} customers",
        ),
        (
            f"expected value, next {horizon} days",
            eur(h["expected_value_eur"], d.get("currency")),
            signed(c.get("expected_value_eur"), "eur", d.get("currency")) if c else "",
        ),
        (
            "mean purchase probability",
            num(h["mean_purchase_probability"], 2),
            signed(c.get("mean_purchase_probability"), "prob") if c else "",
        ),
    ]
    since = (
        f"Changes are against the previous scoring run {e(d['previous_run']['run_id'])} "
        f"(as of {e(d['previous_run']['as_of'])}, model {e(d['previous_run']['model_version'])})."
        if d.get("previous_run")
        else "This is the first scoring run: no changes to show yet."
    )
    model_note = (
        " The model changed between the two runs, so part of any change comes from the model."
        if c.get("model_changed")
        else ""
    )
    return (
        '<section id="headline"><div class="cards">'
        + "".join(
            f'<div class="card"><div class="label">{e(lab)}</div><div class="value">{e(val)}</div>'
            f'<div class="delta">{e(delta)}</div></div>'
            for lab, val, delta in cards
        )
        + f'</div><p class="muted">{since}{model_note}</p></section>'
    )


def segment_chart(segments: list[dict[str, Any]]) -> str:
    """Customers per segment as horizontal bars (the report's and the web app's)."""
    return hbars(
        [
            (
                label(s["segment"]),
                s["customers"],
                f"{n(s['customers'])} ({pct(s['share'])})",
                SEGMENT_COLOURS.get(s["segment"], BLUE),
            )
            for s in segments
        ],
        "customers per segment",
    )


def _segments(d: dict[str, Any]) -> str:
    segs = d["segments"]
    bars = segment_chart(segs)
    has_prev = d.get("previous_run") is not None
    rows = []
    for s in segs:
        change = f'<td class="num">{e(signed(s["change"]))}</td>' if has_prev else ""
        rows.append(
            f'<tr data-segment="{e(s["segment"])}" data-customers="{s["customers"]}">'
            f'<td><span class="swatch" style="background:{SEGMENT_COLOURS.get(s["segment"], BLUE)}"></span>'
            f"<b>{e(label(s['segment']))}</b><br><span class='small'>{e(s['description'])}</span></td>"
            f'<td class="num">{n(s["customers"])}</td><td class="num">{pct(s["share"])}</td>{change}'
            f'<td class="num">{num(s["mean_churn_risk"], 2)}</td>'
            f'<td class="num">{eur(s["mean_expected_value_eur"], d.get("currency"))}</td>'
            f'<td class="num">{eur(s["expected_value_eur"], d.get("currency"))}</td></tr>'
        )
    change_head = '<th class="num">change</th>' if has_prev else ""
    return (
        '<section id="segments"><h2>Segments</h2>'
        f'<div class="chart">{bars}</div>'
        '<table class="segments"><thead><tr><th>segment</th><th class="num">customers</th>'
        f'<th class="num">share</th>{change_head}<th class="num">mean churn risk</th>'
        '<th class="num">mean expected value</th><th class="num">expected value, all</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _movement(d: dict[str, Any]) -> str:
    mv = d.get("movement")
    if not mv:
        return (
            '<section id="movement"><h2>Movement between segments</h2>'
            '<p class="note">No earlier scoring run to compare with.</p></section>'
        )
    axis, matrix = mv["segments"], mv["matrix"]
    peak = max((v for row in matrix for v in row), default=0)
    head = "".join(f"<th>{e(label(s))}</th>" for s in axis)
    rows = []
    for a, row in zip(axis, matrix, strict=True):
        cells = "".join(
            f'<td style="{_heat(v, peak, (26, 127, 55) if a == b else (207, 34, 46))}" '
            f'data-from="{e(a)}" data-to="{e(b)}">{n(v) if v else ""}</td>'
            for b, v in zip(axis, row, strict=True)
        )
        rows.append(f"<tr><th>{e(label(a))}</th>{cells}</tr>")
    return (
        '<section id="movement"><h2>Movement between segments</h2>'
        f"<p>From the previous scoring run ({e(mv['from_run'])}, rows) to this one (columns): "
        f"{n(mv['stayed'])} customers stayed in their segment, {n(mv['moved'])} moved, "
        f"{n(mv['entered'])} are newly scored and {n(mv['left'])} were scored before but not now.</p>"
        f'<table class="heat movement"><thead><tr><th>before \\ now</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _value_risk(d: dict[str, Any]) -> str:
    vr = d["value_risk"]
    rb, vb, counts = vr["risk_bands"], vr["value_bands"], vr["counts"]
    peak = max((v for row in counts for v in row), default=0)

    def vlabel(b: dict[str, Any]) -> str:
        if b["from_eur"] is None:
            return f"{b['band']} (< {eur(b['to_eur'], d.get('currency'))})"
        if b["to_eur"] is None:
            return f"{b['band']} (\u2265 {eur(b['from_eur'], d.get('currency'))})"
        low, high = eur(b["from_eur"], d.get("currency")), eur(b["to_eur"], d.get("currency"))
        return f"{b['band']} ({low} to {high})"

    head = "".join(f"<th>{e(vlabel(b))}</th>" for b in vb)
    rows = []
    for i in reversed(range(len(rb))):
        b = rb[i]
        cells = "".join(
            f'<td style="{_heat(v, peak)}" data-risk="{e(b["band"])}" '
            f'data-value="{e(vb[j]["band"])}">{n(v)}</td>'
            for j, v in enumerate(counts[i])
        )
        rows.append(f"<tr><th>{e(b['band'])} risk ({b['from']:g} to {b['to']:g})</th>{cells}</tr>")
    return (
        '<section id="value-risk"><h2>Value \u00d7 risk</h2>'
        "<p>Customers by churn risk band (rows) and by the expected value the model gives them for the "
        "horizon (columns; bands cut at the median and the high-value quantile of this run). High value "
        "at high risk is where a win-back pays most.</p>"
        f'<table class="heat"><thead><tr><th>churn risk \\ expected value</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _scores(d: dict[str, Any]) -> str:
    hist = histogram(d["score_distribution"]["bins"], "customers by purchase probability")
    cal = d.get("calibration")
    if cal and cal["points"]:
        cal_svg = calibration(cal["points"], "calibration: predicted vs observed purchase rate")
        cal_text = (
            f"On {n(cal.get('customers'))} validation customers (as of {e(cal.get('as_of'))}), "
            "customers given a "
            f"probability bought about that often: Brier {num(cal.get('brier'))}, expected calibration error "
            f"{num(cal.get('ece'))} ({e(cal.get('method') or '?')} calibration). On the dashed line the "
            "prediction is exact."
        )
    else:
        cal_svg, cal_text = "", "No calibration table for the scoring model."
    return (
        '<section id="scores"><h2>Scores and how far to trust them</h2><div class="pair">'
        f'<div><h3>Score distribution</h3><div class="chart">{hist}</div></div>'
        f'<div><h3>Calibration</h3><div class="chart">{cal_svg}</div><p class="muted">{cal_text}</p></div>'
        "</div></section>"
    )


def _drivers(d: dict[str, Any]) -> str:
    drivers = d.get("drivers") or []
    m = d.get("model") or {}
    model_line = (
        f"Model {e(m.get('version'))}: out-of-time ROC AUC {num(m.get('roc_auc'))} against "
        f"{num(m.get('baseline_roc_auc'))} for recency and frequency alone; "
        "the top 10% of customers by score "
        f"bought {num(m.get('lift_top10'), 1)}x as often as average."
        if m
        else "No model card found in the registry."
    )
    if m and m.get("source") == "promoted":
        model_line += (
            " (The version that scored this run is no longer in the registry: figures of the promoted one.)"
        )
    bars = hbars(
        [(x["label"], x["mean_abs_shap"], f"{x['mean_abs_shap']:.3f}", BLUE) for x in drivers],
        "what moves the scores most (mean absolute SHAP, log-odds)",
        width=700,
        label_w=290,
    )
    return (
        '<section id="drivers" class="keep"><h2>What drives the scores</h2>'
        "<p>The customer features that move the purchase probability most across all customers "
        "(mean absolute SHAP value, in log-odds).</p>"
        f'<div class="chart">{bars}</div><p class="muted">{model_line}</p></section>'
    )


def _profiles(d: dict[str, Any]) -> str:
    parts = [
        '<section id="profiles"><h2>Segment profiles</h2>'
        "<p>Typical reasons: the share of a segment whose reason codes include that kind of reason (each "
        "customer has up to four, taken from the SHAP values of the model that scored them). Medians "
        "compare the segment with all customers.</p>"
    ]
    for p in d["profiles"]:
        parts.append(
            f'<div class="segment" data-segment="{e(p["segment"])}"><h3>'
            f'<span class="swatch" style="background:{SEGMENT_COLOURS.get(p["segment"], BLUE)}"></span>'
            f"{e(label(p['segment']))} \u00b7 {n(p['customers'])} customers "
            f'<span class="small">({e(p["description"])})</span></h3>'
        )
        if p.get("suppressed"):
            parts.append(
                '<p class="note">Too few customers to describe without describing a person.</p></div>'
            )
            continue
        left = []
        if p["reasons"]:
            left.append("<p><b>Typical reasons</b></p><ul>")
            left += [f"<li>{e(r['text'])}: {pct(r['share'], 0)}</li>" for r in p["reasons"]]
            left.append("</ul>")
        if p["first_reasons"]:
            left.append(
                "<p><b>Most often the first reason</b></p><ul>"
                + "".join(f"<li>{e(r['text'])}: {pct(r['share'], 0)}</li>" for r in p["first_reasons"])
                + "</ul>"
            )
        rows = "".join(
            f"<tr><td>{e(r['label'])}</td>"
            f"<td class='num'>{e(_median(r['segment_median'], r['unit'], d.get('currency')))}</td>"
            f"<td class='num'>{e(_median(r['population_median'], r['unit'], d.get('currency')))}</td>"
            f"<td class='arrow'>{e(_arrow(r['compare']))}</td></tr>"
            for r in p["profile"]
        )
        table = (
            '<table class="profile"><thead><tr><th>median</th><th class="num">segment</th>'
            f'<th class="num">all</th><th></th></tr></thead><tbody>{rows}</tbody></table>'
        )
        parts.append(
            '<table class="layout"><tr><td style="width:38%">'
            + "".join(left)
            + f'</td><td style="width:62%">{table}</td></tr></table></div>'
        )
    parts.append("</section>")
    return "".join(parts)


def _arrow(compare: str) -> str:
    return {
        "higher than": "\u25b2 higher",
        "lower than": "\u25bc lower",
        "about the same as": "\u2248 same",
    }.get(compare, "")


def html(data: dict[str, Any]) -> str:
    """The whole report: one HTML document with everything inline."""
    run = data["run"]
    title = f"Clarion segment report, as of {run['as_of']}"
    meta = (
        f"Scoring run {e(run['run_id'])} \u00b7 model {e(run['model_version'])} \u00b7 horizon "
        f"{e(run.get('horizon_days'))} days \u00b7 generated {e(data['generated_at'])}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="Clarion report v{data["report_version"]}">'
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{e(title)}</h1><p class='sub'>{meta}</p>"
        '<p class="note">Aggregates only: this report names no customer and holds no contact details. '
        "Who is in a segment and why is answered per customer by <code>clarion explain ID</code>."
        "</p></header>"
        + _headline(data)
        + _segments(data)
        + _movement(data)
        + _value_risk(data)
        + _scores(data)
        + _drivers(data)
        + _profiles(data)
        + insights.recommendations_html(data)
        + insights.voc_html(data)
        + content_html(data)
        + content_quality.html(data)
        + results_html(data)
        + oversight_html(data)
        + quality_html(data)
        + fairness_html(data)
        + f"<footer>Clarion \u00b7 run {e(run['run_id'])}"
        + (f" \u00b7 code {e(run['code_version'])}" if run.get("code_version") else "")
        + " \u00b7 figures from ml.customer_scores, ml.segments, content.drafts, ml.campaign_results, "
        "audit.quality_results and the model registry.</footer></body></html>\n"
    )


# -- e-mail versions ------------------------------------------------------------------------------
def email_html(data: dict[str, Any]) -> str:
    """A short, mail-client-safe summary (tables, inline styles, no SVG); the full report is attached."""
    h, run = data["headline"], data["run"]
    td = 'style="padding:3px 8px;border-bottom:1px solid #d8dee4;text-align:right"'
    tl = 'style="padding:3px 8px;border-bottom:1px solid #d8dee4"'
    rows = "".join(
        f"<tr><td {tl}>{e(label(s['segment']))}</td><td {td}>{n(s['customers'])}</td>"
        f"<td {td}>{pct(s['share'])}</td>"
        f"<td {td}>{e(signed(s['change'])) if s['change'] is not None else ''}</td></tr>"
        for s in data["segments"]
    )
    drafts = sum(len(c["drafts"]) for c in data["content"]["campaigns"])
    pending = sum(c["status_counts"].get("pending", 0) for c in data["content"]["campaigns"])
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head>'
        '<body style="font-family:Arial,sans-serif;color:#1f2328;font-size:14px">'
        f"<h2 style='margin:0'>Clarion segment report, as of {e(run['as_of'])}</h2>"
        f"<p style='color:#57606a'>Scoring run {e(run['run_id'])}, model {e(run['model_version'])}</p>"
        f"<p><b>{n(h['customers'])}</b> customers scored; <b>{pct(h['at_risk_share'])}</b> at risk "
        f"(churn risk \u2265 {data['thresholds']['risk_high']:g}); "
        f"expected value <b>{eur(h['expected_value_eur'], data.get('currency'))}</b> "
        f"in the next {e(run.get('horizon_days'))} days.</p>"
        f"<table style='border-collapse:collapse'><tr><th {tl}>segment</th><th {td}>customers</th>"
        f"<th {td}>share</th><th {td}>change</th></tr>{rows}</table>"
        f"<p>Drafted content: {drafts} draft(s), {pending} waiting for approval. "
        f"Data quality: {e(data['quality']['verdict'])}.</p>"
        + "".join(f"<p>{e(line)}</p>" for line in insights.summary_lines(data))
        + "<p>The full report with charts, segment profiles and the drafts is attached as PDF (and as HTML "
        "to open in a browser). It holds aggregates only, no customer data.</p></body></html>"
    )


def text(data: dict[str, Any]) -> str:
    """The plain-text alternative of the e-mail."""
    h, run = data["headline"], data["run"]
    lines = [
        f"Clarion segment report, as of {run['as_of']}",
        f"Scoring run {run['run_id']}, model {run['model_version']}",
        "",
        f"{n(h['customers'])} customers scored; {pct(h['at_risk_share'])} at risk "
        f"(churn risk >= {data['thresholds']['risk_high']:g}); "
        f"expected value {eur(h['expected_value_eur'], data.get('currency'))} "
        f"in the next {run.get('horizon_days')} days.",
        "",
        f"{'segment':<22}{'customers':>10}{'share':>8}{'change':>8}",
    ]
    for s in data["segments"]:
        change = signed(s["change"]).replace("\u2212", "-") if s["change"] is not None else ""
        lines.append(f"{label(s['segment']):<22}{n(s['customers']):>10}{pct(s['share']):>8}{change:>8}")
    drafts = sum(len(c["drafts"]) for c in data["content"]["campaigns"])
    pending = sum(c["status_counts"].get("pending", 0) for c in data["content"]["campaigns"])
    results = (data.get("campaign_results") or {}).get("campaigns", [])
    decided = sum(1 for c in results for a in c["arms"] if a["verdict"] == "winner")
    lines += [
        "",
        f"Drafted content: {drafts} draft(s), {pending} waiting for approval.",
        f"Campaign results: {len(results)} campaign(s) measured against control groups, "
        f"{decided} variant experiment(s) decided.",
        f"Data quality: {data['quality']['verdict']}.",
        *insights.summary_lines(data),
        "",
        "The full report is attached (PDF, and HTML to open in a browser). "
        "Aggregates only, no customer data.",
    ]
    return "\n".join(lines) + "\n"
