"""Alerts: each event reaches a real SMTP server (aiosmtpd) and a real HTTP receiver with the
documented body, signed when a secret is set; a broken channel is recorded and raises nothing;
nothing configured sends nothing and says alerts are off. (The events fired by real pipeline runs:
tests/test_alerts_runs.py; the late-run automation on a real Prefect server: test_alerts_late.py.)"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
from pathlib import Path

import pytest
from alert_helpers import alerts_yaml, free_port, http_receiver, smtp_server
from click.testing import CliRunner

from clarion.cli import cli
from clarion.cli.text import alerts_text
from clarion.config import load_settings
from clarion.errors import ClarionError
from clarion.ops import alerts
from clarion.ops.alerts_send import SIGNATURE_HEADER, deliver, log_path, recent
from clarion.quality.gate import CheckResult, GateResult
from clarion.status import collect, render

# the documented body (docs/alerts.md#the-alert-body): exactly these keys, always
BODY_KEYS = {
    "schema",
    "title",
    "event",
    "summary",
    "run_id",
    "stage",
    "deployment",
    "flow_run_id",
    "prefect_url",
    "counts",
    "details",
    "next_steps",
    "occurred_at",
}
PII = ("ann.smith@example.com", "Ann Smith", "+44 20 7946 0958", "C-000123")
SECRET = "s3cret-for-hmac"


def _settings(tmp_path: Path, text: str):
    (tmp_path / "clarion.yaml").write_text("warehouse:\n  path: var/warehouse.duckdb\n" + text)
    return load_settings(tmp_path / "clarion.yaml", env={})


def _gate() -> GateResult:
    """A raw gate with one failing check whose sample holds a customer's e-mail (as samples may)."""
    return GateResult(
        "raw",
        3,
        [
            CheckResult(
                "contacts.email-valid",
                "fail",
                "failed",
                "expect_column_values_to_match_regex",
                table="contacts",
                column="email",
                sample=[PII[0], PII[1]],
                observed={"unexpected": 2},
            ),
            CheckResult(
                "orders.positive", "fail", "passed", "expect_column_values_to_be_between", table="orders"
            ),
        ],
    )


def _every_event() -> list[alerts.Alert]:
    where = {
        "deployment": "clarion-pipeline/daily",
        "flow_run_id": "0f0e",
        "prefect_url": "http://ui/runs/0f0e",
    }
    kept = {
        "version": "v0001",
        "candidate": "v0002",
        "previous": "v0001",
        "candidate_roc_auc": 0.61,
        "previous_roc_auc": 0.66,
        "reason": f"ROC AUC 0.61 < v0001's 0.66; v0001 stays promoted (asked by {PII[0]})",
    }
    finding = {
        "id": f"segment:R1:at_risk:age_band:di:{PII[1]}",
        "severity": "fail",
        "attribute": "age_band",
        "metric": "di",
        "value": 0.4,
        "limit": 0.6,
    }
    return [
        alerts.failed_run(
            "R1", "extract", ClarionError(f"source crm unreachable for {PII[0]}\nmore"), **where
        ),
        alerts.gate_failed("R1", "transform", _gate(), **where),
        alerts.model_not_promoted("R1", kept, **where),
        alerts.fairness_flag("R1", [finding, finding | {"severity": "warn", "metric": "tpr_gap"}], **where),
        alerts.late_run("clarion-pipeline/daily", 90, "0f0e"),
    ]


def test_every_event_reaches_email_and_a_signed_webhook_with_the_documented_body_and_no_pii(tmp_path) -> None:
    with smtp_server() as (inbox, port), http_receiver() as (received, url):
        settings = _settings(tmp_path, alerts_yaml(port, [f"{url}/hook?token=abc"], "ALERT_SECRET"))
        records = deliver(settings, _every_event(), env={"ALERT_SECRET": SECRET})
    assert [r["status"] for r in records] == ["sent"] * 10
    events = ["failed_run", "gate_failed", "model_not_promoted", "fairness_flag", "late_run"]
    assert received.events() == events
    subjects = [" ".join(m["Subject"].split()) for m in inbox.messages]
    assert [s.split(":")[0] for s in subjects] == [
        "[Clarion] run failed R1",
        "[Clarion] quality gate failed R1",
        "[Clarion] model not promoted R1",
        "[Clarion] fairness finding R1",
        "[Clarion] daily run is late",
    ]
    assert all(r == ["ops@example.org"] for r in inbox.rcpt)
    for path, headers, raw in received.requests:
        assert path == "/hook?token=abc" and headers["Content-Type"] == "application/json"
        want = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
        assert headers[SIGNATURE_HEADER] == want
        body = json.loads(raw)
        assert set(body) == BODY_KEYS and body["schema"] == "clarion.alert/1"
        assert headers["X-Clarion-Event"] == body["event"]
    texts = [raw.decode() for _, _, raw in received.requests] + [m.get_content() for m in inbox.messages]
    for text in texts:
        assert not [p for p in PII if p in text], text
    bodies = {b["event"]: b for b in received.bodies()}
    assert bodies["failed_run"]["details"]["message"] == "source crm unreachable for [redacted email]"
    assert bodies["gate_failed"]["counts"] == {"failed_checks": 1, "checks": 2}
    assert bodies["gate_failed"]["details"]["checks"] == ["contacts.email-valid (contacts.email)"]
    assert "clarion check" in bodies["gate_failed"]["next_steps"][0]
    assert bodies["model_not_promoted"]["details"]["promoted"] == "v0001"
    assert any("clarion models list" in s for s in bodies["model_not_promoted"]["next_steps"])
    assert bodies["fairness_flag"]["counts"] == {"findings": 2, "fail": 1, "warn": 1}
    assert "clarion fairness --run R1" in bodies["fairness_flag"]["next_steps"][0]
    assert bodies["failed_run"]["prefect_url"] == "http://ui/runs/0f0e"
    plain = inbox.messages[1].get_content()
    assert "What to do next:" in plain and "clarion check" in plain and "suite" in plain


