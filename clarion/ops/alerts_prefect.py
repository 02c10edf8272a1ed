"""The late-run alert as a Prefect automation on the server (`clarion alerts setup`).

A run that never starts (no `clarion serve`, no worker, the machine down) cannot report itself, so
lateness is judged by the Prefect server: a proactive event trigger on the daily deployment's flow
runs. When one becomes Pending (picked up, about when it was due) or Late (the server's late-runs
service: not started 15 s after it was due), the server expects ``prefect.flow-run.Completed`` for
that flow run within ``alerts.late_after_minutes``; if it does not come (not started, still running,
failed or crashed), the automation fires:

- each webhook is called by the server itself (a ``CallWebhook`` action on a Prefect ``Webhook``
  block per URL), so it works when no Clarion process is alive; the body follows the same schema as
  every other alert. The server cannot sign a body it renders at firing time: with
  ``alerts.webhook_secret_env`` set, it sends ``X-Clarion-Token`` = hex HMAC-SHA256(secret,
  "late_run") instead, a token that authorises only this event and keeps the secret off the server;
- e-mail goes through the report's SMTP code, which runs in Clarion: a ``RunDeployment`` action starts
  the ``clarion-alert/alert`` deployment (flows/alerts.py, in prefect.yaml) with the late flow run's
  id. It needs `clarion serve` or a worker running, unlike the webhook.

`setup` is idempotent: the blocks are saved with overwrite, the automation (found by name) is
updated in place, and with late_run off or nothing configured it is deleted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from clarion.config import Settings
from clarion.errors import ClarionError
from clarion.ops.alerts import SCHEMA, TITLES

ALERT_DEPLOYMENT = "clarion-alert/alert"
TOKEN_HEADER = "X-Clarion-Token"
STARTS = ("prefect.flow-run.Pending", "prefect.flow-run.Late")
EXPECTS = ("prefect.flow-run.Completed",)


class AlertSetupError(ClarionError):
    """The late-run automation cannot be set up on the Prefect server."""


def automation_name(settings: Settings) -> str:
    return f"clarion: late run of {settings.alerts.late_deployment}"


def token(secret: str) -> str:
    """The X-Clarion-Token of a late_run webhook sent by the Prefect server."""
    return hmac.new(secret.encode(), b"late_run", hashlib.sha256).hexdigest()


def payload_template(settings: Settings, ui_url: str | None) -> str:
    """The JSON body the server renders when the automation fires (the alert schema; Jinja fills the
    flow run's id and when the run went Pending or Late)."""
    a = settings.alerts
    run = "{{ event.resource.id | replace('prefect.flow-run.', '') }}"
    body = {
        "schema": SCHEMA,
        "title": TITLES["late_run"],
        "event": "late_run",
        "summary": f"no completed run of {a.late_deployment} within {a.late_after_minutes:g} minutes "
        "of its schedule",
        "run_id": None,
        "stage": None,
        "deployment": a.late_deployment,
        "flow_run_id": "@RUN@",
        "prefect_url": f"{ui_url.rstrip('/')}/runs/flow-run/@RUN@" if ui_url else None,
        "counts": {},
        "details": {"late_after_minutes": a.late_after_minutes, "sender": "prefect-automation"},
        "next_steps": [
            "check that `clarion serve` or the worker of the deployment's work pool is running",
            "clarion status            # is a run writing, or did it fail?",
        ],
        "occurred_at": "@AT@",
    }
    text = json.dumps(body, sort_keys=True)
    return text.replace("@RUN@", run).replace("@AT@", "{{ event.occurred.isoformat() }}")


def setup(settings: Settings, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Create or update (or, when off, delete) the late-run automation on the Prefect server the
    environment points to; what it did."""
    from prefect.automations import AutomationCore
    from prefect.client.orchestration import get_client
    from prefect.events.actions import CallWebhook, RunDeployment
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.settings import PREFECT_UI_URL

    a = settings.alerts
    name = automation_name(settings)
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(name)
        if not a.configured or "late_run" not in a.events:
            for old in existing:
                client.delete_automation(old.id)
            return {"automation": name, "state": "off", "removed": len(existing), "actions": []}
        deployment = _deployment(client, a.late_deployment)
        actions: list[Any] = []
        notes: list[str] = []
        headers = {"Content-Type": "application/json", "X-Clarion-Event": "late_run"}
        if a.webhook_secret_env:
            secret = (os.environ if env is None else env).get(a.webhook_secret_env)
            if not secret:
                raise AlertSetupError(
                    f"alerts.webhook_secret_env names {a.webhook_secret_env}, which is not set: set it "
                    "before `clarion alerts setup` (the late-run webhook carries a token derived from it)"
                )
            headers[TOKEN_HEADER] = token(secret)
        template = payload_template(settings, PREFECT_UI_URL.value())
        for url in a.webhooks:
            block_id = _webhook_block(url, headers)
            actions.append(CallWebhook(block_document_id=block_id, payload=template))
        if a.email:
            alert = _deployment(client, ALERT_DEPLOYMENT, required=False)
            if alert is None:
                notes.append(
                    f"e-mail for a late run needs the {ALERT_DEPLOYMENT} deployment (prefect.yaml): start "
                    "`clarion serve` or deploy it with a worker, then run `clarion alerts setup` again"
                )
            else:
                actions.append(
                    RunDeployment(
                        source="selected",
                        deployment_id=alert.id,
                        parameters={
                            "event": "late_run",
                            "deployment": a.late_deployment,
                            "flow_run_id": {
                                "__prefect_kind": "jinja",
                                "template": "{{ event.resource.id | replace('prefect.flow-run.', '') }}",
                            },
                        },
                    )
                )
        if not actions:
            raise AlertSetupError("no action for the late-run automation: " + "; ".join(notes))
        trigger = EventTrigger(
            posture=Posture.Proactive,
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={
                "prefect.resource.role": "deployment",
                "prefect.resource.id": f"prefect.deployment.{deployment.id}",
            },
            after=set(STARTS),
            expect=set(EXPECTS),
            for_each={"prefect.resource.id"},
            threshold=1,
            within=timedelta(minutes=a.late_after_minutes),
        )
        automation = AutomationCore(
            name=name,
            description=f"Clarion alert (alerts.late_after_minutes = {a.late_after_minutes:g}): a run of "
            f"{a.late_deployment} not completed that long after it became Pending or Late.",
            enabled=True,
            trigger=trigger,
            actions=actions,
        )
        if existing:
            client.update_automation(existing[0].id, automation)
            for extra in existing[1:]:
                client.delete_automation(extra.id)
            automation_id, state = existing[0].id, "updated"
        else:
            automation_id, state = client.create_automation(automation), "created"
    return {
        "automation": name,
        "id": str(automation_id),
        "state": state,
        "deployment": a.late_deployment,
        "late_after_minutes": a.late_after_minutes,
        "actions": [type(x).__name__ for x in actions],
        "notes": notes,
    }


def _deployment(client: Any, full_name: str, required: bool = True) -> Any:
    from prefect.exceptions import ObjectNotFound

    try:
        return client.read_deployment_by_name(full_name)
    except ObjectNotFound:
        if not required:
            return None
        raise AlertSetupError(
            f"no deployment {full_name!r} on the Prefect server: start `clarion serve` (or `prefect deploy`) "
            "first, or set alerts.late_deployment to the deployment to watch"
        ) from None


def _webhook_block(url: str, headers: dict[str, str]) -> Any:
    """A Prefect Webhook block per URL, named by a hash of the URL (the URL may hold a token)."""
    from prefect.blocks.webhook import Webhook

    name = "clarion-alert-" + hashlib.sha256(url.encode()).hexdigest()[:12]
    return Webhook(method="POST", url=url, headers=headers).save(name, overwrite=True)
