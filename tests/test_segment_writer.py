"""The scoring stage's chunk writer (clarion/segment/writer.py): chunks inserted on a thread of
their own, in order, inside the caller's transaction; a failed insert reaches the caller and rolls
back with everything else; a failing caller waits for the insert in flight before it rolls back."""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from clarion.segment.writer import ChunkWriter


def _con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("create schema ml")
    con.execute("create table ml.t (id bigint, label varchar, n integer)")
    return con


def _chunk(start: int, size: int) -> pa.Table:
    ids = list(range(start, start + size))
    return pa.table({"n": [i % 7 for i in ids], "id": ids, "label": [f"c{i}" for i in ids]})


def test_every_chunk_is_inserted_once_in_order_inside_the_callers_transaction(tmp_path: Path) -> None:
    con = _con(tmp_path)
    threads = set()
    con.execute("begin transaction")
    with ChunkWriter(con, "ml.t") as writer:
        original = writer._insert

        def insert(rows: pa.Table) -> float:
            threads.add(threading.get_ident())
            return original(rows)

        writer._insert = insert
        for start in range(0, 10_000, 3_000):  # 4 chunks, the last one short
            writer.put(_chunk(start, min(3_000, 10_000 - start)))
    assert threads and threading.get_ident() not in threads  # not the caller's thread
    assert writer.rows == 10_000 and writer.insert_s > 0
    # by name: the chunk's columns in another order land in the right columns
    assert con.execute("select count(*), count(distinct id), min(id), max(id) from ml.t").fetchone() == (
        10_000,
        10_000,
        0,
        9_999,
    )
    assert con.execute("select count(*) from ml.t where label <> 'c' || id or n <> id % 7").fetchone() == (0,)
    con.execute("rollback")  # the inserts were the caller's transaction's: rolled back with it
    assert con.execute("select count(*) from ml.t").fetchone() == (0,)


def test_a_failed_insert_is_raised_to_the_caller_and_nothing_is_kept(tmp_path: Path) -> None:
    con = _con(tmp_path)
    bad = pa.table({"id": ["not a number"], "label": ["x"], "n": [1]})
    con.execute("begin transaction")
    with pytest.raises(duckdb.ConversionException, match="not a number"), ChunkWriter(con, "ml.t") as writer:
        writer.put(_chunk(0, 100))
        writer.put(bad)
        writer.put(_chunk(100, 100))  # raises the bad chunk's error: the third is never inserted
    assert writer.rows == 101  # the first chunk and the bad one were handed over, the third not
    con.execute("rollback")
    assert con.execute("select count(*) from ml.t").fetchone() == (0,)


def test_a_failing_caller_waits_for_the_insert_in_flight_and_keeps_its_own_error(tmp_path: Path) -> None:
    con = _con(tmp_path)
    con.execute("begin transaction")
    with pytest.raises(RuntimeError, match="the caller's own"), ChunkWriter(con, "ml.t") as writer:
        writer.put(_chunk(0, 50_000))
        raise RuntimeError("the caller's own failure")
    # the block has ended only once the insert finished: the connection is the caller's again
    assert writer._pending is None
    assert con.execute("select count(*) from ml.t").fetchone() == (50_000,)
    con.execute("rollback")
    assert con.execute("select count(*) from ml.t").fetchone() == (0,)
