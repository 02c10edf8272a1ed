"""Campaign content verbs: content (and content tune), drafts, approve, reject, export."""

from __future__ import annotations

import click

from clarion.cli.app import WAIT_OPTION, AppContext, _emit, cli
from clarion.cli.pipeline import _run_pipeline
from clarion.cli.text import _run_text


@cli.group(invoke_without_command=True)
@click.option("--campaign", "campaigns", multiple=True, metavar="NAME", help="Only this brief (repeatable).")
@WAIT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def content(
    ctx: click.Context, campaigns: tuple[str, ...], wait_seconds: float | None, as_json: bool
) -> None:
    """Draft campaign copy for the latest segments: per brief, target segment, channel and variant.

    The local language model (content.source; the embedded SmolLM2-135M-Instruct by default) writes
    each slot (subject, preheader, headline, body, call to action, SMS, push) from the brief's seeds
    for each segment's audience; offer facts come from the brief's templates. Every draft is
    checked (invented facts, banned words and claims, lengths, PII, placeholders, disclaimer,
    language, readability, near-duplicates), carries its provenance and an AI-generated label, and
    waits in content.drafts for a person's approval.

    \b
    Examples:
      clarion content
      clarion content --campaign winback-summer
      clarion drafts list --status pending
      clarion approve d1a2b3c4d5 --by marketing-lead --note "fine for July"
      clarion export --campaign winback-summer
      clarion content tune        # learn the brand: a LoRA adapter from approved copy
    """
    if ctx.invoked_subcommand is not None:  # `clarion content tune`: the group only routes
        return
    app: AppContext = ctx.obj
    result = _run_pipeline(app, wait_seconds, stages=["content"], campaigns=list(campaigns) or None)
    _emit(result, as_json, _run_text(result))


@content.command("tune")
@click.option("--max-examples", default=300, show_default=True, help="Most training examples.")
@click.option("--epochs", default=1, show_default=True, help="Passes over the examples.")
@click.option("--rank", default=8, show_default=True, help="LoRA rank.")
@click.option("--learning-rate", default=1e-4, show_default=True, help="AdamW learning rate.")
@click.option(
    "--candidates",
    type=click.IntRange(1, 32),
    help="Candidates per slot and variant, when judging and for checked answers [content.candidates].",
)
@click.option(
    "--corpus-answers",
    type=click.Choice(["checked", "pairs", "both"]),
    default="both",
    show_default=True,
    help="What answers a brand-corpus line: a candidate of the base model that passed every check "
    "(checked), another line of its theme that keeps its meaning (pairs), or half each (both).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def content_tune(
    app: AppContext,
    max_examples: int,
    epochs: int,
    rank: int,
    learning_rate: float,
    candidates: int | None,
    corpus_answers: str,
    as_json: bool,
) -> None:
    """Learn the brand: fit a LoRA adapter on approved copy, promote it only if drafts get better.

    Examples are (slot prompt -> approved text) from approved drafts, marketers' edits (the edited
    slot text) and the brand corpus (content.brand_corpus, campaigns/brand): each corpus line is a
    seed, answered by a candidate of the base model that passed every check, by another line of its
    theme, or half each (--corpus-answers). The embedded model is
    tuned on the CPU (rank 8, the upper half of its layers: a few minutes for a few hundred
    examples), then judged on held-out campaign x segment pairs, drafting as `clarion content` does
    with and without the adapter. It is registered in var/registry/content_adapter with a card
    (data counts and hash, settings, seconds, before/after) and promoted only if the usable-candidate
    rate rises, the distinct usable candidates do not fall (an adapter that repeats a few safe lines
    is refused) and guardrail findings do not rise. content.adapter: auto (default) drafts with the
    promoted one; none drafts without; a folder names one.

    \b
    Examples:
      clarion content tune
      clarion content tune --epochs 2 --json
      clarion models show --model content_adapter     # the card: data, training, before/after
    """
    from clarion.content.tune import tune
    from clarion.content.views import tune_text
    from models.content.tune import TuneParams

    settings = app.settings()
    params = TuneParams(
        rank=rank, alpha=2 * rank, epochs=epochs, learning_rate=learning_rate, seed=settings.content.seed
    )
    result = tune(
        settings, params, max_examples=max_examples, candidates=candidates, corpus_answers=corpus_answers
    )
    _emit(result, as_json, tune_text(result))


@cli.group()
def drafts() -> None:
    """Drafted campaign copy (content.drafts): list, read, edit."""


