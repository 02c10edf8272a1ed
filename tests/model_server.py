"""Model servers for the content tests: the real `transformers serve` with the embedded weights, and a
small local server speaking the OpenAI chat-completions protocol that fails, refuses or answers as a
test scripts it (and can forward to the real server: a flaky network in front of a real model)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def served_copy(root: Path) -> Path:
    """The embedded GGUF converted as LocalLM.load converts it (the machine's cache), then a folder to
    serve: its files linked, and a generation_config.json that samples. `transformers serve` samples
    only when the model's generation config says do_sample (a request's temperature does not turn it
    on), and a copy that never samples would give the same candidate n times."""
    from models.content.llm import LMSettings, LocalLM

    lm = LocalLM.load(LMSettings(batch_size=4))
    converted = lm.folder
    del lm
    served = root / "SmolLM2-135M-Instruct"
    served.mkdir()
    for f in converted.iterdir():
        if f.name != "generation_config.json":
            (served / f.name).symlink_to(f)
    config = json.loads((converted / "generation_config.json").read_text())
    (served / "generation_config.json").write_text(json.dumps({**config, "do_sample": True, "top_k": 0}))
    return served


@contextmanager
def transformers_serve(folder: Path, log: Path, timeout: float = 180) -> Iterator[str]:
    """`transformers serve <folder>` on a free port, offline; yields its API's base URL (…/v1)."""
    exe = Path(sys.executable).with_name("transformers")
    if not exe.exists() and shutil.which("transformers"):
        exe = Path(shutil.which("transformers") or "transformers")
    port = free_port()
    env = {**os.environ, **OFFLINE}
    args = [str(exe), "serve", str(folder), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    with log.open("w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"transformers serve exited ({proc.returncode}): {log.read_text()[-2000:]}"
                )
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"transformers serve did not start in {timeout:.0f} s: {log.read_text()[-2000:]}"
                )
            time.sleep(0.5)
        yield f"{url}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


Reply = tuple[int, dict[str, Any] | str, dict[str, str]]  # status, JSON body (or text), headers


class ProtocolServer:
    """A local HTTP server speaking the OpenAI chat-completions protocol, in a thread of the test.

    ``script``: replies for the first requests to /chat/completions, in order (a 503, a 429, ...);
    after them each request is answered by ``answer(body)`` or, with ``upstream``, forwarded to that
    real server. Every request is recorded (path, headers, body)."""

    def __init__(
        self,
        *,
        models: list[str] | None = None,
        script: list[Reply] | None = None,
        answer: Callable[[dict[str, Any]], Reply] | None = None,
        upstream: str | None = None,
    ) -> None:
        self.models = ["served-model"] if models is None else models
        self.script = list(script or [])
        self.answer = answer or chat_answer
        self.upstream = upstream
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _reply(self, status: int, body: dict[str, Any] | str, headers: dict[str, str]) -> None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header(
                    "Content-Type", "text/plain" if isinstance(body, str) else "application/json"
                )
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                outer._record(self, None)
                if self.path == "/v1/models" and outer.models is not None:
                    data = [{"id": m, "object": "model", "owned_by": "test"} for m in outer.models]
                    self._reply(200, {"object": "list", "data": data}, {})
                else:
                    self._reply(404, {"detail": "Not Found"}, {})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                outer._record(self, body)
                if self.path != "/v1/chat/completions":
                    self._reply(404, {"detail": "Not Found"}, {})
                    return
                with outer.lock:
                    scripted = outer.script.pop(0) if outer.script else None
                if scripted is not None:
                    self._reply(*scripted)
                elif outer.upstream:
                    r = httpx.post(f"{outer.upstream}/chat/completions", json=body, timeout=600)
                    self._reply(r.status_code, r.json(), {})
                else:
                    self._reply(*outer.answer(body))

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _record(self, handler: BaseHTTPRequestHandler, body: Any) -> None:
        with self.lock:
            self.requests.append({"path": handler.path, "headers": dict(handler.headers), "body": body})

    def chat_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"].endswith("/chat/completions")]

    def __enter__(self) -> ProtocolServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def chat_answer(
    body: dict[str, Any],
    texts: list[str] | None = None,
    logprobs: list[float] | None = None,
    honour_n: bool = True,
) -> Reply:
    """A chat completion as the protocol has it: ``n`` choices (or one, like a server that ignores n),
    each text's tokens given one log-probability each when ``logprobs``."""
    n = int(body.get("n", 1)) if honour_n else 1
    texts = texts or [f"Reply {body.get('seed')}-{k}" for k in range(n)]
    choices = []
    for k in range(n):
        text = texts[k % len(texts)]
        choice: dict[str, Any] = {
            "index": k,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
        }
        if logprobs is not None and body.get("logprobs"):
            choice["logprobs"] = {
                "content": [
                    {"token": t, "logprob": lp} for t, lp in zip(text.split(), logprobs, strict=False)
                ]
            }
        choices.append(choice)
    usage = {"prompt_tokens": 20, "completion_tokens": 5 * n, "total_tokens": 20 + 5 * n}
    return (
        200,
        {
            "id": "x",
            "object": "chat.completion",
            "model": body.get("model"),
            "choices": choices,
            "usage": usage,
        },
        {},
    )
