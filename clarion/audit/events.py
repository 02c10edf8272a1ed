"""The events of the audit log: what an event is, its canonical form and hash, the table it lives in.

An event's hash is the sha256 of its canonical JSON (time as ISO-8601 UTC with microseconds), or with
a key ``hmac:`` + HMAC-SHA256 of the same JSON. Note that ``at`` is a keyword in DuckDB: query it as
``"at"``.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

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
NBA_APPROVED = "nba.approved"  # a person approved a high-risk campaign's audience for next-best-action
TRIGGER_FIRED = "trigger.fired"  # a campaign's trigger found customers (counts only; ids in ml.trigger_hits)
TRIGGER_RUN = "trigger.run"  # a triggered campaign ran for them: exported, or waiting for approval
# privacy by design (issue 22): subjects appear by pseudonym or request reference, never by id or e-mail
SUBJECT_ACCESSED = "subject.accessed"  # an access report (Art. 15) was produced
SUBJECT_CORRECTED = "subject.corrected"  # a correction (Art. 16) was recorded in the overlay
SUBJECT_ERASED = "subject.erased"  # a person was erased (Art. 17): counts of rows and files removed
SUBJECT_OBJECTED = "subject.objected"  # an objection to profiling (Art. 21) was recorded
RETENTION_APPLIED = "retention.applied"  # retention deleted or redacted what outlived its period: counts
MODEL_RETRAIN_REQUIRED = "model.retrain_required"  # a version's training data lost a person (erasure)
FAIRNESS_ACCEPTED = "fairness.accepted"  # a person signed off a fairness finding by name
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
        NBA_APPROVED,
        TRIGGER_FIRED,
        TRIGGER_RUN,
        SUBJECT_ACCESSED,
        SUBJECT_CORRECTED,
        SUBJECT_ERASED,
        SUBJECT_OBJECTED,
        RETENTION_APPLIED,
        MODEL_RETRAIN_REQUIRED,
        FAIRNESS_ACCEPTED,
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


def ensure_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists audit")
    con.execute(EVENTS_DDL)


def default_actor() -> str:
    """The operating-system user running Clarion."""
    try:
        return getpass.getuser() or "unknown"
    except (KeyError, OSError, ImportError):
        return "unknown"


def os_identity() -> dict[str, Any]:
    """Who really ran the command: the operating-system user and uid, recorded beside a name a person
    claims (``--by``) so that the two can be compared."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    return {"os_user": default_actor(), "os_uid": uid}


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