@drafts.command("list")
@click.option(
    "--status", type=click.Choice(["pending", "approved", "rejected", "blocked"]), help="Only this status."
)
@click.option("--campaign", metavar="NAME", help="Only this campaign.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def drafts_list(app: AppContext, status: str | None, campaign: str | None, as_json: bool) -> None:
    """Drafts, newest run first, with status and failed checks."""
    from clarion.content.runner import list_drafts
    from clarion.content.views import drafts_text

    rows = list_drafts(app.settings(), status, campaign)
    _emit(rows, as_json, drafts_text(rows))


@drafts.command("show")
@click.argument("draft_id")
@click.option(
    "--json", "as_json", is_flag=True, help="Print as JSON (content, checks, provenance, decisions)."
)
@click.pass_obj
def drafts_show(app: AppContext, draft_id: str, as_json: bool) -> None:
    """One draft: its copy, check report, provenance and decisions."""
    from clarion.content.runner import show_draft
    from clarion.content.views import draft_text

    d = show_draft(app.settings(), draft_id)
    _emit(d, as_json, draft_text(d))


@drafts.command("stats")
@click.option("--campaign", metavar="NAME", help="Only this campaign (its latest run, unless --run).")
@click.option(
    "--run", "run_id", metavar="RUN_ID", help="This content run [default: the latest finished one]."
)
@click.option("--json", "as_json", is_flag=True, help="Print every figure as JSON.")
@click.pass_obj
def drafts_stats(app: AppContext, campaign: str | None, run_id: str | None, as_json: bool) -> None:
    """How good a content run's drafts are, per campaign and slot, and what marketers decided.

    Usable-candidate rate per slot (candidates passing every slot check and the meaning floor /
    candidates generated), the model-written share of delivered e-mail words, variant diversity
    and near-duplicate pairs, Flesch reading ease, guardrail findings by check, invented facts on
    the final drafts, and approve / edit / reject counts and rates per ISO week. The run is the
    latest content run that finished drafting (on-demand drafts only when named with --run).
    Counts and scores only: no copy, no recipients. Definitions: docs/content.md, "Measuring content".

    \b
    Examples:
      clarion drafts stats
      clarion drafts stats --campaign winback-summer
      clarion drafts stats --run 20261205T014210Z-1a2b3c4d --json
    """
    from clarion.content.stats import read_stats
    from clarion.content.views import stats_text

    s = read_stats(app.settings(), campaign, run_id)
    _emit(s, as_json, stats_text(s))


@drafts.command("edit")
@click.argument("draft_id")
@click.option("--part", required=True, help="email_subject, email_preheader, email_body, sms or push.")
@click.option("--text", required=True, help="The new text ({first_name} is filled at export).")
@click.option("--by", required=True, metavar="NAME", help="Who edits.")
@click.pass_obj
def drafts_edit(app: AppContext, draft_id: str, part: str, text: str, by: str) -> None:
    """Change one part of a draft: checked again, and it needs a (new) approval."""
    from clarion.content.runner import edit

    r = edit(app.settings(), draft_id, part, text, by)
    failed = [c["name"] for c in r["checks"] if not c["passed"]]
    click.echo(
        f"{draft_id} is {r['status']} (content {r['content_sha256'][:12]})"
        + (f"; failed: {failed}" if failed else "")
    )


@cli.command()
@click.argument("draft_id")
@click.option(
    "--by", required=True, metavar="NAME", help="Who approves (an approver in the campaign's brief)."
)
@click.option("--note", help="Why, or under which conditions.")
@click.pass_obj
def approve(app: AppContext, draft_id: str, by: str, note: str | None) -> None:
    """Approve a draft for export. The approval is bound to the draft's current content.

    It is recorded under your operating-system account beside NAME. The campaign's risk_tier says
    how many approvals it needs: one (standard, or a low-risk campaign's model-written copy), or
    two from different accounts (high). See docs/privacy.md, "Human oversight".

    \b
    Example:
      clarion approve d1a2b3c4d5 --by marketing-lead --note "fine for July"
    """
    from clarion.content.runner import decide

    r = decide(app.settings(), draft_id, "approve", by, note)
    if r["waiting_for"]:  # a high-risk campaign: another person must approve too
        click.echo(
            f"{draft_id} approved by {r['by']} ({r['principal']}, content {r['content_sha256'][:12]}); "
            f"1 more approval needed: {r['waiting_for']}"
        )
        return
    click.echo(
        f"{draft_id} approved by {r['by']} ({r['principal']}, content {r['content_sha256'][:12]}); "
        "export: clarion export"
    )


@cli.command()
@click.argument("draft_id")
@click.option("--by", required=True, metavar="NAME", help="Who rejects.")
@click.option("--reason", required=True, help="Why (kept with the decision).")
@click.pass_obj
def reject(app: AppContext, draft_id: str, by: str, reason: str) -> None:
    """Reject a draft; it is never exported."""
    from clarion.content.runner import decide

    decide(app.settings(), draft_id, "reject", by, reason)
    click.echo(f"{draft_id} rejected by {by}")


@cli.command("export")
@click.option("--campaign", metavar="NAME", help="Only this campaign.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def export_cmd(app: AppContext, campaign: str | None, as_json: bool) -> None:
    """Approved drafts to var/exports: one row per consenting recipient, merge fields filled.

    Contacts without consent for the channel, with a marketing objection, or erased get nothing;
    the counts left out and why are printed and kept in content.exports, as are the recipients
    greeted "Hi there," because their first name was missing or not a name. A draft whose brief
    changed since approval, or AI-written copy without its disclosure line, is held back.
    """
    from clarion.content.runner import export
    from clarion.content.views import export_text
    from clarion.warehouse import Warehouse

    settings = app.settings()
    with Warehouse.from_settings(settings).writing("clarion export"):
        result = export(settings, campaign)
    _emit(result, as_json, export_text(result))
