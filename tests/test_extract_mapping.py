"""SQL mappings, value maps and `load_time` defaults: an export in its own shape loads, checked as a file."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from clarion.errors import ClarionError, ConfigError
from clarion.extract.mapping import table_name
from tests.extract_helpers import make_settings, query, run_extract

# a shop's own export: customers without consent or dates, orders without amounts, payments in cents
CUSTOMERS = [(1, "ana@example.org", "DE"), (2, "bo@example.org", "SE"), (3, "cy@example.org", "GB")]
ORDERS = [  # id, customer, created, state
    (10, 1, "2026-03-01T10:00:00Z", "paid"),
    (11, 1, "2026-04-02T09:30:00Z", "refunded"),
    (12, 2, "2026-03-15T12:00:00Z", "paid"),
    (13, 3, "2026-05-20T08:00:00Z", "voided"),
    (14, 9, "2026-05-21T08:00:00Z", "paid"),  # customer 9 is not in the customers file: an orphan
]
PAYMENTS = [  # order, cents, status
    (10, 1999, "succeeded"),
    (10, 500, "succeeded"),
    (10, 700, "failed"),
    (11, 4250, "succeeded"),
    (12, 12000, "succeeded"),
    (13, 0, "failed"),
    (14, 100, "succeeded"),
]
NO_CONSENT = {"email_consent": False, "sms_consent": False, "marketing_objection": False}
STATES = {"paid": "completed", "refunded": "returned", "voided": "cancelled"}

CONTACTS_SQL = """
select c.id as contact_id, c.email, c.country,
       cast(min(o.created) as date) as signup_date
from customers c left join orders o on o.customer_id = c.id
group by all
"""
ORDERS_SQL = """
select o.id as order_id, o.customer_id as contact_id, o.created as ordered_at, o.state as status,
       'EUR' as currency,
       coalesce(sum(p.amount_cents) filter (where p.status = 'succeeded'), 0) / 100 as total_amount
