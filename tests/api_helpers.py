"""The API's test project and a live server: a real run with drafts, one key per role, real uvicorn."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from project_helpers import query, run_pipeline_in, write_tiny_brief

from clarion.api.keys import KeyStore
from clarion.api.permissions import ROLES
from clarion.config import load_settings


def make_api_project(root: Path, small_root: Path) -> dict[str, Any]:
    """A copy of the small run's project, drafted for its largest segment, with one key per role."""
    shutil.copytree(small_root, root, dirs_exist_ok=True)
    settings = load_settings(root / "clarion.yaml", env={})
    ((segment, _),) = query(
        settings,
        "select segment, count(*) n from ml.customer_scores where run_id = (select max(run_id) from "
        "ml.customer_scores) group by 1 order by n desc, segment limit 1",
    )
    write_tiny_brief(root / "campaigns", "api-test", segment, variants=1)
    result = run_pipeline_in(root, stages=["content"])
    assert result["status"] == "completed", result
    store = KeyStore.for_settings(settings)
    keys = {role: store.create(f"test-{role}", role, by="tests")[1] for role in ROLES}
    return {"root": root, "settings": settings, "keys": keys, "segment": segment, "campaign": "api-test"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """A real uvicorn server for an app, in a thread of the test process."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the API server did not start within 30 s")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


def serve(settings: Any) -> Iterator[LiveServer]:
    from clarion.api import create_app

    with LiveServer(create_app(settings)) as server:
        yield server
