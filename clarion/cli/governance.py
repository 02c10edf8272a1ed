"""Governance verbs: lineage, report, compliance, audit, quarantine, status, config."""

from __future__ import annotations

from pathlib import Path

import click

from clarion.cli.app import AppContext, _emit, cli
from clarion.cli.text import report_text


@cli.group()
def lineage() -> None:
    """Each run's lineage manifest (var/runs/RUN_ID/manifest.json, then revisions manifest.rN.json):
    inputs, code, settings, outputs."""


@lineage.command("show")
@click.argument("run_id")
@click.pass_obj
def lineage_show(app: AppContext, run_id: str) -> None:
    """Print the manifest of RUN_ID (JSON): its latest revision."""
    from clarion.lineage import latest_manifest

    click.echo(latest_manifest(app.settings(), run_id).read_text())


@lineage.command("verify")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def lineage_verify(app: AppContext, run_id: str, as_json: bool) -> None:
    """Check the chain of manifest revisions of RUN_ID, the first against its run.finished audit event,
    and re-hash every output file the latest lists; exit 6 naming any file that changed."""
    from clarion.lineage import verify

    result = verify(app.settings(), run_id)
    human = (
        f"run {run_id}: {result['revisions']} manifest revision(s), {result['outputs']} output files "
        + ("match the manifest" if result["ok"] else "checked, MISMATCH")
        + "".join(f"\n  {p}" for p in result["problems"])
        + "".join(f"\n  note: {n}" for n in result["notes"])
    )
    _emit(result, as_json, human)
    if not result["ok"]:
        raise SystemExit(6)


@cli.command()
@click.option("--run", "run_id", metavar="RUN_ID", help="The scoring run to report on [the latest].")
@click.option("--no-send", is_flag=True, help="Write the HTML and PDF, do not e-mail them.")
@click.option(
    "--outbox",
    metavar="DIR",
    type=click.Path(path_type=Path),
    help="Send the e-mail to a local SMTP server inside Clarion that saves it as DIR/<timestamp>-<n>.eml "
    "(created if missing) instead of to report.smtp_host [report.outbox].",
)
@click.option("--json", "as_json", is_flag=True, help="Print paths, hashes and delivery as JSON.")
@click.pass_obj
def report(app: AppContext, run_id: str | None, no_send: bool, outbox: Path | None, as_json: bool) -> None:
    """The marketer report (HTML + PDF, aggregates only) of a scoring run, e-mailed to report.recipients.

    With --outbox (or report.outbox) the e-mail goes through the same SMTP code to a server Clarion
    starts on 127.0.0.1 for the moment, which writes it to a folder: no mail server needed, and any
    mail client opens the .eml. The recipients are report.recipients, or marketing@localhost.

    \b
    Examples:
      clarion report --no-send                 # write var/reports/RUN_ID/report.html|pdf
      clarion report --outbox var/outbox       # and the e-mail into var/outbox/<timestamp>-<n>.eml
      CLARION_REPORT__RECIPIENTS=team@example.com clarion report
    """
    from clarion.report import make_report

    if outbox is not None and no_send:
        raise click.UsageError("--outbox sends the report and --no-send does not: give one or the other")
    settings = app.settings()
    if outbox is not None:
        report_settings = settings.report.model_copy(update={"outbox": outbox.absolute()})
        settings = settings.model_copy(update={"report": report_settings})
    result = make_report(settings, run_id, send=not no_send)
    _emit(result, as_json, report_text(result))


@cli.group()
def compliance() -> None:
    """What compliance reviews: per-customer explanations, model card, lineage, audit, consent."""


