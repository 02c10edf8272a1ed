"""Errors a user can meet. Each carries a message that says what was wrong and what to do."""

from __future__ import annotations


class ClarionError(Exception):
    """Base for every error the CLI shows as a message instead of a traceback."""

    exit_code = 1


class ConfigError(ClarionError):
    """The configuration file or a CLARION_* variable is wrong; nothing has run yet."""

    exit_code = 2

    def __init__(self, problems: list[str], source: str = "configuration") -> None:
        self.problems = problems
        self.source = source
        lines = [f"{source} is invalid ({len(problems)} problem{'s' if len(problems) != 1 else ''}):"]
        lines += [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))


class WarehouseBusyError(ClarionError):
    """Another process holds the warehouse for writing."""

    exit_code = 3


class GenerateError(ClarionError):
    """The synthetic CRM could not be written (bad output target, database unreachable...)."""


class StorageError(ClarionError):
    """A file could not be written: the disk is full, a file-size limit is reached, or var/ is read-only."""


WRITE_FAILURES = ("No space left on device", "File too large", "Read-only file system", "Disk quota exceeded")


def storage_error(exc: BaseException, doing: str) -> StorageError | None:
    """``exc`` as a one-line StorageError when it is a failed write (DuckDB, dlt and the OS word it
    alike), else None. The message names what was being done, the file and the cause."""
    text = " ".join(str(exc).split())
    cause = next((w for w in WRITE_FAILURES if w in text), None)
    if cause is None:
        return None
    return StorageError(
        f"{doing} failed: {cause}: {text[:300]}. Free disk space (or make var/ writable), then run "
        "`clarion run --resume`."
    )
