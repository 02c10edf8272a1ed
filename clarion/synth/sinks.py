"""Where generated tables go: CSV or Parquet files (appended chunk by chunk), a PostgreSQL schema or a
MariaDB database."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from clarion.contract import ENTITIES, POSTGRES_TYPES
from clarion.errors import GenerateError
from clarion.runs import sha256_file
from clarion.synth.defects import (
    BROKEN_BYTE,
    BROKEN_BYTE_PLACEHOLDER,
    SPLIT_FIELD,
    SPLIT_FIELD_PLACEHOLDER,
    as_text,
)

log = logging.getLogger(__name__)


@dataclass
class FileInfo:
    path: str  # relative to the output folder
    rows: int
    sha256: str
    bytes: int
    columns: list[str]


class FileSink:
    """Appends tables to files under ``root``; one file per name, schema fixed by the first write."""

    def __init__(self, root: Path, fmt: str) -> None:
        if fmt not in {"csv", "parquet"}:
            raise ValueError(f"unknown file format {fmt!r}")
        self.root = root
        self.fmt = fmt
        self._csv: dict[str, tuple[io.BufferedWriter, hashlib._Hash]] = {}
        self._parquet: dict[str, pq.ParquetWriter] = {}
        self._rows: dict[str, int] = {}
        self._columns: dict[str, list[str]] = {}

    def path_of(self, name: str) -> str:
        return f"{name}.{self.fmt}"

    def write(self, name: str, table: pa.Table) -> int:
        """Append rows; return the 1-based row number of the first one in its file."""
        rel = self.path_of(name)
        first_row = self._rows.get(rel, 0) + 1
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if self.fmt == "csv":
            table = as_text(table)  # one rendering of dates and amounts across every file
            buf = io.BytesIO()
            header = rel not in self._csv
            pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=header))
            data = buf.getvalue()
            if BROKEN_BYTE_PLACEHOLDER.encode() in data:
                data = data.replace(BROKEN_BYTE_PLACEHOLDER.encode(), BROKEN_BYTE)
            if SPLIT_FIELD_PLACEHOLDER.encode() in data:
                data = data.replace(SPLIT_FIELD_PLACEHOLDER.encode(), SPLIT_FIELD)
            if header:
                self._csv[rel] = (target.open("wb"), hashlib.sha256())
            handle, digest = self._csv[rel]
            handle.write(data)
            digest.update(data)
        else:
            if rel not in self._parquet:
                self._parquet[rel] = pq.ParquetWriter(target, table.schema, compression="zstd")
            self._parquet[rel].write_table(table)
        self._rows[rel] = first_row - 1 + table.num_rows
        self._columns.setdefault(rel, table.column_names)
        return first_row

    def close(self) -> dict[str, FileInfo]:
        infos: dict[str, FileInfo] = {}
        for rel, (handle, digest) in self._csv.items():
            handle.close()
            infos[rel] = FileInfo(
                rel, self._rows[rel], digest.hexdigest(), (self.root / rel).stat().st_size, self._columns[rel]
            )
        for rel, writer in self._parquet.items():
            writer.close()
            infos[rel] = FileInfo(
                rel,
                self._rows[rel],
                sha256_file(self.root / rel),
                (self.root / rel).stat().st_size,
                self._columns[rel],
            )
        return infos


_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresSink:
    """Loads the CRM entities into one PostgreSQL schema with COPY, in a single transaction.

    The schema is replaced: its tables are dropped and recreated, so a rerun does not duplicate.
    Primary keys and cursor indexes are added after the bulk load (much faster than before it).
    Only the primary key is enforced, like many CRM databases: orphans and nulls can be present.
    """

    def __init__(self, dsn: str, schema: str) -> None:
        import psycopg

        if not _IDENT.match(schema):
            raise GenerateError(f"PostgreSQL schema name {schema!r} must be lower-case letters, digits and _")
        self.schema = schema
        try:
            self.con = psycopg.connect(dsn, autocommit=False, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise GenerateError(
                f"cannot connect to PostgreSQL at {redact_dsn(dsn)}: {str(exc).strip().splitlines()[0]}. "
                "Check the host, port, database and credentials."
            ) from None
        self._created: set[str] = set()
        self._rows: dict[str, int] = {}
        with self.con.cursor() as cur:
            cur.execute(f'create schema if not exists "{schema}"')
            for entity in ENTITIES:
                cur.execute(f'drop table if exists "{schema}"."{entity}"')

    def path_of(self, name: str) -> str:
        return f"postgres:{self.schema}.{name}"

    def write(self, name: str, table: pa.Table) -> int:
        entity = ENTITIES[name]
        with self.con.cursor() as cur:
            if name not in self._created:
                cols = ", ".join(f'"{c.name}" {POSTGRES_TYPES[c.type]}' for c in entity.columns)
                cur.execute(f'create table "{self.schema}"."{name}" ({cols})')
                self._created.add(name)
            buf = io.BytesIO()
            pacsv.write_csv(table.select(entity.column_names), buf, pacsv.WriteOptions(include_header=False))
            columns = ", ".join(f'"{c}"' for c in entity.column_names)
            with cur.copy(f'copy "{self.schema}"."{name}" ({columns}) from stdin with (format csv)') as copy:
                copy.write(buf.getvalue())
        first = self._rows.get(name, 0) + 1
        self._rows[name] = first - 1 + table.num_rows
        return first

    def close(self) -> dict[str, FileInfo]:
        with self.con.cursor() as cur:
            for name in self._created:
                entity = ENTITIES[name]
                cur.execute(f'alter table "{self.schema}"."{name}" add primary key ("{entity.primary_key}")')
                cur.execute(
                    f'create index on "{self.schema}"."{name}" ("{entity.cursor}", "{entity.primary_key}")'
                )
        self.con.commit()
        self.con.close()
        return {
            self.path_of(n): FileInfo(self.path_of(n), rows, "", 0, ENTITIES[n].column_names)
            for n, rows in self._rows.items()
        }

    def abort(self) -> None:
        self.con.rollback()
        self.con.close()


MARIADB_TYPES: dict[str, str] = {
    "int": "BIGINT",
    "decimal": "DECIMAL(14,2)",
    "string": "LONGTEXT",  # the oversized ticket body defect alone is over 100,000 characters
    "bool": "BOOLEAN",
    "date": "DATE",
    "timestamp": "DATETIME",  # UTC wall time: DATETIME carries no zone
}
NEW_SUFFIX = "__clarion_new"
OLD_SUFFIX = "__clarion_old"
MARIADB_SQL_MODE = (
    "STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"
)


class MariaDbSink:
    """Loads the CRM entities into one MariaDB (or MySQL) database with ``LOAD DATA LOCAL INFILE``.

    ``dsn`` is ``mysql://user:password@host:port/db`` or ``mariadb://...``: the password is optional
    (without one, ``MYSQL_PWD`` is used if set), the port defaults to 3306, and the database in the
    path is only used to connect. The tables go into ``database``, created if missing.

    Types follow the contract: BIGINT, DECIMAL(14,2), LONGTEXT, BOOLEAN, DATE, and DATETIME for
    timestamps, which holds the UTC wall time without a zone (``2026-06-30 14:05:00`` means 14:05 UTC).
    Everything is utf8mb4.

    The database is replaced atomically: each entity loads into ``<entity>__clarion_new`` (so
    readers keep seeing the previous tables meanwhile), primary keys and (cursor, key) indexes are added
    after the bulk load, and ``close()`` swaps all tables in with one ``RENAME TABLE`` statement before
    dropping the old ones. ``abort()`` drops the new tables and leaves the previous ones untouched.
    Only the primary key is enforced, like many CRM databases: orphans and nulls can be present.
    """

    def __init__(self, dsn: str, database: str) -> None:
        import pymysql

        if not _IDENT.match(database):
            raise GenerateError(
                f"MariaDB database name {database!r} must be lower-case letters, digits and _"
            )
        self.database = database
        params = _mariadb_params(dsn)
        try:
            self.con = pymysql.connect(
                **params,
                charset="utf8mb4",
                local_infile=True,
                autocommit=True,
                connect_timeout=10,
            )
        except pymysql.Error as exc:
            reason = str(exc.args[-1] if exc.args else exc).strip().splitlines()[0]
            if params.get("password"):
                reason = reason.replace(params["password"], "***")
            raise GenerateError(
                f"cannot connect to MariaDB at {redact_dsn(dsn)}: {reason}. "
                "Check the host, port, database and credentials."
            ) from None
        self._rows: dict[str, int] = {}
        self._closed = False
        try:
            with self.con.cursor() as cur:
                # a known mode: strict types, and backslash escapes in literals (the ESCAPED BY below)
                cur.execute(f"SET SESSION sql_mode = '{MARIADB_SQL_MODE}'")
                cur.execute(f"CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4")
                for name, entity in ENTITIES.items():
                    for suffix in (NEW_SUFFIX, OLD_SUFFIX):  # left over by an interrupted run
                        cur.execute(f"DROP TABLE IF EXISTS {self._table(name + suffix)}")
                    cols = ", ".join(f"`{c.name}` {MARIADB_TYPES[c.type]}" for c in entity.columns)
                    cur.execute(
                        f"CREATE TABLE {self._table(name + NEW_SUFFIX)} ({cols}) "
                        "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
                    )
        except pymysql.Error as exc:
            self.abort()
            raise GenerateError(
                f"cannot prepare MariaDB database {database!r} at {redact_dsn(dsn)}: {exc.args[-1]}. "
                "Check that the user may create databases and tables there."
            ) from None

    def _table(self, name: str) -> str:
        return f"`{self.database}`.`{name}`"

    def path_of(self, name: str) -> str:
        return f"mariadb:{self.database}.{name}"

    def write(self, name: str, table: pa.Table) -> int:
        entity = ENTITIES[name]
        text = _mariadb_text(table.select(entity.column_names))
        fd, tmp = tempfile.mkstemp(prefix="clarion-mariadb-", suffix=".csv")
        os.close(fd)
        try:
            pacsv.write_csv(
                text,
                tmp,
                pacsv.WriteOptions(include_header=False, quoting_style="all_valid", null_string="\\N"),
            )
            columns = ", ".join(f"`{c}`" for c in entity.column_names)
            with self.con.cursor() as cur:
                loaded = cur.execute(
                    f"LOAD DATA LOCAL INFILE %s INTO TABLE {self._table(name + NEW_SUFFIX)} "
                    "CHARACTER SET utf8mb4 FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' "
                    f"ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({columns})",
                    [tmp],
                )
                # with LOCAL the server turns bad values into warnings instead of errors: fail on any
                cur.execute("SHOW WARNINGS LIMIT 3")
                warnings = cur.fetchall()
        finally:
            Path(tmp).unlink(missing_ok=True)
        if warnings or loaded != table.num_rows:
            detail = "; ".join(str(w[2]) for w in warnings) or f"{loaded} of {table.num_rows} rows loaded"
            raise GenerateError(f"MariaDB rejected rows of {name}: {detail}")
        first = self._rows.get(name, 0) + 1
        self._rows[name] = first - 1 + table.num_rows
        return first

    def close(self) -> dict[str, FileInfo]:
        with self.con.cursor() as cur:
            for name, entity in ENTITIES.items():
                pk, cursor = entity.primary_key, entity.cursor
                cur.execute(
                    f"ALTER TABLE {self._table(name + NEW_SUFFIX)} ADD PRIMARY KEY (`{pk}`), "
                    f"ADD INDEX `{name}_{cursor}_{pk}` (`{cursor}`, `{pk}`)"
                )
            cur.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                [self.database],
            )
            existing = {row[0] for row in cur.fetchall()}
            renames = []
            for name in ENTITIES:
                if name in existing:
                    renames.append(f"{self._table(name)} TO {self._table(name + OLD_SUFFIX)}")
                renames.append(f"{self._table(name + NEW_SUFFIX)} TO {self._table(name)}")
            cur.execute("RENAME TABLE " + ", ".join(renames))  # one statement: all tables swap at once
            self._closed = True
            try:
                for name in ENTITIES:
                    cur.execute(f"DROP TABLE IF EXISTS {self._table(name + OLD_SUFFIX)}")
            except Exception as exc:  # the new data is in place; the next run drops what is left
                log.warning("could not drop the previous MariaDB tables in %s: %s", self.database, exc)
        self.con.close()
        return {
            self.path_of(n): FileInfo(self.path_of(n), rows, "", 0, ENTITIES[n].column_names)
            for n, rows in self._rows.items()
        }

    def abort(self) -> None:
        """Drop the half-loaded new tables; the previous ones stay as they were."""
        if self._closed:
            return
        self._closed = True
        try:
            with self.con.cursor() as cur:
                for name in ENTITIES:
                    cur.execute(f"DROP TABLE IF EXISTS {self._table(name + NEW_SUFFIX)}")
        except Exception as exc:  # do not hide the error that made us abort
            log.warning("could not drop the partial MariaDB tables in %s: %s", self.database, exc)
        finally:
            with contextlib.suppress(Exception):
                self.con.close()


def _mariadb_params(dsn: str) -> dict:
    """pymysql.connect arguments from mysql://user:password@host:port/db (mariadb:// likewise)."""
    try:
        parts = urlsplit(dsn)
        port = parts.port or 3306
    except ValueError:
        parts, port = None, 0
    if parts is None or parts.scheme not in {"mysql", "mariadb"} or not parts.hostname:
        raise GenerateError(
            f"MariaDB DSN {redact_dsn(dsn)} must look like mysql://user:password@host:3306/database "
            "(or mariadb://...)"
        )
    password = unquote(parts.password) if parts.password is not None else os.environ.get("MYSQL_PWD", "")
    params: dict = {"host": parts.hostname, "port": port, "password": password}
    if parts.username:
        params["user"] = unquote(parts.username)
    database = unquote(parts.path.lstrip("/"))
    if database:
        params["database"] = database
    return params


