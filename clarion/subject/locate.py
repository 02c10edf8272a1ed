"""Where a person can be: every warehouse table and every file Clarion keeps under var/.

An erasure is only as good as this list, so it is found, not written down: every base table with a
``contact_id`` column (through information_schema, so a stage added later is covered without a
change here), every table keyed by one of the person's own records (their orders, order items,
tickets, e-mail events, consents: ``raw.order_items`` names no contact), tables that name a record
by ``(entity, key)`` (field findings, orphan releases), quarantine rows whose key or body names them,
and files: content exports, compliance packs, reports, and the working folders (var/landing,
var/dlt, var/dbt, var/gx) whose text holds one of their identifiers.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from clarion.contract import ENTITIES
from clarion.warehouse import relation_exists

# Each of a person's own records, by the column that keys it, and the raw table that lists them.
RECORD_KEYS: dict[str, str] = {
    "order_id": "orders",
    "order_item_id": "order_items",
    "event_id": "email_events",
    "ticket_id": "support_tickets",
    "consent_id": "consents",
}
# Schemas whose tables hold customer data; audit.events is a hash chain of ids and counts (no
# person's data by its own rule) and privacy holds hashes: neither is searched by key.
DATA_SCHEMAS = ("raw", "quarantine", "staging", "marts", "ml", "content")
WORKING = ("landing", "dlt", "dbt", "gx", "reports")


@dataclass
class Person:
    """What identifies one person in the warehouse, read before anything is removed."""

    contact_id: int
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    keys: dict[str, list[int]] = field(default_factory=dict)  # record key column -> values
    first_loaded: datetime | None = None

    def key_of(self, entity: str) -> tuple[str, list[str]]:
        """The primary key column of ``entity`` and this person's values of it, as text (the
        quarantine's ``key``)."""
        if entity == "contacts":
            return "contact_id", [str(self.contact_id)]
        spec = ENTITIES.get(entity)
        if spec is None or spec.primary_key not in self.keys:
            return "", []
        return spec.primary_key, [str(v) for v in self.keys[spec.primary_key]]

    def needles(self) -> list[str]:
        """Text that marks a file as theirs: e-mail addresses, phone numbers (the id only where a
        column says it is one, see :func:`file_mentions`)."""
        return [n for n in [*self.emails, *self.phones] if n and len(n) >= 6]


def person(con: duckdb.DuckDBPyConnection, contact_id: int) -> Person:
    p = Person(contact_id)
    if relation_exists(con, "raw", "contacts"):
        rows = con.execute(
            "select lower(trim(email)), trim(phone), min(_loaded_at) over () from raw.contacts "
            "where contact_id = ?",
            [contact_id],
        ).fetchall()
        p.emails = sorted({r[0] for r in rows if r[0]})
        p.phones = sorted({r[1] for r in rows if r[1]})
        p.first_loaded = rows[0][2] if rows else None
    for column, entity in RECORD_KEYS.items():
        values: set[int] = set()
        for table in (entity, f"{entity}_history"):
            if not relation_exists(con, "raw", table):
                continue
            cols = _columns(con, "raw", table)
            if "contact_id" in cols and column in cols:
                values |= {
                    r[0]
                    for r in con.execute(
                        f'select distinct "{column}" from raw."{table}" where contact_id = ?', [contact_id]
                    ).fetchall()
                }
        p.keys[column] = sorted(values)
    if relation_exists(con, "raw", "order_items") and p.keys.get("order_id"):
        p.keys["order_item_id"] = sorted(
            r[0]
            for r in con.execute(
                "select distinct order_item_id from raw.order_items where order_id in "
                "(select unnest(?::bigint[]))",
                [p.keys["order_id"]],
            ).fetchall()
        )
    return p


