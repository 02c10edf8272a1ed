"""`clarion prefect start|status|stop`: one real Prefect server kept for a project, used by the
project's commands instead of a temporary server per command, ignored once it is gone."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest
from ops_helpers import CLARION, QUIET

from clarion.config.loading import load_settings
from clarion.ops import local_server

TEMPORARY = "Starting temporary server"  # what Prefect logs when it starts one for the process


def _env() -> dict[str, str]:
    env = {**os.environ, **QUIET}
    for name in ("PREFECT_API_URL", "PREFECT_HOME", "CLARION_CONFIG"):
        env.pop(name, None)
    return env


def _clarion(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([CLARION, *args], cwd=root, env=_env(), capture_output=True, text=True, timeout=600)
    if check:
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def _flow_runs(url: str) -> list[dict]:
    request = urllib.request.Request(
        f"{url}/flow_runs/filter", data=b"{}", headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) still takes signal 0: read its state
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().split(")")[-1].split()[0] != "Z"


@pytest.mark.slow  # starts a real Prefect server and runs commands through it (64 s on 2 cores)
def test_a_kept_server_serves_the_projects_commands_until_stopped(tmp_path: Path) -> None:
    _clarion(tmp_path, "generate", "--customers", "150")
    started = json.loads(_clarion(tmp_path, "prefect", "start", "--json").stdout)
    try:
        assert started["already"] is False and _alive(started["pid"])
        state_file = tmp_path / "var" / "prefect" / "server.json"
        assert json.loads(state_file.read_text())["url"] == started["url"]
        again = json.loads(_clarion(tmp_path, "prefect", "start", "--json").stdout)
        assert again["already"] is True and again["pid"] == started["pid"]  # one server, not two
        status = json.loads(_clarion(tmp_path, "prefect", "status", "--json").stdout)
        assert status["running"] is True and status["url"] == started["url"]

        before = len(_flow_runs(started["url"]))
        done = _clarion(tmp_path, "extract")
        assert TEMPORARY not in done.stderr + done.stdout
        runs = _flow_runs(started["url"])
        assert len(runs) > before  # the extract flow run was recorded on the kept server
        assert any(r["state_type"] == "COMPLETED" for r in runs)
        # the operations verbs, which need a lasting server, find it without PREFECT_API_URL
        assert json.loads(_clarion(tmp_path, "deployments", "list", "--json").stdout) == []
        shown = _clarion(tmp_path, "status").stdout
        assert f"Prefect    server kept for this project: {started['ui']} (pid {started['pid']};" in shown
    finally:
        stopped = json.loads(_clarion(tmp_path, "prefect", "stop", "--json").stdout)
    assert stopped["stopped"] is True and stopped["pid"] == started["pid"]
    assert not _alive(started["pid"]) and not state_file.exists()
    gone = _clarion(tmp_path, "prefect", "status", check=False)
    assert gone.returncode == 1 and "No kept Prefect server" in gone.stdout
    assert "No kept Prefect server was running" in _clarion(tmp_path, "prefect", "stop").stdout
    assert "to browse it: clarion prefect start" in _clarion(tmp_path, "status").stdout
    refused = _clarion(tmp_path, "deployments", "list", check=False)
    assert refused.returncode != 0 and "PREFECT_API_URL is not set" in refused.stderr

    # with the server gone, a command starts Prefect's temporary server again
    done = _clarion(tmp_path, "extract")
    assert TEMPORARY in done.stderr + done.stdout


def test_a_server_that_is_gone_is_ignored_and_its_state_file_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clarion.runtime import prepare_prefect

    (tmp_path / "clarion.yaml").write_text("prefect:\n  home: var/prefect\n")
    settings = load_settings(tmp_path / "clarion.yaml", env={})
    home = Path(settings.prefect.home)
    home.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    state = home / local_server.STATE
    state.write_text(json.dumps({"url": "http://127.0.0.1:9/api", "pid": dead.pid}))
    for name in ("PREFECT_API_URL", "PREFECT_HOME", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"):
        monkeypatch.delenv(name, raising=False)  # prepare_prefect sets them; undone after the test
    for name in ("PREFECT_LOGGING_EXTRA_LOGGERS", "PREFECT_LOGGING_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    assert local_server.running(settings) is None
    assert not state.exists()  # its process is gone: the file goes too

    state.write_text("{not json")
    prepare_prefect(settings)
    assert "PREFECT_API_URL" not in os.environ and not state.exists()

    # alive but not answering (this test process itself): ignored, the file kept for `prefect stop`
    state.write_text(json.dumps({"url": "http://127.0.0.1:9/api", "pid": os.getpid()}))
    monkeypatch.delenv("PREFECT_HOME")
    prepare_prefect(settings)
    assert "PREFECT_API_URL" not in os.environ and state.exists()


def test_a_taken_port_is_a_clear_message(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _clarion(tmp_path, "prefect", "start", "--port", str(port), check=False)
    assert done.returncode == 2
    assert f"port {port} on 127.0.0.1 is taken" in done.stderr and "--port" in done.stderr
    assert not (tmp_path / "var" / "prefect" / local_server.STATE).exists()
