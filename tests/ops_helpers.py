"""A Prefect server of its own (`prefect server start` in a subprocess) and `clarion worker` /
`clarion deploy` as a user runs them, for the operations tests."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_helpers import free_port
from serve_helpers import interrupt

BIN = Path(sys.executable).parent
CLARION = str(BIN / "clarion")
PREFECT = str(BIN / "prefect")
QUIET = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "RUNTIME__DLTHUB_TELEMETRY": "false",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "HF_HUB_OFFLINE": "1",
}

# two deployments of the tests' own: names that `clarion serve`'s tests on the same server do not use
PREFECT_YAML = """
deployments:
  - name: ops-writer
    entrypoint: flows/pipeline.py:pipeline
    parameters: {config_path: clarion.yaml, stages: [prepare], wait_seconds: 300}
    tags: [clarion-warehouse]
    schedules: [{cron: "0 5 * * *", timezone: UTC}]
    work_pool: {name: clarion}
  - name: ops-reader
    entrypoint: flows/content.py:content_approval
    parameters: {config_path: clarion.yaml}
    work_pool: {name: clarion}
"""


@contextlib.contextmanager
def prefect_server(home: Path, log: Path, slot_wait_seconds: int = 1) -> Iterator[str]:
    """`prefect server start` on a free port with its own PREFECT_HOME (API and database only, no UI
    and no background services); yields its API URL once /api/health answers. A run refused a
    concurrency slot is proposed again after ``slot_wait_seconds`` (Prefect's default is 30)."""
    port = free_port()
    env = {
        **os.environ,
        **QUIET,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": str(slot_wait_seconds),
    }
    env.pop("PREFECT_API_URL", None)
    argv = [
        PREFECT,
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-ui",
        "--no-services",
    ]
    with log.open("w") as out:
        server = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                pytest.fail(f"prefect server start exited:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prefect server start did not answer within 120 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        interrupt(server, "prefect server", log)


def cli_env(api_url: str, **extra: str) -> dict[str, str]:
    return {**os.environ, **QUIET, "PREFECT_API_URL": api_url, **extra}


def clarion_json(cwd: Path, api_url: str, *args: str) -> dict | list:
    """`clarion ARGS --json` in ``cwd`` against the server; its JSON output."""
    done = subprocess.run(
        [CLARION, *args, "--json"], cwd=cwd, env=cli_env(api_url), capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@contextlib.contextmanager
def worker(cwd: Path, api_url: str, log: Path) -> Iterator[subprocess.Popen]:
    """`clarion worker` in ``cwd``, polling every second; stopped with Ctrl-C on leaving."""
    env = cli_env(api_url, PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="5")
    with log.open("w") as out:
        process = subprocess.Popen(
            [CLARION, "worker"], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield process
    finally:
        interrupt(process, "clarion worker", log)
