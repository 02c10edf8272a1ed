"""SQL mappings: an entity whose rows come from a DuckDB SELECT over a files source's files.

Real exports rarely have one file per contract entity with the contract's columns: orders and
payments come apart, amounts are in cents, statuses are the shop's own words, a customer's signup
date is their first order. ``sources.<name>.entities.<entity>.sql`` says how to get the entity from
the files: every data file of the folder is a table named after it (:func:`table_name`), or
``inputs:`` names them. The SELECT's columns are contract columns (others are kept as extra raw
columns). Its output goes through the same contract check as a file: quarantine with reasons,
accounting, ledger (the step is read again when an input file or the SQL changes).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb

from clarion.config import FileEntity
from clarion.contract import Entity
from clarion.errors import ClarionError
from clarion.extract.contract_sql import DUCKDB_TYPES, lit, q
from clarion.extract.formats import file_kind

DATA_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".jsonl", ".ndjson")
COMPRESSION_SUFFIXES = (".gz", ".zst", ".zstd")


def table_name(path: Path | str) -> str:
    """The table a file is under in a SQL mapping: its name up to the first dot, lower-cased, with
    runs of other characters than letters and digits as ``_`` ("Orders Export.csv" -> orders_export,
    "orders.part2.csv" -> orders: the parts of one export are one table). A name starting with a
    digit gets ``t_`` in front ("2024 orders.csv" -> t_2024_orders)."""
    stem = Path(path).name.split(".", 1)[0]
    name = re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_") or "file"
    return f"t_{name}" if name[0].isdigit() else name


def is_data_file(path: Path) -> bool:
    """Whether a file is one a files source can read (by its suffix, in any letter case)."""
    name = path.name.lower()
    for suffix in COMPRESSION_SUFFIXES:
        name = name.removesuffix(suffix)
    return not path.name.startswith(".") and name.endswith(DATA_SUFFIXES)


class MappingError(ClarionError):
    """A SQL mapping that cannot run: the message names the source, the entity and what to fix."""


@dataclass(frozen=True)
class Mapped:
    """A mapping's output, written where the step reads it like a Parquet file of the entity."""

    path: Path
    rel: str  # what quarantine and accounting show as the file: "<entity>.sql"
    digest: str  # the settings and every input file's sha256: the ledger's record of what was read
    rows: int
    inputs: dict[str, list[str]]  # table -> its files (relative to the source folder)


def where(source: str, entity: str) -> str:
    return f"sources.{source}.entities.{entity}.sql"


def input_tables(root: Path, spec: FileEntity) -> dict[str, list[Path]]:
    """Table name -> its files: ``inputs:`` globs, else every data file directly in the folder."""
    tables: dict[str, list[Path]] = {}
    if spec.inputs:
        for name, pattern in spec.inputs.items():
            tables[name] = sorted(p for p in root.glob(pattern) if p.is_file() and not p.name.startswith("."))
        return tables
    if root.is_dir():
        for path in sorted(root.iterdir()):
            if path.is_file() and is_data_file(path):
                tables.setdefault(table_name(path), []).append(path)
    return tables


def _reader(paths: list[Path], spec: FileEntity) -> str:
    listed = "[" + ", ".join(lit(str(p)) for p in paths) + "]"
    kinds = {file_kind(p)[0] for p in paths}
    if kinds == {"parquet"}:
        return f"read_parquet({listed}, union_by_name = true)"
    if kinds == {"jsonl"}:
        return f"read_json_auto({listed}, format = 'newline_delimited', union_by_name = true)"
    if kinds - {"csv"}:
        raise ValueError("a table's files must be all CSV, all Parquet or all JSON lines")
    options = ["union_by_name = true", "header = true"]
    if "delimiter" in spec.model_fields_set:
        options.append("delim = " + lit(spec.delimiter if spec.delimiter != "whitespace" else " "))
    if "encoding" in spec.model_fields_set and spec.encoding.lower().replace("_", "-") not in (
        "utf-8",
        "utf8",
    ):
        options.append("encoding = " + lit(spec.encoding))
    if spec.null_markers:
        options.append("nullstr = [" + ", ".join(lit(m) for m in spec.null_markers) + "]")
    return f"read_csv({listed}, {', '.join(options)})"


def connect(source: str, entity: str, root: Path, spec: FileEntity) -> tuple[duckdb.DuckDBPyConnection, dict]:
    """An in-memory DuckDB with a view per input table; and the tables with their files."""
    tables = input_tables(root, spec)
    con = duckdb.connect()
    for name, paths in tables.items():
        if not paths:
            con.close()
            raise MappingError(
                f"{where(source, entity)}: input {name!r} matches no file under {root} "
                f"(inputs.{name}: {spec.inputs[name] if spec.inputs else ''})"
            )
        try:
            con.execute(f"create view {q(name)} as select * from {_reader(paths, spec)}")
        except (duckdb.Error, ValueError) as exc:
            con.close()
            raise MappingError(
                f"{where(source, entity)}: cannot read table {name!r} "
                f"({', '.join(p.name for p in paths)}): {_first_line(exc)}"
            ) from None
    return con, tables


def _first_line(exc: BaseException) -> str:
    """DuckDB's message without the lines that quote a file's content."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


def _select(sql: str) -> str:
    """The mapping's one SELECT (a trailing semicolon allowed); anything else is refused."""
    body = sql.strip().rstrip(";").strip()
    statements = duckdb.extract_statements(body)
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise ValueError("give exactly one SELECT statement (a WITH ... SELECT is fine)")
    return body


