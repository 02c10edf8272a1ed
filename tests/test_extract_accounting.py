"""Extract accounting that can fail: each side counted apart, files tracked by content, quarantine
evidence kept, and a transactions-only export's purchases counted once."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from extract_helpers import accounting, by_entity, make_settings, query, run_extract

from clarion.cli import cli
from clarion.contract import ENTITIES
from clarion.extract.accounting import AccountingError, SourceCount, keyed_read_count
from clarion.extract.contract_sql import CheckSpec
from clarion.extract.publish import PublishJob
from clarion.extract.scan import scan_csv

HEADER = "product_id,sku,name,category,price,currency,active,updated_at"


def product(i: int, name: str = "Mug", category: str = "home", price: str = "12.50") -> str:
    return f"{i},SKU-{i},{name},{category},{price},EUR,true,2025-01-0{1 + i % 8}T00:00:00Z"


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    folder = tmp_path / "shop"
    folder.mkdir()
    return folder


def settings_for(tmp_path: Path, folder: Path):
    return make_settings(tmp_path / "project", {"crm": {"kind": "files", "path": str(folder)}})


# -- 1. read = loaded + quarantined, each side counted apart -----------------------------------------


def test_an_unbalanced_quote_quarantines_the_lines_it_would_swallow_and_the_other_rows_and_files_load(
    tmp_path: Path, shop: Path
) -> None:
    lines = [product(1), product(2, name='"Mug'), product(3), product(4), product(5)]
    write(shop / "products.csv", lines)
    write(shop / "products.part2.csv", [product(6), product(7)])
    settings = settings_for(tmp_path, shop)

    result = by_entity(run_extract(settings))["products"]

    data_lines = len(lines) + 2  # what the two files hold, counted here from what was written
    assert result.read == data_lines
    assert (result.loaded, result.quarantined) == (3, 4)
    assert result.reasons == {"unbalanced_quote": 4}
    swallowed = query(
        settings, "select file, row, reason, record from quarantine.products order by row"
    )  # located by file and physical line (the header is line 1)
    assert [(f, r, why) for f, r, why, _ in swallowed] == [
        ("products.csv", line, "unbalanced_quote") for line in (3, 4, 5, 6)
    ]
    assert '\\"Mug' in swallowed[0][3] and "SKU-5" in swallowed[3][3]
    assert sorted(i for (i,) in query(settings, "select product_id from raw.products")) == [1, 6, 7]
    [row] = [r for r in accounting(settings) if r["entity"] == "products"]
    assert (row["read"], row["loaded"], row["quarantined"]) == (7, 3, 4)


def test_an_unbalanced_quote_in_a_gzip_file_is_found_in_its_decompressed_bytes(
    tmp_path: Path, shop: Path
) -> None:
    import gzip

    lines = [product(1), product(2, name='"Mug'), product(3), product(4)]
    plain = write(shop / "products.csv", lines)
    (shop / "products.csv.gz").write_bytes(gzip.compress(plain.read_bytes()))
    plain.unlink()
    settings = settings_for(tmp_path, shop)

    result = by_entity(run_extract(settings))["products"]

    assert (result.read, result.loaded, result.quarantined) == (len(lines), 1, 3)
    assert query(
        settings, "select file, row from quarantine.products where reason = 'unbalanced_quote' order by row"
    ) == [("products.csv.gz", line) for line in (3, 4, 5)]


def test_a_quote_left_open_in_the_last_column_does_not_hide_the_rows_after_it(
    tmp_path: Path, shop: Path
) -> None:
    lines = [product(1), product(2), product(3), product(4)]
    lines[0] = lines[0][: -len("2025-01-02T00:00:00Z")] + '"2025-01-02T00:00:00Z'
    write(shop / "products.csv", lines)
    settings = settings_for(tmp_path, shop)

    result = by_entity(run_extract(settings))["products"]

    assert (result.read, result.loaded, result.quarantined) == (len(lines), 0, 4)
    assert query(settings, "select count(*) from quarantine.products where reason = 'unbalanced_quote'") == [
        (4,)
    ]


def test_the_scan_counts_records_as_the_csv_reader_does_quoted_newlines_literal_quotes_and_blanks(
    tmp_path: Path,
) -> None:
    text = 'a,b,c\n1,"two\nlines",3\n\n2,5" screen,4\r\n3,"say ""hi""",5\n4,"",6'
    path = tmp_path / "x.csv"
    path.write_text(text)
    found = scan_csv(path, ",")
    assert (found.records, found.unclosed_line, found.swallowed) == (4, None, [])


