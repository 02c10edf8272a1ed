"""A bad optional field does not cost a row; quarantined orphans load once their parent arrives."""

from __future__ import annotations

import os
from pathlib import Path

from extract_helpers import make_settings, query, run_extract

from clarion.extract.runner import plan_steps
from clarion.quarantine import listing, render

CONTACTS = (
    "contact_id,first_name,last_name,email,phone,country,signup_date,email_consent,email_consent_at,"
    "email_consent_source,email_lawful_basis,sms_consent,sms_consent_at,sms_consent_source,"
    "sms_lawful_basis,marketing_objection,age_band,updated_at\n"
)
ORDERS = (
    "order_id,contact_id,ordered_at,status,channel,currency,subtotal_amount,discount_amount,"
    "total_amount,discount_code,delivery_status,updated_at\n"
)


def contact(cid: int, *, country: str = "DE", signup: str = "2024-01-01", updated: str = "2024-01-02") -> str:
    consent = "true,,,,false,,,,false,25-34"
    return f"{cid},Ann,Lee,a{cid}@example.com,,{country},{signup},{consent},{updated}T00:00:00Z\n"


def order(oid: int, cid: int, channel: str = "web") -> str:
    at = "2024-02-01T00:00:00Z"
    return f"{oid},{cid},{at},completed,{channel},EUR,10.00,0.00,10.00,,on_time,{at}\n"


def write(folder: Path, name: str, text: str, bump: int = 0) -> None:
    path = folder / name
    path.write_text(text)
    if bump:  # a fixed export arrives later: its mtime moves even within one clock tick
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump * 1_000_000_000))


def crm(tmp_path: Path, contacts: str, orders: str):
    folder = tmp_path / "crm"
    folder.mkdir()
    write(folder, "contacts.csv", CONTACTS + contacts)
    write(folder, "orders.csv", ORDERS + orders)
    return folder, make_settings(tmp_path, {"crm": {"kind": "files", "path": str(folder)}})


def loads(settings, run_id: str) -> list[tuple]:
    return query(
        settings,
        "select entity, status, read, loaded, quarantined from audit.extract_loads "
        "where run_id = ? order by finished_at",
        [run_id],
    )


def test_an_invalid_optional_field_is_nulled_with_a_finding_and_the_contact_keeps_its_orders(
    tmp_path,
) -> None:
    _, settings = crm(
        tmp_path,
        contact(1, country="Germany") + contact(2) + contact(3, signup=""),
        order(10, 1) + order(11, 1) + order(12, 2, channel="fax") + order(13, 3),
    )
    results = run_extract(settings)
    assert query(settings, "select contact_id, country from raw.contacts order by 1") == [
        (1, None),
        (2, "DE"),
    ]
    assert query(settings, "select order_id, channel from raw.orders order by 1") == [
        (10, "web"),
        (11, "web"),
        (12, None),
    ]
    findings = query(
        settings,
        "select entity, source, file, row, key, field, reason, value "
        "from quarantine.field_findings order by 1",
    )
    assert findings == [
        ("contacts", "crm", "contacts.csv", 1, "1", "country", "invalid_enum", "Germany"),
        ("orders", "crm", "orders.csv", 3, "12", "channel", "invalid_enum", "fax"),
    ]
    # a required field still rejects the row, and its order is an orphan
    assert query(settings, "select key, reason, field from quarantine.contacts") == [
        ("3", "missing_required", "signup_date")
    ]
    assert query(settings, "select key, reason, field from quarantine.orders") == [
        ("13", "orphan", "contact_id")
    ]
    by = {r.entity: r for r in results}
    assert (by["contacts"].read, by["contacts"].loaded, by["contacts"].quarantined) == (3, 2, 1)
    assert by["contacts"].findings == {"country: invalid_enum": 1}
    assert (by["orders"].read, by["orders"].loaded, by["orders"].quarantined) == (4, 3, 1)
    assert by["orders"].findings == {"channel: invalid_enum": 1}


def test_findings_are_listed_by_clarion_quarantine_without_their_values_unless_asked(tmp_path) -> None:
    _, settings = crm(tmp_path, contact(1, country="Germany"), order(10, 1))
    run_extract(settings)
    report = listing(settings, "contacts")
    assert report["findings"] == [
        {"entity": "contacts", "source": "crm", "reason": "invalid_enum", "field": "country", "rows": 1}
    ]
    text = render(report)
    assert "Loaded with a field nulled" in text and "contacts.csv:1  invalid_enum (country)" in text
    assert "Germany" not in text
    assert "Germany" in render(listing(settings, "contacts", values=True))


def test_a_file_read_again_replaces_its_earlier_findings(tmp_path) -> None:
    folder, settings = crm(tmp_path, contact(1, country="Germany"), "")
    run_extract(settings)
    write(folder, "contacts.csv", CONTACTS + contact(1, country="DE", updated="2024-01-05"), bump=5)
    run_extract(settings, run_id="second")
    assert query(settings, "select count(*) from quarantine.field_findings") == [(0,)]
    assert query(settings, "select country from raw.contacts") == [("DE",)]


