"""Profile the files of a folder: per file its format, delimiter, encoding and row count; per column
its inferred type, null rate, distinct count, date format and value patterns.

Everything is computed in DuckDB over at most ``SAMPLE_ROWS`` rows read as text (``all_varchar``),
so a large export costs one scan, never a Python loop over rows. A profile holds no personal data:
value examples are kept only for enum-like columns (statuses, currencies, countries), never for
e-mails, names or free text.
"""

from __future__ import annotations

import codecs
import gzip
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from clarion.extract.formats import file_kind
from clarion.extract.mapping import is_data_file, table_name

SAMPLE_ROWS = 50_000
ENUM_MAX = 12  # at most this many distinct values (and few per row) make a column enum-like
DELIMITERS = (",", ";", "\t", "|")
# strptime formats tried on text columns, most specific first (a value must parse entirely)
TIMESTAMP_FORMATS = (
    "%Y-%m-%d %H:%M:%S %z",
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%m/%d/%Y %H:%M",
    "%d.%m.%Y %H:%M",
)
DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%Y/%m/%d")
CURRENCY_CODES = frozenset(
    "EUR USD GBP SEK DKK NOK CHF PLN CZK HUF JPY CNY CAD AUD NZD INR BRL MXN ZAR SGD HKD".split()  # noqa: SIM905
)
COUNTRY_NAMES = {
    "united kingdom": "GB",
    "great britain": "GB",
    "germany": "DE",
    "france": "FR",
    "united states": "US",
    "usa": "US",
    "netherlands": "NL",
    "spain": "ES",
    "italy": "IT",
    "sweden": "SE",
    "ireland": "IE",
    "eire": "IE",
    "belgium": "BE",
}
EMAIL_RE = r"[^@\s]+@[^@\s]+\.[^@\s]+"
PATTERNS = {  # name -> regexp every non-null value must match (share >= 0.98 counts)
    "email": EMAIL_RE,
    "int": r"[+-]?[0-9]+",
    "float_id": r"[+-]?[0-9]+\.0+",
    "whole": r"[+-]?[0-9]+(\.0+)?",
    "money": r"[+-]?[0-9]+(\.[0-9]{1,2})?",
    "decimal": r"[+-]?[0-9]*\.?[0-9]+",
    "code": r"[A-Za-z]{0,3}[0-9]+[A-Za-z]{0,3}",
    "hash_number": r"#[0-9]+",
    "letter_prefixed": r"[A-Za-z][0-9]+",
    "bool": r"(?i)(true|false|yes|no|t|f|y|n)",
    "iso2": r"[A-Z]{2}",
    "iso3": r"[A-Z]{3}",
}

SHOWN = ("email", "currency_code", "iso2", "country_name", "float_written", "cents", "id_like", "status_like",
         "hash_number", "letter_prefixed")  # fmt: skip
# columns whose values are never shown, whatever their distinct count (people, addresses, free text)
PII_HINTS = ("name", "mail", "phone", "mobile", "address", "street", "city", "zip", "postal", "birth",
             "description", "comment", "note", "message", "subject", "body", "text")  # fmt: skip
SOME = ("float_written", "letter_prefixed")  # shown even when only some values are so


@dataclass
class ColumnProfile:
    name: str
    type: str  # int | decimal | string | date | timestamp | bool | empty
    null_rate: float
    distinct: int
    patterns: dict[str, float] = field(default_factory=dict)  # pattern -> share of non-null values
    date_format: str | None = None
    date_formats: list[str] = field(default_factory=list)  # every format that parses all values
    values: list[str] | None = None  # only for enum-like columns (no PII)
    negative: bool = False  # some numeric values are below zero

    def has(self, pattern: str, share: float = 0.98) -> bool:
        return self.patterns.get(pattern, 0.0) >= share

    @property
    def enum_like(self) -> bool:
        return self.values is not None

    def summary(self) -> str:
        bits = [self.type, f"{self.null_rate:.0%} null", f"{self.distinct} distinct"]
        bits += [f"{p} {s:.0%}" for p, s in self.patterns.items() if p in SHOWN and (s >= 0.5 or p in SOME)]
        if self.type == "decimal" and self.has("money"):
            bits.append("money")
        if self.negative:
            bits.append("some negative")
        if self.date_format:
            bits.append(f"format {self.date_format}")
        if self.values is not None:
            bits.append("values " + ", ".join(self.values))
        return "; ".join(bits)