def test_a_raw_table_holding_a_key_twice_fails_the_load_loudly_and_publishes_nothing(
    tmp_path: Path, shop: Path
) -> None:
    write(shop / "products.csv", [product(1), product(2)])
    settings = settings_for(tmp_path, shop)
    run_extract(settings)
    import duckdb

    con = duckdb.connect(str(settings.warehouse.path))
    con.execute("insert into raw.products select * from raw.products where product_id = 1")
    con.close()
    changed = product(1, price="99.00").replace("2025-01-02", "2025-02-02")
    write(shop / "products.part2.csv", [changed])
    loads_before = len(accounting(settings))

    with pytest.raises(AccountingError) as failed:
        run_extract(settings)

    message = str(failed.value)
    assert "source crm, entity products (products.part2.csv): read 1 records but 2 reached raw" in message
    assert "nothing was published" in message
    prices = query(settings, "select cast(price as varchar) from raw.products where product_id = 1")
    assert prices == [("12.50",), ("12.50",)]  # rolled back: the update did not happen
    assert len(accounting(settings)) == loads_before
    assert query(settings, "select count(*) from quarantine.products") == [(0,)]
    assert query(settings, "select count(*) from audit.extract_files where file = 'products.part2.csv'") == [
        (0,)
    ]


def test_a_json_lines_file_with_two_records_on_one_line_fails_loudly_naming_the_file(
    tmp_path: Path, shop: Path
) -> None:
    record = (
        '{{"product_id": {i}, "sku": "S{i}", "name": "Mug", "category": "home", "price": 1, '
        '"currency": "EUR", "active": true, "updated_at": "2025-01-01T00:00:00Z"}}'
    )
    lines = [record.format(i=1), record.format(i=2) + " " + record.format(i=3)]
    (shop / "products.jsonl").write_text("\n".join(lines) + "\n")
    settings = settings_for(tmp_path, shop)

    with pytest.raises(AccountingError) as failed:
        run_extract(settings)

    message = str(failed.value)
    assert "entity products, file products.jsonl: an independent scan counts 2 records" in message
    assert "the reader produced 3" in message and "one record per line" in message
    assert query(settings, "select count(*) from raw.products") == [(0,)]
    assert query(settings, "select count(*) from audit.extract_loads") == [(0,)]


def keyed_job(count: SourceCount) -> PublishJob:
    orders = ENTITIES["orders"]
    return PublishJob(
        "run", "load", "crm_db", orders, None, CheckSpec(orders, {}), keyed=True, source_count=count
    )


def test_a_range_a_writer_changed_during_the_read_passes_only_when_the_rows_read_fit_one_moment() -> None:
    """The database counted the range before the read (10) and after it (9): a read at any moment in
    between gives 10 or 9 rows. Anything else is a loss, or a writer the counts cannot place."""
    what = "rows of table crm.orders whose updated_at is null or up to 2025-06-01T00:00:00+00:00"
    changed = SourceCount(9, what, kind="database", before=10)
    for landed in (9, 10):
        job = keyed_job(changed)
        assert keyed_read_count(job, landed) == landed
        assert len(job.notes) == (landed == 10)  # the count after the read agrees: nothing to note
    [note] = job.notes
    assert "changed while they were read (10 before the read, 9 after; another writer)" in note

    for landed in (8, 11):
        with pytest.raises(AccountingError) as failed:
            keyed_read_count(keyed_job(changed), landed)
        message = str(failed.value)
        assert message.startswith(f"source crm_db, entity orders: the {what} changed while they were read")
        assert f"the reader produced {landed}, which no moment of the table gives" in message
        assert "nothing was published" in message and "run `clarion extract` again" in message

    with pytest.raises(AccountingError) as failed:  # the table did not change: a loss, however small
        keyed_read_count(keyed_job(SourceCount(10, what, kind="database", before=10)), 9)
    assert f"the database counts 10 {what} but the reader produced 9; nothing was published" in str(
        failed.value
    )


# -- 2. files are tracked by sha256 ------------------------------------------------------------------


