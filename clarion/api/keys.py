"""API keys: created and revoked with `clarion api keys`, stored hashed, checked on every request.

The store is a small SQLite file beside the warehouse (``{var_dir}/api/keys.sqlite``), not a table in
the warehouse: a key must be revocable at once, even while a pipeline run holds the warehouse for an
hour. A key is ``clk_<key_id>_<secret>``; only ``sha256(secret)`` is kept. The secret is 32 random
bytes, so a fast hash is the right one (a slow password hash such as argon2 protects guessable
secrets and would cost tens of milliseconds on every request); comparison is constant-time.

The store also keeps the server secret that signs bearer tokens and web-app sessions (generated once,
never printed) and, per key, who created or revoked it and when: the key's own audit trail.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clarion.api.permissions import ROLES
from clarion.errors import ClarionError, NotFoundError

PREFIX = "clk_"
KEY_PATTERN = re.compile(r"^clk_([0-9a-f]{8})_([A-Za-z0-9_-]{43})$")
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")

_DDL = (
    """create table if not exists keys (
        key_id      text primary key,
        name        text not null unique,
        role        text not null,
        secret_sha256 text not null,
        created_at  text not null,
        created_by  text not null,
        revoked_at  text,
        revoked_by  text,
        last_used_at text
    )""",
    "create table if not exists server_secrets (name text primary key, value blob not null)",
)


class ApiKeyError(ClarionError):
    """A key could not be created, found or revoked."""


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    role: str
    created_at: str
    created_by: str
    revoked_at: str | None
    revoked_by: str | None
    last_used_at: str | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def store_path(var_dir: Path) -> Path:
    return Path(var_dir) / "api" / "keys.sqlite"


class KeyStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def for_settings(cls, settings: Any) -> KeyStore:
        return cls(store_path(settings.var_dir))

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            con.execute("pragma journal_mode=wal")
            for ddl in _DDL:
                con.execute(ddl)
            yield con
        finally:
            con.close()

    # ------------------------------------------------------------------------------------------
    def create(self, name: str, role: str, by: str) -> tuple[ApiKey, str]:
        """A new key for ``role``; returns the record and the key itself (shown once, never stored)."""
        if role not in ROLES:
            raise ApiKeyError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
        if not NAME_PATTERN.match(name or ""):
            raise ApiKeyError(
                f"key name {name!r} is not usable: use 1-63 lower-case letters, digits, '.', '_' or '-' "
                "(it names the caller in the audit trail, so never a person's e-mail)"
            )
        key_id = secrets.token_hex(4)
        secret = secrets.token_urlsafe(32)
        now = _now()
        with self._db() as con:
            if con.execute("select 1 from keys where name = ?", [name]).fetchone():
                raise ApiKeyError(f"a key named {name!r} exists already: choose another name or revoke it")
            con.execute(
                "insert into keys (key_id, name, role, secret_sha256, created_at, created_by) "
                "values (?, ?, ?, ?, ?, ?)",
                [key_id, name, role, _sha256(secret), now, by],
            )
        return self.get(key_id), f"{PREFIX}{key_id}_{secret}"

    def list(self) -> list[ApiKey]:
        with self._db() as con:
            rows = con.execute(f"select {_COLUMNS} from keys order by created_at, name").fetchall()
        return [ApiKey(*r) for r in rows]

    def get(self, key_id_or_name: str) -> ApiKey:
        with self._db() as con:
            row = con.execute(
                f"select {_COLUMNS} from keys where key_id = ? or name = ?", [key_id_or_name, key_id_or_name]
            ).fetchone()
        if row is None:
            raise NotFoundError(f"no API key {key_id_or_name!r}: `clarion api keys list` shows them")
        return ApiKey(*row)

    def revoke(self, key_id_or_name: str, by: str) -> ApiKey:
        key = self.get(key_id_or_name)
        if key.revoked_at:
            raise ApiKeyError(
                f"key {key.name!r} was revoked already, at {key.revoked_at} by {key.revoked_by}"
            )
        with self._db() as con:
            con.execute(
                "update keys set revoked_at = ?, revoked_by = ? where key_id = ?", [_now(), by, key.key_id]
            )
        return self.get(key.key_id)

    # ------------------------------------------------------------------------------------------
    def verify(self, presented: str) -> ApiKey | None:
        """The active key a presented string is, or None (malformed, unknown, wrong or revoked)."""
        m = KEY_PATTERN.match(presented or "")
        if not m:
            return None
        key_id, secret = m.groups()
        with self._db() as con:
            row = con.execute(
                f"select {_COLUMNS}, secret_sha256 from keys where key_id = ?", [key_id]
            ).fetchone()
        if row is None or not hmac.compare_digest(row[-1], _sha256(secret)):
            return None
        key = ApiKey(*row[:-1])
        return None if key.revoked_at else key

    def active(self, key_id: str) -> ApiKey | None:
        """The key with this id if it is not revoked (a token or session names a key by id)."""
        with self._db() as con:
            row = con.execute(f"select {_COLUMNS} from keys where key_id = ?", [key_id]).fetchone()
        key = ApiKey(*row) if row else None
        return key if key and not key.revoked_at else None

    def touch(self, key_id: str) -> None:
        """Record that a key was used (at most once a minute per key, to spare the file)."""
        now = _now()
        with self._db() as con:
            con.execute(
                "update keys set last_used_at = ? where key_id = ? "
                "and (last_used_at is null or last_used_at < ?)",
                [now, key_id, now[:16]],
            )

    def server_secret(self, name: str) -> bytes:
        """A random secret kept in the store (token and session signing), made on first use."""
        with self._db() as con:
            con.execute(
                "insert or ignore into server_secrets (name, value) values (?, ?)",
                [name, secrets.token_bytes(32)],
            )
            (value,) = con.execute("select value from server_secrets where name = ?", [name]).fetchone()
        return bytes(value)


_COLUMNS = "key_id, name, role, created_at, created_by, revoked_at, revoked_by, last_used_at"


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
