"""Extract from PostgreSQL and MariaDB: defects quarantined by key, the same raw content as files, incremental
by cursor, both read backends, column mappings, and errors that name the source without leaking secrets."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pymysql
import pytest
from conftest import PG_DSN, postgres_or_skip
from extract_helpers import (
    accounting,
    by_entity,
    defects,
    make_settings,
    quarantined_keys,
    query,
    raw_fingerprint,
    run_extract,
)

import clarion.extract.runner as runner
import clarion.extract.sources as sources
from clarion.config import GenerateSettings, Settings
from clarion.contract import ENTITIES
from clarion.extract.accounting import AccountingError
from clarion.extract.readers import ExtractError
from clarion.synth.generator import generate

DSN_ENV = "CLARION_TEST_SOURCE_DSN"
ORDER_COLUMNS = ENTITIES["orders"].column_names
CLEAN = GenerateSettings(customers=300, seed=22, defects=0)  # the export compared across source kinds


def project(root: Path, sources: dict[str, object], **extract: object) -> Settings:
    """make_settings, loaded from inside ``root``: settings are read from ./clarion.yaml when there is one,
    and the repository's own file would add its sources to the throwaway project."""
    root.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        settings = make_settings(root, sources, **extract)
    assert list(settings.sources) == list(sources)
    return settings


def db_source(kind: str, schema: str, **extra: object) -> dict[str, object]:
    return {"kind": kind, "dsn_env": DSN_ENV, "schema": schema, **extra}


def fingerprints(settings: Settings) -> dict[str, tuple[int, int]]:
    return {entity: raw_fingerprint(settings, entity) for entity in ENTITIES}


def raw_count(settings: Settings, entity: str) -> int:
    [(n,)] = query(settings, f'select count(*) from raw."{entity}"')
    return int(n)


@pytest.fixture(scope="module")
def files_twin(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """CLEAN written as CSV files and extracted: what every database holding CLEAN must give in raw."""
    root = tmp_path_factory.mktemp("files_twin")
    generate(CLEAN, out=root / "crm")
    settings = project(root, {"crm": {"kind": "files", "path": str(root / "crm")}})
    run_extract(settings)
    return settings


@pytest.fixture(scope="module")
def pg_clean(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Settings]]:
    """CLEAN in a throwaway PostgreSQL schema, extracted with the default (connectorx) backend:
    yields (dsn, schema, settings of that project)."""
    con = postgres_or_skip()
    schema = f"clarion_test_{uuid.uuid4().hex[:8]}"
    root = tmp_path_factory.mktemp("pg_clean")
    try:
        generate(CLEAN, out=root / "crm", postgres_dsn=PG_DSN, pg_schema=schema)
        settings = project(root, {"crm": db_source("postgres", schema)})
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(DSN_ENV, PG_DSN)
            run_extract(settings)
        yield PG_DSN, schema, settings
    finally:
        con.execute(f'drop schema if exists "{schema}" cascade')
        con.close()


def assert_defects_quarantined_by_key(
    folder: Path, manifest: dict, settings: Settings, results: list
) -> None:
    """Every listed database defect is quarantined under its primary key with its reason, nothing else is,
    and every row read is either in raw or in quarantine."""
    listed = defects(folder)
    assert len(listed) > 100
    # a database table cannot hold a row without its primary key (missing_id is a files-only kind),
    # so every listed defect can be found by key
    assert all(d["key"] for d in listed), [d for d in listed if not d["key"]]
    assert "missing_id" not in {d["kind"] for d in listed}
    assert all(d["row"] == "" for d in listed)
    expected = {(d["entity"], d["key"]): d["reason"] for d in listed if d["expected"] == "quarantine"}
    assert len(expected) == sum(1 for d in listed if d["expected"] == "quarantine")  # keys are unique
    found = quarantined_keys(settings)
    assert {k: v for k, v in expected.items() if k not in found} == {}, "defects that reached raw"
    assert {k: v for k, v in found.items() if k not in expected} == {}, "clean rows quarantined"
    assert found == expected, "wrong reasons"
    # an invalid optional field: the row loads, the field is nulled and recorded by key
    findings = {
        (d["entity"], d["key"]): (d["column"], d["reason"]) for d in listed if d["expected"] == "finding"
    }
    recorded = query(settings, "select entity, key, field, reason, file, row from quarantine.field_findings")
    assert {(e, k): (f, r) for e, k, f, r, *_ in recorded} == findings and len(recorded) == len(findings)
    assert len(findings) > 5 and all(file is None and row is None for *_, file, row in recorded)
    for entity in ENTITIES:  # a database row has a key, no file and no row number
        located = query(
            settings, f'select key from quarantine."{entity}" where file is not null or row is not null'
        )
        assert located == [], entity

    # rows listed as "clean" (an untrimmed, upper-case e-mail) load, normalised
    for d in (d for d in listed if d["expected"] == "clean"):
        [(email,)] = query(
            settings, f'select email from raw."{d["entity"]}" where contact_id = ?', [int(d["key"])]
        )
        assert email == email.strip().lower() and "@" in email, d

    results_by_entity = by_entity(results)
    for entity, info in manifest["entities"].items():
        bad = sum(1 for (e, _) in found if e == entity)
        r = results_by_entity[entity]
        assert r.read == info["rows"], entity  # a first load reads the whole table
        assert r.quarantined == bad, entity
        assert raw_count(settings, entity) == info["rows"] - bad, entity
    rows = accounting(settings)
    assert {r["entity"] for r in rows} == set(ENTITIES)
    for row in rows:
        assert row["read"] == row["loaded"] + row["quarantined"], row


