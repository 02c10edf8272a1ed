"""Nothing personal outside the warehouse's personal schemas: a canary test.

A generated CRM gets planted people (distinctive names, e-mails, phones) and a free-text marker in
their support tickets; the real pipeline runs (extract, gates, dbt, scoring, NBA, content with the
shipped model), then `clarion report --no-send`, `clarion compliance export`, an approval and an
export of the approved copy. Then every file under var/ (Parquet read by DuckDB, JSON, CSV, zip
members, gzip, PDF streams), Prefect's database (logs, artifacts, states, inputs) and every warehouse
schema other than raw/staging/marts/quarantine are scanned: no canary anywhere, except the export
files (var/exports) and only for planted people who consented. The scanner is shown to find a canary
planted in each kind of place, so a clean result means something.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import re
import sqlite3
import zipfile
import zlib
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from click.testing import CliRunner
from project_helpers import run_pipeline_in, write_tiny_brief

from clarion import snapshot
from clarion.cli import cli
from clarion.config import GenerateSettings, load_settings
from clarion.synth.generator import generate

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]

PERSONAL_SCHEMAS = {"raw", "staging", "marts", "quarantine"}  # where a person's data may be
CANARIES = 6  # planted people: even ones consent to e-mail, odd ones do not


def canary(i: int) -> dict[str, str]:
    """Values no generator or model would produce by chance, each searchable on its own."""
    return {
        "first_name": f"Zorbulina{i}",
        "last_name": f"Quaxtrelle{i}",
        "email": f"zq.canary{i}@canary-mail.test",
        "phone": f"+44 7700 9{i}0 4{i}7",
        "marker": f"CANARYTEXT{i}XQZ",
    }


def _plant(crm: Path) -> dict[int, dict[str, str]]:
    """Rewrite contacts.csv and support_tickets.csv with the canaries; return contact id -> values."""
    contacts = pd.read_csv(crm / "contacts.csv", dtype=str, keep_default_na=False)
    tickets = pd.read_csv(crm / "support_tickets.csv", dtype=str, keep_default_na=False)
    with_tickets = sorted(set(tickets["contact_id"]), key=int)[:CANARIES]
    planted = {}
    for i, cid in enumerate(with_tickets):
        values = canary(i)
        row = contacts["contact_id"] == cid
        for field in ("first_name", "last_name", "email", "phone"):
            contacts.loc[row, field] = values[field]
        contacts.loc[row, "email_consent"] = "true" if i % 2 == 0 else "false"
        contacts.loc[row, "marketing_objection"] = "false"
        own = tickets["contact_id"] == cid
        tickets.loc[own, "body"] = (
            f"Hello, this is {values['first_name']} {values['last_name']} ({values['email']}, "
            f"{values['phone']}). {values['marker']} my parcel is late."
        )
        tickets.loc[own, "subject"] = f"Parcel {values['marker']}"
        planted[int(cid)] = values
    contacts.to_csv(crm / "contacts.csv", index=False)
    tickets.to_csv(crm / "support_tickets.csv", index=False)
    return planted


# -- the scanner -------------------------------------------------------------------------------------


def _needles(planted: dict[int, dict[str, str]]) -> dict[str, int]:
    """Every searchable canary string (lower case) -> the planted contact it belongs to. The
    surname alone, the e-mail's local part and the phone's digits count too: a partial copy leaks."""
    out = {}
    for cid, v in planted.items():
        digits = re.sub(r"\D", "", v["phone"])
        for s in (
            v["first_name"],
            v["last_name"],
            v["email"],
            v["email"].split("@")[0],
            v["phone"],
            v["marker"],
        ):
            out[s.lower()] = cid
        out[digits] = cid
    return out


def _found(text: str, needles: dict[str, int]) -> set[str]:
    low = text.lower()
    squeezed = re.sub(r"[\s()+-]", "", low)  # a phone written with other separators
    return {n for n in needles if n in low or (n.isdigit() and n in squeezed)}


def _rows_text(con: duckdb.DuckDBPyConnection, sql: str) -> str:
    return "\n".join(repr(r) for r in con.execute(sql).fetchall())


def _parquet_text(data: bytes | Path) -> str:
    con = duckdb.connect()
    try:
        if isinstance(data, bytes):
            con.execute("create table b (x blob)")
            path = "/dev/stdin"  # never used: bytes are written to a temporary file below
            import tempfile

            with tempfile.NamedTemporaryFile(suffix=".parquet", delete=False) as fh:
                fh.write(data)
                path = fh.name
        else:
            path = str(data)
        return _rows_text(con, f"select * from read_parquet('{path}')")
    finally:
        con.close()


def _sqlite_text(path: Path) -> str:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        parts = []
        for (table,) in con.execute("select name from sqlite_master where type = 'table'").fetchall():
            parts += [repr(r) for r in con.execute(f'select * from "{table}"').fetchall()]
        return "\n".join(parts)
    finally:
        con.close()


def _pdf_text(data: bytes) -> str:
    parts = [data.decode("latin-1")]
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S):
        with contextlib.suppress(zlib.error):
            parts.append(zlib.decompress(stream).decode("latin-1"))
    return "\n".join(parts)


def _text_of(name: str, data: bytes) -> str:
    """What a file says, by kind: Parquet through DuckDB, zip members and gzip opened, PDF streams
    inflated, SQLite databases read table by table; anything else as text."""
    if name.endswith(".parquet"):
        return _parquet_text(data)
    if name.endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return "\n".join(_text_of(m, z.read(m)) for m in z.namelist())
    if name.endswith(".gz"):
        return _text_of(name[:-3], gzip.decompress(data))
    if name.endswith(".pdf"):
        return _pdf_text(data)
    if data[:16] == b"SQLite format 3\x00":
        import tempfile

        with tempfile.NamedTemporaryFile(suffix=".db", delete=False) as fh:
            fh.write(data)
        return _sqlite_text(Path(fh.name))
    text = data.decode("utf-8", "replace")
    if name.endswith(".json") or name.endswith(".jsonl"):
        text += "\n" + text.encode().decode("unicode_escape", "replace")  # \u-escaped characters
    return text


WEIGHTS = (".safetensors", ".gguf", ".bin")  # the shipped language model's weights, converted once


def scan_files(var: Path, needles: dict[str, int], skip: set[Path]) -> dict[str, set[str]]:
    """File (relative to var/) -> canaries found in it. ``skip``: the warehouse files (scanned by
    schema instead, since raw/staging/marts/quarantine may hold people). The language model's weight
    files are not read (half a gigabyte derived from the shipped checkpoint only: Clarion never
    trains it on customer data); its tokenizer and config files are."""
    hits = {}
    for path in sorted(var.rglob("*")):
        if not path.is_file() or path in skip or path.name.endswith(".lock") or path.suffix in WEIGHTS:
            continue
        found = _found(_text_of(path.name, path.read_bytes()), needles)
        if found:
            hits[str(path.relative_to(var))] = found
    return hits


def scan_warehouse(path: Path, needles: dict[str, int]) -> dict[str, set[str]]:
    """Table -> canaries found, in every schema but the personal ones; each column cast to text."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = con.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_catalog = current_database()"
        ).fetchall()
        hits = {}
        for schema, table in tables:
            if schema in PERSONAL_SCHEMAS:
                continue
            found = _found(_rows_text(con, f'select columns(*)::varchar from "{schema}"."{table}"'), needles)
            if found:
                hits[f"{schema}.{table}"] = found
        return hits
    finally:
        con.close()


