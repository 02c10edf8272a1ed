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

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clarion.contract import ENTITIES

Format = Literal["csv", "parquet", "database"]  # database: a typed database with primary keys
ALL_FORMATS: frozenset[str] = frozenset({"csv", "parquet", "database"})
FILES = frozenset({"csv", "parquet"})
CSV_ONLY = frozenset({"csv"})

# CSV files get real invalid UTF-8 (a Latin-1 'é'); Arrow strings must be valid UTF-8, so the text
# carries this placeholder and the CSV sink swaps in the raw byte as it writes.
BROKEN_BYTE_PLACEHOLDER = "\x1a~e9~\x1a"
BROKEN_BYTE = b"\xe9"
ORPHAN_ID_BASE = 9_000_000_000  # ids above every real one: the parent does not exist
FUTURE_TIME = "2099-01-01T12:00:00Z"
FUTURE_DT = datetime(2099, 1, 1, 12, tzinfo=UTC)
OVERSIZED_CHARS = 100_000
DRIFT_MAX_ROWS = 50


@dataclass
class Ids:
    """Allocates new primary keys for added rows, continuing each entity's own sequence."""

    next: dict[str, int] = field(default_factory=dict)

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
    placement: Literal["random", "after_source", "drift_file"] = "random"
    max_per_chunk: int | None = None

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


def _k(name, entity, column, reason, expected, description, build, **kw) -> DefectKind:
    return DefectKind(name, entity, column, reason, expected, description, build, **kw)


NO_DUPLICATE_KEYS = FILES  # a database table with a primary key cannot hold these

