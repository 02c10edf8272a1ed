"""The marketer report: aggregates of a scoring run as HTML and PDF under
``<var_dir>/reports/<run_id>/``, sent by e-mail to ``report.recipients``.

* ``build.collect`` reads the warehouse and the registry (aggregates only, never a customer row);
* ``render.html`` / ``render.pdf`` draw it (inline CSS and SVG, WeasyPrint for the PDF);
* ``mail`` delivers it by SMTP with retries;
* ``outbox`` is a local SMTP server that saves the message as an .eml file (``report.outbox``), for
  the demo and for anyone without an SMTP server.

No Prefect in here: the CLI calls ``make_report`` directly, and a flow can wrap it as a task.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from clarion.config import ReportSettings, Settings
from clarion.runs import sha256_file
from clarion.runtime import checkpoint

log = logging.getLogger(__name__)

FILES = {"html": "report.html", "pdf": "report.pdf", "json": "report.json"}


def report_dir(settings: Settings, run_id: str) -> Path:
    return settings.var_dir / "reports" / run_id


def make_report(settings: Settings, run_id: str | None = None, send: bool = True) -> dict[str, Any]:
    """Build, write and (when ``send`` and recipients or ``report.outbox`` are configured) e-mail the
    report of a scoring run (default: the latest). The files are written before sending, so they stay
    on disk when the delivery fails (``mail.MailError`` then says where they are)."""
    from clarion.report import build, mail, render

    timings: dict[str, float] = {}
    started = time.perf_counter()
    data = build.collect(settings, run_id)
    timings["collect_s"] = time.perf_counter() - started
    rid = data["run"]["run_id"]
    folder = report_dir(settings, rid)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {kind: folder / name for kind, name in FILES.items()}

    started = time.perf_counter()
    page = render.html(data)
    _write(paths["html"], page.encode("utf-8"))
    _write(paths["json"], json.dumps(data, indent=2, sort_keys=True, default=str).encode("utf-8"))
    timings["html_s"] = time.perf_counter() - started
    started = time.perf_counter()
    checkpoint("report.written")  # the HTML and JSON written, the PDF not
    render.pdf(page, paths["pdf"])
    timings["pdf_s"] = time.perf_counter() - started
    _refresh_manifest(settings, rid)

    rs = settings.report
    result: dict[str, Any] = {
        "run_id": rid,
        "as_of": data["run"]["as_of"],
        "model_version": data["run"]["model_version"],
        "customers": data["headline"]["customers"],
        "paths": {k: str(p) for k, p in paths.items()},
        "sha256": {k: sha256_file(p) for k, p in paths.items()},
        "bytes": {k: p.stat().st_size for k, p in paths.items()},
        "recipients": list(rs.recipients),
        "sent": False,
        "attempts": 0,
        "refused": {},
        "note": None,
        "outbox": None,
        "timings": timings,
    }
    if not send:
        result["note"] = "not sent (--no-send)"
    elif rs.outbox is not None:
        started = time.perf_counter()
        result.update(_to_outbox(rs, data, paths))
        timings["send_s"] = time.perf_counter() - started
    elif not rs.recipients:
        result["note"] = (
            "not sent: report.recipients is empty in clarion.yaml (or CLARION_REPORT__RECIPIENTS); "
            "the report is on disk"
        )
        log.info("report written to %s; not sent: report.recipients is empty", folder)
    else:
        started = time.perf_counter()
        msg = mail.message(rs, data, paths["html"], paths["pdf"])
        try:
            delivery = mail.send(rs, msg)
        except mail.MailError as exc:
            raise mail.MailError(
                f"{exc} (the report is written: {paths['html']} and {paths['pdf']})",
                attempts=exc.attempts,
                retryable=exc.retryable,
            ) from None
        timings["send_s"] = time.perf_counter() - started
        result.update(sent=True, attempts=delivery.attempts, refused=delivery.refused)
        result["subject"] = msg["Subject"]
    return result


def _to_outbox(rs: ReportSettings, data: dict[str, Any], paths: dict[str, Path]) -> dict[str, Any]:
    """Send through the normal SMTP path to a local sink that saves the message in ``rs.outbox``: the
    recipients are the configured ones (or a placeholder), STARTTLS and login are off (the sink
    offers neither), and there is nothing to retry."""
    from clarion.report import mail, outbox

    saved: list[Path] = []
    try:
        with outbox.local_sink(rs.outbox, on_message=saved.append) as (host, port):
            sink = rs.model_copy(
                update={
                    "recipients": list(rs.recipients) or [outbox.PLACEHOLDER_RECIPIENT],
                    "smtp_host": host,
                    "smtp_port": port,
                    "starttls": False,
                    "username_env": None,
                    "password_env": None,
                    "retries": 0,
                }
            )
            msg = mail.message(sink, data, paths["html"], paths["pdf"])
            delivery = mail.send(sink, msg)
    except mail.MailError as exc:
        raise type(exc)(
            f"{exc} (the report is written: {paths['html']} and {paths['pdf']})",
            attempts=exc.attempts,
            retryable=exc.retryable,
        ) from None
    (eml,) = saved  # one message, saved before the server said 250
    log.info("report sent to the local outbox %s", eml)
    return {
        "sent": True,
        "attempts": delivery.attempts,
        "refused": delivery.refused,
        "recipients": sink.recipients,
        "subject": msg["Subject"],
        "outbox": str(eml),
        "note": f"sent to the local outbox {eml}; open it with any mail client",
    }


def _refresh_manifest(settings: Settings, run_id: str) -> None:
    """A report written again for a run that already has its lineage manifest (`clarion report`, the
    weekly-report deployment) updates that manifest's hashes, so `clarion lineage verify` still holds.
    A run still going writes its manifest when it ends."""
    from clarion import lineage

    if lineage.manifest_path(settings, run_id).is_file():
        lineage.write(settings, run_id)
        log.info("lineage manifest of run %s updated with the new report files", run_id)


def _write(path: Path, blob: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(blob)
    tmp.replace(path)
