"""`clarion alerts`: set up the late-run automation, send a test alert, list the deliveries."""

from __future__ import annotations

import os
from typing import Any

import click

from clarion.cli.app import AppContext, _emit, cli
from clarion.errors import ClarionError


@cli.group()
def alerts() -> None:
    """Alerts by e-mail and webhook (the `alerts:` settings; docs/alerts.md): a failed or late daily
    run, a failed quality gate, a model not promoted, a fairness finding nobody signed off. Runs send
    their own alerts; a late run is judged by a Prefect automation (`clarion alerts setup`)."""


@alerts.command("test")
@click.option("--json", "as_json", is_flag=True, help="Print each delivery as JSON.")
@click.pass_obj
def alerts_test(app: AppContext, as_json: bool) -> None:
    """Send a test alert through every configured channel (each e-mail recipient list and webhook),
    and say which worked. Exits 5 when one failed; the failure is in `clarion alerts list` too.

    \b
    Example:
      clarion alerts test
    """
    from clarion.ops.alerts import test_alert
    from clarion.ops.alerts_send import deliver

    settings = app.settings()
    if not settings.alerts.configured:
        raise ClarionError(
            "alerts are off: set alerts.email and/or alerts.webhooks in clarion.yaml (docs/alerts.md)"
        )
    records = deliver(settings, [test_alert(settings)])
    _emit(records, as_json, _deliveries_text(records))
    if any(r["status"] != "sent" for r in records):
        raise click.exceptions.Exit(5)


@alerts.command("setup")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
@click.pass_obj
def alerts_setup(app: AppContext, as_json: bool) -> None:
    """Create or update the late-run automation on the Prefect server in PREFECT_API_URL: a run of
    alerts.late_deployment not completed alerts.late_after_minutes after it was due calls each webhook
    (from the server) and starts the `alert` deployment to send the e-mail. Safe to run again after
    changing the settings; with alerts off (or late_run not in alerts.events) it removes it.

    \b
    Example:
      PREFECT_API_URL=http://127.0.0.1:4200/api clarion alerts setup
    """
    from clarion.runtime import prepare_prefect

    settings = app.settings()
    if not os.environ.get("PREFECT_API_URL"):
        raise ClarionError(
            "set PREFECT_API_URL to the Prefect server that schedules the daily run (e.g. "
            "http://127.0.0.1:4200/api after `prefect server start`): an automation lives on a server"
        )
    prepare_prefect(settings)
    from clarion.ops.alerts_prefect import setup

    result = setup(settings)
    _emit(result, as_json, _setup_text(result))


@alerts.command("list")
@click.option("--limit", default=20, show_default=True, help="How many deliveries to show.")
@click.option("--json", "as_json", is_flag=True, help="Print the deliveries as JSON.")
@click.pass_obj
def alerts_list(app: AppContext, limit: int, as_json: bool) -> None:
    """The latest alert deliveries, newest first ({var_dir}/alerts/alerts.sqlite): event, run,
    channel, status, attempts and the (scrubbed) error of a failed one."""
    from clarion.ops.alerts_send import recent

    settings = app.settings()
    rows = recent(settings, limit)
    text = _deliveries_text(rows) if rows else "no alert sent yet"
    if not settings.alerts.configured:
        text += "\nalerts are off (alerts.email / alerts.webhooks not set)"
    _emit(rows, as_json, text)


def _deliveries_text(rows: list[dict[str, Any]]) -> str:
    lines = []
    for r in rows:
        run = r.get("run_id") or "-"
        lines.append(
            f"{r['at']}  {r['event']:<18} {run:<30} {r['channel']:<7} {r['status']:<6} "
            f"({r['attempts']} attempt(s)) {r['target']}"
        )
        if r.get("error"):
            lines.append(f"    {r['error']}")
    return "\n".join(lines)


def _setup_text(result: dict[str, Any]) -> str:
    if result["state"] == "off":
        removed = f"removed {result['removed']} automation(s) named '{result['automation']}'"
        return f"late-run alerts are off: {removed}"
    lines = [
        f"{result['state']} automation '{result['automation']}' ({result['id']}): a run of "
        f"{result['deployment']} not completed {result['late_after_minutes']:g} min after it was due "
        f"-> {', '.join(result['actions'])}"
    ]
    lines += [f"note: {n}" for n in result.get("notes", [])]
    return "\n".join(lines)
