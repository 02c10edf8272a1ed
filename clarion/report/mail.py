"""Delivery of the report by SMTP (settings: ``report:`` in clarion.yaml).

One message: a short HTML summary with a plain-text alternative, the PDF attached, and the full
HTML report attached to open in a browser (mail clients do not draw inline SVG reliably).
Credentials come from the environment variables that ``report.username_env`` /
``report.password_env`` name; a missing variable is reported before any connection is made.

A failure that may pass (connection refused or dropped, timeout, a 4xx reply) is retried
``report.retries`` times, ``report.retry_seconds`` apart; one that will not (STARTTLS not offered,
authentication refused, a recipient refused with 5xx, a TLS certificate problem) stops at once. Either
way the error names the server and what to check; the report files are already on disk.
"""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import Any

from clarion.config import ReportSettings
from clarion.errors import ClarionError

log = logging.getLogger(__name__)


class MailError(ClarionError):
    """The report could not be delivered by e-mail (it is written to disk nonetheless)."""

    exit_code = 5

    def __init__(self, message: str, attempts: int = 0, retryable: bool = False) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.retryable = retryable


@dataclass(frozen=True)
class Delivery:
    attempts: int
    refused: dict[str, str] = field(default_factory=dict)  # recipient -> the server's reply


def subject(rs: ReportSettings, data: dict[str, Any]) -> str:
    from clarion.report import render

    h, run = data["headline"], data["run"]
    fields = {
        "as_of": run["as_of"],
        "run_id": run["run_id"],
        "customers": f"{h['customers']:,}",
        "at_risk_share": f"{100 * h['at_risk_share']:.1f}%",
        "at_risk_customers": f"{h['at_risk_customers']:,}",
        "expected_value_eur": render.eur(h["expected_value_eur"], data.get("currency")),
        "model_version": run["model_version"],
    }
    return " ".join(rs.subject.format(**fields).split())  # one line, whatever the template holds


def message(rs: ReportSettings, data: dict[str, Any], html_path: Path, pdf_path: Path) -> EmailMessage:
    from clarion.report import render

    msg = EmailMessage()
    msg["Subject"] = subject(rs, data)
    msg["From"] = rs.sender
    msg["To"] = ", ".join(rs.recipients)
    msg["Date"] = formatdate(localtime=False)
    domain = parseaddr(rs.sender)[1].rpartition("@")[2] or "localhost"
    msg["Message-ID"] = make_msgid("clarion-report", domain=domain)
    msg.set_content(render.text(data))
    msg.add_alternative(render.email_html(data), subtype="html")
    stem = f"clarion-report-{data['run']['as_of']}-{data['run']['run_id']}"
    msg.add_attachment(pdf_path.read_bytes(), maintype="application", subtype="pdf", filename=f"{stem}.pdf")
    msg.add_attachment(
        html_path.read_bytes(),
        maintype="text",
        subtype="html",
        filename=f"{stem}.html",
        params={"charset": "utf-8"},
    )
    return msg


