"""How planted defects are built: the defect kind record, the ids a defect takes, and the value and
table changes the catalogue (:mod:`clarion.synth.defect_kinds`) combines."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

import numpy as np
import pyarrow as pa

from clarion.contract import ENTITIES

Format = Literal["csv", "parquet", "database"]  # database: a typed database with primary keys
ALL_FORMATS: frozenset[str] = frozenset({"csv", "parquet", "database"})
FILES = frozenset({"csv", "parquet"})
CSV_ONLY = frozenset({"csv"})

# CSV files get real invalid UTF-8 (a Latin-1 'é'); Arrow strings must be valid UTF-8, so the text
# carries this placeholder and the CSV sink swaps in the raw byte as it writes.
BROKEN_BYTE_PLACEHOLDER = "\x1a~e9~\x1a"
BROKEN_BYTE = b"\xe9"
# CSV values are written quoted; the sink turns this placeholder into '","', splitting the value into
# one field too many: a line that does not parse (an unquoted comma in a hand-made export)
SPLIT_FIELD_PLACEHOLDER = "\x1a~split~\x1a"
SPLIT_FIELD = b'","'
ORPHAN_ID_BASE = 9_000_000_000  # ids above every real one: the parent does not exist
FUTURE_TIME = "2099-01-01T12:00:00Z"
FUTURE_DT = datetime(2099, 1, 1, 12, tzinfo=UTC)
OVERSIZED_CHARS = 100_000
DRIFT_MAX_ROWS = 50


@dataclass
class Ids:
    """Allocates new primary keys for added rows, continuing each entity's own sequence."""

    next: dict[str, int] = field(default_factory=dict)
    # child entity -> (child kind name, parent id) for defective parents that must get children
    pending: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    def take(self, entity: str, k: int) -> np.ndarray:
        start = self.next[entity]
        self.next[entity] = start + k
        return np.arange(start, start + k, dtype=np.int64)


@dataclass(frozen=True)
class DefectKind:
    name: str
    entity: str
    column: str | None
    reason: str  # the machine-readable reason extraction is expected to give
    # quarantine: the row is rejected; finding: it loads with the field nulled and a field finding;
    # load: it loads as is (reported); clean: it loads once normalised
    expected: Literal["quarantine", "finding", "load", "clean"]
    description: str
    build: Callable[[pa.Table, np.random.Generator, Ids, str], pa.Table]
    formats: frozenset[str] = ALL_FORMATS
    # random: anywhere; after_source: after the row it copies; drift_file: a part file of its own;
    # child: one row per parent a ``children`` kind of the parent entity left pending
    placement: Literal["random", "after_source", "drift_file", "child"] = "random"
    max_per_chunk: int | None = None
    children: tuple[str, str, int] | None = None  # (child entity, child kind, rows per parent)

    @property
    def key(self) -> str:
        return f"{self.entity}/{self.name}"


# --------------------------------------------------------------------------------------------------
# builders: take source rows (already in the export's column types), return the defective rows


def _set(table: pa.Table, column: str, values: list | pa.Array) -> pa.Table:
    i = table.schema.get_field_index(column)
    arr = values if isinstance(values, pa.Array) else pa.array(values, type=table.schema.field(i).type)
    return table.set_column(i, table.schema.field(i), arr)


def _new_ids(entity: str) -> Callable[[pa.Table, Ids], pa.Table]:
    pk = ENTITIES[entity].primary_key

    def renumber(rows: pa.Table, ids: Ids) -> pa.Table:
        new = ids.take(entity, rows.num_rows)
        if pa.types.is_string(rows.schema.field(pk).type):
            return _set(rows, pk, pa.array(new).cast(pa.string()))
        return _set(rows, pk, pa.array(new))

    return renumber


def _copy(rows: pa.Table, rng: np.random.Generator, ids: Ids, fmt: str) -> pa.Table:
    return rows


def _broken(
    column: str, transform: Callable[[list, np.random.Generator, str], list], entity: str, fresh: bool = True
):
    renumber = _new_ids(entity)

    def build(rows: pa.Table, rng: np.random.Generator, ids: Ids, fmt: str) -> pa.Table:
        rows = renumber(rows, ids) if fresh else rows
        values = transform(rows.column(column).to_pylist(), rng, fmt)
        return _set(rows, column, values)

    return build


