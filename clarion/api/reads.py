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
        self._users: dict[int, int] = {}  # id(connection) -> requests using it now

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
        with self.pinned() as (_, cur):
            yield cur

    @contextlib.contextmanager
    def pinned(self) -> Iterator[tuple[Any, duckdb.DuckDBPyConnection]]:
        """The settings and a cursor of one snapshot, kept open together until the block ends: a
        snapshot published meanwhile does not close it under the request (its connection is closed
        when its last user leaves), and view functions given these settings read the same file (its
        database stays open, so DuckDB serves them even once the file is unlinked)."""
        self._refresh()
        with self._lock:
            con, settings = self._con, self._settings
            assert con is not None
            self._users[id(con)] = self._users.get(id(con), 0) + 1
        try:
            cur = con.cursor()
            try:
                yield settings, cur
            finally:
                cur.close()
        finally:
            with self._lock:
                self._users[id(con)] -= 1
                if not self._users[id(con)]:
                    del self._users[id(con)]
                    if con is not self._con:
                        con.close()  # retired while in use: its last user closes it

    def published_at(self) -> float | None:
        """When the current snapshot was published (epoch seconds), None before the first one."""
        try:
            return self.path.stat().st_mtime
        except (NoSnapshotError, OSError):
            return None

    def invalidate(self) -> None:
        """Look at CURRENT on the next use (after a write of this process published a snapshot)."""
        self._checked = 0.0

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
            self._con = self._path = None

    # ------------------------------------------------------------------------------------------
    def _refresh(self) -> None:
        now = time.monotonic()
        fresh = now - self._checked < CHECK_EVERY_SECONDS
        # a snapshot another process replaced is deleted at once (an erasure must not survive in a
        # copy): view functions that open the file by its path would not find it, so look again now
        if self._con is not None and fresh and self._path is not None and self._path.exists():
            return
        with self._lock:
            self._checked = now
            for attempt in range(3):
                latest = snapshot.current(self._base.warehouse.path)
                if latest is None:
                    raise NoSnapshotError(
                        "nothing has been published to read yet: run the pipeline once (`clarion run` "
                        "or `make demo`); every run publishes the read snapshot the API serves"
                    )
                if latest == self._path and self._con is not None:
                    return
                w = self._base.warehouse
                try:
                    con = Warehouse(latest, threads=w.threads, memory_limit=w.memory_limit)._open(
                        read_only=True
                    )
                    break
                except (duckdb.Error, OSError):
                    # a writer published again and pruned this one between the pointer and the open
                    if latest.exists() or attempt == 2:
                        if self._con is not None:
                            return  # keep serving the open snapshot; look again at the next check
                        raise
            old, self._con, self._path = self._con, con, latest
            self._settings = self._base.model_copy(
                update={
                    "warehouse": w.model_copy(update={"path": latest}),
                    "api": self._base.api.model_copy(update={"snapshot": False}),
                }
            )
            if old is not None and not self._users.get(id(old)):
                old.close()  # else the last request using it closes it
