"""The fault points the reliability suite uses (clarion.runtime.checkpoint), how a failed write is
worded, and a read-only var/ met before a run starts: fast checks, each in a process of its own where
the fault ends, limits or stops that process."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from reliability_helpers import Cli, read_only_cause

from clarion.config import load_settings
from clarion.errors import StorageError, storage_error
from clarion.runtime import DISK_FULL_AT_ENV, KILL_AT_ENV, STOP_AT_ENV
from clarion.warehouse import Warehouse

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


def test_stop_at_stops_the_process_at_the_named_point_until_it_is_continued(tmp_path: Path) -> None:
    out = tmp_path / "stdout.txt"
    with out.open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, "a", "b", "c"],
            cwd=tmp_path,
            env={**os.environ, STOP_AT_ENV: "b"},
            stdout=fh,
            stderr=subprocess.PIPE,
            text=True,
        )
    try:
        deadline = time.monotonic() + 60
        while Path(f"/proc/{proc.pid}/stat").read_text().rpartition(")")[2].split()[0] != "T":
            assert proc.poll() is None and time.monotonic() < deadline, "never stopped"
            time.sleep(0.05)
        assert out.read_text().split("\n")[:-1] == ["passed a"]  # stopped at b: a's write done, b's not
        assert (tmp_path / "out.bin").stat().st_size == 10
        os.kill(proc.pid, signal.SIGCONT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert out.read_text().split("\n")[:-1] == ["passed a", "passed b", "passed c"]
    assert (tmp_path / "out.bin").stat().st_size == 30
    assert "stopping the process at b" in stderr


def test_test_variables_are_not_taken_for_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no clarion.yaml: the defaults
    settings = load_settings(env={KILL_AT_ENV: "extract.publish", DISK_FULL_AT_ENV: "transform.publish"})
    assert settings.warehouse.path.name == "warehouse.duckdb"


@pytest.mark.parametrize(
    ("failed", "cause", "remedy", "not_said"),
    [
        ("Could not write file", "File too large", "Free disk space", "writable"),
        # there is room on the disk: the fault is the mount
        ("Cannot open file", "Read-only file system", "writable again (it is mounted read-only", "disk"),
    ],
)
def test_a_failed_write_is_worded_as_a_storage_error_naming_the_file_the_cause_and_what_to_do(
    failed: str, cause: str, remedy: str, not_said: str
) -> None:
    exc = duckdb.TransactionException(
        f'TransactionContext Error: Failed to commit: {failed} "/p/var/warehouse.duckdb.wal": {cause}'
    )
    failure = storage_error(exc, "publishing the marts")
    assert isinstance(failure, StorageError)
    assert str(failure).startswith(f"publishing the marts failed: {cause}: ")
    assert "/p/var/warehouse.duckdb.wal" in str(failure) and "clarion run --resume" in str(failure)
    assert remedy in str(failure) and not_said not in str(failure)
    assert "\n" not in str(failure)


def test_an_os_error_is_a_storage_error_by_its_errno_whatever_the_locale_wrote() -> None:
    full = OSError(errno.ENOSPC, "No space left on device")
    assert "No space left on device" in str(storage_error(full, "landing orders"))
    read_only = OSError(errno.EROFS, "Dateisystem ist nur lesbar", "/p/var/landing/orders.csv")
    assert "Read-only file system" in str(storage_error(read_only, "landing orders"))
    denied = OSError(errno.EACCES, "Permission denied", "/p/var/landing/orders.csv")
    message = str(storage_error(denied, "landing orders"))
    assert "/p/var/landing/orders.csv" in message and "write access" in message, message


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


def _prefect_line(message: str) -> logging.LogRecord:
    return logging.LogRecord("prefect.task_runs", logging.ERROR, "", 1, message, (), None)


@pytest.mark.parametrize(
    "state",
    [
        "Failed('Task run encountered an exception StorageError: publishing failed: File too large')",
        "Failed('Flow run encountered an exception: StorageError: publishing failed: File too large')",
    ],
)
def test_prefects_failed_state_line_names_a_clarion_error_by_class_leaving_its_message_to_the_cli(
    state: str,
) -> None:
    from clarion.runtime import _KnownErrorsOnConsole

    line = _prefect_line(f"Finished in state {state}")
    assert _KnownErrorsOnConsole().filter(line)
    assert line.getMessage() == "Finished in state Failed (StorageError, below)"
    bug = f"Finished in state {state.replace('StorageError', 'ValueError')}"
    other = _prefect_line(bug)
    assert _KnownErrorsOnConsole().filter(other) and other.getMessage() == bug  # not ours: in full


def _files(root: Path) -> dict[str, str]:
    """Every file under ``root`` with its size, modification time and content hash."""
    return {
        str(p.relative_to(root)): f"{p.stat().st_size} {p.stat().st_mtime_ns} "
        + hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_a_read_only_var_stops_run_extract_and_transform_with_one_message_before_anything_is_written(
    tmp_path: Path,
) -> None:
    """var/ (warehouse, landing zone, runs) read-only from the start: each command that writes stops
    with one line naming the folder and what to do, before Prefect or the warehouse is touched.
    Without PREFECT_API_URL, Prefect's home would be var/prefect too. Readers still read."""
    (tmp_path / "clarion.yaml").write_text("warehouse:\n  path: var/warehouse.duckdb\n")
    Warehouse(tmp_path / "var" / "warehouse.duckdb").ensure()  # a real warehouse, every schema in it
    (tmp_path / "var" / "landing").mkdir()
    (tmp_path / "var" / "landing" / "orders.csv").write_text("order_id\n1\n")
    before = _files(tmp_path)
    cli = Cli(tmp_path, {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CLARION_"))})
    cause = read_only_cause()

    for command in ("run", "extract", "transform"):
        failed = cli.run_with_var_read_only(command)
        assert failed.returncode == 1, (command, failed.stderr[-3000:])
        [message] = failed.stderr.strip().splitlines()  # one line, no traceback
        assert message.startswith(f"error: cannot write to {tmp_path / 'var'} (var_dir): {cause}; "), message
        assert "nothing was written" in message and "writable" in message, message
        assert "set var_dir in clarion.yaml" in message, message
    print("read-only var/ message:", message)
    assert _files(tmp_path) == before  # nothing written, not even Prefect's database
    assert not (tmp_path / "var" / "prefect").exists()

    status = cli.run_with_var_read_only("status")
    assert status.returncode == 0, status.stderr[-3000:]
    assert "idle" in status.stdout
