"""What the read routers share: JSON-safe values, pagination, the snapshot's cursor and settings."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Query, Request

from clarion.api.problems import responses
from clarion.api.reads import Reader

# The errors a read can answer (problem+json), for the OpenAPI document: no or bad credentials, a
# role without the permission, invalid parameters, nothing published yet; ERRORS_404: also not found.
ERRORS = responses(401, 403, 422, 503)
ERRORS_404 = responses(401, 403, 404, 422, 503)

Limit = Annotated[int, Query(ge=1, le=1000, description="how many items to return")]
Offset = Annotated[int, Query(ge=0, le=10**9, description="how many items to skip")]


def reader(request: Request) -> Reader:
    return request.app.state.reader


def plain(value: Any) -> Any:
    """A value JSON can carry: NaN and infinities become null, dates ISO text, Decimals floats."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return plain(float(value))
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return plain(value.item())
    return value


def without_contact_ids(value: Any) -> Any:
    """``value`` with every ``contact_id`` key removed, at any depth (for roles without read:contact_id)."""
    if isinstance(value, dict):
        return {k: without_contact_ids(v) for k, v in value.items() if k != "contact_id"}
    if isinstance(value, list):
        return [without_contact_ids(v) for v in value]
    return value


def page(items: list[Any], limit: int, offset: int) -> Iterator[Any]:
    yield from items[offset : offset + limit]
