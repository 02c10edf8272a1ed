"""An independent count of the records in a text file, without the CSV parser.

The extract accounting compares what the reader parsed with what this scan finds, so a parser that
quietly merges records (an unbalanced quote swallowing the rest of a file into one value) cannot go
unnoticed. The scan is vectorised with numpy over blocks of bytes; it follows the quoting rules of
pyarrow's reader: a quote opens a quoted value only at the start of a field, ``""`` inside a quoted
value is a quote, and a newline inside a quoted value does not end the record. It works on bytes,
so it needs an ASCII-compatible encoding (UTF-8, Latin-1, cp1252, ...); others are not scanned.
"""

from __future__ import annotations

import codecs
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

QUOTE, LF, CR = ord('"'), ord("\n"), ord("\r")
BLANKS = np.array([ord(c) for c in " \t\r\n"], np.uint8)
BLOCK = 32 << 20
MAX_TEXT = 2000  # characters of a swallowed line kept as its quarantine record


@dataclass
class TextScan:
    """What a scan found in one file. ``records`` excludes the header (CSV) and blank lines."""

    records: int
    lines: int  # physical lines (with the header)
    unclosed_line: int | None = None  # 1-based line where a quote opens and never closes
    unclosed_offset: int | None = None  # its byte offset: the parser reads only what comes before
    swallowed: list[dict] = field(default_factory=list)  # {"line", "text"} of each line from there


def scannable(encoding: str) -> bool:
    """Whether the bytes of quotes and newlines are plain ASCII in this encoding."""
    try:
        name = codecs.lookup(encoding.replace("clarion-utf-8-replace", "utf-8")).name
    except LookupError:
        return False
    return not name.startswith(("utf-16", "utf-32", "utf_16", "utf_32"))


