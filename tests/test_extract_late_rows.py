"""Incremental database reads that miss nothing: rows committed late with an older cursor, a cursor in
the future, and orphans released by key when their parent is fixed. Against the real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from extract_helpers import by_entity, make_settings, query, run_extract

from clarion.contract import ENTITIES, POSTGRES_TYPES

DSN_ENV = "CLARION_TEST_LATE_DSN"
NOW = datetime.now(UTC).replace(microsecond=0)
DEFAULTS = {
    "contacts": {
        "first_name": "Ann",
        "email": "ann@example.com",
        "country": "DE",
        "signup_date": date(2024, 1, 1),
        "email_consent": True,
        "sms_consent": False,
        "marketing_objection": False,
    },
    "orders": {
        "ordered_at": datetime(2024, 2, 1, tzinfo=UTC),
        "status": "completed",
        "channel": "web",
        "currency": "EUR",
        "total_amount": 10,
    },
}


def create(con: psycopg.Connection, schema: str, *entities: str) -> None:
    con.execute(f'create schema "{schema}"')
    for name in entities:
        e = ENTITIES[name]
        cols = ", ".join(f'"{c.name}" {POSTGRES_TYPES[c.type]}' for c in e.columns)
        con.execute(f'create table "{schema}"."{name}" ({cols}, primary key ("{e.primary_key}"))')


def insert(con: psycopg.Connection, schema: str, entity: str, **values: object) -> None:
    row = {**DEFAULTS[entity], **values}
    names = ", ".join(f'"{k}"' for k in row)
    marks = ", ".join(["%s"] * len(row))
    con.execute(f'insert into "{schema}"."{entity}" ({names}) values ({marks})', list(row.values()))


def project(tmp_path: Path, schema: str, entities: tuple[str, ...], **extra: object):
    source = {
        "kind": "postgres",
        "dsn_env": DSN_ENV,
        "schema": schema,
        "entities": {e: {} for e in entities},
    }
    return make_settings(tmp_path, {"crm": {**source, **extra}})


@pytest.fixture
def pg(pg_schema, monkeypatch: pytest.MonkeyPatch):
    dsn, schema = pg_schema
    monkeypatch.setenv(DSN_ENV, dsn)
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as con:
        yield con, schema


@pytest.mark.postgres
def test_a_row_committed_late_with_an_older_cursor_is_read_within_the_look_back(tmp_path, pg) -> None:
    con, schema = pg
    create(con, schema, "contacts")
    insert(con, schema, "contacts", contact_id=1, updated_at=NOW - timedelta(hours=1))
    insert(con, schema, "contacts", contact_id=2, updated_at=NOW - timedelta(hours=1))
    settings = project(tmp_path, schema, ("contacts",))  # the default look-back: 24 hours
    run_extract(settings)
    # committed after the first run, stamped before the newest row that run loaded
    insert(con, schema, "contacts", contact_id=3, updated_at=NOW - timedelta(hours=3))
    insert(con, schema, "contacts", contact_id=4, updated_at=NOW - timedelta(hours=30))
    second = by_entity(run_extract(settings, run_id="second"))["contacts"]
    assert (second.read, second.inserted, second.unchanged, second.updated) == (3, 1, 2, 0)
    assert query(settings, "select contact_id from raw.contacts order by 1") == [(1,), (2,), (3,)]
    # older than the window: not read (a full reload, or a wider lookback_hours, brings it)
    wide = project(tmp_path / "wide", schema, ("contacts",), lookback_hours=48)
    run_extract(wide)
    assert query(wide, "select count(*) from raw.contacts") == [(4,)]


@pytest.mark.postgres
def test_a_cursor_in_the_future_does_not_hide_the_rows_changed_after_it(tmp_path, pg) -> None:
    con, schema = pg
    create(con, schema, "contacts")
    insert(con, schema, "contacts", contact_id=1, updated_at=NOW - timedelta(hours=1))
    insert(con, schema, "contacts", contact_id=2, updated_at=NOW + timedelta(hours=12))  # a skewed clock
    insert(con, schema, "contacts", contact_id=3, updated_at=datetime(2099, 1, 1, tzinfo=UTC))
    settings = project(tmp_path, schema, ("contacts",), lookback_hours=0)
    first = by_entity(run_extract(settings))["contacts"]
    assert (first.read, first.loaded, first.quarantined) == (3, 2, 1)
    assert query(settings, "select key, reason from quarantine.contacts") == [("3", "future_date")]
    insert(con, schema, "contacts", contact_id=4, updated_at=NOW)  # changed after the first run
    run_extract(settings, run_id="second")
    assert query(settings, "select contact_id from raw.contacts order by 1") == [(1,), (2,), (4,)]


@pytest.mark.postgres
def test_orders_orphaned_by_a_rejected_contact_are_released_by_key_when_it_is_fixed(tmp_path, pg) -> None:
    con, schema = pg
    create(con, schema, "contacts", "orders")
    insert(con, schema, "contacts", contact_id=1, signup_date=None, updated_at=NOW - timedelta(days=3))
    insert(con, schema, "orders", order_id=10, contact_id=1, updated_at=NOW - timedelta(days=3))
    settings = project(tmp_path, schema, ("contacts", "orders"))
    run_extract(settings)
    assert query(settings, "select key, reason from quarantine.orders") == [("10", "orphan")]
    con.execute(
        f'update "{schema}".contacts set signup_date = %s, updated_at = %s where contact_id = 1',
        [date(2024, 1, 1), NOW],
    )
    results = run_extract(settings, run_id="second")
    # the order itself did not change (its cursor is days old): only the release brings it
    assert query(settings, "select order_id, contact_id from raw.orders") == [(10, 1)]
    assert query(settings, "select count(*) from quarantine.orders") == [(0,)]
    assert query(settings, "select key, file, row from audit.orphan_releases") == [("10", None, None)]
    assert [(r.entity, r.status, r.read, r.loaded) for r in results if r.status == "released"] == [
        ("orders", "released", 1, 1)
    ]
