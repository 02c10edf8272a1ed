"""Delivering alerts: e-mail through the report's SMTP code (clarion.report.mail), webhooks by HTTP
POST with an optional HMAC-SHA256 signature, and a record of every delivery.

Nothing here raises to the caller: an alert that could not be delivered is logged (its event,
channel and the error's class; never a recipient or URL with its token) and kept in
``{var_dir}/alerts/alerts.sqlite``, outside the warehouse, so that it is recorded even when the
warehouse is the thing that failed, is locked by another writer, or is read-only to the API.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import sqlite3
import time
from collections.abc import Mapping
from contextlib import closing
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from clarion.config import Settings
from clarion.ops.alerts import Alert
from clarion.privacy import scrub

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Clarion-Signature"
EVENT_HEADER = "X-Clarion-Event"
DDL = """
create table if not exists alerts (
    id integer primary key autoincrement, at text not null, event text not null, run_id text,
    flow_run_id text, channel text not null, target text not null, status text not null,
    attempts integer not null, error text
)
"""


def log_path(settings: Settings) -> Path:
    return Path(settings.var_dir) / "alerts" / "alerts.sqlite"


def deliver(
    settings: Settings, alerts: list[Alert], env: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Send each alert whose event is wanted through every configured channel; one record per
    alert and channel target (status sent | failed). Never raises."""
    a = settings.alerts
    records: list[dict[str, Any]] = []
    for alert in alerts:
        if alert.event != "test" and alert.event not in a.events:
            continue
        if a.email:
            records.append(_email(settings, alert, env))
        for url in a.webhooks:
            records.append(_webhook(settings, alert, url, env))
    try:
        _record(settings, records)
    except Exception as exc:  # the log itself failed (disk full, read-only): say so, go on
        log.warning("alerts: could not record %d delivery(ies) (%s)", len(records), type(exc).__name__)
    return records


def signature(secret: str, body: bytes) -> str:
    """The value of X-Clarion-Signature: ``sha256=`` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def encode(alert: Alert) -> bytes:
    return json.dumps(alert.body(), sort_keys=True, default=str).encode()


# -- channels ----------------------------------------------------------------------------------------
def _email(settings: Settings, alert: Alert, env: Mapping[str, str] | None) -> dict[str, Any]:
    from clarion.report import mail, outbox

    rs = settings.report.model_copy(update={"recipients": list(settings.alerts.email)})
    target = f"e-mail to {len(rs.recipients)} recipient(s)"
    msg = EmailMessage()
    msg["Subject"] = alert.subject()
    msg["From"] = rs.sender
    msg["To"] = ", ".join(rs.recipients)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid("clarion-alert", domain=parseaddr(rs.sender)[1].rpartition("@")[2] or None)
    msg.set_content(alert.text())
    try:
        if rs.outbox:  # the demo's local outbox: the alert lands beside the report as an .eml file
            with outbox.local_sink(rs.outbox) as (host, port):
                sink = rs.model_copy(
                    update={"smtp_host": host, "smtp_port": port, "starttls": False, "retries": 0}
                    | {"username_env": None, "password_env": None}
                )
                delivery = mail.send(sink, msg, env=env)
        else:
            delivery = mail.send(rs, msg, env=env)
    except mail.MailError as exc:
        return _failed(alert, "email", target, exc.attempts, str(exc))
    if delivery.refused:
        return _failed(
            alert, "email", target, delivery.attempts, f"{len(delivery.refused)} recipient(s) refused"
        )
    return _result(alert, "email", target, "sent", delivery.attempts)


def _webhook(settings: Settings, alert: Alert, url: str, env: Mapping[str, str] | None) -> dict[str, Any]:
    a = settings.alerts
    target = _where(url)
    body = encode(alert)
    headers = {"Content-Type": "application/json", "User-Agent": "clarion-alerts", EVENT_HEADER: alert.event}
    if a.webhook_secret_env:
        secret = (os.environ if env is None else env).get(a.webhook_secret_env)
        if not secret:
            return _failed(
                alert,
                "webhook",
                target,
                0,
                f"alerts.webhook_secret_env names {a.webhook_secret_env}, which is not set: set it, or "
                "remove webhook_secret_env to send unsigned",
            )
        headers[SIGNATURE_HEADER] = signature(secret, body)
    attempts, error = 0, ""
    for attempt in range(1, a.webhook_retries + 2):
        attempts = attempt
        try:
            reply = httpx.post(url, content=body, headers=headers, timeout=a.webhook_timeout_seconds)
        except httpx.HTTPError as exc:
            error = f"cannot reach {target} ({type(exc).__name__})"
        else:
            if reply.is_success:
                return _result(alert, "webhook", target, "sent", attempt)
            error = f"{target} answered {reply.status_code}"
            if 400 <= reply.status_code < 500 and reply.status_code not in (408, 429):
                break  # the receiver refuses this request: another try would be refused too
        if attempt <= a.webhook_retries:
            time.sleep(a.retry_seconds)
    return _failed(alert, "webhook", target, attempts, error)


def _where(url: str) -> str:
    """A webhook named without its path and query, which often hold its token."""
    parts = urlsplit(url)
    return f"webhook {parts.scheme}://{parts.netloc.rpartition('@')[2]}"


# -- results and their record --------------------------------------------------------------------------
def _result(alert: Alert, channel: str, target: str, status: str, attempts: int, error: str | None = None):
    return {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "event": alert.event,
        "run_id": alert.run_id,
        "flow_run_id": alert.flow_run_id,
        "channel": channel,
        "target": target,
        "status": status,
        "attempts": attempts,
        "error": error,
    }


def _failed(alert: Alert, channel: str, target: str, attempts: int, error: str) -> dict[str, Any]:
    error = scrub.scrub(error)[:500]
    log.warning(
        "alert %s for run %s could not be sent by %s (%s); recorded in alerts.sqlite",
        alert.event,
        alert.run_id or "-",
        channel,
        error.split(":")[0][:120],
    )
    return _result(alert, channel, target, "failed", attempts, error)


def _record(settings: Settings, records: list[dict[str, Any]]) -> None:
    if not records:
        return
    path = log_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path, timeout=10)) as db, db:
        db.execute(DDL)
        db.executemany(
            "insert into alerts (at, event, run_id, flow_run_id, channel, target, status, attempts, error) "
            "values (:at, :event, :run_id, :flow_run_id, :channel, :target, :status, :attempts, :error)",
            records,
        )


def recent(settings: Settings, limit: int = 20) -> list[dict[str, Any]]:
    """The newest deliveries, newest first (empty before the first)."""
    path = log_path(settings)
    if not path.is_file():
        return []
    with closing(sqlite3.connect(path, timeout=10)) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("select * from alerts order by id desc limit ?", [limit]).fetchall()
    return [dict(r) for r in rows]
