"""The audit log (``audit.events``): append-only, hash-chained, with its head anchored outside the warehouse.

Every event names who did what to which subject, and when; each carries the sha256 of its own content
and of the event before it, so editing, deleting, inserting or renumbering any event breaks the chain
where it happened. Deleting the *last* events leaves a chain that is still whole, so every record also
writes the head (seq, hash) to ``<var_dir>/audit/head.json``: a log that ends before its head was cut.

Design: an ``AuditLog(var_dir)`` holds where the head lives; ``.record(con, ...)`` appends in the
caller's connection (the caller holds the writer lock) and ``.verify(con)`` checks the chain and the
head. ``verify(con, head_file)`` and ``ensure_table(con)`` are the same checks as plain functions.

The head file is a local anchor: whoever can rewrite both the warehouse and ``var/`` can forge a
consistent log; keeping a copy of the head's hash elsewhere (a ticket, a message) closes that gap.

Note that ``at`` is a keyword in DuckDB: query it as ``"at"``.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import logging
import math
import os
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from clarion.errors import ClarionError

log = logging.getLogger(__name__)

GENESIS = "0" * 64
HMAC_PREFIX = "hmac:"

RUN_STARTED = "run.started"
RUN_FINISHED = "run.finished"
RUN_FAILED = "run.failed"
RUN_INTERRUPTED = "run.interrupted"
RUN_RESUMED = "run.resumed"
GATE_PASSED = "gate.passed"
GATE_FAILED = "gate.failed"
MODEL_REGISTERED = "model.registered"
MODEL_PROMOTED = "model.promoted"
MODEL_KEPT = "model.kept"
MODEL_ROLLBACK = "model.rollback"
DRAFT_APPROVED = "draft.approved"
DRAFT_REJECTED = "draft.rejected"
DRAFT_EDITED = "draft.edited"
EXPORT_WRITTEN = "export.written"
CONFIG_CHANGED = "config.changed"
ACTIONS: frozenset[str] = frozenset(
    {
        RUN_STARTED,
        RUN_FINISHED,
        RUN_FAILED,
        RUN_INTERRUPTED,
        RUN_RESUMED,
        GATE_PASSED,
        GATE_FAILED,
        MODEL_REGISTERED,
        MODEL_PROMOTED,
        MODEL_KEPT,
        MODEL_ROLLBACK,
        DRAFT_APPROVED,
        DRAFT_REJECTED,
        DRAFT_EDITED,
        EXPORT_WRITTEN,
        CONFIG_CHANGED,
    }
)

EVENTS_DDL = """
    create table if not exists audit.events (
        seq        bigint primary key,
        "at"       timestamptz not null,
        actor      varchar not null,
        action     varchar not null,
        run_id     varchar,
        subject    varchar not null,
        details    json,
        prev_hash  varchar not null,
        hash       varchar not null
    )
