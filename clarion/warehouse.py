"""The DuckDB warehouse: one file, fixed schemas, and one writer at a time.

DuckDB already refuses a second read-write process, but with an IO error that names neither the run
nor what to do, and only while a connection is open. A pipeline run opens and closes connections
between stages (dbt opens its own), so Clarion holds a separate advisory lock (``flock`` on
``<warehouse>.lock``) for the whole run. The kernel releases it when the process dies, so a killed
run never leaves a stale lock. A second writer either waits up to ``lock_wait_seconds`` or stops at
once with a message naming the holder; it never opens the file, so it cannot corrupt it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import duckdb

from clarion.config import Settings
from clarion.errors import ClarionError, WarehouseBusyError, unwritable_folder

log = logging.getLogger(__name__)

SCHEMAS: tuple[str, ...] = ("raw", "quarantine", "staging", "marts", "ml", "content", "audit")

# Tables the platform core owns. Stages own their own tables and create them where they write.
CORE_DDL: tuple[str, ...] = (
    """
    create table if not exists audit.runs (
        run_id        varchar primary key,
        flow_run_id   varchar,
        command       varchar not null,
        status        varchar not null,      -- running | completed | failed | interrupted
        started_at    timestamptz not null,
        finished_at   timestamptz,
        stages        varchar,               -- json: stage name -> summary
        config_hash   varchar not null,
        code_version  varchar not null,
        error         varchar
    )
    """,
)

# A reader that finds the file held by another process retries this long before reporting it busy.
OPEN_RETRY_SECONDS = 10.0
PROBE_GRACE_SECONDS = 0.5


@dataclass(frozen=True)
class LockHolder:
    """Who holds the writer lock, as written into the lock file by the holder."""

    pid: int
    host: str
    purpose: str
    since: str
    command: str

    def describe(self) -> str:
        return f"'{self.purpose}' (pid {self.pid} on {self.host}, since {self.since})"


class _ProcessLock:
    """Per-process bookkeeping so nested stages of one run re-enter the lock instead of deadlocking.

    flock locks belong to an open file description: a second open() of the same file in the same
    process would block on itself. Holding one descriptor per lock path with a count avoids that.
    """

    _guard = threading.Lock()
    _held: ClassVar[dict[Path, tuple[int, int]]] = {}  # path -> (fd, depth)

    @classmethod
    def enter_if_held(cls, path: Path) -> bool:
        with cls._guard:
            if path in cls._held:
                fd, depth = cls._held[path]
                cls._held[path] = (fd, depth + 1)
                return True
            return False

    @classmethod
    def register(cls, path: Path, fd: int) -> None:
        with cls._guard:
            cls._held[path] = (fd, 1)

    @classmethod
    def leave(cls, path: Path) -> int | None:
        """Drop one level; return the descriptor to release when the outermost holder leaves."""
        with cls._guard:
            fd, depth = cls._held[path]
            if depth > 1:
                cls._held[path] = (fd, depth - 1)
                return None
            del cls._held[path]
            return fd


class WriterLock:
    """Exclusive, process-wide, re-entrant lock on one warehouse file."""

    def __init__(self, db_path: Path) -> None:
        db_path = Path(db_path).resolve()
        self.path = db_path.with_name(db_path.name + ".lock")

    def holder(self) -> LockHolder | None:
        """The current holder, or None when nobody holds the lock (a stale file means nothing)."""
        if not self.path.exists():
            return None
        try:
            fd = os.open(self.path, os.O_RDWR)
        except OSError:  # a read-only var/ can still be read: flock needs no write access
            fd = os.open(self.path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return self._read_holder() or LockHolder(0, "?", "unknown writer", "?", "?")
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def held_here(self) -> bool:
        return self.path in _ProcessLock._held

    def _read_holder(self) -> LockHolder | None:
        try:
            info = json.loads(self.path.read_text() or "{}")
            return LockHolder(**info) if info else None
        except (OSError, ValueError, TypeError):
            return None

    @contextlib.contextmanager
    def hold(self, purpose: str, wait_seconds: float = 0.0) -> Iterator[None]:
        """Hold the lock for the block; wait up to ``wait_seconds`` for another writer to finish."""
        if _ProcessLock.enter_if_held(self.path):
            try:
                yield
            finally:
                _ProcessLock.leave(self.path)
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:  # the first file any writer opens: a read-only var/ shows here
            raise unwritable_folder(self.path.parent, "warehouse.path", exc) from None
        try:
            self._acquire(fd, purpose, wait_seconds)
        except BaseException:
            os.close(fd)
            raise
        _ProcessLock.register(self.path, fd)
        try:
            yield
        finally:
            released = _ProcessLock.leave(self.path)
            if released is not None:
                with contextlib.suppress(OSError):  # a stale holder in the file means nothing
                    os.ftruncate(released, 0)
                fcntl.flock(released, fcntl.LOCK_UN)
                os.close(released)

    def _acquire(self, fd: int, purpose: str, wait_seconds: float) -> None:
        # Even "fail at once" tolerates a moment's contention: `holder()` probes by taking the
        # lock for a few microseconds, and that must not make a starting run fail.
        deadline = time.monotonic() + max(wait_seconds, PROBE_GRACE_SECONDS)
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = self._read_holder()
                who = holder.describe() if holder else "another process"
                if time.monotonic() >= deadline:
                    raise WarehouseBusyError(self._busy_message(who, wait_seconds)) from None
                if not announced and wait_seconds > PROBE_GRACE_SECONDS:
                    log.info("warehouse is being written by %s; waiting up to %.0f s", who, wait_seconds)
                    announced = True
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "purpose": purpose,
            "since": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:200],
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)

    def _busy_message(self, who: str, waited: float) -> str:
        db = self.path.with_suffix("")
        waited_txt = f" after waiting {waited:.0f} s" if waited else ""
        return (
            f"the warehouse {db} is being written by {who}; not starting a second writer{waited_txt}. "
            "Wait for that run to finish (`clarion status` shows it), or queue behind it with "
            "--wait SECONDS or warehouse.lock_wait_seconds in clarion.yaml."
        )


class Warehouse:
    """Opens the DuckDB file with the project's settings and knows its schemas."""

    def __init__(
        self,
        path: Path,
        *,
        lock_wait_seconds: float = 0.0,
        threads: int = 2,
        memory_limit: str = "4GB",
        snapshot: bool = False,
    ):
        self.path = Path(path)
        self.lock_wait_seconds = lock_wait_seconds
        self.threads = threads
        self.memory_limit = memory_limit
        self.snapshot = snapshot
        self.lock = WriterLock(self.path)

    @classmethod
    def from_settings(cls, settings: Settings) -> Warehouse:
        w = settings.warehouse
        return cls(
            w.path,
            lock_wait_seconds=w.lock_wait_seconds,
            threads=w.threads,
            memory_limit=w.memory_limit,
            snapshot=settings.api.snapshot,
        )

    # ---------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def writing(self, purpose: str, wait_seconds: float | None = None) -> Iterator[None]:
        """Hold the writer lock (re-entrant within a process) for a run or a stage.

        When the outermost session of the process ends without an error, the read snapshot is
        published (clarion.snapshot), still under the lock, so readers see the whole session or none."""
        wait = self.lock_wait_seconds if wait_seconds is None else wait_seconds
        outermost = not self.lock.held_here()
        with self.lock.hold(purpose, wait):
            yield
            if outermost and self.snapshot:
                from clarion import snapshot

                snapshot.publish(self.path, self.duckdb_config())

    @contextlib.contextmanager
    def connect(
        self, purpose: str = "write", wait_seconds: float | None = None
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection, with the writer lock held and the schemas in place."""
        with self.writing(purpose, wait_seconds):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = self._open(read_only=False)
            try:
                self._bootstrap(con)
                yield con
            finally:
                con.close()

    @contextlib.contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection. Fails with a clear message while another process is writing."""
        if not self.path.exists():
            raise ClarionError(
                f"no warehouse at {self.path} yet: run `clarion run` (or `make demo`) to create it"
            )
        if self.lock.held_here():
            # This process is the writer: DuckDB shares one database instance per process, and a
            # read-only handle beside a read-write one is refused, so read through a normal one.
            con = self._open(read_only=False)
        else:
            holder = self.lock.holder()
            if holder is not None:
                raise WarehouseBusyError(
                    f"the warehouse {self.path} is being written by {holder.describe()}; "
                    "try again when it finishes"
                )
            con = self._open(read_only=True)
        try:
            yield con
        finally:
            con.close()

    def ensure(self) -> None:
        """Create the file, schemas and core tables if missing (idempotent)."""
        with self.connect("ensure schemas"):
            pass

    # ---------------------------------------------------------------------------------------------
    def _open(self, *, read_only: bool) -> duckdb.DuckDBPyConnection:
        config = self.duckdb_config()
        deadline = time.monotonic() + OPEN_RETRY_SECONDS
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only, config=config)
                con.execute("set TimeZone = 'UTC'")  # naive source times are UTC, never the host's zone
                return con
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise
                if time.monotonic() >= deadline:
                    pid = re.search(r"PID (\d+)", str(exc))
                    who = f"process {pid.group(1)}" if pid else "another program"
                    raise WarehouseBusyError(
                        f"the warehouse file {self.path} is open in {who} outside Clarion's lock "
                        "(a SQL client, a notebook?). Close it there and run again."
                    ) from None
                time.sleep(0.25)

    def duckdb_config(self) -> dict[str, str]:
        """Connection settings. dbt (dbt/profiles.yml) opens the file with exactly these, because
        DuckDB refuses a second connection to one file in one process with different ones. (The
        time zone is a session setting, set on each connection: as a connect option DuckDB would
        have to download its ICU extension.)"""
        return {"threads": str(self.threads), "memory_limit": self.memory_limit.replace(" ", "")}

    @staticmethod
    def _bootstrap(con: duckdb.DuckDBPyConnection) -> None:
        for schema in SCHEMAS:
            con.execute(f"create schema if not exists {schema}")
        for ddl in CORE_DDL:
            con.execute(ddl)

    def inventory(self) -> dict[str, Any]:
        """Schemas -> tables -> row counts, for `clarion status`."""
        with self.read() as con:
            rows = con.execute(
                """
                select schema_name, table_name, estimated_size
                from duckdb_tables()
                where database_name = current_database()
                order by schema_name, table_name
                """
            ).fetchall()
            schemas: dict[str, dict[str, int]] = {s: {} for s in SCHEMAS}
            for schema, table, _ in rows:
                (count,) = con.execute(f'select count(*) from "{schema}"."{table}"').fetchone()
                schemas.setdefault(schema, {})[table] = int(count)
        return {
            "path": str(self.path),
            "bytes": self.path.stat().st_size,
            "schemas": schemas,
        }


def relation_exists(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> bool:
    """Whether schema.name is a table or a view in this warehouse."""
    (n,) = con.execute(
        "select (select count(*) from duckdb_tables() where schema_name = $s and table_name = $n)"
        " + (select count(*) from duckdb_views() where schema_name = $s and view_name = $n)",
        {"s": schema, "n": name},
    ).fetchone()
    return bool(n)
