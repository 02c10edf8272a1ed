"""`clarion generate --mariadb`: the synthetic CRM bulk-loaded into a real MariaDB database."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
import pymysql
import pytest

from clarion.config import GenerateSettings
from clarion.contract import ENTITIES
from clarion.errors import GenerateError
from clarion.synth.generator import DEFECTS_FILE, generate
from clarion.synth.sinks import MariaDbSink


def manifest_defects(folder: Path) -> list[dict]:
    with (folder / DEFECTS_FILE).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def connect(dsn: str, database: str) -> pymysql.Connection:
    parts = urlsplit(dsn)
    return pymysql.connect(
        host=parts.hostname,
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        database=database,
        charset="utf8mb4",
        autocommit=True,
    )


def query(con: pymysql.Connection, sql: str, args: list | None = None) -> list[tuple]:
    with con.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


@pytest.mark.mariadb
def test_mariadb_output_holds_the_same_rows_with_primary_keys(tmp_path: Path, mariadb_database) -> None:
    dsn, database = mariadb_database
    g = GenerateSettings(customers=500, seed=4, defects=0.02)
    result = generate(g, out=tmp_path / "manifests", mariadb_dsn=dsn, mariadb_database=database)
    con = connect(dsn, database)
    try:
        for entity, info in result.manifest["entities"].items():
            [(count,)] = query(con, f"select count(*) from `{entity}`")
            assert count == info["rows"], entity
        [(pk_count,)] = query(
            con,
            "select count(*) from information_schema.table_constraints "
            "where table_schema = %s and constraint_type = 'PRIMARY KEY'",
            [database],
        )
        assert pk_count == len(ENTITIES)
        tables = {t for (t,) in query(con, "show tables")}
        assert tables == set(ENTITIES)  # no __clarion_new / __clarion_old left behind
        listed = manifest_defects(result.out)
        assert listed and all(d["file"].startswith(f"mariadb:{database}.") for d in listed)
        assert all(d["row"] == "" for d in listed)  # a table has no row numbers
        assert {d["kind"] for d in listed}.isdisjoint({"duplicate_row", "wrong_type", "unparsable_date"})
        orphan = next(d for d in listed if d["kind"] == "orphan" and d["entity"] == "orders")
        [(contact_id,)] = query(
            con, "select contact_id from orders where order_id = %s", [int(orphan["key"])]
        )
        [(parents,)] = query(con, "select count(*) from contacts where contact_id = %s", [contact_id])
        assert parents == 0
        oversized = next(d for d in listed if d["kind"] == "oversized_text")
        [(length,)] = query(
            con, "select char_length(body) from support_tickets where ticket_id = %s", [int(oversized["key"])]
        )
        assert length > 100_000  # LONGTEXT: not cut
    finally:
        con.close()
    assert (result.out / "truth" / "contacts.csv").is_file()
    assert (result.out / "truth" / "tickets.csv").is_file()
    destination = json.loads((result.out / "manifest.json").read_text())["destination"]
    assert destination.startswith(f"mariadb:{database} at ")


@pytest.mark.mariadb
def test_mariadb_generation_replaces_the_tables_instead_of_duplicating(
    tmp_path: Path, mariadb_database
) -> None:
    dsn, database = mariadb_database
    generate(
        GenerateSettings(customers=200, seed=4),
        out=tmp_path / "m1",
        mariadb_dsn=dsn,
        mariadb_database=database,
    )
    again = generate(
        GenerateSettings(customers=300, seed=5),
        out=tmp_path / "m2",
        mariadb_dsn=dsn,
        mariadb_database=database,
    )
    con = connect(dsn, database)
    try:
        for entity, info in again.manifest["entities"].items():
            [(count,)] = query(con, f"select count(*) from `{entity}`")
            assert count == info["rows"], entity
        assert {t for (t,) in query(con, "show tables")} == set(ENTITIES)
    finally:
        con.close()


@pytest.mark.mariadb
def test_an_interrupted_mariadb_generation_keeps_the_previous_tables(
    tmp_path: Path, mariadb_database
) -> None:
    dsn, database = mariadb_database
    before = generate(
        GenerateSettings(customers=100, seed=1),
        out=tmp_path / "m",
        mariadb_dsn=dsn,
        mariadb_database=database,
    )

    def boom(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate(
            GenerateSettings(customers=150, seed=2),
            out=tmp_path / "m",
            mariadb_dsn=dsn,
            mariadb_database=database,
            progress=boom,
        )
    con = connect(dsn, database)
    try:
        for entity, info in before.manifest["entities"].items():
            [(count,)] = query(con, f"select count(*) from `{entity}`")
            assert count == info["rows"], entity
        assert {t for (t,) in query(con, "show tables")} == set(ENTITIES)
    finally:
        con.close()


@pytest.mark.mariadb
def test_mariadb_values_match_the_csv_export_of_the_same_seed(tmp_path: Path, mariadb_database) -> None:
    dsn, database = mariadb_database
    g = GenerateSettings(customers=300, seed=8, defects=0.0)
    generate(g, out=tmp_path / "m", mariadb_dsn=dsn, mariadb_database=database)
    as_csv = generate(g, out=tmp_path / "csv")
    with (as_csv.out / "orders.csv").open(newline="", encoding="utf-8") as fh:
        expected = {int(r["order_id"]): (r["total_amount"], r["ordered_at"]) for r in csv.DictReader(fh)}
    con = connect(dsn, database)
    try:
        rows = query(con, "select order_id, total_amount, ordered_at from orders")
    finally:
        con.close()
    got = {oid: (str(total), at.strftime("%Y-%m-%dT%H:%M:%SZ")) for oid, total, at in rows}
    assert len(got) == len(expected) > 1000
    assert got == expected


@pytest.mark.mariadb
def test_mariadb_keeps_empty_strings_nulls_and_awkward_text_apart(mariadb_database) -> None:
    dsn, database = mariadb_database
    entity = ENTITIES["support_tickets"]
    texts = ["", None, "NULL", "\\N", 'say "hi", then', "C:\\temp\\new", "two\nlines\r\n", "Zoë 😀 \ufffd"]
    rows: dict[str, list] = {c.name: [None] * len(texts) for c in entity.columns}
    rows["ticket_id"] = list(range(1, len(texts) + 1))
    rows["subject"] = texts
    rows["created_at"] = [datetime(2026, 3, 29, 1, 30, 5, tzinfo=UTC)] * len(texts)
    sink = MariaDbSink(dsn, database)
    try:
        assert sink.write("support_tickets", pa.Table.from_pydict(rows, schema=entity.arrow_schema())) == 1
    except BaseException:
        sink.abort()
        raise
    sink.close()
    con = connect(dsn, database)
    try:
        got = query(con, "select subject, created_at, contact_id from support_tickets order by ticket_id")
    finally:
        con.close()
    assert [r[0] for r in got] == texts
    assert {r[1] for r in got} == {datetime(2026, 3, 29, 1, 30, 5)}  # UTC wall time, no zone shift
    assert {r[2] for r in got} == {None}


def test_an_unreachable_mariadb_is_a_clear_error_and_leaves_no_files(tmp_path: Path) -> None:
    with pytest.raises(
        GenerateError, match=r"cannot connect to MariaDB at mysql://bob:\*\*\*@127\.0\.0\.1:1/x"
    ) as info:
        generate(
            GenerateSettings(customers=50),
            out=tmp_path / "crm",
            mariadb_dsn="mysql://bob:s3cr@t-pw@127.0.0.1:1/x",
        )
    assert "s3cr" not in str(info.value) and "t-pw" not in str(info.value)
    assert not (tmp_path / "crm").exists()
    assert not list(tmp_path.iterdir())


def test_postgres_and_mariadb_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(GenerateError, match="not both"):
        generate(
            GenerateSettings(customers=50),
            out=tmp_path / "crm",
            postgres_dsn="postgresql://bob@127.0.0.1:1/x",
            mariadb_dsn="mysql://bob@127.0.0.1:1/x",
        )
    assert not list(tmp_path.iterdir())