def _columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> set[str]:
    return {
        r[0]
        for r in con.execute(
            "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchall()
    }


def base_tables(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], set[str]]:
    """Every base table (views follow their tables) and its columns."""
    out: dict[tuple[str, str], set[str]] = {}
    for schema, table, column in con.execute(
        "select c.table_schema, c.table_name, c.column_name from information_schema.columns c "
        "join information_schema.tables t using (table_catalog, table_schema, table_name) "
        "where t.table_type = 'BASE TABLE' and t.table_catalog = current_database()"
    ).fetchall():
        out.setdefault((schema, table), set()).add(column)
    return out


@dataclass(frozen=True)
class Place:
    """Rows of one table that belong to the person: ``where`` with its parameters."""

    schema: str
    table: str
    where: str
    params: tuple[Any, ...]

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"


def places(con: duckdb.DuckDBPyConnection, p: Person) -> list[Place]:
    """Every table holding rows of the person, with the condition that finds them."""
    found: list[Place] = []
    for (schema, table), cols in sorted(base_tables(con).items()):
        conditions: list[str] = []
        params: list[Any] = []
        if schema in ("audit", "privacy") and table not in ("orphan_releases",):
            if "contact_id" in cols and (schema, table) != ("audit", "events"):
                conditions.append("contact_id = ?")
                params.append(p.contact_id)
        elif schema == "quarantine" and {"key", "record"} <= cols:
            conditions, params = _quarantine_conditions(table, p)
        else:
            if "contact_id" in cols:
                conditions.append("try_cast(contact_id as bigint) = ?")
                params.append(p.contact_id)
            if "email" in cols and p.emails:
                conditions.append("lower(trim(cast(email as varchar))) in (select unnest(?::varchar[]))")
                params.append(p.emails)
            if schema in DATA_SCHEMAS:
                for column in RECORD_KEYS:
                    if column in cols and p.keys.get(column):
                        conditions.append(f'"{column}" in (select unnest(?::bigint[]))')
                        params.append(p.keys[column])
        if {"entity", "key"} <= cols:  # a record named by entity and key (findings, releases)
            for entity in ENTITIES:
                _, keys = p.key_of(entity)
                if keys:
                    conditions.append("(entity = ? and key in (select unnest(?::varchar[])))")
                    params += [entity, keys]
        if conditions:
            found.append(Place(schema, table, " or ".join(f"({c})" for c in conditions), tuple(params)))
    return found


def _quarantine_conditions(entity: str, p: Person) -> tuple[list[str], list[Any]]:
    """A quarantined row is theirs when its key is one of their records, its body names their
    contact id, e-mail or one of their orders, or a line that never parsed holds their e-mail or phone."""
    conditions: list[str] = []
    params: list[Any] = []
    _, keys = p.key_of(entity)
    if keys:
        conditions.append("key in (select unnest(?::varchar[]))")
        params.append(keys)
    conditions.append("try_cast(trim(json_extract_string(record, '$.contact_id')) as bigint) = ?")
    params.append(p.contact_id)
    if p.keys.get("order_id"):
        conditions.append(
            "try_cast(trim(json_extract_string(record, '$.order_id')) as bigint) in "
            "(select unnest(?::bigint[]))"
        )
        params.append(p.keys["order_id"])
    for needle in p.needles():
        conditions.append("contains(lower(record), ?)")
        params.append(needle.lower())
    return conditions, params


def count_rows(con: duckdb.DuckDBPyConnection, place: Place) -> int:
    return con.execute(
        f'select count(*) from "{place.schema}"."{place.table}" where {place.where}', list(place.params)
    ).fetchone()[0]


def text_mentions(text: str, p: Person) -> bool:
    low = text.lower()
    return any(n.lower() in low for n in p.needles())


