"""`clarion subject erase`: a planted person is gone from every table and every file under var/, and
stays gone when the CRM that still holds them is read again.

The scan below is written apart from clarion.subject.locate (it knows nothing of where Clarion keeps
things): every column of every table of the warehouse cast to text, the warehouse file's own bytes
(deleted rows linger in freed blocks until the file is compacted), and every file under var/ read
as Parquet (through DuckDB), zip members, gzip, SQLite (every table) or text. It is shown to fail
on planted files before it is trusted to pass.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import shutil
import sqlite3
import time
import zipfile
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from click.testing import CliRunner
from project_helpers import run_pipeline_in

from clarion.cli import cli
from clarion.config import GenerateSettings, load_settings
from clarion.content import runner
from clarion.synth.generator import generate

PERSON_ID = 918273647  # in the treatment arm of vip-thank-you (not its 10% holdout)
FIRST, LAST = "Zebedeea", "Quillfeatherstone"
EMAIL = "zebedeea.quill@erasure-test.example"
PHONE = "+44 7700 900417"
MARKER = "ERASEMARKER-7Q3"
NEEDLES = (str(PERSON_ID), FIRST.lower(), LAST.lower(), EMAIL, "7700 900417", MARKER.lower())
ENTITIES_WITH_CONTACT = ("contacts", "orders", "email_events", "support_tickets", "consents")


# ------------------------------------------------------------------------------------------------
# The scanner


def _hits_in_text(text: str) -> set[str]:
    low = text.lower()
    return {n for n in NEEDLES if n in low}


def _scan_file(path: Path, name: str) -> list[str]:
    data = path.read_bytes()
    if name.endswith(".parquet"):
        con = duckdb.connect()
        try:
            rows = con.execute(f"select cast(t as varchar) from read_parquet('{path}') t").fetchall()
        finally:
            con.close()
        return sorted({h for (r,) in rows for h in _hits_in_text(r)})
    if name.endswith(".zip"):
        found = []
        with zipfile.ZipFile(path) as z:
            for member in z.namelist():
                tmp = path.with_name(f".scan-{Path(member).name}")
                tmp.write_bytes(z.read(member))
                try:
                    found += [f"{member}:{h}" for h in _scan_file(tmp, member)]
                finally:
                    tmp.unlink()
        return found
    if name.endswith(".gz"):
        return sorted(_hits_in_text(gzip.decompress(data).decode("utf-8", "replace")))
    if data[:16] == b"SQLite format 3\x00":
        con = sqlite3.connect(path)
        try:
            found = set()
            for (table,) in con.execute("select name from sqlite_master where type = 'table'").fetchall():
                for row in con.execute(f'select * from "{table}"').fetchall():
                    found |= _hits_in_text(" ".join(str(v) for v in row))
            return sorted(found)
        finally:
            con.close()
    return sorted(_hits_in_text(data.decode("utf-8", "replace")))


def scan(root: Path) -> dict[str, list[str]]:
    """Every trace of the planted person: {where: needles found}."""
    found: dict[str, list[str]] = {}
    var = root / "var"
    warehouse = var / "warehouse.duckdb"
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        tables = con.execute("select schema_name, table_name from duckdb_tables()").fetchall()
        for schema, table in tables:
            rows = con.execute(f'select cast(t as varchar) from "{schema}"."{table}" t').fetchall()
            hits = sorted({h for (r,) in rows for h in _hits_in_text(r)})
            if hits:
                found[f"table {schema}.{table}"] = hits
    finally:
        con.close()
    for path in sorted(var.rglob("*")):
        if not path.is_file() or path.name.endswith(".lock"):
            continue
        if path == warehouse:  # its bytes: what a copy of the file gives away
            hits = sorted(_hits_in_text(path.read_bytes().decode("latin-1")))
        else:
            hits = _scan_file(path, path.name)
        if hits:
            found[f"file {path.relative_to(root)}"] = hits
    return found


# ------------------------------------------------------------------------------------------------
# The project


def _plant(crm: Path) -> dict[str, int]:
    """Give the consenting contact with the most orders (and tickets and e-mail events: a champion,
    in vip-thank-you's audience) the distinctive values; returns their rows per file."""
    read = {
        e: pd.read_csv(crm / f"{e}.csv", dtype=str, keep_default_na=False)
        for e in (*ENTITIES_WITH_CONTACT, "order_items")
    }
    contacts = read["contacts"]
    tickets, orders = read["support_tickets"], read["orders"]
    with_both = (
        set(tickets["contact_id"]) & set(orders["contact_id"]) & set(read["email_events"]["contact_id"])
    )
    consenting = contacts[
        (contacts["email_consent"] == "true") & (contacts["marketing_objection"] == "false")
    ]
    counts = orders["contact_id"].value_counts()
    old = max((c for c in consenting["contact_id"] if c in with_both), key=lambda c: (counts[c], -int(c)))
    new = str(PERSON_ID)
    for e in ENTITIES_WITH_CONTACT:
        read[e].loc[read[e]["contact_id"] == old, "contact_id"] = new
    mine = contacts["contact_id"] == new
    contacts.loc[mine, ["first_name", "last_name", "email", "phone"]] = [FIRST, LAST, EMAIL, PHONE]
    first = tickets.index[tickets["contact_id"] == new][0]
    tickets.loc[first, "body"] = f"Hello, this is {FIRST} {LAST} ({MARKER}); call me on {PHONE}."
    rows = {e: int((read[e]["contact_id"] == new).sum()) for e in ENTITIES_WITH_CONTACT}
    my_orders = set(orders.loc[orders["contact_id"] == new, "order_id"])
    rows["order_items"] = int(read["order_items"]["order_id"].isin(my_orders).sum())
    for e, frame in read.items():
        frame.to_csv(crm / f"{e}.csv", index=False, quoting=csv.QUOTE_ALL)
    return rows


def _reexport(crm: Path) -> None:
    """The CRM exports again, still holding the person: the same records, written anew (other
    quoting), so every file is read again."""
    for f in crm.glob("*.csv"):
        frame = pd.read_csv(f, dtype=str, keep_default_na=False)
        frame.to_csv(f, index=False, quoting=csv.QUOTE_MINIMAL)


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    root = tmp_path / "project"
    root.mkdir()
    (root / "clarion.yaml").write_text(
        "warehouse:\n  path: var/warehouse.duckdb\nsources:\n  crm:\n    kind: files\n    path: crm\n"
        "content:\n  candidates: 1\n  max_new_tokens: 16\n"  # drafting is not what is tested here
    )
    shutil.copytree(Path(__file__).parents[1] / "campaigns", root / "campaigns")
    generate(GenerateSettings(customers=300, seed=5, defects=0.0), out=root / "crm")  # outside var/
    return root, _plant(root / "crm")


def _cli(root: Path, *args: str) -> dict:
    result = CliRunner().invoke(cli, ["--config", str(root / "clarion.yaml"), *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if "--json" in args else {}


# ------------------------------------------------------------------------------------------------
# Tests


def test_the_scanner_finds_a_trace_in_parquet_zip_sqlite_and_a_table(tmp_path: Path) -> None:
    root = tmp_path
    var = root / "var"
    var.mkdir()
    con = duckdb.connect(str(var / "warehouse.duckdb"))
    con.execute("create schema ml")
    con.execute("create table ml.t (a bigint, b varchar)")
    con.execute("insert into ml.t values (1, 'x'), (?, 'y')", [PERSON_ID])
    con.execute(f"copy (select '{EMAIL}' as e) to '{var / 'p.parquet'}' (format parquet)")
    con.close()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("pack/notes.txt", f"about {LAST}")
    (var / "pack.zip").write_bytes(buf.getvalue())
    db = sqlite3.connect(var / "prefect.db")
    db.execute("create table log (message text)")
    db.execute("insert into log values (?)", [f"ticket {MARKER}"])
    db.commit()
    db.close()
    (var / "clean.json").write_text(json.dumps({"contact_id": 12}))

    found = scan(root)

    assert found["table ml.t"] == [str(PERSON_ID)]
    assert EMAIL in found["file var/p.parquet"]
    assert found["file var/pack.zip"] == [f"pack/notes.txt:{LAST.lower()}"]
    assert found["file var/prefect.db"] == [MARKER.lower()]
    assert "file var/clean.json" not in found


@pytest.mark.slow
def test_an_erased_person_leaves_no_trace_and_does_not_come_back(
    planted: tuple[Path, dict[str, int]], prefect_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, rows = planted
    monkeypatch.chdir(root)
    started = time.perf_counter()
    first = run_pipeline_in(root, campaigns=["vip-thank-you"])  # champions: the person is one
    assert first["status"] == "completed"
    settings = load_settings(root / "clarion.yaml", env={})
    _cli(root, "report", "--no-send")
    _approve_all(settings)
    runner.export(settings)
    _cli(root, "compliance", "export")
    before = scan(root)
    # the person was really everywhere the scan looks: raw, marts, scores, the dlt/landing files
    assert {"table raw.contacts", "table marts.dim_customers", "table ml.customer_scores"} <= set(before)

    exports_before = _exports(settings)

    result = _cli(root, "subject", "erase", EMAIL.upper(), "--reference", "GDPR-1", "--yes", "--json")

    assert sum(was[3] for was in exports_before.values()) >= 1  # an export listed them
    for export_id, (path, recipients, lines, mine) in _exports(settings).items():
        was = exports_before[export_id]
        assert mine == 0 and lines == was[2] - was[3]  # their line, and only it, left the file
        assert recipients == was[1] - was[3] and lines == recipients  # the row tells the file's truth
        assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == _sha(settings, export_id)

    assert result["rows"]["raw.contacts"] == 1 and result["rows"]["raw.orders"] == rows["orders"]
    assert scan(root) == {}
    con = duckdb.connect(str(settings.warehouse.path), read_only=True)
    try:
        erasures = con.execute("select * from audit.erasures").fetchall()
        events = con.execute(
            "select action, subject from audit.events where action like 'model.%'"
        ).fetchall()
    finally:
        con.close()
    assert len(erasures) == 1 and erasures[0][0] == "GDPR-1"
    flagged = json.loads((settings.var_dir / "registry/purchase_propensity/v0001/meta.json").read_text())
    assert flagged["retrain_required"]["reason"] == "erasure"
    assert ("model.retrain_required", "purchase_propensity:v0001") in events
    verified = _cli(root, "lineage", "verify", first["run_id"], "--json")
    assert verified["ok"], verified
    latest = json.loads(Path(verified["manifest"]).read_text())
    assert latest["reason"] == "erasure"  # and verify says why the files changed

    _reexport(root / "crm")
    second = run_pipeline_in(root, stages=["prepare", "extract", "transform", "segment", "report"])

    assert second["status"] == "completed"
    con = duckdb.connect(str(settings.warehouse.path), read_only=True)
    try:
        suppressed = dict(
            con.execute(
                "select entity, sum(suppressed) from audit.extract_loads where run_id = ? group by 1",
                [second["run_id"]],
            ).fetchall()
        )
        balance = con.execute(
            "select count(*) from audit.extract_loads where run_id = ? "
            "and read <> loaded + quarantined + suppressed",
            [second["run_id"]],
        ).fetchone()[0]
        promoted = con.execute(
            "select subject from audit.events where action = 'model.promoted' order by seq desc limit 1"
        ).fetchone()[0]
    finally:
        con.close()
    assert {e: suppressed.get(e, 0) for e in rows} == rows
    assert balance == 0
    assert promoted != "v0001"  # the flagged version was not reused: a new one was trained
    assert scan(root) == {}
    print(f"erase scan test: {time.perf_counter() - started:.0f} s")


def _exports(settings) -> dict[str, tuple[str, int, int, int]]:
    """export id -> (path, recipients recorded, lines in the file, lines naming the person)."""
    con = duckdb.connect(str(settings.warehouse.path), read_only=True)
    try:
        rows = con.execute("select export_id, path, recipients from content.exports").fetchall()
    finally:
        con.close()
    out = {}
    for export_id, path, recipients in rows:
        with Path(path).open(newline="", encoding="utf-8") as fh:
            lines = list(csv.DictReader(fh))
        mine = sum(r["contact_id"] == str(PERSON_ID) for r in lines)
        out[export_id] = (path, recipients, len(lines), mine)
    return out


def _sha(settings, export_id: str) -> str:
    con = duckdb.connect(str(settings.warehouse.path), read_only=True)
    try:
        return con.execute(
            "select file_sha256 from content.exports where export_id = ?", [export_id]
        ).fetchone()[0]
    finally:
        con.close()


def _approve_all(settings) -> None:
    """Approve every pending draft as the briefs' approver, so exports are written."""
    con = duckdb.connect(str(settings.warehouse.path), read_only=True)
    try:
        pending = [
            r[0]
            for r in con.execute("select draft_id from content.drafts where status = 'pending'").fetchall()
        ]
    finally:
        con.close()
    for draft_id in pending:
        try:
            runner.decide(settings, draft_id, "approve", "marketing-lead", None)
        except runner.ContentError:
            continue  # a draft a guardrail held, or a brief with another approver
