"""`clarion retention apply`: remove what outlived its retention period (docs/privacy.md#retention)."""

from __future__ import annotations

from typing import Any

import click

from clarion.cli.app import AppContext, _emit, cli


@cli.group()
def retention() -> None:
    """Keep what Clarion made only as long as the `retention:` settings say: old score history,
    export files, quarantined row bodies, reports and compliance packs. Also runs daily as the
    `retention` deployment of prefect.yaml (`clarion serve`). See docs/privacy.md#retention."""


@retention.command("apply")
@click.option("--dry-run", is_flag=True, help="Only list what would go; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts per kind as JSON.")
@click.option(
    "--wait",
    "wait_seconds",
    type=float,
    metavar="SECONDS",
    help="Wait up to SECONDS for a run that holds the warehouse [warehouse.lock_wait_seconds].",
)
@click.pass_obj
def retention_apply(app: AppContext, dry_run: bool, as_json: bool, wait_seconds: float | None) -> None:
    """Delete (or redact) everything older than its retention period, and record the counts per kind
    in the audit log (retention.applied; counts and run ids only, never a person).

    \b
    What goes (settings in clarion.yaml, `retention:`; null keeps that kind forever):
      scores              ml.customer_scores (+ NBA decisions, trigger hits) of old scoring runs
      customer_uplift     ml.customer_uplift of old results runs
      quarantine_bodies   quarantined rows keep entity, key, reason and field names, not values
      export_files        var/exports files of exports older than exports_keep_days
      reports             var/reports/RUN_ID folders beyond the newest reports_keep_runs
      compliance_packs    var/compliance packs older than packs_keep_days

    \b
    Examples:
      clarion retention apply --dry-run        # what would go today, nothing changed
      clarion retention apply                  # apply it; a second apply removes nothing
      clarion retention apply --json           # counts per kind for scripts
    """
    from clarion.privacy.retention import apply

    result = apply(app.settings(), dry_run=dry_run, wait_seconds=wait_seconds)
    _emit(result, as_json, _text(result))


def _text(result: dict[str, Any]) -> str:
    verb = "would remove" if result["dry_run"] else "removed"
    lines = [f"retention {result['today']}: {verb} {result['total']} item(s)"]
    for item in result["items"]:
        label = "exports" if item["kind"] == "export_files" else "runs"
        runs = f" ({label}: {', '.join(item['runs'])})" if item["runs"] else ""
        lines.append(f"  {item['kind']:<20} {item['count']:>8}  {item['what']}{runs}")
    if not result["items"]:
        lines.append(
            f"  nothing has outlived its retention period{'; ' + result['note'] if 'note' in result else ''}"
        )
    if result["dry_run"]:
        lines.append("dry run: nothing was changed; run without --dry-run to apply")
    return "\n".join(lines)
