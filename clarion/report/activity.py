"""The report's sections on what the run did beyond scoring: campaign content drafted and approved,
campaign results against control groups, and the data-quality gates. Each has a collector (from the
warehouse, aggregates only) and a renderer (HTML); `build` and `render` call them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import duckdb

from clarion import runs
from clarion.report.fmt import e, label
from clarion.warehouse import relation_exists

# content checks whose failure means the copy itself may hold what must not be shown
WITHHOLD_ON_FAILURE = {"pii"}


def ts(value: Any) -> str | None:
    """A timestamp as the report prints it (UTC, ISO 8601)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return str(value)


# -- content --------------------------------------------------------------------------------------
def content(con: duckdb.DuckDBPyConnection, run: dict[str, Any]) -> dict[str, Any]:
    """The latest drafts of each campaign made for this scoring run (by a run that finished
    drafting), with checks and decisions. Who decided is left out (it is in content.decisions and
    the compliance pack)."""
    if not relation_exists(con, "content", "drafts"):
        return {"campaigns": [], "note": "no content drafted yet (`clarion content`)"}
    decisions = relation_exists(con, "content", "decisions")
    rows = con.execute(
        f"""
        with latest as (
            select campaign, arg_max(run_id, created_at) as content_run from content.drafts
            where scoring_run_id = ? and run_id not in ({runs.CONTENT_UNFINISHED}) group by campaign
        )
        select d.campaign, d.run_id, d.segment, d.channel, d.variant, d.status, d.content, d.checks,
               d.fallback, d.ai_generated, d.created_at,
               {"x.decision, x.decided_at" if decisions else "null, null"}
        from content.drafts d join latest l on d.campaign = l.campaign and d.run_id = l.content_run
        {
            '''left join (
            select draft_id, arg_max(decision, decided_at) as decision, max(decided_at) as decided_at
            from content.decisions where decision <> 'edit' group by draft_id
        ) x using (draft_id)'''
            if decisions
            else ""
        }
        where d.scoring_run_id = ?
        order by d.campaign, d.segment, d.channel, d.variant
        """,
        [run["run_id"], run["run_id"]],
    ).fetchall()
    campaigns: dict[str, dict[str, Any]] = {}
    for r in rows:
        c = campaigns.setdefault(
            r[0], {"campaign": r[0], "content_run_id": r[1], "drafts": [], "status_counts": {}}
        )
        checks = json.loads(r[7]) if r[7] else []
        withheld = any(ch.get("name") in WITHHOLD_ON_FAILURE and not ch.get("passed") for ch in checks)
        c["drafts"].append(
            {
                "segment": r[2],
                "channel": r[3],
                "variant": r[4],
                "status": r[5],
                "parts": {} if withheld else (json.loads(r[6]) if r[6] else {}),
                "withheld": withheld,
                "checks": [
                    {
                        "name": ch.get("name"),
                        "severity": ch.get("severity"),
                        "passed": bool(ch.get("passed")),
                        "detail": (
                            "withheld"
                            if withheld and ch.get("name") in WITHHOLD_ON_FAILURE
                            else ch.get("detail", "")
                        ),
                    }
                    for ch in checks
                ],
                "fallback": bool(r[8]),
                "ai_generated": bool(r[9]),
                "decision": r[11],
                "decided_at": ts(r[12]),
            }
        )
        c["status_counts"][r[5]] = c["status_counts"].get(r[5], 0) + 1
    note = None if campaigns else "no drafts for this scoring run"
    return {"campaigns": list(campaigns.values()), "note": note}


# -- quality --------------------------------------------------------------------------------------
def quality(con: duckdb.DuckDBPyConnection, run: dict[str, Any]) -> dict[str, Any]:
    """The gate results of the run (or of the latest gated run before it, when the scoring ran
    alone). Failing samples are never read: they can hold personal data."""
    if not relation_exists(con, "audit", "quality_results"):
        return {"run_id": None, "suites": [], "problems": [], "verdict": "no quality results"}
    gated = con.execute(
        "select run_id from audit.quality_results where run_id = ? or evaluated_at <= ?::timestamptz "
        "group by run_id order by (run_id = ?) desc, max(evaluated_at) desc limit 1",
        [run["run_id"], run["scored_at"], run["run_id"]],
    ).fetchone()
    if gated is None:
        return {"run_id": None, "suites": [], "problems": [], "verdict": "no quality results"}
    gated_run = gated[0]
    suites = [
        {"suite": s, "version": v, "passed": int(p), "warned": int(w), "failed": int(f), "skipped": int(k)}
        for s, v, p, w, f, k in con.execute(
            """
            select suite, max(suite_version),
                   count(*) filter (where status = 'passed'),
                   count(*) filter (where status <> 'passed' and status <> 'skipped' and severity = 'warn'),
                   count(*) filter (where status <> 'passed' and status <> 'skipped' and severity = 'fail'),
                   count(*) filter (where status = 'skipped')
            from audit.quality_results where run_id = ? group by suite order by min(evaluated_at)
            """,
            [gated_run],
        ).fetchall()
    ]
    problems = []
    for check, suite, table, column, severity, status, observed in con.execute(
        'select check_id, suite, "table", "column", severity, status, observed from audit.quality_results '
        "where run_id = ? and status not in ('passed', 'skipped') order by severity, check_id",
        [gated_run],
    ).fetchall():
        problems.append(
            {
                "check_id": check,
                "suite": suite,
                "table": table,
                "column": column,
                "severity": severity,
                "status": status,
                "observed": _numbers(observed),
            }
        )
    failed = sum(s["failed"] for s in suites)
    warned = sum(s["warned"] for s in suites)
    verdict = "failed" if failed else ("passed with warnings" if warned else "passed")
    return {
        "run_id": gated_run,
        "same_run": gated_run == run["run_id"],
        "suites": suites,
        "problems": problems,
        "verdict": verdict,
    }


