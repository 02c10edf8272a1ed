"""Which file is which entity, and how its columns become the contract's: a proposal with confidences.

Each file is classified from the roles of its columns (clarion.onboard.roles): an orders export one
row per order or per line item, a customers file, a payments file. Then a recipe for the combination
found writes the entities' settings: a plain column mapping (``columns:``, ``values:``, formats,
``defaults:``) where the file has the entity's shape, a ``sql:`` mapping where rows must be joined,
grouped or derived (contacts from the e-mails of an orders export, order amounts from payments in
cents, an order per invoice). What the profile cannot settle becomes a question, never a silent guess.
"""

from __future__ import annotations

from clarion.onboard import roles as r
from clarion.onboard.lines import invoice_lines, order_lines
from clarion.onboard.plan import (  # noqa: F401  (Key, FileRole: the proposal's pieces, imported from here)
    SEP,
    EntityPlan,
    FileRole,
    Key,
    Proposal,
    country_sql,
    currency,
    date_question,
    default_keys,
    sql_key,
    status_map,
)
from clarion.onboard.profile import ColumnProfile, FileProfile
from clarion.onboard.roles import find, lit, txt


def _lines(p: FileProfile, key: ColumnProfile) -> bool:
    """Whether the key repeats: several rows per order (line items, invoice lines)."""
    # distinct values are counted on the sample (the first rows): compare with the rows sampled,
    # not the whole file (a 250,000-row orders file has 50,000 distinct ids in a 50,000-row sample)
    return key.distinct < p.sampled * (1 - key.null_rate) - 0.5


def classify(p: FileProfile) -> tuple[str, float, str, dict[str, tuple[ColumnProfile, r.Role]]]:
    """(role, confidence, reason, the columns found per role) of one file."""
    found = {role: hit for role in _ROLES if (hit := find(p.columns, role)) is not None}
    if "order_id" not in found and "id" in found and "order" in p.table:
        found["order_id"] = found["id"]
    has = found.__contains__
    if has("order_ref") and (has("amount_cents") or has("total")) and not has("order_id"):
        return "payments", 0.85, "amounts per order reference, no order number of its own", found
    if has("order_id") and has("when") and (has("customer_id") or has("email")):
        key = found["order_id"][0]
        if _lines(p, key):
            if has("total"):
                return (
                    "order_lines",
                    0.85,
                    f"several rows per {key.name} (line items), a total per order",
                    found,
                )
            if has("quantity") and has("unit_price"):
                return "invoice_lines", 0.85, f"several rows per {key.name}, quantity x unit price", found
            return "unknown", 0.3, f"several rows per {key.name} but no amount", found
        return "orders", 0.9, f"one row per {key.name} with a customer, a date and a status", found
    key = found.get("id") or found.get("customer_id")
    if key and has("email") and not has("total") and not has("amount_cents"):
        return "contacts", 0.85, f"one row per {key[0].name} with an e-mail", found
    return "unknown", 0.0, "no order, customer or payment columns recognised", found


_ROLES = (
    "email", "currency", "country", "country_name", "when", "status", "amount_cents", "total", "subtotal",
    "discount", "discount_code", "quantity", "unit_price", "customer_id", "order_id", "order_ref", "id",
    "first_name", "last_name",
)  # fmt: skip


def propose_files(profiles: list[FileProfile], folder: str, source_name: str) -> Proposal:
    prop = Proposal("files", source_name, folder, profiles)
    kinds: dict[str, list[tuple[FileProfile, dict]]] = {}
    for p in profiles:
        role, conf, reason, found = classify(p)
        prop.files.append(FileRole(p.path, role, conf, reason))
        kinds.setdefault(role, []).append((p, found))
        if role == "unknown":
            prop.questions.append(f"{p.path}: not used ({reason}); what does it hold?")
    for role, items in kinds.items():
        if role != "unknown" and len(items) > 1:
            names = ", ".join(p.path for p, _ in items)
            prop.questions.append(f"{names} all look like {role}; only {items[0][0].path} is used")
    orders = next(iter(kinds.get("orders", [])), None)
    if lines := next(iter(kinds.get("order_lines", [])), None):
        order_lines(prop, *lines)
    elif inv := next(iter(kinds.get("invoice_lines", [])), None):
        invoice_lines(prop, *inv)
    elif orders is not None:
        contacts = next(iter(kinds.get("contacts", [])), None)
        payments = next(iter(kinds.get("payments", [])), None)
        _orders(prop, *orders, payments=payments)
        _contacts(prop, orders, contacts)
    elif contacts := next(iter(kinds.get("contacts", [])), None):
        prop.questions.append("no orders file found: Clarion needs orders to score customers")
        _contacts(prop, None, contacts)
    else:
        prop.questions.append("no file looks like orders or customers: map them by hand (docs/onboarding.md)")
    # contacts without consent columns need no default: the extract loads them with consent
    # unknown (no content goes to them) and its summary says how many
    return prop


