"""Source files to Arrow batches, the shape dlt lands: canonical column names, file and row of origin.

Everything is pyarrow's vectorised readers; nothing walks rows in Python. CSV and JSON lines land as
text (the contract check types them later, so a bad value is quarantined, not a crash); Parquet
keeps its types. Each batch carries ``_clarion_file`` (path under the source folder),
``_clarion_row`` (1-based data record in that file) and ``_clarion_seq`` (order within the load,
which decides which of two duplicates comes first).
"""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
from dlt.common.normalizers.naming.snake_case import NamingConvention

from clarion.config import FileEntity
from clarion.errors import ClarionError
from clarion.extract import scan

FILE = "_clarion_file"
ROW = "_clarion_row"
SEQ = "_clarion_seq"
INTERNAL = (FILE, ROW, SEQ)
SUFFIXES = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
REPLACING_UTF8 = "clarion-utf-8-replace"
_naming = NamingConvention()


def _replacing_utf8(name: str) -> codecs.CodecInfo | None:
    """UTF-8 that turns invalid bytes into U+FFFD, so one bad byte quarantines one row, not a file."""
    if name.replace("_", "-") != REPLACING_UTF8:
        return None
    utf8 = codecs.lookup("utf-8")
    return codecs.CodecInfo(
        name=REPLACING_UTF8,
        encode=utf8.encode,
        decode=lambda data, errors="replace": utf8.decode(data, "replace"),
        incrementalencoder=utf8.incrementalencoder,
        incrementaldecoder=lambda errors="replace": utf8.incrementaldecoder("replace"),
    )


codecs.register(_replacing_utf8)


class ExtractError(ClarionError):
    """A source cannot be read as configured; the message names the source, file and what to change."""


@dataclass(frozen=True)
class SourceFile:
    path: Path
    rel: str  # relative to the source folder: what quarantine and accounting show
    format: str
    size: int
    mtime_ns: int


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

    @property
    def imported(self) -> bool:
        """Parquet lands as the file itself (dlt imports it); text files are parsed and re-written."""
        return self.file.format == "parquet"


@dataclass
class EntityPlan:
    entity: str
    spec: FileEntity
    files: list[FilePlan]
    columns: list[str]  # landing columns, canonical order first, then extras
    types: dict[str, pa.DataType]
    extras: list[str] = field(default_factory=list)

    @property
    def streamed(self) -> list[FilePlan]:
        return [f for f in self.files if not f.imported]

    @property
    def imported(self) -> list[FilePlan]:
        return [f for f in self.files if f.imported]

    @property
    def rejected(self) -> dict[str, list[str]]:
        return {f.file.rel: f.missing for f in self.files if f.missing}

    @property
    def loadable_extras(self) -> list[str]:
        """Extra columns of the files that are not rejected: the ones worth keeping in raw."""
        kept = {c for f in self.files if not f.missing for c in f.rename.values()}
        return [c for c in self.extras if c in kept]


def discover(root: Path, entity: str, spec: FileEntity) -> list[SourceFile]:
    """Files of one entity under a source folder, in name order (main export before its parts)."""
    patterns = spec.files or [f"{entity}*{suffix}" for suffix in SUFFIXES]
    found: dict[Path, None] = {}
    for pattern in patterns:
        for path in sorted(root.glob(pattern)):
            if path.is_file() and not path.name.startswith("."):
                found[path] = None
    files = []
    for path in found:
        fmt = SUFFIXES.get(path.suffix.lower())
        if fmt is None:
            raise ExtractError(
                f"{path} matches the files of {entity} but its type is unknown; use .csv, .parquet or .jsonl"
            )
        stat = path.stat()
        rel = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        files.append(SourceFile(path, rel, fmt, stat.st_size, stat.st_mtime_ns))
    return sorted(files, key=lambda f: (_main_first(f.path.name, entity), f.rel))


def _main_first(name: str, entity: str) -> int:
    return 0 if name.split(".")[0] == entity and name.count(".") == 1 else 1