def _numbers(observed: str | None) -> dict[str, float]:
    """Only the numeric measures of a check's observation (its sample values stay in the warehouse)."""
    try:
        value = json.loads(observed) if observed else {}
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {
        k: v
        for k, v in value.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and k != "sample"
    }


def _checks(checks: list[dict[str, Any]]) -> str:
    passed = sum(c["passed"] for c in checks)
    out = [f'<span class="badge ok">\u2713 {passed} of {len(checks)} checks passed</span>'] if checks else []
    for c in checks:
        if not c["passed"]:
            cls = "bad" if c["severity"] == "block" else "warn"
            out.append(
                f'<span class="badge {cls}">\u2717 {e(c["name"])}</span> '
                f'<span class="small">{e(c["detail"])}</span> '
            )
    return "".join(out)


def content_html(d: dict[str, Any]) -> str:
    content = d["content"]
    parts = ['<section id="content"><h2>Drafted content and approvals</h2>']
    if not content["campaigns"]:
        parts.append(f'<p class="note">{e(content.get("note") or "No drafts.")}</p></section>')
        return "".join(parts)
    parts.append(
        "<p>Company copy drafted from each campaign brief with the help of a local language model (offer "
        "facts come from the brief). <code>{first_name}</code> is filled per consenting recipient only at "
        "export, and only approved, unchanged drafts are ever exported.</p>"
    )
    for c in content["campaigns"]:
        counts = ", ".join(f"{v} {k}" for k, v in sorted(c["status_counts"].items()))
        parts.append(
            f'<h3 data-campaign="{e(c["campaign"])}">{e(c["campaign"])} '
            f'<span class="small">\u00b7 {e(counts)} \u00b7 content run {e(c["content_run_id"])}</span></h3>'
        )
        for dr in c["drafts"]:
            decision = (
                f" \u00b7 last decision: {e(dr['decision'])} {e((dr['decided_at'] or '')[:16])}"
                if dr.get("decision")
                else ""
            )
            flags = (" \u00b7 the brief's own copy" if dr["fallback"] else "") + (
                " \u00b7 AI-generated" if dr["ai_generated"] else ""
            )
            parts.append(
                f'<div class="draft"><b>{e(label(dr["segment"]))}</b> \u00b7 {e(dr["channel"])} \u00b7 '
                f'variant {e(dr["variant"])} \u00b7 <span class="badge status-{e(dr["status"])}">'
                f"{e(dr['status'])}</span><span class='small'>{decision}{flags}</span>"
            )
            if dr["withheld"]:
                parts.append(
                    '<p class="note">Copy withheld: its personal-data check failed. Review it with '
                    "<code>clarion drafts show</code>.</p>"
                )
            for part, text in dr["parts"].items():
                parts.append(f'<div class="part">{e(part)}</div><div class="copy">{e(text)}</div>')
            parts.append(f"<div>{_checks(dr['checks'])}</div></div>")
    parts.append("</section>")
    return "".join(parts)


