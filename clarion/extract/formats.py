"""The bytes of a source file as the readers see them: which format and compression a name says,
the file decompressed, over-long lines swapped for a stand-in (and kept on record), whitespace runs
as tabs.

Everything here works on blocks of bytes; the only Python loop is over the few lines that break the
record limit, never over the lines of a file.
"""

from __future__ import annotations

import codecs
import fnmatch
import hashlib
import io
import re
from pathlib import Path

import numpy as np
import pyarrow as pa

TEXT_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
SUFFIXES = {**TEXT_SUFFIXES, ".parquet": "parquet"}
COMPRESSIONS = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd"}
MAGIC = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd"}
PREVIEW_CHARS = 2000  # how much of an oversized record its quarantine row keeps
OVERSIZED = "\x01clarion:oversized"  # the value of the stand-in record of an over-long line

REPLACING_UTF8 = "clarion-utf-8-replace"


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


def py_encoding(encoding: str) -> str:
    return "utf-8" if encoding == REPLACING_UTF8 else encoding


def file_kind(path: Path) -> tuple[str | None, str | None]:
    """(format, compression) from a file's name, any letter case: orders.CSV.GZ -> (csv, gzip).
    For a text file the first bytes have the last word (gzip and zstd have magic numbers)."""
    suffixes = [s.lower() for s in path.suffixes]
    compression = COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    if compression is not None:
        suffixes = suffixes[:-1]
    fmt = SUFFIXES.get(suffixes[-1]) if suffixes else None
    if fmt is not None and fmt != "parquet":
        # the first bytes decide: a .csv that is gzip is read as gzip, a .csv.gz that is not, as text
        found = sniff(path)
        if found is not None or (compression is not None and path.stat().st_size > 0):
            compression = found
    if fmt == "parquet" and compression is not None:
        fmt = None  # Parquet compresses inside the file; a compressed Parquet file is not readable
    return fmt, compression


def sniff(path: Path) -> str | None:
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError:
        return None
    return next((c for magic, c in MAGIC.items() if head.startswith(magic)), None)


def default_patterns(entity: str) -> list[str]:
    """The default globs of an entity (matched without regard to letter case)."""
    return [f"{entity}*{s}{c}" for s in SUFFIXES for c in ("", *(k for k in COMPRESSIONS if s != ".parquet"))]


def glob_any_case(root: Path, patterns: list[str]) -> list[Path]:
    """Files directly under ``root`` whose names match a pattern, ignoring letter case (Orders.CSV)."""
    lowered = [p.lower() for p in patterns]
    return sorted(
        p
        for p in root.iterdir()
        if p.is_file() and any(fnmatch.fnmatchcase(p.name.lower(), g) for g in lowered)
    )


def open_bytes(path: Path, compression: str | None) -> pa.NativeFile:
    """The file's content, decompressed."""
    return pa.input_stream(str(path), compression=compression)


def is_empty(path: Path, compression: str | None, size: int) -> bool:
    """No content at all: zero bytes, or nothing but blanks and line breaks (once decompressed)."""
    if size == 0:
        return True
    if compression is None and size > 1 << 16:
        return False
    with open_bytes(path, compression) as stream:
        head = stream.read(1 << 16)
        return not head.strip() and not stream.read(1)