def describe(con: duckdb.DuckDBPyConnection, sql: str) -> dict[str, str]:
    """The SELECT's output columns and their DuckDB types, without running it."""
    rows = con.execute(f"describe select * from ({_select(sql)})").fetchall()
    return {name: str(kind) for name, kind, *_ in rows}


# contract type -> the DuckDB types an output column may have for it (text is always fine: typed later)
_NUMBERS = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "DOUBLE",
    "FLOAT",
    "DECIMAL",
)
_COMPATIBLE = {
    "int": _NUMBERS,
    "decimal": _NUMBERS,
    "bool": ("BOOLEAN",),
    "date": ("DATE", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S"),
    "timestamp": (
        "DATE",
        "TIMESTAMP",
        "TIMESTAMP WITH TIME ZONE",
        "TIMESTAMP_NS",
        "TIMESTAMP_MS",
        "TIMESTAMP_S",
    ),
}


def problems(source: str, entity: str, root: Path, spec: FileEntity, contract: Entity) -> list[str]:
    """What is wrong with an entity's mapping, each naming the key and the column: the SQL does not
    parse or bind, a required column is missing (and has no default), a column's type cannot be the
    contract's. Empty when it can run."""
    key = where(source, entity)
    try:
        _select(spec.sql or "")
    except (duckdb.Error, ValueError) as exc:
        return [f"{key}: the SQL does not parse: {_first_line(exc)}"]
    if not root.is_dir():
        return []  # checked again when the extract runs (the folder may be made later)
    try:
        con, tables = connect(source, entity, root, spec)
    except MappingError as exc:
        return [str(exc)]
    try:
        columns = describe(con, spec.sql or "")
    except (duckdb.Error, ValueError) as exc:
        known = ", ".join(f"{t} ({', '.join(p.name for p in ps)})" for t, ps in tables.items()) or "none"
        return [f"{key}: {_first_line(exc)} (tables: {known})"]
    finally:
        con.close()
    found: list[str] = []
    for col in contract.columns:
        if col.name not in columns:
            if col.required and col.name not in spec.defaults and col.name not in CONSENT_UNKNOWN_OK:
                found.append(
                    f"{key}: the output has no column {col.name} (required by {entity}); add "
                    f"`... AS {col.name}` to the SELECT, or a default under defaults:"
                )
            continue
        kind = columns[col.name]
        if kind == "VARCHAR" or col.type == "string" or kind == '"NULL"' or kind == "NULL":
            continue
        base = kind.split("(")[0]
        if base not in _COMPATIBLE.get(col.type, ()):
            found.append(
                f"{key}: column {col.name} is {kind}, which cannot be the contract's {col.type}; "
                f"cast it in the SELECT (e.g. CAST(... AS {DUCKDB_TYPES[col.type]}))"
            )
    return found


# contacts may lack the consent columns: consent is then unknown (see readers); not a mapping error
CONSENT_UNKNOWN_OK = ("email_consent", "sms_consent", "marketing_objection")


def digest(settings: str, tables: dict[str, list[Path]], root: Path) -> str:
    """sha256 of the entity's settings (the SQL among them) and of every input file (name and
    content): it changes when either does."""
    from clarion.extract.runner import sha256_of  # one definition of a file's hash

    h = hashlib.sha256(settings.encode())
    for name in sorted(tables):
        for path in tables[name]:
            h.update(f"\0{name}\0{_rel(path, root)}\0{sha256_of(path)}".encode())
    return h.hexdigest()


def _rel(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def run(source: str, entity: str, root: Path, spec: FileEntity, out_dir: Path) -> Mapped:
    """Run the mapping and write its output as Parquet under ``out_dir`` (deleted by the caller once
    published: it holds the entity's rows, personal data included)."""
    con, tables = connect(source, entity, root, spec)
    try:
        sql = _select(spec.sql or "")
        columns = describe(con, sql)
        out_dir.mkdir(parents=True, exist_ok=True)
        out = out_dir / f"{entity}.parquet"
        # types Parquet cannot hold or the contract check does not read become text
        select = ", ".join(_portable(name, kind) for name, kind in columns.items())
        con.execute(f"copy (select {select} from ({sql})) to {lit(str(out))} (format parquet)")
        (rows,) = con.execute(f"select count(*) from read_parquet({lit(str(out))})").fetchone()
    except duckdb.Error as exc:
        raise MappingError(f"{where(source, entity)}: the SELECT failed: {_first_line(exc)}") from None
    finally:
        con.close()
    inputs = {name: [_rel(p, root) for p in paths] for name, paths in tables.items()}
    return Mapped(out, f"{entity}.sql", digest(spec.model_dump_json(), tables, root), rows, inputs)


def _portable(name: str, kind: str) -> str:
    base = kind.split("(")[0]
    if base in ("HUGEINT", "UHUGEINT", "UBIGINT"):
        return f"cast({q(name)} as double) as {q(name)}"
    if (
        base.endswith("[]")
        or base in ("STRUCT", "MAP", "UNION", "INTERVAL", "UUID", "BLOB", "TIME", "BIT", "LIST")
        or "[" in kind
    ):
        return f"cast({q(name)} as varchar) as {q(name)}"
    if kind == '"NULL"' or kind == "NULL":
        return f"cast({q(name)} as varchar) as {q(name)}"
    return q(name)
