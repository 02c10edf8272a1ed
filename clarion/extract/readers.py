"""A files step planned: which files, what each holds, and the landing columns they map to.

Each file's header (or Parquet schema, or JSON-lines keys) is read and mapped onto the contract;
one landing type is fixed per column; files that lack a required column are rejected whole;
contacts without consent columns get consent unknown. :mod:`clarion.extract.batches` then reads
the planned files as Arrow batches, the shape dlt lands. A file's bytes (compression, long lines,
whitespace) come through :mod:`clarion.extract.formats`. A file that is empty or cannot be read at
all is planned, reported and skipped; the entity's other files still load. CSV and JSON lines land
as text (the contract check types them later, so a bad value is quarantined, not a crash); Parquet
keeps its types. Each batch carries ``_clarion_file`` (path under the source folder),
``_clarion_row`` (1-based data record in that file) and ``_clarion_seq`` (order within the load,
which decides which of two duplicates comes first).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from dlt.common.normalizers.naming.snake_case import NamingConvention

from clarion.config import FileEntity
from clarion.config.sources import LOAD_TIME
from clarion.errors import ClarionError
from clarion.extract.formats import (
    OVERSIZED,
    LongLines,
    default_patterns,
    file_kind,
    glob_any_case,
    is_empty,
    py_encoding,
    scan,
    text_source,
)
from clarion.extract.jsonl import read_jsonl

FILE = "_clarion_file"
ROW = "_clarion_row"
SEQ = "_clarion_seq"
INTERNAL = (FILE, ROW, SEQ)
_naming = NamingConvention()


class ExtractError(ClarionError):
    """A source cannot be read as configured; the message names the source, file and what to change."""


@dataclass(frozen=True)
class SourceFile:
    path: Path
    rel: str  # relative to the source folder: what quarantine and accounting show
    format: str
    size: int
    mtime_ns: int
    compression: str | None = None  # gzip | zstd: read through a decompressing stream


@dataclass
class FilePlan:
    """One file's columns after mapping: which canonical columns it has, lacks, and adds."""

    file: SourceFile
    rename: dict[str, str]  # file column -> landing column
    missing: list[str]  # contract columns the file lacks (no default either): the file is rejected
    encoding: str = "utf-8"
    sha256: str = ""
    index: int = 0  # position in the load: orders rows across files (first occurrence wins)
    types: dict[str, pa.DataType] = field(default_factory=dict)  # file column -> type
    empty: bool = False  # no content at all: recorded in the ledger, nothing to read
    unnamed: list[int] = field(default_factory=list)  # 1-based positions of header names left empty
    names: list[str] = field(default_factory=list)  # CSV column names as read (header or column_names)
    oversized: list[dict] = field(default_factory=list)  # lines over max_record_bytes: quarantined
    unreadable: str = ""  # why the file cannot be read at all: reported on every run until fixed

    @property
    def skipped(self) -> bool:
        return self.empty or bool(self.unreadable)

    @property
    def imported(self) -> bool:
        """Parquet lands as the file itself (dlt imports it); text files are parsed and re-written."""
        return self.file.format == "parquet"

    @property
    def unreadable_reason(self) -> tuple[str, str] | None:
        """(reason, field) quarantining every row of the file, when its header cannot be trusted."""
        if self.unnamed:
            return "unnamed_column", ",".join(f"column {i}" for i in self.unnamed)
        return None


