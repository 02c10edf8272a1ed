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

REPO = Path(__file__).resolve().parents[1]

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
        "pseudonyms.json",
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
    assert {"pseudonym", "segment", "reasons", "model_version", "churn_risk"} <= set(explanations.columns)
    assert (
        "contact_id" not in explanations.columns
        and explanations["pseudonym"].str.match(r"^p_[0-9a-f]{16}$").all()
    )
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


def test_the_manifest_names_scores_sources_suites_settings_versions_and_the_audit_head(finished) -> None:
    import lightgbm
    import prefect

    settings, result = finished
    run_id = result["run_id"]
    path = settings.var_dir / "runs" / run_id / "manifest.json"
    m = json.loads(path.read_text())
    con = duckdb.connect(str(settings.warehouse.path), read_only=True)
    try:
        (n_scores,) = con.execute(
            "select count(*) from ml.customer_scores where run_id = ?", [run_id]
        ).fetchone()
        lines = con.execute(
            "select to_json(t)::varchar from (select * exclude (run_id, scored_at) from ml.customer_scores "
            "where run_id = ?) t order by t.contact_id",
            [run_id],
        ).fetchall()
        loads = con.execute(
            "select source, entity, load_id from audit.extract_loads where run_id = ?", [run_id]
        ).fetchall()
        raw = {
            (source, entity): con.execute(
                f'select count(*), min("{cursor}")::varchar, max("{cursor}")::varchar from raw.{entity} '
                "where _source = ? and _load_id = ?",
                [source, load_id],
            ).fetchone()
            for source, entity, load_id in loads
            if (
                cursor := {"email_events": "occurred_at", "consents": "recorded_at"}.get(entity, "updated_at")
            )
        }
        events = con.execute(
            "select seq, hash, action, details from audit.events where run_id = ? order by seq", [run_id]
        ).fetchall()
    finally:
        con.close()
    # the scores: every row of the run, hashed in contact_id order
    assert m["scores"]["rows"] == n_scores == len(lines) > 0
    assert (
        m["scores"]["sha256"]
        == hashlib.sha256("".join(line + "\n" for (line,) in lines).encode()).hexdigest()
    )
    # each source and entity: rows of this run's load in raw and their cursor range
    fingerprints = {(f["source"], f["entity"]): f for f in m["inputs"]["sources"]}
    assert set(fingerprints) == set(raw) and len(raw) >= 7
    for key, (rows, low, high) in raw.items():
        f = fingerprints[key]
        assert f["rows_from_load"] == rows == f["loaded"], key
        assert (f["cursor_min"][:19], f["cursor_max"][:19]) == (
            low[:19].replace(" ", "T"),
            high[:19].replace(" ", "T"),
        )
    # the suites the gates read, the settings, the library versions
    shipped = REPO / "expectations"
    assert m["transform"]["suites"] == {p.name: _sha(p) for p in sorted(shipped.glob("*.yml"))}
    assert {"raw.yml", "marts.yml"} <= set(m["transform"]["suites"])
    assert m["settings"]["warehouse"]["path"] == str(settings.warehouse.path)
    assert m["settings"]["segment"] == json.loads(settings.segment.model_dump_json())
    assert (m["dependencies"]["duckdb"], m["dependencies"]["lightgbm"], m["dependencies"]["prefect"]) == (
        duckdb.__version__,
        lightgbm.__version__,
        prefect.__version__,
    )
    # the audit head when written is the event just before run.finished, which names the manifest's hash
    finished_event = next(e for e in events if e[2] == "run.finished")
    before = next(e for e in reversed(events) if e[0] < finished_event[0])
    assert m["audit"]["head"] == {"seq": before[0], "hash": before[1]}
    details = json.loads(finished_event[3])
    assert (details["manifest"], details["manifest_sha256"]) == ("manifest.json", _sha(path))
    assert m["revision"] == 1 and m["previous"] is None