def _parquet_mentions(path: Path, p: Person) -> bool:
    con = duckdb.connect()
    try:
        rel = f"read_parquet('{_quote(path)}')"
        cols = {r[0] for r in con.execute(f"describe select * from {rel}").fetchall()}
        checks = [f'try_cast("{c}" as bigint) = {int(p.contact_id)}' for c in ("contact_id",) if c in cols]
        if checks and con.execute(f"select count(*) from {rel} where {' or '.join(checks)}").fetchone()[0]:
            return True
        return any(
            text_mentions(r[0], p) for r in con.execute(f"select to_json(t)::varchar from {rel} t").fetchall()
        )
    finally:
        con.close()


def _csv_mentions(text: str, p: Person) -> bool:
    rows = list(csv.reader(io.StringIO(text)))
    if rows and "contact_id" in rows[0]:
        at = rows[0].index("contact_id")
        if any(len(r) > at and r[at].strip() == str(p.contact_id) for r in rows[1:]):
            return True
    return text_mentions(text, p)


def file_mentions(path: Path, p: Person) -> bool:
    """Whether a file holds the person: their e-mail or phone anywhere in it, or their contact id in a
    ``contact_id`` column (Parquet, CSV). Parquet is read through DuckDB, zips and gzip member by
    member, anything else as text. (A bare number in free text is not taken for them: ids are small
    integers that appear everywhere.)"""
    try:
        if path.suffix == ".parquet":
            return _parquet_mentions(path, p)
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as z:
                for name in z.namelist():
                    tmp = path.with_name(f".{path.name}.member{Path(name).suffix}")
                    tmp.write_bytes(z.read(name))
                    try:
                        if file_mentions(tmp, p):
                            return True
                    finally:
                        tmp.unlink(missing_ok=True)
            return False
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
    except (OSError, EOFError, duckdb.Error, zipfile.BadZipFile):
        return False
    text = data.decode("utf-8", "replace")
    return _csv_mentions(text, p) if path.suffix == ".csv" else text_mentions(text, p)


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")


def working_files(var_dir: Path, p: Person) -> list[Path]:
    """Files under the working folders (landing, dlt, dbt, gx, reports) that mention the person."""
    hits = []
    for area in WORKING:
        root = var_dir / area
        if root.is_dir():
            hits += [f for f in sorted(root.rglob("*")) if f.is_file() and file_mentions(f, p)]
    return hits


def summary(con: duckdb.DuckDBPyConnection, p: Person) -> dict[str, Any]:
    """Counts only: rows per table (never a value), for `--dry-run` and the audit event."""
    return {pl.name: n for pl in places(con, p) if (n := count_rows(con, pl))}


def dumps(data: Any) -> str:
    return json.dumps(data, sort_keys=True, default=str)


PREFECT_TEXT = {  # Prefect's own tables and the columns where a value could be written
    "log": "message",
    "artifact": "data",
    "flow_run": "parameters",
    "flow_run_state": "message",
    "task_run_state": "message",
}


def prefect_mentions(p: Person) -> int | None:
    """Rows of the local Prefect database (logs, artifacts, flow-run parameters, state messages)
    holding the person's e-mail or phone, counted, not changed: Prefect's database is Prefect's, and
    Clarion's log lines and artifacts carry no personal data, so this is a check that they did not.
    None when Prefect's database is not a local SQLite file."""
    import sqlite3

    try:
        from prefect.settings import get_current_settings

        url = get_current_settings().server.database.connection_url
        url = url.get_secret_value() if url is not None else ""
    except Exception:  # no Prefect settings: nothing to check
        return None
    if not url.startswith("sqlite") or ":///" not in url:
        return None
    path = Path(url.split(":///", 1)[1])
    if not path.is_file() or not p.needles():
        return None if not path.is_file() else 0
    found = 0
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in con.execute("select name from sqlite_master where type = 'table'")}
        for table, column in PREFECT_TEXT.items():
            if table in tables:
                for needle in p.needles():
                    found += con.execute(
                        f'select count(*) from "{table}" where instr(lower("{column}"), ?) > 0',
                        [needle.lower()],
                    ).fetchone()[0]
    except sqlite3.Error:
        return None
    finally:
        con.close()
    return found
