"""The CLI as separate processes for the reliability tests: fault points, kills, outputs to compare.

A run is killed, its disk filled or its var/ made read-only at a named point through
``clarion.runtime.checkpoint`` (CLARION_TEST_KILL_AT / CLARION_TEST_DISK_FULL_AT /
CLARION_TEST_STOP_AT), so a test needs no timing to hit a point.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from clarion.runtime import DISK_FULL_AT_ENV, KILL_AT_ENV, STOP_AT_ENV

CLARION = str(Path(sys.executable).with_name("clarion"))


def cli_env() -> dict[str, str]:
    """The CLI's environment, reporting to the session's Prefect test server (the prefect_server fixture)."""
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CLARION_"))}
    env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    return env


class Cli:
    """`clarion` in one project folder; every line printed is kept for the personal-data scan."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env, self.output = root, env, ""

    def run(
        self,
        *args: str,
        ok: bool = True,
        env: dict[str, str] | None = None,
        timeout: float = 600,
        wrap: tuple[str, ...] = (),
    ) -> subprocess.CompletedProcess:
        """`clarion ARGS` (run by the command ``wrap`` when given, e.g. in a namespace of its own)."""
        proc = subprocess.run(
            [*wrap, CLARION, *args],
            cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        self.output += proc.stdout + proc.stderr
        if ok:
            assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    def start(self, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, Path]:
        """Start `clarion ARGS` in the background, its output in a log file."""
        log = self.root / f"bg-{time.monotonic_ns()}.log"
        with log.open("w") as fh:
            proc = subprocess.Popen(
                [CLARION, *args],
                cwd=self.root,
                env={**self.env, **(env or {})},
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return proc, log

    def wait_for(self, proc: subprocess.Popen, log: Path, marker: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while marker not in log.read_text():
            assert proc.poll() is None, f"ended before {marker!r}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no {marker!r} within {timeout} s"
            time.sleep(0.05)

    def kill(self, proc: subprocess.Popen, log: Path) -> None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        self.output += log.read_text()

    def killed_at(self, point: str, *args: str, verb: str = "run") -> subprocess.CompletedProcess:
        """`clarion VERB ARGS` (`clarion run` by default), killed (SIGKILL) by itself when it reaches
        ``point`` (POINT or POINT#N)."""
        proc = self.run(verb, *args, ok=False, env={KILL_AT_ENV: point})
        name = point.partition("#")[0]
        assert proc.returncode == -signal.SIGKILL, f"not killed at {point}:\n{proc.stderr[-3000:]}"
        assert f"killing the process at {name}" in proc.stderr
        return proc

    def disk_full_at(self, point: str, *args: str) -> subprocess.CompletedProcess:
        return self.run(*args, ok=False, env={DISK_FULL_AT_ENV: point})

    def run_with_var_read_only(self, *args: str) -> subprocess.CompletedProcess:
        """`clarion ARGS` with the project's var/ read-only from its start (see read_only_method)."""
        var = self.root / "var"
        if read_only_method() == "mount":
            return self.run(
                *args, ok=False, timeout=120, wrap=(*UNSHARE, "sh", "-c", _MOUNT_RO_THEN_EXEC, str(var))
            )
        with _chmod_read_only(var):
            return self.run(*args, ok=False, timeout=120)

    def run_with_var_read_only_from(self, point: str, *args: str) -> subprocess.CompletedProcess:
        """`clarion ARGS` whose var/ turns read-only at ``point``: the process stops itself there
        (CLARION_TEST_STOP_AT), var/ is made read-only while it waits, then it goes on.

        With "mount" this lays a read-only bind mount over var/ inside the run's own mount namespace
        (nsenter). Turning the mount var/ is on read-only is not possible: the kernel refuses
        (EBUSY) while a file on it is open for writing, and a run holds its writer lock (and dbt its
        log) open from start to end. So every file the run opens from this point on, such as the
        warehouse's write-ahead log at commit, is on a read-only file system (EROFS), while the
        descriptors it opened before keep writing where they were.
        """
        var = (self.root / "var").resolve()
        method = read_only_method()
        stamp = time.monotonic_ns()
        out, err = self.root / f"ro-{stamp}.out", self.root / f"ro-{stamp}.err"
        with out.open("w") as out_fh, err.open("w") as err_fh:
            proc = subprocess.Popen(
                [*(UNSHARE if method == "mount" else ()), CLARION, *args],
                cwd=self.root,
                env={**self.env, STOP_AT_ENV: point},
                stdout=out_fh,
                stderr=err_fh,
            )
        with contextlib.ExitStack() as stack:
            try:
                _wait_until_stopped(proc, err, point)
                if method == "mount":
                    subprocess.run(
                        [
                            "nsenter",
                            "-t",
                            str(proc.pid),
                            "-m",
                            "mount",
                            "--bind",
                            "-o",
                            "ro",
                            str(var),
                            str(var),
                        ],
                        check=True,
                        capture_output=True,
                    )
                else:
                    stack.enter_context(_chmod_read_only(var))
                os.kill(proc.pid, signal.SIGCONT)
                proc.wait(600)
            finally:
                if proc.poll() is None:  # a failed step above: do not leave it stopped
                    proc.kill()
                    proc.wait(30)
        done = subprocess.CompletedProcess(args, proc.returncode, out.read_text(), err.read_text())
        self.output += done.stdout + done.stderr
        return done

    def sql(self, query: str, params: list[Any] | None = None) -> list[tuple]:
        con = duckdb.connect(str(self.root / "var" / "warehouse.duckdb"), read_only=True)
        try:
            return con.execute(query, params or []).fetchall()
        finally:
            con.close()

    def marts(self) -> dict[str, pd.DataFrame]:
        """Every published mart as text, in a fixed order (empty when nothing is published yet)."""
        con = duckdb.connect(str(self.root / "var" / "warehouse.duckdb"), read_only=True)
        try:
            names = [
                r[0]
                for r in con.execute(
                    "select table_name from information_schema.tables where table_schema = 'marts' order by 1"
                ).fetchall()
            ]
            query = 'select columns(*)::varchar from marts."{}" order by all'
            return {n: con.execute(query.format(n)).df() for n in names}
        finally:
            con.close()

    def assert_audit_verifies(self) -> None:
        proc = self.run("audit", "verify")
        assert "audit log verified" in proc.stdout

    def assert_no_personal_data_in_output(self, people: list[dict[str, Any]]) -> None:
        """No e-mail, phone or full name of ``people`` (contacts as read from the source) was printed."""
        assert people and len(self.output) > 2000  # the scan has something to read
        for p in people:
            for value in (p["email"], p["phone"], f"{p['first_name']} {p['last_name']}"):
                assert not value or value not in self.output, "personal data in the CLI's output/logs"


# --------------------------------------------------------------------------------------------------
# A read-only var/ for one `clarion` process, for root too

UNSHARE = ("unshare", "--mount", "--propagation", "private")  # a mount namespace of its own
_MOUNT_RO_THEN_EXEC = 'mount --bind -o ro "$0" "$0" && exec "$@"'


@functools.cache
def _mount_probe() -> str | None:
    """None when this process can make a folder read-only for one child (root with CAP_SYS_ADMIN),
    else what refused it."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        try:
            probe = subprocess.run(
                [*UNSHARE, "sh", "-c", _MOUNT_RO_THEN_EXEC, folder, "touch", f"{folder}/probe"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except OSError as exc:  # no unshare on this machine
            return str(exc)
        if probe.returncode != 0 and "Read-only file system" in probe.stderr:
            return None
        return (
            probe.stderr.strip()
            or f"a write into the read-only bind mount succeeded (exit {probe.returncode})"
        )


def read_only_method() -> str:
    """How this machine makes var/ read-only for one `clarion` process: "mount", a read-only bind
    mount in a private mount namespace (unshare -m; EROFS even for root, the outside unchanged), or
    "chmod" for a user other than root (EACCES). Root without CAP_SYS_ADMIN can do neither: the test
    is skipped then, except under CI, where it fails."""
    reason = _mount_probe()
    if reason is None:
        return "mount"
    if os.geteuid() != 0:
        return "chmod"
    message = f"cannot make a folder read-only for root here (unshare -m / mount --bind -o ro: {reason})"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: a skip would hide the test)")
    pytest.skip(message + "; skipped because CI is unset (under CI=true this fails)")


def read_only_cause() -> str:
    """How the OS words a write into the read-only var/ of read_only_method()."""
    return "Read-only file system" if read_only_method() == "mount" else "Permission denied"


@contextlib.contextmanager
def _chmod_read_only(folder: Path) -> Iterator[None]:
    modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")] if not p.is_symlink()}
    for path, mode in modes.items():
        path.chmod(mode & ~0o222)
    try:
        yield
    finally:
        for path, mode in modes.items():
            path.chmod(mode)


def _wait_until_stopped(proc: subprocess.Popen, log: Path, point: str, timeout: float = 300) -> None:
    """Until ``proc`` has stopped itself (SIGSTOP at ``point``): state T in /proc/PID/stat."""
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{proc.pid}/stat").read_text().rpartition(")")[2].split()[0] != "T":
        assert proc.poll() is None, f"ended before {point}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"not stopped at {point} within {timeout} s"
        time.sleep(0.1)
    assert f"stopping the process at {point.partition('#')[0]}" in log.read_text()


def csv_people(crm: Path) -> list[dict[str, Any]]:
    with (crm / "contacts.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def csv_rows(path: Path) -> int:
    """Data rows of a CSV file, counted by the csv module (not by the warehouse)."""
    with path.open(newline="") as fh:
        return sum(1 for _ in csv.DictReader(fh))


def assert_same_marts(got: dict[str, pd.DataFrame], want: dict[str, pd.DataFrame]) -> None:
    assert got.keys() == want.keys()
    for name in want:
        pd.testing.assert_frame_equal(got[name], want[name], check_exact=True, obj=name)


class CuttableProxy:
    """A TCP proxy in a thread between a client and a database (127.0.0.1:5432), for outages that
    do not touch the machine's database service.

    The outage begins when a client sends bytes containing ``cut_on`` (e.g. the name of the table
    being read): every live connection is closed at once and new ones are refused (accepted, then
    closed). It lasts ``outage_seconds`` (None: until ``heal()``). ``refused`` counts the
    connections refused during the outage, i.e. the client's attempts to retry.
    """

    def __init__(
        self,
        cut_on: bytes,
        outage_seconds: float | None = None,
        target: tuple[str, int] = ("127.0.0.1", 5432),
    ) -> None:
        self.cut_on, self.outage_seconds, self.target = cut_on, outage_seconds, target
        self.cuts = 0
        self.refused = 0
        self._down_until: float | None = None  # monotonic; inf while down for good
        self._lock = threading.Lock()
        self._live: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def dsn(self, database: str = "test") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}?sslmode=disable"

    def down(self) -> bool:
        with self._lock:
            return self._down_until is not None and time.monotonic() < self._down_until

    def heal(self) -> None:
        with self._lock:
            self._down_until = None

    def close(self) -> None:
        self._listener.close()
        self._cut_all()

    def _cut_all(self) -> None:
        with self._lock:
            live, self._live = self._live, set()
        for s in live:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.down():
                with self._lock:
                    self.refused += 1
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._live |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        try:
            while data := src.recv(65536):
                if from_client and self.cut_on in data and not self.down() and not self.cuts:
                    with self._lock:
                        self.cuts += 1
                        length = self.outage_seconds if self.outage_seconds is not None else float("inf")
                        self._down_until = time.monotonic() + length
                    self._cut_all()
                    return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def cpu_seconds() -> float:
    """CPU time of this process and its finished children: a test's cost that other load does not inflate."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
