"""Data-subject rights: `clarion subject access|correct|erase|object` (GDPR articles 15-17 and 21)."""

from __future__ import annotations

from clarion.cli.app import cli


@cli.group()
def subject() -> None:
    """A person's rights over their data: see everything held about them (access), fix it (correct),
    remove it everywhere (erase), stop profiling them (object). Each is recorded in the audit log by
    pseudonym and request reference, never by name or e-mail. See docs/privacy.md."""