# -- PostgreSQL -------------------------------------------------------------------------------------------


def pg_connect(dsn: str) -> psycopg.Connection:
    return psycopg.connect(dsn, autocommit=True, connect_timeout=10)


@pytest.mark.postgres
def test_every_postgres_defect_is_quarantined_by_key_with_its_reason(
    tmp_path: Path, pg_schema, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn, schema = pg_schema
    result = generate(
        GenerateSettings(customers=400, seed=21, defects=0.02),
        out=tmp_path / "crm",
        postgres_dsn=dsn,
        pg_schema=schema,
    )
    assert all(d["file"].startswith(f"postgres:{schema}.") for d in defects(result.out))
    monkeypatch.setenv(DSN_ENV, dsn)
    settings = project(tmp_path, {"pg": db_source("postgres", schema)})
    results = run_extract(settings)
    assert_defects_quarantined_by_key(result.out, result.manifest, settings, results)


@pytest.mark.postgres
def test_postgres_raw_content_equals_the_same_seed_extracted_from_files(pg_clean, files_twin) -> None:
    _, _, from_db = pg_clean
    db_prints = fingerprints(from_db)
    assert all(rows > 0 for rows, _ in db_prints.values()), db_prints
    assert db_prints == fingerprints(files_twin)


@pytest.mark.postgres
def test_postgres_email_events_carry_variants_and_control_enrolments(pg_clean, files_twin) -> None:
    _, _, from_db = pg_clean
    sql = "select event_type, coalesce(variant_id, ''), count(*) from raw.email_events group by 1, 2"
    from_pg = {(kind, variant): n for kind, variant, n in query(from_db, sql)}
    assert from_pg == {(kind, variant): n for kind, variant, n in query(files_twin, sql)}
    assert from_pg[("control", "")] > 0
    assert {variant for kind, variant in from_pg if kind == "sent"} == {"", "A", "B", "C"}


@pytest.mark.postgres
def test_an_older_postgres_table_without_variant_id_still_loads(
    tmp_path: Path, pg_schema, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CRM database from before A/B variants and control enrolments: the optional column is
    simply absent, and every event loads with an empty variant."""
    dsn, schema = pg_schema
    generate(CLEAN, out=tmp_path / "crm", postgres_dsn=dsn, pg_schema=schema)
    with pg_connect(dsn) as con:
        con.execute(f'delete from "{schema}".email_events where event_type = %s', ["control"])
        con.execute(f'alter table "{schema}".email_events drop column variant_id')
        [(rows,)] = con.execute(f'select count(*) from "{schema}".email_events').fetchall()
    monkeypatch.setenv(DSN_ENV, dsn)
    settings = project(tmp_path / "project", {"pg": db_source("postgres", schema)})
    email = by_entity(run_extract(settings))["email_events"]
    assert (email.read, email.loaded, email.quarantined) == (rows, rows, 0)
    assert query(settings, "select count(*), count(variant_id) from raw.email_events") == [(rows, 0)]


@pytest.mark.postgres
def test_postgres_incremental_run_reads_only_changed_and_boundary_rows(
    tmp_path: Path, pg_schema, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn, schema = pg_schema
    generate(
        GenerateSettings(customers=300, seed=23, defects=0),
        out=tmp_path / "crm",
        postgres_dsn=dsn,
        pg_schema=schema,
    )
    monkeypatch.setenv(DSN_ENV, dsn)
    # no look-back window: exactly the changed rows and those at the previous maximum are read
    settings = project(tmp_path, {"pg": db_source("postgres", schema, lookback_hours=0)})
    run_extract(settings)
    [(previous_max,)] = query(settings, "select max(updated_at) from raw.orders")
    table = f'"{schema}".orders'
    with pg_connect(dsn) as con:
        total = con.execute(f"select count(*) from {table}").fetchone()[0]
        changed = [
            r[0]
            for r in con.execute(
                f"select order_id from {table} where status <> 'returned' and updated_at < %s "
                "order by order_id limit 5",
                [previous_max],
            ).fetchall()
        ]
        con.execute(
            f"update {table} set status = 'returned', updated_at = now() - interval '1 minute' "
            "where order_id = any(%s)",
            [changed],
        )
        (max_id,) = con.execute(f"select max(order_id) from {table}").fetchone()
        copied = ", ".join(f'"{c}"' for c in ORDER_COLUMNS if c not in {"order_id", "updated_at"})
        con.execute(
            f"insert into {table} (order_id, {copied}, updated_at) "
            f"select %s + row_number() over (order by order_id), {copied}, now() - interval '1 minute' "
            f"from (select * from {table} order by order_id limit 3) as existing",
            [max_id],
        )
        new_ids = [max_id + 1, max_id + 2, max_id + 3]
        (expected_read,) = con.execute(
            f"select count(*) from {table} where updated_at >= %s", [previous_max]
        ).fetchone()

    second = by_entity(run_extract(settings))
    orders = second["orders"]
    assert (orders.inserted, orders.updated, orders.quarantined) == (3, 5, 0)
    assert orders.read == expected_read  # changed rows plus the rows at the previous maximum
    assert 8 < orders.read < total / 20
    assert orders.unchanged == orders.read - 8
    for entity, r in second.items():
        if entity != "orders":
            assert (r.inserted, r.updated) == (0, 0), entity
            assert r.read == r.unchanged, entity  # only boundary rows, found unchanged
    statuses = dict(
        query(
            settings,
            f"select order_id, status from raw.orders where order_id in ({', '.join(map(str, changed))})",
        )
    )
    assert statuses == dict.fromkeys(changed, "returned")
    [(arrived,)] = query(
        settings, f"select count(*) from raw.orders where order_id in ({', '.join(map(str, new_ids))})"
    )
    assert arrived == 3
    assert raw_count(settings, "orders") == total + 3

    third = by_entity(run_extract(settings))
    assert (third["orders"].inserted, third["orders"].updated) == (0, 0)
    assert raw_count(settings, "orders") == total + 3


@pytest.mark.postgres
def test_postgres_pyarrow_backend_gives_the_same_raw_as_connectorx(
    tmp_path: Path, pg_clean, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn, schema, default = pg_clean
    assert default.sources["crm"].backend == "connectorx"
    monkeypatch.setenv(DSN_ENV, dsn)
    arrow = project(tmp_path, {"crm": db_source("postgres", schema, backend="pyarrow")})
    assert by_entity(run_extract(arrow)).keys() == set(ENTITIES)
    prints = fingerprints(default)
    assert all(rows > 0 for rows, _ in prints.values()), prints
    assert fingerprints(arrow) == prints


def _with_user(dsn: str, user: str, password: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port or 5432}"))


@pytest.mark.postgres
@pytest.mark.parametrize("failure", ["unreachable", "unknown_user"])
def test_unusable_postgres_source_raises_an_error_naming_it_and_keeps_raw(
    tmp_path: Path, pg_schema, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    dsn, schema = pg_schema
    generate(
        GenerateSettings(customers=200, seed=25, defects=0),
        out=tmp_path / "crm",
        postgres_dsn=dsn,
        pg_schema=schema,
    )
    two = {"contacts": {}, "orders": {}}  # a parent and a child are enough here
    settings = project(tmp_path, {"crm_db": db_source("postgres", schema, entities=two)})
    monkeypatch.setenv(DSN_ENV, dsn)
    run_extract(settings)
    before = fingerprints(settings)
    assert before["orders"][0] > 0

    bad = {
        "unreachable": "postgresql://alice:s3cret@127.0.0.1:1/test",
        "unknown_user": _with_user(dsn, "clarion_no_such_user", "s3cret"),
    }[failure]
    monkeypatch.setenv(DSN_ENV, bad)
    with pytest.raises(ExtractError) as caught:
        run_extract(settings)
    message = str(caught.value)
    assert "source crm_db" in message
    assert "s3cret" not in message
    assert fingerprints(settings) == before


def test_a_missing_dsn_variable_is_named_in_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DSN_ENV, raising=False)
    settings = project(tmp_path, {"crm_db": db_source("postgres", "crm")})
    with pytest.raises(ExtractError) as caught:
        run_extract(settings)
    message = str(caught.value)
    assert "source crm_db" in message
    assert DSN_ENV in message
    assert "not set" in message


@pytest.mark.postgres
def test_a_renamed_table_with_mapped_columns_loads_under_canonical_names(
    tmp_path: Path, pg_schema, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn, schema = pg_schema
    now = datetime.now(UTC).replace(microsecond=0)
    changed = {1: now - timedelta(days=3), 2: now - timedelta(days=2), 3: now - timedelta(days=5)}
    people = [
        (1, "Ada", "Lovelace", "ada@example.org", "GB", date(2024, 1, 5), True, False, False, changed[1]),
        (2, "Grace", "Hopper", "grace@example.org", "US", date(2024, 2, 6), False, True, False, changed[2]),
        (3, "Bad", "Mail", "bad@@example", "DE", date(2024, 3, 7), True, True, True, changed[3]),
    ]
    with pg_connect(dsn) as con:
        con.execute(f'create schema "{schema}"')
        con.execute(
            f'create table "{schema}".crm_people (id bigint primary key, given_name text, family_name text, '
            "mail text, country text, signup date, email_ok boolean, sms_ok boolean, objected boolean, "
            "changed_at timestamptz)"
        )
        with con.cursor() as cur:
            cur.executemany(
                f'insert into "{schema}".crm_people values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)', people
            )
    columns = {
        "id": "contact_id",
        "given_name": "first_name",
        "family_name": "last_name",
        "mail": "email",
        "country": "country",
        "signup": "signup_date",
        "email_ok": "email_consent",
        "sms_ok": "sms_consent",
        "objected": "marketing_objection",
        "changed_at": "updated_at",
    }
    mapped = {"contacts": {"table": "crm_people", "columns": columns, "cursor": "changed_at"}}
    monkeypatch.setenv(DSN_ENV, dsn)
    settings = project(tmp_path, {"people": db_source("postgres", schema, entities=mapped)})

    [first] = run_extract(settings)
    assert (first.entity, first.read, first.loaded, first.quarantined) == ("contacts", 3, 3, 0)
    rows = query(
        settings,
        "select contact_id, first_name, last_name, email, country, signup_date, email_consent, sms_consent, "
        "marketing_objection, updated_at, _source from raw.contacts order by contact_id",
    )
    assert [r[:10] for r in rows[:2]] == people[:2]  # types, names and instants as the source holds them
    assert {r[10] for r in rows} == {"people"}
    # an undeliverable address is an optional field: nulled and recorded by key, the contact loads
    assert rows[2][3] is None and rows[2][:3] == people[2][:3]
    assert query(settings, "select count(*) from quarantine.contacts") == [(0,)]
    assert query(settings, "select key, field, reason, file, row from quarantine.field_findings") == [
        ("3", "email", "invalid_email", None, None)
    ]

    with pg_connect(dsn) as con:
        con.execute(
            f'update "{schema}".crm_people '
            "set given_name = 'Augusta Ada', changed_at = now() - interval '1 minute' where id = 1"
        )
    [second] = run_extract(settings)
    # row 1 (changed) and row 2 (the boundary: the latest cursor raw held, within the 24 h look-back);
    # not row 3, older than the look-back window
    assert second.read == 2
    assert (second.updated, second.unchanged, second.inserted, second.quarantined) == (1, 1, 0, 0)
    assert query(settings, "select first_name from raw.contacts where contact_id = 1") == [("Augusta Ada",)]
    assert raw_count(settings, "contacts") == 3


@pytest.mark.postgres
def test_changes_landed_by_a_run_that_failed_before_publishing_are_read_again(
    tmp_path: Path, pg_schema, monkeypatch: pytest.MonkeyPatch
) -> None:
    """raw is the only state: a run that lands rows and then dies before publishing them must not make the
    next run skip those rows (runner.py: "a run killed at any point simply reads the same things again")."""
    dsn, schema = pg_schema
    generate(
        GenerateSettings(customers=200, seed=26, defects=0),
        out=tmp_path / "crm",
        postgres_dsn=dsn,
        pg_schema=schema,
    )
    monkeypatch.setenv(DSN_ENV, dsn)
    settings = project(
        tmp_path, {"pg": db_source("postgres", schema, entities={"contacts": {}, "orders": {}})}
    )
    run_extract(settings)
    with pg_connect(dsn) as con:
        [(order_id,)] = con.execute(
            f"update \"{schema}\".orders set status = 'returned', updated_at = now() - interval '1 minute' "
            f"where order_id = (select min(order_id) from \"{schema}\".orders where status <> 'returned') "
            "returning order_id"
        ).fetchall()

    publish = runner.publish

    def crash_on_orders(con, job):
        if job.entity.name == "orders":
            raise RuntimeError("killed between landing and publishing")
        return publish(con, job)

    monkeypatch.setattr(runner, "publish", crash_on_orders)
    with pytest.raises(ExtractError, match="killed between landing and publishing"):
        run_extract(settings)
    monkeypatch.setattr(runner, "publish", publish)

    again = by_entity(run_extract(settings))["orders"]
    assert query(settings, "select status from raw.orders where order_id = ?", [order_id]) == [("returned",)]
    assert again.updated == 1


# -- the database's own count of the rows a load reads ------------------------------------------------------


def small_project(tmp_path: Path, kind: str, dsn: str, schema: str, seed: int, entities: dict) -> Settings:
    """A small clean CRM in ``schema`` (a MariaDB database), and a project reading ``entities`` of it
    as source "pg" (PostgreSQL) or "maria"."""
    target = {"postgres_dsn": dsn, "pg_schema": schema}
    if kind == "mariadb":
        target = {"mariadb_dsn": dsn, "mariadb_database": schema}
    generate(GenerateSettings(customers=200, seed=seed, defects=0), out=tmp_path / "crm", **target)
    name = "pg" if kind == "postgres" else "maria"
    return project(tmp_path, {name: db_source(kind, schema, entities=entities)})


@pytest.mark.postgres
def test_postgres_rows_whose_cursor_is_null_are_read_on_every_load_and_quarantined(
    tmp_path: Path, pg_schema, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A NULL cursor is neither >= nor <= anything: a filter on the cursor alone never reads the row."""
    dsn, schema = pg_schema
    monkeypatch.setenv(DSN_ENV, dsn)
    settings = small_project(tmp_path, "postgres", dsn, schema, 29, {"contacts": {}, "orders": {}})
    run_extract(settings)
    [(previous_max,)] = query(settings, "select max(updated_at) from raw.orders")
    table = f'"{schema}".orders'
    copied = ", ".join(f'"{c}"' for c in ORDER_COLUMNS if c not in {"order_id", "updated_at"})
    with pg_connect(dsn) as con:  # a writer that leaves the cursor empty: a new order and a changed one
        (new_id,) = con.execute(
            f"insert into {table} (order_id, {copied}, updated_at) "
            f"select (select max(order_id) + 1 from {table}), {copied}, null "
            f"from {table} where order_id = (select min(order_id) from {table}) returning order_id"
        ).fetchone()
        (changed_id,) = con.execute(
            f"update {table} set status = 'returned', updated_at = null where order_id = "
            f"(select min(order_id) from {table} where status <> 'returned') returning order_id"
        ).fetchone()
        (window,) = con.execute(  # the rows the next load covers, counted here on the test's own terms
            f"select count(*) from {table} where updated_at >= %s or updated_at is null",
            [previous_max - timedelta(hours=24)],
        ).fetchone()
    nulls = {("orders", str(new_id)): "missing_required", ("orders", str(changed_id)): "missing_required"}

    for load in ("second", "third"):  # read, and quarantined once per key, on every load
        orders = by_entity(run_extract(settings))["orders"]
        assert (orders.read, orders.quarantined) == (window, 2), load
        assert orders.loaded == window - 2, load
        assert quarantined_keys(settings) == nulls, load
        assert query(settings, "select distinct field from quarantine.orders") == [("updated_at",)]
    # the changed order keeps its last good version in raw; the new one is not there
    assert query(
        settings, "select status <> 'returned' from raw.orders where order_id = ?", [changed_id]
    ) == [(True,)]
    assert query(settings, "select count(*) from raw.orders where order_id = ?", [new_id]) == [(0,)]


@pytest.mark.postgres
def test_a_reader_that_loses_rows_fails_the_load_against_the_databases_own_count(
    tmp_path: Path, pg_schema, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deliberately lossy reader (the last row of each chunk dropped before landing)."""
    dsn, schema = pg_schema
    monkeypatch.setenv(DSN_ENV, dsn)
    settings = small_project(tmp_path, "postgres", dsn, schema, 30, {"contacts": {}})
    keep = sources.with_position

    def lossy(table, counter, file=None):
        return keep(table.slice(0, table.num_rows - 1), counter, file)

    monkeypatch.setattr(sources, "with_position", lossy)
    with pytest.raises(AccountingError) as failed:
        run_extract(settings)
    with pg_connect(dsn) as con:
        (total,) = con.execute(f'select count(*) from "{schema}".contacts').fetchone()
    message = str(failed.value)
    assert (
        f"source pg, entity contacts: the database counts {total:,} rows of table {schema}.contacts"
        in message
    )
    assert f"but the reader produced {total - 1:,}; nothing was published" in message  # one chunk
    assert "run `clarion extract` again" in message
    assert raw_count(settings, "contacts") == 0
    assert accounting(settings) == []


@pytest.mark.postgres
def test_a_row_another_writer_moves_during_the_read_is_noted_not_failed_and_read_by_the_next_load(
    tmp_path: Path, pg_schema, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the read and the count after it, a writer moves a row the load read out of its range:
    the counts before and after differ, the rows read lie between, and the load goes on."""
    dsn, schema = pg_schema
    monkeypatch.setenv(DSN_ENV, dsn)
    settings = small_project(tmp_path, "postgres", dsn, schema, 31, {"contacts": {}})
    run_extract(settings)
    table = f'"{schema}".contacts'
    [(previous_max,)] = query(settings, "select max(updated_at) from raw.contacts")
    with pg_connect(dsn) as con:
        (window,) = con.execute(
            f"select count(*) from {table} where updated_at >= %s", [previous_max - timedelta(hours=24)]
        ).fetchone()
        (moved,) = con.execute(
            f"select min(contact_id) from {table} where updated_at = %s", [previous_max]
        ).fetchone()
    land = runner.land

    def land_then_write(*args, **kwargs):
        landed = land(*args, **kwargs)
        with pg_connect(dsn) as con:
            con.execute(
                f"update {table} set email_consent = not email_consent, updated_at = now() "
                "where contact_id = %s",
                [moved],
            )
        return landed

    monkeypatch.setattr(runner, "land", land_then_write)
    [second] = run_extract(settings)
    monkeypatch.setattr(runner, "land", land)
    assert (second.read, second.loaded, second.quarantined) == (window, window, 0)
    assert f"({window:,} before the read, {window - 1:,} after; another writer)" in second.message
    [(recorded,)] = query(
        settings, "select message from audit.extract_loads order by finished_at desc limit 1"
    )
    assert recorded == second.message

    [third] = run_extract(settings)
    assert third.updated == 1 and third.message == ""
    with pg_connect(dsn) as con:
        (consent,) = con.execute(
            f"select email_consent from {table} where contact_id = %s", [moved]
        ).fetchone()
    assert query(settings, "select email_consent from raw.contacts where contact_id = ?", [moved]) == [
        (consent,)
    ]


# -- MariaDB ----------------------------------------------------------------------------------------------


def mariadb_connect(dsn: str, database: str) -> pymysql.Connection:
    parts = urlsplit(dsn)
    return pymysql.connect(
        host=parts.hostname,
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        database=database,
        charset="utf8mb4",
        autocommit=True,
        connect_timeout=10,
    )


@pytest.fixture
def host_zone_not_utc(monkeypatch: pytest.MonkeyPatch):
    """The process runs in a zone far from UTC: naive source times must still be read as UTC."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.mariadb
def test_mariadb_defects_are_quarantined_by_key_and_raw_equals_the_files_twin(
    tmp_path: Path, mariadb_database, monkeypatch: pytest.MonkeyPatch, files_twin, host_zone_not_utc
) -> None:
    dsn, database = mariadb_database
    monkeypatch.setenv(DSN_ENV, dsn)
    result = generate(
        GenerateSettings(customers=300, seed=22, defects=0.02),
        out=tmp_path / "crm",
        mariadb_dsn=dsn,
        mariadb_database=database,
    )
    assert all(d["file"].startswith(f"mariadb:{database}.") for d in defects(result.out))
    settings = project(tmp_path / "defects", {"maria": db_source("mariadb", database)})
    results = run_extract(settings)
    assert_defects_quarantined_by_key(result.out, result.manifest, settings, results)

    # the same seed without defects: DATETIME (UTC wall time, no zone) must land as the files' instants
    generate(CLEAN, out=tmp_path / "clean", mariadb_dsn=dsn, mariadb_database=database)
    clean = project(tmp_path / "clean_project", {"maria": db_source("mariadb", database)})
    run_extract(clean)
    db_prints = fingerprints(clean)
    assert all(rows > 0 for rows, _ in db_prints.values()), db_prints
    assert db_prints == fingerprints(files_twin)


@pytest.mark.mariadb
def test_mariadb_incremental_run_reads_only_changed_and_boundary_rows(
    tmp_path: Path, mariadb_database, monkeypatch: pytest.MonkeyPatch, host_zone_not_utc
) -> None:
    dsn, database = mariadb_database
    generate(
        GenerateSettings(customers=200, seed=28, defects=0),
        out=tmp_path / "crm",
        mariadb_dsn=dsn,
        mariadb_database=database,
    )
    monkeypatch.setenv(DSN_ENV, dsn)
    settings = project(tmp_path, {"maria": db_source("mariadb", database, lookback_hours=0)})
    run_extract(settings)
    [(previous_max,)] = query(settings, "select max(updated_at) from raw.orders")
    previous_wall = previous_max.astimezone(UTC).replace(tzinfo=None)  # DATETIME holds UTC wall time
    con = mariadb_connect(dsn, database)
    try:
        with con.cursor() as cur:
            cur.execute("select count(*) from orders")
            (total,) = cur.fetchone()
            cur.execute(
                "select order_id from orders where status <> 'returned' and updated_at < %s "
                "order by order_id limit 2",
                [previous_wall],
            )
            changed = [r[0] for r in cur.fetchall()]
            cur.execute(
                "update orders set status = 'returned', updated_at = utc_timestamp() - interval 1 minute "
                "where order_id in (%s, %s)",
                changed,
            )
            cur.execute("select max(order_id) from orders")
            (max_id,) = cur.fetchone()
            copied = ", ".join(f"`{c}`" for c in ORDER_COLUMNS if c not in {"order_id", "updated_at"})
            cur.execute(
                f"insert into orders (order_id, {copied}, updated_at) "
                f"select %s + row_number() over (order by order_id), {copied}, "
                "utc_timestamp() - interval 1 minute "
                "from (select * from orders order by order_id limit 2) as existing",
                [max_id],
            )
            cur.execute("select count(*) from orders where updated_at >= %s", [previous_wall])
            (expected_read,) = cur.fetchone()
    finally:
        con.close()

    second = by_entity(run_extract(settings))
    orders = second["orders"]
    assert (orders.inserted, orders.updated, orders.quarantined) == (2, 2, 0)
    assert orders.read == expected_read
    assert 4 < orders.read < total / 20
    assert orders.unchanged == orders.read - 4
    for entity, r in second.items():
        if entity != "orders":
            assert (r.inserted, r.updated) == (0, 0), entity
            assert r.read == r.unchanged, entity  # only boundary rows, found unchanged
    statuses = dict(
        query(settings, f"select order_id, status from raw.orders where order_id in {tuple(changed)}")
    )
    assert statuses == dict.fromkeys(changed, "returned")
    assert raw_count(settings, "orders") == total + 2
    # the new rows' times came back as the UTC instants MariaDB holds, not shifted by a zone
    [(newest,)] = query(settings, "select max(updated_at) from raw.orders")
    assert timedelta(0) < datetime.now(UTC) - newest < timedelta(minutes=10)

    third = by_entity(run_extract(settings))
    assert (third["orders"].inserted, third["orders"].updated) == (0, 0)
    assert raw_count(settings, "orders") == total + 2


@pytest.mark.mariadb
def test_mariadb_rows_whose_cursor_is_null_are_read_and_quarantined(
    tmp_path: Path, mariadb_database, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn, database = mariadb_database
    monkeypatch.setenv(DSN_ENV, dsn)
    settings = small_project(tmp_path, "mariadb", dsn, database, 32, {"contacts": {}})
    run_extract(settings)
    con = mariadb_connect(dsn, database)
    try:
        with con.cursor() as cur:
            cur.execute("select max(contact_id) from contacts")
            (max_id,) = cur.fetchone()
            columns = ", ".join(
                f"`{c}`" for c in ENTITIES["contacts"].column_names if c not in {"contact_id", "updated_at"}
            )
            cur.execute(
                f"insert into contacts (contact_id, {columns}, updated_at) "
                f"select %s, {columns}, null from contacts where contact_id = %s",
                [max_id + 1, max_id],
            )
    finally:
        con.close()
    [second] = run_extract(settings)
    assert second.quarantined == 1 and second.read == second.loaded + 1
    assert quarantined_keys(settings) == {("contacts", str(max_id + 1)): "missing_required"}


# -- a mapping in the database's own SQL ------------------------------------------------------------------


@pytest.mark.postgres
def test_a_sql_mapping_in_the_databases_own_sql_loads_joined_and_converted_rows(
    tmp_path: Path, pg_schema, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Orders without amounts and payments in cents in their own table, read through a PostgreSQL
    SELECT: the totals are the succeeded payments' cents / 100, computed here from the rows inserted."""
    dsn, schema = pg_schema
    changed = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    customers = [(1, "a@shop.example"), (2, "b@shop.example")]
    orders = [(10, 1, "paid"), (11, 1, "refunded"), (12, 2, "paid"), (13, 3, "paid")]  # 3: no customer
    payments = [(10, 1999, "succeeded"), (10, 500, "failed"), (11, 4250, "succeeded"), (12, 700, "succeeded")]
    with pg_connect(dsn) as con:
        con.execute(f'create schema "{schema}"')
        con.execute(f'create table "{schema}".shop_customers (id bigint primary key, email text)')
        con.execute(
            f'create table "{schema}".shop_orders (id bigint primary key, customer_id bigint, '
            "state text, created_at timestamptz, updated_at timestamptz)"
        )
        con.execute(f'create table "{schema}".shop_payments (order_id bigint, amount_cents int, status text)')
        with con.cursor() as cur:
            cur.executemany(f'insert into "{schema}".shop_customers values (%s, %s)', customers)
            cur.executemany(
                f'insert into "{schema}".shop_orders values (%s, %s, %s, %s, %s)',
                [(o, c, s, changed - timedelta(days=o), changed) for o, c, s in orders],
            )
            cur.executemany(f'insert into "{schema}".shop_payments values (%s, %s, %s)', payments)
    contacts_sql = f"""
        select c.id as contact_id, c.email, min(o.created_at)::date as signup_date,
               false as email_consent, false as sms_consent, false as marketing_objection,
               max(o.updated_at) as updated_at
        from "{schema}".shop_customers c join "{schema}".shop_orders o on o.customer_id = c.id
        group by c.id, c.email"""
    orders_sql = f"""
        select o.id as order_id, o.customer_id as contact_id, o.created_at as ordered_at,
               case o.state when 'paid' then 'completed' when 'refunded' then 'returned' end as status,
               'EUR' as currency,
               coalesce(sum(p.amount_cents) filter (where p.status = 'succeeded'), 0) / 100.0 as total_amount,
               o.updated_at
        from "{schema}".shop_orders o left join "{schema}".shop_payments p on p.order_id = o.id
        group by o.id"""
    entities = {"contacts": {"sql": contacts_sql}, "orders": {"sql": orders_sql}}
    monkeypatch.setenv(DSN_ENV, dsn)
    settings = project(tmp_path, {"shop": db_source("postgres", schema, entities=entities)})
    loaded = by_entity(run_extract(settings))
    assert (loaded["orders"].read, loaded["orders"].loaded, loaded["orders"].quarantined) == (4, 3, 1)
    truth = {}
    for oid, cid, state in orders:
        if cid in dict(customers):
            cents = sum(c for o, c, s in payments if o == oid and s == "succeeded")
            truth[oid] = (cid, {"paid": "completed", "refunded": "returned"}[state], Decimal(cents) / 100)
    got = query(settings, "select order_id, contact_id, status, total_amount from raw.orders")
    assert {o: (c, s, t) for o, c, s, t in got} == truth
    assert query(settings, "select reason, field, key from quarantine.orders") == [
        ("orphan", "contact_id", "13")
    ]
    again = by_entity(run_extract(settings))["orders"]
    assert (again.inserted, again.updated) == (0, 0)


@pytest.mark.postgres
def test_a_sql_mapping_the_database_refuses_names_its_key(
    tmp_path: Path, pg_schema, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn, schema = pg_schema
    with pg_connect(dsn) as con:
        con.execute(f'create schema "{schema}"')
    entities = {"orders": {"sql": f'select id as order_id from "{schema}".no_such_table'}}
    monkeypatch.setenv(DSN_ENV, dsn)
    settings = project(tmp_path, {"shop": db_source("postgres", schema, entities=entities)})
    with pytest.raises(ExtractError, match=r"sources\.shop\.entities\.orders\.sql failed in the database"):
        run_extract(settings)