def prefect_database() -> Path:
    from prefect.settings import get_current_settings

    url = get_current_settings().server.database.connection_url.get_secret_value()
    return Path(url.split("///", 1)[1])


# -- the run ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def canary_run(tmp_path_factory: pytest.TempPathFactory, prefect_server) -> dict:
    root = tmp_path_factory.mktemp("canary")
    (root / "clarion.yaml").write_text(
        "warehouse:\n  path: var/warehouse.duckdb\nsources:\n  crm:\n    kind: files\n    path: crm\n"
        "content:\n  candidates: 2\n  max_new_tokens: 16\n"  # drafting is not what is tested here
    )
    generate(GenerateSettings(customers=300, seed=11, defects=0.0), out=root / "crm")
    planted = _plant(root / "crm")
    settings = load_settings(root / "clarion.yaml", env={})
    write_tiny_brief(root / "campaigns", "canary-comeback", "promising", variants=1)
    result = run_pipeline_in(root)
    assert result["status"] == "completed"
    print({name: s["meter"]["wall_s"] for name, s in result["stages"].items()})
    cwd = Path.cwd()
    import os

    os.chdir(root)
    try:
        runner = CliRunner()
        out = runner.invoke(cli, ["report", "--no-send", "--json"])
        assert out.exit_code == 0, out.output
        with duckdb.connect(str(settings.warehouse.path), read_only=True) as con:
            pending = con.execute(
                "select draft_id from content.drafts where status = 'pending' order by draft_id"
            ).fetchall()
        assert pending, "the content stage left no draft to approve: nothing would be exported"
        out = runner.invoke(cli, ["approve", pending[0][0], "--by", "marketing-lead"])
        assert out.exit_code == 0, out.output
        out = runner.invoke(cli, ["export", "--json"])
        assert out.exit_code == 0, out.output
        exported = json.loads(out.output)
        assert list((settings.var_dir / "exports").rglob("*.*")), "the export wrote no file to scan"
        out = runner.invoke(cli, ["compliance", "export", result["run_id"], "--json"])
        assert out.exit_code == 0, out.output
        pack = json.loads(out.output)
    finally:
        os.chdir(cwd)
    return {
        "root": root,
        "settings": settings,
        "planted": planted,
        "result": result,
        "pack": pack,
        "exported": exported,
    }


