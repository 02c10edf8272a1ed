"""Defect injection: realistic bad rows, each listed in a manifest with the exact row it sits on.

Defects are *added* rows (a duplicate, a copy with one field broken, an orphan), never edits of the
clean rows: the clean data and its planted truth stay intact, and a correct extraction must end with
exactly the clean rows (plus the rows listed as ``load``/``clean``) in ``raw`` and every other listed
row in ``quarantine`` with the listed reason. Three kinds change a file's columns; they go into an
extra part file (``contacts.part2.csv``) the way a second export with a drifted schema would arrive.

Each kind says in which output formats it can exist: a typed Parquet column cannot hold "two" in an
integer column, and a database table with a primary key cannot hold a duplicate key. The format
``database`` stands for every typed database with primary keys the generator loads (PostgreSQL, MariaDB).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clarion.contract import ENTITIES
from clarion.synth.defect_kinds import (
    ALL_FORMATS,
    BROKEN_BYTE,
    BROKEN_BYTE_PLACEHOLDER,
    CSV_ONLY,
    DRIFT_MAX_ROWS,
    FILES,
    FUTURE_DT,
    FUTURE_TIME,
    KINDS,
    ORPHAN_ID_BASE,
    OVERSIZED_CHARS,
    SPLIT_FIELD,
    SPLIT_FIELD_PLACEHOLDER,
    DefectKind,
    Format,
    Ids,
    _set,
    kinds_for,
)

__all__ = [
    "ALL_FORMATS",
    "BROKEN_BYTE",
    "BROKEN_BYTE_PLACEHOLDER",
    "CSV_ONLY",
    "DRIFT_MAX_ROWS",
    "FILES",
    "FUTURE_DT",
    "FUTURE_TIME",
    "KINDS",
    "ORPHAN_ID_BASE",
    "OVERSIZED_CHARS",
    "SPLIT_FIELD",
    "SPLIT_FIELD_PLACEHOLDER",
    "DefectKind",
    "Format",
    "Ids",
    "Injected",
    "as_text",
    "inject",
    "kinds_for",
    "render_value",
]


# --------------------------------------------------------------------------------------------------
# injection


@dataclass
class Injected:
    table: pa.Table  # clean rows with the defect rows interleaved
    kinds: list[DefectKind]  # per added row
    positions: np.ndarray  # 0-based position of each added row in ``table``
    drift: dict[DefectKind, pa.Table]  # part files with a changed schema


def inject(
    entity: str,
    clean: pa.Table,
    *,
    rate: float,
    fmt: str,
    rng: np.random.Generator,
    ids: Ids,
    first_chunk: bool,
    drift_rows: int,
) -> Injected:
    """Add about ``rate`` x rows defective rows, spread over this entity's kinds.

    In the first chunk every applicable kind appears at least once, so even a small data set
    exercises every defect. Added rows are interleaved at random places; a duplicate always comes
    after the row it duplicates, so "first occurrence wins" quarantines exactly the listed row.
    """
    n = clean.num_rows
    kinds = kinds_for(entity, fmt)
    row_kinds = [k for k in kinds if k.placement not in ("drift_file", "child")]
    waiting = ids.pending.pop(entity, [])  # children owed to defective parents of this chunk
    empty = Injected(clean, [], np.zeros(0, dtype=np.int64), {})
    if rate <= 0 or n == 0 or not kinds:
        return empty
    budget = rng.binomial(n, rate) if n * rate >= 1 else int(rng.random() < n * rate)
    counts = (
        np.bincount(rng.integers(0, len(row_kinds), budget), minlength=len(row_kinds)) if row_kinds else []
    )
    parts: list[pa.Table] = []
    anchors: list[np.ndarray] = []
    per_row_kinds: list[DefectKind] = []
    for kind, count in zip(row_kinds, counts, strict=True):
        count = max(int(count), 1 if first_chunk else 0)
        if kind.max_per_chunk is not None:
            count = min(count, kind.max_per_chunk)
        if count == 0:
            continue
        source = rng.integers(0, n, count)
        rows = kind.build(clean.take(pa.array(source)), rng, ids, fmt)
        parts.append(rows)
        per_row_kinds += [kind] * count
        if kind.placement == "after_source":
            anchors.append(source + (rng.random(count) * (n - source)).astype(np.int64))
        else:
            anchors.append(rng.integers(-1, n, count))
        if kind.children is not None:
            child_entity, child_kind, per_parent = kind.children
            parent_ids = [int(v) for v in rows.column(ENTITIES[entity].primary_key).to_pylist()]
            ids.pending.setdefault(child_entity, []).extend(
                (child_kind, pid) for pid in parent_ids for _ in range(per_parent)
            )
    for kind in (k for k in kinds if k.placement == "child"):
        parents = [pid for name, pid in waiting if name == kind.name]
        if not parents:
            continue
        source = rng.integers(0, n, len(parents))
        rows = kind.build(clean.take(pa.array(source)), rng, ids, fmt)
        fk = kind.column
        typed = pa.types.is_string(rows.schema.field(fk).type)
        rows = _set(rows, fk, [str(p) if typed else p for p in parents])
        parts.append(rows)
        per_row_kinds += [kind] * len(parents)
        anchors.append(rng.integers(-1, n, len(parents)))
    drift = {}
    if first_chunk:
        for kind in (k for k in kinds if k.placement == "drift_file"):
            source = rng.integers(0, n, min(drift_rows, n))
            drift[kind] = kind.build(clean.take(pa.array(source)), rng, ids, fmt)
    if not parts:
        return Injected(clean, [], np.zeros(0, dtype=np.int64), drift)
    added = pa.concat_tables(parts)
    anchor = np.concatenate(anchors)
    # clean row i sorts at 2i, an added row anchored after clean row a at 2a+1
    keys = np.concatenate([2 * np.arange(n), 2 * anchor + 1])
    order = np.argsort(keys, kind="stable")
    table = pa.concat_tables([clean, added]).take(pa.array(order))
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return Injected(table, per_row_kinds, inverse[n:], drift)


def render_value(value: object, limit: int = 60) -> str:
    """A short rendering of a defective value for the manifest (long text is cut)."""
    text = "" if value is None else str(value).replace(BROKEN_BYTE_PLACEHOLDER, "\\xe9").replace("\n", "\\n")
    text = text.replace(SPLIT_FIELD_PLACEHOLDER, SPLIT_FIELD.decode())
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} chars)"


def as_text(table: pa.Table) -> pa.Table:
    """A CSV export is text: every column rendered the way the file will show it."""
    columns = []
    for col in table.columns:
        t = col.type
        if pa.types.is_timestamp(t):
            # strftime on a zoned timestamp looks the zone up per value (5x slower); the stored
            # values are UTC already, so render them naive and spell the zone out.
            naive = col.cast(pa.timestamp(t.unit)).cast(pa.string())
            iso = pc.binary_replace_slice(naive, start=10, stop=11, replacement="T")
            columns.append(pc.binary_join_element_wise(iso, pa.scalar("Z"), ""))
        elif pa.types.is_string(t):
            columns.append(col)
        else:
            columns.append(col.cast(pa.string()))
    return pa.table(columns, names=table.column_names)
