"""Verification of the audit log: the chain, each event's own hash or HMAC, and what is kept outside
the table (head, journal, anchors)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb

from clarion.audit.anchors import _anchor_problems, _head_problems, _journal_problems, journal_path
from clarion.audit.events import COLUMNS, GENESIS, HMAC_PREFIX, _table_exists, event_hash


def verify(
    con: duckdb.DuckDBPyConnection,
    head_file: Path | str,
    *,
    anchors: list[tuple[str, int, str]] | None = None,
    key: bytes | None = None,
    key_name: str | None = None,
) -> dict[str, Any]:
    """Check every event's own hash, the chain of prev_hash, gap-free numbering from 1, the head, the
    journal of heads beside it, and ``anchors``: (where it came from, seq, hash) kept elsewhere.

    ``key_name`` says where the key comes from in messages ("$AUDIT_HMAC_KEY"); never the key.
    Events written with a key carry ``hmac:`` hashes: with the key each is recomputed (a wrong key
    names the first that fails); without it only their links are checked, and ``authenticity`` says
    so. With a key, every event from the first keyed one on must be keyed (a plain hash there was
    written by someone without the key), and a log with no keyed event at all is reported.

    Returns ``{"ok", "events", "problems", "head", "authenticity"}``; each problem names the seq and
    what is wrong. ``head`` is the (seq, hash) of the last event in the table, or None for an empty log.
    """
    head_file = Path(head_file)
    key = key or None
    rows: list[tuple] = []
    if _table_exists(con):
        rows = con.execute(f"select {COLUMNS} from audit.events order by seq").fetchall()
    problems: list[str] = []
    keyed: list[int] = []  # seqs whose hash is an HMAC
    forged_keyless: list[int] = []  # plain hashes after the first keyed event (with a key)
    wrong_hmac: list[int] = []  # HMACs that do not match with the key given
    expected, previous = 1, None  # previous: (seq, hash) of the row before
    for seq, at_us, actor, action, run_id, subject, details_text, prev_hash, digest in rows:
        seq = int(seq)
        is_hmac = str(digest).startswith(HMAC_PREFIX)
        try:
            details = json.loads(details_text) if details_text is not None else None
            fields = (seq, int(at_us), actor, action, run_id, subject, details, prev_hash)
            own = event_hash(*fields, key=key if is_hmac else None) if (key or not is_hmac) else digest
        except (TypeError, ValueError):
            own = None
        if is_hmac:
            keyed.append(seq)
            if own != digest:
                wrong_hmac.append(seq)
        elif own != digest:
            problems.append(f"seq {seq}: hash does not match its content (edited)")
        elif key is not None and keyed:
            forged_keyless.append(seq)
        if seq > expected:
            gap = f"seq {expected}" if seq == expected + 1 else f"seq {expected}..{seq - 1}"
            problems.append(f"{gap} missing (deleted): the log jumps from seq {expected - 1} to {seq}")
        elif seq < expected:
            problems.append(f"seq {seq} appears out of order or more than once (renumbered)")
        elif previous is None and prev_hash != GENESIS:
            problems.append(f"prev_hash of seq {seq} is not the genesis hash (events before it replaced)")
        elif previous is not None and prev_hash != previous[1]:
            problems.append(f"prev_hash of seq {seq} does not match seq {previous[0]}")
        expected, previous = max(expected, seq + 1), (seq, digest)
    where = f"the key in {key_name}" if key_name else "the key given"
    if wrong_hmac:
        more = (
            f"; {len(wrong_hmac)} keyed events fail, up to seq {wrong_hmac[-1]}"
            if len(wrong_hmac) > 1
            else ""
        )
        problems.append(
            f"seq {wrong_hmac[0]}: its HMAC does not match with {where} (edited, or written with another "
            f"key{more})"
        )
    if forged_keyless:
        problems.append(
            f"seq {forged_keyless[0]}: a plain sha256 after seq {keyed[0]}'s HMAC (written without the key; "
            f"{len(forged_keyless)} such events)"
        )
    if key is not None and rows and not keyed:
        problems.append(
            f"none of the {len(rows)} events carries an HMAC of {where}: written before the key was set, "
            "or rewritten without it (the next event Clarion records is keyed)"
        )
    last = (int(rows[-1][0]), rows[-1][-1]) if rows else None
    problems += _journal_problems(con, journal_path(head_file), {int(r[0]): r[-1] for r in rows})
    problems += _head_problems(con, head_file, last)
    problems += _anchor_problems(anchors or [], {int(r[0]): r[-1] for r in rows}, last)
    return {
        "ok": not problems,
        "events": len(rows),
        "problems": problems,
        "head": {"seq": last[0], "hash": last[1]} if last else None,
        "authenticity": _authenticity(keyed, key is not None, key_name, wrong_hmac),
    }


def _authenticity(keyed: list[int], has_key: bool, key_name: str | None, wrong: list[int]) -> dict[str, Any]:
    if not keyed:
        note = None
        if key_name and not has_key:
            note = f"the audit key ({key_name}) is not available here: no event is keyed yet"
        return {"keyed_events": 0, "checked": has_key, "note": note}
    if not has_key:
        hint = f"set {key_name}" if key_name else "set audit.hmac_key_env and that variable"
        return {
            "keyed_events": len(keyed),
            "checked": False,
            "note": f"{len(keyed)} events carry an HMAC that cannot be checked without the key ({hint}): "
            "their links are checked, their authenticity and content are not",
        }
    return {"keyed_events": len(keyed), "checked": True, "note": None if not wrong else "wrong HMACs"}
