"""Where generated tables go: CSV or Parquet files (appended chunk by chunk), or a PostgreSQL schema."""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from clarion.contract import ENTITIES, POSTGRES_TYPES
from clarion.errors import GenerateError
from clarion.synth.defects import BROKEN_BYTE, BROKEN_BYTE_PLACEHOLDER, as_text


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


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def redact_dsn(dsn: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db; password=... likewise."""
    dsn = re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", dsn)
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", dsn, flags=re.I)