@dataclass
class EntityPlan:
    entity: str
    spec: FileEntity
    files: list[FilePlan]
    columns: list[str]  # landing columns, canonical order first, then extras
    types: dict[str, pa.DataType]
    extras: list[str] = field(default_factory=list)
    consent_unknown: list[str] = field(default_factory=list)  # consent columns no file has: loaded false
    # what `defaults: {column: load_time}` gives: one moment for the whole load
    load_time: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def default(self, column: str) -> str:
        """The text of a column's configured default (``load_time``: the time of this load)."""
        value = self.spec.defaults[column]
        return self.load_time if value == LOAD_TIME else str(value)

    @property
    def streamed(self) -> list[FilePlan]:
        return [f for f in self.files if not f.imported and not f.skipped]

    @property
    def imported(self) -> list[FilePlan]:
        return [f for f in self.files if f.imported and not f.skipped]

    @property
    def bad_files(self) -> dict[str, tuple[str, str]]:
        """file -> (reason, field) for files whose every row is quarantined (an unnamed column)."""
        return {f.file.rel: f.unreadable_reason for f in self.files if f.unreadable_reason}

    @property
    def notes(self) -> list[str]:
        """What the accounting says about files beyond their counts: empty ones, unnamed columns."""
        out = [
            f"{f.file.rel} is empty ({f.file.size} bytes): recorded, nothing to read"
            for f in self.files
            if f.empty
        ]
        out += [
            f"{f.file.rel} cannot be read ({f.unreadable}): none of its rows were loaded; fix or replace "
            "the file (it is tried again on every run until it can be read)"
            for f in self.files
            if f.unreadable
        ]
        for f in self.files:
            if f.unnamed:
                where = ", ".join(str(i) for i in f.unnamed)
                out.append(
                    f"{f.file.rel}: column {where} has no name, so its rows were quarantined "
                    "(unnamed_column); name every column (or read a CSV file with header: false "
                    "and column_names)"
                )
        return out

    @property
    def rejected(self) -> dict[str, list[str]]:
        return {f.file.rel: f.missing for f in self.files if f.missing}

    @property
    def loadable_extras(self) -> list[str]:
        """Extra columns of the files that are not rejected: the ones worth keeping in raw."""
        kept = {c for f in self.files if not f.missing and not f.unnamed for c in f.rename.values()}
        return [c for c in self.extras if c in kept]


def discover(root: Path, entity: str, spec: FileEntity) -> list[SourceFile]:
    """Files of one entity under a source folder, in name order (main export before its parts).
    The default globs ignore letter case (Orders.CSV is an orders file); configured ones do not."""
    found: dict[Path, None] = {}
    if spec.files:
        for pattern in spec.files:
            for path in sorted(root.glob(pattern)):
                if path.is_file() and not path.name.startswith("."):
                    found[path] = None
    else:
        found = dict.fromkeys(p for p in glob_any_case(root, default_patterns(entity)) if p.name[0] != ".")
    files = []
    for path in found:
        fmt, compression = file_kind(path)
        if fmt is None:
            raise ExtractError(
                f"{path} matches the files of {entity} but its type is unknown; use .csv, .parquet or .jsonl "
                "(text files may be compressed: .csv.gz, .jsonl.zst)"
            )
        stat = path.stat()
        rel = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        files.append(SourceFile(path, rel, fmt, stat.st_size, stat.st_mtime_ns, compression))
    return sorted(files, key=lambda f: (_main_first(f.path.name, entity), f.rel))


def _main_first(name: str, entity: str) -> int:
    stem, _, rest = name.lower().partition(".")
    return 0 if stem == entity and "." not in rest.removesuffix(".gz").removesuffix(".zst") else 1


