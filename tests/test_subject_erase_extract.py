"""Erasure without a pipeline run: the suppression list at extract (read = loaded + quarantined +
suppressed), the old audit.erasures moved onto it, and the refusals of `clarion subject erase`."""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from extract_helpers import make_settings, query, run_extract
from nba_oracle import erased_ids

from clarion.config import GenerateSettings
from clarion.content.store import ensure_tables
from clarion.privacy import suppression
from clarion.subject.erase import EraseError, compact_file, erase
from clarion.synth.generator import generate
from clarion.warehouse import Warehouse

ENTITIES = ("contacts", "orders", "order_items", "email_events", "support_tickets", "consents")


def _frames(crm: Path) -> dict[str, pd.DataFrame]:
    return {e: pd.read_csv(crm / f"{e}.csv", dtype=str, keep_default_na=False) for e in ENTITIES}


def _rows_of(frames: dict[str, pd.DataFrame], contact_id: int) -> dict[str, int]:
    """The person's rows in each file, counted from the files alone."""
    cid = str(contact_id)
    orders = set(frames["orders"].loc[frames["orders"]["contact_id"].str.strip() == cid, "order_id"])
    out = {}
    for e, f in frames.items():
        if e == "order_items":
            out[e] = int(f["order_id"].isin(orders).sum())
        else:
            out[e] = int((f["contact_id"].str.strip() == cid).sum())
    return out


@pytest.fixture
def extracted(tmp_path: Path):
    crm = tmp_path / "crm"
    generate(GenerateSettings(customers=300, seed=5, defects=0.0), out=crm)
    frames = _frames(crm)
    busy = frames["orders"]["contact_id"].value_counts()
    person = int(busy.index[0])  # the customer with the most orders
    # one of their e-mail events breaks the contract: it goes to quarantine on the first read
    bad = frames["email_events"].index[frames["email_events"]["contact_id"] == str(person)][0]
    frames["email_events"].loc[bad, "event_type"] = "teleported"
    for e, f in frames.items():
        f.to_csv(crm / f"{e}.csv", index=False, quoting=csv.QUOTE_ALL)
    settings = make_settings(tmp_path / "project", {"crm": {"kind": "files", "path": str(crm)}})
    run_extract(settings, run_id="first")
    return settings, crm, person


def test_a_suppressed_person_is_dropped_before_raw_and_quarantine_and_counted(extracted) -> None:
    settings, crm, person = extracted
    assert query(settings, "select count(*) from quarantine.email_events where key is not null")[0][0] == 1
    erase(settings, str(person), "REQ-1", compact=False)
    for e in ENTITIES:
        assert query(settings, f'select count(*) from quarantine."{e}"') == [(0,)], e
    frames = _frames(crm)
    expected = _rows_of(frames, person)
    for e, f in frames.items():  # the CRM exports again, still holding them (other quoting, same records)
        f.to_csv(crm / f"{e}.csv", index=False, quoting=csv.QUOTE_MINIMAL)

    results = run_extract(settings, run_id="second")

    by = {r.entity: r for r in results if r.entity in ENTITIES}
    assert {e: by[e].suppressed for e in ENTITIES} == expected
    assert all(r.read == r.loaded + r.quarantined + r.suppressed for r in results)
    assert all(v > 0 for v in expected.values())  # every entity really had rows of theirs
    recorded = dict(
        query(settings, "select entity, suppressed from audit.extract_loads where run_id = 'second'")
    )
    assert {e: recorded[e] for e in ENTITIES} == expected
    for e in ("contacts", "orders", "email_events", "support_tickets", "consents"):
        assert query(settings, f'select count(*) from raw."{e}" where contact_id = ?', [person]) == [(0,)]
    assert query(settings, "select count(*) from quarantine.email_events") == [(0,)]  # not even quarantined
    others = int(frames["contacts"]["contact_id"].ne(str(person)).sum())
    assert query(settings, "select count(*) from raw.contacts") == [(others,)]
    # nor do the working files of the load keep them (dlt's load packages, the landing zone)
    working = [settings.var_dir / "dlt", settings.var_dir / "landing"]
    assert settings.var_dir.exists()
    landed = sorted(p for folder in working if folder.exists() for p in folder.rglob("*.parquet"))
    # published loads keep no working files at all (docs/privacy.md); any file left is read below
    con = duckdb.connect()
    try:
        for path in landed:
            columns = [r[0] for r in con.execute(f"describe select * from read_parquet('{path}')").fetchall()]
            if "contact_id" in columns:
                sql = f"select count(*) from read_parquet('{path}') where cast(contact_id as varchar) = ?"
                assert con.execute(sql, [str(person)]).fetchone()[0] == 0, path
    finally:
        con.close()


