"""Errors a user can meet. Each carries a message that says what was wrong and what to do."""

from __future__ import annotations

import errno
from pathlib import Path


class ClarionError(Exception):
    """Base for every error the CLI shows as a message instead of a traceback.

    ``http_status`` is what the REST API answers with it (a problem+json body carrying the message)."""

    exit_code = 1
    http_status = 400


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
    http_status = 409


class NotFoundError(ClarionError):
    """What was asked for does not exist (a draft, a run, a customer, a model version)."""

    http_status = 404


class GenerateError(ClarionError):
    """The synthetic CRM could not be written (bad output target, database unreachable...)."""


class StorageError(ClarionError):
    """A file could not be written: the disk is full, a file-size limit is reached, or var/ is read-only."""


# How the OS words a write that failed for want of room or permission (DuckDB and dlt quote it), and
# what the user does about each. The errno of an OSError finds the same words in any locale.
WRITE_FAILURES: dict[str, str] = {
    "No space left on device": "Free disk space",
    "Disk quota exceeded": "Free disk space (or raise the quota)",
    "File too large": "Free disk space (or raise the file-size limit, `ulimit -f`)",
    "Read-only file system": "Make {where} writable again (it is mounted read-only: remount it read-write)",
    "Permission denied": "Give this user write access to {where}",
}
_ERRNO_WORDS = {
    errno.ENOSPC: "No space left on device",
    errno.EDQUOT: "Disk quota exceeded",
    errno.EFBIG: "File too large",
    errno.EROFS: "Read-only file system",
    errno.EACCES: "Permission denied",
    errno.EPERM: "Permission denied",
}


def _write_failure(exc: BaseException) -> str | None:
    if isinstance(exc, OSError) and exc.errno in _ERRNO_WORDS:
        return _ERRNO_WORDS[exc.errno]
    text = str(exc)
    return next((w for w in WRITE_FAILURES if w in text), None)


def storage_error(exc: BaseException, doing: str) -> StorageError | None:
    """``exc`` as a one-line StorageError when it is a failed write (DuckDB, dlt and the OS word it
    alike), else None. The message names what was being done, the file, the cause and its remedy."""
    cause = _write_failure(exc)
    if cause is None:
        return None
    text = " ".join(str(exc).split())
    remedy = WRITE_FAILURES[cause].format(where="the folder of that file")
    return StorageError(f"{doing} failed: {cause}: {text[:300]}. {remedy}, then run `clarion run --resume`.")


def unwritable_folder(folder: Path, setting: str, exc: OSError) -> StorageError:
    """A folder Clarion writes to refused a write before anything was written: a read-only var/ is
    then one message naming the folder and the setting that chose it, not a traceback from the
    first file a run happened to open."""
    cause = _write_failure(exc) or (exc.strerror or str(exc))
    remedy = WRITE_FAILURES.get(cause, "Make {where} writable").format(where="it")
    return StorageError(
        f"cannot write to {folder} ({setting}): {cause}; nothing was written. {remedy}, or set "
        f"{setting} in clarion.yaml to a writable folder, then run the command again."
    )
