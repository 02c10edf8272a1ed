"""`clarion extract --dry-run`, and the clear failure when whole files lack required columns.

Small hand-written folders with known defects: the expected counts per reason are written down here
row by row, never read back from what the extract did.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from extract_helpers import make_settings, run_extract

from clarion.cli import cli
from clarion.cli.text import accounting_text
from clarion.extract.advice import stop_if_unusable
from clarion.extract.dry_run import dry_run, dry_run_text
from clarion.extract.readers import ExtractError
from clarion.warehouse import Warehouse

CONTACTS_HEADER = (
    "contact_id,first_name,email,signup_date,email_consent,sms_consent,marketing_objection,updated_at"
)
# (line, truth): None loads; else the reason it is quarantined for
CONTACTS = [
    ("1,Annika,annika.berg@example.com,2025-01-05,true,false,false,2026-03-01T10:00:00", None),
    ("2,Bruno,bruno.keller@example.com,2025-02-05,true,false,false,2026-03-01T10:00:00", None),
    ("3,Chiara,chiara.rossi@example.com,2025-03-05,false,false,false,2026-03-01T10:00:00", None),
    ("4.5,Dagny,dagny.lund@example.com,2025-03-06,true,false,false,2026-03-01T10:00:00", "wrong_type"),
    ("5,Emeric,emeric.faure@example.com,,true,false,false,2026-03-01T10:00:00", "missing_required"),
    (
        "6,Fionnuala,fionnuala.byrne@example.com,2025-02-30,true,false,false,2026-03-01T10:00:00",
        "invalid_date",
    ),
]
ORDERS_HEADER = "order_id,contact_id,ordered_at,status,currency,total_amount,updated_at"
ORDERS = [
    ("10,1,2026-02-01T09:00:00,completed,EUR,10.00,2026-03-01T10:00:00", None),
    ("11,2,2026-02-02T09:00:00,completed,EUR,20.50,2026-03-01T10:00:00", None),
    ("12,99,2026-02-03T09:00:00,completed,EUR,5.00,2026-03-01T10:00:00", "orphan"),
    ("13,3,2026-02-04T09:00:00,shipped,EUR,7.00,2026-03-01T10:00:00", "invalid_enum"),
    ("14,3,2026-02-05T09:00:00,completed,XYZ,8.00,2026-03-01T10:00:00", "invalid_enum"),
    ("15,1,2026-02-06T09:00:00,completed,EUR,-5.00,2026-03-01T10:00:00", "out_of_range"),
]
PII = [line.split(",")[i] for line, _ in CONTACTS for i in (1, 2)]  # first names and e-mails


def write(folder: Path, name: str, header: str, rows: list[tuple[str, str | None]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("\n".join([header, *(line for line, _ in rows)]) + "\n")


def truth(rows: list[tuple[str, str | None]]) -> tuple[int, int, dict[str, int]]:
    reasons: dict[str, int] = {}
    for _, why in rows:
        if why:
            reasons[why] = reasons.get(why, 0) + 1
    bad = sum(reasons.values())
    return len(rows) - bad, bad, reasons


def by_entity(report: dict) -> dict[str, dict]:
    return {e["entity"]: e for e in report["entities"]}


def var_state(settings) -> dict[str, str]:
    """Every file under var/ (warehouse, ledgers, landing zone, dlt state) -> sha256. The writer
    lock file is left out: holding the lock to copy the warehouse writes who holds it."""
    state = {}
    for path in sorted(settings.var_dir.rglob("*")):
        if path.is_file() and not path.name.endswith(".lock"):
            state[str(path.relative_to(settings.var_dir))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


@pytest.fixture
def defective(tmp_path: Path):
    folder = tmp_path / "crm"
    write(folder, "contacts.csv", CONTACTS_HEADER, CONTACTS)
    write(folder, "orders.csv", ORDERS_HEADER, ORDERS)
    return folder, make_settings(tmp_path / "project", {"crm": {"kind": "files", "path": str(folder)}})


def test_counts_per_reason_match_the_planted_defects(defective) -> None:
    _, settings = defective
    report = by_entity(dry_run(settings))
    for entity, rows in (("contacts", CONTACTS), ("orders", ORDERS)):
        load, quarantine, reasons = truth(rows)
        e = report[entity]
        assert (e["read"], e["would_load"], e["would_quarantine"]) == (len(rows), load, quarantine), entity
        assert {r["reason"]: r["rows"] for r in e["reasons"]} == reasons, entity
        for r in e["reasons"]:  # samples: at most 3, each located by file and row
            assert 1 <= len(r["samples"]) <= min(3, r["rows"])
            assert all(s["location"].startswith(f"{entity}.csv:") for s in r["samples"])
    # nothing was written: there was no warehouse, and there still is none
    assert not settings.warehouse.path.exists()
    assert not settings.var_dir.exists() or not any(settings.var_dir.rglob("*.parquet"))


def test_the_warehouse_ledger_and_landing_zone_are_unchanged(defective) -> None:
    folder, settings = defective
    clean = [r for r in CONTACTS if r[1] is None]
    write(folder, "contacts.csv", CONTACTS_HEADER, clean)
    write(folder, "orders.csv", ORDERS_HEADER, [r for r in ORDERS if r[1] is None])
    run_extract(settings)  # a real load first: the ledger knows both files
    write(folder, "contacts.part2.csv", CONTACTS_HEADER, [r for r in CONTACTS if r[1] is not None])
    before = var_state(settings)
    assert "warehouse.duckdb" in before
    report = by_entity(dry_run(settings))
    assert var_state(settings) == before
    _, bad, reasons = truth([r for r in CONTACTS if r[1] is not None])
    contacts = report["contacts"]  # only the new file is read: the ledger is respected
    assert (contacts["read"], contacts["would_load"], contacts["would_quarantine"]) == (bad, 0, bad)
    assert {r["reason"]: r["rows"] for r in contacts["reasons"]} == reasons
    fresh = by_entity(dry_run(settings, fresh=True))["contacts"]  # --fresh: every file as new
    assert fresh["read"] == len(CONTACTS) and fresh["would_load"] == len(clean)
    assert var_state(settings) == before
    # the lock was only held for the copy: a writer can take it right after
    with Warehouse.from_settings(settings).lock.hold("test", 0):
        pass


def test_no_personal_values_without_values(defective) -> None:
    _, settings = defective
    report = dry_run(settings)
    text = dry_run_text(report) + json.dumps(report)
    assert "annika" not in text.lower()  # a clean row is never sampled
    assert not [p for p in PII if p in text]
    assert "first_name=***" in text and "email=***" in text
    assert "signup_date=2025-02-30" in text  # the defect's own (non-personal) value is shown
    shown = dry_run(settings, values=True)  # the same rows with --values: the values are there
    shown_text = dry_run_text(shown)
    assert "dagny.lund@example.com" in shown_text and "Fionnuala" in shown_text


def test_cli_dry_run_json(defective, monkeypatch) -> None:
    folder, settings = defective
    config = settings.var_dir.parent / "cli.yaml"
    config.write_text(
        f"var_dir: {settings.var_dir}\nwarehouse:\n  path: {settings.warehouse.path}\n"
        f"sources:\n  crm:\n    kind: files\n    path: {folder}\n"
    )
    result = CliRunner().invoke(
        cli, ["--config", str(config), "extract", "--dry-run", "--json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert by_entity(report)["orders"]["would_load"] == truth(ORDERS)[0]
    assert not settings.warehouse.path.exists()
    refused = CliRunner().invoke(cli, ["--config", str(config), "extract", "--values"])
    assert refused.exit_code != 0 and "--dry-run" in refused.output


def lacking(tmp_path: Path):
    """A new user's export: customers without consent or dates, orders without amounts."""
    folder = tmp_path / "shop"
    folder.mkdir(parents=True)
    (folder / "contacts.csv").write_text(
        "id,email,first_name\n1,gudrun.olsen@example.com,Gudrun\n2,hamid.nouri@example.com,Hamid\n"
    )
    (folder / "orders.csv").write_text("id,customer_id,created,state\n10,1,2026-03-01T10:00:00,paid\n")
    return folder


