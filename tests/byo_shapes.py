"""Four foreign export shapes ("bring your own CRM", issue 24; docs/onboarding.md), built from truth.

Each builder writes the files of one shape into a folder from Python lists it generates (seeded,
deterministic) and returns the :class:`Truth` computed from those lists, never from the files:
customers (key -> signup date = their first order's date, as the shapes carry no signup date),
orders (key -> customer key, contract status, total), and the rows the extract must quarantine.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

COUNTRIES = ("GB", "DE", "FR", "NL", "SE")
COUNTRY_NAMES = {"GB": "United Kingdom", "DE": "Germany", "FR": "France", "NL": "Netherlands", "SE": "Sweden"}
START = datetime(2024, 9, 2, 9, 0)  # about two years of history: enough to train on
CENT = Decimal("0.01")


@dataclass
class Truth:
    customers: dict[str, date] = field(default_factory=dict)  # customer key -> signup (first order) date
    orders: dict[str, tuple[str, str, Decimal]] = field(
        default_factory=dict
    )  # key -> (customer, status, total)
    quarantined: list[tuple[str, int, str]] = field(default_factory=list)  # (file, data row 1-based, why)
    emails: list[str] = field(default_factory=list)  # every e-mail written (PII checks)

    def per_customer(self) -> dict[str, Decimal]:
        """Sum of order totals per customer (every status)."""
        out: dict[str, Decimal] = {}
        for customer, _status, total in self.orders.values():
            out[customer] = out.get(customer, Decimal(0)) + total
        return out


def _money(rng: random.Random, low: int = 5, high: int = 200) -> Decimal:
    return Decimal(rng.randint(low * 100, high * 100)) / 100


def _write(path: Path, header: list[str], rows: list[list], delimiter: str = ",") -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)


def _plan(rng: random.Random, n_customers: int) -> list[tuple[int, list[datetime]]]:
    """Customers 0..n-1, each with 1-4 order times (increasing), all distinct across customers."""
    plan = []
    for c in range(n_customers):
        t = START + timedelta(days=rng.randint(0, 420), minutes=rng.randint(0, 600) + c)
        times = [t]
        for _ in range(rng.randint(0, 3)):
            t = t + timedelta(days=rng.randint(15, 90), minutes=rng.randint(1, 300))
            times.append(t)
        plan.append((c, times))
    return plan


def _first(orders: dict[str, tuple[datetime, str]]) -> dict[str, date]:
    out: dict[str, date] = {}
    for when, customer in orders.values():
        if customer not in out or when.date() < out[customer]:
            out[customer] = when.date()
    return out


def shopify(folder: Path, seed: int = 0, customers: int = 40) -> Truth:
    """`orders_export.csv`: one row per line item, order-level fields on an order's first row only."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    statuses = {"paid": "completed", "refunded": "returned", "voided": "cancelled", "pending": "completed"}
    truth, when_of = Truth(), {}
    rows, number = [], 1001
    for c, times in _plan(rng, customers):
        email = f"buyer{c:03d}@shop{seed}.example"
        truth.emails.append(email)
        country = COUNTRIES[c % len(COUNTRIES)]
        for t in times:
            name = f"#{number}"
            number += 1
            fin = rng.choice(list(statuses))
            lines = [
                (rng.randint(1, 3), _money(rng, 3, 60), f"SKU-{rng.randint(100, 999)}")
                for _ in range(rng.randint(1, 3))
            ]
            subtotal = sum((q * p for q, p, _ in lines), Decimal(0))
            discount = (subtotal * Decimal("0.10")).quantize(CENT) if rng.random() < 0.3 else Decimal(0)
            total = subtotal - discount
            paid_at = (t + timedelta(minutes=2)).strftime("%Y-%m-%d %H:%M:%S +0100") if fin == "paid" else ""
            for i, (q, p, sku) in enumerate(lines):
                head = i == 0
                rows.append(
                    [
                        name,
                        email if head else "",
                        fin if head else "",
                        paid_at if head else "",
                        "EUR" if head else "",
                        f"{subtotal:.2f}" if head else "",
                        ("SPRING10" if discount else "") if head else "",
                        f"{discount:.2f}" if head else "",
                        f"{total:.2f}" if head else "",
                        t.strftime("%Y-%m-%d %H:%M:%S +0100"),
                        q,
                        f"Item {sku}",
                        f"{p:.2f}",
                        sku,
                        country if head else "",
                    ]
                )
            truth.orders[name] = (email, statuses[fin], total)
            when_of[name] = (t, email)
    header = ["Name", "Email", "Financial Status", "Paid at", "Currency", "Subtotal", "Discount Code",
              "Discount Amount", "Total", "Created at", "Lineitem quantity", "Lineitem name",
              "Lineitem price", "Lineitem sku", "Billing Country"]  # fmt: skip
    _write(folder / "orders_export.csv", header, rows)
    # Created at is +0100: the contract's signup date is the UTC date of the first order
    truth.customers = {
        k: v for k, v in _first({n: (t - timedelta(hours=1), e) for n, (t, e) in when_of.items()}).items()
    }
    return truth