KINDS: tuple[DefectKind, ...] = (
    # contacts
    _k(
        "duplicate_row",
        "contacts",
        "contact_id",
        "duplicate_key",
        "quarantine",
        "an exact second copy of a contact",
        _copy,
        formats=NO_DUPLICATE_KEYS,
        placement="after_source",
    ),
    _k(
        "conflicting_duplicate",
        "contacts",
        "contact_id",
        "duplicate_key",
        "quarantine",
        "same contact_id and updated_at as an earlier row, different e-mail and name",
        _conflicting,
        formats=NO_DUPLICATE_KEYS,
        placement="after_source",
    ),
    _k(
        "missing_id",
        "contacts",
        "contact_id",
        "missing_required",
        "quarantine",
        "a contact without its id",
        _broken("contact_id", _null, "contacts", fresh=False),
        formats=NO_DUPLICATE_KEYS,
    ),
    _k(
        "malformed_email",
        "contacts",
        "email",
        "invalid_email",
        "finding",
        "an e-mail address that cannot be delivered to (@@, missing domain...)",
        _broken("email", _malformed_email, "contacts"),
    ),
    _k(
        "broken_encoding",
        "contacts",
        "first_name",
        "encoding_error",
        "finding",
        "a name with a Latin-1 byte in a UTF-8 file (U+FFFD where the format forces valid text)",
        _broken("first_name", _broken_name, "contacts"),
    ),
    _k(
        "unparsable_date",
        "contacts",
        "signup_date",
        "invalid_date",
        "quarantine",
        "a signup date no parser can read",
        _broken("signup_date", _choice(["31/02/2024", "yesterday", "2024-13-01"]), "contacts"),
        formats=CSV_ONLY,
    ),
    _k(
        "invalid_enum",
        "contacts",
        "country",
        "invalid_enum",
        "finding",
        "a country outside the contract's list",
        _broken("country", _choice(["XX", "Germany", "uk"]), "contacts"),
    ),
    _k(
        "untrimmed_value",
        "contacts",
        "email",
        "normalised",
        "clean",
        "an e-mail with surrounding spaces and capitals: valid once trimmed and lower-cased",
        _broken("email", _untrimmed, "contacts"),
    ),
    _k(
        "extra_column",
        "contacts",
        "loyalty_tier",
        "new_column",
        "load",
        "a part file with an extra column: its rows are valid and the new column is reported",
        _drift("contacts", _add_column),
        formats=FILES,
        placement="drift_file",
    ),
    _k(
        "renamed_column",
        "contacts",
        "email",
        "missing_column",
        "quarantine",
        "a part file where 'email' arrives as 'e_mail'",
        _drift("contacts", _rename_email),
        formats=FILES,
        placement="drift_file",
    ),
    # products
    _k(
        "duplicate_row",
        "products",
        "product_id",
        "duplicate_key",
        "quarantine",
        "an exact second copy of a product",
        _copy,
        formats=NO_DUPLICATE_KEYS,
        placement="after_source",
    ),
    _k(
        "negative_amount",
        "products",
        "price",
        "out_of_range",
        "quarantine",
        "a product with a negative price",
        _broken("price", _negative, "products"),
    ),
    # orders
    _k(
        "duplicate_row",
        "orders",
        "order_id",
        "duplicate_key",
        "quarantine",
        "an exact second copy of an order",
        _copy,
        formats=NO_DUPLICATE_KEYS,
        placement="after_source",
    ),
    _k(
        "missing_foreign_key",
        "orders",
        "contact_id",
        "missing_required",
        "quarantine",
        "an order without a contact id",
        _broken("contact_id", _null, "orders"),
    ),
    _k(
        "orphan",
        "orders",
        "contact_id",
        "orphan",
        "quarantine",
        "an order for a contact that does not exist",
        _broken("contact_id", _orphan, "orders"),
    ),
    _k(
        "future_date",
        "orders",
        "ordered_at",
        "future_date",
        "quarantine",
        "an order placed in 2099",
        _broken("ordered_at", _const(FUTURE_TIME, FUTURE_DT), "orders"),
    ),
    _k(
        "unparsable_date",
        "orders",
        "ordered_at",
        "invalid_date",
        "quarantine",
        "an order date no parser can read",
        _broken("ordered_at", _choice(["2024-13-45T10:00:00Z", "12/31/2024 25:00", "n/a"]), "orders"),
        formats=CSV_ONLY,
    ),
    _k(
        "negative_amount",
        "orders",
        "total_amount",
        "out_of_range",
        "quarantine",
        "an order with a negative total",
        _broken("total_amount", _negative, "orders"),
    ),
    _k(
        "absurd_amount",
        "orders",
        "total_amount",
        "out_of_range",
        "quarantine",
        "an order of 9,999,999.00",
        _broken("total_amount", _absurd, "orders"),
    ),
    _k(
        "unknown_currency",
        "orders",
        "currency",
        "invalid_enum",
        "quarantine",
        "a currency code outside the contract",
        _broken("currency", _choice(["XYZ", "EURO", "usd$"]), "orders"),
    ),
    _k(
        "invalid_enum",
        "orders",
        "status",
        "invalid_enum",
        "quarantine",
        "an order status outside the contract",
        _broken("status", _choice(["shipped??", "COMPLETE", "unknown"]), "orders"),
    ),
    _k(
        "wrong_type",
        "orders",
        "subtotal_amount",
        "wrong_type",
        "finding",
        "an amount written with a comma and a currency sign",
        _broken("subtotal_amount", _choice(["12,50 €", "£19.99", "twelve"]), "orders"),
        formats=CSV_ONLY,
    ),
    _k(
        "missing_column",
        "orders",
        "currency",
        "missing_column",
        "quarantine",
        "a part file without the required 'currency' column",
        _drift("orders", _drop_currency),
        formats=FILES,
        placement="drift_file",
    ),
    # order items
    _k(
        "orphan",
        "order_items",
        "order_id",
        "orphan",
        "quarantine",
        "an item of an order that does not exist",
        _broken("order_id", _orphan, "order_items"),
    ),
    _k(
        "zero_quantity",
        "order_items",
        "quantity",
        "out_of_range",
        "quarantine",
        "an item with quantity 0",
        _broken("quantity", _const("0", 0), "order_items"),
    ),
    _k(
        "wrong_type",
        "order_items",
        "quantity",
        "wrong_type",
        "quarantine",
        "a quantity written as a word",
        _broken("quantity", _choice(["two", "1.5", "3 pcs"]), "order_items"),
        formats=CSV_ONLY,
    ),
    _k(
        "negative_amount",
        "order_items",
        "unit_price",
        "out_of_range",
        "quarantine",
        "an item with a negative unit price",
        _broken("unit_price", _negative, "order_items"),
    ),
    # e-mail events
    _k(
        "duplicate_row",
        "email_events",
        "event_id",
        "duplicate_key",
        "quarantine",
        "the same event delivered twice",
        _copy,
        formats=NO_DUPLICATE_KEYS,
        placement="after_source",
    ),
    _k(
        "invalid_enum",
        "email_events",
        "event_type",
        "invalid_enum",
        "quarantine",
        "an event type outside the contract",
        _broken("event_type", _choice(["opened", "CLICK", "spam"]), "email_events"),
    ),
    _k(
        "future_date",
        "email_events",
        "occurred_at",
        "future_date",
        "quarantine",
        "an event dated 2099",
        _broken("occurred_at", _const(FUTURE_TIME, FUTURE_DT), "email_events"),
    ),
    _k(
        "orphan",
        "email_events",
        "contact_id",
        "orphan",
        "quarantine",
        "an event for a contact that does not exist",
        _broken("contact_id", _orphan, "email_events"),
    ),
    # support tickets
    _k(
        "oversized_text",
        "support_tickets",
        "body",
        "oversized_text",
        "finding",
        f"a ticket body of over {OVERSIZED_CHARS:,} characters (a pasted log)",
        _broken("body", _oversized, "support_tickets"),
        max_per_chunk=2,
    ),
    _k(
        "missing_foreign_key",
        "support_tickets",
        "contact_id",
        "missing_required",
        "quarantine",
        "a ticket without a contact id",
        _broken("contact_id", _null, "support_tickets"),
    ),
    # consents
    _k(
        "invalid_enum",
        "consents",
        "channel",
        "invalid_enum",
        "quarantine",
        "a consent for a channel outside the contract",
        _broken("channel", _choice(["fax", "Email", "post"]), "consents"),
    ),
    _k(
        "future_date",
        "consents",
        "recorded_at",
        "future_date",
        "quarantine",
        "a consent recorded in 2099",
        _broken("recorded_at", _const(FUTURE_TIME, FUTURE_DT), "consents"),
    ),
)


def kinds_for(entity: str, fmt: str) -> list[DefectKind]:
    return [k for k in KINDS if k.entity == entity and fmt in k.formats]


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
    row_kinds = [k for k in kinds if k.placement != "drift_file"]
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