# the consent columns are not lacking: without them consent is unknown (the contacts still load)
CONTACTS_LACK = ["contact_id", "signup_date", "updated_at"]
ORDERS_LACK = ["order_id", "contact_id", "ordered_at", "status", "currency", "total_amount", "updated_at"]


def test_a_whole_file_rejection_names_the_columns_and_how_to_supply_them(tmp_path: Path) -> None:
    folder = lacking(tmp_path)
    settings = make_settings(tmp_path / "project", {"shop": {"kind": "files", "path": str(folder)}})
    report = by_entity(dry_run(settings))
    assert report["contacts"]["rejected_files"] == {"contacts.csv": CONTACTS_LACK}
    assert report["orders"]["rejected_files"] == {"orders.csv": ORDERS_LACK}
    results = run_extract(settings)  # the real extract's summary says the same
    for text in (
        dry_run_text({"entities": list(report.values())}),
        accounting_text([r.as_dict() for r in results]),
    ):
        assert "contacts.csv lacks required column(s) " + ", ".join(CONTACTS_LACK) in text
        assert "updated_at: defaults: {updated_at: load_time}" in text
        assert "email_consent: defaults" not in text  # consent is unknown, not lacking
        assert "columns: {<your column>: total_amount}" in text and "sql:" in text
        assert "clarion init --from DIR" in text and "clarion extract --dry-run --source shop" in text
        assert not [p for p in ("gudrun", "hamid") if p in text.lower()]


