"""Settings of the REST API and web app (`clarion api serve`) and of the read snapshot it serves."""

from __future__ import annotations

from pydantic import Field

from clarion.config.base import Section


class ApiSettings(Section):
    """The API process and what it reads (docs/api.md)."""

    host: str = Field("127.0.0.1", min_length=1, description="address `clarion api serve` listens on")
    port: int = Field(8000, ge=1, le=65535, description="port `clarion api serve` listens on")
    snapshot: bool = Field(
        True,
        description="publish a read-only copy of the warehouse when a writer (a run, an approval, an "
        "erasure) finishes; the API reads only that copy, so a run in progress neither blocks nor "
        "half-shows",
    )
    token_minutes: int = Field(
        60, ge=1, le=10_080, description="lifetime of an OAuth2 bearer token from POST /api/v1/token"
    )
    session_minutes: int = Field(480, ge=5, le=10_080, description="lifetime of a web-app login")
    write_wait_seconds: float = Field(
        5.0,
        ge=0,
        le=600,
        description="a write through the API (approve, edit, subject request) waits this long for a "
        "running pipeline to release the warehouse, then answers 409",
    )
