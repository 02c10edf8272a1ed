"""The fault points the reliability suite uses (clarion.runtime.checkpoint), and how a failed write is
worded: fast checks, each in a process of its own where the fault ends or limits that process."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from clarion.config import load_settings
from clarion.errors import StorageError, storage_error
from clarion.runtime import DISK_FULL_AT_ENV, KILL_AT_ENV

SCRIPT = """
import sys
from clarion.runtime import checkpoint
for point in sys.argv[1:]:
    checkpoint(point)
    print("passed", point, flush=True)
    try:
        with open("out.bin", "ab") as fh:
            fh.write(b"x" * 10)
    except OSError as exc:
        print("write failed", exc.errno, flush=True)
"""


def _run(tmp_path: Path, env: dict[str, str], *points: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, *points],
        cwd=tmp_path,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_checkpoint_does_nothing_without_the_variables(tmp_path: Path) -> None:
    proc = _run(tmp_path, {}, "a", "b", "a")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:-1] == ["passed a", "passed b", "passed a"]
    assert (tmp_path / "out.bin").stat().st_size == 30


def test_kill_at_kills_the_process_the_nth_time_the_named_point_is_reached(tmp_path: Path) -> None:
    proc = _run(tmp_path, {KILL_AT_ENV: "a#2"}, "a", "b", "a", "b")
    assert proc.returncode == -signal.SIGKILL
    assert proc.stdout.split("\n")[:-1] == ["passed a", "passed b"]
    assert "killing the process at a" in proc.stderr


def test_disk_full_at_makes_every_later_file_write_fail_with_efbig(tmp_path: Path) -> None:
    proc = _run(tmp_path, {DISK_FULL_AT_ENV: "b"}, "a", "b", "c")
    assert proc.returncode == 0, proc.stderr  # SIGXFSZ is ignored: the write fails, the process lives
    assert proc.stdout.split("\n")[:-1] == [
        "passed a",
        "passed b",
        f"write failed {errno.EFBIG}",
        "passed c",
        f"write failed {errno.EFBIG}",
    ]
    assert (tmp_path / "out.bin").stat().st_size == 10


def test_test_variables_are_not_taken_for_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no clarion.yaml: the defaults
    settings = load_settings(env={KILL_AT_ENV: "extract.publish", DISK_FULL_AT_ENV: "transform.publish"})
    assert settings.warehouse.path.name == "warehouse.duckdb"


def test_a_failed_write_is_worded_as_a_storage_error_naming_the_file_and_what_to_do() -> None:
    exc = duckdb.TransactionException(
        'TransactionContext Error: Failed to commit: Could not write file "/p/var/warehouse.duckdb.wal": '
        "File too large"
    )
    failure = storage_error(exc, "publishing the marts")
    assert isinstance(failure, StorageError)
    assert str(failure).startswith("publishing the marts failed: File too large: ")
    assert "/p/var/warehouse.duckdb.wal" in str(failure) and "clarion run --resume" in str(failure)
    assert "\n" not in str(failure)
    full = OSError(errno.ENOSPC, "No space left on device")
    assert "No space left on device" in str(storage_error(full, "landing orders"))


@pytest.mark.parametrize("exc", [ValueError("bad value"), duckdb.CatalogException("no table x")])
def test_other_errors_are_not_storage_errors(exc: Exception) -> None:
    assert storage_error(exc, "anything") is None


def _logged(level: str, exc: Exception) -> str:
    """What a handler on Prefect's task-run logger prints for a failed task, after the CLI's set-up."""
    import io
    import logging

    from clarion.runtime import configure_logging

    configure_logging(level)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("prefect.task_runs")
    logger.addHandler(handler)
    try:
        try:
            raise exc
        except Exception:
            logger.error("Task run failed with exception: %r", exc, exc_info=True)
    finally:
        logger.removeHandler(handler)
        configure_logging("INFO")
    return stream.getvalue()


def test_prefect_logs_a_clarion_error_without_its_traceback_unless_verbose() -> None:
    failure = StorageError("publishing the marts failed: File too large")
    assert "Traceback" not in _logged("INFO", failure)
    assert "File too large" in _logged("INFO", failure)
    assert "Traceback" in _logged("DEBUG", failure)  # clarion -v
    assert "Traceback" in _logged("INFO", ValueError("a bug"))  # not a ClarionError: shown in full
