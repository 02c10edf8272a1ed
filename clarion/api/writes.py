"""Writes through the API: one at a time, waiting at most ``api.write_wait_seconds`` for the warehouse.

The warehouse's writer lock is re-entrant within a process (the stages of one run share it), so two
requests served by two threads of this process would both get in. A process-wide gate serializes the
API's own writes first; then the writer lock keeps out every other process (a pipeline run). Either
wait longer than ``api.write_wait_seconds`` -> a 409 problem that says who is writing; nothing was
changed. The web app's forms go through the same gate.
When the session ends without an error, the warehouse publishes a new read snapshot
(clarion.snapshot) before the lock is released, and the Reader is told to look at it at once, so the
next read shows the write.

Every write route (approve, reject, edit, subject requests, on-demand drafts) goes through
``session``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from fastapi import Request

from clarion.errors import WarehouseBusyError
from clarion.warehouse import Warehouse

_gate = threading.Lock()


@contextlib.contextmanager
def session(request: Request, purpose: str) -> Iterator[Any]:
    """Hold the right to write for the block; yields the writer's settings (not the snapshot's)."""
    settings = request.app.state.settings
    wait = float(settings.api.write_wait_seconds)
    started = time.monotonic()
    if not _gate.acquire(timeout=wait):
        raise _busy(wait, "another write through this API")
    try:
        left = max(0.0, wait - (time.monotonic() - started))
        warehouse = Warehouse.from_settings(settings)
        try:
            with warehouse.writing(f"api: {purpose}", wait_seconds=left):
                yield settings
        except WarehouseBusyError:
            holder = warehouse.lock.holder()
            raise _busy(wait, f"{holder.purpose!r} (since {holder.since})" if holder else "a run") from None
    finally:
        _gate.release()
        request.app.state.reader.invalidate()


def _busy(waited: float, who: str) -> WarehouseBusyError:
    """A 409 problem from the API, a "a run is writing" page from the web app."""
    return WarehouseBusyError(
        f"the warehouse is being written by {who}; this request waited {waited:g} s "
        "(api.write_wait_seconds) and changed nothing: try again when it finishes "
        "(GET /api/v1/runs shows a pipeline run in progress)"
    )
