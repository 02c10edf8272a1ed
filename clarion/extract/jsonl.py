"""JSON-lines files as text columns: one column per key seen on any line, every value as text (the
contract check types it). pyarrow reads a well-formed file; a key typed differently across lines
goes through DuckDB; a file with broken lines is read line by line so only those lines are lost
to quarantine, never the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.json as pajson

from clarion.extract.formats import OVERSIZED, open_bytes, py_encoding, text_source


def read_jsonl(
    path: Path,
    compression: str | None,
    encoding: str,
    limit: int,
    long_lines: bool,
    malformed: list[dict] | None = None,
) -> pa.Table:
    """A JSON-lines file as text columns, one per key seen on any line (pyarrow unions the keys).
    Lines that are not JSON objects go to ``malformed`` (the file is then read line by line)."""
    stand_in = json.dumps({OVERSIZED: 1}).encode()  # an over-long line's place (ASCII: any encoding)
    source, _ = text_source(path, compression, ",", limit, encoding, long_lines, stand_in)
    if encoding.replace("_", "-").lower() not in {"utf-8", "utf8"}:
        stream = source if isinstance(source, pa.NativeFile) else pa.OSFile(source)
        source = pa.transcoding_input_stream(stream, encoding, "utf-8")
    try:
        table = pajson.read_json(
            source,
            read_options=pajson.ReadOptions(block_size=16 << 20),
            parse_options=pajson.ParseOptions(newlines_in_values=False),
        )
    except pa.ArrowInvalid as exc:
        if "Empty JSON file" in str(exc):  # nothing but blank or over-long lines
            return pa.table({})
        utf8 = encoding.replace("_", "-").lower() in {"utf-8", "utf8"}
        if "changed from" in str(exc) and utf8 and not long_lines:
            try:
                return _mixed(path, compression)
            except duckdb.Error:  # a broken line as well: line by line below
                pass
        return _salvage(path, compression, encoding, limit, [] if malformed is None else malformed)
    text = []
    for col in table.columns:
        if pa.types.is_nested(col.type):
            text.append(
                pa.array([None if v is None else json.dumps(v) for v in col.to_pylist()], pa.string())
            )
        else:
            text.append(col.cast(pa.string()))
    return pa.table(text, names=table.column_names)


def _salvage(
    path: Path, compression: str | None, encoding: str, limit: int, malformed: list[dict]
) -> pa.Table:
    """A JSON-lines file pyarrow cannot read whole (a broken line, a line that is not an object):
    read line by line, the bad lines kept as malformed rows with their line numbers, every value as
    text. Slower than pyarrow, so only for such files."""
    with open_bytes(path, compression) as stream:
        data = stream.read()
    columns: dict[str, list] = {}
    n = 0
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        if len(line) > limit:  # quarantined as oversized_record: it keeps its place in the records
            columns.setdefault(OVERSIZED, [None] * n).extend([None] * (n - len(columns[OVERSIZED])))
            columns[OVERSIZED].append("1")
            n += 1
            continue
        text = line.decode(py_encoding(encoding), errors="replace")
        try:
            record = json.loads(text)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            malformed.append({"line": number, "text": text[:2000]})
            continue
        for key, value in record.items():
            if value is not None:
                values = columns.setdefault(key, [None] * n)
                values += [None] * (n - len(values))
                values.append(value if isinstance(value, str) else json.dumps(value))
        n += 1
    return pa.table({k: pa.array(v + [None] * (n - len(v)), pa.string()) for k, v in columns.items()})


def _mixed(path: Path, compression: str | None) -> pa.Table:
    """A key holding a number on one line and text on another (pyarrow gives up on the file): DuckDB
    reads every value as its JSON text instead, strings unquoted; the contract check types them."""
    con = duckdb.connect()
    try:
        quoted = "'" + str(path).replace("'", "''") + "'"
        rel = con.sql(
            f"select * from read_json({quoted}, format = 'newline_delimited', sample_size = -1, "
            f"maximum_depth = 1, compression = '{compression or 'none'}')"
        )
        cols = ", ".join(
            '"' + c.replace('"', '""') + "\" ->> '$' as \"" + c.replace('"', '""') + '"' for c in rel.columns
        )
        return con.sql(f"select {cols} from rel").arrow().read_all()
    finally:
        con.close()
