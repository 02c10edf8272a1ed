"""Process set-up that must happen before Prefect is imported: where its state lives, how long to wait."""

from __future__ import annotations

import logging
import os
import sys

from clarion.config import Settings


def prepare_prefect(settings: Settings) -> None:
    """Point Prefect at the project's own state unless the user chose a server or home already.

    Without PREFECT_API_URL, Prefect starts a temporary local server per process. Keeping its
    database under ``var/prefect`` means `prefect server start` with the same PREFECT_HOME later shows
    every run Clarion made, with its artifacts.
    """
    if not os.environ.get("PREFECT_API_URL") and not os.environ.get("PREFECT_HOME"):
        settings.prefect.home.mkdir(parents=True, exist_ok=True)
        os.environ["PREFECT_HOME"] = str(settings.prefect.home)
    # the temporary server needs 10-20 s on 2 busy cores; Prefect's default patience is 20 s
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # the library's own log lines (clarion.*) also go to the flow run's logs in the Prefect UI
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "clarion")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", settings.logging.level)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is now (test runners and progress bars swap it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_logging(level: str) -> None:
    """Library modules log through `logging`; the CLI shows those lines on stderr."""
    root = logging.getLogger("clarion")
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
        root.addHandler(handler)
    root.setLevel(level)
    # printed once, by this handler; without it (a Prefect worker) the lines reach the root console
    root.propagate = False


def quiet_shutdown() -> None:
    """The duckdb 2.0 binding lists 'leaked' objects on stderr while the interpreter shuts down,
    after all work is done (harmless, see ../shared/stack.md). Register this exit hook first, so it
    runs last: from there on nothing but that list would be written."""
    sys.stderr.flush()
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