def plan_entity(
    entity: str, spec: FileEntity, files: list[SourceFile], canonical: list[str], required: list[str]
) -> EntityPlan:
    """Read each file's header, map it onto the contract, and fix one landing type per column."""
    plans: list[FilePlan] = []
    types: dict[str, list[pa.DataType]] = {}
    extras: list[str] = []
    for f in files:
        encoding, digest = _encoding_and_hash(f, spec)
        schema = _schema(f, spec, encoding)
        rename = _mapping(f, spec, schema.names, canonical)
        for src, dst in rename.items():
            types.setdefault(dst, []).append(schema.field(src).type)
            if dst not in canonical and dst not in extras:
                extras.append(dst)
        file_types = {name: schema.field(name).type for name in schema.names}
        plans.append(FilePlan(f, rename, [], encoding, digest, index=len(plans), types=file_types))
    # A file is rejected when it lacks a required column, or one its sibling files have (the export
    # changed shape). A column no file has is simply absent from this source.
    for fp in plans:
        have = set(fp.rename.values()) | set(spec.defaults)
        fp.missing = [c for c in canonical if c not in have and (c in required or c in types)]
    columns = [c for c in canonical if c in types or c in spec.defaults] + extras
    landing_types = {c: _one_type(types.get(c, [pa.string()])) for c in columns}
    return EntityPlan(entity, spec, plans, columns, landing_types, extras)


def _mapping(f: SourceFile, spec: FileEntity, names: list[str], canonical: list[str]) -> dict[str, str]:
    """File column -> landing column: the configured mapping, else the name if it is canonical once
    normalised ("Order ID" -> order_id), else the normalised name as an extra column."""
    rename: dict[str, str] = {}
    for name in names:
        target = spec.columns[name] if name in spec.columns else _naming.normalize_identifier(name)
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


def _encoding_and_hash(f: SourceFile, spec: FileEntity) -> tuple[str, str]:
    """sha256 of the file (lineage) and, for UTF-8 text, whether it really is UTF-8, in one pass."""
    digest = hashlib.sha256()
    check = f.format != "parquet" and spec.encoding.lower().replace("_", "-") in {"utf-8", "utf8"}
    decoder = codecs.getincrementaldecoder("utf-8")() if check else None
    valid = True
    with f.path.open("rb") as fh:
        for block in iter(lambda: fh.read(8 << 20), b""):
            digest.update(block)
            if decoder is not None and valid:
                try:
                    decoder.decode(block)
                except UnicodeDecodeError:
                    valid = False
        if decoder is not None and valid:
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                valid = False
    encoding = spec.encoding if valid else REPLACING_UTF8
    return encoding, digest.hexdigest()


# -- reading ---------------------------------------------------------------------------------------


def _schema(f: SourceFile, spec: FileEntity, encoding: str) -> pa.Schema:
    if f.format == "parquet":
        return pq.read_schema(f.path)
    if f.format == "jsonl":
        with f.path.open(encoding=_py_encoding(encoding), errors="replace") as fh:
            for line in fh:
                if line.strip():
                    return pa.schema([(k, pa.string()) for k in json.loads(line)])
        return pa.schema([])
    header = _csv_header(f, spec, encoding)
    return pa.schema([(name, pa.string()) for name in header])


def _py_encoding(encoding: str) -> str:
    return "utf-8" if encoding == REPLACING_UTF8 else encoding


def _csv_source(f: SourceFile, spec: FileEntity):
    if spec.delimiter == "whitespace":
        return pa.PythonFile(_WhitespaceTabs(f.path.open("rb")), mode="r")
    return str(f.path)


def _csv_header(f: SourceFile, spec: FileEntity, encoding: str) -> list[str]:
    reader = pacsv.open_csv(
        _csv_source(f, spec),
        read_options=pacsv.ReadOptions(encoding=encoding, block_size=1 << 16),
        parse_options=_csv_parse_options(spec, []),
    )
    return reader.schema.names


def _csv_parse_options(spec: FileEntity, malformed: list[dict]) -> pacsv.ParseOptions:
    delimiter = "\t" if spec.delimiter == "whitespace" else spec.delimiter

    def handler(row: pacsv.InvalidRow) -> str:
        malformed.append({"line": row.number, "text": row.text[:2000]})
        return "skip"

    return pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True, invalid_row_handler=handler)