def test_without_suppressions_the_accounting_is_unchanged(extracted) -> None:
    settings, _, _ = extracted
    rows = query(settings, "select read, loaded, quarantined, suppressed from audit.extract_loads")
    assert rows and all(s == 0 and r == lo + q for r, lo, q, s in rows)


def test_an_old_erasures_table_of_raw_ids_moves_onto_the_suppression_list(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    for schema in ("audit", "content"):
        con.execute(f"create schema {schema}")
    con.execute(
        "create table audit.erasures (contact_id bigint, requested_at timestamptz, reference varchar)"
    )
    con.execute("insert into audit.erasures values (5, now(), 'ticket 9')")

    ensure_tables(con)  # what the content stage does first

    columns = [r[0] for r in con.execute("describe audit.erasures").fetchall()]
    assert "contact_id" not in columns
    assert con.execute("select reference from audit.erasures").fetchall() == [("ticket 9",)]
    assert erased_ids(con, [4, 5, 6]) == {5}
    flags = con.execute(
        f"select x, {suppression.erased_sql(con, 'x')} from unnest([4, 5, 6]) t(x) order by x"
    ).fetchall()
    assert flags == [(4, False), (5, True), (6, False)]
    con.close()


def test_erase_refuses_an_unknown_person_a_missing_reference_and_a_second_erasure(extracted) -> None:
    settings, _, person = extracted
    with pytest.raises(EraseError, match="no contact with that e-mail"):
        erase(settings, "nobody@nowhere.example", "REQ-2")
    with pytest.raises(EraseError, match="no contact 999999999"):
        erase(settings, "999999999", "REQ-2")
    with pytest.raises(EraseError, match="--reference is required"):
        erase(settings, str(person), " ")
    dry = erase(settings, str(person), "REQ-2", dry_run=True)
    before = query(settings, "select count(*) from raw.contacts where contact_id = ?", [person])
    assert dry["dry_run"] and dry["rows"]["raw.contacts"] == 1 and before == [(1,)]  # nothing changed
    erase(settings, str(person), "REQ-2", compact=False)
    with pytest.raises(EraseError, match="erased already") as err:
        erase(settings, str(person), "REQ-3")
    assert err.value.exit_code == 2


def test_deleted_rows_stay_in_the_file_until_it_is_compacted(extracted) -> None:
    settings, _, person = extracted
    [(email,)] = query(settings, "select email from raw.contacts where contact_id = ?", [person])
    [(contacts,)] = query(settings, "select count(*) from raw.contacts")
    path = settings.warehouse.path
    assert email.encode() in path.read_bytes()

    erase(settings, str(person), "REQ-4", compact=False)
    assert email.encode() in path.read_bytes()  # a plain delete leaves it readable in a copy of the file
    warehouse = Warehouse.from_settings(settings)
    with warehouse.writing("test compact"):
        compact_file(warehouse)

    assert email.encode() not in path.read_bytes()
    assert query(settings, "select count(*) from raw.contacts") == [(contacts - 1,)]  # the rest intact
    assert query(settings, "select count(*) from privacy.suppressions where reference = 'REQ-4'")[0][0] >= 2
