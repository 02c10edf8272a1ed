"""Real receivers for alert tests: an SMTP server (aiosmtpd) and an HTTP server (http.server), each
on a free localhost port in a thread, keeping what they receive."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.rcpt: list[list[str]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.rcpt.append(list(envelope.rcpt_tos))
        self.messages.append(
            email.message_from_bytes(
                envelope.original_content, _class=EmailMessage, policy=email.policy.default
            )
        )
        return "250 OK"


@contextmanager
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


class Received:
    """What the HTTP receiver got: (path, headers, raw body) per request."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.requests: list[tuple[str, dict[str, str], bytes]] = []

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, _, body in self.requests]

    def events(self) -> list[str]:
        return [b["event"] for b in self.bodies()]

    def wait(self, n: int, seconds: float, why: Callable[[], str] = lambda: "") -> None:
        deadline = time.monotonic() + seconds
        while len(self.requests) < n:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(self.requests)} request(s) after {seconds:.0f} s, expected {n}. {why()}"
                )
            time.sleep(0.25)


@contextmanager
def http_receiver(status: int = 200) -> Iterator[tuple[Received, str]]:
    """A local HTTP server answering every POST with ``status``; its base URL."""
    received = Received(status)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.requests.append((self.path, dict(self.headers.items()), body))
            self.send_response(received.status)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def alerts_yaml(
    smtp_port: int | None, webhooks: list[str], secret_env: str | None = None, events: list[str] | None = None
) -> str:
    """The report (SMTP) and alerts sections of a test project's clarion.yaml."""
    lines = []
    if smtp_port is not None:
        lines += [
            "report:",
            "  smtp_host: 127.0.0.1",
            f"  smtp_port: {smtp_port}",
            "  retries: 1",
            "  retry_seconds: 0",
            "  timeout_seconds: 5",
        ]
    lines += ["alerts:", "  retry_seconds: 0", "  webhook_retries: 1"]
    if smtp_port is not None:
        lines.append("  email: [ops@example.org]")
    if webhooks:
        lines.append("  webhooks: " + json.dumps(webhooks))
    if secret_env:
        lines.append(f"  webhook_secret_env: {secret_env}")
    if events:
        lines.append("  events: [" + ", ".join(events) + "]")
    return "\n".join(lines) + "\n"
