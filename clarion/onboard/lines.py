"""Recipes for one-file exports with several rows per order: Shopify-style line items (order fields
on an order's first row, customers are e-mails) and invoice lines (C-prefixed cancellations,
negative quantities as returns). Both give contacts and orders by `sql:` mappings."""

from __future__ import annotations

from clarion.onboard import roles as r
from clarion.onboard.plan import (
    SEP,
    EntityPlan,
    Proposal,
    country_sql,
    currency,
    default_keys,
    sql_key,
    status_map,
)
from clarion.onboard.profile import FileProfile
from clarion.onboard.roles import txt


def order_lines(prop: Proposal, p: FileProfile, found: dict) -> None:
    """Shopify-style: one row per line item, order fields on the first row; customers are e-mails."""
    key, email, when = found["order_id"][0], found["email"][0], found["when"][0]
    t = r.clean(p.table)
    mapping, skey = status_map(prop, found["status"][0], f"{p.path} {found['status'][0].name}")
    status = r.status_case(f"max({txt(found['status'][0].name)})", mapping)
    cur, ckey = currency(prop, found, p.path)
    cols = [
        f"{r.any_id(f'min({txt(key.name)})')} as order_id",
        f"min({txt(key.name)}) as source_order_id",
        f"{r.email_key(f'max({txt(email.name)})')} as contact_id",
        f"min({r.when(when)}) as ordered_at",
        f"{status} as status",
        f"{cur} as currency",
        f"{r.money('max(' + txt(found['total'][0].name) + ')')} as total_amount",
    ]
    for role, out in (("subtotal", "subtotal_amount"), ("discount", "discount_amount")):
        if role in found:
            cols.append(f"{r.money(f'max({txt(found[role][0].name)})')} as {out}")
    if "discount_code" in found:
        cols.append(f"max({txt(found['discount_code'][0].name)}) as discount_code")
    orders = f"select {SEP.join(cols)}\nfrom {t}\ngroup by {txt(key.name)}"
    ev = f"{p.path}: one order per {key.name}, order fields from its first row; status {skey.evidence}"
    plan = EntityPlan("orders", 0.85, f"{p.path}: {key.name} groups the line items of one order")
    plan.keys = {"sql": sql_key(prop, orders, 0.85, ev, skey, ckey), "defaults": default_keys()}
    country = country_sql(found)
    country_out = SEP + "max(country) as country" if country else ""
    contacts = (
        f"select {r.email_key('email')} as contact_id, email,\n"
        f"       min(signup_date) as signup_date{country_out}\n"
        f"from (select lower({txt(email.name)}) as email, "
        f"{r.utc_date(r.when(when), when)} as signup_date{f', {country} as country' if country else ''}\n"
        f"      from {t}) where email is not null\ngroup by email"
    )
    cplan = EntityPlan("contacts", 0.8, f"{p.path}: no customer file; a customer is an e-mail ({email.name})")
    cplan.keys = {
        "sql": sql_key(
            prop, contacts, 0.8, f"one contact per distinct {email.name}; signup = first order date"
        ),
        "defaults": default_keys(),
    }
    prop.entities += [cplan, plan]


def invoice_lines(prop: Proposal, p: FileProfile, found: dict) -> None:
    """Online-Retail-style invoice lines: one order per invoice; C-prefix cancels, negative returns."""
    key, cust, when = found["order_id"][0], found["customer_id"][0], found["when"][0]
    qty, price, t = found["quantity"][0], found["unit_price"][0], r.clean(p.table)
    inv = txt(key.name)
    amount = f"try_cast({txt(qty.name)} as decimal(18,4)) * try_cast({txt(price.name)} as decimal(18,4))"
    status_ev = []
    arms = []
    if key.has("letter_prefixed", 0.001):
        arms.append(f"WHEN {inv} LIKE 'C%' THEN 'cancelled'")
        status_ev.append(
            f"{key.patterns['letter_prefixed']:.0%} of {key.name} start with a letter (C = cancellation)"
        )
    if qty.negative:
        arms.append(f"WHEN min(try_cast({txt(qty.name)} as bigint)) < 0 THEN 'returned'")
        status_ev.append(f"some {qty.name} are negative (returns)")
    status = f"CASE {' '.join(arms)} ELSE 'completed' END" if arms else "'completed'"
    cur, ckey = currency(prop, found, p.path)
    orders = (
        f"select {r.any_id(inv)} as order_id, {inv} as source_order_id,\n"
        f"       {r.int_id(f'max({txt(cust.name)})')} as contact_id,\n"
        f"       min({r.when(when)}) as ordered_at,\n"
        f"       {status} as status,\n       {cur} as currency,\n"
        f"       cast(abs(sum({amount})) as decimal(14,2)) as total_amount\n"
        f"from {t}\ngroup by {inv}"
    )
    plan = EntityPlan("orders", 0.85, f"{p.path}: one order per {key.name}")
    plan.keys = {
        "sql": sql_key(prop, orders, 0.85, "; ".join(status_ev) or "one order per invoice", ckey),
        "defaults": default_keys(),
    }
    if cust.null_rate > 0:
        why = f"{cust.null_rate:.0%} of rows have no {cust.name}: their orders are quarantined (no contact)"
        plan.keys["sql"].evidence += f"; {why}"
    country = country_sql(found)
    country_out = f"{SEP}max({country}) as country" if country else ""
    contacts = (
        f"select {r.int_id(txt(cust.name))} as contact_id,\n"
        f"       min({r.utc_date(r.when(when), when)}) as signup_date"
        f"{country_out}\n"
        f"from {t}\nwhere {txt(cust.name)} is not null\ngroup by 1"
    )
    cplan = EntityPlan("contacts", 0.8, f"{p.path}: no customer file; customers are {cust.name}")
    cplan.keys = {
        "sql": sql_key(prop, contacts, 0.8, f"one contact per {cust.name}; signup = first invoice date"),
        "defaults": default_keys(),
    }
    prop.entities += [cplan, plan]
