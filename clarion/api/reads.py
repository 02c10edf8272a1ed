"""What the API reads: the current read snapshot (clarion.snapshot), never the writer's file.

``Reader.settings()`` is a copy of the settings whose ``warehouse.path`` is the current snapshot, so
every view function the CLI uses (``explanation(settings, id)``, ``models_listing(settings)``...) runs
on it unchanged, read-only. ``Reader.cursor()`` is a cursor on one connection kept open per snapshot
(cheap for point lookups); both switch to a new snapshot as soon as ``CURRENT`` names one.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb

from clarion import snapshot
from clarion.errors import ClarionError
from clarion.warehouse import Warehouse

CHECK_EVERY_SECONDS = 0.5


class NoSnapshotError(ClarionError):
    """Nothing has been published to read yet."""

    http_status = 503


class Reader:
    def __init__(self, settings: Any) -> None:
        self._base = settings
        self._lock = threading.Lock()
        self._path: Path | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self._settings: Any = None
        self._checked = 0.0

    @property
    def path(self) -> Path:
        self._refresh()
        assert self._path is not None
        return self._path

    def settings(self) -> Any:
        """The settings, pointed at the current snapshot (read-only, no snapshot publishing)."""
        self._refresh()
        return self._settings

    @contextlib.contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor on the current snapshot; safe to use from any thread, one per request."""
        self._refresh()
        assert self._con is not None
        cur = self._con.cursor()
        try:
            yield cur
        finally:
            cur.close()

    def published_at(self) -> float | None:
        """When the current snapshot was published (epoch seconds), None before the first one."""
        try:
            return self.path.stat().st_mtime
        except (NoSnapshotError, OSError):
            return None

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
            self._con = self._path = None

    # ------------------------------------------------------------------------------------------
    def _refresh(self) -> None:
        now = time.monotonic()
        if self._con is not None and now - self._checked < CHECK_EVERY_SECONDS:
            return
        with self._lock:
            self._checked = now
            latest = snapshot.current(self._base.warehouse.path)
            if latest is None:
                raise NoSnapshotError(
                    "nothing has been published to read yet: run the pipeline once (`clarion run` or "
                    "`make demo`); every run publishes the read snapshot the API serves"
                )
            if latest == self._path and self._con is not None:
                return
            w = self._base.warehouse
            con = Warehouse(latest, threads=w.threads, memory_limit=w.memory_limit)._open(read_only=True)
            old, self._con, self._path = self._con, con, latest
            self._settings = self._base.model_copy(
                update={
                    "warehouse": w.model_copy(update={"path": latest}),
                    "api": self._base.api.model_copy(update={"snapshot": False}),
                }
            )
            if old is not None:
                old.close()