def plan_entity(
    entity: str, spec: FileEntity, files: list[SourceFile], canonical: list[str], required: list[str]
) -> EntityPlan:
    """Read each file's header, map it onto the contract, and fix one landing type per column."""
    plans: list[FilePlan] = []
    types: dict[str, list[pa.DataType]] = {}
    extras: list[str] = []
    for f in files:
        try:
            encoding, digest, oversized = _encoding_and_hash(f, spec)
            empty = is_empty(f.path, f.compression, f.size)
            if f.format == "csv" and spec.header and oversized and oversized[0]["line"] == 1:
                raise ValueError(f"its header line is longer than max_record_bytes ({spec.max_record_bytes})")
            schema = pa.schema([]) if empty else _schema(f, spec, encoding, bool(oversized))
        except (pa.ArrowInvalid, OSError, ValueError, EOFError, duckdb.Error) as exc:
            # a broken file (a cut-off download, not really gzip): the others still load
            plans.append(FilePlan(f, {}, [], spec.encoding, index=len(plans), unreadable=_error_text(exc)))
            continue
        if empty:
            plans.append(FilePlan(f, {}, [], encoding, digest, index=len(plans), empty=True))
            continue
        unnamed: list[int] = []
        if f.format != "parquet":  # land them under a name of their own: quarantined rows keep the values
            names, unnamed = _name_blanks(schema.names)
            schema = pa.schema(list(zip(names, schema.types, strict=True)))
        rename = _mapping(f, spec, schema.names, canonical)
        for src, dst in rename.items():
            types.setdefault(dst, []).append(schema.field(src).type)
            if dst not in canonical and dst not in extras:
                extras.append(dst)
        file_types = {name: schema.field(name).type for name in schema.names}
        plans.append(
            FilePlan(
                f,
                rename,
                [],
                encoding,
                digest,
                index=len(plans),
                types=file_types,
                unnamed=unnamed,
                names=schema.names if f.format == "csv" else [],
                oversized=oversized,
            )
        )
    unknown = consent_unknown(entity, set(types), spec.defaults) if types else []
    if unknown:  # no file has them: consent unknown, so false (no content goes to these contacts)
        spec = spec.model_copy(update={"defaults": {**spec.defaults, **dict.fromkeys(unknown, "false")}})
    # A file is rejected when it lacks a required column, or one its sibling files have (the export
    # changed shape). A column no file has is simply absent from this source.
    for fp in plans:
        if fp.skipped:
            continue
        have = set(fp.rename.values()) | set(spec.defaults)
        fp.missing = [c for c in canonical if c not in have and (c in required or c in types)]
    columns = [c for c in canonical if c in types or c in spec.defaults] + extras
    landing_types = {c: _one_type(types.get(c, [pa.string()])) for c in columns}
    return EntityPlan(entity, spec, plans, columns, landing_types, extras, unknown)


CONSENT_COLUMNS = ("email_consent", "sms_consent", "marketing_objection")


def consent_unknown(entity: str, have: set[str], defaults: dict[str, Any]) -> list[str]:
    """The consent columns of a contacts export that none of its files has and no default gives:
    a shop export without consent (a CRM that never recorded it). They load as false, consent
    unknown: no content goes to these contacts until a consent is recorded (the consent log, a
    later export with the columns, a correction). One file lacking a column its siblings have is
    still ``missing_column``: that export changed shape."""
    if entity != "contacts":
        return []
    return [c for c in CONSENT_COLUMNS if c not in have and c not in defaults]


def consent_unknown_note(columns: list[str], contacts: int) -> str:
    """The load's message for :func:`consent_unknown` columns: what is missing, for how many."""
    consent = [c for c in columns if c != "marketing_objection"]
    parts = []
    if consent:
        parts.append(
            f"the export has no consent columns ({', '.join(consent)}): {contacts:,} contacts load with "
            "consent unknown: no content goes to them until a consent is recorded"
        )
    if "marketing_objection" in columns:
        parts.append(
            "the export has no marketing_objection column: no objection is recorded for its contacts"
        )
    return "; ".join(parts)


def _name_blanks(names: list[str]) -> tuple[list[str], list[int]]:
    """Names with the empty ones replaced by ``unnamed_column_<position>``, and those positions."""
    unnamed = [i for i, n in enumerate(names, 1) if not n.strip()]
    return [f"unnamed_column_{i}" if i in unnamed else n for i, n in enumerate(names, 1)], unnamed


