"""Data-subject rights: `clarion subject access|correct|erase|object` (GDPR articles 15-17 and 21)."""

from __future__ import annotations

from pathlib import Path

import click

from clarion.cli.app import AppContext, _emit, cli


@cli.group()
def subject() -> None:
    """A person's rights over their data: see everything held about them (access), fix it (correct),
    remove it everywhere (erase), stop profiling them (object). Each is recorded in the audit log by
    pseudonym and request reference, never by name or e-mail. See docs/privacy.md."""


@subject.command("access")
@click.argument("who", metavar="ID|EMAIL")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "html"]),
    default="json",
    show_default=True,
    help="json for a machine, html for the person (headings, sentences, tables).",
)
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Write the report to FILE [default: stdout]. It holds the person's own data: give it to them, "
    "do not keep it under var/.",
)
@click.pass_obj
def access(app: AppContext, who: str, fmt: str, out: Path | None) -> None:
    """Everything held about one person (Art. 15), found by contact id or e-mail.

    CRM rows of every entity (contacts, orders and their lines, e-mail events, tickets, consents,
    earlier versions), quarantined rows that name them, corrections and objections, their customer
    profile and latest features, every score with its reasons and model version (all runs),
    segments, drafts and exports they were selected for, next-best-action decisions, trigger hits,
    uplift, and the runs that touched them. Recorded in the audit log by pseudonym, counts only.

    \b
    Examples:
      clarion subject access 1042
      clarion subject access ada@example.com --format html --out ada.html
    """
    from clarion.subject.access import produce

    text, report = produce(app.settings(), who, fmt)
    if out is None:
        click.echo(text)
        return
    out.write_text(text)
    total = sum(report["counts"].values())
    click.echo(
        f"wrote {out}: {total:,} record(s) in {len(report['counts'])} table(s), "
        f"{len(report['runs'])} run(s), for {report['person']['pseudonym']}"
    )


@subject.command("correct")
@click.argument("who", metavar="ID|EMAIL")
@click.argument("pairs", nargs=-1, required=True, metavar="FIELD=VALUE...")
@click.option("--reference", metavar="REF", help="The request's reference (ticket or letter number).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def correct(app: AppContext, who: str, pairs: tuple[str, ...], reference: str | None, as_json: bool) -> None:
    """Correct a person's contact record (Art. 16); takes effect on the next run.

    Only contact fields, not contact_id or updated_at. Each value is checked by the CRM contract
    (type, allowed values, e-mail shape, required fields): a bad value is refused with the reason,
    exit code 2, and nothing is recorded. An empty value clears an optional field. Kept in
    privacy.corrections (newest per field wins) and re-applied after every extract, so a CRM that
    still holds the old value does not bring it back.

    \b
    Examples:
      clarion subject correct 1042 country=DE age_band=35-44 --reference DSR-2026-014
      clarion subject correct ada@example.com email=ada.lovelace@example.com
      clarion subject correct 1042 phone=          # clear the phone number
    """
    from clarion.subject.correct import record

    r = record(app.settings(), who, pairs, reference)
    _emit(
        r,
        as_json,
        f"recorded a correction of {', '.join(r['fields'])} for contact {r['contact_id']} "
        f"({r['pseudonym']}); it takes effect on the {r['takes_effect']}",
    )


@subject.command("object")
@click.argument("who", metavar="ID|EMAIL")
@click.option("--reference", metavar="REF", help="The request's reference (ticket or letter number).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def object_(app: AppContext, who: str, reference: str | None, as_json: bool) -> None:
    """Record an objection to profiling for direct marketing (Art. 21).

    From the next run on the person is not scored, not in training data, not segmented, and so in
    no audience (content exports, next best action, triggers); marketing_objection becomes true in
    raw.contacts and marts.dim_customers. Kept in privacy.objections; a repeat is acknowledged.

    \b
    Examples:
      clarion subject object 1042 --reference DSR-2026-015
      clarion subject object ada@example.com
    """
    from clarion.subject.objection import record

    r = record(app.settings(), who, reference)
    done = "was already recorded" if r["already_recorded"] else "recorded"
    _emit(
        r,
        as_json,
        f"objection of contact {r['contact_id']} ({r['pseudonym']}) {done}; from the {r['takes_effect']}",
    )
