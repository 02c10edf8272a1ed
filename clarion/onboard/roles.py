"""What a profiled column is (its role: e-mail, order number, order date, status...) and the SQL
expressions the proposals use to turn an export's values into the contract's.

A role comes from the column's name and its values together, with a confidence and the evidence in
words (written next to the key in clarion.yaml). Status words are mapped with a vocabulary; words it
does not know, or knows to be unclear (``pending``), become questions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from clarion.contract import COUNTRIES
from clarion.onboard.profile import ColumnProfile

# export status word (lower case, "wc-" prefix dropped) -> contract order status
STATUS_WORDS = {
    **dict.fromkeys(
        ("paid", "complete", "completed", "succeeded", "success", "fulfilled", "delivered", "shipped"),
        "completed",
    ),
    **dict.fromkeys(("refunded", "refund", "returned", "return", "partially_refunded"), "returned"),
    **dict.fromkeys(("voided", "void", "cancelled", "canceled", "failed", "declined"), "cancelled"),
}
UNCLEAR_STATUS = {"pending", "processing", "on-hold", "on_hold", "authorized", "partially_paid", "open"}
PAID_WORDS = {"succeeded", "success", "paid", "captured", "complete", "completed", "settled"}


@dataclass(frozen=True)
class Role:
    role: str
    confidence: float
    evidence: str


def norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _words(name: str) -> set[str]:
    n = norm(name)
    return set(n.split("_")) | {n}


def roles(col: ColumnProfile) -> list[Role]:
    """Every role the column could play, best first."""
    w, n, out = _words(col.name), norm(col.name), []
    if col.has("email", 0.9):
        out.append(Role("email", 0.95, f"{col.patterns['email']:.0%} of values look like e-mails"))
    if col.has("currency_code", 0.98):
        out.append(Role("currency", 0.95, "every value is an ISO currency code"))
    if col.has("iso2", 0.98) and ("country" in n or col.enum_like):
        out.append(Role("country", 0.9, "two-letter country codes"))
    if col.has("country_name", 0.9):
        out.append(Role("country_name", 0.85, "country names (mapped to ISO codes)"))
    if col.type in ("date", "timestamp"):
        conf = 0.9 if w & {"created", "date", "ordered", "invoicedate", "order_date", "created_at"} else 0.5
        if w & {"paid", "updated", "modified", "shipped"}:
            conf = 0.3
        written = f"written {col.date_format}" if col.date_format else "typed by the source"
        out.append(Role("when", conf, f"{col.type}s {written}"))
    if col.has("status_like") or (col.enum_like and w & {"status", "state"}):
        conf = 0.9 if w & {"status", "state"} else 0.5
        out.append(Role("status", conf, f"{len(col.values or [])} distinct values: status-like"))
    if col.type == "int" and col.has("cents"):
        out.append(Role("amount_cents", 0.9, "whole numbers in a column named for cents"))
    if col.type in ("decimal", "int") and not col.has("cents"):
        if w & {"total", "amount"} and not w & {"discount", "tax", "shipping"}:
            out.append(Role("total", 0.9 if "total" in w else 0.7, "money values in a total/amount column"))
        if "subtotal" in w:
            out.append(Role("subtotal", 0.8, "money values in a subtotal column"))
        if "discount" in w:
            out.append(Role("discount", 0.8, "money values in a discount column"))
        if w & {"quantity", "qty"}:
            out.append(Role("quantity", 0.9, "whole numbers in a quantity column"))
        if any("price" in x for x in w):
            out.append(Role("unit_price", 0.85, "money values in a price column"))
    if "discount" in w and "code" in w:
        out.append(Role("discount_code", 0.8, "the column is named discount code"))
    idish = col.has("id_like") or col.has("whole", 1.0) or col.has("code", 1.0) or col.has("hash_number")
    if idish:
        if w & {"customer", "client", "contact", "customerid", "customer_id", "user"}:
            out.append(Role("customer_id", 0.9, "id-like values in a customer column"))
        elif w & {"order", "invoice", "invoiceno", "order_id", "order_number"} or n in ("name", "number"):
            conf = 0.9 if w & {"order", "invoice", "invoiceno"} else 0.7
            role = "order_ref" if ("order" in w and "id" in w and not col.has("id_like")) else "order_id"
            out.append(
                Role(role, conf, "order/invoice numbers" + (" (#1001)" if col.has("hash_number") else ""))
            )
        elif n == "id" and col.has("id_like"):
            out.append(Role("id", 0.8, "unique id-like values"))
    if w & {"first", "firstname", "first_name"}:
        out.append(Role("first_name", 0.8, "the column is named first name"))
    if w & {"last", "lastname", "last_name", "surname"}:
        out.append(Role("last_name", 0.8, "the column is named last name"))
    return sorted(out, key=lambda r: -r.confidence)


def find(columns: list[ColumnProfile], role: str) -> tuple[ColumnProfile, Role] | None:
    """The column that best plays ``role`` in a file."""
    best = None
    for c in columns:
        for r in roles(c):
            if r.role == role and (best is None or r.confidence > best[1].confidence):
                best = (c, r)
    return best


def map_status(values: list[str]) -> tuple[dict[str, str], list[str]]:
    """(value -> contract status, values whose meaning is unclear). Unclear ones map to completed."""
    out, unclear = {}, []
    for v in values:
        word = v.strip().lower().removeprefix("wc-")
        if word in STATUS_WORDS:
            out[v] = STATUS_WORDS[word]
        else:
            out[v] = "completed"
            unclear.append(v)
    return out, unclear


# --- SQL expressions (inputs may come typed or as text: everything goes through text) -----------


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def txt(col: str) -> str:
    """A column of a table read through :func:`clean`: trimmed text, NULL when empty."""
    return q(col)


def clean(table: str) -> str:
    """A file's table with every column as trimmed text (NULL when empty), under the table's name:
    the mapping then reads the same whether DuckDB's sniffer typed a column or not."""
    return f"(select nullif(trim(cast(columns(*) as varchar)), '') from {q(table)}) as {q(table)}"


