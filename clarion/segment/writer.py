"""Writing scored chunks on a thread of their own, while the next chunk is explained and worded.

DuckDB releases the GIL while it inserts, and putting reasons into words is mostly Python on one
core: with the insert of chunk k running beside the reasons of chunk k+1, a 2-core machine keeps
both cores busy. One chunk is in flight at a time, so memory holds at most two chunks' rows.

The connection belongs to the writer's thread from the first ``put`` until ``wait`` (or the end
of the ``with`` block) returns; the caller must not use it in between. The inserts run inside the
caller's transaction: a failed insert is raised by the next ``put``, ``wait`` or the block's end,
and the caller rolls back as before.
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType

import duckdb
import pyarrow as pa


class ChunkWriter:
    """``insert into <table> by name`` each Arrow table handed over, in order, on one thread."""

    def __init__(self, con: duckdb.DuckDBPyConnection, table: str) -> None:
        self._con = con
        self._sql = f"insert into {table} by name select * from __chunk"
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="clarion-segment-write")
        self._pending: Future[float] | None = None
        self.rows = 0
        self.insert_s = 0.0  # the writer thread's own time in DuckDB (overlapped with the caller's)

    def _insert(self, rows: pa.Table) -> float:
        started = time.perf_counter()
        self._con.register("__chunk", rows)
        try:
            self._con.execute(self._sql)
        except BaseException:
            with contextlib.suppress(duckdb.Error):  # the transaction is aborted: the caller rolls back
                self._con.unregister("__chunk")
            raise
        self._con.unregister("__chunk")
        return time.perf_counter() - started

    def put(self, rows: pa.Table) -> None:
        """Hand over a chunk: waits for the previous one's insert (raising its error), then starts
        this one's and returns."""
        self.wait()
        self._pending = self._pool.submit(self._insert, rows)
        self.rows += len(rows)

    def wait(self) -> None:
        """Until every chunk handed over is inserted; the connection is the caller's again."""
        if self._pending is None:
            return
        pending, self._pending = self._pending, None
        self.insert_s += pending.result()

    def __enter__(self) -> ChunkWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if kind is None:
                self.wait()
            elif self._pending is not None:  # already failing: let the insert end, keep the first error
                self._pending.exception()
                self._pending = None
        finally:
            self._pool.shutdown(wait=True)
