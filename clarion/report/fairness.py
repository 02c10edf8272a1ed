"""The report's fairness section: per group of each protected attribute, how the model behaves
(calibration, true/false positive rates) and whom each segment, campaign audience and next-best
action selects; the findings beyond the limits and who signed them off. Aggregates only, and groups
under fairness.min_group are suppressed before anything reaches the report."""

from __future__ import annotations

from typing import Any

import duckdb

from clarion.config import Settings
from clarion.report.fmt import e, label, n, pct


def collect(settings: Settings, con: duckdb.DuckDBPyConnection, run: dict[str, Any]) -> dict[str, Any]:
    """clarion.fairness's figures of the run, or why there are none."""
    from clarion.fairness import FairnessError, run_figures

    try:
        return run_figures(settings, con, run["run_id"])
    except FairnessError as exc:
        return {"error": str(exc)}


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"


def _model(d: dict[str, Any]) -> list[str]:
    model = d["model"]
    if "attributes" not in model:
        return [f'<p class="note">Model {e(d["model_version"])} was registered before per-group figures.</p>']
    parts = [f"<h3>Model {e(d['model_version'])}</h3><p class='small'>{e(model['decision'])}.</p>"]
    for a in model["attributes"]:
        rows = []
        for r in a["groups"]:
            if r["suppressed"]:
                rows.append(f"<tr><td>{e(r['group'])}</td><td colspan='7' class='small'>suppressed</td></tr>")
                continue
            rows.append(
                f"<tr><td>{e(r['group'])}{'' if r['judged'] else ' *'}</td>"
                f"<td class='num'>{n(r['customers'])}</td>"
                f"<td class='num'>{_num(r['ece'])}</td><td class='num'>{_num(r['ece_gap'])}</td>"
                f"<td class='num'>{_num(r['tpr'])}</td><td class='num'>{_num(r['tpr_gap'])}</td>"
                f"<td class='num'>{_num(r['fpr'])}</td><td class='num'>{_num(r['fpr_gap'])}</td></tr>"
            )
        parts.append(
            f"<table data-attribute='{e(a['attribute'])}'><thead><tr><th>{e(a['attribute'])}</th>"
            "<th class='num'>customers</th><th class='num'>ECE</th><th class='num'>gap</th>"
            "<th class='num'>TPR</th><th class='num'>gap</th><th class='num'>FPR</th><th class='num'>gap</th>"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )
    return parts


def _selections(d: dict[str, Any]) -> list[str]:
    parts = []
    for attribute in d["attributes"]:
        groups: list[str] = []
        rows = []
        for s in d["selections"]:
            a = next(x for x in s["attributes"] if x["attribute"] == attribute)
            groups = [r["group"] for r in a["groups"]]
            cells = "".join(
                "<td class='small'>suppressed</td>"
                if r["suppressed"]
                else f"<td class='num'>{pct(r['rate'])} <span class='small'>DI {_num(r['di'])}</span></td>"
                for r in a["groups"]
            )
            rows.append(f"<tr><td>{e(s['kind'])}: {e(label(s['name']))}</td>{cells}</tr>")
        if rows:
            head = "".join(f"<th class='num'>{e(g)}</th>" for g in groups)
            parts.append(
                f"<h3>Selected, by {e(attribute)}</h3><table data-selection='{e(attribute)}'><thead><tr>"
                f"<th>selection</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            )
    return parts


def html(data: dict[str, Any]) -> str:
    d = data.get("fairness")
    if not d:
        return ""
    parts = ['<section id="fairness"><h2>Fairness</h2>']
    if "error" in d:
        return "".join(parts) + f'<p class="note">{e(d["error"])}</p></section>'
    if d.get("missing_attributes"):
        lacking = ", ".join(d["missing_attributes"])
        parts.append(f'<p class="note">Not judged (not columns of marts.dim_customers): {e(lacking)}.</p>')
    if not d["attributes"]:
        none = "No protected attribute is configured (fairness.attributes)."
        return "".join(parts) + f'<p class="note">{none}</p></section>'
    lim = d["limits"]
    parts.append(
        f"<p>Protected attributes ({e(', '.join(d['attributes']))}) are never model inputs. Per group: the "
        "model's calibration error (ECE) and true/false positive rates with each group's gap to the best "
        "group, and the share of each group selected, with the disparate-impact ratio (DI: the group's "
        f"rate over the highest group's; warn under {lim['di_warn']:g}, fail under {lim['di_fail']:g}). "
        f"Groups with fewer than {lim['min_group']} customers are suppressed; * marks customers without a "
        "value (shown, not judged).</p>"
    )
    parts += _model(d) + _selections(d)
    findings = d["findings"]
    if not findings:
        parts.append('<p class="note">Findings: none; every judged group is within the limits.</p>')
    else:
        items = "".join(
            f"<li><b>{e(f['severity'])}</b> <code>{e(f['id'])}</code>: {e(f['metric'])} {_num(f['value'])} "
            f"(limit {f['limit']:g}, compared with {e(f['reference'])})"
            + (f"; signed off by {e(f['signed_off']['by'])}" if f.get("signed_off") else "")
            + "</li>"
            for f in findings
        )
        parts.append(
            f"<h3>Findings ({len(findings)})</h3><ul>{items}</ul><p class='small'>A fail finding keeps a "
            "model from automatic promotion and an audience from export until someone signs it off: "
            "<code>clarion fairness accept FINDING_ID --by NAME --because TEXT</code>.</p>"
        )
    parts.append("</section>")
    return "".join(parts)