@dataclass
class FileProfile:
    path: str  # relative to the profiled folder (or schema.table)
    table: str  # the table name a sql: mapping sees it under
    format: str  # csv | parquet | jsonl | table
    rows: int
    sampled: int
    columns: list[ColumnProfile]
    delimiter: str | None = None
    encoding: str | None = None
    compression: str | None = None

    def column(self, name: str) -> ColumnProfile | None:
        return next((c for c in self.columns if c.name == name), None)


def profile_folder(folder: Path) -> list[FileProfile]:
    """Every data file of the folder (not recursive), in name order."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_data_file(p))
    con = duckdb.connect()
    try:
        return [profile_file(con, p, folder) for p in files]
    finally:
        con.close()


def _head(path: Path, compression: str | None, size: int = 1 << 16) -> bytes:
    if compression == "gzip":
        with gzip.open(path, "rb") as fh:
            return fh.read(size)
    if compression == "zstd":
        import zstandard

        with path.open("rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as fh:
            return fh.read(size)
    with path.open("rb") as fh:
        return fh.read(size)


def detect_encoding(head: bytes) -> str:
    """utf-8 when the bytes decode as it (a cut-off last character is allowed), else cp1252 when
    they decode as that, else latin-1 (which decodes anything)."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        head.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"


def detect_delimiter(text: str) -> str:
    """The candidate that splits the first lines into the same, largest number of fields."""
    lines = [ln for ln in text.splitlines()[:20] if ln.strip()][:-1] or text.splitlines()[:1]
    best, best_score = ",", 0
    for d in DELIMITERS:
        counts = {ln.count(d) for ln in lines}
        score = min(ln.count(d) for ln in lines) if lines and len(counts) == 1 else 0
        if score > best_score:
            best, best_score = d, score
    return best


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> tuple:
    return con.execute(sql).fetchall()[0]


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def profile_file(con: duckdb.DuckDBPyConnection, path: Path, root: Path) -> FileProfile:
    fmt, compression = file_kind(path)
    rel = str(path.relative_to(root))
    delimiter = encoding = None
    if fmt == "parquet":
        source = f"read_parquet({_lit(str(path))})"
    elif fmt == "jsonl":
        source = f"read_json({_lit(str(path))}, format='newline_delimited', sample_size=-1)"
    else:
        head = _head(path, compression)
        encoding = detect_encoding(head)
        delimiter = detect_delimiter(head.decode("utf-8" if encoding == "utf-8" else "latin-1", "replace"))
        duck_enc = "utf-8" if encoding == "utf-8" else "latin-1"
        source = (
            f"read_csv({_lit(str(path))}, all_varchar=true, header=true, delim={_lit(delimiter)}, "
            f"encoding={_lit(duck_enc)}, compression={_lit(compression or 'none')}, quote='\"')"
        )
    rows, sampled, profiles = _profile_rows(con, source)
    return FileProfile(
        path=rel,
        table=table_name(path),
        format=fmt or "csv",
        rows=rows,
        sampled=sampled,
        columns=profiles,
        delimiter=delimiter,
        encoding=encoding,
        compression=compression,
    )


def profile_relation(con: duckdb.DuckDBPyConnection, name: str, relation: str, table: str) -> FileProfile:
    """Profile any DuckDB relation (e.g. a database table attached to ``con``)."""
    rows, sampled, profiles = _profile_rows(con, relation)
    return FileProfile(name, table, "table", rows, sampled, profiles)