def _mariadb_text(table: pa.Table) -> pa.Table:
    """Every column as the text LOAD DATA reads: timestamps ``YYYY-MM-DD HH:MM:SS`` (UTC, no zone),
    booleans 1/0, backslashes doubled (the escape character); nulls stay null and are written as \\N."""
    columns = []
    for col in table.columns:
        t = col.type
        if pa.types.is_timestamp(t):
            # the stored values are UTC: drop the zone, keep the wall time in whole seconds
            seconds = pc.cast(col, pa.timestamp("s", tz=t.tz), safe=False)
            columns.append(seconds.cast(pa.timestamp("s")).cast(pa.string()))
        elif pa.types.is_boolean(t):
            columns.append(pc.if_else(col, "1", "0"))
        elif pa.types.is_string(t) or pa.types.is_large_string(t):
            columns.append(pc.replace_substring(col, "\\", "\\\\"))
        else:
            columns.append(col.cast(pa.string()))
    return pa.table(columns, names=table.column_names)


def redact_dsn(dsn: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db; password=... likewise.

    The password ends at the last @ of the host part, so one containing an @ is hidden whole too."""
    dsn = re.sub(r"(://[^:/@?#]*:)[^/?#]*@", r"\1***@", dsn)
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", dsn, flags=re.I)
