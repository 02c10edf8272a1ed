"""The read snapshot: a read-only copy of the warehouse, published when a writer session ends.

DuckDB lets one process write a file and refuses every other process while it does, so a reader that
opened the warehouse itself (the REST API, a dashboard) would be turned away for the whole of a run,
and one that read between two stages would see a run half done. Instead, when the outermost writer
lock of a process is released after a successful session (a run, an approval, an erasure), the file
is copied beside it and the copy is named in ``CURRENT``:

    var/warehouse.duckdb
    var/warehouse.snapshots/CURRENT                     -> "20261204T160102.123456Z-4242.duckdb"
    var/warehouse.snapshots/20261204T160102.123456Z-4242.duckdb

The copy is made while the lock is still held (nobody writes during it), written under a temporary
name, flushed, renamed, and only then named in ``CURRENT`` (``os.replace``: readers see the old name
or the new one, never a half-written file). Every older copy is deleted at once: an erasure must not
survive in an old copy. A reader that still has an old copy open keeps reading it until it reopens
(POSIX unlink), which it does when ``CURRENT`` changes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb

log = logging.getLogger(__name__)

POINTER = "CURRENT"
SUFFIX = ".duckdb"


def folder(warehouse_path: Path) -> Path:
    """Where the snapshots of one warehouse file live (beside it)."""
    p = Path(warehouse_path)
    return p.with_name(p.stem + ".snapshots")


def current(warehouse_path: Path) -> Path | None:
    """The published snapshot of this warehouse, or None before the first one."""
    d = folder(warehouse_path)
    try:
        name = (d / POINTER).read_text().strip()
    except FileNotFoundError:
        return None
    path = d / name
    return path if name and path.exists() else None


def publish(warehouse_path: Path, config: dict[str, str] | None = None) -> Path | None:
    """Copy the warehouse into a new snapshot and make it current; delete the older ones.

    Call only while holding the writer lock, with no write in flight. Returns the new snapshot, or
    None when there is nothing to copy (no warehouse file yet). Never raises for a copy that fails
    (full disk, read-only folder): the warehouse itself is fine, so the failure is logged and the
    previous snapshot stays current."""
    source = Path(warehouse_path)
    if not source.exists():
        return None
    started = time.perf_counter()
    d = folder(source)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    name = f"{stamp}-{os.getpid()}{SUFFIX}"
    tmp = d / f".{name}.tmp"
    try:
        d.mkdir(parents=True, exist_ok=True)
        _checkpoint(source, config or {})
        shutil.copyfile(source, tmp)
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        tmp.replace(d / name)
        pointer_tmp = d / f".{POINTER}.tmp"
        pointer_tmp.write_text(name + "\n")
        pointer_tmp.replace(d / POINTER)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        log.warning(
            "could not publish the read snapshot in %s (%s); readers keep the previous one", d, exc.strerror
        )
        return None
    removed = prune(source, keep=name)
    log.info(
        "read snapshot published: %s (%.1f MB, %.2f s; %d older removed)",
        name,
        (d / name).stat().st_size / 1e6,
        time.perf_counter() - started,
        removed,
    )
    return d / name


def prune(warehouse_path: Path, keep: str | None = None) -> int:
    """Delete every snapshot but ``keep`` (and any temporary file a killed copy left)."""
    d = folder(warehouse_path)
    removed = 0
    if not d.is_dir():
        return 0
    for f in d.iterdir():
        if f.name in (keep, POINTER):
            continue
        if f.name.endswith(SUFFIX) or f.name.endswith(".tmp") or f.name.endswith(".wal"):
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
                removed += f.name.endswith(SUFFIX)
    return removed


def discard(warehouse_path: Path) -> None:
    """Remove every snapshot and the pointer (a snapshot must never outlive its warehouse)."""
    prune(warehouse_path)
    with contextlib.suppress(FileNotFoundError):
        (folder(warehouse_path) / POINTER).unlink()


def _checkpoint(path: Path, config: dict[str, str]) -> None:
    """Fold the write-ahead log into the file so a plain copy of the file is the whole database."""
    con = duckdb.connect(str(path), config=config)
    try:
        con.execute("checkpoint")
    finally:
        con.close()
    wal = path.with_name(path.name + ".wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise OSError(0, f"{wal.name} still holds changes after a checkpoint (a connection is open?)")