def _const(value_csv: str, value_typed: object):
    def transform(values: list, rng: np.random.Generator, fmt: str) -> list:
        return [value_csv if fmt == "csv" else value_typed] * len(values)

    return transform


def _null(values: list, rng: np.random.Generator, fmt: str) -> list:
    return [None] * len(values)


def _malformed_email(values: list, rng: np.random.Generator, fmt: str) -> list:
    shapes = ["{l}@@{d}", "{l}(at){d}", "{l}@", "{l} {d}", "@{d}", "{l}@{d}."]
    out = []
    for v, s in zip(values, rng.integers(0, len(shapes), len(values)), strict=True):
        local, _, domain = (v or "someone@example.com").partition("@")
        out.append(shapes[s].format(l=local, d=domain))
    return out


def _broken_name(values: list, rng: np.random.Generator, fmt: str) -> list:
    bad = BROKEN_BYTE_PLACEHOLDER if fmt == "csv" else "\ufffd"
    return [f"Jos{bad} {v}" if v else f"Jos{bad}" for v in values]


def _untrimmed(values: list, rng: np.random.Generator, fmt: str) -> list:
    return [f"  {(v or 'someone@example.com').upper()} " for v in values]


def _negative(values: list, rng: np.random.Generator, fmt: str) -> list:
    if fmt == "csv":
        return [v if str(v).startswith("-") else f"-{v}" for v in values]
    return [-abs(v) if v else Decimal("-1.00") for v in values]


def _absurd(values: list, rng: np.random.Generator, fmt: str) -> list:
    return ["9999999.00" if fmt == "csv" else Decimal("9999999.00")] * len(values)


def _choice(options: list[str]):
    def transform(values: list, rng: np.random.Generator, fmt: str) -> list:
        return [options[i] for i in rng.integers(0, len(options), len(values))]

    return transform


def _orphan(values: list, rng: np.random.Generator, fmt: str) -> list:
    ids = ORPHAN_ID_BASE + rng.integers(0, 1_000_000_000, len(values))
    return [str(i) for i in ids] if fmt == "csv" else [int(i) for i in ids]


def _oversized(values: list, rng: np.random.Generator, fmt: str) -> list:
    line = "ERROR 500 at checkout step 3; stack trace follows. "
    return [(v or "") + "\n" + line * (OVERSIZED_CHARS // len(line) + 1) for v in values]


def _conflicting(rows: pa.Table, rng: np.random.Generator, ids: Ids, fmt: str) -> pa.Table:
    """Same contact_id and updated_at, different e-mail and name: neither copy can be trusted to win."""
    emails = [f"other.person{int(x)}@example.org" for x in rng.integers(0, 10**6, rows.num_rows)]
    return _set(_set(rows, "email", emails), "first_name", ["Alex"] * rows.num_rows)


def _drift(entity: str, change: Callable[[pa.Table], pa.Table]):
    renumber = _new_ids(entity)

    def build(rows: pa.Table, rng: np.random.Generator, ids: Ids, fmt: str) -> pa.Table:
        return change(renumber(rows, ids))

    return build


def _add_column(table: pa.Table) -> pa.Table:
    tiers = ["bronze", "silver", "gold"]
    return table.append_column("loyalty_tier", pa.array([tiers[i % 3] for i in range(table.num_rows)]))


def _rename_email(table: pa.Table) -> pa.Table:
    return table.rename_columns(["e_mail" if c == "email" else c for c in table.column_names])


def _drop_currency(table: pa.Table) -> pa.Table:
    return table.drop_columns(["currency"])


def _split_campaign(table: pa.Table) -> pa.Table:
    values = table.column("campaign_id").to_pylist()
    return _set(table, "campaign_id", [f"{v}{SPLIT_FIELD_PLACEHOLDER}utm_source=partner" for v in values])


def _child_of(entity: str, fk: str):
    """Rows of ``entity`` (new keys) whose ``fk`` is set to the pending parents' ids by :func:`inject`."""
    return _broken(fk, lambda values, rng, fmt: values, entity)


def _k(name, entity, column, reason, expected, description, build, **kw) -> DefectKind:
    return DefectKind(name, entity, column, reason, expected, description, build, **kw)