def test_a_same_size_file_replaced_with_its_mtime_restored_is_read_again(tmp_path: Path, shop: Path) -> None:
    path = write(shop / "products.csv", [product(1), product(2)])
    settings = settings_for(tmp_path, shop)
    run_extract(settings)
    stat = path.stat()
    write(path, [product(1, price="13.50"), product(2)])  # same size, other content
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)

    result = by_entity(run_extract(settings))["products"]

    assert (result.read, result.updated) == (2, 1)
    assert query(settings, "select cast(price as varchar) from raw.products where product_id = 1") == [
        ("13.50",)
    ]
    [(digest,)] = query(settings, "select sha256 from audit.extract_files where file = 'products.csv'")
    import hashlib

    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert by_entity(run_extract(settings))["products"].status == "unchanged"  # and then it is unchanged


# -- 3. quarantine evidence outlives the file ---------------------------------------------------------


def test_a_file_moved_to_an_archive_keeps_its_quarantined_rows_and_clarion_quarantine_shows_them(
    tmp_path: Path, shop: Path
) -> None:
    bad = write(shop / "products.csv", [product(1), product(2, category="garden"), product(3, category="x")])
    settings = settings_for(tmp_path, shop)
    run_extract(settings)
    evidence = query(settings, "select file, row, reason from quarantine.products order by row")
    assert evidence == [("products.csv", 2, "invalid_enum"), ("products.csv", 3, "invalid_enum")]
    archive = tmp_path / "archive"
    archive.mkdir()
    shutil.move(bad, archive / bad.name)  # processed: out of the source folder's glob
    write(shop / "products.part2.csv", [product(4)])

    run_extract(settings)

    assert query(settings, "select file, row, reason from quarantine.products order by row") == evidence
    config = tmp_path / "cli.yaml"
    config.write_text(f"warehouse:\n  path: {settings.warehouse.path}\n")
    shown = CliRunner().invoke(cli, ["--config", str(config), "quarantine", "products"])
    assert shown.exit_code == 0, shown.output
    assert "invalid_enum" in shown.output and "products.csv:2" in shown.output


def test_a_new_file_under_an_archived_files_name_does_not_erase_the_archived_files_evidence(
    tmp_path: Path, shop: Path
) -> None:
    daily = write(shop / "products.csv", [product(1), product(2, category="garden")])
    write(shop / "products.part2.csv", [product(5)])
    settings = settings_for(tmp_path, shop)
    run_extract(settings)
    [(first_load,)] = query(settings, "select load_id from quarantine.products")
    archive = tmp_path / "archive"
    archive.mkdir()
    shutil.move(daily, archive / "products-day1.csv")
    run_extract(settings)  # the day's file is gone: the ledger forgets its path
    write(shop / "products.csv", [product(3), product(4, category="pets")])  # the next day's export

    run_extract(settings)

    rows = query(
        settings, "select file, row, load_id = ? from quarantine.products order by 3 desc", [first_load]
    )
    assert rows == [("products.csv", 2, True), ("products.csv", 2, False)]


# -- 4. transactions-only: one purchase, one order ---------------------------------------------------

TX_HEADER = "customer,day,value,product,qty"


def transactions_source(folder: Path) -> dict:
    return {
        "shop": {
            "kind": "files",
            "path": str(folder),
            "entities": {},
            "transactions": {
                "files": ["sales_*.csv"],
                "columns": {
                    "customer": "contact_id",
                    "day": "ordered_at",
                    "value": "total_amount",
                    "product": "product_id",
                    "qty": "quantity",
                },
            },
        }
    }


def orders(settings) -> list[tuple]:
    return query(
        settings,
        "select contact_id, ordered_at::date::varchar, total_amount::varchar "
        "from raw.orders order by 1, 2, 3",
    )


JAN = ["7,2025-01-05,10.00,1,1", "7,2025-01-05,10.00,1,1", "8,2025-01-06,4.00,2,1"]  # 7 bought twice
FEB = ["8,2025-01-06,4.00,2,1", "9,2025-02-01,30.00,3,2"]  # repeats customer 8's purchase


