"""A transactions-only export (customer, date, amount, ...) is enough to run Clarion.

The file is checked like any entity (quarantine with reasons), then contacts and orders are derived
in the same transaction: one contact per customer not already known (no consent, so no content is
ever sent to them until a real CRM says otherwise), one order per transaction or per order id.
Derived order ids come from the purchase's identity (see ``_purchase_id``), so loading the same
history twice, a re-sorted copy of it, or two exports that overlap gives the same orders, and a later
file that corrects an amount replaces the order. A customer id that is not a number ("K-1042") gets a
stable numeric id derived from its text; the original stays on the contact as source_customer_id.
"""

from __future__ import annotations

import duckdb

from clarion.contract import AMOUNT, CURRENCIES, ENTITIES, ORDER_STATUSES, Column, Entity
from clarion.extract.accounting import account
from clarion.extract.contract_sql import DUCKDB_TYPES, FILE, SEQ, id_key, lit, q, typed
from clarion.extract.publish import (
    PublishJob,
    PublishResult,
    check_and_quarantine,
    merge_fresh,
    new_result,
    transaction,
)
from clarion.subject.correct import apply_to_load

TRANSACTIONS = Entity(
    "transactions",
    primary_key="order_id",
    cursor="ordered_at",
    doc="One purchase per row. Only customer, date and amount are required.",
    columns=(
        Column("contact_id", "string", required=True, doc="the customer's id in the shop: a number or text"),
        Column("ordered_at", "timestamp", required=True, doc="a date or a timestamp"),
        Column("total_amount", "decimal", required=True, **AMOUNT),
        Column("order_id", "int", doc="rows sharing an order id are one order"),
        Column("currency", "string", enum=CURRENCIES),
        Column("status", "string", enum=ORDER_STATUSES),
        Column("quantity", "int", minimum=1, maximum=1000),
        Column("product_id", "int"),
    ),
)
SOURCE_ID = "source_customer_id"


def publish_transactions(
    con: duckdb.DuckDBPyConnection, job: PublishJob, currency: str
) -> list[PublishResult]:
    with transaction(con):
        tx = new_result(job)
        landed = check_and_quarantine(con, job, tx)
        results = [tx]
        valid = 0
        if landed is not None:
            valid = con.execute("create temp table __valid as select * from __winners").fetchone()[0]
            results.append(_derive_contacts(con, job))
            overlay: list[str] = []  # corrections and objections win over the source (Art. 16, 21)
            if apply_to_load(con, overlay):
                results[-1].message = "; ".join([results[-1].message, *overlay])
            results.append(_derive_orders(con, job, currency, by_order_id="order_id" in landed))
        account(con, job, tx, loaded=valid)  # the valid transactions are what orders come from
        derived_job = PublishJob(**{**job.__dict__, "ledger": [], "notes": []})  # files: the tx row says
        for r in results[1:]:
            account(con, derived_job, r)
    return results


def contact_key(expr: str) -> str:
    """A numeric contact id from the shop's customer id: the number itself (``12402`` and a
    spreadsheet's ``12402.0`` are one customer), or a stable hash of the text, as a contacts file's
    id is read (:func:`clarion.extract.contract_sql.id_key`): one customer in both files is one contact."""
    return id_key(expr, any_text=True)


def _fresh(
    con: duckdb.DuckDBPyConnection,
    entity: Entity,
    values: dict[str, str],
    source_sql: str,
    job: PublishJob,
    extras: dict[str, str] | None = None,
) -> None:
    cols = [
        f"cast({values.get(c.name, 'null')} as {DUCKDB_TYPES[c.type]}) as {q(c.name)}" for c in entity.columns
    ]
    cols += [f"cast({expr} as varchar) as {q(name)}" for name, expr in (extras or {}).items()]
    hashed = ", ".join(q(c) for c in entity.column_names)
    con.execute("drop table if exists temp.__fresh")
    con.execute(
        f"""
        create temp table __fresh as
        select *, {lit(job.source)} as _source, {lit(job.load_id)} as _load_id, now() as _loaded_at,
               hash({hashed}) as _row_hash
        from (select {", ".join(cols)} from ({source_sql}))
        """
    )


