"""`clarion api keys` and `clarion api serve` as a user runs them: the CLI, and a real server process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from api_helpers import free_port
from click.testing import CliRunner

from clarion.cli import cli
from clarion.warehouse import Warehouse


def _cli(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_keys_create_list_revoke(project) -> None:
    project()
    created = _cli("api", "keys", "create", "crm-sync", "--role", "service")
    assert created.exit_code == 0, created.output
    key = next(w for w in created.output.split() if w.startswith("clk_"))
    assert "not shown again" in created.output
    listed = json.loads(_cli("api", "keys", "list", "--json").output)
    assert [(k["name"], k["role"], k["revoked_at"]) for k in listed] == [("crm-sync", "service", None)]
    assert key not in _cli("api", "keys", "list").output and key.split("_", 2)[2] not in Path(
        "var/api/keys.sqlite"
    ).read_bytes().decode("latin-1")
    again = _cli("api", "keys", "create", "crm-sync", "--role", "marketer")
    assert again.exit_code == 1 and "exists already" in again.output
    bad_role = _cli("api", "keys", "create", "x", "--role", "admin")
    assert bad_role.exit_code == 2 and "admin" in bad_role.output
    revoked = _cli("api", "keys", "revoke", "crm-sync")
    assert revoked.exit_code == 0 and "revoked key 'crm-sync'" in revoked.output
    assert json.loads(_cli("api", "keys", "list", "--json").output)[0]["revoked_at"]
    missing = _cli("api", "keys", "revoke", "nobody")
    assert missing.exit_code == 1 and "clarion api keys list" in missing.output


def test_api_serve_runs_as_a_process_and_answers(project, tmp_path: Path) -> None:
    settings = project()
    Warehouse.from_settings(settings).ensure()  # publishes the read snapshot
    key = next(
        w
        for w in _cli("api", "keys", "create", "ops", "--role", "engineer").output.split()
        if w.startswith("clk_")
    )
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "clarion.cli", "api", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "clarion api serve did not answer within 60 s"
                time.sleep(0.3)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        me = httpx.get(f"http://127.0.0.1:{port}/api/v1/me", headers={"X-API-Key": key}, timeout=10)
        assert me.json()["role"] == "engineer"
        assert (
            httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=10).json()["info"]["title"]
            == "Clarion API"
        )
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert f"Clarion API on http://127.0.0.1:{port}" in out
    assert key not in out