def test_before_the_raw_gate_nothing_to_build_on_is_one_message(tmp_path: Path) -> None:
    folder = lacking(tmp_path)
    settings = make_settings(tmp_path / "project", {"shop": {"kind": "files", "path": str(folder)}})
    run_extract(settings)
    with Warehouse.from_settings(settings).connect("test") as con, pytest.raises(ExtractError) as err:
        stop_if_unusable(con)
    message = str(err.value)
    assert "shop/contacts loaded nothing: contacts.csv lacks " + ", ".join(CONTACTS_LACK) in message
    assert "shop/orders loaded nothing: orders.csv lacks " + ", ".join(ORDERS_LACK) in message
    assert "clarion init" in message and "clarion extract --dry-run" in message
    assert "gudrun" not in message.lower()
    # once the files carry the columns (here: a complete export), the run goes on
    write(folder, "contacts.csv", CONTACTS_HEADER, [r for r in CONTACTS if r[1] is None])
    write(folder, "orders.csv", ORDERS_HEADER, [r for r in ORDERS if r[1] is None])
    run_extract(settings)
    with Warehouse.from_settings(settings).connect("test") as con:
        stop_if_unusable(con)


def test_a_transactions_file_without_amounts_stops_the_run_too(tmp_path: Path) -> None:
    folder = tmp_path / "crm"
    folder.mkdir()
    (folder / "sales.csv").write_text("customer,when,item\n1,2026-01-01,x\n2,2026-01-02,y\n")
    transactions = {"files": ["sales.csv"], "columns": {"customer": "contact_id", "when": "ordered_at"}}
    sources = {"crm": {"kind": "files", "path": str(folder), "transactions": transactions}}
    settings = make_settings(tmp_path / "project", sources)
    report = by_entity(dry_run(settings))
    assert report["transactions"]["rejected_files"] == {"sales.csv": ["total_amount"]}
    assert report["transactions"]["would_quarantine"] == 2 and report["transactions"]["would_load"] == 0
    assert "under sources.crm.transactions:" in dry_run_text({"entities": list(report.values())})
    run_extract(settings)
    with Warehouse.from_settings(settings).connect("test") as con, pytest.raises(ExtractError) as err:
        stop_if_unusable(con)
    assert "crm/transactions loaded nothing: sales.csv lacks total_amount" in str(err.value)


@pytest.mark.slow
def test_clarion_run_stops_with_one_clean_message(tmp_path: Path) -> None:
    lacking(tmp_path)
    (tmp_path / "clarion.yaml").write_text(
        "warehouse:\n  path: var/warehouse.duckdb\nsources:\n  shop:\n    kind: files\n    path: shop\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLARION_", "PREFECT_API_URL"))}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    done = subprocess.run(
        [sys.executable, "-m", "clarion.cli", "run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    both = done.stdout + done.stderr
    assert done.returncode != 0
    assert "Traceback" not in both
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert "shop/contacts loaded nothing: contacts.csv lacks " + ", ".join(CONTACTS_LACK) in errors[0]
    assert "clarion init" in errors[0] and "clarion extract --dry-run" in errors[0]
    assert "quality gate" not in both  # stopped before the raw gate, not by it
    assert not [p for p in ("gudrun", "hamid") if p in both.lower()]
