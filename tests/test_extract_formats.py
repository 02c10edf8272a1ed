"""Awkward input files: nothing lost, nothing forged. Each test reads a few tiny files with `clarion
extract`'s step and counts what landed in raw, quarantine and the ledger, each side on its own."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from extract_helpers import by_entity, make_settings, query, run_extract

from clarion.errors import ConfigError

HEADER = "product_id,sku,name,category,price,currency,active,updated_at"
STAMP = "2025-01-01T00:00:00Z"


def product(i: int, price: str = "12.50", name: str | None = None) -> str:
    return f"{i},SKU-{i},{name or f'Item {i}'},home,{price},EUR,true,{STAMP}"


def csv_text(*rows: str, header: str | None = HEADER) -> str:
    return "\n".join([*([header] if header else []), *rows]) + "\n"


def product_json(i: int, **changes) -> str:
    record = {
        "product_id": i,
        "sku": f"SKU-{i}",
        "name": f"Item {i}",
        "category": "home",
        "price": "12.50",
        "currency": "EUR",
        "active": True,
        "updated_at": STAMP,
    }
    record.update(changes)
    return json.dumps({k: v for k, v in record.items() if v is not None})


def extract(tmp_path: Path, folder: Path, **entity) -> tuple:
    source = {"kind": "files", "path": str(folder)}
    if entity:
        source["entities"] = {"products": entity}
    settings = make_settings(tmp_path / "project", {"shop": source})
    return settings, by_entity(run_extract(settings))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    out = tmp_path / "export"
    out.mkdir()
    return out


def raw_ids(settings) -> list[int]:
    return [r[0] for r in query(settings, "select product_id from raw.products order by 1")]


def quarantine(settings) -> list[tuple]:
    return query(settings, "select file, row, reason, field from quarantine.products order by all")


# -- 1. header-less files ---------------------------------------------------------------------------


def test_a_header_less_csv_loads_with_the_configured_column_names_from_its_first_line(tmp_path, folder):
    (folder / "products.csv").write_text(csv_text(product(1), product(2), "3,SKU-3", header=None))
    names = HEADER.split(",")
    settings, results = extract(tmp_path, folder, header=False, column_names=names)
    r = results["products"]
    assert (r.read, r.loaded, r.quarantined) == (3, 2, 1)
    assert raw_ids(settings) == [1, 2]  # the first line is a record, not a header
    # the short third line is malformed; its location is the file's third line (no header line)
    assert query(settings, "select row, reason from quarantine.products") == [(3, "malformed_row")]


def test_a_header_less_file_with_more_fields_than_column_names_is_reported_once(tmp_path, folder):
    (folder / "products.csv").write_text(csv_text(product(1), header=None))
    (folder / "products.part2.csv").write_text(
        csv_text(product(2) + ",extra", product(3) + ",x", header=None)
    )
    _, results = extract(tmp_path, folder, header=False, column_names=HEADER.split(","))
    r = results["products"]
    assert (r.read, r.loaded, r.quarantined) == (1, 1, 0)
    assert (
        "products.part2.csv cannot be read (its first line has 9 fields but column_names lists 8" in r.message
    )


def test_header_false_without_column_names_is_refused_with_what_to_add(tmp_path, folder):
    (folder / "products.csv").write_text(csv_text(product(1), header=None))
    with pytest.raises(
        ConfigError, match=r"sources.shop.entities.products: header: false needs column_names"
    ):
        extract(tmp_path, folder, header=False)


# -- 2. compressed text files -----------------------------------------------------------------------


def test_gzip_and_zstd_files_are_found_by_the_default_glob_and_read_decompressed(tmp_path, folder):
    gz = folder / "products.csv.gz"
    gz.write_bytes(gzip.compress(csv_text(product(1), product(2)).encode()))
    with pa.output_stream(str(folder / "products.part2.jsonl.zst"), compression="zstd") as out:
        out.write((product_json(3) + "\n" + product_json(4) + "\n").encode())
    # a gzip file whose name does not say so is recognised by its first bytes, and a plain one named .gz
    (folder / "products.part3.csv").write_bytes(gzip.compress(csv_text(product(5)).encode()))
    (folder / "products.part4.csv.gz").write_text(csv_text(product(6)))
    settings, results = extract(tmp_path, folder)
    r = results["products"]
    assert (r.read, r.loaded, r.quarantined) == (6, 6, 0)
    assert raw_ids(settings) == [1, 2, 3, 4, 5, 6]
    ledger = dict(query(settings, "select file, sha256 from audit.extract_files"))
    assert ledger["products.csv.gz"] == hashlib.sha256(gz.read_bytes()).hexdigest()  # the file as stored
    assert dict(query(settings, "select file, rows from audit.extract_files")) == {
        "products.csv.gz": 2,
        "products.part2.jsonl.zst": 2,
        "products.part3.csv": 1,
        "products.part4.csv.gz": 1,
    }


def test_a_compressed_latin1_whitespace_separated_file_reads_like_the_plain_one(tmp_path, folder):
    text = HEADER.replace(",", "  ") + "\n" + product(1, name="Café").replace(",", "\t ") + "\n"
    (folder / "products.txt.gz").write_bytes(gzip.compress(text.encode("latin-1")))
    settings, results = extract(tmp_path, folder, delimiter="whitespace", encoding="latin-1")
    assert (results["products"].read, results["products"].loaded) == (1, 1)
    assert query(settings, "select name, price::varchar from raw.products") == [("Café", "12.50")]


# -- 3. letter case of file names -------------------------------------------------------------------


def test_the_default_glob_finds_files_whatever_the_letter_case_of_their_names(tmp_path, folder):
    (folder / "Products.CSV").write_text(csv_text(product(1)))
    (folder / "PRODUCTS.part2.csv").write_text(csv_text(product(2)))
    settings, results = extract(tmp_path, folder)
    assert results["products"].read == 2
    assert raw_ids(settings) == [1, 2]
    files = sorted(f for (f,) in query(settings, "select file from audit.extract_files"))
    assert files == ["PRODUCTS.part2.csv", "Products.CSV"]


# -- 4. JSON lines whose keys vary -----------------------------------------------------------------


def test_json_lines_with_different_keys_read_as_the_union_a_missing_key_is_null(tmp_path, folder):
    lines = [
        product_json(1, active=None),  # the first line lacks a key the others have
        product_json(2),
        product_json(3, color="red"),  # a key only a later line has
    ]
    (folder / "products.jsonl").write_text("\n".join(lines) + "\n")
    settings, results = extract(tmp_path, folder)
    r = results["products"]
    assert (r.read, r.loaded, r.quarantined) == (3, 2, 1)
    assert quarantine(settings) == [("products.jsonl", 1, "missing_required", "active")]
    assert query(settings, "select product_id, color from raw.products order by 1") == [(2, None), (3, "red")]


def test_a_json_key_that_is_a_number_on_one_line_and_text_on_another_does_not_fail_the_file(tmp_path, folder):
    lines = [product_json(1, price=12.5, sku=7), product_json(2, price="3.10"), product_json(3, price="x")]
    (folder / "products.jsonl").write_text("\n".join(lines) + "\n")
    settings, results = extract(tmp_path, folder)
    r = results["products"]
    assert (r.read, r.loaded, r.quarantined) == (3, 2, 1)
    assert quarantine(settings) == [("products.jsonl", 3, "wrong_type", "price")]
    rows = query(settings, "select product_id, sku, price::varchar from raw.products order by 1")
    assert rows == [(1, "7", "12.50"), (2, "SKU-2", "3.10")]


def test_a_broken_json_line_is_quarantined_by_line_and_the_rest_of_the_file_loads(tmp_path, folder):
    lines = [
        product_json(1),
        '{"product_id": 2, "sku": ',
        product_json(3, price=4),
        "[5, 6]",
        product_json(4),
    ]
    (folder / "products.jsonl").write_text("\n".join(lines) + "\n")
    settings, results = extract(tmp_path, folder)
    r = results["products"]
    assert (r.read, r.loaded, r.quarantined) == (5, 3, 2)
    assert raw_ids(settings) == [1, 3, 4]
    assert quarantine(settings) == [
        ("products.jsonl", 2, "malformed_row", ""),
        ("products.jsonl", 4, "malformed_row", ""),
    ]
    assert query(settings, "select price::varchar from raw.products where product_id = 3") == [("4.00",)]


# -- 5. zero-byte files -----------------------------------------------------------------------------


def test_a_zero_byte_file_is_recorded_and_the_entitys_other_files_load(tmp_path, folder):
    (folder / "products.csv").write_text(csv_text(product(1), product(2)))
    (folder / "products.part2.csv").write_bytes(b"")
    (folder / "products.part3.jsonl.gz").write_bytes(gzip.compress(b""))
    (folder / "products.part4.csv").write_text("\n \n")  # nothing but blank lines
    settings, results = extract(tmp_path, folder)
    r = results["products"]
    assert (r.read, r.loaded, r.quarantined) == (2, 2, 0)
    assert raw_ids(settings) == [1, 2]
    ledger = dict(query(settings, "select file, rows from audit.extract_files"))
    assert ledger == {
        "products.csv": 2,
        "products.part2.csv": 0,
        "products.part3.jsonl.gz": 0,
        "products.part4.csv": 0,
    }
    [(message,)] = query(settings, "select message from audit.extract_loads where entity = 'products'")
    assert (
        "products.part2.csv is empty (0 bytes)" in message and "products.part3.jsonl.gz is empty" in message
    )
    assert all(r.read == 0 for r in run_extract(settings))  # recorded: not read again


def test_an_entity_whose_only_file_is_empty_is_an_empty_load_not_a_failure(tmp_path, folder):
    (folder / "products.csv").write_bytes(b"")
    settings, results = extract(tmp_path, folder)
    r = results["products"]
    assert (r.status, r.read) == ("empty", 0)
    assert query(settings, "select file, rows from audit.extract_files") == [("products.csv", 0)]


def test_a_broken_compressed_file_is_reported_every_run_and_the_other_files_load(tmp_path, folder):
    (folder / "products.csv").write_text(csv_text(product(1), product(2)))
    whole = gzip.compress(csv_text(*(product(i) for i in range(3, 300))).encode())
    (folder / "products.part2.csv.gz").write_bytes(whole[: len(whole) // 2])  # a cut-off download
    (folder / "products.part3.parquet").write_bytes(b"product_id,sku\n9,S-9\n")  # not Parquet
    settings, results = extract(tmp_path, folder)
    r = results["products"]
    assert (r.read, r.loaded, r.quarantined) == (2, 2, 0)
    assert raw_ids(settings) == [1, 2]
    assert "products.part2.csv.gz cannot be read (" in r.message and "fix or replace the file" in r.message
    assert "products.part3.parquet cannot be read (" in r.message
    assert "SKU-" not in r.message and "S-9" not in r.message  # the files' content stays out
    assert [f for (f,) in query(settings, "select file from audit.extract_files")] == ["products.csv"]
    [again] = run_extract(settings)  # not forgotten: reported again until it is fixed
    assert again.read == 0 and "products.part2.csv.gz cannot be read" in again.message
    assert "products.part3.parquet cannot be read" in again.message


# -- 6. a header with an empty column name ----------------------------------------------------------


def test_a_header_with_an_empty_name_quarantines_that_files_rows_and_says_which_column(tmp_path, folder):
    (folder / "products.csv").write_text(csv_text(product(1), product(2)))
    header = HEADER.replace("name,", "name,,")  # column 4 has no name
    (folder / "products.part2.csv").write_text(
        csv_text(
            product(3).replace("Item 3,", "Item 3,x,"),
            product(4).replace("Item 4,", "Item 4,,"),
            header=header,
        )
    )
    settings, results = extract(tmp_path, folder)
    r = results["products"]
    assert (r.read, r.loaded, r.quarantined) == (4, 2, 2)
    assert raw_ids(settings) == [1, 2]
    assert quarantine(settings) == [
        ("products.part2.csv", 1, "unnamed_column", "column 4"),
        ("products.part2.csv", 2, "unnamed_column", "column 4"),
    ]
    [(record,)] = query(settings, "select record from quarantine.products where row = 1")
    assert json.loads(record)["unnamed_column_4"] == "x"  # the unnamed value is kept with the row
    assert "products.part2.csv: column 4 has no name" in r.message
    assert "unnamed_column_4" not in [c for c, *_ in query(settings, "describe raw.products")]


def test_a_json_key_that_is_empty_quarantines_that_files_rows(tmp_path, folder):
    lines = [product_json(1), json.dumps({**json.loads(product_json(2)), "": "x"})]
    (folder / "products.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "products.part2.csv").write_text(csv_text(product(3)))  # the entity's other file loads
    settings, results = extract(tmp_path, folder)
    r = results["products"]
    assert (r.read, r.loaded, r.quarantined) == (3, 1, 2)
    assert quarantine(settings) == [
        ("products.jsonl", 1, "unnamed_column", "column 9"),
        ("products.jsonl", 2, "unnamed_column", "column 9"),
    ]
    assert "products.jsonl: column 9 has no name" in r.message


# -- 7. oversized records ---------------------------------------------------------------------------


def test_a_json_line_over_the_default_one_megabyte_limit_is_quarantined_and_the_rest_loads(tmp_path, folder):
    huge = product_json(2, name="x" * (1 << 20))
    (folder / "products.jsonl").write_text("\n".join([product_json(1), huge, product_json(3)]) + "\n")
    settings, results = extract(tmp_path, folder)
    r = results["products"]
    assert (r.read, r.loaded, r.quarantined) == (3, 2, 1)
    assert raw_ids(settings) == [1, 3]
    [(file, line, reason, record)] = query(
        settings, "select file, row, reason, record from quarantine.products"
    )
    assert (file, line, reason) == ("products.jsonl", 2, "oversized_record")
    kept = json.loads(record)
    assert kept["bytes"] == len(huge) and len(kept["text"]) == 2000  # size on record, a preview of it


def test_a_csv_record_over_the_configured_limit_is_quarantined_and_later_records_keep_their_numbers(
    tmp_path, folder
):
    rows = [
        product(1),
        product(2, name="y" * 300),
        product(3),
        product(4, name="z" * 301),
        product(5, "1.001"),
    ]
    (folder / "products.csv.gz").write_bytes(gzip.compress(csv_text(*rows).encode()))
    settings, results = extract(tmp_path, folder, max_record_bytes=300)
    r = results["products"]
    assert (r.read, r.loaded, r.quarantined) == (5, 2, 3)
    assert r.reasons == {"oversized_record": 2, "excess_precision": 1}
    assert raw_ids(settings) == [1, 3]
    assert quarantine(settings) == [  # record numbers: the 5th record is still the 5th
        ("products.csv.gz", 2, "oversized_record", ""),
        ("products.csv.gz", 4, "oversized_record", ""),
        ("products.csv.gz", 5, "excess_precision", "price"),
    ]
    records = query(settings, "select record from quarantine.products where reason = 'oversized_record'")
    assert sorted(json.loads(r)["line"] for (r,) in records) == [3, 5]  # the physical line, in the record


def test_an_over_long_json_line_keeps_its_place_in_a_file_with_a_broken_line(tmp_path, folder):
    lines = [product_json(1), product_json(2, name="y" * 400), "{broken", product_json(3, price="0.001")]
    (folder / "products.jsonl").write_text("\n".join(lines) + "\n")
    settings, results = extract(tmp_path, folder, max_record_bytes=300)
    r = results["products"]
    assert (r.read, r.loaded, r.quarantined) == (4, 1, 3)
    assert quarantine(settings) == [
        ("products.jsonl", 2, "oversized_record", ""),
        ("products.jsonl", 3, "excess_precision", "price"),  # the 3rd record (the broken line is none)
        ("products.jsonl", 3, "malformed_row", ""),  # located by its line
    ]


def test_long_lines_are_found_across_block_boundaries_and_only_they_are_taken_out() -> None:
    from clarion.extract.formats import LongLines

    data = b"a\n" * 1000 + b"x" * 3_000_000 + b"\n" + b"b\n" * 5 + b"y" * (1 << 20) + b"\n" + b"z" * 2_000_001
    kept = LongLines(1 << 20, placeholder=b"X")
    out = b"".join(kept.feed(data[i : i + (1 << 20)]) for i in range(0, len(data), 1 << 20)) + kept.finish()
    assert [(f["line"], f["bytes"]) for f in kept.found] == [(1001, 3_000_000), (1008, 2_000_001)]
    # each long line gives way to the placeholder, in its place; a line of exactly the limit stays
    assert out == b"a\n" * 1000 + b"X\n" + b"b\n" * 5 + b"y" * (1 << 20) + b"\nX"


def test_a_record_limit_above_what_the_readers_can_hold_is_refused(tmp_path, folder):
    (folder / "products.csv").write_text(csv_text(product(1)))
    with pytest.raises(ConfigError, match=r"max_record_bytes.*less than or equal to 8388608"):
        extract(tmp_path, folder, max_record_bytes=9 << 20)


def test_a_csv_header_line_over_the_limit_makes_the_file_unreadable_not_a_shifted_header(tmp_path, folder):
    (folder / "products.csv").write_text(csv_text(product(1)))
    (folder / "products.part2.csv").write_text(csv_text(product(2), header=HEADER + ",note" + "n" * 400))
    _, results = extract(tmp_path, folder, max_record_bytes=300)
    r = results["products"]
    assert (r.read, r.loaded) == (1, 1)
    assert "products.part2.csv cannot be read (its header line is longer than max_record_bytes" in r.message


# -- 8. null markers --------------------------------------------------------------------------------


CONTACT_HEADER = (
    "contact_id,phone,country,signup_date,email_consent,email_consent_at,sms_consent,"
    "marketing_objection,updated_at"
)


def test_null_markers_in_a_csv_read_as_null_and_a_quoted_marker_stays_text(tmp_path, folder):
    (folder / "contacts.csv").write_text(
        csv_text(
            f"1,NULL,\\N,2024-01-01,true,N/A,false,false,{STAMP}",
            f'2,"NULL",,2024-01-01,true,,false,false,{STAMP}',
            header=CONTACT_HEADER,
        )
    )
    settings = make_settings(tmp_path / "p", {"shop": {"kind": "files", "path": str(folder)}})
    r = by_entity(run_extract(settings))["contacts"]
    assert (r.read, r.loaded, r.quarantined) == (2, 2, 0)
    rows = query(settings, "select contact_id, phone, country, email_consent_at from raw.contacts order by 1")
    assert rows == [(1, None, None, None), (2, "NULL", None, None)]


def test_the_null_markers_are_configurable(tmp_path, folder):
    (folder / "products.csv").write_text(csv_text(product(1, name="NULL"), product(2, price="-")))
    settings, _ = extract(tmp_path, folder, null_markers=["", "-"])
    assert quarantine(settings) == [("products.csv", 2, "missing_required", "price")]
    assert query(settings, "select name from raw.products") == [("NULL",)]


# -- 9. decimals with more digits than the contract keeps --------------------------------------------


def test_a_decimal_with_more_places_than_the_contract_keeps_is_quarantined_not_rounded(tmp_path, folder):
    (folder / "products.csv").write_text(
        csv_text(product(1, "12.345"), product(2, "12.500"), product(3, "7"), product(4, "0.001"))
    )
    settings, results = extract(tmp_path, folder)
    r = results["products"]
    assert (r.read, r.loaded, r.quarantined) == (4, 2, 2)
    assert quarantine(settings) == [
        ("products.csv", 1, "excess_precision", "price"),
        ("products.csv", 4, "excess_precision", "price"),
    ]
    prices = query(settings, "select product_id, price::varchar from raw.products order by 1")
    assert prices == [(2, "12.50"), (3, "7.00")]  # trailing zeros are not extra digits


def test_floating_point_prices_in_parquet_are_checked_with_a_tolerance(tmp_path, folder):
    n = 3
    table = pa.table(
        {
            "product_id": pa.array([1, 2, 3], pa.int64()),
            "sku": [f"S{i}" for i in range(n)],
            "name": [f"N{i}" for i in range(n)],
            "category": ["home"] * n,
            "price": pa.array([19.99, 0.1 + 0.2, 19.999], pa.float64()),  # 0.30000000000000004
            "currency": ["EUR"] * n,
            "active": [True] * n,
            "updated_at": [STAMP] * n,
        }
    )
    pq.write_table(table, folder / "products.parquet")
    settings, _ = extract(tmp_path, folder)
    assert quarantine(settings) == [("products.parquet", 3, "excess_precision", "price")]
    assert query(settings, "select price::varchar from raw.products order by 1") == [("0.30",), ("19.99",)]
