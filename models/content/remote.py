"""A model server as the content model: any OpenAI-compatible chat-completions API.

Teams with a larger model (vLLM, llama.cpp's server, TGI, Ollama, `transformers serve`) point
``content.source`` at its base URL (``http://host:port/v1``) and everything else stays the same:
the prompts, the slot checks, the meaning floor, the grounding of facts in templates, provenance and
approval. `RemoteLM` implements the same Generator protocol as the embedded `LocalLM`
(models/content/drafts.py), so the drafting code cannot tell them apart.

What differs, because a server hides its tokenizer and weights:

* Bans cannot be enforced while decoding (``logit_bias`` needs the server's token ids, which an
  OpenAI-compatible API does not expose), so they are enforced after it: a candidate containing a
  banned substring comes back as an empty text. It still counts as generated (the usable rate keeps
  the right denominator) and is never usable.
* There is no weights file to hash: ``weights_sha256`` is the sha256 of ``"endpoint|model"``, and the
  provenance says so. Only the server's operator can vouch for what that name serves.
* ``n`` candidates are asked for in one request; a server that ignores ``n`` (transformers serve,
  llama.cpp) answers with one, and the rest are asked for one by one with the next seeds, so the
  same seed gives the same requests either way. ``logprobs`` are asked for too (the mean per token
  becomes `Generation.logprob`); a server that ignores them gives None.

Requests run ``concurrency`` at a time (a server that batches, like vLLM, batches them); connection
errors, 429 and 5xx answers are retried ``retries`` times with exponential backoff (a
``Retry-After`` header is honoured); anything else fails at once, a request that outlives
``request_timeout`` too (the server is still busy with it: sending it again would only queue a
copy). Every failure names the endpoint and what to do. The API key is sent as a bearer token
and is never logged, shown or recorded: error texts have it masked, and neither `repr` nor
provenance holds it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from models.content.llm import Generation, LMError, chat_messages, work_stats

BACKEND = "openai"
WEIGHTS_NOTE = "sha256 of 'endpoint|model': a model server does not expose its weights, so this names them"
MAX_BACKOFF = 30.0  # seconds: no single wait between retries is longer
STOP = ["\n"]  # one line per slot, as the embedded model stops at its first newline
_CHAT = "clarion-chat"  # marks a chat_prompt's JSON, so generate() can tell it from a plain prompt
# host:port or a bare localhost / IPv4 address: a server address someone forgot the scheme of
_NO_SCHEME = re.compile(
    r"^(?:(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\]):\d+|localhost|\d{1,3}(?:\.\d{1,3}){3})(?:/.*)?$"
)

log = logging.getLogger(__name__)


class ModelServerError(LMError):
    """The model server could not be reached, refused a request or answered something unusable."""


def is_url(value: object) -> bool:
    """Does a content.source value name a server (anything with a scheme) rather than a local path?"""
    return isinstance(value, str) and "://" in value


def looks_like_address(value: str) -> bool:
    """``127.0.0.1:8000/v1``, ``localhost/v1``: a server address without its scheme, not a path."""
    return bool(_NO_SCHEME.match(value.strip()))


def endpoint(url: str) -> str:
    """The API's base URL, checked and normalised: http(s), a host, no credentials, no query, no
    trailing slash or ``/chat/completions`` (a pasted full URL still works). Raises ValueError with
    the fix in its message (the settings show it as content.source's problem)."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(
            f"{_shown(url)} is not an http(s) URL: a model server is given as http://host:port/v1 "
            "(or https://...); a local model as a directory or .gguf file path"
        )
    if not parts.hostname:
        raise ValueError(f"{_shown(url)} has no host: write it as {parts.scheme}://host:port/v1")
    if parts.username or parts.password:
        raise ValueError(
            f"{_shown(url)} holds credentials: remove them from the URL and put the API key in an "
            "environment variable named by content.api_key_env (or a Prefect Secret, content.api_key_secret)"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"{_shown(url)} has a query or fragment: give only the API's base URL (…/v1)")
    try:
        parts.port  # noqa: B018 -- a port that is not a number raises here
    except ValueError:
        raise ValueError(f"{_shown(url)} has a port that is not a number") from None
    path = parts.path.rstrip("/")
    for tail in ("/chat/completions", "/completions"):
        if path.endswith(tail):
            path = path[: -len(tail)]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _shown(url: str) -> str:
    """A URL as an error may show it: any user:password@ masked."""
    return repr(re.sub(r"(://)[^/@\s]*@", r"\1***@", url))


