"""Next-best-action verbs: `clarion nba` (decide) and `clarion nba approve` (a high-risk campaign)."""

from __future__ import annotations

import click

from clarion.cli.app import WAIT_OPTION, AppContext, _emit, cli
from clarion.cli.pipeline import _run_pipeline
from clarion.cli.text import _run_text


@cli.group(invoke_without_command=True)
@WAIT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
@click.pass_context
def nba(ctx: click.Context, wait_seconds: float | None, as_json: bool) -> None:
    """Decide the next best action of every customer of the latest scoring run.

    Candidates are the active briefs (campaigns/*.yaml) whose audience holds the customer, on each
    of their channels. A pair is eligible with consent for the channel, no marketing objection, not
    erased, outside the campaign's holdout and the global control group, under the frequency cap
    (nba.frequency_cap sends in nba.cap_days) and past the cool-down (nba.cooldown_days), counted
    back from the scoring day. Its value: uplift x order value - P(buy | treated) x offer - contact
    cost, with the campaign's measured uplift once it has experiments.min_evidence customers per
    arm, else nba.prior_relative_uplift x purchase probability. Each customer gets the highest
    positive value (ties: campaign name, then channel), within each brief's budget, or no action.
    Decisions go to ml.next_best_action; those of a high-risk brief wait for an approval.

    \b
    Examples:
      clarion nba
      clarion nba --json
      clarion explain 1042                                    # one customer's decision and why
      clarion nba approve winback-summer --by marketing-lead  # a high-risk campaign's audience
    """
    if ctx.invoked_subcommand is not None:
        return
    app: AppContext = ctx.obj
    result = _run_pipeline(app, wait_seconds, stages=["nba"])
    _emit(result, as_json, _run_text(result))


@nba.command("approve")
@click.argument("campaign")
@click.option("--by", required=True, metavar="NAME", help="Who approves (an approver named in the brief).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def nba_approve(app: AppContext, campaign: str, by: str, as_json: bool) -> None:
    """Approve a high-risk campaign's audience: its decisions become ready.

    Bound to the brief as it is now (its sha256); recorded in ml.nba_approvals and in the audit
    log with the operating-system user beside NAME. The latest decisions for the campaign become
    ready, and so do later runs' while the brief stays the same.
    """
    from clarion.nba import approve

    r = approve(app.settings(), campaign, by)
    _emit(
        r,
        as_json,
        f"approved {campaign}'s audience (brief {r['brief_sha256'][:12]}) by {by} (os user {r['os_user']}): "
        f"{r['decisions_ready']:,} decisions of nba run {r['nba_run_id'] or '-'} are ready",
    )
