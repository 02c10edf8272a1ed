"""The audit log (``audit.events``): append-only, hash-chained, with its head anchored outside the warehouse.

Every event names who did what to which subject, and when; each carries the sha256 of its own content
and of the event before it, so editing, deleting, inserting or renumbering any event breaks the chain
where it happened. Deleting the *last* events leaves a chain that is still whole, so every record also
writes the head (seq, hash) to ``<var_dir>/audit/head.json``: a log that ends before its head was cut.

Design: an ``AuditLog(var_dir)`` holds where the head lives; ``.record(con, ...)`` appends in the
caller's connection (the caller holds the writer lock) and ``.verify(con)`` checks the chain and the
head. ``verify(con, head_file)`` and ``ensure_table(con)`` are the same checks as plain functions.

Every record also appends (seq, hash) to ``heads.jsonl`` beside the head, so a history rewritten and
re-chained is named even after a genuine event follows it. The head file and the journal are local:
whoever can rewrite both the warehouse and ``var/`` can forge a consistent log; an anchor kept
elsewhere (``clarion audit anchor``) or a key the forger lacks (``audit.hmac_key_env``) closes that gap.

Modules: ``events`` (the event, its hash, the table), ``anchors`` (head file, journal, anchors),
``verify`` (the checks); this one holds ``AuditLog``, which records.

Note that ``at`` is a keyword in DuckDB: query it as ``"at"``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from clarion.audit.anchors import _read_head, journal_path, parse_anchor, read_anchors
from clarion.audit.events import (
    ACTIONS,
    COLUMNS,
    CONFIG_CHANGED,
    DRAFT_APPROVED,
    DRAFT_EDITED,
    DRAFT_REJECTED,
    EVENTS_DDL,
    EXPORT_WRITTEN,
    FAIRNESS_ACCEPTED,
    GATE_FAILED,
    GATE_PASSED,
    GENESIS,
    HMAC_PREFIX,
    MODEL_KEPT,
    MODEL_PROMOTED,
    MODEL_REGISTERED,
    MODEL_RETRAIN_REQUIRED,
    MODEL_ROLLBACK,
    NBA_APPROVED,
    RETENTION_APPLIED,
    RUN_FAILED,
    RUN_FINISHED,
    RUN_INTERRUPTED,
    RUN_RESUMED,
    RUN_STARTED,
    SUBJECT_ACCESSED,
    SUBJECT_CORRECTED,
    SUBJECT_ERASED,
    SUBJECT_OBJECTED,
    TRIGGER_FIRED,
    TRIGGER_RUN,
    _canonical,
    _database_path,
    _dumps,
    _epoch_us,
    _iso,
    default_actor,
    ensure_table,
    event_hash,
    os_identity,
)
from clarion.audit.verify import verify
from clarion.errors import ClarionError

log = logging.getLogger(__name__)

# Threads of one process share the writer lock (it is re-entrant): one appender at a time.
_append = threading.Lock()

__all__ = [
    "ACTIONS",
    "COLUMNS",
    "CONFIG_CHANGED",
    "DRAFT_APPROVED",
    "DRAFT_EDITED",
    "DRAFT_REJECTED",
    "EVENTS_DDL",
    "EXPORT_WRITTEN",
    "FAIRNESS_ACCEPTED",
    "GATE_FAILED",
    "GATE_PASSED",
    "GENESIS",
    "HMAC_PREFIX",
    "MODEL_KEPT",
    "MODEL_PROMOTED",
    "MODEL_REGISTERED",
    "MODEL_RETRAIN_REQUIRED",
    "MODEL_ROLLBACK",
    "NBA_APPROVED",
    "RETENTION_APPLIED",
    "RUN_FAILED",
    "RUN_FINISHED",
    "RUN_INTERRUPTED",
    "RUN_RESUMED",
    "RUN_STARTED",
    "SUBJECT_ACCESSED",
    "SUBJECT_CORRECTED",
    "SUBJECT_ERASED",
    "SUBJECT_OBJECTED",
    "TRIGGER_FIRED",
    "TRIGGER_RUN",
    "AuditKeyError",
    "AuditLog",
    "default_actor",
    "ensure_table",
    "event_hash",
    "journal_path",
    "os_identity",
    "parse_anchor",
    "read_anchors",
    "record_registry_change",
    "verify",
]


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
        key_secret: str | None = None,
    ) -> None:
        """``key``: the HMAC key every event is signed with (None: plain sha256), or where to find it:
        ``key_env`` (an environment variable) or ``key_secret`` (a Prefect Secret block, loaded when
        first needed). Messages name where the key lives, never the key."""
        self.head_file = Path(var_dir) / "audit" / "head.json"
        self.journal = journal_path(self.head_file)
        self.anchor_file = Path(anchor_file) if anchor_file is not None else None
        self.key_env, self.key_secret = key_env, key_secret
        if key is None and key_env:
            key = os.environ.get(key_env, "").encode()
        self._key = key or None
        self._secret_tried = False

    def __repr__(self) -> str:  # never the key
        return f"AuditLog({self.head_file.parent.parent}, keyed={bool(self.key_env or self.key_secret)})"

    @classmethod
    def for_settings(cls, settings: Any) -> AuditLog:
        return cls(
            settings.var_dir,
            anchor_file=settings.audit.anchor_file,
            key_env=settings.audit.hmac_key_env,
            key_secret=settings.audit.hmac_key_secret,
        )

    @property
    def key_name(self) -> str | None:
        """Where the key lives, as messages name it."""
        if self.key_env:
            return f"${self.key_env}"
        return f"the Prefect Secret block {self.key_secret!r}" if self.key_secret else None

    def _resolved_key(self) -> bytes | None:
        if self._key is None and self.key_secret and not self._secret_tried:
            self._secret_tried = True
            from prefect.blocks.system import Secret

            try:
                self._key = str(Secret.load(self.key_secret).get()).encode() or None
            except ValueError:  # no such block: record refuses, verify says it cannot check
                self._key = None
        return self._key

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
        key = self._resolved_key()
        if self.key_name and key is None:
            setting = "audit.hmac_key_env" if self.key_env else "audit.hmac_key_secret"
            raise AuditKeyError(
                f"{setting} names {self.key_name}, which is not set or empty here: set it to the audit "
                f"key every writer uses (or remove {setting})"
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
            digest = event_hash(seq, at_us, who, action, run_id, subject, clean, prev, key=key)
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
        key = self._resolved_key()
        return verify(con, self.head_file, anchors=anchors, key=key, key_name=self.key_name)

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
