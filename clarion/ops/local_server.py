"""A Prefect server kept running for this project, so commands skip Prefect's temporary server.

Without PREFECT_API_URL every command that runs a flow first starts a temporary Prefect server of its
own (19-40 s measured on 2 busy cores before a run whose stages take 30 s). `clarion prefect start`
starts one server instead, in the background, on the project's Prefect home (``prefect.home``,
var/prefect: the database the temporary servers use, so the UI shows every earlier run too) and
writes its address and process id to ``<prefect.home>/server.json``. While it answers, every later
command of this project (`clarion run`, `report`, `serve`, ...) uses it: ``prepare_prefect`` sets
PREFECT_API_URL to it. A server that stopped answering, or a state file left by one that died, is
ignored (the file removed) and the command starts a temporary server as before. `clarion prefect
stop` ends it. A PREFECT_API_URL the user set always wins.

This module does not import Prefect: ``prepare_prefect`` calls it before Prefect is imported.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clarion.config import Settings
from clarion.errors import ClarionError
from clarion.runs import process_alive

STATE = "server.json"
LOG = "server.log"
DEFAULT_PORT = 4200
HEALTH_TIMEOUT = 1.0  # seconds a command waits for a kept server's health check before ignoring it
QUIET = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}


class LocalServerError(ClarionError):
    """The kept Prefect server could not be started or stopped."""

    exit_code = 2


def state_file(settings: Settings) -> Path:
    return Path(settings.prefect.home) / STATE


def _healthy(url: str, timeout: float = HEALTH_TIMEOUT) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as answer:
            return answer.status == 200
    except (OSError, ValueError):
        return False


def running(settings: Settings) -> dict[str, Any] | None:
    """The kept server's state (url, pid, port, started_at, log) if it is alive and answers; a state
    file of a server that is gone is removed."""
    path = state_file(settings)
    try:
        state = json.loads(path.read_text())
        url, pid = str(state["url"]), int(state["pid"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    if process_alive(pid) and _healthy(url):
        return state
    if not process_alive(pid):
        with contextlib.suppress(OSError):
            path.unlink()
    return None


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prefect_command() -> list[str]:
    """`prefect` of this interpreter's environment (the one Clarion runs in)."""
    script = Path(sys.executable).with_name("prefect")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from prefect.cli import app; app()"]


def start(settings: Settings, port: int | None = None, wait_seconds: float = 120.0) -> dict[str, Any]:
    """Start the kept server unless one answers already; return its state (``already``: True when it
    was running). ``port``: None takes 4200 when free, else any free port."""
    state = running(settings)
    if state is not None:
        return {**state, "already": True}
    home = Path(settings.prefect.home)
    home.mkdir(parents=True, exist_ok=True)
    if port is None:
        port = DEFAULT_PORT if _port_free(DEFAULT_PORT) else _free_port()
    elif not _port_free(port):
        raise LocalServerError(
            f"port {port} on 127.0.0.1 is taken: give another with `clarion prefect start --port N`, or "
            "leave --port out to take a free one"
        )
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, **QUIET, "PREFECT_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)
    log = home / LOG
    argv = [*_prefect_command(), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    started = time.monotonic()
    with log.open("w") as out:
        # its own session: the server outlives this command and a Ctrl-C in this terminal
        server = subprocess.Popen(
            argv,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = started + wait_seconds
    while not _healthy(url, timeout=2.0):
        if server.poll() is not None:
            tail = log.read_text(errors="replace")[-1500:]
            raise LocalServerError(f"`prefect server start` exited with code {server.returncode}:\n{tail}")
        if time.monotonic() > deadline:
            _terminate(server.pid)
            raise LocalServerError(
                f"the Prefect server did not answer at {url} within {wait_seconds:.0f} s (its log: {log})"
            )
        time.sleep(0.25)
    state = {
        "url": url,
        "ui": f"http://127.0.0.1:{port}",
        "pid": server.pid,
        "port": port,
        "home": str(home),
        "log": str(log),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "start_seconds": round(time.monotonic() - started, 1),
    }
    tmp = state_file(settings).with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(state_file(settings))
    return {**state, "already": False}


def _terminate(pid: int, wait_seconds: float = 15.0) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)  # the server and the uvicorn workers it started
    deadline = time.monotonic() + wait_seconds
    while process_alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    if process_alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def stop(settings: Settings) -> dict[str, Any] | None:
    """Stop the kept server; its state, or None when none was running."""
    path = state_file(settings)
    try:
        state = json.loads(path.read_text())
        pid = int(state["pid"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        path.unlink(missing_ok=True)
        return None
    was_alive = process_alive(pid)
    if was_alive:
        _terminate(pid)
    path.unlink(missing_ok=True)
    return state if was_alive else None


def use_if_running(settings: Settings) -> str | None:
    """Point this process at the kept server when no PREFECT_API_URL is set and one answers; its URL."""
    if os.environ.get("PREFECT_API_URL"):
        return None
    state = running(settings)
    if state is None:
        return None
    os.environ["PREFECT_API_URL"] = state["url"]
    return str(state["url"])
