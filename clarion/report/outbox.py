"""A local outbox: an SMTP server inside the Clarion process that saves what it receives as .eml files.

It lets the demo, and anyone without an SMTP server, see the report e-mail exactly as a recipient
would: ``make_report`` sends through the same code as for a real server (``mail.send``), only to
127.0.0.1 on a free port, and each message lands in the folder as ``<timestamp>-<n>.eml``, which any
mail client opens. The server lives only as long as the ``with`` block and accepts local connections
only; it offers no STARTTLS and no AUTH, so the sender is told to use neither.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from clarion.report.mail import MailError

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
PLACEHOLDER_RECIPIENT = "marketing@localhost"  # the To: of an outbox message when report.recipients is empty


class OutboxError(MailError):
    """The local outbox folder cannot be used (the report files are written nonetheless)."""


class _EmlWriter:
    """aiosmtpd handler: each message, as received, becomes one .eml file in the folder."""

    def __init__(self, folder: Path, on_message: Callable[[Path], None] | None) -> None:
        self.folder = folder
        self.on_message = on_message

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's hook)
        try:
            path = _save(self.folder, envelope.original_content)
        except OSError as exc:
            log.warning("the local outbox could not save a message in %s: %s", self.folder, exc)
            return f"451 4.3.0 cannot write to the outbox {self.folder}: {exc.strerror or exc}"
        log.debug("local outbox: saved %s", path)
        if self.on_message:
            self.on_message(path)
        return f"250 2.0.0 saved as {path.name}"


class _FreePortController(Controller):
    """A Controller on a socket bound before the server starts: the port is free and ours, with no
    window between finding it and listening on it (aiosmtpd cannot listen on port 0 by itself, as it
    connects to its own port to check that it started)."""

    def __init__(self, handler: _EmlWriter, sock: socket.socket, **kwargs: Any) -> None:
        self._sock = sock
        super().__init__(handler, hostname=HOST, port=sock.getsockname()[1], **kwargs)

    def _create_server(self):  # aiosmtpd's documented hook for how the server listens
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)


@contextmanager
def local_sink(folder: Path, on_message: Callable[[Path], None] | None = None) -> Iterator[tuple[str, int]]:
    """Run the outbox SMTP server while the block runs; yield its (host, port). ``on_message`` is
    called with the path of each saved .eml before the server acknowledges the message, so it has
    been called by the time ``smtplib``'s send returns. Raises OutboxError when the folder is
    unusable."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutboxError(
            f"the outbox {folder} is a file, not a folder: give a folder for the .eml files "
            "(it is created if missing), e.g. --outbox var/outbox or report.outbox: var/outbox"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutboxError(
            f"cannot create the outbox folder {folder} ({exc.strerror or exc}): give a folder Clarion "
            "may write to, e.g. --outbox var/outbox or report.outbox: var/outbox"
        ) from None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((HOST, 0))
    # server_hostname: skips aiosmtpd's getfqdn(), which can stall for seconds without DNS;
    # ready_timeout: aiosmtpd's 5 s start-up limit is short on a busy machine
    controller = _FreePortController(
        _EmlWriter(folder, on_message), sock, server_hostname="localhost", ready_timeout=30.0
    )
    try:
        controller.start()
    except Exception as exc:
        sock.close()
        raise OutboxError(
            f"the local outbox SMTP server on {HOST} did not start ({type(exc).__name__}: {exc}): "
            "try again; on a very busy machine set AIOSMTPD_CONTROLLER_TIMEOUT (seconds, default 30)"
        ) from None
    log.debug("local outbox listening on %s:%d, saving to %s", HOST, controller.port, folder)
    try:
        yield HOST, controller.port
    finally:
        controller.stop()


def _save(folder: Path, blob: bytes) -> Path:
    """Write ``<timestamp>-<n>.eml`` whole or not at all (tmp + rename), never over an earlier one."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    n = 1
    while (folder / f"{stamp}-{n}.eml").exists():
        n += 1
    path = folder / f"{stamp}-{n}.eml"
    tmp = folder / f".{path.name}.tmp"  # a dot file without .eml: no mail client or watcher picks it up
    tmp.write_bytes(blob)
    tmp.replace(path)
    return path
