"""Retention (`clarion retention apply`, clarion.privacy.retention) on a copy of a real pipeline run:
dated items are planted on both sides of each limit, and what must go is counted by the test from
what it planted, never from the code under test."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from clarion import lineage
from clarion.audit.events import RETENTION_APPLIED
from clarion.cli import cli
from clarion.config import load_settings
from clarion.privacy import retention
from clarion.runs import sha256_file

NOW = datetime.now(UTC)
TODAY = NOW.date()
LIMITS = """
retention:
  scores_keep_runs: 2
  scores_keep_days: 30
  exports_keep_days: 90
  quarantine_redact_days: 30
  reports_keep_runs: 2
  packs_keep_days: 365
"""
# planted scoring runs: (run id, age in days, rows); with the real run (newest) and keep_runs=2,
# old-1 stays; old-5 goes (beyond 2 runs); old-40 and old-100 go (beyond both limits)
PLANTED_RUNS = [("old-1", 1, 7), ("old-5", 5, 11), ("old-40", 40, 13), ("old-100", 100, 17)]
GONE_RUNS = {"old-5", "old-40", "old-100"}


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


@pytest.fixture
def copied(small_run, tmp_path: Path) -> dict:
    """A private copy of the shared run with the retention limits above (the shared one stays as it is)."""
    root = tmp_path / "project"
    shutil.copytree(small_run["root"], root, ignore=shutil.ignore_patterns("*.lock", "prefect"))
    with (root / "clarion.yaml").open("a") as fh:
        fh.write(LIMITS)
    settings = load_settings(root / "clarion.yaml", env={})
    return {"root": root, "settings": settings, "run_id": small_run["result"]["run_id"]}


def connect(settings) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(settings.warehouse.path))


def count(settings, sql: str, params: list | None = None) -> int:
    con = duckdb.connect(str(settings.warehouse.path), read_only=True)
    try:
        return con.execute(sql, params or []).fetchone()[0]
    finally:
        con.close()


def plant_scores(settings, real_run: str) -> dict[str, int]:
    """Old scoring runs (copies of real rows), NBA decisions and trigger hits on them, uplift runs.
    Returns the rows that must go per kind."""
    from clarion.nba.decide import ensure_tables as ensure_nba
    from clarion.results.uplift import DDL as UPLIFT_DDL
    from clarion.triggers import ensure_tables as ensure_triggers

    con = connect(settings)
    try:
        ensure_nba(con)
        ensure_triggers(con)
        for ddl in UPLIFT_DDL:
            con.execute(ddl)
        for run, age, rows in PLANTED_RUNS:
            con.execute(
                "insert into ml.customer_scores select * replace (?::varchar as run_id, ?::timestamptz as "
                "scored_at) from ml.customer_scores where run_id = ? order by contact_id limit ?",
                [run, ago(age), real_run, rows],
            )
            for i in range(3):  # 3 NBA decisions and 2 trigger hits on each planted scoring run
                con.execute(
                    "insert into ml.next_best_action (run_id, nba_run_id, contact_id, decided_at) "
                    "values (?, ?, ?, ?)",
                    [run, f"nba-{run}", i + 1, ago(age)],
                )
            for i in range(2):
                con.execute(
                    "insert into ml.trigger_hits (trigger_id, scoring_run_id, contact_id, detected_at) "
                    "values (?, ?, ?, ?)",
                    [f"t-{run}", run, i + 1, ago(age)],
                )
            for i in range(age % 7 + 1):  # uplift of results runs of the same ids and ages
                con.execute(
                    "insert into ml.customer_uplift (results_run_id, contact_id, as_of) values (?, ?, ?)",
                    [run, i + 1, ago(age).date()],
                )
        con.execute(
            "insert into ml.customer_uplift (results_run_id, contact_id, as_of) values (?, 1, ?)",
            [real_run, TODAY],
        )
    finally:
        con.close()
    return {
        "scores": sum(rows for run, _, rows in PLANTED_RUNS if run in GONE_RUNS),
        "nba_decisions": 3 * len(GONE_RUNS),
        "trigger_hits": 2 * len(GONE_RUNS),
        "customer_uplift": sum(age % 7 + 1 for run, age, _ in PLANTED_RUNS if run in GONE_RUNS),
    }


def plant_quarantine(settings) -> dict[str, int]:
    from clarion.extract import findings
    from clarion.extract.publish import quarantine_ddl

    body = json.dumps({"email": "someone@example.com", "first_name": "Ada"})
    rows = [  # (table, age in days, record); 31 days old goes, 29 stays, already redacted is not counted
        ("contacts", 31, body),
        ("contacts", 45, "not json at all"),
        ("contacts", 29, body),
        ("contacts", 60, '{"email":null,"first_name":null}'),
        ("orders", 200, body),
        ("orders", 1, body),
    ]
    con = connect(settings)
    try:
        for name in ("contacts", "orders"):
            con.execute(quarantine_ddl(name))
        findings.ensure_table(con)
        for i, (table, age, record) in enumerate(rows):
            con.execute(
                f"insert into quarantine.{table} "
                f"values ('L{i}', 'R', 'crm', 'f.csv', ?, ?, 'bad', 'email', ?, ?)",
                [1000 + i, f"k{i}", record, ago(age)],
            )
        for i, age in enumerate((31, 90, 10)):
            con.execute(
                "insert into quarantine.field_findings values ('L', 'R', 'crm', 'contacts', 'f.csv', ?, ?, "
                "'phone', 'bad', '+44 20 7946 0000', ?)",
                [2000 + i, f"f{i}", ago(age)],
            )
    finally:
        con.close()
    return {"quarantine_bodies": 3, "quarantine_findings": 2}


def plant_exports(settings, real_run: str) -> tuple[int, list[Path], list[Path]]:
    """Export rows with files: 100 days old (goes), 10 days (stays), 100 days without its file (nothing)."""
    from clarion.content.store import ensure_tables

    root = settings.var_dir / "exports" / real_run
    old = root / "old-campaign" / "email.csv"
    new = root / "new-campaign" / "email.csv"
    for path in (old, new):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("contact_id,email\n1,someone@example.com\n")
    con = connect(settings)
    try:
        ensure_tables(con)
        for export_id, path, age in (
            (f"{real_run}-old", old, 100),
            (f"{real_run}-new", new, 10),
            (f"{real_run}-gone", root / "gone" / "email.csv", 100),
        ):
            con.execute(
                "insert into content.exports values (?, 'c', 'email', '{}', 1, '{}', ?, ?, ?)",
                [export_id, str(path), sha256_file(path) if path.exists() else None, ago(age)],
            )
    finally:
        con.close()
    return 1, [old], [new]


def plant_reports(settings) -> tuple[list[Path], list[Path]]:
    """Report folders of runs not in audit.runs (ordered by their time on disk) beside the real one."""
    base = settings.var_dir / "reports"
    folders = []
    for i, age in enumerate((0.01, 3, 8, 20)):
        folder = base / f"planted-{i}"
        folder.mkdir(parents=True)
        (folder / "report.html").write_text("<p>aggregates</p>")
        stamp = ago(age).timestamp()
        os.utime(folder, (stamp, stamp))
        folders.append(folder)
    # with the real run's folder (started today, before planted-0): newest two are planted-0 and real
    real = [p for p in base.iterdir() if p.is_dir() and not p.name.startswith("planted-")]
    return folders[1:], [folders[0], *real]


def plant_packs(settings) -> tuple[list[Path], list[Path]]:
    base = settings.var_dir / "compliance"
    base.mkdir(parents=True, exist_ok=True)
    gone, kept = [], []
    for name, age in (("p-old", 400), ("p-older", 800), ("p-new", 300)):
        folder = base / name
        folder.mkdir()
        (folder / "SHA256SUMS").write_text("x  y\n")
        archive = base / f"{name}.zip"
        archive.write_bytes(b"PK")
        stamp = ago(age).timestamp()
        for p in (folder / "SHA256SUMS", archive):
            os.utime(p, (stamp, stamp))
        (gone if age > 365 else kept).extend([folder, archive])
    return gone, kept


def snapshot(settings) -> dict[str, int]:
    tables = ["ml.customer_scores", "ml.next_best_action", "ml.trigger_hits", "ml.customer_uplift"]
    out = {t: count(settings, f"select count(*) from {t}") for t in tables}
    out["quarantine redacted"] = count(
        settings,
        "select count(*) from quarantine.contacts where record like '%null%' or record = '{}'",
    )
    out["findings nulled"] = count(
        settings, "select count(*) from quarantine.field_findings where value is null"
    )
    out["files"] = sum(1 for p in settings.var_dir.rglob("*") if p.is_file())
    return out


def retention_events(settings) -> list[dict]:
    con = duckdb.connect(str(settings.warehouse.path), read_only=True)
    try:
        rows = con.execute(
            "select subject, details from audit.events where action = ? order by seq", [RETENTION_APPLIED]
        ).fetchall()
    finally:
        con.close()
    return [{"subject": s, "details": json.loads(d)} for s, d in rows]


def test_each_kind_goes_exactly_past_its_limit_and_is_counted_in_the_audit_log(copied) -> None:
    settings, real = copied["settings"], copied["run_id"]
    expected = plant_scores(settings, real)
    expected |= plant_quarantine(settings)
    expected["export_files"], old_exports, new_exports = plant_exports(settings, real)
    gone_reports, kept_reports = plant_reports(settings)
    gone_packs, kept_packs = plant_packs(settings)
    expected["reports"] = len(gone_reports)
    expected["compliance_packs"] = len(gone_packs)
    assignments = count(settings, "select count(*) from content.assignments")

    result = retention.apply(settings, today=TODAY)

    assert not result["dry_run"]
    assert {k: v for k, v in result["counts"].items() if v} == expected
    assert result["total"] == sum(expected.values())
    assert set(result["runs"]["scores"]) == GONE_RUNS
    kept_runs = {
        r
        for (r,) in duckdb.connect(str(settings.warehouse.path), read_only=True)
        .execute("select distinct run_id from ml.customer_scores")
        .fetchall()
    }
    assert kept_runs == {real, "old-1"}
    assert (
        count(
            settings, "select count(*) from ml.next_best_action where run_id in ('old-5','old-40','old-100')"
        )
        == 0
    )
    assert count(settings, "select count(*) from ml.customer_uplift where results_run_id = ?", [real]) == 1
    # quarantine: bodies cut to their field names, everything else of the row kept
    redacted = (
        duckdb.connect(str(settings.warehouse.path), read_only=True)
        .execute(
            "select row, key, reason, field, load_id, record from quarantine.contacts "
            "where row in (1000, 1001) order by row"
        )
        .fetchall()
    )
    assert redacted == [
        (1000, "k0", "bad", "email", "L0", '{"email":null,"first_name":null}'),
        (1001, "k1", "bad", "email", "L1", "{}"),
    ]
    assert count(settings, "select count(*) from quarantine.contacts where record like '%someone@%'") == 1
    assert count(settings, "select count(*) from quarantine.orders where record like '%someone@%'") == 1
    assert count(settings, "select count(*) from quarantine.field_findings where value is not null") == 1
    # files: exactly the stale ones gone
    assert not any(p.exists() for p in old_exports + gone_reports + gone_packs)
    assert all(p.exists() for p in new_exports + kept_reports + kept_packs)
    assert not old_exports[0].parent.exists()  # its emptied folder pruned
    assert (
        count(settings, "select count(*) from content.assignments") == assignments
    )  # experiment record kept
    [event] = retention_events(settings)
    assert event["subject"] == f"retention {TODAY.isoformat()}"
    assert {k: v for k, v in event["details"]["counts"].items() if v} == expected
    assert "someone@" not in json.dumps(event) and "Ada" not in json.dumps(event)


def test_a_dry_run_changes_nothing_and_a_second_apply_removes_nothing(copied) -> None:
    settings, real = copied["settings"], copied["run_id"]
    expected = plant_scores(settings, real) | plant_quarantine(settings)
    before = snapshot(settings)

    dry = retention.apply(settings, dry_run=True, today=TODAY)

    assert dry["dry_run"] and {k: v for k, v in dry["counts"].items() if v} == expected
    assert snapshot(settings) == before
    assert retention_events(settings) == []

    first = retention.apply(settings, today=TODAY)
    assert first["counts"] == dry["counts"]
    after_first = snapshot(settings)
    second = retention.apply(settings, today=TODAY)
    assert second["total"] == 0 and second["items"] == []
    assert snapshot(settings) == after_first
    assert [e["details"]["counts"] == second["counts"] for e in retention_events(settings)] == [False, True]


def test_none_keeps_every_kind_and_the_newest_scoring_run_always_stays(copied) -> None:
    settings, real = copied["settings"], copied["run_id"]
    plant_scores(settings, real)
    plant_quarantine(settings)
    keep_all = settings.model_copy(
        update={
            "retention": settings.retention.model_copy(
                update={k: None for k in settings.retention.model_dump()}
            )
        }
    )
    assert retention.apply(keep_all, dry_run=True, today=TODAY)["total"] == 0
    # a far future day: every planted run is older than 30 days, but the newest (the real run) stays
    later = retention.apply(settings, today=TODAY + timedelta(days=400))
    assert set(later["runs"]["scores"]) == {r for r, _, _ in PLANTED_RUNS}
    assert count(settings, "select count(distinct run_id) from ml.customer_scores") == 1
    assert count(settings, "select count(*) from ml.customer_scores where run_id = ?", [real]) > 0


def test_lineage_verify_says_removed_by_retention_instead_of_missing(copied) -> None:
    settings, real = copied["settings"], copied["run_id"]
    _, old_exports, _ = plant_exports(settings, real)
    report_files = sorted(p for p in (settings.var_dir / "reports" / real).glob("*") if p.is_file())
    assert report_files, "the shared run writes a report"
    lineage.write(settings, real, reason="copied project")  # a revision naming this copy's files
    listed = {o["path"] for o in json.loads(lineage.latest_manifest(settings, real).read_text())["outputs"]}
    assert str(old_exports[0]) in listed and {str(p) for p in report_files} <= listed
    for i in range(2):  # two newer report folders push the run's own report out (reports_keep_runs: 2)
        (settings.var_dir / "reports" / f"newer-{i}").mkdir()

    result = retention.apply(settings, today=TODAY)

    assert result["counts"]["reports"] == 1 and result["counts"]["export_files"] == 1
    checked = lineage.verify(settings, real)
    assert checked["ok"], checked["problems"]
    removed = [n for n in checked["notes"] if "removed by retention" in n]
    assert len(removed) == len(report_files) + 1
    # a file removed by hand is still a problem
    registry = next(p for p in listed if "/registry/" in p)
    Path(registry).unlink()
    checked = lineage.verify(settings, real)
    assert not checked["ok"] and checked["problems"] == [f"{registry}: missing"]


def test_the_cli_lists_a_dry_run_and_applies_with_json(copied, monkeypatch) -> None:
    settings, real = copied["settings"], copied["run_id"]
    expected = plant_scores(settings, real)
    monkeypatch.chdir(copied["root"])
    runner = CliRunner()
    dry = runner.invoke(cli, ["retention", "apply", "--dry-run"], catch_exceptions=False)
    assert dry.exit_code == 0, dry.output
    assert f"would remove {sum(expected.values())} item(s)" in dry.output
    assert "dry run: nothing was changed" in dry.output
    applied = runner.invoke(cli, ["retention", "apply", "--json"], catch_exceptions=False)
    assert applied.exit_code == 0, applied.output
    data = json.loads(applied.stdout)
    assert {k: v for k, v in data["counts"].items() if v} == expected
    again = runner.invoke(cli, ["retention", "apply"], catch_exceptions=False)
    assert "removed 0 item(s)" in again.output and "nothing has outlived" in again.output
    helped = runner.invoke(cli, ["retention", "apply", "--help"])
    assert "Examples:" in helped.output and "--dry-run" in helped.output


def test_the_retention_flow_runs_on_the_prefect_server(copied, prefect_server) -> None:
    from prefect_api import artifacts, flow_run

    from flows.retention import retention as retention_flow

    settings, real = copied["settings"], copied["run_id"]
    expected = plant_scores(settings, real)
    state = retention_flow(config_path=str(copied["root"] / "clarion.yaml"), return_state=True)
    assert state.is_completed(), state
    result = state.result()
    assert {k: v for k, v in result["counts"].items() if v} == expected
    assert count(settings, "select count(distinct run_id) from ml.customer_scores") == 2
    assert flow_run(str(state.state_details.flow_run_id)).state.is_completed()
    [artifact] = [a for a in artifacts(str(state.state_details.flow_run_id)) if a.key == "retention"]
    assert f"| scores | {expected['scores']:,} |" in artifact.data
    assert [e["details"]["counts"]["scores"] for e in retention_events(settings)] == [expected["scores"]]


def test_the_retention_deployment_is_daily_and_served() -> None:
    from clarion.serve import specs

    [spec] = [s for s in specs(None) if s.name == "retention"]
    assert spec.full_name == "retention/retention"
    assert [s["cron"] for s in spec.schedules] == ["30 3 * * *"]
    assert set(spec.parameters) <= set(spec.flow.parameters.properties)


def test_a_fresh_project_without_a_warehouse_has_nothing_to_retain_and_gets_no_warehouse(project) -> None:
    settings = project()
    result = retention.apply(settings)
    assert result["total"] == 0 and "no warehouse" in result["note"]
    assert not settings.warehouse.path.exists()


def test_the_cutoff_is_the_start_of_the_day_n_days_back() -> None:
    assert retention.cutoff(date(2026, 12, 4), 30) == datetime(2026, 11, 4, tzinfo=UTC)