def credentials(rs: ReportSettings, env: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """(user, password) from the named environment variables, or None when no AUTH is configured."""
    if not rs.username_env:
        return None
    env = os.environ if env is None else env
    missing = [name for name in (rs.username_env, rs.password_env) if not env.get(name or "")]
    if missing:
        raise MailError(
            f"report.username_env / report.password_env name {', '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not set (or empty) in the environment: set "
            f"{' and '.join(missing)} before sending, or remove username_env/password_env from clarion.yaml "
            "if the SMTP server needs no login"
        )
    return env[rs.username_env], env[rs.password_env or ""]


def send(
    rs: ReportSettings,
    msg: EmailMessage,
    *,
    env: Mapping[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """Deliver the message; say how many attempts it took and which recipients the server refused
    (when it accepted others). Raises MailError."""
    if not rs.recipients:
        raise MailError("report.recipients is empty: nobody to send the report to")
    login = credentials(rs, env)  # before connecting: a missing secret is not worth a retry
    where = f"{rs.smtp_host}:{rs.smtp_port}"
    attempts = 1 + rs.retries
    last: MailError | None = None
    for attempt in range(1, attempts + 1):
        try:
            refused = _deliver(rs, msg, login)
            log.info("e-mail sent to %d recipient(s) via %s (attempt %d)", len(rs.recipients), where, attempt)
            return Delivery(attempt, {r: f"{c} {_text(m)}" for r, (c, m) in refused.items()})
        except MailError as exc:
            exc.attempts = attempt
            if not exc.retryable:
                raise
            last = exc
        if attempt < attempts:
            log.warning(
                "sending the e-mail via %s failed (attempt %d of %d): %s; retrying in %.1f s",
                where,
                attempt,
                attempts,
                last,
                rs.retry_seconds,
            )
            sleep(rs.retry_seconds)
    assert last is not None
    raise MailError(
        f"could not send the e-mail via {where} after {attempts} attempt(s): {last}",
        attempts=attempts,
        retryable=True,
    )


def _deliver(
    rs: ReportSettings, msg: EmailMessage, login: tuple[str, str] | None
) -> dict[str, tuple[int, Any]]:
    where = f"{rs.smtp_host}:{rs.smtp_port}"
    try:
        with smtplib.SMTP(rs.smtp_host, rs.smtp_port, timeout=rs.timeout_seconds) as smtp:
            smtp.ehlo()
            if rs.starttls:
                if not smtp.has_extn("starttls"):
                    raise MailError(
                        f"the SMTP server at {where} does not offer STARTTLS, and report.starttls is true: "
                        "check smtp_host/smtp_port (587 is the usual submission port with STARTTLS), or set "
                        "report.starttls: false if this server is reached over a trusted network"
                    )
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if login:
                if not smtp.has_extn("auth"):
                    raise MailError(
                        f"report.username_env is set but the SMTP server at {where} offers no AUTH"
                        + (
                            ""
                            if rs.starttls
                            else " (many servers offer it only after STARTTLS: report.starttls)"
                        )
                    )
                smtp.login(*login)
            refused = smtp.send_message(msg)
    except MailError:
        raise
    except smtplib.SMTPAuthenticationError as exc:
        raise MailError(
            f"the SMTP server at {where} refused the login ({exc.smtp_code} {_text(exc.smtp_error)}): "
            f"check the user name and password in ${rs.username_env} and ${rs.password_env}"
        ) from None
    except smtplib.SMTPRecipientsRefused as exc:
        temporary = all(400 <= code < 500 for code, _ in exc.recipients.values())
        raise MailError(
            f"the SMTP server at {where} refused every recipient ({_codes(exc.recipients)}): check "
            "report.recipients and that the server relays for them",
            retryable=temporary,
        ) from None
    except smtplib.SMTPSenderRefused as exc:
        hint = (
            "the server wants a login: set report.username_env and report.password_env"
            if exc.smtp_code == 530
            else f"check report.sender ({rs.sender}) is allowed to send through this server"
        )
        raise MailError(
            f"the SMTP server at {where} refused the sender "
            f"({exc.smtp_code} {_text(exc.smtp_error)}): {hint}",
            retryable=400 <= exc.smtp_code < 500,
        ) from None
    except smtplib.SMTPResponseException as exc:
        raise MailError(
            f"the SMTP server at {where} answered {exc.smtp_code} {_text(exc.smtp_error)}",
            retryable=400 <= exc.smtp_code < 500,
        ) from None
    except ssl.SSLError as exc:
        raise MailError(
            f"TLS with the SMTP server at {where} failed ({exc}): check that the server's certificate is "
            "valid for smtp_host and trusted by this machine"
        ) from None
    except smtplib.SMTPNotSupportedError as exc:
        raise MailError(
            f"the SMTP server at {where} does not support a command Clarion needs: {exc}"
        ) from None
    except (smtplib.SMTPException, OSError) as exc:  # refused, unreachable, timed out, dropped
        raise MailError(
            f"cannot reach an SMTP server at {where} ({type(exc).__name__}: {exc}): check report.smtp_host "
            "and report.smtp_port, that the server is running, and that no firewall blocks the port",
            retryable=True,
        ) from None
    if refused:
        log.warning("the SMTP server at %s refused some recipients: %s", where, _codes(refused))
    return refused


def _text(raw: Any) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)


def _codes(refused: Mapping[str, tuple[int, Any]]) -> str:
    return "; ".join(f"{r}: {c} {_text(m)}" for r, (c, m) in refused.items())