def woocommerce(folder: Path, seed: int = 0, customers: int = 50) -> Truth:
    """`woocommerce_orders.csv`, ';'-delimited, dd/mm/yyyy HH:MM dates, wc-* statuses."""
    rng = random.Random(seed + 1)
    folder.mkdir(parents=True, exist_ok=True)
    statuses = {"wc-completed": "completed", "wc-refunded": "returned", "wc-cancelled": "cancelled",
                "wc-processing": "completed"}  # fmt: skip
    truth, when_of, rows, number = Truth(), {}, [], 5000
    for c, times in _plan(rng, customers):
        cid, email = str(300 + c), f"client{c:03d}@woo{seed}.example"
        truth.emails.append(email)
        for t in times:
            number += 1
            st = rng.choice(list(statuses))
            total, disc = _money(rng), (_money(rng, 1, 5) if rng.random() < 0.25 else Decimal(0))
            rows.append([number, t.strftime("%d/%m/%Y %H:%M"), st, cid, email, COUNTRIES[c % 5], "EUR",
                         f"{total:.2f}", f"{disc:.2f}"])  # fmt: skip
            truth.orders[str(number)] = (cid, statuses[st], total)
            when_of[str(number)] = (t, cid)
    header = ["Order Number", "Order Date", "Order Status", "Customer ID", "Billing Email", "Billing Country",
              "Order Currency", "Order Total", "Cart Discount"]  # fmt: skip
    _write(folder / "woocommerce_orders.csv", header, rows, delimiter=";")
    truth.customers = _first(when_of)
    return truth


def payments_cents(folder: Path, seed: int = 0, customers: int = 60) -> Truth:
    """customers.csv (ids sometimes '12402.0'), orders.csv (ISO timestamps), payments.csv (cents)."""
    rng = random.Random(seed + 2)
    folder.mkdir(parents=True, exist_ok=True)
    states = {"complete": "completed", "refunded": "returned", "canceled": "cancelled"}
    truth, when_of = Truth(), {}
    people, orders, payments, oid = [], [], [], 90000
    for c, times in _plan(rng, customers):
        cid = 12400 + c
        email = f"person{c:03d}@cents{seed}.example"
        truth.emails.append(email)
        written = f"{cid}.0" if c % 7 == 3 else str(cid)  # a spreadsheet wrote some ids as floats
        people.append([written, email, f"Name{c}", COUNTRIES[c % 5]])
        for t in times:
            oid += 1
            state = rng.choice(list(states))
            orders.append([oid, str(cid), t.strftime("%Y-%m-%dT%H:%M:%SZ"), state])
            total = Decimal(0)
            for _ in range(rng.randint(1, 3)):
                cents = rng.randint(100, 9000)
                status = rng.choice(("succeeded", "succeeded", "refunded", "failed"))
                payments.append([oid, cents, "EUR", status])
                if status == "succeeded":
                    total += Decimal(cents) / 100
            truth.orders[str(oid)] = (str(cid), states[state], total)
            when_of[str(oid)] = (t, str(cid))
    rng.shuffle(payments)
    _write(folder / "customers.csv", ["id", "email", "first_name", "country"], people)
    _write(folder / "orders.csv", ["id", "customer_id", "created", "state"], orders)
    _write(folder / "payments.csv", ["order_id", "amount_cents", "currency", "status"], payments)
    truth.customers = _first(when_of)
    return truth


def _mdy(t: datetime) -> str:
    return f"{t.month}/{t.day}/{t.year} {t.hour}:{t.minute:02d}"


def invoices(folder: Path, seed: int = 0, customers: int = 45) -> Truth:
    """invoices.csv, Online-Retail style: C-prefixed cancellations, negative quantities, float ids."""
    rng = random.Random(seed + 3)
    folder.mkdir(parents=True, exist_ok=True)
    truth, when_of, rows, number = Truth(), {}, [], 536365
    for c, times in _plan(rng, customers):
        cid = str(17800 + c)
        country = COUNTRY_NAMES[COUNTRIES[c % 5]]
        for t in times:
            kind = rng.choice(("sale", "sale", "sale", "cancel", "return"))
            inv = f"C{number}" if kind == "cancel" else str(number)
            number += 1
            sign = -1 if kind == "return" else 1
            total = Decimal(0)
            for _ in range(rng.randint(1, 3)):
                q, price = rng.randint(1, 12) * sign, _money(rng, 1, 15)
                code = f"{rng.randint(20000, 90000)}{rng.choice(['', 'A', 'B'])}"
                rows.append([inv, code, f"ITEM {code}", q, _mdy(t),
                             f"{price}", f"{cid}.0", country])  # fmt: skip
                total += q * price
            status = {"sale": "completed", "cancel": "cancelled", "return": "returned"}[kind]
            truth.orders[inv] = (cid, status, abs(total))
            when_of[inv] = (t, cid)
    # guest purchases: no CustomerID; quarantined (never silently dropped)
    for k in range(3):
        t = START + timedelta(days=k)
        rows.append([str(number + k), "10002", "GUEST ITEM", 2, _mdy(t),
                     "1.50", "", "France"])  # fmt: skip
    rows_idx = {id(r): i for i, r in enumerate(rows)}
    order = sorted(rows, key=lambda r: (r[0].lstrip("C"), rows_idx[id(r)]))  # file sorted by invoice number
    for i, r in enumerate(order, start=1):
        if r[6] == "":
            truth.quarantined.append(("invoices.csv", i, "missing CustomerID"))
    header = [
        "InvoiceNo",
        "StockCode",
        "Description",
        "Quantity",
        "InvoiceDate",
        "UnitPrice",
        "CustomerID",
        "Country",
    ]
    _write(folder / "invoices.csv", header, order)
    truth.customers = _first(when_of)
    return truth


SHAPES = {
    "shopify": shopify,
    "woocommerce": woocommerce,
    "payments_cents": payments_cents,
    "invoices": invoices,
}
