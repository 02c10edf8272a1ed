"""`clarion oversight`: how often people override what Clarion drafted or decided on its own."""

from __future__ import annotations

from typing import Any

import click

from clarion.cli.app import AppContext, _emit, cli


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0%}"


def _table(title: str, rows: list[dict[str, Any]], keys: tuple[str, ...]) -> list[str]:
    if not rows:
        return []
    lines = [
        f"{title}:",
        f"  {'':<42} {'drafts':>7} {'reviewed':>9} {'edited':>7} {'rejected':>9} {'override':>9}",
    ]
    for r in rows:
        name = " / ".join(str(r[k])[:24] if k != "brief_sha256" else str(r[k])[:12] for k in keys)
        lines.append(
            f"  {name:<42} {r['drafts']:>7} {r['reviewed']:>9} {r['edited']:>7} {r['rejected']:>9} "
            f"{_pct(r['override_rate']):>9}"
        )
    return lines


def oversight_text(s: dict[str, Any]) -> str:
    t = s["totals"]
    if not t["drafts"]:
        return "no drafts yet: `clarion content` writes them; the override rates follow from their review"
    a = s["automated"]
    lines = [
        f"Drafts: {t['drafts']}, reviewed by a person {t['reviewed']}, edited {t['edited']}, rejected "
        f"{t['rejected']}: override rate {_pct(t['override_rate'])}"
        + (f" (trend {s['direction']})" if s["direction"] else ""),
        f"Automated decisions: {a['policy_approvals']} draft(s) approved by policy (risk_tier low), "
        f"{a['overridden']} overridden by a person: {_pct(a['override_rate'])}",
        f"  {a['nba']}",
        "",
        *_table("Per campaign", s["by_campaign"], ("campaign",)),
        *_table("Per brief version (sha256)", s["by_brief"], ("campaign", "brief_sha256")),
        *_table("Per content model", s["by_content_model"], ("content_model",)),
        *_table("Per scoring model version", s["by_scoring_model"], ("model_version",)),
        *_table("Per content run, oldest first (trend)", s["trend"], ("run_id",)),
    ]
    return "\n".join(lines)


@cli.command("oversight")
@click.option("--campaign", metavar="NAME", help="Only this campaign.")
@click.option("--json", "as_json", is_flag=True, help="Print every figure as JSON.")
@click.pass_obj
def oversight(app: AppContext, campaign: str | None, as_json: bool) -> None:
    """How often people override what Clarion generated or decided on its own.

    A draft is reviewed once a person approved, rejected or edited it, and overridden when they
    edited or rejected it; the override rate is overridden / reviewed, per campaign, brief version,
    content model, scoring model version and content run (the trend). Drafts a low-risk campaign's
    policy approved and a person then rejected or edited count as overridden automated decisions.
    Counts only, from content.drafts and content.decisions. See docs/privacy.md, "Human oversight".

    \b
    Examples:
      clarion oversight
      clarion oversight --campaign winback-summer --json
    """
    from clarion.oversight.rates import read_summary

    s = read_summary(app.settings(), campaign)
    _emit(s, as_json, oversight_text(s))
