"""What the log is checked against outside the table: the head file, the journal of heads beside
it, and anchors kept elsewhere (`clarion audit anchor`, ``audit.anchor_file``, ``--expect-head``).

The table alone cannot show a cut at the end (the chain left is whole), and a history rewritten and
re-chained is whole again too: only a record of what was written, kept outside the table, tells.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb

from clarion.audit.events import HMAC_PREFIX, _database_path


def parse_anchor(text: str) -> tuple[int, str]:
    """``SEQ:HASH`` (as `clarion audit anchor` prints it) -> (seq, hash)."""
    seq, sep, digest = text.strip().partition(":")
    if not sep or not seq.isdigit() or int(seq) < 1 or not _is_hash(digest):
        raise ValueError(
            f"{text!r} is not an anchor: give SEQ:HASH as `clarion audit anchor` prints it "
            "(a seq from 1 and the event's full hash)"
        )
    return int(seq), digest


def read_anchors(con: duckdb.DuckDBPyConnection, anchor_file: Path) -> list[tuple[str, int, str]]:
    """The anchors of this warehouse in ``anchor_file`` as (where, seq, hash); a damaged line is an
    anchor that cannot match (so verify names it) rather than one silently skipped."""
    where = _database_path(con)
    try:
        text = anchor_file.read_text()
    except FileNotFoundError:
        return []
    anchors = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            if entry.get("warehouse") not in (None, where):
                continue
            anchors.append((f"{anchor_file} line {n}", int(entry["seq"]), str(entry["hash"])))
        except (ValueError, KeyError, TypeError, AttributeError):
            anchors.append((f"{anchor_file} line {n}", 0, "unreadable"))
    return anchors


def _anchor_problems(
    anchors: list[tuple[str, int, str]], hashes: dict[int, str], last: tuple[int, str] | None
) -> list[str]:
    problems = []
    for where, seq, digest in anchors:
        if seq < 1:
            problems.append(
                f"the anchor in {where} cannot be read (damaged): expected JSON with seq and hash"
            )
        elif last is None or seq > last[0]:
            end = f"ends at seq {last[0]}" if last else "is empty"
            problems.append(
                f"the log {end} but the anchor from {where} says seq {seq} (events deleted at the end)"
            )
        elif seq not in hashes:
            problems.append(f"seq {seq}, anchored by {where}, is missing (deleted)")
        elif hashes[seq] != digest:
            problems.append(
                f"seq {seq}: its hash differs from the anchor from {where} ({digest[:16]}...; the log was "
                "rewritten since the anchor was taken)"
            )
    return problems


def journal_path(head_file: Path | str) -> Path:
    """Where the journal of heads lives: ``heads.jsonl`` beside the head file."""
    return Path(head_file).with_name("heads.jsonl")


def _journal_problems(con: duckdb.DuckDBPyConnection, journal: Path, hashes: dict[int, str]) -> list[str]:
    """Every (seq, hash) Clarion wrote must still be in the table: a history rewritten and re-chained
    after the fact differs from it at the first rewritten event. Seqs no longer in the table are the
    chain's and the head's to report (deleted)."""
    recorded = _read_journal(con, journal)
    if recorded is None:
        return [f"the journal of heads {journal} cannot be read (damaged)"]
    differ = sorted(seq for seq, digest in recorded.items() if seq in hashes and hashes[seq] != digest)
    if not differ:
        return []
    more = f"; {len(differ)} events up to seq {differ[-1]} differ" if len(differ) > 1 else ""
    return [
        f"seq {differ[0]}: its hash differs from the one Clarion recorded when it wrote the event "
        f"(rewritten afterwards{more})"
    ]


def _read_journal(con: duckdb.DuckDBPyConnection, journal: Path) -> dict[int, str] | None:
    """seq -> the hash Clarion recorded for it in this warehouse (the last line wins: a seq written
    again after a rolled-back transaction)."""
    where = _database_path(con)
    recorded: dict[int, str] = {}
    try:
        text = journal.read_text()
    except FileNotFoundError:
        return recorded
    except OSError:
        return None
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            if entry.get("warehouse") in (None, where):
                recorded[int(entry["seq"])] = str(entry["hash"])
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
    return recorded


def _head_problems(
    con: duckdb.DuckDBPyConnection, head_file: Path, last: tuple[int, str] | None
) -> list[str]:
    if not head_file.exists():
        if last is None:
            return []
        return [
            f"no head file at {head_file}: the end of the log (seq {last[0]}) cannot be checked "
            "(head file deleted?)"
        ]
    head = _read_head(head_file)
    if head is None:
        return [f"the head file {head_file} cannot be read (damaged)"]
    where = _database_path(con)
    if head.get("warehouse") not in (None, where):
        return [f"the head file {head_file} describes the warehouse {head['warehouse']}, not {where}"]
    seq, digest = head["seq"], head["hash"]
    if last is None:
        return [f"the log is empty but the head file says seq {seq} (events deleted)"]
    if last[0] < seq:
        return [f"the log ends at seq {last[0]} but the head file says {seq} (events deleted at the end)"]
    if last[0] > seq:
        return [
            f"the log continues to seq {last[0]} past the head file's seq {seq} (events appended "
            "outside Clarion, or a crash between the event and its head)"
        ]
    if last[1] != digest:
        return [f"seq {seq}: its hash differs from the head file's (the last event was replaced)"]
    return []


def _is_hash(text: str) -> bool:
    text = text.removeprefix(HMAC_PREFIX)
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _read_head(path: Path) -> dict[str, Any] | None:
    try:
        head = json.loads(path.read_text())
        if not isinstance(head, dict):
            return None
        head["seq"] = int(head["seq"])
        if not isinstance(head["hash"], str):
            return None
        return head
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
