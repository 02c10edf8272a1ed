"""Keyed pseudonyms: the one function every id that leaves the warehouse goes through.

A pseudonym is ``p_`` + the first 16 hex digits of HMAC-SHA256(key, "contact:" + id). Without the key
nobody can go from a pseudonym back to the id (or test a guessed id against it), which a plain hash
of a small integer would allow in a second. The same key gives the same pseudonym in every pack,
report and artifact, so a reviewer can follow one person across them; the mapping itself exists only
inside the warehouse (recompute it there with :func:`pseudonym_sql`).

Where the key comes from, in this order (``privacy:`` settings):
1. the environment variable ``privacy.pseudonym_key_env`` names (default ``PSEUDONYM_KEY``), when set;
2. the Prefect Secret block ``privacy.pseudonym_key_secret``, when configured;
3. otherwise a random key Clarion generates once and keeps inside the warehouse
   (``privacy.keys``), so ``make demo`` works on a fresh machine; ``privacy.require_key: true``
   refuses this fallback (production: a copy of the warehouse then cannot re-identify a pack).
The key is never written to a file, a log line or a message; :attr:`Pseudonymizer.key_id` (a hash of
it) names which key made a set of pseudonyms.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import duckdb

from clarion.errors import ClarionError

PREFIX = "p_"
DIGITS = 16  # 64 bits: a collision among 10M customers has odds of about 3 in a million
DOMAIN = "contact:"
_BLOCK = 64  # SHA-256 block size: the HMAC construction pads the key to it

KEYS_DDL = """
create table if not exists privacy.keys (
    name varchar primary key, key blob, created_at timestamptz default current_timestamp
)
"""


class PseudonymKeyError(ClarionError):
    exit_code = 2


@dataclass(frozen=True)
class Pseudonymizer:
    """HMAC-SHA256 pseudonyms under one key. ``source`` says where the key came from (never the key)."""

    key: bytes = field(repr=False)
    source: str = "given"

    def __post_init__(self) -> None:
        if not self.key:
            raise PseudonymKeyError("the pseudonym key is empty: set it to a long random value")

    @property
    def key_id(self) -> str:
        """A name for the key that reveals nothing about it: the same key id, the same pseudonyms."""
        return hashlib.sha256(b"clarion-pseudonym-key-id:" + self.key).hexdigest()[:8]

    def __call__(self, contact_id: Any) -> str:
        mac = hmac.new(self.key, f"{DOMAIN}{contact_id}".encode(), hashlib.sha256).hexdigest()
        return PREFIX + mac[:DIGITS]

    def many(self, ids: Iterable[Any]) -> list[str]:
        return [self(i) for i in ids]

    def _pads(self) -> tuple[bytes, bytes]:
        key = hashlib.sha256(self.key).digest() if len(self.key) > _BLOCK else self.key
        key = key.ljust(_BLOCK, b"\0")
        return bytes(b ^ 0x5C for b in key), bytes(b ^ 0x36 for b in key)

    def sql(self, column: str) -> tuple[str, list[bytes]]:
        """A DuckDB expression computing the same pseudonym as ``self(column)``, vectorised, and its
        two parameters (bind them in this order where the expression appears once). The key is bound,
        never spelled in SQL text, so it reaches no query log or error message."""
        outer, inner = self._pads()
        expr = (
            f"('{PREFIX}' || left(sha256(?::blob || unhex(sha256(?::blob || "
            f"('{DOMAIN}' || cast({column} as varchar))::blob))), {DIGITS}))"
        )
        return expr, [outer, inner]

    def register(self, con: duckdb.DuckDBPyConnection, name: str = "pseudonymize") -> None:
        """Make ``name(x)`` a SQL macro on this connection computing the pseudonym of ``x`` (the key
        goes in as a temporary table's value, read by the macro, not as text of the macro)."""
        outer, inner = self._pads()
        con.execute("create or replace temp table _clarion_pseudonym_pads (outer_pad blob, inner_pad blob)")
        con.execute("insert into _clarion_pseudonym_pads values (?, ?)", [outer, inner])
        con.execute(
            f"create or replace temp macro {name}(x) as ("
            f"select '{PREFIX}' || left(sha256(outer_pad || unhex(sha256(inner_pad || "
            f"('{DOMAIN}' || cast(x as varchar))::blob))), {DIGITS}) from _clarion_pseudonym_pads)"
        )


def for_settings(settings: Any, con: duckdb.DuckDBPyConnection | None = None) -> Pseudonymizer:
    """The project's pseudonymizer: the key from the environment, a Prefect Secret, or the warehouse.

    ``con``: an open warehouse connection to read (or create, if it can write) the kept key; without
    one Clarion opens the warehouse itself when it needs the fallback."""
    privacy = settings.privacy
    if privacy.pseudonym_key_env:
        value = os.environ.get(privacy.pseudonym_key_env, "")
        if value:
            return Pseudonymizer(value.encode(), source=f"${privacy.pseudonym_key_env}")
    if privacy.pseudonym_key_secret:
        from prefect.blocks.system import Secret

        try:
            value = str(Secret.load(privacy.pseudonym_key_secret).get())
        except ValueError as exc:
            raise PseudonymKeyError(
                f"privacy.pseudonym_key_secret names the Prefect Secret block "
                f"{privacy.pseudonym_key_secret!r}, which does not exist: create it (prefect block "
                "create secret) or remove the setting"
            ) from exc
        return Pseudonymizer(value.encode(), source=f"Prefect Secret {privacy.pseudonym_key_secret!r}")
    if privacy.require_key:
        raise PseudonymKeyError(
            f"privacy.require_key is true but no pseudonym key is set: set ${privacy.pseudonym_key_env} "
            "(or privacy.pseudonym_key_secret) to a long random value, the same for every run"
        )
    if con is not None:
        return Pseudonymizer(kept_key(con, "pseudonym"), source="warehouse")
    from clarion.warehouse import Warehouse

    with Warehouse.from_settings(settings).connect("pseudonym key") as own:
        return Pseudonymizer(kept_key(own, "pseudonym"), source="warehouse")


def kept_key(con: duckdb.DuckDBPyConnection, name: str) -> bytes:
    """The random key ``name`` kept in ``privacy.keys``, created on first use (32 random bytes).

    Also the salt of the suppression list (name ``suppression``), which must outlive a change of the
    pseudonym key: an erased person stays suppressed whatever key signs the next pack."""
    row = None
    try:
        row = con.execute("select key from privacy.keys where name = ?", [name]).fetchone()
    except duckdb.CatalogException:
        row = None
    if row is not None:
        return bytes(row[0])
    key = secrets.token_bytes(32)
    con.execute("create schema if not exists privacy")
    con.execute(KEYS_DDL)
    con.execute("insert into privacy.keys (name, key) values (?, ?) on conflict do nothing", [name, key])
    return bytes(con.execute("select key from privacy.keys where name = ?", [name]).fetchone()[0])
