"""`clarion serve` as a subprocess against the session's Prefect server, stopped with Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CLARION = str(Path(sys.executable).with_name("clarion"))


@contextlib.contextmanager
def serving(cwd: Path, log: Path) -> Iterator[subprocess.Popen]:
    """`clarion serve --paused --limit 2` in ``cwd`` (its output to ``log``); SIGINT on leaving, as a
    person's Ctrl-C, failing the test if it does not stop within ``STOP_WITHIN`` s. The caller
    checks the exit."""
    from prefect.settings import PREFECT_API_URL

    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),  # the session's test server
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",  # pick the run up within a second, not ten
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    with log.open("w") as out:
        server = subprocess.Popen(
            [CLARION, "serve", "--paused", "--limit", "2"],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield server
    finally:
        interrupt(server, "clarion serve", log)


STOP_WITHIN = 60  # s


def interrupt(process: subprocess.Popen, what: str, log: Path) -> None:
    """SIGINT, as a person's Ctrl-C (a Prefect worker ignores SIGTERM while it has runs); kill it and
    fail the test if it has not stopped within ``STOP_WITHIN`` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    try:
        process.wait(timeout=STOP_WITHIN)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)
        pytest.fail(f"{what} did not stop on Ctrl-C within {STOP_WITHIN} s:\n{log.read_text()[-4000:]}")
    took = time.monotonic() - started
    if took > 30:  # slow but stopped: said, so a trend towards the limit shows in the logs
        print(f"{what} took {took:.0f} s to stop on Ctrl-C")


def wait_for(what: str, probe: Callable[[], Any], timeout: float, log: Path, server: subprocess.Popen) -> Any:
    """Poll ``probe`` each second until it returns something truthy; fail naming what never happened
    (with the end of the serving log), or at once if `clarion serve` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"clarion serve exited while waiting for {what}:\n{log.read_text()[-4000:]}")
        found = probe()
        if found:
            return found
        time.sleep(1)
    raise AssertionError(
        f"{what}: not within {timeout:.0f} s. clarion serve's log:\n{log.read_text()[-4000:]}"
    )


def registered(client: Any, full_name: str, config: Path, triggers: int = 0) -> Any:
    """(deployment, the automations it owns) once this project's `clarion serve` has registered it
    (its config_path) with ``triggers`` automations; None until then. Another test's registration
    under the same name on the shared server does not count."""
    from prefect.exceptions import ObjectNotFound

    try:
        deployment = client.read_deployment_by_name(full_name)
    except ObjectNotFound:
        return None
    if deployment.parameters.get("config_path") != str(config):
        return None
    automations = client.read_resource_related_automations(f"prefect.deployment.{deployment.id}")
    return (deployment, automations) if len(automations) == triggers else None
