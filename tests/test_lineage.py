"""The lineage manifest of a run: written at the end of a real pipeline run, agreeing with the
warehouse and the files, free of personal data, and re-verifiable."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from clarion.cli import cli

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]


@pytest.fixture
def finished(small_run, monkeypatch):
    """The session's real run (300 customers); the test that changes files runs last."""
    monkeypatch.chdir(small_run["root"])
    return small_run["settings"], small_run["result"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_run_writes_a_manifest_that_agrees_with_the_warehouse_and_the_files(
    finished, tmp_path: Path
) -> None:
    settings, result = finished
    run_id = result["run_id"]
    path = settings.var_dir / "runs" / run_id / "manifest.json"
    assert result["manifest"] == str(path)
    m = json.loads(path.read_text())
    con = duckdb.connect(str(settings.warehouse.path), read_only=True)
    try:
        run = con.execute(
            "select command, status, config_hash, code_version from audit.runs where run_id = ?", [run_id]
        ).fetchone()
        loads = con.execute(
            "select sum(read), sum(loaded), sum(quarantined) from audit.extract_loads where run_id = ?",
            [run_id],
        ).fetchone()
        scored = con.execute(
            "select count(*), any_value(model_version) from ml.customer_scores where run_id = ?", [run_id]
        ).fetchone()
        people = con.execute("select first_name, last_name, email, phone from raw.contacts").fetchall()
    finally:
        con.close()
    assert (m["run"]["command"], m["run"]["status"], m["run"]["config_hash"], m["run"]["code_version"]) == run
    assert m["run"]["config_hash"] == settings.fingerprint()
    assert [sum(x[k] for x in m["inputs"]["loads"]) for k in ("read", "loaded", "quarantined")] == list(loads)
    # every extracted file is named with its real sha256
    crm = settings.var_dir / "crm"
    listed = {Path(f["file"]).name: f["sha256"] for f in m["inputs"]["files"]}
    assert listed and all(_sha(crm / name) == sha for name, sha in listed.items())
    assert m["transform"]["dbt"]["manifest_sha256"] and "customer_features" in m["transform"]["dbt"]["models"]
    assert {q["suite"] for q in m["transform"]["quality"]} == {"raw", "marts"}
    assert sum(m["model"]["scored"].values()) == scored[0] and m["model"]["version"] == scored[1]
    assert m["model"]["training_fingerprint"]
    outputs = {Path(o["path"]).name: o for o in m["outputs"]}
    assert {"card.md", "meta.json"} <= set(outputs)
    assert all(_sha(Path(o["path"])) == o["sha256"] for o in m["outputs"])
    # ids, counts and hashes only
    text = path.read_text()
    for first, last, email, phone in people:
        assert not email or email not in text
        assert not phone or phone not in text
        assert f"{first} {last}" not in text


def test_report_manifest_and_warehouse_tell_the_same_story(finished) -> None:
    """One run, three accounts of it: the report's counts, the manifest's and the warehouse's agree,
    and the manifest lists the report files with their real hashes."""
    settings, result = finished
    run_id = result["run_id"]
    report = result["stages"]["report"]
    data = json.loads(Path(report["paths"]["json"]).read_text())
    manifest = json.loads((settings.var_dir / "runs" / run_id / "manifest.json").read_text())
    con = duckdb.connect(str(settings.warehouse.path), read_only=True)
    try:
        warehouse = dict(
            con.execute(
                "select segment, count(*) from ml.customer_scores where run_id = ? group by segment", [run_id]
            ).fetchall()
        )
    finally:
        con.close()
    assert (
        {s["segment"]: s["customers"] for s in data["segments"]} == warehouse == manifest["model"]["scored"]
    )
    assert data["headline"]["customers"] == sum(warehouse.values()) == report["customers"]
    assert data["headline"]["model_version"] == manifest["model"]["version"]
    listed = {o["path"]: o["sha256"] for o in manifest["outputs"]}
    for kind in ("html", "pdf", "json"):
        path = report["paths"][kind]
        assert listed[str(path)] == report["sha256"][kind] == _sha(Path(path))


def test_an_unknown_run_has_no_manifest(project) -> None:
    project()
    result = CliRunner().invoke(cli, ["lineage", "verify", "20990101T000000Z-nothere"])
    assert result.exit_code == 6 and "no manifest for run" in result.output


def test_the_compliance_pack_holds_what_a_reviewer_needs_and_no_personal_data(finished) -> None:
    import zipfile

    import pandas as pd

    settings, result = finished
    run_id = result["run_id"]
    out = CliRunner().invoke(cli, ["compliance", "export", run_id, "--json"])
    assert out.exit_code == 0, out.output
    pack = json.loads(out.output)
    folder = Path(pack["folder"])
    expected = {
        "manifest.json",
        "explanations.parquet",
        "model_card.md",
        "model_card.json",
        "audit_events.jsonl",
        "audit_verification.json",
        "quality_results.csv",
        "consent_summary.json",
        "content_provenance.jsonl",
        "README.md",
    }
    assert expected <= set(pack["files"])
    con = duckdb.connect(str(settings.warehouse.path), read_only=True)
    try:
        scored = con.execute("select count(*) from ml.customer_scores where run_id = ?", [run_id]).fetchone()[
            0
        ]
        consent = con.execute(
            "select count(*), count(*) filter (where email_consent) from marts.dim_customers"
        ).fetchone()
        people = con.execute("select first_name, last_name, email, phone from raw.contacts").fetchall()
        events = con.execute("select count(*) from audit.events where run_id = ?", [run_id]).fetchone()[0]
    finally:
        con.close()
    explanations = pd.read_parquet(folder / "explanations.parquet")
    assert len(explanations) == scored == pack["customers_explained"]
    assert {"contact_id", "segment", "reasons", "model_version", "churn_risk"} <= set(explanations.columns)
    assert not {"first_name", "last_name", "email", "phone"} & set(explanations.columns)
    summary = json.loads((folder / "consent_summary.json").read_text())
    assert (summary["contacts"]["contacts"], summary["contacts"]["email_consent"]) == consent
    lines = (folder / "audit_events.jsonl").read_text().splitlines()
    assert len(lines) == events == pack["audit_events"] > 0
    assert json.loads((folder / "audit_verification.json").read_text())["ok"] is True
    sums = dict(line.split("  ")[::-1] for line in (folder / "SHA256SUMS").read_text().splitlines())
    assert sums and all(_sha(folder / name) == digest for name, digest in sums.items())
    with zipfile.ZipFile(pack["zip"]) as z:
        assert {f"{run_id}/{name}" for name in expected} <= set(z.namelist())
    text = "\n".join((folder / n).read_text() for n in pack["files"] if not n.endswith(".parquet"))
    text += explanations.to_csv()
    for first, last, email, phone in people:
        assert not email or email not in text
        assert not phone or phone not in text
        assert f"{first} {last}" not in text


def test_a_report_written_again_updates_the_manifest_so_it_still_verifies(finished) -> None:
    settings, result = finished
    run_id = result["run_id"]
    before = json.loads((settings.var_dir / "runs" / run_id / "manifest.json").read_text())
    again = CliRunner().invoke(cli, ["report", "--run", run_id, "--no-send", "--json"])
    assert again.exit_code == 0, again.output
    pdf = Path(json.loads(again.stdout)["paths"]["pdf"])
    after = json.loads((settings.var_dir / "runs" / run_id / "manifest.json").read_text())
    listed = {o["path"]: o["sha256"] for o in after["outputs"]}
    assert listed[str(pdf)] == _sha(pdf)  # the new file's hash, listed
    assert {o["path"] for o in before["outputs"]} == set(listed)  # same files, nothing lost
    ok = CliRunner().invoke(cli, ["lineage", "verify", run_id])
    assert ok.exit_code == 0 and "match the manifest" in ok.output, ok.output


def test_verify_names_a_changed_or_missing_output(finished) -> None:
    settings, result = finished
    run_id = result["run_id"]
    ok = CliRunner().invoke(cli, ["lineage", "verify", run_id])
    assert ok.exit_code == 0 and "match the manifest" in ok.output, ok.output
    m = json.loads((settings.var_dir / "runs" / run_id / "manifest.json").read_text())
    card = next(Path(o["path"]) for o in m["outputs"] if o["path"].endswith("card.md"))
    meta = next(Path(o["path"]) for o in m["outputs"] if o["path"].endswith("meta.json"))
    saved = card.read_text(), meta.read_bytes()
    card.write_text(saved[0] + "\nedited after the run\n")
    meta.unlink()
    try:
        bad = CliRunner().invoke(cli, ["lineage", "verify", run_id, "--json"])
    finally:  # the run is the session's (small_run): put its files back for the tests after this one
        card.write_text(saved[0])
        meta.write_bytes(saved[1])
    assert bad.exit_code == 6
    report = json.loads(bad.output)
    assert not report["ok"]
    assert sorted(report["problems"]) == sorted(
        [f"{card}: sha256 differs from the manifest (changed after the run)", f"{meta}: missing"]
    )
    shown = CliRunner().invoke(cli, ["lineage", "show", run_id])
    assert shown.exit_code == 0 and json.loads(shown.output)["run"]["run_id"] == run_id
