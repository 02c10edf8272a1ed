"""What people see of next-best-action: the run's summary (CLI, Prefect artifact) and one
customer's decision (`clarion explain ID`)."""

from __future__ import annotations

from typing import Any

import duckdb

from clarion.config import Settings
from clarion.nba.decide import as_json
from clarion.runs import NOT_SETTLED
from clarion.warehouse import Warehouse, relation_exists
from models.nba import explain


def decision(settings: Settings, contact_id: int) -> dict[str, Any] | None:
    """The customer's latest decision (of a run that finished), with their reasons, or None."""
    with Warehouse.from_settings(settings).read() as con:
        if not relation_exists(con, "ml", "next_best_action"):
            return None
        return latest_decision(con, contact_id)


def latest_decision(con: duckdb.DuckDBPyConnection, contact_id: int) -> dict[str, Any] | None:
    """`decision` on an open connection that has ml.next_best_action (the API's read snapshot)."""
    cur = con.execute(
        f"""
        select n.*, s.reasons_text, s.vs_average
        from ml.next_best_action n
        left join (select run_id, contact_id, reasons_text, vs_average from ml.customer_scores
                   where contact_id = ?) s on s.run_id = n.run_id and s.contact_id = n.contact_id
        where n.contact_id = ? and n.nba_run_id not in ({NOT_SETTLED})
        order by n.decided_at desc limit 1
        """,
        [contact_id, contact_id],  # filtered on both sides: a point lookup, not a join of the tables
    )
    row = cur.fetchone()
    if row is None:
        return None
    names = [d[0] for d in cur.description]
    out = as_json(dict(zip(names, row, strict=True)))
    out["explanation"] = explain(out)
    return out


def decision_text(d: dict[str, Any]) -> str:
    head = f"Next best action (nba run {d['nba_run_id']}, scores of {d['run_id']}, as of {d['as_of']}): "
    if d["action"] == "none":
        head += "none"
    else:
        head += f"{d['action']} by {d['channel']} [{d['status']}]"
    return head + "\n  " + d["explanation"]


def summary_text(s: dict[str, Any]) -> str:
    if not s.get("campaigns"):
        return f"nba         {s.get('note', 'no campaigns')}"
    lines = [
        f"nba         {s['customers']:,} customers of scoring run {s['scoring_run_id']} "
        f"(as of {s['as_of']}): {s['decided']:,} with an action",
        f"  {'campaign':<20} {'channel':<8} {'status':<15} {'customers':>10} {'value EUR':>12}",
    ]
    for a in s["actions"]:
        lines.append(
            f"  {a['campaign']:<20} {a['channel']:<8} {a['status']:<15} {a['customers']:>10,} "
            f"{a['value_eur']:>12,.2f}"
        )
    if s["no_action"]:
        lines.append("  no action:")
        lines += [f"    {why:<45} {n:>10,}" for why, n in s["no_action"].items()]
    lines.append(f"  {'campaign':<20} {'audience':>9} {'holdout':>8} {'global':>7} {'budget':>7}  uplift")
    for c in s["campaigns"]:
        budget = "-" if c["budget"] is None else f"{c['budget']:,}"
        tier = "  (high risk: needs approval)" if c["risk_tier"] == "high" else ""
        lines.append(
            f"  {c['campaign']:<20} {c['audience']:>9,} {c['holdout']:>8,} {c['global_control']:>7,} "
            f"{budget:>7}  {c['uplift']}{tier}"
        )
    lines.append("  one customer's decision and why: clarion explain ID; all: ml.next_best_action")
    return "\n".join(lines)


def summary_markdown(s: dict[str, Any]) -> str:
    if not s.get("campaigns"):
        return f"# Next best action\n\n{s.get('note', 'no campaigns')}\n"
    lines = [
        "# Next best action",
        "",
        f"{s['customers']:,} customers of scoring run `{s['scoring_run_id']}` (as of {s['as_of']}); "
        f"{s['decided']:,} with an action.",
        "",
        "| campaign | channel | status | customers | expected value EUR |",
        "|---|---|---|---:|---:|",
    ]
    lines += [
        f"| {a['campaign']} | {a['channel']} | {a['status']} | {a['customers']:,} | {a['value_eur']:,.2f} |"
        for a in s["actions"]
    ]
    lines += ["", "| no action because | customers |", "|---|---:|"]
    lines += [f"| {why} | {n:,} |" for why, n in s["no_action"].items()]
    lines += [
        "",
        "| campaign | audience | holdout | global control | budget | refused by budget | uplift | risk |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    lines += [
        f"| {c['campaign']} | {c['audience']:,} | {c['holdout']:,} | {c['global_control']:,} | "
        f"{'-' if c['budget'] is None else c['budget']} | {c['refused_by_budget']:,} | {c['uplift']} | "
        f"{c['risk_tier']} |"
        for c in s["campaigns"]
    ]
    return "\n".join(lines) + "\n"