@dataclass(frozen=True)
class ServerSettings:
    endpoint: str  # base URL of the OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1
    model: str | None = None  # None: the server's first model (GET /models)
    api_key: str | None = field(default=None, repr=False)  # sent as a bearer token, never shown
    concurrency: int = 4  # requests in flight at once
    request_timeout: float = 60.0  # seconds per request
    retries: int = 3  # retries of a request after a connection error, a timeout, 429 or 5xx
    backoff: float = 0.5  # seconds before the first retry; doubles each time, at most MAX_BACKOFF
    max_new_tokens: int = 40
    temperature: float = 0.6
    top_p: float = 0.8
    seed: int = 7


class RemoteLM:
    """A model on an OpenAI-compatible server, behind the Generator protocol. Use `connect`."""

    backend = BACKEND  # provenance: which kind of backend wrote the slots
    adapter = None  # a server's own fine-tuning is invisible here: no Clarion adapter applies

    def __init__(self, settings: ServerSettings, client: Any, model: str, models: list[str]) -> None:
        self.settings = settings
        self.endpoint = settings.endpoint
        self.name = model
        self.models = models  # what the server said it serves (empty when it has no /models)
        self.weights_sha256 = hashlib.sha256(f"{self.endpoint}|{model}".encode()).hexdigest()
        self._client = client
        self._lock = threading.Lock()
        self._n_supported: bool | None = None  # learnt from the first answer asked for n > 1
        self._logprobs: bool | None = None  # False once the server refused the field
        self._logprobs_returned = False  # True once an answer carried them (transformers serve: never)
        self._requests = self._retried = self._dropped = 0
        self._rows = self._tokens = 0
        self._seconds = 0.0

    def __repr__(self) -> str:
        return f"RemoteLM(endpoint={self.endpoint!r}, model={self.name!r})"

    @classmethod
    def connect(cls, settings: ServerSettings) -> RemoteLM:
        """Check the server answers and serves the model (GET /models), before any drafting starts."""
        import httpx

        settings = replace(settings, endpoint=_checked(settings.endpoint))
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        client = httpx.Client(
            headers=headers,
            timeout=settings.request_timeout,
            limits=httpx.Limits(max_connections=settings.concurrency),
        )
        probe = cls(settings, client, settings.model or "", [])
        try:
            listing = probe._call("GET", "/models", missing_ok=True)
        except BaseException:
            client.close()
            raise
        models = [str(m.get("id")) for m in (listing or {}).get("data", []) if isinstance(m, dict)]
        model = settings.model
        if model is None:
            if not models:
                client.close()
                raise ModelServerError(
                    f"model server {settings.endpoint} does not list its models (GET /models): set "
                    "content.model to the name of the model it serves"
                )
            model = models[0]
        elif models and model not in models:
            client.close()
            raise ModelServerError(
                f"model server {settings.endpoint} does not serve the model {model!r} (content.model); it "
                f"serves {', '.join(repr(m) for m in models[:10])}: set content.model to one of them "
                "(or leave it empty for the first)"
            )
        log.info("content model: %s on the model server %s", model, settings.endpoint)
        return cls(settings, client, model, models)

    def close(self) -> None:
        self._client.close()

    # -- the Generator protocol ----------------------------------------------------------------------

    def chat_prompt(self, system: str, user: str, examples: Sequence[tuple[str, str]] = ()) -> str:
        """The messages of one chat, as a string (the protocol's prompts are strings); `generate`
        sends them as the request's ``messages``. The server applies its own chat template.
        ``examples`` (asked, answered) are earlier turns of the chat (few-shot)."""
        messages = chat_messages(system, user, examples)
        return json.dumps({_CHAT: messages}, ensure_ascii=False)

    def generate(
        self,
        prompts: list[str],
        candidates: int = 1,
        *,
        max_new_tokens: int | None = None,
        ban: Sequence[str] = (),
        seed: int | None = None,
        avoid: Sequence[str] = (),
    ) -> list[list[Generation]]:
        """``candidates`` generations for each prompt, in prompt order; a candidate that contains a
        banned substring (case-insensitive) comes back with an empty text. ``avoid`` (the seed a
        slot rewrites) cannot be enforced through the protocol while decoding: a server's copy of
        the seed is caught after, by drafting's ``copy`` check."""
        if candidates < 1:
            raise ValueError("candidates must be at least 1")
        limit = self.settings.max_new_tokens if max_new_tokens is None else max_new_tokens
        if limit < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if not prompts:
            return []
        base = self.settings.seed if seed is None else seed
        needles = [b.lower() for b in ban if b]
        # one job per prompt asking for n; per candidate once the server is known to ignore n
        per_job = 1 if self._n_supported is False else candidates
        jobs = [
            (i, per_job, base + i * candidates + j)
            for i in range(len(prompts))
            for j in range(0, candidates, per_job)
        ]
        started = time.perf_counter()
        failed = threading.Event()  # set by the job that failed, before its worker can take the next

        def job(messages: list[dict[str, str]], n: int, job_seed: int) -> list[Generation]:
            if failed.is_set():  # never sent; a job started after the failure is later in order
                raise ModelServerError("not sent: an earlier request of this call failed")
            try:
                return self._candidates(messages, n, job_seed, limit)
            except BaseException:
                failed.set()
                raise

        pool = ThreadPoolExecutor(max_workers=min(self.settings.concurrency, len(jobs)))
        try:
            futures = [pool.submit(job, _messages(prompts[i]), n, job_seed) for i, n, job_seed in jobs]
            done = [f.result() for f in futures]  # the first failure in order is the one that failed
        finally:  # the first failure ends the call: requests not yet sent are never sent
            pool.shutdown(wait=True, cancel_futures=True)
        out: list[list[Generation]] = [[] for _ in prompts]
        for (i, _, _), generations in zip(jobs, done, strict=True):
            out[i].extend(generations)
        for row in out:
            for k, g in enumerate(row):
                if needles and any(n in g.text.lower() for n in needles):
                    row[k] = Generation(text="", new_tokens=g.new_tokens, logprob=None)
                    self._dropped += 1
        with self._lock:
            self._seconds += time.perf_counter() - started
            self._rows += sum(len(row) for row in out)
            self._tokens += sum(g.new_tokens for row in out for g in row)
        return out

    def score(self, texts: list[str], prefix: str = "") -> list[float] | None:
        """Fluency from the model's own likelihood of a given text needs prompt log-probabilities,
        which the chat-completions API does not return: unknown (the selection spreads its weight)."""
        return None

    # -- what it did and what it was -----------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Cumulative work of this client (wall-clock seconds: requests overlap)."""
        return {
            **work_stats(self._rows, self._tokens, self._seconds),
            "requests": self._requests,
            "retries": self._retried,
            "dropped_for_bans": self._dropped,
        }

    def provenance(self) -> dict[str, Any]:
        """What a draft records about its model: the endpoint (no credentials) and the parameters
        of the requests. Never the key."""
        s = self.settings
        return {
            "backend": BACKEND,
            "name": self.name,
            "endpoint": self.endpoint,
            "weights_sha256": self.weights_sha256,
            "weights_sha256_is": WEIGHTS_NOTE,
            "parameters": {
                "temperature": s.temperature,
                "top_p": s.top_p,
                "max_tokens": s.max_new_tokens,
                "seed": s.seed,
                "stop": STOP,
                "n_per_request": "n" if self._n_supported is not False else 1,
                "logprobs": "returned"
                if self._logprobs_returned
                else ("refused" if self._logprobs is False else "asked for, not returned"),
                "bans": "enforced by dropping candidates that contain a banned substring",
                "concurrency": s.concurrency,
                "request_timeout": s.request_timeout,
                "retries": s.retries,
            },
        }

    # -- requests ------------------------------------------------------------------------------------

    def _candidates(self, messages: list[dict[str, str]], n: int, seed: int, limit: int) -> list[Generation]:
        """``n`` candidates for one chat: one request asking for n, then one per missing candidate
        (seed, seed + 1, ...) if the server answered with fewer."""
        got: list[Generation] = []
        while len(got) < n:
            ask = 1 if self._n_supported is False else n - len(got)
            answer = self._chat(messages, ask, seed + len(got), limit)
            choices = [c for c in answer.get("choices") or [] if isinstance(c, dict)]
            if not choices:
                raise ModelServerError(
                    f"model server {self.endpoint} answered a chat completion without choices: is it an "
                    "OpenAI-compatible API (content.source should end in /v1)?"
                )
            if ask > 1:
                with self._lock:
                    self._n_supported = len(choices) >= ask
            tokens = (answer.get("usage") or {}).get("completion_tokens")
            for c in choices[:ask]:
                got.append(_generation(c, tokens, len(choices)))
            if any(g.logprob is not None for g in got):
                self._logprobs_returned = True
        return got

    def _chat(self, messages: list[dict[str, str]], n: int, seed: int, limit: int) -> dict[str, Any]:
        s = self.settings
        body: dict[str, Any] = {
            "model": self.name,
            "messages": messages,
            "max_tokens": limit,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "seed": seed,
            "stop": STOP,
        }
        if n > 1:
            body["n"] = n
        if self._logprobs is not False:
            body["logprobs"] = True
        try:
            return self._call("POST", "/chat/completions", body)
        except ModelServerError as exc:
            if "logprobs" in body and "logprobs" in str(exc) and "HTTP 4" in str(exc):
                self._logprobs = False  # a server that refuses the field: ask without it from now on
                return self._chat(messages, n, seed, limit)
            raise

    def _call(self, method: str, path: str, body: Any = None, *, missing_ok: bool = False) -> Any:
        """One API call with retries on connection errors, 429 and 5xx; the JSON answer."""
        import httpx

        s = self.settings
        url = self.endpoint + path
        reason = ""
        for attempt in range(s.retries + 1):
            wait = min(MAX_BACKOFF, s.backoff * 2**attempt)
            with self._lock:
                self._requests += 1
            try:
                response = self._client.request(method, url, json=body)
            except httpx.ConnectTimeout:
                reason = f"cannot connect within {s.request_timeout:g} s"
            except httpx.TimeoutException:
                # not retried: the server is still working on it, and a second copy only queues behind it
                raise ModelServerError(
                    f"model server {self.endpoint} did not answer {method} {path} within "
                    f"{s.request_timeout:g} s: raise content.request_timeout, or lower content.concurrency "
                    "(a server that generates one request at a time, like transformers serve, queues the "
                    "others behind it)"
                ) from None
            except httpx.TransportError as exc:
                reason = f"cannot connect ({self._masked(str(exc)) or type(exc).__name__})"
            else:
                code = response.status_code
                if code < 400:
                    try:
                        return response.json()
                    except ValueError:
                        raise ModelServerError(
                            f"model server {self.endpoint} answered {method} {path} with something other "
                            "than JSON: is content.source the base URL of an OpenAI-compatible API (…/v1)?"
                        ) from None
                if code == 429 or code >= 500:
                    reason = f"HTTP {code} {self._detail(response)}".strip()
                    wait = max(wait, min(MAX_BACKOFF, _retry_after(response)))
                elif code in (401, 403):
                    raise ModelServerError(
                        f"model server {self.endpoint} refused the request (HTTP {code}): "
                        + (
                            "check the API key (content.api_key_env or content.api_key_secret)"
                            if s.api_key
                            else "it needs an API key: set content.api_key_env (an environment variable "
                            "holding it) or content.api_key_secret (a Prefect Secret block)"
                        )
                    )
                elif code == 404 and missing_ok:
                    return None
                elif code == 404:
                    raise ModelServerError(
                        f"model server {self.endpoint} has no {path} (HTTP 404): content.source must be the "
                        "base URL of an OpenAI-compatible API, usually ending in /v1"
                    )
                else:
                    raise ModelServerError(
                        f"model server {self.endpoint} refused {method} {path} (HTTP {code}): "
                        f"{self._detail(response)}"
                    )
            if attempt < s.retries:
                with self._lock:
                    self._retried += 1
                log.warning(
                    "model server %s: %s; retry %d of %d in %.1f s",
                    self.endpoint,
                    reason,
                    attempt + 1,
                    s.retries,
                    wait,
                )
                time.sleep(wait)
        raise ModelServerError(
            f"model server {self.endpoint} did not answer {method} {path}: {reason} (after {s.retries + 1} "
            "attempts). Check that it is running and reachable at that address (content.source), or give it "
            "more time (content.request_timeout, content.retries)"
        )

    def _detail(self, response: Any) -> str:
        """The server's own error message, short, with the key masked (some servers echo it)."""
        try:
            data = response.json()
        except ValueError:
            text = response.text
        else:
            error = data.get("error") if isinstance(data, dict) else None
            if isinstance(error, dict):
                text = str(error.get("message") or error)
            elif isinstance(data, dict) and "detail" in data:
                text = str(data["detail"])
            else:
                text = str(error or data)
        return self._masked(" ".join(text.split()))[:300]

    def _masked(self, text: str) -> str:
        key = self.settings.api_key
        return text.replace(key, "***") if key else text


