"""The canonical CRM contract: every entity Clarion reads, its columns, types, keys and allowed values.

Written down once. The synthetic generator emits exactly this shape, sources map their columns onto
it, and extraction checks rows against it (rows that break it are quarantined with a reason).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa

ColumnType = Literal["int", "decimal", "string", "bool", "date", "timestamp"]

ARROW_TYPES: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "decimal": pa.decimal128(14, 2),
    "string": pa.string(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("s", tz="UTC"),
}
POSTGRES_TYPES: dict[str, str] = {
    "int": "bigint",
    "decimal": "numeric(14,2)",
    "string": "text",
    "bool": "boolean",
    "date": "date",
    "timestamp": "timestamptz",
}

COUNTRIES = ("GB", "DE", "FR", "US", "NL", "ES", "IT", "SE", "IE", "BE")
CURRENCIES = ("EUR", "GBP", "USD", "SEK")
ORDER_STATUSES = ("completed", "returned", "cancelled")
ORDER_CHANNELS = ("web", "app", "store", "phone")
DELIVERY_STATUSES = ("on_time", "late", "lost", "not_shipped")
# `control`: enrolled in the campaign's control group, never sent (ESPs such as Braze record the
# enrolment as an event). A customer is exposed to a campaign at their first `sent` (treatment) or
# `control` (control group) event of it.
EMAIL_EVENT_TYPES = ("sent", "open", "click", "unsubscribe", "bounce", "control")
TICKET_CHANNELS = ("email", "chat", "phone")
TICKET_CATEGORIES = ("delivery", "refund", "product", "account", "billing")
TICKET_STATUSES = ("open", "closed")
CONSENT_CHANNELS = ("email", "sms", "all")
CONSENT_EVENTS = ("opt_in", "opt_out", "objection")
CONSENT_SOURCES = (
    "checkout",
    "web_form",
    "preference_center",
    "import",
    "in_store",
    "unsubscribe_link",
    "email_reply",
    "phone",
)
LAWFUL_BASES = ("consent", "legitimate_interest")
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
PRODUCT_CATEGORIES = (
    "apparel",
    "footwear",
    "accessories",
    "home",
    "beauty",
    "outdoor",
    "electronics",
    "kids",
)

MAX_TEXT_CHARS = 20_000  # longer free text is a defect (a pasted log, an attachment inlined)
MAX_AMOUNT = 999_999.99  # one order or line above this is a data error, not a sale
AMOUNT = {"minimum": 0.0, "maximum": MAX_AMOUNT}


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    required: bool = False
    enum: tuple[str, ...] | None = None
    pii: bool = False  # never in prompts, reports or logs
    free_text: bool = False  # may carry PII and prompt injections: never reaches a prompt
    minimum: float | None = None  # impossible values below / above these are out_of_range
    maximum: float | None = None
    doc: str = ""


@dataclass(frozen=True)
class Entity:
    name: str
    primary_key: str
    cursor: str  # the column an incremental load follows
    columns: tuple[Column, ...]
    parents: dict[str, str] = field(default_factory=dict)  # foreign key column -> parent entity
    doc: str = ""
    # keep the versions a newer row replaces in raw.<name>_history: features as of a past day must
    # see the state known then (an order returned later was not returned on that day)
    keeps_history: bool = False

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")

    def arrow_schema(self) -> pa.Schema:
        """Storage types. Every field is nullable: a source may send a null anywhere, and "required"
        is a rule extraction checks (quarantining the row), not something a file can promise."""
        return pa.schema([pa.field(c.name, ARROW_TYPES[c.type]) for c in self.columns])


def _c(name: str, type_: ColumnType, **kw) -> Column:
    return Column(name, type_, **kw)


ENTITIES: dict[str, Entity] = {
    e.name: e
    for e in (
        Entity(
            "contacts",
            primary_key="contact_id",
            cursor="updated_at",
            doc="People in the CRM, with their consent state per channel.",
            columns=(
                _c("contact_id", "int", required=True),
                _c("first_name", "string", pii=True),
                _c("last_name", "string", pii=True),
                _c("email", "string", pii=True),
                _c("phone", "string", pii=True),
                _c("country", "string", enum=COUNTRIES, doc="ISO 3166 alpha-2; unknown for derived contacts"),
                _c("signup_date", "date", required=True),
                _c("email_consent", "bool", required=True, doc="may we send marketing e-mail now"),
                _c("email_consent_at", "timestamp", doc="when the e-mail consent last changed"),
                _c("email_consent_source", "string", enum=CONSENT_SOURCES),
                _c("email_lawful_basis", "string", enum=LAWFUL_BASES),
                _c("sms_consent", "bool", required=True),
                _c("sms_consent_at", "timestamp"),
                _c("sms_consent_source", "string", enum=CONSENT_SOURCES),
                _c("sms_lawful_basis", "string", enum=LAWFUL_BASES),
                _c("marketing_objection", "bool", required=True, doc="objected to direct marketing"),
                _c("age_band", "string", enum=AGE_BANDS, doc="protected attribute: fairness checks only"),
                _c("updated_at", "timestamp", required=True),
            ),
        ),
        Entity(
            "products",
            primary_key="product_id",
            cursor="updated_at",
            doc="The catalogue; prices in EUR.",
            columns=(
                _c("product_id", "int", required=True),
                _c("sku", "string", required=True),
                _c("name", "string", required=True),
                _c("category", "string", required=True, enum=PRODUCT_CATEGORIES),
                _c("price", "decimal", required=True, **AMOUNT),
                _c("currency", "string", required=True, enum=CURRENCIES),
                _c("active", "bool", required=True),
                _c("updated_at", "timestamp", required=True),
            ),
        ),
        Entity(
            "orders",
            primary_key="order_id",
            cursor="updated_at",
            parents={"contact_id": "contacts"},
            keeps_history=True,
            doc="One row per order; amounts in the order's currency.",
            columns=(
                _c("order_id", "int", required=True),
                _c("contact_id", "int", required=True),
                _c("ordered_at", "timestamp", required=True),
                _c("status", "string", required=True, enum=ORDER_STATUSES),
                _c("channel", "string", enum=ORDER_CHANNELS),
                _c("currency", "string", required=True, enum=CURRENCIES),
                _c("subtotal_amount", "decimal", **AMOUNT),
                _c("discount_amount", "decimal", **AMOUNT),
                _c("total_amount", "decimal", required=True, **AMOUNT),
                _c("discount_code", "string"),
                _c("delivery_status", "string", enum=DELIVERY_STATUSES),
                _c("updated_at", "timestamp", required=True),
            ),
        ),
        Entity(
            "order_items",
            primary_key="order_item_id",
            cursor="updated_at",
            parents={"order_id": "orders", "product_id": "products"},
            columns=(
                _c("order_item_id", "int", required=True),
                _c("order_id", "int", required=True),
                _c("product_id", "int", required=True),
                _c("quantity", "int", required=True, minimum=1, maximum=1000),
                _c("unit_price", "decimal", required=True, **AMOUNT),
                _c("line_amount", "decimal", required=True, **AMOUNT),
                _c("updated_at", "timestamp", required=True),
            ),
        ),
        Entity(
            "email_events",
            primary_key="event_id",
            cursor="occurred_at",
            parents={"contact_id": "contacts"},
            doc="Marketing e-mail sends and reactions, and control-group enrolments, one row per event.",
            columns=(
                _c("event_id", "int", required=True),
                _c("contact_id", "int", required=True),
                _c("campaign_id", "string", required=True),
                _c(
                    "event_type",
                    "string",
                    required=True,
                    enum=EMAIL_EVENT_TYPES,
                    doc="control: enrolled in the campaign's control group, never sent",
                ),
                _c("occurred_at", "timestamp", required=True),
                _c(
                    "variant_id",
                    "string",
                    doc="the variant sent (A/B test); empty for campaigns without variants and for "
                    "control enrolments. Optional: exports without it still load",
                ),
            ),
        ),
        Entity(
            "support_tickets",
            primary_key="ticket_id",
            cursor="updated_at",
            parents={"contact_id": "contacts"},
            keeps_history=True,
            doc="Customer service tickets. subject/body are free text: they carry PII and injections.",
            columns=(
                _c("ticket_id", "int", required=True),
                _c("contact_id", "int", required=True),
                _c("created_at", "timestamp", required=True),
                _c("channel", "string", required=True, enum=TICKET_CHANNELS),
                _c("category", "string", required=True, enum=TICKET_CATEGORIES),
                _c("status", "string", required=True, enum=TICKET_STATUSES),
                _c("subject", "string", pii=True, free_text=True),
                _c("body", "string", pii=True, free_text=True),
                _c("satisfaction_score", "int", minimum=1, maximum=5, doc="1-5, when the customer answered"),
                _c("updated_at", "timestamp", required=True),
            ),
        ),
        Entity(
            "consents",
            primary_key="consent_id",
            cursor="recorded_at",
            parents={"contact_id": "contacts"},
            doc="The consent log: every opt-in, opt-out and objection with its source and basis.",
            columns=(
                _c("consent_id", "int", required=True),
                _c("contact_id", "int", required=True),
                _c("channel", "string", required=True, enum=CONSENT_CHANNELS),
                _c("event", "string", required=True, enum=CONSENT_EVENTS),
                _c("recorded_at", "timestamp", required=True),
                _c("source", "string", required=True, enum=CONSENT_SOURCES),
                _c("lawful_basis", "string", enum=LAWFUL_BASES),
            ),
        ),
    )
}


def load_order() -> list[str]:
    """Entities with every parent before its children, so foreign keys can be checked on publish."""
    ordered: list[str] = []
    pending = dict(ENTITIES)
    while pending:
        ready = [n for n, e in pending.items() if all(p in ordered for p in e.parents.values())]
        if not ready:
            raise ValueError(f"cyclic parents among {sorted(pending)}")
        for name in ready:
            ordered.append(name)
            del pending[name]
    return ordered