def test_another_errors_message_stays_home_only_its_class_travels() -> None:
    alert = alerts.failed_run("R1", "segment", ValueError(f"could not parse {PII[1]}'s row"))
    assert alert.details == {"error": "ValueError", "message": ""}


def test_a_broken_smtp_server_and_webhook_are_recorded_and_raise_nothing(tmp_path) -> None:
    with http_receiver(status=500) as (received, url):
        settings = _settings(tmp_path, alerts_yaml(free_port(), [f"{url}/x/secret-token"]))  # nobody listens
        records = deliver(settings, [alerts.failed_run("R9", "extract", ClarionError("boom"))])
    assert [(r["channel"], r["status"], r["attempts"]) for r in records] == [
        ("email", "failed", 2),
        ("webhook", "failed", 2),
    ]
    assert len(received.requests) == 2  # retried once (webhook_retries: 1)
    assert "cannot reach an SMTP server" in records[0]["error"]
    assert records[1]["error"].endswith("answered 500") and "secret-token" not in records[1]["target"]
    with sqlite3.connect(log_path(settings)) as db:
        rows = db.execute("select event, run_id, channel, status, error is not null from alerts").fetchall()
    assert rows == [("failed_run", "R9", "email", "failed", 1), ("failed_run", "R9", "webhook", "failed", 1)]
    assert [r["channel"] for r in recent(settings)] == ["webhook", "email"]
    assert "recent delivery(ies) FAILED" in render(collect(settings, config_file=None))


def test_a_webhook_secret_variable_that_is_not_set_is_a_recorded_failure_naming_it(tmp_path) -> None:
    with http_receiver() as (received, url):
        settings = _settings(tmp_path, alerts_yaml(None, [url], "ALERT_SECRET"))
        (record,) = deliver(settings, [alerts.test_alert(settings)], env={})
    assert record["status"] == "failed" and "ALERT_SECRET" in record["error"] and not received.requests


def test_nothing_configured_sends_nothing_and_the_run_summary_and_status_say_alerts_are_off(tmp_path) -> None:
    settings = _settings(tmp_path, "")
    watch = alerts.Watch(settings)
    watch.run_id, watch.stage = "R1", "extract"
    watch.failed(ClarionError("boom"))
    told = watch.send()
    assert told == {"configured": False} and not watch.pending
    assert not log_path(settings).exists()
    assert alerts_text(told).startswith("off")
    assert "Alerts     off" in render(collect(settings, config_file=None))


def test_events_not_chosen_are_not_sent(tmp_path) -> None:
    with http_receiver() as (received, url):
        settings = _settings(tmp_path, alerts_yaml(None, [url], events=["late_run"]))
        assert deliver(settings, _every_event()) and received.events() == ["late_run"]


def test_alerts_test_sends_through_every_channel_and_exits_5_when_one_fails(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with smtp_server() as (inbox, port), http_receiver() as (received, url):
        _settings(tmp_path, alerts_yaml(port, [url]))
        ok = CliRunner().invoke(cli, ["alerts", "test"])
        assert ok.exit_code == 0, ok.output
        assert received.events() == ["test"] and len(inbox.messages) == 1
    _settings(tmp_path, alerts_yaml(free_port(), []))
    broken = CliRunner().invoke(cli, ["alerts", "test"])
    assert broken.exit_code == 5 and "failed" in broken.output
    listed = CliRunner().invoke(cli, ["alerts", "list", "--json"])
    assert [r["status"] for r in json.loads(listed.output)] == ["failed", "sent", "sent"]
    _settings(tmp_path, "")
    off = CliRunner().invoke(cli, ["alerts", "test"])
    assert off.exit_code != 0 and "alerts are off" in off.output


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("alerts:\n  webhooks: [ftp://x]\n", ["alerts.webhooks", "not an http(s) URL"]),
        ("alerts:\n  email: [nobody]\n", ["alerts.email", "not an e-mail address"]),
        ("alerts:\n  events: [late]\n", ["alerts.events", "failed_run"]),
        ("alerts:\n  webhook_secret_env: CLARION_X\n", ["alerts.webhook_secret_env", "CLARION_"]),
    ],
)
def test_a_wrong_alerts_setting_names_the_field_and_what_to_do(tmp_path, text, words) -> None:
    from clarion.config.loading import ConfigError

    with pytest.raises(ConfigError) as failed:
        _settings(tmp_path, text)
    assert all(w in str(failed.value) for w in words), str(failed.value)


def test_recipients_and_webhooks_come_from_the_environment_as_comma_lists(tmp_path) -> None:
    (tmp_path / "clarion.yaml").write_text("")
    env = {"CLARION_ALERTS__EMAIL": "a@example.org, b@example.org", "CLARION_ALERTS__WEBHOOKS": "https://h/1"}
    a = load_settings(tmp_path / "clarion.yaml", env=env).alerts
    assert a.email == ["a@example.org", "b@example.org"] and a.webhooks == ["https://h/1"] and a.configured
    assert not load_settings(tmp_path / "clarion.yaml", env={}).alerts.configured