class LongLines:
    """Finds lines longer than ``limit`` bytes in a stream of blocks and puts ``placeholder`` (a
    stand-in record the reader can spot, so later records keep their numbers) in their place.

    Each one found is kept as ``{"line", "bytes", "text", "reason"}`` (``line`` 1-based, counting
    every physical line; ``text`` its first characters), in the shape of a malformed row, so it is
    quarantined like one. The lines that stay come out unchanged.
    """

    def __init__(
        self, limit: int, encoding: str = "utf-8", emit: bool = True, placeholder: bytes = b""
    ) -> None:
        self.limit = limit
        self.emit = emit  # False: only find the long lines (the planning pass), output nothing
        self.placeholder = placeholder
        self.encoding = encoding
        self.found: list[dict] = []
        self._line = 1  # number of the line that starts at the carry
        self._carry = b""
        self._drop: dict | None = None  # the long line being skipped, when it spans blocks

    def feed(self, block: bytes) -> bytes:
        if self._drop is not None:
            end = block.find(b"\n")
            if end < 0:
                self._drop["bytes"] += len(block)
                return b""
            self._drop["bytes"] += end
            self._close_drop()
            block = block[end:]  # its newline stays, after the placeholder
        first, last = block.find(b"\n"), block.rfind(b"\n")
        if (  # the usual case: no line of this block is long, and no per-line work is done
            first >= 0
            and len(self._carry) + first <= self.limit
            and len(block) - last - 1 <= self.limit
            and not self._may_hold_a_long_line(block)
        ):
            self._line += block.count(b"\n")
            out = self._carry + block[: last + 1] if self.emit else b""
            self._carry = block[last + 1 :]
            return out
        data = self._carry + block
        ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
        starts = np.concatenate(([0], ends + 1))
        lengths = ends - starts[:-1]
        kept: list[bytes] = []
        at = 0
        for i in np.flatnonzero(lengths > self.limit).tolist():
            start, end = int(starts[i]), int(ends[i])
            self._keep(self._line + i, end - start, data[start : start + 4 * PREVIEW_CHARS])
            kept += [data[at:start], self.placeholder]
            at = end
        tail_start = int(starts[-1])
        kept.append(data[at:tail_start])
        self._line += len(ends)
        tail = data[tail_start:]
        if len(tail) > self.limit:
            self._drop = self._keep(self._line, len(tail), tail[: 4 * PREVIEW_CHARS])
            kept.append(self.placeholder)
            self._carry = b""
        else:
            self._carry = tail
        return b"".join(kept)

    def _may_hold_a_long_line(self, data: bytes) -> bool:
        """A run of more than ``limit`` bytes without a newline covers a whole aligned stretch of
        ``limit / 2`` bytes: looking for a newline in each stretch (C speed, stops at the first one)
        rules long lines out in a few hundred calls per block."""
        half = self.limit // 2
        if half < 4096:
            return True  # a tiny limit: the exact pass is as cheap
        return any(data.find(b"\n", i, i + half) < 0 for i in range(0, len(data) - half + 1, half))

    def finish(self) -> bytes:
        """What is left at the end of the stream (a last line without a newline)."""
        if self._drop is not None:
            self._close_drop()
            return b""
        rest, self._carry = self._carry, b""
        return rest

    def _keep(self, line: int, size: int, head: bytes) -> dict:
        text = head.decode(self.encoding, errors="replace")[:PREVIEW_CHARS]
        item = {"line": line, "bytes": size, "text": text, "reason": "oversized_record"}
        self.found.append(item)
        return item

    def _close_drop(self) -> None:
        assert self._drop is not None
        if self._drop["bytes"] and self._drop["text"].endswith("\r"):
            self._drop["text"] = self._drop["text"][:-1]
        self._drop = None


class Filtered(io.RawIOBase):
    """A readable stream of ``raw`` with the long lines swapped for stand-ins (see :class:`LongLines`)."""

    def __init__(self, raw, lines: LongLines) -> None:
        self._raw = raw
        self._lines = lines
        self._buffer = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:  # type: ignore[override]
        while not self._buffer and not self._done:
            block = self._raw.read(8 << 20)
            if block:
                self._buffer = self._lines.feed(bytes(block))
            else:
                self._buffer = self._lines.finish()
                self._done = True
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


class WhitespaceTabs(io.RawIOBase):
    """Reads a whitespace-separated file as tab-separated: runs of spaces/tabs become one tab,
    leading and trailing blanks on a line go. Works block-wise with a carry at block ends."""

    _runs = re.compile(rb"[ \t]+")
    _edges = re.compile(rb"(?m)^\t|\t(?=\r?$)")

    def __init__(self, raw) -> None:
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


def scan(
    path: Path, fmt: str, compression: str | None, declared: str, limit: int
) -> tuple[str, str, list[dict]]:
    """sha256 of the file (lineage), for UTF-8 text whether it really is UTF-8, and the lines longer
    than the record limit; one pass over the bytes (two for a compressed file: raw, then content)."""
    digest = hashlib.sha256()
    text = fmt != "parquet"
    check = text and declared.lower().replace("_", "-") in {"utf-8", "utf8"}
    decoder = codecs.getincrementaldecoder("utf-8")() if check else None
    lines = LongLines(limit, py_encoding(declared), emit=False)
    valid = True

    def scan(block: bytes) -> None:
        nonlocal valid
        if text:
            lines.feed(block)
        if decoder is not None and valid:
            try:
                decoder.decode(block)
            except UnicodeDecodeError:
                valid = False

    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(8 << 20), b""):
            digest.update(block)
            if compression is None:
                scan(block)
    if compression is not None and text:
        with open_bytes(path, compression) as stream:
            for block in iter(lambda: stream.read(8 << 20), b""):
                scan(block)
    lines.finish()
    if decoder is not None and valid:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            valid = False
    encoding = declared if valid else REPLACING_UTF8
    return encoding, digest.hexdigest(), lines.found


def text_source(
    path: Path,
    compression: str | None,
    delimiter: str,
    limit: int,
    encoding: str,
    long_lines: bool,
    placeholder: bytes = b"",
) -> tuple[str | pa.NativeFile, LongLines | None]:
    """The file's content for pyarrow: the path itself when nothing needs doing (fastest), else a
    stream that decompresses, takes out over-long lines, and turns whitespace runs into tabs."""
    plain_name = path.suffix.lower() not in COMPRESSIONS  # pyarrow would decompress a .gz path itself
    if compression is None and plain_name and not long_lines and delimiter != "whitespace":
        return str(path), None
    stream = open_bytes(path, compression)
    lines = None
    if long_lines:
        lines = LongLines(limit, py_encoding(encoding), placeholder=placeholder)
        stream = Filtered(stream, lines)
    if delimiter == "whitespace":
        stream = WhitespaceTabs(stream)
    return (pa.PythonFile(stream, mode="r") if not isinstance(stream, pa.NativeFile) else stream), lines
