"""Source files to Arrow batches, the shape dlt lands: canonical column names, file and row of origin.

Everything is pyarrow's vectorised readers; nothing walks rows in Python (except the lines of a
JSON-lines file that has broken ones, see :mod:`clarion.extract.jsonl`). A file's bytes
(compression, long lines, whitespace) come through :mod:`clarion.extract.formats`. A file that is
empty or cannot be read at all is planned, reported and skipped; the entity's other files still
load. CSV and JSON lines land as text (the contract check types them later, so a bad value is
quarantined, not a crash); Parquet keeps its types. Each batch carries ``_clarion_file`` (path
under the source folder), ``_clarion_row`` (1-based data record in that file) and ``_clarion_seq``
(order within the load, which decides which of two duplicates comes first).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from dlt.common.normalizers.naming.snake_case import NamingConvention

from clarion.config import FileEntity
from clarion.config.sources import LOAD_TIME
from clarion.errors import ClarionError
from clarion.extract.formats import (
    OVERSIZED,
    LongLines,
    WhitespaceTabs,
    default_patterns,
    file_kind,
    glob_any_case,
    is_empty,
    open_bytes,
    py_encoding,
    scan,
    text_source,
)
from clarion.extract.jsonl import read_jsonl
from clarion.extract.scan import Head, TextScan, scan_file
from clarion.privacy.scrub import scrub

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
    # A file is rejected when it lacks a required column, or one its sibling files have (the export
    # changed shape). A column no file has is simply absent from this source.
    for fp in plans:
        if fp.skipped:
            continue
        have = set(fp.rename.values()) | set(spec.defaults)
        fp.missing = [c for c in canonical if c not in have and (c in required or c in types)]
    columns = [c for c in canonical if c in types or c in spec.defaults] + extras
    landing_types = {c: _one_type(types.get(c, [pa.string()])) for c in columns}
    return EntityPlan(entity, spec, plans, columns, landing_types, extras)


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


@dataclass
class ReadStats:
    rows: dict[str, int] = field(default_factory=dict)  # per file
    malformed: dict[str, list[dict]] = field(default_factory=dict)  # per file: lines that did not parse
    counted: dict[str, int] = field(default_factory=dict)  # per file: records an independent scan found
    swallowed: dict[str, list[dict]] = field(default_factory=dict)  # per file: lines after a lone quote


SEQ_SHIFT = 40  # seq = file index << 40 | row: file order first, then row order within a file


def read_batches(plan: EntityPlan, batch_rows: int, stats: ReadStats) -> Iterator[pa.RecordBatch]:
    """The text files of the plan as batches of the landing schema, in file order."""
    schema = landing_schema(plan)
    for fp in plan.streamed:
        row = 0
        malformed: list[dict] = []
        stand_ins: list[int] = []  # record numbers of the over-long lines
        found = _count(fp, plan.spec)
        if found is not None:
            stats.counted[fp.file.rel] = found.records
            if found.swallowed:
                stats.swallowed[fp.file.rel] = found.swallowed
        limit = found.unclosed_offset if found is not None else None
        for raw in _raw_batches(fp, plan.spec, batch_rows, malformed, limit):
            n = raw.num_rows
            if n == 0:
                continue
            batch = _conform(raw, fp, plan, schema, row)
            row += n
            mask = _stand_ins(raw, fp)
            if mask is not None:
                stand_ins += pc.filter(batch.column(ROW), mask).to_pylist()
                batch = batch.filter(pc.invert(mask))
            if batch.num_rows:
                yield batch
        stats.rows[fp.file.rel] = row - len(stand_ins)
        if len(stand_ins) == len(fp.oversized):  # else (a line inside a quoted value) located by line
            for item, number in zip(fp.oversized, stand_ins, strict=True):
                item["row"] = number
        if malformed:
            _locate_lines(fp, malformed)
        if malformed or fp.oversized:  # over-long lines were never parsed: they are counted here
            stats.malformed[fp.file.rel] = sorted(
                [*malformed, *fp.oversized], key=lambda m: (m["line"] is None, m["line"] or 0)
            )


def _stand_ins(raw: pa.RecordBatch, fp: FilePlan) -> pa.Array | None:
    """Which records of a batch stand in for over-long lines (None: the file has none)."""
    if not fp.oversized:
        return None
    if OVERSIZED in raw.schema.names:  # JSON lines: the stand-in has a key of its own
        return pc.is_valid(raw.column(OVERSIZED))
    if fp.names and fp.names[0] in raw.schema.names:
        return pc.fill_null(pc.equal(raw.column(fp.names[0]), OVERSIZED), False)
    return None


def _count(fp: FilePlan, spec: FileEntity) -> TextScan | None:
    """The independent count of a text file's records, decompressed (None: the parser's count
    stands). A file with over-long lines swapped for stand-ins is counted by the parser."""
    if fp.oversized:
        return None
    return scan_file(
        fp.file.path, fp.file.format, spec.delimiter, fp.encoding, spec.header, fp.file.compression
    )


def _locate_lines(fp: FilePlan, malformed: list[dict]) -> None:
    """pyarrow cannot number a bad line when values may span lines: find each one by its text.
    Malformed lines are rare, so reading the file once more for them is cheap."""
    if all(m["line"] is not None for m in malformed):
        return
    with open_bytes(fp.file.path, fp.file.compression) as stream:
        text = stream.read().decode(py_encoding(fp.encoding), errors="replace")
    start = 0
    for m in malformed:
        at = text.find(m["text"], start) if m["text"] else -1
        if at >= 0:
            m["line"] = text.count("\n", 0, at) + 1
            start = at + len(m["text"])


def landing_schema(plan: EntityPlan) -> pa.Schema:
    return pa.schema(
        [(c, plan.types[c]) for c in plan.columns]
        + [(FILE, pa.string()), (ROW, pa.int64()), (SEQ, pa.int64())]
    )


def _raw_batches(
    fp: FilePlan, spec: FileEntity, batch_rows: int, malformed: list[dict], limit: int | None = None
) -> Iterator[pa.RecordBatch]:
    """``limit``: read only the bytes before it (where a quote opens that never closes)."""
    f = fp.file
    try:
        if f.format == "parquet":
            yield from pq.ParquetFile(f.path).iter_batches(batch_size=batch_rows)
        elif f.format == "jsonl":
            table = read_jsonl(
                f.path, f.compression, fp.encoding, spec.max_record_bytes, bool(fp.oversized), malformed
            )
            named = iter(_name_blanks([c for c in table.column_names if c != OVERSIZED])[0])
            table = table.rename_columns([c if c == OVERSIZED else next(named) for c in table.column_names])
            yield from table.to_batches(max_chunksize=1_000_000)
        else:
            source, _ = _text_source(f, spec, fp.encoding, bool(fp.oversized), len(fp.names))
            if limit is not None:  # the records before a quote that never closes; the rest is quarantined
                head: io.RawIOBase = Head(f.path, limit, f.compression)
                if spec.delimiter == "whitespace":
                    head = WhitespaceTabs(head)
                source = pa.PythonFile(head, mode="r")
            # explicit names for a header-less file, or one whose header leaves a name empty
            named = not spec.header or bool(fp.unnamed)
            reader = pacsv.open_csv(
                source,
                read_options=pacsv.ReadOptions(
                    encoding=fp.encoding,
                    block_size=16 << 20,
                    column_names=fp.names if named else None,
                    skip_rows=1 if named and spec.header else 0,
                ),
                parse_options=_csv_parse_options(spec, malformed),
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(fp.names, pa.string()),
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=False,
                    null_values=list(spec.null_markers),
                ),
            )
            yield from reader
    except (pa.ArrowInvalid, OSError, ValueError) as exc:
        # the parser quotes the row it choked on: name the file, never the row's values
        raise ExtractError(f"cannot read {f.rel}: {scrub(str(exc).splitlines()[0])}") from None


def _conform(
    raw: pa.RecordBatch, fp: FilePlan, plan: EntityPlan, schema: pa.Schema, row: int
) -> pa.RecordBatch:
    n = raw.num_rows
    by_target = {target: raw.column(src) for src, target in fp.rename.items()}
    arrays = []
    for name in plan.columns:
        target_type = plan.types[name]
        if name in by_target:
            arr = by_target[name]
            arrays.append(arr if arr.type == target_type else arr.cast(target_type))
        elif name in plan.spec.defaults:
            arrays.append(pa.repeat(pa.scalar(plan.default(name)), n).cast(target_type))
        else:
            arrays.append(pa.nulls(n, target_type))
    arrays.append(pa.repeat(pa.scalar(fp.file.rel), n))
    rows = np.arange(row + 1, row + n + 1, dtype=np.int64)
    arrays.append(pa.array(rows))
    arrays.append(pa.array(rows + (fp.index << SEQ_SHIFT)))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def duckdb_type(t: pa.DataType) -> str:
    """The DuckDB type Arrow type ``t`` reads back as (for typed NULL columns in SQL)."""
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
        return "VARCHAR"
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_integer(t):
        return "BIGINT"
    if pa.types.is_decimal(t):
        return f"DECIMAL({t.precision},{t.scale})"
    if pa.types.is_floating(t):
        return "DOUBLE"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ" if t.tz else "TIMESTAMP"
    return "VARCHAR"


def imported_select(fp: FilePlan, plan: EntityPlan, landed_path: str) -> str:
    """The SQL that reads an imported Parquet file as the landing schema: mapped names, defaults,
    typed NULLs for absent columns, and the file and row each row came from."""

    def quote(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def text(value: str) -> str:
        return "'" + value.replace("'", "''") + "'"

    by_target = {target: src for src, target in fp.rename.items()}
    cols = []
    for c in plan.columns:
        target_type = plan.types[c]
        if c in by_target:
            expr = quote(by_target[c])
            if fp.types[by_target[c]] != target_type:
                expr = f"CAST({expr} AS {duckdb_type(target_type)})"
        elif c in plan.spec.defaults:
            expr = f"CAST({text(plan.default(c))} AS {duckdb_type(target_type)})"
        else:
            expr = f"CAST(NULL AS {duckdb_type(target_type)})"
        cols.append(f"{expr} AS {quote(c)}")
    cols += [
        f"{text(fp.file.rel)} AS {FILE}",
        f"file_row_number + 1 AS {ROW}",
        f"CAST({fp.index << SEQ_SHIFT} AS BIGINT) + file_row_number + 1 AS {SEQ}",
    ]
    return f"SELECT {', '.join(cols)} FROM read_parquet({text(landed_path)}, file_row_number = true)"
