"""Process set-up that must happen before Prefect is imported: where its state lives, how long to wait."""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
from pathlib import Path

from clarion.config import Settings
from clarion.errors import ClarionError, unwritable_folder
from clarion.ops import local_server
from clarion.privacy import scrub


def prepare_prefect(settings: Settings) -> None:
    """Point Prefect at the project's own state unless the user chose a server or home already.

    Without PREFECT_API_URL, Prefect starts a temporary local server per process. Keeping its
    database under ``var/prefect`` means `prefect server start` with the same PREFECT_HOME later shows
    every run Clarion made, with its artifacts. A server `clarion prefect start` keeps running on that
    home is used instead, while it answers (clarion/ops/local_server.py).
    """
    if not os.environ.get("PREFECT_API_URL") and not os.environ.get("PREFECT_HOME"):
        settings.prefect.home.mkdir(parents=True, exist_ok=True)
        os.environ["PREFECT_HOME"] = str(settings.prefect.home)
        # a server `clarion prefect start` keeps for this project: no temporary server then
        local_server.use_if_running(settings)
    # the temporary server needs 10-20 s on 2 busy cores; Prefect's default patience is 20 s
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # the library's own log lines (clarion.*) also go to the flow run's logs in the Prefect UI
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "clarion")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", settings.logging.level)


def check_writable(settings: Settings) -> None:
    """Stop before a run starts when a folder it writes to refuses writes (a read-only mount, no
    permission): nothing is written then, and the message names the folder and its setting. Found
    later, the same fault fails the run at whatever file it opens first (the writer lock, Prefect's
    database), with a traceback, and a run that got further could not even record its failure."""
    folders: dict[Path, str] = {}
    folders.setdefault(Path(settings.var_dir), "var_dir")
    folders.setdefault(Path(settings.warehouse.path).parent, "warehouse.path")
    if not os.environ.get("PREFECT_API_URL") and not os.environ.get("PREFECT_HOME"):
        folders.setdefault(Path(settings.prefect.home), "prefect.home")  # prepare_prefect's choice
    for folder, setting in folders.items():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):  # O_TMPFILE: no name, nothing left behind
                pass
        except OSError as exc:
            raise unwritable_folder(folder, setting, exc) from None


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is now (test runners and progress bars swap it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


# Two filters keep an error Clarion raised on purpose (a ClarionError: its message says what to do and
# the CLI prints it last) from drowning in Prefect's output: the first on Prefect's run loggers (no
# traceback per retry), the second on the console only (no repeated lines; the API keeps them).


class _KnownErrorsWithoutTraceback(logging.Filter):
    """Prefect logs every failed task and flow run with its traceback. For a ClarionError the message
    says what was wrong and what to do (the CLI prints it last, on its own line): the traceback, once
    per retry, would only bury it. `-v` (DEBUG) keeps the tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], ClarionError):
            record.exc_info = record.exc_text = None
            record.clarion_error = True  # the console filter below still knows it for what it is
        return True


_QUIET = _KnownErrorsWithoutTraceback()


class _KnownErrorsOnConsole(logging.Filter):
    """On a terminal, an error Clarion raised on purpose (a failing gate, a busy warehouse, a bad
    setting: a ClarionError) is one clean message, printed by the CLI. Prefect's own console lines
    about it, a traceback for every flow run it passes through and a failed state quoting the whole
    message, are kept from the console; the Prefect API and UI still get them in full."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ClarionError) or getattr(record, "clarion_error", False):
            return False
        message = record.getMessage()
        if message.startswith("Finished in state Failed"):
            known = _clarion_errors()
            # a flow run's "...encountered an exception: Name: ...", a task run's "...exception Name: ..."
            for marker in ("exception: ", "encountered an exception "):
                name = message.partition(marker)[2].partition(":")[0]
                if name in known:
                    record.msg, record.args = f"Finished in state Failed ({name}, below)", ()
                    break
        return True


def _clarion_errors() -> set[str]:
    seen: set[str] = set()
    todo: list[type] = [ClarionError]
    while todo:
        cls = todo.pop()
        seen.add(cls.__name__)
        todo += cls.__subclasses__()
    return seen


def quiet_known_errors() -> None:
    """Keep ClarionError tracebacks off the console handlers (the CLI prints the message once)."""
    for handler in logging.getLogger().handlers:
        if type(handler).__name__ == "PrefectConsoleHandler" and not any(
            isinstance(f, _KnownErrorsOnConsole) for f in handler.filters
        ):
            handler.addFilter(_KnownErrorsOnConsole())


def configure_logging(level: str) -> None:
    """Library modules log through `logging`; the CLI shows those lines on stderr."""
    for name in ("prefect.task_runs", "prefect.flow_runs"):
        logger = logging.getLogger(name)
        if level == "DEBUG":
            logger.removeFilter(_QUIET)
        elif _QUIET not in logger.filters:
            logger.addFilter(_QUIET)
    root = logging.getLogger("clarion")
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
        root.addHandler(handler)
    root.setLevel(level)
    scrub.install()  # no e-mail, phone or quoted personal field in any log line (docs/privacy.md)
    # printed once, by this handler; without it (a Prefect worker) the lines reach the root console
    root.propagate = False


def flow_run_logging(settings: Settings) -> None:
    """At the start of a flow run that no CLI set up (a worker's or `clarion serve`'s process): the
    library's log lines (clarion.*) at the configured level, scrubbed, and sent to the flow run's
    logs in the Prefect API as well. Under the CLI this changes nothing: `configure_logging` and
    PREFECT_LOGGING_EXTRA_LOGGERS did it already."""
    from prefect.logging.handlers import APILogHandler

    logger = logging.getLogger("clarion")
    if logger.level == logging.NOTSET:  # else the root's WARNING would drop every INFO line
        logger.setLevel(settings.logging.level)
    if not any(isinstance(h, APILogHandler) for h in logger.handlers):
        handler = APILogHandler()
        handler.addFilter(_in_a_run)  # a line logged between runs is not the API's (nor a warning)
        logger.addHandler(handler)
    scrub.install()


def _in_a_run(record: logging.LogRecord) -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def quiet_shutdown() -> None:
    """The duckdb 2.0 binding lists 'leaked' objects on stderr while the interpreter shuts down,
    after all work is done (harmless, see ../shared/stack.md). Register this exit hook first, so it
    runs last: from there on nothing but that list would be written."""
    sys.stderr.flush()
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)


