"""The report's section on human oversight: how often people overrode drafts and automated
decisions, per campaign and over the last content runs (clarion.oversight.rates; counts only)."""

from __future__ import annotations

from typing import Any

import duckdb

from clarion.oversight.rates import summary
from clarion.report.fmt import e

TREND_RUNS = 8  # the newest content runs the report's trend shows


def collect(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    s = summary(con)
    return {
        "totals": s["totals"],
        "by_campaign": s["by_campaign"],
        "trend": s["trend"][-TREND_RUNS:],
        "direction": s["direction"],
        "automated": s["automated"],
    }


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0%}"


def html(d: dict[str, Any]) -> str:
    o = d.get("oversight")
    if not o:
        return ""
    t, a = o["totals"], o["automated"]
    parts = ['<section id="oversight"><h2>Human oversight</h2>']
    if not t["drafts"]:
        parts.append('<p class="note">No drafts yet: nothing reviewed.</p></section>')
        return "".join(parts)
    trend = f" The rate is going {e(o['direction'])} against the run before." if o["direction"] else ""
    parts.append(
        f"<p>People reviewed {t['reviewed']} of {t['drafts']} drafts and edited or rejected "
        f"{t['overridden']} of those: an override rate of <b>{_pct(t['override_rate'])}</b>.{trend} "
        f"Low-risk campaigns' own copy approved by policy: {a['policy_approvals']} draft(s), of which "
        f"people overrode {a['overridden']} ({_pct(a['override_rate'])}). {e(a['nba'].capitalize())}.</p>"
    )
    for title, rows, key in (
        ("Per campaign", o["by_campaign"], "campaign"),
        ("Per content run (oldest first)", o["trend"], "run_id"),
    ):
        parts.append(
            f"<h3>{e(title)}</h3><table><tr><th></th><th>drafts</th><th>reviewed</th><th>edited</th>"
            "<th>rejected</th><th>override rate</th></tr>"
        )
        for r in rows:
            parts.append(
                f"<tr><td>{e(r[key])}</td><td>{r['drafts']}</td><td>{r['reviewed']}</td>"
                f"<td>{r['edited']}</td><td>{r['rejected']}</td><td>{_pct(r['override_rate'])}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</section>")
    return "".join(parts)