def test_a_report_written_again_adds_a_revision_and_the_first_is_never_rewritten(finished) -> None:
    from clarion import lineage

    settings, result = finished
    run_id = result["run_id"]
    folder = settings.var_dir / "runs" / run_id
    first = (folder / "manifest.json").read_bytes()
    latest = lineage.revisions(settings, run_id)[-1][1]
    again = CliRunner().invoke(cli, ["report", "--run", run_id, "--no-send", "--json"])
    assert again.exit_code == 0, again.output
    pdf = Path(json.loads(again.stdout)["paths"]["pdf"])
    revisions = [p for n, p in lineage.revisions(settings, run_id) if n >= 2]
    newest = revisions[-1]
    after = json.loads(newest.read_text())
    assert (folder / "manifest.json").read_bytes() == first  # never rewritten in place
    assert after["previous"] == {"file": latest.name, "sha256": _sha(latest)}
    assert after["revision"] == int(newest.name.split(".")[1][1:]) and after["reason"]
    listed = {o["path"]: o["sha256"] for o in after["outputs"]}
    assert listed[str(pdf)] == _sha(pdf)  # the new file's hash, listed
    assert {o["path"] for o in json.loads(first)["outputs"]} == set(listed)  # same files, nothing lost
    ok = CliRunner().invoke(cli, ["lineage", "verify", run_id])
    assert ok.exit_code == 0 and "match the manifest" in ok.output, ok.output
    assert f"{len(revisions) + 1} manifest revision(s)" in ok.output

    # the first revision rewritten in place: named by the audit event and by the revision after it
    (folder / "manifest.json").write_bytes(first.replace(b'"status": "completed"', b'"status": "forged"', 1))
    try:
        bad = CliRunner().invoke(cli, ["lineage", "verify", run_id, "--json"])
    finally:
        (folder / "manifest.json").write_bytes(first)
    assert bad.exit_code == 6
    problems = json.loads(bad.output)["problems"]
    assert (
        "manifest.json: sha256 differs from the one the run.finished audit event recorded "
        "(rewritten in place)" in problems
    )
    assert any(
        p.startswith("manifest.json: sha256 differs from the one manifest.r2.json recorded") for p in problems
    )
    # a revision in the middle deleted
    if len(revisions) >= 2:
        saved = revisions[0].read_bytes()
        revisions[0].unlink()
        try:
            gap = CliRunner().invoke(cli, ["lineage", "verify", run_id, "--json"])
        finally:
            revisions[0].write_bytes(saved)
        assert any("revisions jump from r1 to r3" in p for p in json.loads(gap.output)["problems"])
    assert CliRunner().invoke(cli, ["lineage", "verify", run_id]).exit_code == 0


def test_a_later_change_that_changes_nothing_adds_no_revision(finished) -> None:
    from clarion import lineage

    settings, result = finished
    run_id = result["run_id"]
    before = lineage.revisions(settings, run_id)
    assert lineage.write(settings, run_id) == before[-1][1]
    assert lineage.revisions(settings, run_id) == before


def test_source_fingerprints_name_the_rows_and_cursor_range_of_a_database_load(tmp_path: Path) -> None:
    from clarion.lineage.collect import _masked, source_fingerprints

    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    try:
        con.execute("create schema audit")
        con.execute("create schema raw")
        con.execute(
            "create table audit.extract_loads (run_id varchar, load_id varchar, source varchar, "
            "entity varchar, read bigint, loaded bigint, quarantined bigint)"
        )
        con.execute(
            "create table raw.contacts (contact_id bigint, updated_at timestamp, _source varchar, "
            "_load_id varchar)"
        )
        con.execute(
            "insert into raw.contacts values (1, '2026-01-01 10:00', 'pg', 'L1'), "
            "(2, '2026-01-03 09:00', 'pg', 'L2'), (3, '2026-01-05 08:00', 'pg', 'L2'), "
            "(4, '2026-02-01 00:00', 'api', 'L3')"
        )
        con.execute("insert into audit.extract_loads values ('r2', 'L2', 'pg', 'contacts', 3, 2, 1)")
        [f] = source_fingerprints(con, "r2")
    finally:
        con.close()
    assert f == {
        "source": "pg",
        "entity": "contacts",
        "load_id": "L2",
        "read": 3,
        "loaded": 2,
        "quarantined": 1,
        "cursor": "updated_at",
        "rows_from_load": 2,
        "cursor_min": "2026-01-03T09:00:00",
        "cursor_max": "2026-01-05T08:00:00",
        "raw_rows": 3,
        "raw_cursor_max": "2026-01-05T08:00:00",
    }
    assert _masked(
        {"dsn": "postgresql://app:s3cret@db:5432/crm", "to": ["jane.doe@example.com"], "n": 3}
    ) == {
        "dsn": "postgresql://***@db:5432/crm",
        "to": ["***@example.com"],
        "n": 3,
    }


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