def test_orphans_of_a_rejected_contact_are_released_when_the_fixed_contact_loads(tmp_path) -> None:
    folder, settings = crm(
        tmp_path, contact(1, signup="") + contact(2), order(10, 1) + order(11, 1) + order(12, 2)
    )
    run_extract(settings, run_id="first")
    assert query(settings, "select key, reason from quarantine.orders order by 1") == [
        ("10", "orphan"),
        ("11", "orphan"),
    ]
    write(folder, "contacts.csv", CONTACTS + contact(1, updated="2024-01-05") + contact(2), bump=5)
    results = run_extract(settings, run_id="second")
    assert query(settings, "select order_id, contact_id from raw.orders order by 1") == [
        (10, 1),
        (11, 1),
        (12, 2),
    ]
    assert query(settings, "select count(*) from quarantine.orders") == [(0,)]
    assert query(settings, "select key, field, file, row from audit.orphan_releases order by 1") == [
        ("10", "contact_id", "orders.csv", 1),
        ("11", "contact_id", "orders.csv", 2),
    ]
    released = [r for r in results if r.status == "released"]
    assert [(r.entity, r.read, r.loaded, r.quarantined, r.released) for r in released] == [
        ("orders", 2, 2, 0, 2)
    ]
    assert ("orders", "released", 2, 2, 0) in loads(settings, "second")
    # nothing is released twice: a third run reads nothing and releases nothing
    again = run_extract(settings, run_id="third")
    assert not [r for r in again if r.status == "released"]
    assert query(settings, "select count(*) from raw.orders") == [(3,)]


def test_one_run_with_the_fixed_contact_and_new_orders_settles_everything(tmp_path) -> None:
    folder, settings = crm(tmp_path, contact(1, signup=""), order(10, 1))
    run_extract(settings, run_id="first")
    assert [s.entity for s in plan_steps(settings)] == ["contacts", "orders"]  # parents first
    write(folder, "contacts.csv", CONTACTS + contact(1, updated="2024-01-05"), bump=5)
    write(folder, "orders.csv", ORDERS + order(10, 1) + order(14, 1), bump=5)
    run_extract(settings, run_id="second")
    assert query(settings, "select order_id from raw.orders order by 1") == [(10,), (14,)]
    assert query(settings, "select count(*) from quarantine.orders") == [(0,)]
    assert query(settings, "select count(*) from quarantine.contacts") == [(0,)]


def test_a_released_row_is_checked_against_the_whole_contract_again(tmp_path) -> None:
    """An order item orphaned by its order and by its product: the order arriving is not enough."""
    folder = tmp_path / "crm"
    folder.mkdir()
    write(folder, "contacts.csv", CONTACTS + contact(1))
    write(folder, "orders.csv", ORDERS + order(20, 1))
    write(
        folder,
        "order_items.csv",
        "order_item_id,order_id,product_id,quantity,unit_price,line_amount,updated_at\n"
        "1,21,5,1,10.00,10.00,2024-02-01T00:00:00Z\n",
    )
    settings = make_settings(tmp_path, {"crm": {"kind": "files", "path": str(folder)}})
    run_extract(settings, run_id="first")
    assert query(settings, "select reason, field from quarantine.order_items") == [("orphan", "order_id")]
    write(folder, "orders.csv", ORDERS + order(20, 1) + order(21, 1), bump=5)
    run_extract(settings, run_id="second")
    # its order arrived, its product did not: it stays quarantined, now for the product
    assert query(settings, "select reason, field from quarantine.order_items") == [("orphan", "product_id")]
    assert query(settings, "select count(*) from raw.order_items") == [(0,)]
    assert query(settings, "select count(*) from audit.orphan_releases") == [(0,)]


def test_the_extract_summary_and_artifact_name_each_finding() -> None:
    from clarion.cli.text import accounting_text
    from flows.extract import _markdown

    row = {
        "source": "crm",
        "entity": "contacts",
        "status": "loaded",
        "read": 3,
        "loaded": 3,
        "quarantined": 0,
        "findings": {"country: invalid_enum": 2},
    }
    text = accounting_text([row])
    assert "crm/contacts: loaded with a field nulled country: invalid_enum 2" in text
    assert "quarantine.field_findings" in text and "clarion quarantine ENTITY" in text
    assert "loaded with a field nulled: country: invalid_enum 2" in _markdown([row])


def test_two_copies_of_one_orphan_release_one_and_keep_the_other_as_a_duplicate(tmp_path) -> None:
    folder, settings = crm(tmp_path, contact(1, signup=""), order(10, 1))
    write(folder, "orders.part2.csv", ORDERS + order(10, 1))  # the same order, delivered twice
    run_extract(settings, run_id="first")
    assert query(settings, "select file, reason from quarantine.orders order by 1") == [
        ("orders.csv", "orphan"),
        ("orders.part2.csv", "orphan"),
    ]
    write(folder, "contacts.csv", CONTACTS + contact(1, updated="2024-01-05"), bump=5)
    results = run_extract(settings, run_id="second")
    assert query(settings, "select order_id from raw.orders") == [(10,)]
    assert query(settings, "select file, reason, field from quarantine.orders") == [
        ("orders.part2.csv", "duplicate_key", "order_id")
    ]
    assert [r.released for r in results if r.status == "released"] == [1]
    assert query(settings, "select file from audit.orphan_releases") == [("orders.csv",)]
