"""The report's "Content quality" section: how good the drafts shown above are, and what marketers did.

The drafts are those the "Drafted content" section shows (each campaign's latest finished content run
for this scoring run); the figures are :mod:`models.content.evaluate`'s (their definitions are there
and in docs/content.md, "Measuring content"), the decisions are those on every finished run's drafts
over the last :data:`WEEKS` ISO weeks. Counts, rates and scores only: no copy, no reviewer.
"""

from __future__ import annotations

from typing import Any

import duckdb

from clarion import runs
from clarion.content.stats import decision_rows
from clarion.content.store import DRAFT_COLUMNS, draft_row
from clarion.report.fmt import e, pct
from clarion.warehouse import relation_exists
from models.content.evaluate import evaluate

WEEKS = 8  # the newest ISO weeks of decisions the report shows


def collect(con: duckdb.DuckDBPyConnection, run: dict[str, Any]) -> dict[str, Any] | None:
    """The evaluation of the drafts made for this scoring run; None when there are none."""
    if not relation_exists(con, "content", "drafts"):
        return None
    rows = con.execute(
        f"""
        with latest as (
            select campaign, arg_max(run_id, created_at) as content_run from content.drafts
            where scoring_run_id = ? and run_id not in ({runs.CONTENT_UNFINISHED})
              and run_id not in ({runs.ON_DEMAND_RUNS})
            group by campaign
        )
        select {", ".join("d." + c for c in DRAFT_COLUMNS)}
        from content.drafts d join latest l on d.campaign = l.campaign and d.run_id = l.content_run
        order by d.campaign, d.segment, d.channel, d.variant
        """,
        [run["run_id"]],
    ).fetchall()
    if not rows:
        return None
    drafts = [draft_row(r) for r in rows]
    result = evaluate(drafts, decision_rows(con))
    result["decisions"]["weeks"] = result["decisions"]["weeks"][-WEEKS:]
    return result


def _of(part: int, whole: int, rate: float | None) -> str:
    return f"{pct(rate, 0)} <span class='small'>({part} of {whole})</span>" if whole else "-"


def html(d: dict[str, Any]) -> str:
    q = d.get("content_quality")
    head = '<section id="content-quality"><h2>Content quality</h2>'
    if not q:
        return head + '<p class="note">No drafts for this scoring run: nothing to measure.</p></section>'
    t = q["totals"]
    parts = [
        head,
        "<p>How much of the drafted copy above the language model wrote, and how much of what it wrote "
        f"was usable: {_of(t['usable']['usable'], t['usable']['candidates'], t['usable']['usable_rate'])} "
        "of its candidates passed every slot check and the meaning check; it wrote "
        f"{_of(t['model_written']['model_words'], t['model_written']['words'], t['model_written']['share'])} "
        "of the words of the e-mails that may go out; drafts with an invented fact: "
        f"<b>{t['findings']['invented_facts']}</b>. Definitions: docs/content.md, "
        "\u201cMeasuring content\u201d; the same figures: <code>clarion drafts stats</code>.</p>",
        "<table class='content-quality'><tr><th>campaign</th><th class='num'>drafts</th>"
        "<th class='num'>usable candidates</th><th class='num'>model-written e-mail words</th>"
        "<th class='num'>variant diversity</th><th class='num'>near-duplicate pairs</th>"
        "<th class='num'>e-mail body Flesch</th><th class='num'>blocked</th>"
        "<th class='num'>invented facts</th></tr>",
    ]
    for c in [*q["campaigns"], {"campaign": "all", **t}]:
        u, m, v, f = c["usable"], c["model_written"], c["diversity"], c["findings"]
        flesch = c["readability"]["email_body"]["mean"]
        spread = "-" if v["diversity"] is None else f"{v['diversity']:.2f}"
        parts.append(
            f'<tr data-campaign="{e(c["campaign"])}"><td>{e(c["campaign"])}</td>'
            f"<td class='num'>{c['drafts']}</td>"
            f"<td class='num'>{_of(u['usable'], u['candidates'], u['usable_rate'])}</td>"
            f"<td class='num'>{_of(m['model_words'], m['words'], m['share'])}</td>"
            f"<td class='num'>{spread}</td>"
            f"<td class='num'>{_of(v['near_duplicate_pairs'], v['pairs'], v['near_duplicate_share'])}</td>"
            f"<td class='num'>{'-' if flesch is None else f'{flesch:.0f}'}</td>"
            f"<td class='num'>{f['blocked']}</td><td class='num'>{f['invented_facts']}</td></tr>"
        )
    parts.append("</table>")
    parts.append(
        "<h3>Per slot</h3><table class='content-slots'><tr><th>slot</th><th class='num'>usable candidates"
        "</th><th class='num'>written by the model</th></tr>"
        + "".join(
            f'<tr data-slot="{e(slot)}"><td>{e(slot)}</td>'
            f"<td class='num'>{_of(x['usable'], x['candidates'], x['usable_rate'])}</td>"
            f"<td class='num'>{_of(x['model_written'], x['slot_texts'], x['model_written_rate'])}</td></tr>"
            for slot, x in t["slots"].items()
        )
        + "</table>"
    )
    checks = t["findings"]["by_check"]
    if checks:
        parts.append(
            "<p>Drafts failing a check: "
            + ", ".join(f"{e(name)} ({e(x['severity'])}) {x['drafts']}" for name, x in checks.items())
            + ".</p>"
        )
    decisions = q["decisions"]
    if decisions["weeks"]:
        parts.append(
            "<h3>Marketers\u2019 decisions per week</h3><p class='small'>Approvals the low-risk policy "
            "gave on its own are counted apart.</p><table class='content-decisions'><tr><th>ISO week</th>"
            "<th class='num'>decisions</th><th class='num'>approved</th><th class='num'>edited</th>"
            "<th class='num'>rejected</th><th class='num'>approved by policy</th></tr>"
            + "".join(
                f'<tr data-week="{e(w["week"])}"><td>{e(w["week"])}</td><td class="num">{w["decisions"]}</td>'
                + "".join(
                    f"<td class='num'>{_of(w[k], w['decisions'], w[k + '_rate'])}</td>"
                    for k in ("approve", "edit", "reject")
                )
                + f"<td class='num'>{w['policy_approvals']}</td></tr>"
                for w in decisions["weeks"]
            )
            + "</table>"
        )
    parts.append("</section>")
    return "".join(parts)