def int_id(expr: str) -> str:
    """A whole-number id written as 12402 or 12402.0."""
    return f"try_cast(regexp_replace({expr}, '\\.0+$', '') as bigint)"


def any_id(expr: str) -> str:
    """An id that may carry letters (#1001, C536379): its number when it is one, else a stable hash."""
    bare = f"regexp_replace({expr}, '^#', '')"
    return (
        f"CASE WHEN regexp_full_match({bare}, '[0-9]+') THEN try_cast({bare} as bigint) "
        f"ELSE cast(hash({expr}) >> 1 as bigint) END"
    )


def email_key(expr: str) -> str:
    """A customer known only by e-mail: a stable number from the lower-cased address."""
    return f"cast(hash(lower({expr})) >> 1 as bigint)"


def when(col: ColumnProfile) -> str:
    """The parsed time; a column the CSV sniffer already typed (ISO text) is cast as it is."""
    if col.date_format is None:
        return f"try_cast({txt(col.name)} as timestamptz)"
    fmt = lit(col.date_format or "%Y-%m-%d %H:%M:%S")
    return f"coalesce(try_strptime({txt(col.name)}, {fmt}), try_cast({txt(col.name)} as timestamp))"


def utc_date(expr: str, col: ColumnProfile) -> str:
    """The UTC date of a parsed time (a time with an offset is converted first)."""
    if col.date_format and "%z" in col.date_format:
        return f"cast(timezone('UTC', {expr}) as date)"
    return f"cast({expr} as date)"


def money(expr: str) -> str:
    return f"try_cast({expr} as decimal(14,2))"


def status_case(expr: str, mapping: dict[str, str]) -> str:
    arms = " ".join(f"WHEN {lit(k)} THEN {lit(v)}" for k, v in mapping.items())
    return f"CASE {expr} {arms} ELSE {expr} END"


def country(expr: str, names: bool) -> str:
    """Contract countries pass; a name is mapped to its code; others load as unknown (NULL)."""
    from clarion.onboard.profile import COUNTRY_NAMES

    if names:
        arms = " ".join(f"WHEN {lit(k)} THEN {lit(v)}" for k, v in COUNTRY_NAMES.items() if v in COUNTRIES)
        return f"CASE lower({expr}) {arms} END"
    return f"CASE WHEN upper({expr}) IN ({', '.join(map(lit, COUNTRIES))}) THEN upper({expr}) END"
