"""The suppression list: who was erased, kept as salted hashes so the list itself names nobody.

An erased person must not come back with the next extract from a CRM that still holds them, yet
keeping their contact id or e-mail to recognise them would keep the very data that was erased. So
``privacy.suppressions`` holds ``sha256(salt || kind ":" value)`` of each identifier (the contact
id, the e-mail, and the keys of their orders, whose items name no contact), with the request
reference. The salt is a random key kept in ``privacy.keys`` (name ``suppression``), separate from
the pseudonym key so that rotating one never revives anyone.

Two uses: the extract drops suppressed rows before anything lands in ``raw`` or ``quarantine``
(:func:`landing_filter`), and the stages that choose recipients exclude a suppressed id
(:func:`erased_sql`), which replaced the raw ids ``audit.erasures`` used to keep.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterable
from pathlib import Path

import duckdb

from clarion.privacy.pseudonym import KEYS_DDL, kept_key
from clarion.warehouse import relation_exists

SALT_NAME = "suppression"
KINDS = ("contact_id", "email", "order_id")

DDL = """
create table if not exists privacy.suppressions (
    kind varchar not null, hash varchar not null, reference varchar, added_at timestamptz
)
"""

# The salt, read inside SQL from privacy.keys: never spelled in a query's text or bound in a log.
_SALT = f"(select key from privacy.keys where name = '{SALT_NAME}')"


def normalise(kind: str, value: object) -> str:
    """The form a value is hashed in: ids as plain integers, e-mails trimmed and lower-cased."""
    if kind == "email":
        return str(value).strip().lower()
    return str(int(str(value).strip()))


def digest(salt: bytes, kind: str, value: object) -> str:
    return hashlib.sha256(salt + f"{kind}:{normalise(kind, value)}".encode()).hexdigest()


def hash_sql(kind: str, normalised_expr: str) -> str:
    """The SQL twin of :func:`digest` over an expression already in normal form (varchar)."""
    return f"sha256({_SALT} || ('{kind}:' || {normalised_expr})::blob)"


def ensure(con: duckdb.DuckDBPyConnection) -> bytes:
    """The table exists and the salt is kept; returns the salt."""
    con.execute("create schema if not exists privacy")
    con.execute(DDL)
    con.execute(KEYS_DDL)  # so kept_key finds its table (a missing one would abort a transaction)
    return kept_key(con, SALT_NAME)


def add(con: duckdb.DuckDBPyConnection, kind: str, values: Iterable[object], reference: str) -> int:
    """Suppress ``values`` of ``kind`` (each once); returns how many hashes are new."""
    salt = ensure(con)
    hashes = sorted({digest(salt, kind, v) for v in values if v is not None and str(v).strip()})
    if not hashes:
        return 0
    before = con.execute("select count(*) from privacy.suppressions").fetchone()[0]
    con.execute(
        "insert into privacy.suppressions select ?, h, ?, now() from unnest(?::varchar[]) t(h) "
        "where h not in (select hash from privacy.suppressions where kind = ?)",
        [kind, reference, hashes, kind],
    )
    return con.execute("select count(*) from privacy.suppressions").fetchone()[0] - before


def active(con: duckdb.DuckDBPyConnection) -> bool:
    return (
        relation_exists(con, "privacy", "suppressions")
        and relation_exists(con, "privacy", "keys")
        and con.execute("select count(*) from privacy.suppressions").fetchone()[0] > 0
    )


def member_sql(kind: str, normalised_expr: str) -> str:
    return (
        f"({hash_sql(kind, normalised_expr)} in "
        f"(select hash from privacy.suppressions where kind = '{kind}'))"
    )


def _id_expr(column: str) -> str:
    return f"cast(try_cast(trim(cast({column} as varchar)) as bigint) as varchar)"


def erased_sql(con: duckdb.DuckDBPyConnection, column: str) -> str:
    """A SQL condition: the contact id in ``column`` is on the suppression list (``false`` when the
    list is empty), for the stages that pick recipients."""
    if not active(con):
        return "false"
    return f"coalesce({member_sql('contact_id', _id_expr(column))}, false)"


def landing_filter(con: duckdb.DuckDBPyConnection, columns: Iterable[str], alias: str = "") -> str | None:
    """A SQL condition true for a landed row of a suppressed person, from the identifying columns the
    row has (contact id, e-mail, order id; landed values are still text), or None when nothing is
    suppressed or the row has none of them."""
    if not active(con):
        return None
    cols = set(columns)
    parts = []
    for kind in KINDS:
        if kind in cols:
            ref = f'{alias}{"." if alias else ""}"{kind}"'
            value = f"lower(trim(cast({ref} as varchar)))" if kind == "email" else _id_expr(ref)
            parts.append(f"coalesce({member_sql(kind, value)}, false)")
    return " or ".join(parts) or None


def drop_suppressed(con: duckdb.DuckDBPyConnection, landed: str, view: str, columns: list[str]) -> int:
    """Create temp view ``view`` over ``landed`` without the rows of suppressed people; returns how
    many rows it left out (counted, for read = loaded + quarantined + suppressed)."""
    condition = landing_filter(con, columns)
    if condition is None:
        con.execute(f"create temp view {view} as select * from {landed}")
        return 0
    con.execute(f"create temp view {view} as select * from {landed} where not ({condition})")
    return con.execute(f"select count(*) from {landed} where {condition}").fetchone()[0]


def purge_landed(var_dir: Path, source: str, load_id: str, folders: list[Path]) -> None:
    """After a load that suppressed rows: its working files (dlt's load package of that load, the
    landing folders, even with extract.keep_landing) still hold them as they arrived, so they go."""
    package = var_dir / "dlt" / f"clarion_{source}" / "load" / "loaded" / load_id
    for folder in [package, *folders]:
        shutil.rmtree(folder, ignore_errors=True)