from orders o left join payments p on p.order_id = o.id
group by all
"""


def _write(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "customers.csv").write_text(
        "id,email,country\n" + "".join(f"{i},{e},{c}\n" for i, e, c in CUSTOMERS)
    )
    (folder / "orders.csv").write_text(
        "id,customer_id,created,state\n" + "".join(f"{i},{c},{t},{s}\n" for i, c, t, s in ORDERS)
    )
    (folder / "payments.csv").write_text(
        "order_id,amount_cents,status\n" + "".join(f"{o},{c},{s}\n" for o, c, s in PAYMENTS)
    )


def _source(folder: Path, **orders: object) -> dict:
    return {
        "shop": {
            "kind": "files",
            "path": str(folder),
            "entities": {
                "contacts": {"sql": CONTACTS_SQL, "defaults": {"updated_at": "load_time", **NO_CONSENT}},
                "orders": {
                    "sql": ORDERS_SQL,
                    "values": {"status": STATES},
                    "defaults": {"updated_at": "load_time"},
                    **orders,
                },
            },
        }
    }


def _truth() -> dict[int, tuple[int, str, Decimal]]:
    """order -> (customer, status, total), computed from the lists above, not from the files."""
    known = {c for c, *_ in CUSTOMERS}
    out = {}
    for oid, cust, _, state in ORDERS:
        if cust not in known:
            continue
        cents = sum(c for o, c, s in PAYMENTS if o == oid and s == "succeeded")
        out[oid] = (cust, STATES[state], Decimal(cents) / 100)
    return out


def test_a_shop_export_in_its_own_shape_loads_through_sql_mappings(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    _write(folder)
    settings = make_settings(tmp_path / "p", _source(folder))
    before = datetime.now(UTC).replace(microsecond=0)
    results = run_extract(settings)
    got = {
        oid: (cid, status, total)
        for oid, cid, status, total in query(
            settings, "select order_id, contact_id, status, total_amount from raw.orders"
        )
    }
    assert got == _truth()
    # the orphan is quarantined with its place in the mapping's output, never dropped
    (orphan,) = query(settings, "select file, reason, field from quarantine.orders")
    assert orphan == ("orders.sql", "orphan", "contact_id")
    # signup = first order, updated_at = the load's time
    contacts = query(settings, "select contact_id, signup_date, updated_at from raw.contacts order by 1")
    first = {c: min(t for _, cc, t, _ in ORDERS if cc == c)[:10] for c, *_ in CUSTOMERS}
    assert [(c, str(s)) for c, s, _ in contacts] == sorted(first.items())
    assert all(u >= before for *_, u in contacts)
    orders = next(r for r in results if r.entity == "orders")
    assert (orders.read, orders.loaded, orders.quarantined) == (len(ORDERS), len(ORDERS) - 1, 1)
    assert "mapped by SQL from" in orders.message and "payments (payments.csv)" in orders.message
    # the mapping's output is not left on disk: it holds personal data
    assert not list((settings.var_dir / "mapped").rglob("*.parquet"))


def test_an_unchanged_mapping_is_not_read_again_and_a_changed_input_is(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    _write(folder)
    settings = make_settings(tmp_path / "p", _source(folder))
    run_extract(settings, run_id="r1")
    again = {r.entity: r for r in run_extract(settings, run_id="r2")}
    assert again["orders"].status == "unchanged" and again["contacts"].status == "unchanged"
    with (folder / "payments.csv").open("a") as fh:  # a late payment for order 12
        fh.write("12,800,succeeded\n")
    third = {r.entity: r for r in run_extract(settings, run_id="r3")}
    assert third["orders"].status != "unchanged"
    ((total,),) = query(settings, "select total_amount from raw.orders where order_id = 12")
    assert total == Decimal("128.00")


def test_value_maps_apply_to_plain_files_too_and_unlisted_values_are_still_checked(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "contacts.csv").write_text(
        "contact_id,signup_date,email_consent,sms_consent,marketing_objection,updated_at\n"
        "1,2026-01-01,ja,nein,nein,2026-01-02\n2,2026-01-01,nein,nein,vielleicht,2026-01-02\n"
    )
    yes_no = {"ja": "true", "nein": "false"}
    settings = make_settings(
        tmp_path / "p",
        {
            "crm": {
                "kind": "files",
                "path": str(folder),
                "entities": {
                    "contacts": {
                        "values": {c: yes_no for c in ("email_consent", "sms_consent", "marketing_objection")}
                    }
                },
            }
        },
    )
    run_extract(settings)
    assert query(settings, "select contact_id, email_consent from raw.contacts") == [(1, True)]
    ((reason, field),) = query(settings, "select reason, field from quarantine.contacts")
    assert (reason, field) == ("wrong_type", "marketing_objection")  # 'vielleicht' is in no map


@pytest.mark.parametrize(
    ("sql", "says"),
    [
        ("select id as order_id from orders where", "does not parse"),
        ("select 1 as a; select 2 as b", "exactly one SELECT"),
        ("select id as order_id from no_such_table", "no_such_table"),
        (
            "select id as order_id, customer_id as contact_id, created as ordered_at, state as status, "
            "'EUR' as currency from orders",
            "no column total_amount",
        ),
        (
            "select id as order_id, customer_id as contact_id, true as ordered_at, state as status, "
            "'EUR' as currency, 1 as total_amount from orders",
            "column ordered_at is BOOLEAN",
        ),
    ],
)
def test_a_mapping_is_checked_when_the_settings_load_naming_the_key_and_column(
    tmp_path: Path, sql: str, says: str
) -> None:
    folder = tmp_path / "export"
    _write(folder)
    with pytest.raises(ConfigError) as err:
        make_settings(
            tmp_path / "p",
            {
                "shop": {
                    "kind": "files",
                    "path": str(folder),
                    "entities": {"orders": {"sql": sql, "defaults": {"updated_at": "load_time"}}},
                }
            },
        )
    text = str(err.value)
    assert "sources.shop.entities.orders.sql" in text and says in text


def test_sql_excludes_files_and_columns_and_inputs_need_sql(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    _write(folder)
    with pytest.raises(ConfigError, match="drop files, columns"):
        make_settings(
            tmp_path / "p",
            {
                "s": {
                    "kind": "files",
                    "path": str(folder),
                    "entities": {"orders": {"sql": ORDERS_SQL, "files": ["x*.csv"], "columns": {"a": "b"}}},
                }
            },
        )
    with pytest.raises(ConfigError, match="inputs: names the tables"):
        make_settings(
            tmp_path / "p",
            {
                "s": {
                    "kind": "files",
                    "path": str(folder),
                    "entities": {"orders": {"inputs": {"orders": "orders.csv"}}},
                }
            },
        )


def test_inputs_name_the_tables_and_a_glob_matching_nothing_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    _write(folder)
    (folder / "Payments Export (2).csv").write_text((folder / "payments.csv").read_text())
    (folder / "payments.csv").unlink()
    assert table_name(folder / "Payments Export (2).csv") == "payments_export_2"
    assert table_name("orders.part2.csv.gz") == "orders" and table_name("2024 orders.csv") == "t_2024_orders"
    inputs = {"orders": "orders.csv", "payments": "Payments*.csv"}
    settings = make_settings(tmp_path / "p", _source(folder, inputs=inputs))
    # contacts' SQL reads the folder's tables by file name; orders' reads its inputs
    run_extract(settings)
    assert {r[0] for r in query(settings, "select order_id from raw.orders")} == set(_truth())
    with pytest.raises(ClarionError, match="input 'payments' matches no file"):
        make_settings(tmp_path / "q", _source(folder, inputs={**inputs, "payments": "nothing*.csv"}))
