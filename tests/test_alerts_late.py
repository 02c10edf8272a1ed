"""The late-run alert: the automation `clarion alerts setup` creates, on a real Prefect server, fires for
a daily run that does not complete in time, and only for it: the server calls the webhook (a real
local HTTP receiver) with the alert body, and starts the alert deployment whose flow sends the e-mail
(a real SMTP server).

The test server is Prefect's ephemeral one, which runs the triggers and actions services but not the
late-runs service: the test moves one run to Late itself, as that service does on `prefect server
start` (same state, same event)."""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path

import pytest
from alert_helpers import alerts_yaml, http_receiver, smtp_server
from test_alerts import BODY_KEYS

from clarion.config import load_settings
from clarion.ops.alerts_prefect import ALERT_DEPLOYMENT, TOKEN_HEADER, automation_name, setup

SECRET = "late-secret"


def _deployment(client, flow: str, name: str):
    flow_id = client.create_flow_from_name(flow)
    return client.create_deployment(flow_id=flow_id, name=name)


def _move(client, run_id, *states) -> None:
    for state in states:
        client.set_flow_run_state(run_id, state, force=True)


@pytest.mark.slow  # about 40 s: the automation waits late_after_minutes (15 s) before it fires
def test_a_daily_run_not_completed_in_time_calls_the_webhook_from_the_server_and_starts_the_email(
    tmp_path: Path, prefect_server, monkeypatch
) -> None:
    from prefect import states
    from prefect.client.orchestration import get_client

    from flows.alerts import alert

    monkeypatch.setenv("ALERT_SECRET", SECRET)
    with smtp_server() as (inbox, port), http_receiver() as (received, url):
        config = alerts_yaml(port, [f"{url}/late"], "ALERT_SECRET") + "  late_after_minutes: 0.25\n"
        (tmp_path / "clarion.yaml").write_text(config)
        settings = load_settings(tmp_path / "clarion.yaml", env={})
        with get_client(sync_client=True) as client:
            daily = _deployment(client, "clarion-pipeline", "daily")
            other = _deployment(client, "clarion-pipeline", "weekly-report")
            _deployment(client, *ALERT_DEPLOYMENT.split("/"))
            first = setup(settings)
            again = setup(settings)  # idempotent: the same automation, updated
            assert (first["state"], again["state"]) == ("created", "updated") and first["id"] == again["id"]
            assert again["actions"] == ["CallWebhook", "RunDeployment"]
            assert len(client.read_automations_by_name(automation_name(settings))) == 1
            time.sleep(2)  # the triggers service loads the automation
            started = time.monotonic()
            late = client.create_flow_run_from_deployment(daily)
            _move(client, late.id, states.Late())  # what the late-runs service does
            stuck = client.create_flow_run_from_deployment(daily)
            _move(client, stuck.id, states.Pending(), states.Running())  # picked up, never finishes
            done = client.create_flow_run_from_deployment(daily)
            _move(client, done.id, states.Pending(), states.Running(), states.Completed())
            elsewhere = client.create_flow_run_from_deployment(other)  # another deployment: not watched
            _move(client, elsewhere.id, states.Pending(), states.Running())
            received.wait(
                2, 90, lambda: f"automations: {client.read_automations_by_name(automation_name(settings))}"
            )
            waited = time.monotonic() - started
            time.sleep(8)  # a wrong firing for the completed or the other deployment's run would come now
            alert_runs = [
                r
                for r in client.read_flow_runs()
                if r.deployment_id is not None and r.deployment_id not in (daily, other)
            ]
            removed = setup(
                load_settings(tmp_path / "clarion.yaml", env={"CLARION_ALERTS__EVENTS": "[failed_run]"})
            )
            assert removed["state"] == "off" and removed["removed"] == 1
            assert client.read_automations_by_name(automation_name(settings)) == []
        assert waited >= 15  # not before late_after_minutes
        bodies = received.bodies()
        assert sorted(b["flow_run_id"] for b in bodies) == sorted([str(late.id), str(stuck.id)])
        for (path, headers, _), body in zip(received.requests, bodies, strict=True):
            assert path == "/late" and set(body) == BODY_KEYS and body["event"] == "late_run"
            assert (
                body["deployment"] == "clarion-pipeline/daily"
                and body["details"]["late_after_minutes"] == 0.25
            )
            assert headers[TOKEN_HEADER] == hmac.new(SECRET.encode(), b"late_run", hashlib.sha256).hexdigest()
        # the server started the alert deployment once per late run, with that run's id
        assert sorted(r.parameters["flow_run_id"] for r in alert_runs) == sorted(
            [str(late.id), str(stuck.id)]
        )
        monkeypatch.chdir(tmp_path)
        sent = alert(**{**alert_runs[0].parameters, "config_path": "clarion.yaml"})
    assert [(d["channel"], d["status"]) for d in sent["deliveries"]] == [("email", "sent")]
    (msg,) = inbox.messages
    assert (
        "daily run is late" in msg["Subject"] and alert_runs[0].parameters["flow_run_id"] in msg.get_content()
    )
    assert len(received.requests) == 2  # the flow sends the e-mail only: the server called the webhook


def test_setup_names_a_missing_deployment_and_what_to_do(tmp_path: Path, prefect_server) -> None:
    from clarion.ops.alerts_prefect import AlertSetupError

    (tmp_path / "clarion.yaml").write_text(
        'alerts:\n  webhooks: ["http://127.0.0.1:9/x"]\n  late_deployment: nope/missing\n'
    )
    with pytest.raises(AlertSetupError, match=r"no deployment 'nope/missing'.*clarion serve"):
        setup(load_settings(tmp_path / "clarion.yaml", env={}))