def _error_text(exc: BaseException) -> str:
    """What went wrong reading a file, without the file's content (a CSV error quotes the row)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"(got \d+ columns?)\s*:.*", r"\1", text)
    return text[:160]


def _mapping(f: SourceFile, spec: FileEntity, names: list[str], canonical: list[str]) -> dict[str, str]:
    """File column -> landing column: the configured mapping, else the name if it is canonical once
    normalised ("Order ID" -> order_id), else the normalised name as an extra column."""
    rename: dict[str, str] = {}
    for name in names:
        try:
            target = spec.columns[name] if name in spec.columns else _naming.normalize_identifier(name)
        except ValueError:  # nothing left of the name once normalised
            raise ExtractError(
                f"{f.rel}: column {name!r} has no usable name; rename it in the file or map it under "
                "`columns:` for this entity in clarion.yaml"
            ) from None
        if target in INTERNAL:
            raise ExtractError(
                f"{f.rel}: column {name!r} uses a name Clarion reserves; rename it in the mapping"
            )
        if target in rename.values():
            clash = next(k for k, v in rename.items() if v == target)
            raise ExtractError(
                f"{f.rel}: columns {clash!r} and {name!r} both map to {target!r}; "
                "fix `columns:` for this entity in clarion.yaml"
            )
        rename[name] = target
    return rename


def _one_type(seen: list[pa.DataType]) -> pa.DataType:
    """The landing type of a column: the files' common type, else text (the contract check casts)."""
    first = seen[0]
    if all(t == first for t in seen):
        return pa.string() if pa.types.is_null(first) else first
    return pa.string()


def _encoding_and_hash(f: SourceFile, spec: FileEntity) -> tuple[str, str, list[dict]]:
    """sha256 of the file (lineage), the encoding to read it with, and its over-long lines."""
    return scan(f.path, f.format, f.compression, spec.encoding, spec.max_record_bytes)


def _text_source(
    f: SourceFile, spec: FileEntity, encoding: str, long_lines: bool, columns: int = 1
) -> tuple[str | pa.NativeFile, LongLines | None]:
    """The file for pyarrow; an over-long line becomes a CSV record of ``columns`` stand-in values."""
    delimiter = "\t" if spec.delimiter == "whitespace" else spec.delimiter
    placeholder = delimiter.join([OVERSIZED] * columns).encode(py_encoding(encoding))
    return text_source(
        f.path, f.compression, spec.delimiter, spec.max_record_bytes, encoding, long_lines, placeholder
    )


# -- reading ---------------------------------------------------------------------------------------


def _schema(f: SourceFile, spec: FileEntity, encoding: str, long_lines: bool) -> pa.Schema:
    if f.format == "parquet":
        return pq.read_schema(f.path)
    if f.format == "jsonl":  # every key of every line: a key a line lacks is null there
        table = read_jsonl(f.path, f.compression, encoding, spec.max_record_bytes, long_lines)
        return pa.schema([(k, pa.string()) for k in table.column_names if k != OVERSIZED])
    header = _csv_header(f, spec, encoding, long_lines)
    return pa.schema([(name, pa.string()) for name in header])


def _csv_header(f: SourceFile, spec: FileEntity, encoding: str, long_lines: bool = False) -> list[str]:
    """The header's names; for a header-less file the configured names, once its first line is seen
    to have as many fields (else every line would be a malformed row: one clear message instead)."""
    source, _ = _text_source(f, spec, encoding, long_lines)
    reader = pacsv.open_csv(
        source,
        read_options=pacsv.ReadOptions(
            encoding=encoding, block_size=1 << 16, autogenerate_column_names=not spec.header
        ),
        parse_options=_csv_parse_options(spec, []),
    )
    if spec.header:
        return reader.schema.names
    names = list(spec.column_names or [])
    if len(reader.schema.names) != len(names):
        raise ValueError(
            f"its first line has {len(reader.schema.names)} fields but column_names lists {len(names)}; "
            "fix column_names for this entity in clarion.yaml"
        )
    return names


def _csv_parse_options(spec: FileEntity, malformed: list[dict]) -> pacsv.ParseOptions:
    delimiter = "\t" if spec.delimiter == "whitespace" else spec.delimiter

    def handler(row: pacsv.InvalidRow) -> str:
        malformed.append({"line": row.number, "text": row.text[:2000]})
        return "skip"

    return pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True, invalid_row_handler=handler)
