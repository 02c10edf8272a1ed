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
