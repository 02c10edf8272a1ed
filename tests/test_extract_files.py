"""Extract from files: every row accounted for, defects quarantined exactly, incremental, idempotent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from crm_oracle import read_text
from extract_helpers import (
    accounting,
    by_entity,
    defects,
    make_settings,
    quarantined,
    query,
    raw_fingerprint,
    run_extract,
)

from clarion.config import GenerateSettings
from clarion.contract import ENTITIES
from clarion.extract.readers import ExtractError
from clarion.synth.generator import generate


@pytest.fixture(scope="module", params=["crm_csv", "crm_parquet"])
def extracted(request, tmp_path_factory):
    """The shared 2,000-contact export with 2% defects, extracted once per format."""
    folder, manifest = request.getfixturevalue(request.param)
    settings = make_settings(
        tmp_path_factory.mktemp("extract"), {"crm": {"kind": "files", "path": str(folder)}}
    )
    results = run_extract(settings)
    return folder, manifest, settings, results


def test_every_injected_defect_is_quarantined_with_its_reason_and_nothing_else(extracted) -> None:
    folder, _, settings, _ = extracted
    expected = {
        (d["file"], int(d["row"])): d["reason"] for d in defects(folder) if d["expected"] == "quarantine"
    }
    found = quarantined(settings)
    assert len(expected) > 500
    assert {k: v for k, v in expected.items() if k not in found} == {}, "defects that reached raw"
    assert {k: v for k, v in found.items() if k not in expected} == {}, "clean rows quarantined"
    assert {k: (v, found[k]) for k, v in expected.items() if found[k] != v} == {}, "wrong reasons"


def test_every_bad_optional_field_loads_nulled_with_a_finding_and_nothing_else(extracted) -> None:
    """The generator's ledger (rows expected as ``finding``) against quarantine.field_findings: the same
    (file, row, field, reason) set, each row in raw with that field NULL and none in quarantine."""
    folder, _, settings, results = extracted
    listed = [d for d in defects(folder) if d["expected"] == "finding"]
    expected = {(d["file"], int(d["row"])): (d["column"], d["reason"]) for d in listed}
    found = {
        (file, int(row)): (field, reason)
        for file, row, field, reason in query(
            settings, "select file, row, field, reason from quarantine.field_findings"
        )
    }
    assert len(expected) > 10
    assert found == expected
    assert not set(expected) & set(quarantined(settings))
    for d in listed[:20]:
        e = ENTITIES[d["entity"]]
        [(value,)] = query(
            settings, f'select "{d["column"]}" from raw."{e.name}" where {e.primary_key} = ?', [int(d["key"])]
        )
        assert value is None, d
    # a contact loaded with a finding keeps its orders; a rejected contact's orders cascade as orphans
    kept = [int(d["key"]) for d in defects(folder) if d["kind"] == "child_of_finding"]
    cascaded = {d["key"] for d in defects(folder) if d["kind"] == "orphaned_child"}
    assert kept and cascaded
    [(in_raw,)] = query(
        settings, f"select count(*) from raw.orders where order_id in ({', '.join(map(str, kept))})"
    )
    assert in_raw == len(kept)
    orphaned = query(settings, "select key from quarantine.orders where reason = 'orphan'")
    assert cascaded <= {k for (k,) in orphaned}
    counted = {r.entity: sum(r.findings.values()) for r in results}
    for entity in ENTITIES:
        assert counted.get(entity, 0) == sum(1 for d in listed if d["entity"] == entity), entity


def test_every_row_read_is_loaded_or_quarantined_and_the_counts_match_the_files(extracted) -> None:
    folder, manifest, settings, results = extracted
    listed = defects(folder)
    for entity, info in manifest["entities"].items():
        r = by_entity(results)[entity]
        bad = sum(1 for d in listed if d["entity"] == entity and d["expected"] == "quarantine")
        assert sum(r.findings.values()) == sum(
            1 for d in listed if d["entity"] == entity and d["expected"] == "finding"
        ), entity
        assert r.read == info["rows"], entity  # every row of every file of the entity was read
        assert r.read == r.loaded + r.quarantined, entity
        assert r.quarantined == bad, entity
        assert raw_fingerprint(settings, entity)[0] == info["rows"] - bad, entity
    for row in accounting(settings):
        assert row["read"] == row["loaded"] + row["quarantined"]


def test_raw_holds_exactly_the_rows_that_are_not_defects_with_their_values(extracted) -> None:
    folder, manifest, settings, _ = extracted
    bad_rows = {
        int(d["row"])
        for d in defects(folder)
        if d["file"].startswith("orders.")
        and d["file"] == manifest["entities"]["orders"]["files"][0]
        and d["expected"] == "quarantine"
    }
    orders = read_text(folder / manifest["entities"]["orders"]["files"][0])
    clean = orders[~(orders.index + 1).isin(bad_rows)]
    raw = dict(query(settings, "select order_id, cast(total_amount as varchar) from raw.orders"))
    assert len(raw) == len(clean)
    for order_id, total in zip(clean["order_id"].astype(int), clean["total_amount"], strict=True):
        assert raw[order_id] == total


def test_an_untrimmed_email_loads_normalised_and_a_new_column_is_kept(extracted) -> None:
    folder, _, settings, results = extracted
    untrimmed = [d for d in defects(folder) if d["kind"] == "untrimmed_value"]
    for d in untrimmed:
        [(email,)] = query(settings, "select email from raw.contacts where contact_id = ?", [int(d["key"])])
        assert email == email.strip().lower() and "@example." in email
    assert "loyalty_tier" in by_entity(results)["contacts"].new_columns
    (tiers,) = query(settings, "select count(loyalty_tier) from raw.contacts")[0]
    assert tiers == sum(1 for d in defects(folder) if d["kind"] == "extra_column")


def test_a_file_missing_a_column_its_siblings_have_is_rejected_whole_with_a_message(extracted) -> None:
    _, _, settings, results = extracted
    orders = by_entity(results)["orders"]
    [(file, missing)] = orders.rejected_files.items()
    assert file.startswith("orders.part2.") and missing == ["currency"]
    assert "lacks currency" in orders.message
    rows = query(settings, "select distinct reason, field from quarantine.orders where file = ?", [file])
    assert rows == [("missing_column", "currency")]
    assert "e_mail" not in [
        c for c, *_ in query(settings, "describe raw.contacts")
    ]  # the rejected file's name


def test_running_again_reads_nothing_and_changes_nothing(tmp_path: Path, crm_csv) -> None:
    folder, _ = crm_csv
    settings = make_settings(tmp_path, {"crm": {"kind": "files", "path": str(folder)}})
    run_extract(settings)
    before = {e: raw_fingerprint(settings, e) for e in ENTITIES}
    (quarantine_before,) = query(settings, "select count(*) from quarantine.orders")[0]
    again = run_extract(settings)
    assert all(r.status == "unchanged" and r.read == 0 for r in again)
    assert {e: raw_fingerprint(settings, e) for e in ENTITIES} == before
    assert query(settings, "select count(*) from quarantine.orders")[0][0] == quarantine_before


@pytest.fixture
def small_crm(tmp_path: Path) -> Path:
    return generate(GenerateSettings(customers=300, seed=21, defects=0.0), out=tmp_path / "crm").out


def test_a_new_file_inserts_new_rows_updates_newer_versions_and_ignores_older_ones(
    tmp_path, small_crm
) -> None:
    settings = make_settings(tmp_path, {"crm": {"kind": "files", "path": str(small_crm)}})
    run_extract(settings)
    orders = read_text(small_crm / "orders.csv")
    # orders not cancelled now, so the late "cancelled" version below is told apart from raw's
    sample = orders[orders["status"] != "cancelled"].head(10)
    rows = sample.to_dict("records")
    newer, same, older = rows[:3], rows[3:5], rows[5:6]
    for r in newer:
        r.update(status="returned", updated_at="2026-07-01T10:00:00Z")
    for r in older:
        r.update(status="cancelled", updated_at="2022-01-01T00:00:00Z")
    fresh = [dict(rows[6], order_id=str(10_000_000 + i)) for i in range(4)]
    part = [*newer, *same, *older, *fresh]
    table = pa.table({c: pa.array([r[c] or None for r in part], pa.string()) for c in orders.columns})
    pacsv.write_csv(table, small_crm / "orders.part9.csv")
    result = by_entity(run_extract(settings))["orders"]
    assert (result.read, result.inserted, result.updated, result.unchanged, result.superseded) == (
        10,
        4,
        3,
        2,
        1,
    )
    ids = [int(newer[0]["order_id"]), int(older[0]["order_id"])]
    statuses = dict(query(settings, "select order_id, status from raw.orders where order_id in (?, ?)", ids))
    assert statuses[ids[0]] == "returned"
    assert statuses[ids[1]] != "cancelled"  # an older version never overwrites a newer one
    # what raw held before the update, and the late older version, are kept as history (features as
    # of an earlier day read an order's state then); the unchanged and the new rows are not
    history = query(
        settings,
        "select order_id, status, strftime(updated_at at time zone 'UTC', '%Y-%m-%d') "
        "from raw.orders_history order by order_id",
    )
    before = {int(r["order_id"]): (r["status"], r["updated_at"][:10]) for r in sample.to_dict("records")}
    expected = sorted(
        [(int(r["order_id"]), *before[int(r["order_id"])]) for r in newer]
        + [(int(older[0]["order_id"]), "cancelled", "2022-01-01")]
    )
    assert sorted(history) == expected
    assert all(r.read == 0 for r in run_extract(settings))  # and nothing changes the next time
    assert len(query(settings, "select * from raw.orders_history")) == len(expected)  # kept once


def test_a_fixed_file_replaces_what_its_earlier_version_put_in_quarantine(tmp_path) -> None:
    crm = generate(GenerateSettings(customers=200, seed=5, defects=0.03), out=tmp_path / "crm").out
    settings = make_settings(tmp_path, {"crm": {"kind": "files", "path": str(crm)}})
    run_extract(settings)
    part = next(crm.glob("orders.part2.*"))
    assert query(settings, "select count(*) from quarantine.orders where file = ?", [part.name])[0][0] > 0
    fixed = pacsv.read_csv(part)
    fixed = fixed.append_column("currency", pa.array(["EUR"] * fixed.num_rows))
    pacsv.write_csv(fixed, part)
    result = by_entity(run_extract(settings))["orders"]
    assert result.inserted == fixed.num_rows and result.quarantined == 0
    assert query(settings, "select count(*) from quarantine.orders where file = ?", [part.name])[0][0] == 0


KILLER = """
import sys
sys.path.insert(0, {tests!r})
from clarion.runtime import configure_logging
configure_logging("INFO")
from extract_helpers import make_settings, run_extract
from pathlib import Path
settings = make_settings(Path({root!r}), {{"crm": {{"kind": "files", "path": {crm!r}}}}})
run_extract(settings)
"""


@pytest.mark.parametrize("kill_after", ["crm/orders: published", "crm/email_events: landed"])
def test_a_killed_extract_rerun_ends_with_the_same_raw_as_a_clean_run(tmp_path, kill_after) -> None:
    crm = generate(GenerateSettings(customers=800, seed=8, defects=0.01), out=tmp_path / "crm").out
    clean = make_settings(tmp_path / "clean", {"crm": {"kind": "files", "path": str(crm)}})
    run_extract(clean)
    victim_root = tmp_path / "victim"
    code = KILLER.format(tests=str(Path(__file__).parent), root=str(victim_root), crm=str(crm))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, env=env)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if kill_after in line:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen[-20:])
    victim = make_settings(victim_root, {"crm": {"kind": "files", "path": str(crm)}})
    run_extract(victim)
    for entity in ENTITIES:
        assert raw_fingerprint(victim, entity) == raw_fingerprint(clean, entity), entity
    for entity in ENTITIES:
        assert query(victim, f'select count(*) from quarantine."{entity}"') == query(
            clean, f'select count(*) from quarantine."{entity}"'
        ), entity


# -- mappings, formats and a transactions-only export ---------------------------------------------


def test_transactions_with_text_customer_ids_derive_stable_numeric_contacts(tmp_path: Path) -> None:
    export = tmp_path / "shop"
    export.mkdir()
    (export / "orders_export.csv").write_text(
        "customer,day,value\nK-1042,2025-01-05,10.00\nK-1042,2025-02-05,12.00\nA-7,2025-02-06,3.50\n"
    )
    sources = {
        "shop": {
            "kind": "files",
            "path": str(export),
            "entities": {},
            "transactions": {
                "files": ["orders_export.csv"],
                "columns": {"customer": "contact_id", "day": "ordered_at", "value": "total_amount"},
            },
        }
    }
    settings = make_settings(tmp_path, sources)
    run_extract(settings)
    contacts = dict(query(settings, "select source_customer_id, contact_id from raw.contacts"))
    assert set(contacts) == {"K-1042", "A-7"} and len(set(contacts.values())) == 2
    orders = query(settings, "select contact_id, count(*) from raw.orders group by 1 order by 2")
    assert orders == [(contacts["A-7"], 1), (contacts["K-1042"], 2)]
    second = make_settings(tmp_path / "again", sources)  # another warehouse, the same file
    run_extract(second)
    assert dict(query(second, "select source_customer_id, contact_id from raw.contacts")) == contacts


def test_transactions_derive_contacts_and_orders_and_quarantine_bad_rows(tmp_path: Path) -> None:
    export = tmp_path / "shop"
    export.mkdir()
    (export / "sales_2025.csv").write_text(
        "Kunde;Datum;Betrag;Stück\n"
        "101;03.02.2025;19,99;1\n"
        "101;04.03.2025;5,00;2\n"
        "102;04.03.2025;1.250,50;1\n"
        "102;04.03.2025;1.250,50;1\n"
        ";05.03.2025;10,00;1\n"
        "103;31.02.2025;10,00;1\n"
        "103;06.03.2025;-4,00;1\n",
        encoding="utf-8",
    )
    sources = {
        "shop": {
            "kind": "files",
            "path": str(export),
            "entities": {},
            "transactions": {
                "files": ["sales_*.csv"],
                "delimiter": ";",
                "date_format": "%d.%m.%Y",
                "decimal_separator": ",",
                "columns": {
                    "Kunde": "contact_id",
                    "Datum": "ordered_at",
                    "Betrag": "total_amount",
                    "Stück": "quantity",
                },
            },
        }
    }
    settings = make_settings(tmp_path, sources)
    results = run_extract(settings)
    tx = next(r for r in results if r.entity == "transactions")
    assert (tx.read, tx.loaded, tx.quarantined) == (7, 4, 3)
    assert tx.reasons == {"missing_required": 1, "invalid_date": 1, "out_of_range": 1}
    contacts = query(
        settings, "select contact_id, signup_date::varchar, email_consent from raw.contacts order by 1"
    )
    assert contacts == [(101, "2025-02-03", False), (102, "2025-03-04", False)]
    orders = query(settings, "select contact_id, total_amount::varchar from raw.orders order by 1, 2")
    assert orders == [(101, "19.99"), (101, "5.00"), (102, "1250.50"), (102, "1250.50")]
    reversed_rows = (export / "sales_2025.csv").read_text().splitlines()
    (export / "sales_2025.csv").write_text("\n".join([reversed_rows[0], *reversed(reversed_rows[1:])]) + "\n")
    again = run_extract(settings)  # the same history re-sorted: the same orders, no duplicates
    assert query(settings, "select count(*) from raw.orders")[0][0] == 4
    assert next(r for r in again if r.entity == "orders").inserted == 0


def test_whitespace_separated_latin1_file_with_a_mapping_and_a_date_format(tmp_path: Path) -> None:
    export = tmp_path / "legacy"
    export.mkdir()
    text = (
        "id   first    last      mail                      land joined      email sms  objected changed\n"
        "1    José     Muñoz     jose@example.com          ES   03/02/2024  true  false false  2024-02-03T10:00:00Z\n"
        "2    Zoë      Öberg     zoe@example.org           SE   15/06/2023  false false false  2023-06-15T09:30:00Z\n"
    )
    (export / "contacts.txt").write_bytes(text.encode("latin-1"))
    sources = {
        "legacy": {
            "kind": "files",
            "path": str(export),
            "entities": {
                "contacts": {
                    "files": ["contacts.txt"],
                    "delimiter": "whitespace",
                    "encoding": "latin-1",
                    "date_format": "%d/%m/%Y",
                    "columns": {
                        "id": "contact_id",
                        "first": "first_name",
                        "last": "last_name",
                        "mail": "email",
                        "land": "country",
                        "joined": "signup_date",
                        "email": "email_consent",
                        "sms": "sms_consent",
                        "objected": "marketing_objection",
                        "changed": "updated_at",
                    },
                }
            },
        }
    }
    settings = make_settings(tmp_path, sources)
    [result] = run_extract(settings)
    assert (result.read, result.loaded, result.quarantined) == (2, 2, 0)
    rows = query(
        settings, "select first_name, last_name, signup_date::varchar from raw.contacts order by contact_id"
    )
    assert rows == [("José", "Muñoz", "2024-02-03"), ("Zoë", "Öberg", "2023-06-15")]


def test_json_lines_and_a_malformed_csv_line_are_accounted_for(tmp_path: Path) -> None:
    export = tmp_path / "mixed"
    export.mkdir()
    (export / "products.jsonl").write_text(
        json.dumps(
            {
                "product_id": 1,
                "sku": "A-1",
                "name": "Mug",
                "category": "home",
                "price": 12.5,
                "currency": "EUR",
                "active": True,
                "updated_at": "2025-01-01T00:00:00Z",
            }
        )
        + "\n"
        + json.dumps(
            {
                "product_id": 2,
                "sku": "A-2",
                "name": "Cap",
                "category": "hats",
                "price": 9,
                "currency": "EUR",
                "active": True,
                "updated_at": "2025-01-01T00:00:00Z",
            }
        )
        + "\n"
    )
    header = ",".join(ENTITIES["consents"].column_names)
    (export / "consents.csv").write_text(
        header + "\n"
        "1,7,email,opt_in,2025-01-01T00:00:00Z,web_form,consent\n"
        "2,7,email,opt_out,2025-02-01T00:00:00Z\n"  # two fields short: cannot be parsed
        "3,7,sms,opt_in,2025-03-01T00:00:00Z,checkout,consent\n"
    )
    settings = make_settings(tmp_path, {"mixed": {"kind": "files", "path": str(export)}})
    results = by_entity(run_extract(settings))
    assert (results["products"].loaded, results["products"].reasons) == (1, {"invalid_enum": 1})
    consents = results["consents"]
    # consent 1 and 3 reference contact 7, which no contacts file provides: orphans, kept with a reason
    assert (consents.read, consents.loaded, consents.quarantined) == (3, 0, 3)
    assert consents.reasons == {"malformed_row": 1, "orphan": 2}
    [(line, record)] = query(
        settings, "select row, record from quarantine.consents where reason = 'malformed_row'"
    )
    assert line == 3 and "opt_out" in record


def test_clear_errors_for_a_missing_folder_an_unknown_source_and_a_mapping_clash(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, {"crm": {"kind": "files", "path": str(tmp_path / "nowhere")}})
    with pytest.raises(ExtractError, match=r"source crm: folder .*nowhere does not exist.*clarion generate"):
        run_extract(settings)
    with pytest.raises(ExtractError, match="no source named 'other'; configured: crm"):
        run_extract(settings, source="other")
    export = tmp_path / "clash"
    export.mkdir()
    (export / "products.csv").write_text("id,product_id\n1,2\n")
    clash = make_settings(
        tmp_path,
        {
            "x": {
                "kind": "files",
                "path": str(export),
                "entities": {"products": {"columns": {"id": "product_id"}}},
            }
        },
    )
    with pytest.raises(ExtractError, match="'id' and 'product_id' both map to 'product_id'"):
        run_extract(clash)


def test_a_run_that_finds_nothing_new_is_still_on_record(tmp_path: Path, small_crm) -> None:
    settings = make_settings(tmp_path, {"crm": {"kind": "files", "path": str(small_crm)}})
    run_extract(settings, run_id="first")
    run_extract(settings, run_id="second")
    rows = query(settings, "select status, read, message from audit.extract_loads where run_id = 'second'")
    assert len(rows) == len(ENTITIES)
    assert {r for r in rows} == {("unchanged", 0, "no new or changed file")}