def scan_jsonl(path: Path, compression: str | None = None) -> TextScan:
    """JSON lines: one record per line that holds more than blanks."""
    records = lines = 0
    pending = False  # the line being read (not yet ended by a newline) holds something
    with _open(path, compression) as fh:
        for block in iter(lambda: fh.read(max(BLOCK // 8, 1)), b""):  # smaller: a count per byte below
            arr = np.frombuffer(block, np.uint8)
            nl = np.flatnonzero(arr == LF)
            blank = np.isin(arr, BLANKS)
            filled = np.cumsum(~blank, dtype=np.int32)  # non-blank bytes up to each position
            if len(nl):
                before = np.concatenate(([0], filled[nl[:-1]]))
                content = filled[nl] - before > 0
                content[0] = content[0] or pending
                records += int(content.sum())
                pending = bool(filled[-1] - filled[nl[-1]] > 0)
            else:
                pending = pending or bool(filled[-1] > 0)
            lines += len(nl)
    return TextScan(records + int(pending), lines + int(pending))


def scan_csv(path: Path, delimiter: str, header: bool = True, compression: str | None = None) -> TextScan:
    """Count the records of a delimited file, find an unbalanced quote, and keep the lines it swallows."""
    seps = {"\t", " "} if delimiter == "whitespace" else {delimiter}
    starts_field = np.zeros(256, bool)
    for s in seps:
        starts_field[ord(s)] = True
    starts_field[LF] = starts_field[CR] = True
    quoted = False  # state at the start of the next block
    lines = 0
    records = 0  # non-empty records ended by a newline outside quotes (header included)
    record_start, record_line = 0, 1  # offset and line of the record being read
    record_has_content = False
    offset = 0
    carry = b""
    with _open(path, compression) as fh:
        while True:
            block = fh.read(BLOCK)
            data = carry + block
            if not block:
                if not data:
                    break
                cut = len(data)  # the last piece, without a newline at its end
            else:
                cut = data.rfind(b"\n") + 1
                if cut == 0:
                    carry = data
                    continue
            piece, carry = data[:cut], data[cut:]
            arr = np.frombuffer(piece, np.uint8)
            toggles = _toggles(arr, starts_field, quoted)
            nl = _line_ends(arr)
            parity = (np.searchsorted(toggles, nl) + int(quoted)) % 2
            ends = nl[parity == 0]  # newlines that end a record
            # which of those records hold something: content between the previous end and this one
            prev = np.concatenate(([-1], ends[:-1]))
            length = ends - prev - 1
            cr = np.zeros(len(ends), bool)
            crlf = (length > 0) & (arr[ends] == LF)
            cr[crlf] = arr[ends[crlf] - 1] == CR
            content = ~((length == 0) | ((length == 1) & cr))
            if len(ends):
                content[0] = content[0] or record_has_content
                records += int(content.sum())
                last_end = int(ends[-1])
                record_start = offset + last_end + 1
                record_line = lines + int(np.searchsorted(nl, last_end)) + 2
                tail = arr[last_end + 1 :]
            else:
                tail = arr
            record_has_content = record_has_content if not len(ends) else False
            record_has_content = record_has_content or bool(np.any((tail != LF) & (tail != CR)))
            quoted = (len(toggles) + int(quoted)) % 2 == 1
            lines += len(nl)
            offset += len(piece)
            if not block:
                if arr[-1] not in (LF, CR):
                    lines += 1
                break
    scan = TextScan(0, lines)
    if quoted:
        scan.unclosed_line, scan.unclosed_offset = record_line, record_start
        scan.swallowed = _lines_from(path, record_start, record_line, compression)
        records_total = records + len(scan.swallowed)
    else:
        records_total = records + int(record_has_content)
    if header and quoted and record_line == 1:  # the header itself opens the quote
        scan.swallowed = scan.swallowed[1:]
        records_total = len(scan.swallowed)
    elif header:
        records_total -= 1
    scan.records = max(records_total, 0)
    return scan


def _line_ends(arr: np.ndarray) -> np.ndarray:
    """Where lines end: at \\n, and at a \\r not followed by \\n (old Mac files; the reader takes both)."""
    lone_cr = arr == CR
    lone_cr[:-1] &= arr[1:] != LF
    return np.flatnonzero((arr == LF) | lone_cr)


def _toggles(arr: np.ndarray, starts_field: np.ndarray, quoted: bool) -> np.ndarray:
    """Positions where the quoting state flips, following pyarrow's rules.

    Only runs of an odd number of quotes can flip the state (pairs are escaped quotes). Outside a
    quoted value a run opens one only at the start of a field; inside, any odd run closes it. If no
    run that would open is in the middle of a field, the state simply alternates at each odd run;
    each mid-field run (a literal quote, like 5" for inches) is skipped and alternation resumes.
    """
    q = np.flatnonzero(arr == QUOTE)
    if len(q) == 0:
        return q
    paired = q[1:] == q[:-1] + 1
    if paired.any():  # runs of quotes ("" escapes): keep the first quote of each odd-length run
        starts = np.flatnonzero(np.concatenate(([True], ~paired)))
        lengths = np.diff(starts, append=len(q))
        q = q[starts[(lengths & 1) == 1]]
    odd = q
    if len(odd) == 0:
        return odd
    before = arr[np.maximum(odd - 1, 0)]
    mid_field = ~starts_field[before]
    if odd[0] == 0:
        mid_field[0] = False  # the very start of the text is the start of a field
    lone = np.flatnonzero(mid_field)  # literal-quote candidates (rare), by index parity below
    literal = [lone[lone % 2 == p] for p in (0, 1)]
    kept = np.ones(len(odd), bool)
    i = 0
    if quoted:
        i = 1  # the first odd run closes the value left open by the previous block
    while i < len(odd):
        # from i the state is "outside": runs i, i+2, ... open, runs i+1, i+3, ... close
        cand = literal[i % 2]
        j = np.searchsorted(cand, i)
        if j == len(cand):
            break
        first_literal = int(cand[j])
        kept[first_literal] = False  # a quote inside an unquoted field: no state change
        i = first_literal + 1
    return odd[kept]


def _lines_from(path: Path, offset: int, line: int, compression: str | None = None) -> list[dict]:
    """The non-blank physical lines from ``offset`` to the end (they are few: one broken tail)."""
    with _open(path, compression) as fh:
        fh.read(offset)  # compressed streams cannot seek; the bytes before are skipped
        rest = fh.read()
    return [
        {"line": n, "text": text.decode("utf-8", "replace")[:MAX_TEXT]}
        for n, text in enumerate(rest.splitlines(), start=line)
        if text.strip()
    ]


def _open(path: Path, compression: str | None) -> Any:
    """The file's bytes, decompressed (gzip, zstd) when ``compression`` names a codec."""
    if compression is None:
        return path.open("rb")
    import pyarrow as pa

    return pa.input_stream(str(path), compression=compression)


def scan_file(
    path: Path,
    fmt: str,
    delimiter: str,
    encoding: str,
    header: bool = True,
    compression: str | None = None,
) -> TextScan | None:
    """The independent count of a text file, or None when this scan cannot read its format."""
    if not scannable(encoding):
        return None
    if fmt == "csv":
        return scan_csv(path, delimiter, header, compression)
    if fmt == "jsonl":
        return scan_jsonl(path, compression)
    return None


class Head(io.RawIOBase):
    """The first ``limit`` bytes of a file (decompressed), as a stream the CSV reader can take."""

    def __init__(self, path: Path, limit: int, compression: str | None = None) -> None:
        self._fh = _open(path, compression)
        self._left = limit

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:  # type: ignore[override]
        if self._left <= 0:
            return 0
        data = self._fh.read(min(len(target), self._left))
        target[: len(data)] = data
        self._left -= len(data)
        return len(data)

    def close(self) -> None:
        self._fh.close()
        super().close()