def test_planted_people_reached_the_warehouse_so_the_scan_has_something_to_miss(canary_run) -> None:
    settings, planted = canary_run["settings"], canary_run["planted"]
    needles = _needles(planted)
    with duckdb.connect(str(settings.warehouse.path), read_only=True) as con:
        raw = _found(_rows_text(con, "select * from raw.contacts"), needles)
        tickets = _found(_rows_text(con, "select * from raw.support_tickets"), needles)
        scored = con.execute(
            f"select count(*) from ml.customer_scores where run_id = ? and contact_id in "
            f"({', '.join(map(str, planted))})",
            [canary_run["result"]["run_id"]],
        ).fetchone()[0]
    assert {v["email"].lower() for v in planted.values()} <= raw
    assert {v["marker"].lower() for v in planted.values()} <= tickets
    assert scored == len(planted)  # they went through scoring, explanations and the pack


def test_no_canary_outside_the_personal_schemas_and_consented_exports(canary_run) -> None:
    settings, planted = canary_run["settings"], canary_run["planted"]
    needles = _needles(planted)
    var = settings.var_dir
    warehouse = Path(settings.warehouse.path)
    skip = {warehouse, warehouse.with_name(warehouse.name + ".wal")}
    # the read snapshot is a copy of the warehouse (what the API reads): scanned by schema below, as
    # the warehouse is; a copy it left behind (an older one) would be a leak and is scanned as a file
    snap = snapshot.current(warehouse)
    assert snap is not None, "the run published no read snapshot"
    skip.add(snap)
    files = scan_files(var, needles, skip)
    consenting = {cid for cid, v in planted.items() if int(list(planted).index(cid)) % 2 == 0}
    leaks = {}
    for name, found in files.items():
        if name.startswith("exports/"):
            # an export carries the recipient's own e-mail and first name: only people who consented
            found = {n for n in found if needles[n] not in consenting}
        if found:
            leaks[name] = found
    assert leaks == {}, f"canaries outside the warehouse: {leaks}"
    assert scan_warehouse(warehouse, needles) == {}
    assert scan_warehouse(snap, needles) == {}
    prefect = _found(_sqlite_text(prefect_database()), needles)
    assert prefect == set(), f"canaries in Prefect's database: {prefect}"