@compliance.command("export")
@click.argument("run_id", required=False)
@click.option("--no-zip", is_flag=True, help="Write the folder only.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def compliance_export(app: AppContext, run_id: str | None, no_zip: bool, as_json: bool) -> None:
    """Write var/compliance/RUN_ID/ and RUN_ID.zip [the latest completed run]: model card,
    explanations of every customer (pseudonymous ids), lineage manifest, audit events and their
    verification, quality results, consent and exclusion summary, provenance of every exported
    draft, SHA256SUMS."""
    from clarion.compliance import export_pack, latest_run

    settings = app.settings()
    run_id = run_id or latest_run(settings)
    r = export_pack(settings, run_id, make_zip=not no_zip)
    human = (
        f"compliance pack of run {run_id}: {r['folder']}"
        + (f" (zip {r['zip']})" if r["zip"] else "")
        + f"\n  {r.get('customers_explained', 0):,} customers explained, {r['audit_events']} audit events "
        f"(chain {'verified' if r['audit_ok'] else 'BROKEN'}), "
        f"{r['exported_drafts']} exported drafts with provenance"
        + "".join(f"\n  {name}" for name in r["files"])
    )
    _emit(r, as_json, human)


@cli.group()
def audit() -> None:
    """The audit log (audit.events): append-only, each event chained to the one before by its hash."""


def _expect_head(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, str] | None:
    from clarion.audit import parse_anchor

    if value is None:
        return None
    try:
        return parse_anchor(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@audit.command("verify")
@click.option(
    "--expect-head",
    metavar="SEQ:HASH",
    callback=_expect_head,
    help="An anchor kept elsewhere (`clarion audit anchor`): the event at SEQ must carry HASH and the "
    "chain must run on from it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def audit_verify(app: AppContext, expect_head: tuple[int, str] | None, as_json: bool) -> None:
    """Re-hash every event: report any edited, deleted, reordered or forged one. Exit 5 if any.

    Also checks the journal of heads (var/audit/heads.jsonl), every anchor in audit.anchor_file, and
    the one given with --expect-head.
    """
    from clarion.audit import AuditLog
    from clarion.warehouse import Warehouse

    settings = app.settings()
    with Warehouse.from_settings(settings).read() as con:
        result = AuditLog.for_settings(settings).verify(con, expect_head=expect_head)
    head, auth = result["head"], result["authenticity"]
    human = (
        f"audit log {'verified' if result['ok'] else 'BROKEN'}: {result['events']:,} events"
        + (f", head seq {head['seq']} {head['hash'][:16]}" if head else "")
        + (f", extends the anchor seq {expect_head[0]}" if expect_head and result["ok"] else "")
        + (", authenticity checked with the key" if auth["checked"] and auth["keyed_events"] else "")
        + "".join(f"\n  {p}" for p in result["problems"])
        + (f"\n  note: {auth['note']}" if auth["note"] and not auth["checked"] else "")
    )
    _emit(result, as_json, human)
    if not result["ok"]:
        raise SystemExit(5)


@audit.command("anchor")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def audit_anchor(app: AppContext, as_json: bool) -> None:
    """Print the head of the verified log as SEQ:HASH, to keep outside this machine (a ticket, a
    message, another host); append it to audit.anchor_file when set. Exit 5, anchoring nothing, if the
    log does not verify.

    \b
    Later:
      clarion audit verify --expect-head SEQ:HASH
    """
    from clarion.audit import AuditLog
    from clarion.warehouse import Warehouse

    settings = app.settings()
    with Warehouse.from_settings(settings).read() as con:
        result = AuditLog.for_settings(settings).anchor(con)
    if not result["ok"]:
        human = "audit log BROKEN: nothing anchored" + "".join(f"\n  {p}" for p in result["problems"])
    elif result["anchor"] is None:
        human = "the audit log is empty: nothing to anchor yet"
    else:
        human = (
            f"{result['anchor']}\n  keep this line elsewhere; check with "
            f"`clarion audit verify --expect-head {result['anchor']}`"
            + (f"\n  appended to {result['appended_to']}" if result["appended_to"] else "")
        )
    _emit(result, as_json, human)
    if not result["ok"]:
        raise SystemExit(5)


@audit.command("log")
@click.option("--limit", default=20, show_default=True, help="Newest events to show.")
@click.option("--action", help="Only this action (run.started, draft.approved, model.promoted, ...).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def audit_log(app: AppContext, limit: int, action: str | None, as_json: bool) -> None:
    """The newest events: when, who, what, on which subject and run."""
    from clarion.warehouse import Warehouse, relation_exists

    with Warehouse.from_settings(app.settings()).read() as con:
        rows = (
            con.execute(
                'select seq, "at"::varchar, actor, action, subject, run_id, details from audit.events '
                "where (? is null or action = ?) order by seq desc limit ?",
                [action, action, limit],
            ).fetchall()
            if relation_exists(con, "audit", "events")
            else []
        )
    keys = ("seq", "at", "actor", "action", "subject", "run_id", "details")
    events = [dict(zip(keys, r, strict=True)) for r in rows]
    lines = [
        f"{e['seq']:>6}  {e['at'][:19]}  {e['actor']:<18} {e['action']:<16} {e['subject']}" for e in events
    ]
    _emit(events, as_json, "\n".join(lines) or "no events yet")


@cli.command()
@click.argument("entity", required=False)
@click.option("--reason", help="Only this reason (orphan, invalid_date, duplicate_key, ...).")
@click.option("--source", metavar="NAME", help="Only rows from this source.")
@click.option("--limit", default=20, show_default=True, help="Rows to list (0: counts only).")
@click.option("--values", "show_values", is_flag=True, help="Also print each row's values (may hold PII).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def quarantine(
    app: AppContext,
    entity: str | None,
    reason: str | None,
    source: str | None,
    limit: int,
    show_values: bool,
    as_json: bool,
) -> None:
    """List rejected rows: where they came from (file and row, or key), the reason and the field.

    Without ENTITY, counts per entity and reason. Rows that loaded with an invalid optional field
    nulled (quarantine.field_findings) are listed after the rejected ones. Values are left out unless
    --values is given: quarantined rows are real CRM data and can hold names, e-mails and phone numbers.
    """
    from clarion.quarantine import listing, render

    settings = app.settings()
    report = listing(settings, entity, reason=reason, source=source, limit=limit, values=show_values)
    _emit(report, as_json, render(report))


# --------------------------------------------------------------------------------------------------
# status


@cli.command()
@click.option("--runs", "n_runs", default=5, show_default=True, help="How many recent runs to list.")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_obj
def status(app: AppContext, n_runs: int, as_json: bool) -> None:
    """What the warehouse holds, who is writing it, the last runs, and where the generated data is."""
    from clarion.status import collect, render

    settings = app.settings()
    report = collect(settings, config_file=app.config_file(), n_runs=n_runs)
    _emit(report, as_json, render(report))


# --------------------------------------------------------------------------------------------------
# config


@cli.command("config")
@click.option("--keys", is_flag=True, help="List every key with its environment variable and meaning.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def config_cmd(app: AppContext, keys: bool, as_json: bool) -> None:
    """Show the effective settings (file + CLARION_* overrides), validated; or every key with --keys."""
    import yaml

    from clarion.config import describe

    if keys:
        rows = describe()
        text = "\n".join(
            f"{r['key']:<34} {r['env']:<44} {r['default']!s:<22} {r['description']}" for r in rows
        )
        _emit(rows, as_json, text)
        return
    settings = app.settings()
    data = settings.model_dump(mode="json")
    file = app.config_file()
    header = f"# from {file if file else 'built-in defaults'}; fingerprint {settings.fingerprint()}\n"
    _emit(data, as_json, header + yaml.safe_dump(data, sort_keys=False).rstrip())
