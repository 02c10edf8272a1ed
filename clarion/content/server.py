"""content.source as a model server: the API key from where the settings say, then a connected client.

The client itself (models.content.remote) knows nothing of Clarion's settings or of Prefect; here the
key is read from the environment variable ``content.api_key_env`` or the Prefect Secret block
``content.api_key_secret`` (models/ may not import Prefect), and the content settings become the
client's. The key only ever goes into the request header: never into a message, a log or provenance.
"""

from __future__ import annotations

import os
from typing import Any

from models.content.remote import ModelServerError, RemoteLM, ServerSettings, is_url


def uses_server(settings: Any) -> bool:
    """Is the content model a server (content.source an http(s) URL) rather than a local model?"""
    return is_url(settings.content.source)


def connect(settings: Any) -> RemoteLM:
    """The model server of content.source, checked to answer and to serve content.model."""
    c = settings.content
    return RemoteLM.connect(
        ServerSettings(
            endpoint=str(c.source),
            model=c.model,
            api_key=api_key(settings),
            concurrency=c.concurrency,
            request_timeout=c.request_timeout,
            retries=c.retries,
            max_new_tokens=c.max_new_tokens,
            temperature=c.temperature,
            top_p=c.top_p,
            seed=c.seed,
        )
    )


def api_key(settings: Any) -> str | None:
    """The model server's key, or None when the settings name none (a local server needs none)."""
    c = settings.content
    if c.api_key_env:
        value = os.environ.get(c.api_key_env, "")
        if not value:
            raise ModelServerError(
                f"content.api_key_env names the environment variable {c.api_key_env}, which is not set: "
                f"export it with the model server's API key, or remove content.api_key_env"
            )
        return value
    if c.api_key_secret:
        from prefect.blocks.system import Secret

        try:
            return str(Secret.load(c.api_key_secret).get())
        except ValueError as exc:
            raise ModelServerError(
                f"content.api_key_secret names the Prefect Secret block {c.api_key_secret!r}, which does not "
                "exist: create it (prefect block create secret) or remove the setting"
            ) from exc
    return None