"""
COLUMNS = 'seq, epoch_us("at"), actor, action, run_id, subject, details, prev_hash, hash'

# Threads of one process share the writer lock (it is re-entrant): one appender at a time.
_append = threading.Lock()


def ensure_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists audit")
    con.execute(EVENTS_DDL)


def default_actor() -> str:
    """The operating-system user running Clarion."""
    try:
        return getpass.getuser() or "unknown"
    except (KeyError, OSError, ImportError):
        return "unknown"


def event_hash(
    seq: int,
    at_us: int,
    actor: str,
    action: str,
    run_id: str | None,
    subject: str,
    details: dict[str, Any] | None,
    prev_hash: str,
    *,
    key: bytes | None = None,
) -> str:
    """sha256 of the canonical JSON of an event (time as ISO-8601 UTC with microseconds); with a key,
    ``hmac:`` + HMAC-SHA256 of the same JSON, which nobody without the key can compute."""
    blob = json.dumps(
        {
            "seq": seq,
            "at": _iso(at_us),
            "actor": actor,
            "action": action,
            "run_id": run_id,
            "subject": subject,
            "details": details,
            "prev_hash": prev_hash,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    ).encode()
    if key is not None:
        return HMAC_PREFIX + hmac.new(key, blob, hashlib.sha256).hexdigest()
    return hashlib.sha256(blob).hexdigest()


class AuditKeyError(ClarionError):
    exit_code = 5


class AuditLog:
    """The audit log of one project: events in the warehouse, the head in ``<var_dir>/audit/head.json``."""

    def __init__(
        self,
        var_dir: Path | str,
        *,
        anchor_file: Path | str | None = None,
        key: bytes | None = None,
        key_env: str | None = None,
    ) -> None:
        """``key``: the HMAC key every event is signed with (None: plain sha256); ``key_env``: the
        environment variable it came from, named in messages (the key itself never is)."""
        self.head_file = Path(var_dir) / "audit" / "head.json"
        self.journal = journal_path(self.head_file)
        self.anchor_file = Path(anchor_file) if anchor_file is not None else None
        self._key = key or None
        self.key_env = key_env

    def __repr__(self) -> str:  # never the key
        return f"AuditLog({self.head_file.parent.parent}, keyed={self._key is not None})"

    @classmethod
    def for_settings(cls, settings: Any) -> AuditLog:
        name = settings.audit.hmac_key_env
        key = os.environ.get(name, "").encode() if name else b""
        return cls(settings.var_dir, anchor_file=settings.audit.anchor_file, key=key, key_env=name)

    def record(
        self,
        con: duckdb.DuckDBPyConnection,
        action: str,
        subject: str,
        *,
        actor: str | None = None,
        run_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Append one event in the caller's connection (which holds the writer lock) and move the head.

        ``details`` must never hold personal data (names, e-mail addresses, phone numbers, free text a
        person wrote): only ids, counts, hashes, versions, statuses and metrics. The actor is the one
        name an event carries (default: the operating-system user).

        If the head file is ahead of the table (events deleted at the end) or names another last hash
        (the last event replaced), the new event continues from the head, not from the table, so the
        damage stays visible to ``verify`` instead of being papered over by a fresh, whole chain.
        """
        if action not in ACTIONS:
            raise ValueError(f"unknown audit action {action!r}; known: {sorted(ACTIONS)}")
        if self.key_env and self._key is None:
            raise AuditKeyError(
                f"audit.hmac_key_env names the environment variable {self.key_env}, which is not set or "
                "empty: set it to the audit key every writer uses (or remove audit.hmac_key_env)"
            )
        clean = _canonical(details) if details is not None else None
        who = actor if actor is not None else default_actor()
        with _append:
            ensure_table(con)
            last = con.execute("select seq, hash from audit.events order by seq desc limit 1").fetchone()
            last_seq, last_hash = (int(last[0]), last[1]) if last else (0, GENESIS)
            seq, prev = last_seq + 1, last_hash
            head = self._read_head()
            ahead = (
                head is not None
                and head.get("warehouse") == _database_path(con)
                and (head["seq"] > last_seq or (head["seq"] == last_seq and head["hash"] != last_hash))
            )
            if ahead:
                log.warning(
                    "audit log ends at seq %d (%s) but its head file says seq %d (%s): continuing "
                    "from the head; `verify` reports the damage",
                    last_seq,
                    last_hash[:12],
                    head["seq"],
                    head["hash"][:12],
                )
                seq, prev = head["seq"] + 1, head["hash"]
            at = datetime.now(UTC)
            at_us = _epoch_us(at)
            digest = event_hash(seq, at_us, who, action, run_id, subject, clean, prev, key=self._key)
            con.execute(
                "insert into audit.events values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    seq,
                    at,
                    who,
                    action,
                    run_id,
                    subject,
                    None if clean is None else _dumps(clean),
                    prev,
                    digest,
                ],
            )
            self._write_head(con, seq, digest)
            self._journal(con, seq, digest)
        return {
            "seq": seq,
            "at": _iso(at_us),
            "actor": who,
            "action": action,
            "run_id": run_id,
            "subject": subject,
            "details": clean,
            "prev_hash": prev,
            "hash": digest,
        }

    def verify(
        self, con: duckdb.DuckDBPyConnection, expect_head: tuple[int, str] | None = None
    ) -> dict[str, Any]:
        """The chain, the head, the journal, every anchor in ``anchor_file`` and ``expect_head``."""
        anchors = read_anchors(con, self.anchor_file) if self.anchor_file is not None else []
        if expect_head is not None:
            anchors.append(("--expect-head", expect_head[0], expect_head[1]))
        return verify(con, self.head_file, anchors=anchors, key=self._key, key_env=self.key_env)

    def anchor(self, con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        """The head (seq, hash) to keep outside this machine, after checking the chain (a broken chain
        is not anchored: exit and say why). Appended to ``anchor_file`` when one is configured."""
        result = self.verify(con)
        head = result["head"]
        out: dict[str, Any] = {
            "ok": result["ok"],
            "problems": result["problems"],
            "seq": head["seq"] if head else None,
            "hash": head["hash"] if head else None,
            "anchor": f"{head['seq']}:{head['hash']}" if head else None,
            "warehouse": _database_path(con),
            "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "appended_to": None,
        }
        if result["ok"] and head is not None and self.anchor_file is not None:
            line = {k: out[k] for k in ("seq", "hash", "warehouse", "at")}
            self.anchor_file.parent.mkdir(parents=True, exist_ok=True)
            with self.anchor_file.open("a") as fh:
                fh.write(json.dumps(line, sort_keys=True) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            out["appended_to"] = str(self.anchor_file)
        return out

    # -- the head file and the journal of heads -----------------------------------------------------
    def _read_head(self) -> dict[str, Any] | None:
        return _read_head(self.head_file)

    def _journal(self, con: duckdb.DuckDBPyConnection, seq: int, digest: str) -> None:
        """Append (seq, hash) of the event just written to ``heads.jsonl``: the head file only knows the
        end, and once a genuine event follows a rewritten history the end is whole again."""
        line = json.dumps({"seq": seq, "hash": digest, "warehouse": _database_path(con)}, sort_keys=True)
        with self.journal.open("a") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _write_head(self, con: duckdb.DuckDBPyConnection, seq: int, digest: str) -> None:
        self.head_file.parent.mkdir(parents=True, exist_ok=True)
        blob = json.dumps(
            {
                "seq": seq,
                "hash": digest,
                "warehouse": _database_path(con),
                "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            },
            indent=2,
        )
        fd, tmp = tempfile.mkstemp(prefix=".head-", suffix=".json", dir=self.head_file.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(blob + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            Path(tmp).replace(self.head_file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def verify(
    con: duckdb.DuckDBPyConnection,
    head_file: Path | str,
    *,
    anchors: list[tuple[str, int, str]] | None = None,
    key: bytes | None = None,
    key_env: str | None = None,
) -> dict[str, Any]:
    """Check every event's own hash, the chain of prev_hash, gap-free numbering from 1, the head, the
    journal of heads beside it, and ``anchors``: (where it came from, seq, hash) kept elsewhere.

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
    where = f"the key in ${key_env}" if key_env else "the key given"
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
        "authenticity": _authenticity(keyed, key is not None, key_env, wrong_hmac),
    }


def _authenticity(keyed: list[int], has_key: bool, key_env: str | None, wrong: list[int]) -> dict[str, Any]:
    if not keyed:
        note = None
        if key_env and not has_key:
            note = f"audit.hmac_key_env names ${key_env}, which is not set here: no event is keyed yet"
        return {"keyed_events": 0, "checked": has_key, "note": note}
    if not has_key:
        hint = f"set ${key_env}" if key_env else "set audit.hmac_key_env and that variable"
        return {
            "keyed_events": len(keyed),
            "checked": False,
            "note": f"{len(keyed)} events carry an HMAC that cannot be checked without the key ({hint}): "
            "their links are checked, their authenticity and content are not",
        }
    return {"keyed_events": len(keyed), "checked": True, "note": None if not wrong else "wrong HMACs"}


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


def record_registry_change(settings: Any, verb: str, version_name: str) -> dict[str, Any]:
    """Record a promotion or rollback by hand (`clarion models promote|rollback`) in the audit log.

    Opens the warehouse briefly as a writer (re-entrant: call it inside or after `_change_registry`'s
    lock). ``verb`` is "promote" or "rollback"; ``version_name`` the version promoted as a result.
    """
    from clarion.warehouse import Warehouse

    actions = {"promote": MODEL_PROMOTED, "rollback": MODEL_ROLLBACK}
    if verb not in actions:
        raise ValueError(f"a registry change is promote or rollback, not {verb!r}")
    with Warehouse.from_settings(settings).connect(f"audit models {verb}") as con:
        return AuditLog.for_settings(settings).record(
            con,
            actions[verb],
            version_name,
            details={"version": version_name, "via": f"clarion models {verb}"},
        )


# -- helpers -------------------------------------------------------------------------------------
def _canonical(details: dict[str, Any]) -> dict[str, Any]:
    """Details as they will read back from the table: plain JSON, NaN and infinities as null."""
    if not isinstance(details, dict):
        raise TypeError(f"audit details are a dict, not {type(details).__name__}")
    return json.loads(_dumps(_finite(details)))


def _finite(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_finite(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # numpy scalars
        try:
            value = value.item()
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, allow_nan=False)


def _epoch_us(at: datetime) -> int:
    delta = at - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _iso(at_us: int) -> str:
    seconds, micros = divmod(at_us, 1_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{micros:06d}Z"


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


def _database_path(con: duckdb.DuckDBPyConnection) -> str:
    row = con.execute(
        "select path from duckdb_databases() where database_name = current_database()"
    ).fetchone()
    return str(Path(row[0]).resolve()) if row and row[0] else ":memory:"


def _table_exists(con: duckdb.DuckDBPyConnection) -> bool:
    (n,) = con.execute(
        "select count(*) from duckdb_tables() where schema_name = 'audit' and table_name = 'events' "
        "and database_name = current_database()"
    ).fetchone()
    return bool(n)