def _orders(prop: Proposal, p: FileProfile, found: dict, payments: tuple | None) -> None:
    key, when = found["order_id"][0], found["when"][0]
    plan = EntityPlan("orders", 0.9, f"{p.path}: one row per {key.name}")
    if "total" not in found and payments is not None:
        pp, pf = payments
        ref, t = pf["order_ref"][0], r.clean(p.table)
        if "amount_cents" in pf:
            amount, unit = (
                f"sum(try_cast({txt(pf['amount_cents'][0].name)} as bigint)){{paid}} / 100",
                "cents / 100",
            )
        else:
            amount, unit = f"sum(try_cast({txt(pf['total'][0].name)} as decimal(14,2))){{paid}}", "amounts"
        paid = ""
        if "status" in pf:
            scol = pf["status"][0]
            words = [v for v in scol.values or [] if v.lower() in r.PAID_WORDS]
            paid = f" filter (where {txt(scol.name)} in ({', '.join(map(lit, words))}))" if words else ""
            unit += f" of payments {', '.join(words)}" if words else ""
        amount = amount.format(paid=paid)
        cur = f"max({txt(pf['currency'][0].name)})" if "currency" in pf else "'EUR'"
        ckey = None
        if "currency" not in pf and "currency" not in found:
            ckey = Key(None)
            prop.ask(ckey, f"{pp.path}: no currency column; EUR assumed")
        mapping, skey = status_map(prop, found["status"][0], f"{p.path} {found['status'][0].name}")
        status = r.status_case(txt(found["status"][0].name), mapping)
        cust = found.get("customer_id")
        customer = r.int_id(txt(cust[0].name)) if cust else r.email_key(txt(found["email"][0].name))
        sql = (
            f"select {r.int_id(txt(key.name))} as order_id,\n"
            f"       {customer} as contact_id,\n"
            f"       {r.when(when)} as ordered_at,\n       {status} as status,\n"
            f"       coalesce(pay._currency, 'EUR') as currency,\n"
            f"       cast(coalesce(pay._amount, 0) as decimal(14,2)) as total_amount\n"
            f"from {t}\nleft join (select {r.int_id(txt(ref.name))} as _order, {amount} as _amount,\n"
            f"                 {cur} as _currency\n          from {r.clean(pp.table)} group by 1) pay\n"
            f"  on pay._order = {r.int_id(txt(key.name))}"
        )
        ev = f"total = {unit} from {pp.path} ({ref.name}); status {skey.evidence}"
        plan.keys = {"sql": sql_key(prop, sql, 0.8, ev, skey, ckey), "defaults": default_keys()}
        plan.reason += f"; amounts from {pp.path}"
        prop.entities.append(plan)
        return
    targets = {"order_id": key, "ordered_at": when}
    for role, out in (("customer_id", "contact_id"), ("status", "status"), ("currency", "currency"),
                      ("total", "total_amount"), ("subtotal", "subtotal_amount"),
                      ("discount", "discount_amount"), ("discount_code", "discount_code")):  # fmt: skip
        if role in found:
            targets[out] = found[role][0]
    columns = {}
    for out, col in targets.items():
        conf = next((x.confidence for x in r.roles(col)), 0.7)
        ev = next((x.evidence for x in r.roles(col)), "named like it")
        columns[col.name] = Key(out, conf, ev)
    keys: dict[str, Key] = {"files": Key([p.path], 0.9, plan.reason)}
    if p.delimiter and p.delimiter != ",":
        keys["delimiter"] = Key(p.delimiter, 0.95, f"every line of the sample splits on {p.delimiter!r}")
    if p.encoding and p.encoding != "utf-8":
        keys["encoding"] = Key(p.encoding, 0.8, "the bytes are not UTF-8")
    keys["columns"] = Key(columns)
    if when.date_format:
        fmt_key = "date_format" if when.type == "date" else "timestamp_format"
        keys[fmt_key] = Key(when.date_format, 0.9, f"every {when.name} parses with it")
        date_question(prop, keys[fmt_key], when)
    if "status" in found:
        mapping, skey = status_map(prop, found["status"][0], f"{p.path} {found['status'][0].name}")
        changed = {k: Key(v) for k, v in mapping.items() if k != v}
        if changed:
            keys["values"] = Key({"status": Key(changed, skey.confidence, skey.evidence, skey.question)})
    defaults = default_keys()
    if "currency" not in found:
        defaults.value["currency"] = Key("EUR")
        prop.ask(defaults.value["currency"], f"{p.path}: no currency column; EUR assumed")
    if "total" not in found:
        prop.questions.append(
            f"{p.path}: no order amount found (a total column, or payments); add total_amount"
        )
    keys["defaults"] = defaults
    plan.keys = keys
    prop.entities.append(plan)


