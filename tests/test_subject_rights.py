"""Data-subject rights on a real pipeline run: access (Art. 15), correct (Art. 16), object (Art. 21).

A copy of the shared ``small_run`` project gets a correction for one person (A) and an objection from
another (B), then runs the pipeline again (extract, transform, segment, nba with the repository's
briefs). Every expectation is counted from the warehouse or the source file by the test itself.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import re
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner
from project_helpers import run_pipeline_in

from clarion.cli import cli

pytestmark = pytest.mark.usefixtures("prefect_server")
REPO = Path(__file__).resolve().parents[1]
STAGES = ["prepare", "extract", "transform", "segment", "nba"]
NEW_EMAIL = "a.new.address@example.com"


def _q(root: Path, sql: str, params: Any = None) -> list[tuple]:
    con = duckdb.connect(str(root / "var" / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def _cli(root: Path, *args: str):
    return CliRunner().invoke(cli, ["--config", str(root / "clarion.yaml"), *args])


def _pseudonym(root: Path, contact_id: int) -> str:
    """HMAC-SHA256 of "contact:<id>" under the key kept in the warehouse, computed here."""
    [(key,)] = _q(root, "select key from privacy.keys where name = 'pseudonym'")
    return "p_" + hmac.new(bytes(key), f"contact:{contact_id}".encode(), hashlib.sha256).hexdigest()[:16]


def _events(root: Path, action: str) -> list[tuple[str, dict]]:
    rows = _q(root, "select subject, details from audit.events where action = ? order by seq", [action])
    return [(s, json.loads(d)) for s, d in rows]


def _source_contact(root: Path, contact_id: int) -> dict[str, str]:
    with (root / "var" / "crm" / "contacts.csv").open(newline="", encoding="utf-8") as fh:
        return next(r for r in csv.DictReader(fh) if r["contact_id"] == str(contact_id))


@pytest.fixture(scope="module")
def rights(small_run, tmp_path_factory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("rights") / "project"
    shutil.copytree(small_run["root"], root)
    shutil.copytree(REPO / "campaigns", root / "campaigns")
    first = small_run["result"]["run_id"]
    # A and B: scored in the first run, no objection, an e-mail and a phone (A's are corrected away)
    people = _q(
        root,
        "select c.contact_id, c.email, c.country from raw.contacts c join ml.customer_scores s "
        "on s.contact_id = c.contact_id and s.run_id = ? where not c.marketing_objection "
        "and c.email is not null and c.phone is not null order by c.contact_id limit 2",
        [first],
    )
    (a, a_email, a_country), (b, _, _) = people
    country = "IE" if a_country != "IE" else "BE"
    corrected = _cli(
        root,
        "subject",
        "correct",
        f"  {a_email.upper()} ",  # found by e-mail: trimmed, any case
        f"country={country}",
        f"email= {NEW_EMAIL.upper()} ",
        "phone=",
        "--reference",
        "DSR-A",
        "--json",
    )
    assert corrected.exit_code == 0, corrected.output
    objected = _cli(root, "subject", "object", str(b), "--reference", "DSR-B")
    assert objected.exit_code == 0, objected.output
    result = run_pipeline_in(root, stages=STAGES)
    assert result["status"] == "completed"
    return {
        "root": root,
        "a": a,
        "a_email": a_email,
        "country": country,
        "b": b,
        "first": first,
        "result": result,
        "correct_output": json.loads(corrected.output),
    }


@pytest.mark.slow  # the module's pipeline run (about a minute) after small_run
def test_a_correction_takes_effect_on_the_next_run_while_the_source_keeps_the_old_value(rights) -> None:
    root, a = rights["root"], rights["a"]
    source = _source_contact(root, a)  # the CRM export still holds the old values
    assert source["email"] == rights["a_email"] and source["phone"] and source["country"] != rights["country"]
    [(email, country, phone)] = _q(
        root, "select email, country, phone from raw.contacts where contact_id = ?", [a]
    )
    assert (email, country, phone) == (
        NEW_EMAIL,
        rights["country"],
        None,
    )  # e-mail lower-cased, phone cleared
    [(mart_country,)] = _q(root, "select country from marts.dim_customers where contact_id = ?", [a])
    assert mart_country == rights["country"]
    # the contacts load of this run says how many values the overlay set: A's 3 fields and B's objection
    [(message,)] = _q(
        root,
        "select message from audit.extract_loads where run_id = ? and entity = 'contacts'",
        [rights["result"]["run_id"]],
    )
    assert re.search(r"\b4 value\(s\) set by recorded corrections/objections", message), message
    # kept in the overlay with the reference, newest per field; audited by pseudonym, counts only
    kept = dict(_q(root, "select field, value from privacy.corrections where contact_id = ?", [a]))
    assert kept == {"country": rights["country"], "email": NEW_EMAIL, "phone": None}
    assert rights["correct_output"]["looked_up"] == "e-mail"
    assert _events(root, "subject.corrected") == [(_pseudonym(root, a), {"fields": 3})]


@pytest.mark.slow  # the module's pipeline run (about a minute) after small_run
def test_a_source_row_that_changes_again_does_not_bring_the_old_value_back(rights, tmp_path) -> None:
    root = tmp_path / "project"
    shutil.copytree(rights["root"], root)
    a = rights["a"]
    path = root / "var" / "crm" / "contacts.csv"
    rows = list(csv.DictReader(path.open(newline="", encoding="utf-8")))
    for r in rows:  # the CRM changes A's record (a later update), still with the old e-mail and country
        if r["contact_id"] == str(a):
            r["updated_at"] = "2026-12-01T10:00:00Z"
            r["first_name"] = r["first_name"] + "x"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), quoting=csv.QUOTE_ALL)
        writer.writeheader()
        writer.writerows(rows)
    result = run_pipeline_in(root, stages=["extract"])
    assert result["status"] == "completed"
    [(updated, message)] = _q(
        root,
        "select updated, message from audit.extract_loads where run_id = ? and entity = 'contacts'",
        [result["run_id"]],
    )
    assert updated == 1  # the source's new version replaced raw's row ...
    assert re.search(r"\b3 value\(s\) set by", message), message  # ... the overlay: e-mail, country, phone
    [(email, country, phone, name)] = _q(
        root, "select email, country, phone, first_name from raw.contacts where contact_id = ?", [a]
    )
    assert (email, country, phone) == (NEW_EMAIL, rights["country"], None) and name.endswith("x")


@pytest.mark.slow  # the module's pipeline run (about a minute) after small_run
def test_an_objector_is_not_scored_segmented_or_decided_from_the_next_run(rights) -> None:
    root, b, run_id = rights["root"], rights["b"], rights["result"]["run_id"]
    segment = rights["result"]["stages"]["segment"]
    scored = {r[0] for r in _q(root, "select contact_id from ml.customer_scores where run_id = ?", [run_id])}
    before = {
        r[0]
        for r in _q(root, "select contact_id from ml.customer_scores where run_id = ?", [rights["first"]])
    }
    assert b in before and b not in scored
    objectors = {r[0] for r in _q(root, "select contact_id from raw.contacts where marketing_objection")}
    objectors |= {r[0] for r in _q(root, "select contact_id from privacy.objections")}
    features = {r[0] for r in _q(root, "select contact_id from marts.customer_features")}
    assert b in objectors and len(objectors & features) > 1  # the CRM's objectors too
    assert scored == features - objectors
    assert segment["not_profiled"] == {"objection": len(objectors & features)}
    assert segment["customers"] == len(features) - len(objectors & features)
    [(flag,)] = _q(root, "select marketing_objection from marts.dim_customers where contact_id = ?", [b])
    assert flag is True
    # next best action: decisions for the scored customers, none for an objector
    nba_run = rights["result"]["stages"]["nba"]["nba_run_id"]
    decided = {
        r[0] for r in _q(root, "select contact_id from ml.next_best_action where nba_run_id = ?", [nba_run])
    }
    assert decided and not decided & objectors
    # the content export's audience is the scoring run's members: no objector is among them
    [(in_audience,)] = _q(
        root,
        "select count(*) from ml.customer_scores where run_id = ? and contact_id in (select unnest(?))",
        [run_id, sorted(objectors)],
    )
    assert in_audience == 0
    assert _events(root, "subject.objected") == [
        (_pseudonym(root, b), {"objections": 1, "already_recorded": 0})
    ]


@pytest.mark.slow  # the module's pipeline run (about a minute) after small_run
def test_objectors_are_left_out_of_training_snapshots(rights) -> None:
    from datetime import date, timedelta

    from clarion.config import load_settings
    from clarion.segment import snapshots

    root, b = rights["root"], rights["b"]
    settings = load_settings(root / "clarion.yaml", env={})
    [(as_of,)] = _q(root, "select max(as_of) from marts.customer_features")
    day = as_of - timedelta(days=90)
    frame = snapshots.build(settings, [day], settings.segment.horizon_days)
    signed_up = {r[0] for r in _q(root, "select contact_id from raw.contacts where signup_date < ?", [day])}
    objectors = {r[0] for r in _q(root, "select contact_id from raw.contacts where marketing_objection")}
    assert b in signed_up and isinstance(day, date)
    assert set(frame["contact_id"]) == signed_up - objectors
    assert frame.attrs["not_profiled"] == {"objection": len(signed_up & objectors)}


def _var_files(root: Path) -> list[Path]:
    """The files under var/ but the audit trail and the read snapshot: recording the access (an
    audit event) is a writer session, which republishes the snapshot (a copy of the warehouse)."""
    return sorted(
        p.relative_to(root)
        for p in (root / "var").rglob("*")
        if "audit" not in p.parts and "warehouse.snapshots" not in p.parts
    )


@pytest.mark.slow  # the module's pipeline run (about a minute) after small_run
def test_access_finds_a_person_by_email_and_shows_everything_held(rights, tmp_path) -> None:
    root, a = rights["root"], rights["a"]
    var_before = _var_files(root)
    out = tmp_path / "access.json"
    done = _cli(root, "subject", "access", f" {NEW_EMAIL.upper()}", "--out", str(out))
    assert done.exit_code == 0, done.output
    report = json.loads(out.read_text())
    assert report["person"] == {"contact_id": a, "pseudonym": _pseudonym(root, a), "looked_up_by": "e-mail"}
    counts = report["counts"]
    for table in ("raw.orders", "raw.email_events", "raw.consents", "ml.customer_scores"):
        [(n,)] = _q(root, f"select count(*) from {table} where contact_id = ?", [a])
        assert counts.get(table, 0) == n, table
    [(items,)] = _q(
        root,
        "select count(*) from raw.order_items where order_id in "
        "(select order_id from raw.orders where contact_id = ?)",
        [a],
    )
    assert counts.get("raw.order_items", 0) == items
    assert counts["ml.customer_scores"] == 2 and counts["privacy.corrections"] == 3  # both runs; the overlay
    tables = {t["table"]: t for part in report["parts"].values() for t in part["tables"]}
    scores = tables["ml.customer_scores"]["rows"]
    assert {s["run_id"] for s in scores} == {rights["first"], rights["result"]["run_id"]}
    assert all(s["model_version"] and s["reasons"] for s in scores)
    assert {r["run_id"] for r in report["runs"]} >= {rights["first"], rights["result"]["run_id"]}
    decided = tables.get("ml.next_best_action", {"rows": []})["rows"]
    [(n_decided,)] = _q(root, "select count(*) from ml.next_best_action where contact_id = ?", [a])
    assert len(decided) == n_decided
    # the report went to the file named; nothing new under var/ (apart from the audit log's head)
    var_after = _var_files(root)
    assert var_after == var_before
    [(subject, details)] = _events(root, "subject.accessed")
    assert subject == _pseudonym(root, a)
    assert details == {
        "format": "json",
        "tables": len(counts),
        "rows": sum(counts.values()),
        "runs": len(report["runs"]),
    }


@pytest.mark.slow  # the module's pipeline run (about a minute) after small_run
def test_access_html_is_readable_and_escaped(rights) -> None:
    root, a = rights["root"], rights["a"]
    done = _cli(root, "subject", "access", str(a), "--format", "html")
    assert done.exit_code == 0, done.output
    page = done.output
    assert page.startswith("<!doctype html>") and "<h1>What we hold about you</h1>" in page
    for heading in (
        "Data from the CRM",
        "Your orders",
        "Every score our model gave you",
        "Corrections you asked for",
    ):
        assert heading in page, heading
    assert NEW_EMAIL in page and "_row_hash" not in page  # the person's data, without loader columns
    [(n_orders,)] = _q(root, "select count(*) from raw.orders where contact_id = ?", [a])
    assert f"{n_orders} record(s) (stored in raw.orders)" in page
    assert "<script" not in page


@pytest.fixture
def fresh(small_run, tmp_path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(small_run["root"], root)
    return root


@pytest.mark.parametrize(
    ("pair", "said"),
    [
        ("country=XX", "country: invalid_enum (allowed: GB, DE"),
        ("email=not-an-address", "email: invalid_email"),
        ("signup_date=", "signup_date: missing_required"),
        ("signup_date=2999-01-01", "signup_date: future_date"),
        ("email_consent=maybe", "email_consent: wrong_type (expected true or false)"),
        ("age_band=17-", "age_band: invalid_enum"),
        ("contact_id=7", "contact_id cannot be corrected"),
        ("updated_at=2026-01-01", "updated_at cannot be corrected"),
        ("shoe_size=9", "contacts has no field 'shoe_size'"),
        ("country", "is not field=value"),
    ],
)
def test_a_bad_correction_is_refused_with_the_reason_and_nothing_is_recorded(fresh, pair, said) -> None:
    [(events_before,)] = _q(fresh, "select count(*) from audit.events")
    done = _cli(fresh, "subject", "correct", "1", "first_name=Ok", pair)
    assert done.exit_code == 2 and said in done.output, done.output
    [(events_after,)] = _q(fresh, "select count(*) from audit.events")
    tables = {r[0] for r in _q(fresh, "select table_name from duckdb_tables() where schema_name = 'privacy'")}
    assert events_after == events_before and (
        "corrections" not in tables or _q(fresh, "select count(*) from privacy.corrections") == [(0,)]
    )


@pytest.mark.parametrize("verb", [("access",), ("correct", "country=DE"), ("object",)])
@pytest.mark.parametrize(
    ("who", "said"),
    [("987654321", "no contact with id 987654321"), ("nobody@nowhere.example", "no contact has the e-mail")],
)
def test_an_unknown_person_is_a_clear_error(fresh, verb, who, said) -> None:
    done = _cli(fresh, "subject", verb[0], who, *verb[1:])
    assert done.exit_code == 2 and said in done.output, done.output


def test_the_overlay_is_idempotent_and_an_objection_is_kept_once(fresh) -> None:
    from clarion.subject.correct import apply_overlay

    assert _cli(fresh, "subject", "correct", "1", "country=NL", "age_band=65+").exit_code == 0
    assert _cli(fresh, "subject", "correct", "1", "country=SE").exit_code == 0  # the newest wins
    twice = [_cli(fresh, "subject", "object", "2") for _ in range(2)]
    assert [t.exit_code for t in twice] == [0, 0] and "already recorded" in twice[1].output
    [(old_country, old_band)] = _q(fresh, "select country, age_band from raw.contacts where contact_id = 1")
    [(b_objection,)] = _q(fresh, "select marketing_objection from raw.contacts where contact_id = 2")
    expected = (old_country != "SE") + (old_band != "65+") + (not b_objection)
    con = duckdb.connect(str(fresh / "var" / "warehouse.duckdb"))
    try:
        assert apply_overlay(con) == expected
        assert apply_overlay(con) == 0
        assert con.execute("select country, age_band from raw.contacts where contact_id = 1").fetchone() == (
            "SE",
            "65+",
        )
        assert con.execute("select count(*) from privacy.objections where contact_id = 2").fetchone() == (1,)
    finally:
        con.close()


def test_access_shows_quarantined_rows_that_name_the_person(fresh) -> None:
    [(cid, email)] = _q(fresh, "select contact_id, email from raw.contacts where email is not null limit 1")
    con = duckdb.connect(str(fresh / "var" / "warehouse.duckdb"))
    try:  # rejected rows as the extract writes them: by key, by contact_id in the record, by e-mail only
        rows = [
            ("contacts", str(cid), "invalid_enum", json.dumps({"contact_id": str(cid), "country": "ZZ"})),
            ("orders", "991", "orphan", json.dumps({"order_id": "991", "contact_id": f" {cid} "})),
            ("support_tickets", None, "missing_column", json.dumps({"body": f"mail me at {email.upper()}"})),
            ("orders", "992", "orphan", json.dumps({"order_id": "992", "contact_id": str(cid + 100000)})),
        ]
        for table, key, reason, record in rows:
            con.execute(
                f"insert into quarantine.{table} values ('L', 'R', 'crm', 'f.csv', 1, ?, ?, 'x', ?, now())",
                [key, reason, record],
            )
    finally:
        con.close()
    done = _cli(fresh, "subject", "access", str(cid))
    assert done.exit_code == 0, done.output
    counts = json.loads(done.output)["counts"]
    assert (
        counts.get("quarantine.contacts"),
        counts.get("quarantine.orders"),
        counts.get("quarantine.support_tickets"),
    ) == (1, 1, 1)  # the order of someone else (992) is not theirs