def quality_html(d: dict[str, Any]) -> str:
    q = d["quality"]
    parts = ['<section id="quality"><h2>Data quality</h2>']
    if not q["suites"]:
        parts.append(f'<p class="note">{e(q["verdict"])}.</p></section>')
        return "".join(parts)
    where = (
        "this run" if q.get("same_run") else f"run {e(q['run_id'])}, the latest gated run before this scoring"
    )
    parts.append(f"<p>Quality gates of {where}: <b>{e(q['verdict'])}</b>.</p>")
    rows = "".join(
        f"<tr><td>{e(s['suite'])} v{e(s['version'])}</td><td class='num'>{s['passed']}</td>"
        f"<td class='num'>{s['warned']}</td><td class='num'>{s['failed']}</td>"
        f"<td class='num'>{s['skipped']}</td></tr>"
        for s in q["suites"]
    )
    parts.append(
        '<table><thead><tr><th>suite</th><th class="num">passed</th><th class="num">warnings</th>'
        f'<th class="num">failed</th><th class="num">skipped</th></tr></thead><tbody>{rows}</tbody></table>'
    )
    if q["problems"]:
        rows = "".join(
            f"<tr><td>{e(p['check_id'])}</td><td>{e(p['severity'])}</td><td>{e(p['status'])}</td>"
            f"<td>{e(p['table'])}{'.' + e(p['column']) if p['column'] else ''}</td>"
            f"<td>{e(', '.join(f'{k} {v:g}' for k, v in p['observed'].items()))}</td></tr>"
            for p in q["problems"]
        )
        parts.append(
            "<table><thead><tr><th>check</th><th>severity</th><th>status</th><th>where</th><th>measured</th>"
            f"</tr></thead><tbody>{rows}</tbody></table>"
        )
    parts.append("</section>")
    return "".join(parts)


# -- campaign results -------------------------------------------------------------------------------
def campaign_results(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """The latest results run: per campaign, every arm's counts and uplift, and the experiment."""
    if not relation_exists(con, "ml", "campaign_experiments"):
        return {"campaigns": [], "note": "No campaign results yet: `clarion results` measures them."}
    latest = con.execute(
        "select results_run_id from ml.campaign_experiments order by measured_at desc limit 1"
    ).fetchone()
    if latest is None:
        return {"campaigns": [], "note": "No campaign has sends or a control group on record yet."}
    heads = con.execute(
        "select campaign, first_exposure, experiment, notes from ml.campaign_experiments x "
        "where results_run_id = ? and exists (select 1 from ml.campaign_results r where "
        "r.results_run_id = x.results_run_id and r.campaign = x.campaign and r.arm = 'control') "
        "order by first_exposure desc, campaign limit ?",
        [latest[0], MAX_CAMPAIGNS],
    ).fetchall()
    arms = con.execute(
        "select campaign, variant, figures from ml.campaign_results where results_run_id = ? "
        "order by campaign, arm = 'treatment', variant = 'all', variant",
        [latest[0]],
    ).fetchall()
    return {
        "results_run_id": latest[0],
        "campaigns": [
            {
                "campaign": name,
                "first_exposure": first,
                "experiment": json.loads(experiment),
                "notes": json.loads(notes),
                "arms": [{"variant": v, **json.loads(f)} for c, v, f in arms if c == name],
            }
            for name, first, experiment, notes in heads
        ],
    }


MAX_CAMPAIGNS = 8  # the most recent ones with a control group; `clarion results` lists them all


def _points(u: dict[str, float] | None) -> str:
    if not u:
        return ""
    return f"{100 * u['absolute']:+.1f} [{100 * u['low']:+.1f}, {100 * u['high']:+.1f}]"


def _revenue(value: float | None) -> str:
    return "" if value is None else f"{value:+,.0f}"


def results_html(d: dict[str, Any]) -> str:
    r = d.get("campaign_results") or {"campaigns": []}
    parts = ['<section id="results"><h2>Campaign results against control groups</h2>']
    if not r["campaigns"]:
        parts.append(f'<p class="note">{e(r.get("note") or "No campaign results.")}</p></section>')
        return "".join(parts)
    parts.append(
        "<p>Each campaign's treated customers against its control group (held out, never contacted), "
        "followed the same way; uplift in percentage points of conversion with its 95% interval. "
        "Variants are compared with an always-valid sequential test, so reading these figures every "
        "day does not raise the error rate.</p>"
    )
    for c in r["campaigns"]:
        rows = "".join(
            f"<tr><td>{e(a['variant'])}</td><td class='num'>{a['customers']:,}</td>"
            f"<td class='num'>{a['converters']:,}</td><td class='num'>{100 * a['conversion_rate']:.1f}%</td>"
            f"<td class='num'>{e(_points(a.get('uplift')))}</td>"
            f"<td class='num'>{_revenue(a.get('incremental_revenue_eur'))}</td>"
            f"<td>{e(a['verdict'])}</td></tr>"
            for a in c["arms"]
        )
        parts.append(
            f'<h3 data-campaign="{e(c["campaign"])}">{e(c["campaign"])} '
            f'<span class="small">\u00b7 first exposure {e(str(c["first_exposure"])[:10])}</span></h3>'
            '<table><thead><tr><th>variant</th><th class="num">customers</th><th class="num">converted</th>'
            '<th class="num">rate</th><th class="num">uplift, pts [95%]</th>'
            '<th class="num">incremental revenue EUR</th><th>verdict</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>"
        )
        parts.extend(f'<p class="note">{e(n)}</p>' for n in c["notes"])
    parts.append("</section>")
    return "".join(parts)