# --------------------------------------------------------------------------------------------------
# Fault points for the reliability tests (tests/test_reliability.py)

KILL_AT_ENV = "CLARION_TEST_KILL_AT"  # POINT or POINT#N: SIGKILL at the Nth time POINT is reached
DISK_FULL_AT_ENV = "CLARION_TEST_DISK_FULL_AT"  # POINT: from there on, writing a file fails (EFBIG)
STOP_AT_ENV = "CLARION_TEST_STOP_AT"  # POINT[#N]: SIGSTOP there; a test changes the world, then SIGCONT
_reached: dict[str, int] = {}


def checkpoint(name: str) -> None:
    """A named point of a run where the reliability tests kill the process, fill its disk or stop it.

    Without the variables (always, outside those tests) this does nothing. With them, the process
    dies here as a `kill -9` or the OOM killer would kill it, or every later write to a file fails as
    on a full disk, or it stops (SIGSTOP) so that a test can change its surroundings (make var/
    read-only) at this exact point before it goes on; the tests then prove that the run fails
    cleanly and that a rerun repairs what such a fault left.
    """
    for variable in (KILL_AT_ENV, DISK_FULL_AT_ENV, STOP_AT_ENV):
        wanted = os.environ.get(variable)
        if not wanted:
            continue
        point, _, nth = wanted.partition("#")
        if point != name:
            continue
        _reached[variable] = _reached.get(variable, 0) + 1
        if _reached[variable] != int(nth or 1):
            continue
        if variable == KILL_AT_ENV:
            sys.stderr.write(f"{KILL_AT_ENV}: killing the process at {name}\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        if variable == STOP_AT_ENV:
            sys.stderr.write(f"{STOP_AT_ENV}: stopping the process at {name}\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGSTOP)  # returns once someone sends SIGCONT
            continue
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
