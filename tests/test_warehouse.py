"""The warehouse: fixed schemas, and one writer at a time across processes (never a corrupt file)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest

from clarion.errors import ClarionError, WarehouseBusyError
from clarion.warehouse import SCHEMAS, Warehouse

HOLDER = Path(__file__).with_name("lock_holder.py")


def start_holder(db: Path, purpose: str, hold: float, rows: int, wait: float = 0.0) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, str(HOLDER), str(db), purpose, str(hold), str(rows), str(wait)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc


def wait_locked(proc: subprocess.Popen) -> None:
    line = proc.stdout.readline()
    assert line.strip() == "LOCKED", (line, proc.stderr.read() if proc.poll() is not None else "")


def test_connect_creates_the_file_every_schema_and_the_run_table(tmp_path: Path) -> None:
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    warehouse.ensure()
    con = duckdb.connect(str(warehouse.path), read_only=True)
    schemas = {r[0] for r in con.execute("select schema_name from information_schema.schemata").fetchall()}
    assert set(SCHEMAS) <= schemas
    assert con.execute("select count(*) from audit.runs").fetchone() == (0,)
    con.close()
    warehouse.ensure()  # idempotent


def test_a_second_writer_process_stops_at_once_naming_the_first(tmp_path: Path) -> None:
    db = tmp_path / "wh.duckdb"
    first = start_holder(db, "first-run", hold=6, rows=30)
    wait_locked(first)
    started = time.monotonic()
    second = start_holder(db, "second-run", hold=0, rows=1)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 3
    assert time.monotonic() - started < 10  # failed fast, did not queue
    assert "being written by 'first-run'" in err and f"pid {first.pid}" in err
    assert "--wait SECONDS" in err
    assert first.wait(timeout=60) == 0
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("select writer, count(*) from raw.lock_test group by 1").fetchall() == [
        ("first-run", 30)
    ]
    con.close()


def test_a_waiting_writer_queues_behind_the_first_and_both_writes_survive(tmp_path: Path) -> None:
    db = tmp_path / "wh.duckdb"
    first = start_holder(db, "first-run", hold=3, rows=20)
    wait_locked(first)
    second = start_holder(db, "second-run", hold=0.5, rows=20, wait=60)
    assert second.wait(timeout=90) == 0, second.stderr.read()
    assert first.wait(timeout=30) == 0
    con = duckdb.connect(str(db), read_only=True)
    counts = dict(con.execute("select writer, count(*) from raw.lock_test group by 1").fetchall())
    # the second only started writing after the first finished: its rows come after all of the first's
    order = [w for (w,) in con.execute("select writer from raw.lock_test order by rowid").fetchall()]
    con.close()
    assert counts == {"first-run": 20, "second-run": 20}
    assert order == ["first-run"] * 20 + ["second-run"] * 20


def test_a_killed_writer_leaves_no_stale_lock_and_an_intact_file(tmp_path: Path) -> None:
    db = tmp_path / "wh.duckdb"
    victim = start_holder(db, "doomed-run", hold=30, rows=1000)
    wait_locked(victim)
    time.sleep(0.5)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    warehouse = Warehouse(db)
    assert warehouse.lock.holder() is None
    with warehouse.connect("after the crash") as con:
        (rows,) = con.execute("select count(*) from raw.lock_test").fetchone()
    assert 0 <= rows < 1000  # whatever committed before the kill, readable and consistent


def test_reading_while_another_process_writes_is_refused_with_a_message(tmp_path: Path) -> None:
    db = tmp_path / "wh.duckdb"
    Warehouse(db).ensure()
    holder = start_holder(db, "busy-run", hold=5, rows=10)
    wait_locked(holder)
    with pytest.raises(WarehouseBusyError, match="being written by 'busy-run'"), Warehouse(db).read():
        pass
    holder.wait(timeout=60)
    with Warehouse(db).read() as con:
        assert con.execute("select count(*) from raw.lock_test").fetchone() == (10,)


def test_nested_stages_of_one_run_reenter_the_lock(tmp_path: Path) -> None:
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    with warehouse.writing("outer run"), warehouse.connect("stage one") as con:
        con.execute("create table raw.t as select 1 as x")
        with warehouse.connect("stage two") as inner, warehouse.read() as reader:
            assert inner.execute("select count(*) from raw.t").fetchone() == (1,)
            assert reader.execute("select x from raw.t").fetchone() == (1,)
    assert warehouse.lock.holder() is None


def test_threads_of_one_run_share_the_lock(tmp_path: Path) -> None:
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    warehouse.ensure()
    errors: list[BaseException] = []

    def stage(i: int) -> None:
        try:
            with warehouse.connect(f"thread {i}") as con:
                con.execute(f"create table raw.t{i} as select {i} as x")
        except BaseException as exc:
            errors.append(exc)

    with warehouse.writing("run with threads"):
        threads = [threading.Thread(target=stage, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


def test_reading_a_warehouse_that_does_not_exist_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(ClarionError, match="clarion run"), Warehouse(tmp_path / "none.duckdb").read():
        pass


def test_a_file_held_open_outside_clarion_is_reported_after_a_short_retry(
    tmp_path: Path, monkeypatch
) -> None:
    import clarion.warehouse as wh

    db = tmp_path / "wh.duckdb"
    Warehouse(db).ensure()
    outsider = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb,time; c=duckdb.connect({str(db)!r}); print('OPEN', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert outsider.stdout.readline().strip() == "OPEN"
        monkeypatch.setattr(wh, "OPEN_RETRY_SECONDS", 1.0)
        with (
            pytest.raises(WarehouseBusyError, match=f"open in process {outsider.pid} outside Clarion's lock"),
            Warehouse(db).connect("blocked"),
        ):
            pass
    finally:
        outsider.kill()
        outsider.wait()