def _derive_contacts(con: duckdb.DuckDBPyConnection, job: PublishJob) -> PublishResult:
    contacts = ENTITIES["contacts"]
    source_sql = f"""
        select {contact_key(typed("contact_id"))} as contact_id, min({typed("contact_id")}) as source_id,
               min({typed("ordered_at")}) as first_order
        from __valid group by 1
    """
    values = {
        "contact_id": "contact_id",
        "signup_date": "first_order",
        "email_consent": "false",  # no consent is known: nothing is sent until a CRM says otherwise
        "sms_consent": "false",
        "marketing_objection": "false",
        # the first purchase, so any real CRM record (always later) updates the derived one
        "updated_at": "first_order",
    }
    _fresh(con, contacts, values, source_sql, job, extras={SOURCE_ID: "source_id"})
    result = PublishResult(job.source, "contacts", job.load_id, message="derived from transactions")
    (result.read,) = con.execute("select count(*) from __fresh").fetchone()
    merge_fresh(con, contacts, result, [SOURCE_ID], insert_only=True)
    return result


def _derive_orders(
    con: duckdb.DuckDBPyConnection, job: PublishJob, currency: str, by_order_id: bool
) -> PublishResult:
    """One order per purchase. A purchase met in several files of a load (overlapping exports, or a
    later file correcting an amount) is taken from the latest file, as a later load would replace it."""
    orders = ENTITIES["orders"]
    customer = contact_key(typed("contact_id"))
    one_per_row = f"""
        select {_purchase_id()} as order_id, {customer} as contact_id, {typed("ordered_at")} as ordered_at,
               {typed("total_amount")} as total, {typed("currency")} as currency, {typed("status")} as status,
               {q(SEQ)} as seq
        from __valid
    """
    if by_order_id:  # the lines of an order are the rows with its id in the latest file that has it
        candidates = f"""
            select {typed("order_id")} as order_id, arg_min({customer}, {q(SEQ)}) as contact_id,
                   min({typed("ordered_at")}) as ordered_at, sum({typed("total_amount")}) as total,
                   max({typed("currency")}) as currency, max({typed("status")}) as status,
                   max({q(SEQ)}) as seq
            from __valid where {typed("order_id")} is not null group by 1, {q(FILE)}
            union all
            {one_per_row} where {typed("order_id")} is null
        """
    else:
        candidates = one_per_row
    latest = "row_number() over (partition by order_id order by seq desc)"
    values = {
        "order_id": "order_id",
        "contact_id": "contact_id",
        "ordered_at": "ordered_at",
        "status": "coalesce(status, 'completed')",
        "currency": f"coalesce(currency, {lit(currency)})",
        "subtotal_amount": "total",
        "discount_amount": "0",
        "total_amount": "total",
        "updated_at": "ordered_at",
    }
    _fresh(con, orders, values, f"select * from ({candidates}) qualify {latest} = 1", job)
    result = PublishResult(job.source, "orders", job.load_id, message="derived from transactions")
    (result.read,) = con.execute(f"select count(*) from ({candidates})").fetchone()
    # the same purchase from an earlier file of this load: replaced by the latest file's version
    (result.superseded,) = con.execute(
        f"select count(*) from (select * from ({candidates}) qualify {latest} > 1)"
    ).fetchone()
    merge_fresh(con, orders, result, [], insert_only=False)
    return result


IDENTITY = ("contact_id", "ordered_at", "product_id", "quantity")


def _purchase_id() -> str:
    """A stable order id from the purchase's identity: customer, time, product and quantity, and,
    among the purchases of one file with that identity, its place when they are ordered by amount.
    The amount is not part of the identity, so a later file that corrects it replaces the order; the
    file is not either, so the same purchase in two files is one order."""
    identity = ", ".join(typed(c) for c in IDENTITY)
    nth = f"row_number() over (partition by {identity}, {q(FILE)} order by {typed('total_amount')}, {q(SEQ)})"
    return f"cast(hash({identity}, {nth}) >> 1 as bigint)"
