"""`clarion subject erase`: remove a person everywhere and keep them out (GDPR Art. 17)."""

from __future__ import annotations

import click

from clarion.cli.app import AppContext, _emit
from clarion.cli.subject import subject


@subject.command("erase")
@click.argument("who", metavar="ID|EMAIL")
@click.option(
    "--reference", required=True, help="The request's ticket or case number (kept in the audit log)."
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Only count what would be removed; change nothing.")
@click.option(
    "--no-compact",
    is_flag=True,
    help="Skip rewriting the warehouse file (deleted rows then stay readable in its free blocks until "
    "the next erasure that compacts).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@click.pass_obj
def erase_cmd(
    app: AppContext, who: str, reference: str, yes: bool, dry_run: bool, no_compact: bool, as_json: bool
) -> None:
    """Erase the person ID|EMAIL (a contact id, or their e-mail address) from every warehouse schema
    (raw, quarantine, staging, marts, ml, content), from content exports (rewritten without their
    line), compliance packs (made again), landing/dlt/dbt/GX working files and reports that mention
    them, then compact the warehouse file. Their contact id, e-mail and orders go onto the
    suppression list as salted hashes, so a later extract from a CRM that still holds them drops
    their rows before they land (counted as `suppressed`). Model versions trained on them are flagged
    retrain_required and not reused. Only counts are printed and logged; the audit event names the
    reference, never the person.

    \b
    Examples:
      clarion subject erase 1042 --reference GDPR-2026-117 --dry-run
      clarion subject erase ana@example.org --reference GDPR-2026-117 --yes
    """
    from clarion.subject.erase import erase

    settings = app.settings()
    if not dry_run and not yes:
        preview = erase(settings, who, reference, dry_run=True)
        click.echo(
            f"this removes {preview['rows_removed']:,} rows in {len(preview['rows'])} tables, rewrites "
            f"{preview['exports_rewritten']} export file(s) and deletes {preview['working_files_deleted']} "
            "working file(s); it cannot be undone"
        )
        click.confirm("erase?", abort=True)
    result = erase(settings, who, reference, compact=not no_compact, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    human = (
        f"reference {reference}: {verb} {result['rows_removed']:,} rows in {len(result['rows'])} tables; "
        f"exports rewritten {result['exports_rewritten']}, working files deleted "
        f"{result['working_files_deleted']}, model versions flagged retrain_required: "
        f"{', '.join(result['model_versions_flagged']) or 'none'}"
    )
    if not dry_run:
        human += (
            f"; lineage revisions {result['lineage_revisions']}, compliance packs rewritten "
            f"{result['compliance_packs_rewritten']}"
            + (f"; warehouse compacted in {result['compaction_seconds']:.1f} s" if not no_compact else "")
        )
    _emit(result, as_json, human)
