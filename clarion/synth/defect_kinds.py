"""The catalogue of defect kinds: what each planted fault is, which reason and outcome extraction must
give it, in which formats it can exist, and how its rows are built from clean rows.

Outcomes: ``quarantine`` (the row is rejected), ``finding`` (an invalid optional field: the row loads
with the field nulled), ``load`` (the row loads as is, and is reported) and ``clean`` (it loads once
normalised). Kinds with ``children`` give each defective parent rows of a child entity (placement
``child``): a rejected contact's orders cascade as orphans, the orders of a contact loaded with a
finding load. :mod:`clarion.synth.defects` injects them.
"""

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
    _k(
        "rejected_parent",
        "contacts",
        "signup_date",
        "missing_required",
        "quarantine",
        "a contact without its required signup date, with orders of its own: they cascade as orphans",
        _broken("signup_date", _null, "contacts"),
        children=("orders", "orphaned_child", 2),
        max_per_chunk=3,
    ),
    _k(
        "parent_with_finding",
        "contacts",
        "country",
        "invalid_enum",
        "finding",
        "a contact with an invalid optional country and orders of its own: it loads, no cascade",
        _broken("country", _choice(["Germany", "U.K.", "XX"]), "contacts"),
        children=("orders", "child_of_finding", 2),
        max_per_chunk=3,
    ),
    _k(
        "invalid_consent_flag",
        "contacts",
        "email_consent",
        "wrong_type",
        "quarantine",
        "a required consent flag written as a word no parser reads as true or false",
        _broken("email_consent", _choice(["maybe", "ja", "opted"]), "contacts"),
        formats=CSV_ONLY,
    ),
    _k(
        "invalid_age_band",
        "contacts",
        "age_band",
        "invalid_enum",
        "finding",
        "an age band outside the contract's list (optional: nulled, the contact loads)",
        _broken("age_band", _choice(["17-23", "unknown", "35+"]), "contacts"),
    ),
    _k(
        "future_consent_time",
        "contacts",
        "email_consent_at",
        "future_date",
        "finding",
        "an e-mail consent change dated 2099 (optional: nulled, the contact loads)",
        _broken("email_consent_at", _const(FUTURE_TIME, FUTURE_DT), "contacts"),
    ),
    # products
    _k(
        "missing_sku",
        "products",
        "sku",
        "missing_required",
        "quarantine",
        "a product without its SKU",
        _broken("sku", _null, "products"),
    ),
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
    _k(
        "orphaned_child",
        "orders",
        "contact_id",
        "orphan",
        "quarantine",
        "an order of a contact that was rejected (rejected_parent): the cascade",
        _child_of("orders", "contact_id"),
        placement="child",
    ),
    _k(
        "child_of_finding",
        "orders",
        "contact_id",
        "parent_finding",
        "load",
        "an order of a contact loaded with a field nulled (parent_with_finding): it loads",
        _child_of("orders", "contact_id"),
        placement="child",
    ),
    _k(
        "invalid_delivery_status",
        "orders",
        "delivery_status",
        "invalid_enum",
        "finding",
        "a delivery status outside the contract (optional: nulled, the order loads)",
        _broken("delivery_status", _choice(["in_transit", "LATE", "?"]), "orders"),
    ),
    _k(
        "negative_discount",
        "orders",
        "discount_amount",
        "out_of_range",
        "finding",
        "a negative discount (optional: nulled, the order loads)",
        _broken("discount_amount", _const("-5.00", Decimal("-5.00")), "orders"),
    ),
    _k(
        "duplicated_file",
        "orders",
        "order_id",
        "duplicate_key",
        "quarantine",
        "a part file that repeats rows already delivered (an export sent twice): every row a duplicate",
        lambda rows, rng, ids, fmt: rows,
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
    _k(
        "absurd_quantity",
        "order_items",
        "quantity",
        "out_of_range",
        "quarantine",
        "an item with a quantity of 5,000",
        _broken("quantity", _const("5000", 5000), "order_items"),
    ),
    # e-mail events
    _k(
        "malformed_line",
        "email_events",
        "campaign_id",
        "malformed_row",
        "quarantine",
        "a part file whose lines carry one field too many (an unquoted comma): they do not parse; "
        "the row is the physical line",
        _drift("email_events", _split_campaign),
        formats=CSV_ONLY,
        placement="drift_file",
    ),
    _k(
        "missing_campaign",
        "email_events",
        "campaign_id",
        "missing_required",
        "quarantine",
        "an e-mail event without its campaign",
        _broken("campaign_id", _null, "email_events"),
    ),
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
    _k(
        "satisfaction_out_of_range",
        "support_tickets",
        "satisfaction_score",
        "out_of_range",
        "finding",
        "a satisfaction score of 9 on a 1-5 scale (optional: nulled, the ticket loads)",
        _broken("satisfaction_score", _const("9", 9), "support_tickets"),
    ),
    _k(
        "invalid_category",
        "support_tickets",
        "category",
        "invalid_enum",
        "quarantine",
        "a ticket category outside the contract",
        _broken("category", _choice(["complaint", "Refund", "other"]), "support_tickets"),
    ),
    # consents
    _k(
        "missing_source",
        "consents",
        "source",
        "missing_required",
        "quarantine",
        "a consent without where it was given",
        _broken("source", _null, "consents"),
    ),
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