def _contacts(prop: Proposal, orders: tuple | None, contacts: tuple | None) -> None:
    """Contacts from a customer file (signup = first order when it has no date), else from orders."""
    if contacts is not None:
        cp, cf = contacts
        key = (cf.get("id") or cf["customer_id"])[0]
        email = cf["email"][0]
        cols = [f"{r.int_id(txt(key.name))} as contact_id", f"lower({txt(email.name)}) as email"]
        for role in ("first_name", "last_name"):
            if role in cf:
                cols.append(f"{txt(cf[role][0].name)} as {role}")
        if (country := country_sql(cf)) is not None:
            cols.append(f"{country} as country")
        plan = EntityPlan("contacts", 0.85, f"{cp.path}: one row per {key.name} with an e-mail")
        if orders is not None:
            op, of = orders
            when, okey = of["when"][0], of.get("customer_id")
            if okey is None:
                prop.questions.append(f"{op.path}: no customer column to find each customer's first order")
                return
            cols.append("fo.signup_date")
            sql = (
                f"select {SEP.join(cols)}\nfrom {r.clean(cp.table)}\n"
                f"left join (select {r.int_id(txt(okey[0].name))} as customer,\n"
                f"                  min({r.utc_date(r.when(when), when)}) as signup_date\n"
                f"           from {r.clean(op.table)} group by 1) fo\n"
                f"  on fo.customer = {r.int_id(txt(key.name))}"
            )
            ev = f"{cp.path} has no signup date: signup = first order date in {op.path}"
            if key.has("float_written", 0.001):
                ev += (
                    f"; {key.patterns['float_written']:.0%} of {key.name} written as floats (12402.0 = 12402)"
                )
            plan.keys = {"sql": sql_key(prop, sql, 0.8, ev), "defaults": default_keys()}
            plan.keys["sql"].evidence += "; customers without orders have no signup date and are quarantined"
        else:
            plan.keys = {
                "sql": sql_key(prop, f"select {', '.join(cols)} from {r.clean(cp.table)}", 0.6, "no orders")
            }
            prop.ask(plan.keys["sql"], f"{cp.path}: no signup date and no orders to derive it from")
        prop.entities.insert(0, plan)
        return
    op, of = orders
    cust, when = of.get("customer_id"), of["when"][0]
    if cust is None:
        prop.questions.append(f"{op.path}: no customer id column; contacts cannot be derived")
        return
    cols = [f"{r.int_id(txt(cust[0].name))} as contact_id"]
    if "email" in of:
        cols.append(f"lower(max({txt(of['email'][0].name)})) as email")
    if (country := country_sql(of)) is not None:
        cols.append(f"max({country}) as country")
    cols.append(f"min({r.utc_date(r.when(when), when)}) as signup_date")
    sql = f"select {SEP.join(cols)}\nfrom {r.clean(op.table)}\ngroup by 1"
    plan = EntityPlan("contacts", 0.8, f"{op.path}: no customer file; one contact per {cust[0].name}")
    plan.keys = {
        "sql": sql_key(prop, sql, 0.8, f"one contact per {cust[0].name}; signup = first order date"),
        "defaults": default_keys(),
    }
    prop.entities.insert(0, plan)