@pytest.mark.parametrize("together", [True, False])
def test_the_same_purchase_in_two_files_is_one_order_loaded_together_or_apart(
    tmp_path: Path, together: bool
) -> None:
    folder = tmp_path / "tx"
    folder.mkdir()
    settings = make_settings(tmp_path / "p", transactions_source(folder))
    (folder / "sales_01.csv").write_text("\n".join([TX_HEADER, *JAN]) + "\n")
    if not together:
        run_extract(settings)
    (folder / "sales_02.csv").write_text("\n".join([TX_HEADER, *FEB]) + "\n")
    run_extract(settings)

    assert orders(settings) == [
        (7, "2025-01-05", "10.00"),
        (7, "2025-01-05", "10.00"),
        (8, "2025-01-06", "4.00"),
        (9, "2025-02-01", "30.00"),
    ]


@pytest.mark.parametrize("together", [True, False])
def test_a_corrected_amount_in_a_later_file_replaces_the_order(tmp_path: Path, together: bool) -> None:
    folder = tmp_path / "tx"
    folder.mkdir()
    settings = make_settings(tmp_path / "p", transactions_source(folder))
    (folder / "sales_01.csv").write_text("\n".join([TX_HEADER, *JAN]) + "\n")
    if not together:
        run_extract(settings)
    (folder / "sales_02.csv").write_text(TX_HEADER + "\n8,2025-01-06,3.50,2,1\n")  # 4.00 corrected
    run_extract(settings)

    assert orders(settings) == [
        (7, "2025-01-05", "10.00"),
        (7, "2025-01-05", "10.00"),
        (8, "2025-01-06", "3.50"),
    ]


@pytest.mark.parametrize("together", [True, False])
def test_an_order_id_in_a_later_file_replaces_the_order_instead_of_adding_its_lines(
    tmp_path: Path, together: bool
) -> None:
    folder = tmp_path / "tx"
    folder.mkdir()
    source = transactions_source(folder)
    source["shop"]["transactions"]["columns"]["order"] = "order_id"
    settings = make_settings(tmp_path / "p", source)
    header = TX_HEADER + ",order"
    lines = ["7,2025-01-05,10.00,1,1,501", "7,2025-01-05,5.00,2,1,501", "8,2025-01-06,4.00,2,1,502"]
    (folder / "sales_01.csv").write_text("\n".join([header, *lines]) + "\n")
    if not together:
        run_extract(settings)
    fixed = ["7,2025-01-05,10.00,1,1,501", "7,2025-01-05,4.00,2,1,501"]  # the 5.00 line corrected to 4.00
    (folder / "sales_02.csv").write_text("\n".join([header, *fixed]) + "\n")
    results = run_extract(settings)

    assert query(settings, "select order_id, total_amount::varchar from raw.orders order by 1") == [
        (501, "14.00"),
        (502, "4.00"),
    ]
    derived = next(r for r in results if r.entity == "orders")
    if together:  # order 501 as sales_01 had it is counted as superseded by sales_02's
        assert (derived.read, derived.superseded, derived.inserted) == (3, 1, 2)


def test_the_scan_counts_what_the_csv_reader_parses_across_block_edges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import random

    import pyarrow as pa
    import pyarrow.csv as pacsv

    from clarion.extract import scan

    def parsed(data: bytes) -> int:
        bad: list = []
        options = pacsv.ParseOptions(
            newlines_in_values=True, invalid_row_handler=lambda r: bad.append(r) or "skip"
        )
        return pacsv.read_csv(io.BytesIO(data), parse_options=options).num_rows + len(bad)

    values = ['"a"', '"b\nc"', '"x""y"', '""', '"a,b"', '5"', 'a"b', "1", "", "abc"]
    rnd = random.Random(7)
    path = tmp_path / "f.csv"
    compared = 0
    for _ in range(300):
        monkeypatch.setattr(scan, "BLOCK", rnd.choice([1, 2, 3, 7, 64]))
        rows = ["a,b,c"] + [",".join(rnd.choice(values) for _ in range(3)) for _ in range(rnd.randint(0, 5))]
        data = (rnd.choice(["\n", "\r\n", "\r"]).join(rows) + rnd.choice(["", "\n"])).encode()
        path.write_bytes(data)
        try:
            expected = parsed(data)
        except pa.ArrowInvalid:  # a file the reader refuses as a whole: nothing to compare
            continue
        assert scan.scan_csv(path, ",").records == expected, data
        compared += 1
    assert compared > 250
    jsonl = tmp_path / "f.jsonl"
    jsonl.write_bytes(b'{"a": 1}\n\n  \r\n{"a": 2}\r\n{"a": 3}')  # blank lines, no final newline
    assert scan.scan_jsonl(jsonl).records == 3