class _WhitespaceTabs(io.RawIOBase):
    """Reads a whitespace-separated file as tab-separated: runs of spaces/tabs become one tab,
    leading and trailing blanks on a line go. Works block-wise with a carry at block ends."""

    _runs = re.compile(rb"[ \t]+")
    _edges = re.compile(rb"(?m)^\t|\t(?=\r?$)")

    def __init__(self, raw: io.BufferedReader) -> None:
        self._raw = raw
        self._buffer = b""
        self._carry = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:  # type: ignore[override]
        while not self._buffer:
            block = self._raw.read(1 << 20)
            if not block:
                if not self._carry:
                    return 0
                block, self._carry = self._carry, b""
                self._buffer = self._edges.sub(b"", self._runs.sub(b"\t", block))
                break
            block = self._carry + block
            cut = max(block.rfind(b"\n"), 0)
            block, self._carry = block[: cut + 1], block[cut + 1 :]
            self._buffer = self._edges.sub(b"", self._runs.sub(b"\t", block))
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


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
        found = scan.scan_file(fp.file.path, fp.file.format, plan.spec.delimiter, fp.encoding)
        if found is not None:
            stats.counted[fp.file.rel] = found.records
            if found.swallowed:
                stats.swallowed[fp.file.rel] = found.swallowed
        limit = found.unclosed_offset if found is not None else None
        for raw in _raw_batches(fp, plan.spec, batch_rows, malformed, limit):
            n = raw.num_rows
            if n == 0:
                continue
            yield _conform(raw, fp, plan, schema, row)
            row += n
        stats.rows[fp.file.rel] = row
        if malformed:
            _locate_lines(fp, malformed)
            stats.malformed[fp.file.rel] = malformed


def _locate_lines(fp: FilePlan, malformed: list[dict]) -> None:
    """pyarrow cannot number a bad line when values may span lines: find each one by its text.
    Malformed lines are rare, so reading the file once more for them is cheap."""
    if all(m["line"] is not None for m in malformed):
        return
    text = fp.file.path.read_text(encoding=_py_encoding(fp.encoding), errors="replace")
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
            yield from _jsonl_batches(f, fp.encoding)
        else:
            header = _csv_header(f, spec, fp.encoding)
            source = _csv_source(f, spec)
            if limit is not None:  # the records before a quote that never closes; the rest is quarantined
                head = scan.Head(f.path, limit)
                source = pa.PythonFile(
                    _WhitespaceTabs(head) if spec.delimiter == "whitespace" else head, mode="r"
                )
            reader = pacsv.open_csv(
                source,
                read_options=pacsv.ReadOptions(encoding=fp.encoding, block_size=16 << 20),
                parse_options=_csv_parse_options(spec, malformed),
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(header, pa.string()),
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=False,
                    null_values=[""],
                ),
            )
            yield from reader
    except (pa.ArrowInvalid, OSError, ValueError) as exc:
        raise ExtractError(f"cannot read {f.rel}: {str(exc).splitlines()[0]}") from None


def _jsonl_batches(f: SourceFile, encoding: str) -> Iterator[pa.RecordBatch]:
    source: str | pa.NativeFile = str(f.path)
    if encoding.replace("_", "-").lower() not in {"utf-8", "utf8"}:
        source = pa.transcoding_input_stream(pa.OSFile(str(f.path)), encoding, "utf-8")
    table = pajson.read_json(source, parse_options=pajson.ParseOptions(newlines_in_values=False))
    text = []
    for col in table.columns:
        if pa.types.is_nested(col.type):
            text.append(
                pa.array([None if v is None else json.dumps(v) for v in col.to_pylist()], pa.string())
            )
        else:
            text.append(col.cast(pa.string()))
    yield from pa.table(text, names=table.column_names).to_batches(max_chunksize=1_000_000)


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
            arrays.append(pa.repeat(pa.scalar(str(plan.spec.defaults[name])), n).cast(target_type))
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
            expr = f"CAST({text(str(plan.spec.defaults[c]))} AS {duckdb_type(target_type)})"
        else:
            expr = f"CAST(NULL AS {duckdb_type(target_type)})"
        cols.append(f"{expr} AS {quote(c)}")
    cols += [
        f"{text(fp.file.rel)} AS {FILE}",
        f"file_row_number + 1 AS {ROW}",
        f"CAST({fp.index << SEQ_SHIFT} AS BIGINT) + file_row_number + 1 AS {SEQ}",
    ]
    return f"SELECT {', '.join(cols)} FROM read_parquet({text(landed_path)}, file_row_number = true)"