def _profile_rows(con: duckdb.DuckDBPyConnection, relation: str) -> tuple[int, int, list[ColumnProfile]]:
    """(rows, rows sampled, each column's profile) of a relation: counted whole, profiled on a
    sample of its first rows, values as trimmed text."""
    rows = _one(con, f"select count(*) from {relation}")[0]
    con.execute(f"create or replace temp table _p as select * from {relation} limit {SAMPLE_ROWS}")
    native = {r[0]: str(r[1]) for r in con.execute("describe _p").fetchall()}
    cols = list(native)
    con.execute(
        "create or replace temp table _s as select "
        + ", ".join(f"nullif(trim(cast({_q(c)} as varchar)), '') as {_q(c)}" for c in cols)
        + " from _p"
    )
    sampled = _one(con, "select count(*) from _s")[0]
    return rows, sampled, [_profile_column(con, c, sampled, native[c]) for c in cols]


def _profile_column(con: duckdb.DuckDBPyConnection, name: str, sampled: int, native: str) -> ColumnProfile:
    c = _q(name)
    aggs = [f"count({c})", f"count(distinct {c})"]
    aggs += [f"count(*) filter (where regexp_full_match({c}, {_lit(rx)}))" for rx in PATTERNS.values()]
    aggs += [f"count(try_strptime({c}, {_lit(f)}))" for f in TIMESTAMP_FORMATS + DATE_FORMATS]
    aggs += [f"count(*) filter (where upper({c}) in ({', '.join(map(_lit, sorted(CURRENCY_CODES)))}))"]
    aggs += [f"count(*) filter (where lower({c}) in ({', '.join(map(_lit, COUNTRY_NAMES))}))"]
    aggs += [f"count(*) filter (where {c} like '-%')"]
    out = _one(con, f"select {', '.join(aggs)} from _s")
    nonnull, distinct = out[0], out[1]
    pos = 2
    share = {}
    for p in PATTERNS:
        share[p] = (out[pos] / nonnull) if nonnull else 0.0
        pos += 1
    formats = []
    for f in TIMESTAMP_FORMATS + DATE_FORMATS:
        if nonnull and out[pos] == nonnull:
            formats.append(f)
        pos += 1
    share["currency_code"] = out[pos] / nonnull if nonnull else 0.0
    share["country_name"] = out[pos + 1] / nonnull if nonnull else 0.0
    negative = bool(out[pos + 2])
    share = {k: round(v, 3) for k, v in share.items() if v > 0}
    prof = ColumnProfile(
        name=name,
        type="empty",
        null_rate=round(1 - nonnull / sampled, 3) if sampled else 1.0,
        distinct=distinct,
        patterns=share,
        negative=negative,
    )
    if nonnull == 0:
        return prof
    if native.startswith(("TIMESTAMP", "DATE")):  # a typed column (Parquet, a database): no format
        prof.type = "date" if native == "DATE" else "timestamp"
    elif formats:
        prof.date_formats = formats
        prof.date_format = formats[0]
        prof.type = "date" if formats[0] in DATE_FORMATS else "timestamp"
    elif prof.has("int", 1.0):
        prof.type = "int"
    elif prof.has("whole", 1.0) and prof.has("float_id", 0.001):
        prof.type = "int"  # 12402.0 next to 12402: integers a spreadsheet wrote as floats
        prof.patterns["float_written"] = prof.patterns["float_id"]
    elif prof.has("decimal", 1.0):
        prof.type = "decimal"
    elif prof.has("bool", 1.0) and distinct <= 2:
        prof.type = "bool"
    else:
        prof.type = "string"
    if (
        distinct == nonnull
        and prof.type in ("int", "string")
        and (prof.has("whole", 1.0) or prof.has("code", 1.0))
    ):
        prof.patterns["id_like"] = 1.0
    if prof.type == "int" and "cent" in name.lower():
        prof.patterns["cents"] = 1.0
    named_pii = any(h in name.lower() for h in PII_HINTS)
    pii_like = named_pii or prof.has("email", 0.01) or prof.type in ("date", "timestamp", "decimal")
    if (
        not pii_like
        and distinct <= ENUM_MAX
        and distinct * 5 <= nonnull
        and prof.type in ("string", "bool", "int")
    ):
        prof.values = [
            r[0]
            for r in con.execute(f"select distinct {c} from _s where {c} is not null order by 1").fetchall()
        ]
        if (
            prof.type == "string"
            and distinct >= 2
            and not any(prof.has(p) for p in ("iso2", "currency_code", "country_name"))
        ):
            prof.patterns["status_like"] = 1.0
    return prof