def _checked(url: str) -> str:
    try:
        return endpoint(url)
    except ValueError as exc:
        raise ModelServerError(f"content.source {exc}") from None


def _messages(prompt: str) -> list[dict[str, str]]:
    """A chat_prompt's messages; any other string is sent as one user message."""
    try:
        data = json.loads(prompt)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get(_CHAT), list):
        return data[_CHAT]
    return [{"role": "user", "content": prompt}]


def _generation(choice: dict[str, Any], usage_tokens: Any, choices: int) -> Generation:
    """One choice as a Generation: its first line, tokens (from logprobs, else the usage split over
    the choices), and the mean log-probability per token where the server gave them."""
    message = choice.get("message") or {}
    text = str(message.get("content") or "").lstrip().split("\n", 1)[0].strip()
    content = (choice.get("logprobs") or {}).get("content") or []
    values = [float(t["logprob"]) for t in content if isinstance(t, dict) and _number(t.get("logprob"))]
    if values:
        tokens = len(values)
    elif _number(usage_tokens):
        tokens = round(float(usage_tokens) / max(1, choices))
    else:
        tokens = 0
    return Generation(text=text, new_tokens=tokens, logprob=sum(values) / len(values) if values else None)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _retry_after(response: Any) -> float:
    try:
        return max(0.0, float(response.headers.get("retry-after", 0)))
    except ValueError:
        return 0.0