def test_dlt_keeps_no_load_package_and_the_landing_zone_is_emptied(canary_run) -> None:
    var = canary_run["settings"].var_dir
    assert (var / "dlt").is_dir()  # dlt ran here
    assert not list((var / "dlt").rglob("completed_jobs"))
    assert not list((var / "dlt").rglob("*.parquet"))
    assert not list((var / "landing").rglob("*.parquet"))


def test_the_pack_names_customers_by_the_keyed_pseudonym_only(canary_run) -> None:
    import hashlib
    import hmac

    settings, pack = canary_run["settings"], canary_run["pack"]
    folder = Path(pack["folder"])
    meta = json.loads((folder / "pseudonyms.json").read_text())
    explanations = pd.read_parquet(folder / "explanations.parquet")
    with duckdb.connect(str(settings.warehouse.path), read_only=True) as con:
        key = bytes(con.execute("select key from privacy.keys where name = 'pseudonym'").fetchone()[0])
        ids = [
            r[0]
            for r in con.execute(
                "select contact_id from ml.customer_scores where run_id = ?", [canary_run["result"]["run_id"]]
            ).fetchall()
        ]
    assert "contact_id" not in explanations.columns
    want = sorted("p_" + hmac.new(key, f"contact:{i}".encode(), hashlib.sha256).hexdigest()[:16] for i in ids)
    assert sorted(explanations["pseudonym"]) == want
    assert meta["key_id"] == hashlib.sha256(b"clarion-pseudonym-key-id:" + key).hexdigest()[:8]
    assert meta["key_source"] == "warehouse" and key.hex() not in (folder / "pseudonyms.json").read_text()
    # `clarion explain ID --json` (privileged, by contact id) names the same pseudonym as the pack
    cid = next(iter(canary_run["planted"]))
    import os

    cwd = Path.cwd()
    os.chdir(canary_run["root"])
    try:
        out = CliRunner().invoke(cli, ["explain", str(cid), "--json"])
    finally:
        os.chdir(cwd)
    assert out.exit_code == 0, out.output
    shown = json.loads(out.output)
    assert shown["contact_id"] == cid
    assert (
        shown["pseudonym"] == "p_" + hmac.new(key, f"contact:{cid}".encode(), hashlib.sha256).hexdigest()[:16]
    )
    assert shown["pseudonym"] in set(explanations["pseudonym"])


def test_the_scanner_finds_a_canary_planted_in_each_kind_of_place(canary_run, tmp_path: Path) -> None:
    """Proof the clean result above can fail: the same scanner, on a copy of var/ with canaries planted
    in a Parquet file, a zip member, a gzip'd JSON line and a table of a non-personal schema."""
    import shutil

    settings, planted = canary_run["settings"], canary_run["planted"]
    needles = _needles(planted)
    values = list(planted.values())
    var = tmp_path / "var"
    shutil.copytree(settings.var_dir, var, ignore=shutil.ignore_patterns("*.lock", "models", "gx", "dbt"))
    warehouse = var / Path(settings.warehouse.path).name
    con = duckdb.connect(str(warehouse))
    con.execute(
        f"copy (select 1 as id, '{values[0]['email']}' as note) to '{var / 'reports' / 'probe.parquet'}'"
    )
    con.execute(f"create table ml.probe as select 'seen {values[1]['marker']}' as note")
    con.close()
    with zipfile.ZipFile(var / "compliance" / "probe.zip", "w") as z:
        z.writestr("inner/notes.txt", f"call {values[2]['phone']}")
    (var / "runs" / "probe.jsonl.gz").write_bytes(
        gzip.compress(json.dumps({"n": values[3]["last_name"]}).encode())
    )
    files = scan_files(var, needles, {warehouse})
    assert values[0]["email"].lower() in files["reports/probe.parquet"]
    assert values[2]["phone"].lower() in files["compliance/probe.zip"]
    assert values[3]["last_name"].lower() in files["runs/probe.jsonl.gz"]
    assert scan_warehouse(warehouse, needles) == {"ml.probe": {values[1]["marker"].lower()}}
