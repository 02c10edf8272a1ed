"""A planned entity's files read as Arrow batches in the landing schema (what dlt lands).

:mod:`clarion.extract.readers` plans the files (which columns each has, lacks and adds, one landing
type per column); this module reads them: text files through pyarrow's CSV reader or the JSON-lines
reader in batches, each batch renamed and conformed to the landing schema with the file and row of
each record, over-long lines replaced by stand-ins and malformed lines collected, and each Parquet
file read back with SQL after dlt imported it as it is. Nothing walks rows in Python.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from clarion.config import FileEntity
from clarion.extract.formats import OVERSIZED, WhitespaceTabs, open_bytes, py_encoding
from clarion.extract.jsonl import read_jsonl
from clarion.extract.readers import (
    FILE,
    ROW,
    SEQ,
    EntityPlan,
    ExtractError,
    FilePlan,
    _csv_parse_options,
    _name_blanks,
    _text_source,
)
from clarion.extract.scan import Head, TextScan, scan_file
from clarion.privacy.scrub import scrub


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
