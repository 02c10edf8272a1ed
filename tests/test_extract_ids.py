"""Ids as real exports write them: a spreadsheet's ``12402.0`` is the customer 12402, and a text id
(``C536379``, ``84029A``, ``K-1042``) is a stable number from its text, kept in raw as source_<column>.

Expected keys are computed here by hand: the number itself, or ``CAST(hash(text) >> 1 AS BIGINT)``
in a DuckDB of the test's own (the documented rule), never by the code under test."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from extract_helpers import by_entity, make_settings, query, run_extract

STAMP = "2025-01-01T00:00:00Z"
CONTACTS = "contact_id,signup_date,email_consent,sms_consent,marketing_objection,updated_at"
ORDERS = "order_id,contact_id,ordered_at,status,currency,total_amount,updated_at"
PRODUCTS = "product_id,sku,name,category,price,currency,active,updated_at"
ITEMS = "order_item_id,order_id,product_id,quantity,unit_price,line_amount,updated_at"


def text_key(text: str) -> int:
    """The documented key of a text id, computed apart from the extract's SQL."""
    with duckdb.connect() as con:
        return con.execute("select cast(hash(?::varchar) >> 1 as bigint)", [text]).fetchone()[0]


def write(folder: Path, name: str, header: str, *rows: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("\n".join([header, *rows]) + "\n")


def contact(cid: str, updated: str = STAMP) -> str:
    return f"{cid},2024-06-01,true,false,false,{updated}"


def order(oid: str, cid: str, total: str = "10.00") -> str:
    return f"{oid},{cid},2025-01-01T10:00:00Z,completed,EUR,{total},{STAMP}"


def product(pid: str) -> str:
    return f"{pid},SKU-{pid},Item,home,5.00,EUR,true,{STAMP}"


def item(iid: str, oid: str, pid: str, quantity: str = "1") -> str:
    return f"{iid},{oid},{pid},{quantity},5.00,5.00,{STAMP}"


def files_settings(root: Path, folder: Path, **source):
    return make_settings(root, {"crm": {"kind": "files", "path": str(folder), **source}})


def reasons(settings, entity: str) -> list[tuple]:
    return query(settings, f'select row, reason, field from quarantine."{entity}" order by row')


def test_ids_written_as_floats_are_the_integer_and_merge_into_one_contact(tmp_path: Path) -> None:
    crm = tmp_path / "crm"
    # a spreadsheet wrote the same customer twice: 12402.0 (older) and 12402 (newer)
    write(crm, "contacts.csv", CONTACTS, contact("12402.0"), contact("12402", "2025-02-01T00:00:00Z"))
    write(crm, "orders.csv", ORDERS, order("1.0", "12402.00"), order("2", "12402"))
    settings = files_settings(tmp_path / "p", crm)
    results = by_entity(run_extract(settings))
    assert (results["contacts"].loaded, results["contacts"].quarantined) == (2, 0)  # one superseded
    assert query(settings, "select contact_id, updated_at::date::varchar from raw.contacts") == [
        (12402, "2025-02-01")
    ]
    assert query(settings, "select order_id, contact_id from raw.orders order by 1") == [
        (1, 12402),
        (2, 12402),
    ]
    columns = {r[0] for r in query(settings, "describe raw.orders")}
    assert "source_order_id" not in columns  # every id was a number: nothing to keep


def test_a_fraction_is_no_id_and_no_quantity(tmp_path: Path) -> None:
    crm = tmp_path / "crm"
    write(crm, "contacts.csv", CONTACTS, contact("12402.5"), contact("7"))
    write(crm, "products.csv", PRODUCTS, product("3"))
    write(crm, "orders.csv", ORDERS, order("5", "7"))
    write(crm, "order_items.csv", ITEMS, item("1", "5", "3", "2.0"), item("2", "5", "3", "2.5"))
    settings = files_settings(tmp_path / "p", crm)
    run_extract(settings)
    assert reasons(settings, "contacts") == [(1, "wrong_type", "contact_id")]
    assert reasons(settings, "order_items") == [(2, "wrong_type", "quantity")]
    assert query(settings, "select contact_id from raw.contacts") == [(7,)]
    assert query(settings, "select order_item_id, quantity from raw.order_items") == [(1, 2)]


def test_text_ids_load_with_stable_keys_that_join_across_files_and_loads(tmp_path: Path) -> None:
    crm = tmp_path / "crm"
    write(crm, "contacts.csv", CONTACTS, contact("K-1042"), contact("17850.0"))
    write(crm, "orders.csv", ORDERS, order("C536379", "K-1042", "7.50"), order("536365", "17850"))
    write(crm, "products.csv", PRODUCTS, product("84029A"), product("22752"))
    write(crm, "order_items.csv", ITEMS, item("1", "C536379", "84029A"), item("2", "536365", "22752"))
    settings = files_settings(tmp_path / "p", crm)
    results = by_entity(run_extract(settings))
    assert {e: r.quarantined for e, r in results.items()} == dict.fromkeys(results, 0)
    k1042, c536379, a84029 = text_key("K-1042"), text_key("C536379"), text_key("84029A")
    assert query(settings, "select contact_id, source_contact_id from raw.contacts order by 2") == [
        (k1042, "K-1042"),
        (17850, None),
    ]
    orders = query(settings, "select order_id, contact_id, source_order_id from raw.orders order by 3")
    assert orders == [(c536379, k1042, "C536379"), (536365, 17850, None)]
    assert query(settings, "select product_id, source_product_id from raw.products order by 2") == [
        (a84029, "84029A"),
        (22752, None),
    ]
    items = query(
        settings, "select order_item_id, order_id, product_id, source_order_id from raw.order_items"
    )
    assert sorted(items) == [(1, c536379, a84029, "C536379"), (2, 536365, 22752, None)]
    assert "source_order_id" in results["orders"].new_columns

    # another warehouse, the same files: the same keys
    again = files_settings(tmp_path / "q", crm)
    run_extract(again)
    for table in ("contacts", "orders", "products", "order_items"):
        sql = f"select * exclude (_load_id, _loaded_at) from raw.{table} order by all"
        assert query(again, sql) == query(settings, sql), table

    # a later load: a new line of the text-id order finds the order loaded before
    write(crm, "order_items.csv", ITEMS, item("1", "C536379", "84029A"), item("3", " C536379 ", "84029A"))
    later = by_entity(run_extract(settings, run_id="later"))
    assert (later["order_items"].loaded, later["order_items"].quarantined) == (2, 0)
    assert query(settings, "select order_id from raw.order_items where order_item_id = 3") == [(c536379,)]


def test_an_orphan_with_a_text_id_is_released_when_its_parent_arrives(tmp_path: Path) -> None:
    crm = tmp_path / "crm"
    write(crm, "contacts.csv", CONTACTS, contact("7"))
    write(crm, "orders.csv", ORDERS, order("C9", "K-1"))  # K-1 is not in the CRM yet
    settings = files_settings(tmp_path / "p", crm)
    run_extract(settings)
    assert reasons(settings, "orders") == [(1, "orphan", "contact_id")]
    write(crm, "contacts.csv", CONTACTS, contact("7"), contact("K-1"))
    run_extract(settings, run_id="later")
    assert reasons(settings, "orders") == []
    assert query(settings, "select order_id, contact_id, source_order_id from raw.orders") == [
        (text_key("C9"), text_key("K-1"), "C9")
    ]


def test_a_parquet_double_id_that_is_whole_is_the_integer(tmp_path: Path) -> None:
    crm = tmp_path / "crm"
    crm.mkdir()
    rows = {
        "product_id": pa.array([22752.0, 3.5, 8.0], pa.float64()),
        "sku": ["a", "b", "c"],
        "name": ["x", "y", "z"],
        "category": ["home"] * 3,
        "price": ["5.00"] * 3,
        "currency": ["EUR"] * 3,
        "active": [True] * 3,
        "updated_at": [STAMP] * 3,
    }
    pq.write_table(pa.table(rows), crm / "products.parquet")
    settings = files_settings(tmp_path / "p", crm)
    run_extract(settings)
    assert query(settings, "select product_id from raw.products order by 1") == [(8,), (22752,)]
    assert reasons(settings, "products") == [(2, "wrong_type", "product_id")]


def test_transactions_read_a_float_written_customer_id_as_the_number(tmp_path: Path) -> None:
    """A transactions-only export: 12402.0 and 12402 are one customer (12402, not a hash of the
    text), and K-1042 in a contacts file and in the transactions file is one contact."""
    shop = tmp_path / "shop"
    write(
        shop,
        "sales.csv",
        "customer,day,value",
        "12402.0,2025-01-05,10.00",
        "12402,2025-02-05,12.00",
        "K-1042,2025-02-06,3.50",
    )
    write(shop, "contacts.csv", CONTACTS, contact("K-1042", "2025-03-01T00:00:00Z"))
    transactions = {
        "files": ["sales.csv"],
        "columns": {"customer": "contact_id", "day": "ordered_at", "value": "total_amount"},
    }
    settings = files_settings(tmp_path / "p", shop, entities={"contacts": {}}, transactions=transactions)
    run_extract(settings)
    k1042 = text_key("K-1042")
    assert query(settings, "select contact_id from raw.contacts order by 1") == sorted([(12402,), (k1042,)])
    orders = query(
        settings, "select contact_id, count(*), sum(total_amount)::varchar from raw.orders group by 1"
    )
    assert sorted(orders) == sorted([(12402, 2, "22.00"), (k1042, 1, "3.50")])
