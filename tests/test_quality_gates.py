"""Write-audit-publish: only a build that passes the gates reaches marts; a failing gate leaves them be."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from extract_helpers import query

from clarion.cli import cli
from clarion.config import GenerateSettings, load_settings
from clarion.errors import ConfigError
from clarion.quality.gate import QualityGateError
from clarion.quality.suites import load_suite
from clarion.synth.generator import generate
from clarion.transform import reuse
from clarion.transform.dbt import DbtBuildError
from clarion.warehouse import Warehouse
from flows.pipeline import pipeline

pytestmark = pytest.mark.usefixtures("prefect_server")
SUITES = Path(__file__).resolve().parents[1] / "expectations"


def marts_fingerprint(settings) -> tuple:
    return tuple(
        query(settings, f"select count(*), coalesce(sum(hash(r)), 0) from marts.{t} r")[0]
        for t in ("customer_features", "dim_customers", "fct_orders")
    )


def crm(tmp_path: Path, defects: float) -> None:
    generate(GenerateSettings(customers=300, seed=12, defects=defects), out=tmp_path / "var" / "crm")


@pytest.fixture(scope="module")
def golden(tmp_path_factory, prefect_server) -> Path:
    """One project whose first run published clean marts (extract and transform: made once)."""
    root = tmp_path_factory.mktemp("golden")
    (root / "clarion.yaml").write_text(
        "warehouse:\n  path: var/warehouse.duckdb\ngenerate:\n  out: var/crm\n"
    )
    crm(root, defects=0.0)
    cwd = Path.cwd()
    os.chdir(root)
    try:
        result = pipeline(config_path="clarion.yaml", stages=["extract", "transform"])
    finally:
        os.chdir(cwd)
    assert result["stages"]["transform"]["published"]["customer_features"] > 0
    return root


@pytest.fixture
def published(golden: Path, tmp_path: Path, monkeypatch):
    """A copy of the golden project, as the working directory: each test changes its own."""
    project = tmp_path / "project"
    shutil.copytree(golden, project)
    monkeypatch.chdir(project)
    return load_settings(project / "clarion.yaml", env={})


def gate_rows(settings, status: str) -> set[str]:
    return {
        r[0] for r in query(settings, "select check_id from audit.quality_results where status = ?", [status])
    }


def test_a_clean_run_publishes_and_keeps_every_gate_result(published) -> None:
    settings = published
    assert query(settings, "select count(*) from audit.publications")[0][0] == 1
    assert {r[0] for r in query(settings, "select distinct suite from audit.quality_results")} == {
        "raw",
        "marts",
    }
    assert "features.one-row-per-customer" in gate_rows(settings, "passed")
    assert "features.drift" in gate_rows(settings, "skipped")  # nothing published to compare with yet
    docs = settings.var_dir / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    assert docs.is_file()


@pytest.mark.slow  # a whole transform with dbt and gates (make test stays under 15 minutes)
def test_defective_data_stops_the_run_at_the_raw_gate_and_marts_keep_the_last_good_build(published):
    settings = published
    tmp_path = settings.var_dir.parent
    before = marts_fingerprint(settings)
    crm(tmp_path, defects=0.15)  # the next export is broken: 15% of every entity breaks the contract
    with pytest.raises(QualityGateError) as failed:
        pipeline(config_path="clarion.yaml")
    message = str(failed.value)
    assert "quality gate 'raw' failed" in message and "raw.quarantine-rate-stop" in message
    assert "orders=0.1" in message  # which table, with the measured share
    assert marts_fingerprint(settings) == before
    assert query(settings, "select count(*) from audit.publications")[0][0] == 1
    [(status, error)] = query(
        settings, "select status, error from audit.runs order by started_at desc limit 1"
    )
    assert status == "failed" and "raw.quarantine-rate-stop" in error
    crm(tmp_path, defects=0.0)  # the source is fixed: the bad files are replaced
    result = pipeline(config_path="clarion.yaml", stages=["extract", "transform"])
    assert result["stages"]["transform"]["gates"][0]["ok"] is True
    assert query(settings, "select count(*) from audit.publications")[0][0] == 2


def _shift_spend(settings, factor: float) -> None:
    from clarion.warehouse import Warehouse

    with Warehouse.from_settings(settings).connect("test shift") as con:
        con.execute(f"update raw.orders set total_amount = total_amount * {factor}")


def test_a_large_feature_shift_fails_the_marts_gate_and_nothing_is_published(published) -> None:
    settings = published
    before = marts_fingerprint(settings)
    _shift_spend(settings, 6.0)
    with pytest.raises(QualityGateError) as failed:
        pipeline(config_path="clarion.yaml", stages=["transform"])
    assert "quality gate 'marts' failed" in str(failed.value)
    assert "features.drift-stop" in str(failed.value) and "customer_features.spend_365d_eur" in str(
        failed.value
    )
    assert marts_fingerprint(settings) == before
    assert "features.drift-stop" in gate_rows(settings, "failed")


def test_the_same_shift_only_warns_when_the_suite_says_warn(published) -> None:
    suites = published.var_dir.parent / "suites"
    shutil.copytree(SUITES, suites)
    marts = yaml.safe_load((suites / "marts.yml").read_text())
    for check in marts["checks"]:
        if check["id"] == "features.drift-stop":
            check["severity"] = "warn"
    marts["version"] += 1
    (suites / "marts.yml").write_text(yaml.safe_dump(marts, sort_keys=False))
    config = published.var_dir.parent / "clarion.yaml"
    config.write_text(config.read_text() + f"quality:\n  suites_dir: {suites}\n")
    settings = load_settings(config, env={})
    _shift_spend(settings, 6.0)
    result = pipeline(config_path="clarion.yaml", stages=["transform"])
    marts_gate = result["stages"]["transform"]["gates"][1]
    assert marts_gate["ok"] is True and marts_gate["version"] == marts["version"]
    assert any(w.startswith("features.drift-stop") for w in marts_gate["warnings"])
    assert query(settings, "select count(*) from audit.publications")[0][0] == 2


def test_labels_for_a_horizon_that_has_not_ended_stop_publication(published) -> None:
    """The published day is the day after the latest order: its horizon has not begun, so its labels
    must be NULL. A labels model that calls them complete (here: a copy of the dbt project with that
    bug) would publish "nobody buys" for every customer; the marts gate counts such labels from the
    orders themselves and stops the run."""
    settings = published
    root = settings.var_dir.parent
    project = root / "dbt-bug"
    shutil.copytree(SUITES.parent / "dbt", project, ignore=shutil.ignore_patterns("target", "logs"))
    labels = project / "models" / "marts" / "customer_labels.sql"
    text = labels.read_text()
    assert "as horizon_complete" in text
    labels.write_text(
        text.replace("false\n        ) as horizon_complete", "true\n        ) or true as horizon_complete")
    )
    assert labels.read_text() != text
    before = marts_fingerprint(settings)
    config = root / "clarion.yaml"
    config.write_text(config.read_text() + f"transform:\n  dbt_project_dir: {project}\n")
    with pytest.raises(QualityGateError) as failed:
        pipeline(config_path="clarion.yaml", stages=["transform"])
    assert "labels.only-finished-horizons" in str(failed.value)
    assert marts_fingerprint(settings) == before
    published_labels = query(
        settings, "select count(*) from marts.customer_labels where purchased_in_horizon is not null"
    )
    assert published_labels == [(0,)]


def test_a_failing_dbt_test_stops_publication(published) -> None:
    settings = published
    before = marts_fingerprint(settings)
    from clarion.warehouse import Warehouse

    with Warehouse.from_settings(settings).connect("test") as con:  # a category outside the accepted list
        con.execute("update raw.products set category = 'hats' where product_id = 1")
    with pytest.raises(DbtBuildError, match=r"accepted_values_stg_products_category"):
        pipeline(config_path="clarion.yaml", stages=["transform"])
    assert marts_fingerprint(settings) == before


@pytest.mark.slow  # a whole transform with dbt and gates (make test stays under 15 minutes)
def test_clarion_check_runs_the_gates_alone_and_exits_4_on_a_failure(published) -> None:
    tmp_path = published.var_dir.parent
    ok = CliRunner().invoke(cli, ["check", "--json"], catch_exceptions=False)
    assert ok.exit_code == 0, ok.output
    crm(tmp_path, defects=0.15)
    from extract_helpers import run_extract

    run_extract(published)  # extract alone: the gate has not judged it yet
    failed = CliRunner().invoke(cli, ["check"])
    assert failed.exit_code == 4
    assert "quality gate 'raw' failed" in failed.output


def test_data_docs_have_a_page_per_validation_and_the_index_lists_the_newest(published) -> None:
    """Each gate builds its pages once, after all its validations; the index is capped at
    quality.data_docs_index_results, newest first, and older pages stay on disk."""
    import re

    from clarion.quality.gate import run_gate
    from clarion.warehouse import Warehouse

    config = published.var_dir.parent / "clarion.yaml"
    config.write_text(config.read_text() + "quality:\n  data_docs_index_results: 3\n")
    settings = load_settings(config, env={})
    site = settings.var_dir / "gx" / "uncommitted" / "data_docs" / "local_site"
    results = settings.var_dir / "gx" / "uncommitted" / "validations"

    def pages(kind: str, folder: Path) -> set[str]:  # one validation: suite/run/time/batch
        return {"/".join(p.relative_to(folder).with_suffix("").parts) for p in folder.rglob(f"*.{kind}")}

    before = pages("json", results)
    with Warehouse.from_settings(settings).connect("test") as con:
        for run in ("docs-1", "docs-2"):
            gate = run_gate(settings, con, "marts", run, candidate="marts")
            assert gate.passed and gate.data_docs == (site / "index.html").resolve().as_uri()
    stored = pages("json", results)
    checked = len(load_suite(SUITES, "marts").table_checks) + 1  # a validation per table, one for metrics
    assert len(stored - before) == 2 * checked and len(before) > 0
    assert pages("html", site / "validations") == stored  # every validation has its page, old and new

    listed = set(re.findall(r"validations/([^\"'&]+)\.html", (site / "index.html").read_text()))
    newest = sorted(stored, key=lambda key: key.split("/")[-2])[-3:]  # by the validation's time
    assert listed == set(newest)


def test_publishing_is_all_or_nothing(published, monkeypatch) -> None:
    settings = published
    before = marts_fingerprint(settings)
    import clarion.transform.publish as publishing
    from clarion.warehouse import Warehouse

    monkeypatch.setattr(publishing, "MART_TABLES", (*publishing.MART_TABLES, "no_such_model"))
    with Warehouse.from_settings(settings).connect("test") as con:
        con.execute("update staging.customer_features set tenure_days = -1")  # a different build
        with pytest.raises(Exception, match="no_such_model"):
            publishing.publish(con, "test-run", __import__("datetime").date(2026, 7, 1), 90)
    assert marts_fingerprint(settings) == before  # the tables published before the failure rolled back


@pytest.mark.slow  # a whole transform with dbt and gates (make test stays under 15 minutes)
def test_without_keep_staging_the_build_is_dropped_once_published(published) -> None:
    config = published.var_dir.parent / "clarion.yaml"
    config.write_text(config.read_text() + "transform:\n  keep_staging: false\n")
    settings = load_settings(config, env={})
    before = marts_fingerprint(settings)
    pipeline(config_path="clarion.yaml", stages=["transform"])
    staged = query(settings, "select count(*) from information_schema.tables where table_schema = 'staging'")
    assert staged == [(0,)]
    after = marts_fingerprint(settings)  # the same raw, published again: the same marts
    assert after[0][0] == before[0][0] and after[1:] == before[1:]  # (float sums may differ in the last bit)
    assert query(settings, "select count(*) from audit.publications")[0][0] == 2
    checked = CliRunner().invoke(cli, ["check", "--json"], catch_exceptions=False)
    assert checked.exit_code == 0, checked.output  # with no staging build, the marts gate reads marts
    with Warehouse.from_settings(settings).connect("test") as con:
        assert reuse.deferrable(settings, con) == []  # training snapshots build their own tables


def test_the_transform_records_what_its_day_independent_tables_were_built_from(published) -> None:
    """The flow's successful build is recorded (clarion/transform/reuse.py): a training snapshot of
    this project may read staging's int_orders and stg_support_tickets (tests/test_transform_reuse.py
    shows the snapshot is the same)."""
    with Warehouse.from_settings(published).connect("test") as con:
        assert reuse.deferrable(published, con) == ["int_orders", "stg_support_tickets"]
    built = json.loads((reuse.state_dir(published) / reuse.RECORD).read_text())
    (orders,) = query(published, "select count(*) from raw.orders")[0]
    assert built["sources"]["orders"][0] == orders > 0


def test_a_broken_suite_file_names_the_check_and_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "marts.yml").write_text(
        "suite: marts\nversion: 1\nchecks:\n"
        "  - {id: a, table: customer_features, expectation: expect_column_to_be_nice, severity: fail}\n"
        "  - {id: b, metric: row_count, severity: fatal, max: 1}\n"
        "  - {id: c, metric: quarantine_rate, max: 1, severity: warn}\n"
        "  - {id: d, metric: null_rate, tables: [dim_customers], column: age_band, max: 1, severity: warn}\n"
    )
    with pytest.raises(ConfigError) as failure:
        load_suite(tmp_path, "marts")
    message = str(failure.value)
    assert "check a: Great Expectations has no expectation 'expect_column_to_be_nice'" in message
    assert "check b.severity" in message
    assert (
        "check c: metric 'quarantine_rate' is not one of row_count_ratio, psi, unfinished_labels" in message
    )
    assert "check d: metric 'null_rate' is not one of" in message
    assert "use the expectation expect_column_values_to_not_be_null (with `mostly`)" in message


@pytest.mark.parametrize(
    "node_tasks", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["one-task", "task-per-node"]
)
def test_the_dbt_build_is_one_task_with_a_node_table_or_a_task_per_node(published, node_tasks) -> None:
    from prefect_api import artifacts, child_flow_run, task_runs

    settings = published
    config = settings.var_dir.parent / "clarion.yaml"
    config.write_text(config.read_text() + f"transform:\n  dbt_node_tasks: {str(node_tasks).lower()}\n")
    result = pipeline(config_path="clarion.yaml", stages=["transform"])
    sql = "select flow_run_id from audit.runs where run_id = ?"
    [(flow_run_id,)] = query(settings, sql, [result["run_id"]])
    transform_run = child_flow_run(flow_run_id, "transform")
    tasks = task_runs(transform_run)
    assert all(state == "COMPLETED" for state, _ in tasks.values()), tasks
    node_named = [name for name in tasks if "customer_features" in name]
    if node_tasks:  # prefect-dbt: models and tests are tasks of their own
        assert not any(name.startswith("dbt-build") for name in tasks)
        assert node_named and len(tasks) > 20
    else:  # one task; its artifact lists every node with its status
        assert any(name.startswith("dbt-build") for name in tasks) and not node_named
        [table] = [a for a in artifacts(transform_run) if a.key == "dbt-build"]
        assert "| model | customer_features | success |" in table.data
        assert table.data.count("| test |") >= 10 and "| error |" not in table.data


def _suites(settings, edit) -> Path:
    """A copy of the repository's suites with ``edit(name, suite dict)`` applied, used by the project."""
    suites = settings.var_dir.parent / "suites"
    shutil.copytree(SUITES, suites, dirs_exist_ok=True)
    for name in ("raw", "marts"):
        data = yaml.safe_load((suites / f"{name}.yml").read_text())
        edit(name, data)
        (suites / f"{name}.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    return suites


def _gate(settings, suite: str, **kw):
    from clarion.quality.gate import run_gate
    from clarion.warehouse import Warehouse

    with Warehouse.from_settings(settings).connect("test gate") as con:
        return run_gate(settings, con, suite, "test-gate", **kw)


def _broken_batch(settings) -> tuple[int, int]:
    """A later orders file holding 1% as many orders as raw, every one with an invalid status:
    (rows in raw.orders, rows in the batch)."""
    crm_dir = settings.var_dir / "crm"
    header = (crm_dir / "orders.csv").read_text().splitlines()[0]
    [(loaded,)] = query(settings, "select count(*) from raw.orders")
    batch = max(1, loaded // 100)
    lines = [
        f'"{900000 + i}","1","2026-06-01T10:00:00Z","lost","web","EUR","10.00","0.00","10.00",,"on_time",'
        '"2026-06-01T10:00:00Z"'
        for i in range(batch)
    ]
    (crm_dir / "orders.part2.csv").write_text("\n".join([header, *lines]) + "\n")
    return loaded, batch


def test_a_fully_broken_small_incremental_batch_stops_the_raw_gate(published) -> None:
    """1% of the orders arrive in a later file and every one of them is broken: judged on its own load
    (26 of 26 rejected), not diluted by the clean history already in raw (26 of about 2,600)."""
    from extract_helpers import run_extract

    from clarion.quality.gate import QualityGateError

    settings = published
    loaded, batch = _broken_batch(settings)
    run_extract(settings, run_id="incremental")
    [(quarantined,)] = query(settings, "select count(*) from quarantine.orders where run_id = 'incremental'")
    assert quarantined == batch  # every row of the batch rejected, none loaded
    [(raw_rows,)] = query(settings, "select count(*) from raw.orders")
    assert raw_rows == loaded
    assert batch / (raw_rows + batch) < 0.05  # over the whole history the share looks harmless
    gate = _gate(settings, "raw")
    assert not gate.passed
    assert [r.check_id for r in gate.failures] == ["raw.quarantine-rate-stop"]
    message = str(QualityGateError(gate))
    assert "orders=1" in message and "contacts" not in message.split("raw.quarantine-rate-stop")[1]


def test_a_check_naming_an_unknown_table_or_column_fails_the_suite(published) -> None:
    def edit(name, data):
        if name == "marts":
            data["checks"] += [
                {
                    "id": "typo.table",
                    "metric": "row_count_ratio",
                    "tables": ["customer_featurez"],
                    "min": 0.9,
                    "severity": "warn",
                },
                {
                    "id": "typo.column",
                    "metric": "psi",
                    "tables": ["customer_features"],
                    "columns": ["spend_365d"],
                    "max": 0.25,
                    "severity": "warn",
                },
                {
                    "id": "typo.expectation",
                    "table": "customer_features",
                    "expectation": "expect_column_values_to_not_be_null",
                    "kwargs": {"column": "emial_consent"},
                    "severity": "fail",
                },
            ]

    suites = _suites(published, edit)
    config = published.var_dir.parent / "clarion.yaml"
    config.write_text(config.read_text() + f"quality:\n  suites_dir: {suites}\n")
    settings = load_settings(config, env={})
    gate = _gate(settings, "marts", candidate="marts")
    assert not gate.passed
    assert sorted(r.check_id for r in gate.failures) == ["typo.column", "typo.expectation", "typo.table"]
    message = str(QualityGateError(gate))
    for check, name in [
        ("typo.table", "table marts.customer_featurez"),
        ("typo.column", "column marts.customer_features.spend_365d"),
        ("typo.expectation", "column marts.customer_features.emial_consent"),
    ]:
        [line] = [x for x in message.splitlines() if x.strip().startswith(f"- {check}:")]
        assert name in line and str(suites / "marts.yml") in line
    assert not [r for r in gate.results if r.status == "skipped" and r.check_id.startswith("typo")]


def test_a_fail_check_with_nothing_to_measure_fails_and_a_warn_one_warns(published) -> None:
    def edit(name, data):
        if name == "raw":
            for severity in ("fail", "warn"):
                data["checks"].append(
                    {
                        "id": f"tickets.scored-{severity}",
                        "table": "support_tickets",
                        "expectation": "expect_column_values_to_not_be_null",
                        "kwargs": {"column": "satisfaction_score", "mostly": 0.1},
                        "severity": severity,
                    }
                )

    suites = _suites(published, edit)
    config = published.var_dir.parent / "clarion.yaml"
    config.write_text(config.read_text() + f"quality:\n  suites_dir: {suites}\n")
    settings = load_settings(config, env={})
    from clarion.warehouse import Warehouse

    with Warehouse.from_settings(settings).connect("test") as con:
        con.execute("delete from raw.support_tickets")
    gate = _gate(settings, "raw")
    assert [r.check_id for r in gate.failures] == ["tickets.scored-fail"]
    assert [r.check_id for r in gate.warnings] == ["tickets.scored-warn"]
    assert {r.status for r in gate.results if r.check_id.startswith("tickets.")} == {"nothing_to_measure"}
    assert "nothing to measure" in str(QualityGateError(gate))
    assert gate.summary()["nothing_to_measure"] == 2


@pytest.mark.slow  # a whole transform with dbt and gates (make test stays under 15 minutes)
def test_clarion_check_compares_the_published_marts_with_the_publication_before(published) -> None:
    """A shift published under a lenient suite is caught by `clarion check` with the strict one: the
    published marts are compared with the previous publication, not with themselves."""

    def lenient(name, data):
        for check in data["checks"]:
            if check["id"] == "features.drift-stop":
                check["severity"] = "warn"

    suites = _suites(published, lenient)
    config = published.var_dir.parent / "clarion.yaml"
    strict = config.read_text()
    config.write_text(strict + f"quality:\n  suites_dir: {suites}\n")
    _shift_spend(published, 6.0)
    result = pipeline(config_path="clarion.yaml", stages=["transform"])
    assert result["stages"]["transform"]["gates"][1]["ok"] is True
    assert query(published, "select count(*) from audit.publications")[0][0] == 2
    config.write_text(strict)  # the repository's suites again
    failed = CliRunner().invoke(cli, ["check"])
    assert failed.exit_code == 4, failed.output
    assert "features.drift-stop" in failed.output and "customer_features.spend_365d_eur" in failed.output


def test_training_snapshots_that_break_the_marts_suite_stop_training(published) -> None:
    """A features model that turns recency negative (a copy of the dbt project with that bug) never
    reaches marts, but training builds its own snapshot days: they are held to the same suite."""
    from clarion.quality.snapshot import SnapshotGateError
    from clarion.segment import snapshots, training

    root = published.var_dir.parent
    project = root / "dbt-bug"
    shutil.copytree(SUITES.parent / "dbt", project, ignore=shutil.ignore_patterns("target", "logs"))
    features = project / "models" / "marts" / "customer_features.sql"
    text = features.read_text()
    line = "{{ days_between('order_stats.last_order_at', 'customers.as_of_ts') }} as recency_days"
    assert text.count(line) == 1
    features.write_text(text.replace(line, "-1 - " + line))
    config = root / "clarion.yaml"
    config.write_text(config.read_text() + f"transform:\n  dbt_project_dir: {project}\n")
    settings = load_settings(config, env={})
    plan = snapshots.plan(settings, None, None)
    with pytest.raises(SnapshotGateError) as failed:
        training.build_frames(settings, plan)
    gate = failed.value.gate
    # the stack holds every customer once per day: uniqueness is per day, and it holds
    assert [r.check_id for r in gate.failures] == ["features.recency-not-negative"]
    assert "features.one-row-per-customer" in {r.check_id for r in gate.results if r.status == "passed"}
    [recency] = gate.failures
    [[buyers]] = query(
        settings, "select count(*) from marts.customer_features where recency_days is not null"
    )
    assert recency.observed["unexpected_count"] > 0 and buyers > 0
    message = str(failed.value)
    assert message.startswith("training snapshots failed the marts suite")
    assert "features.recency-not-negative" in message and "No model was trained" in message


@pytest.mark.slow
def test_a_failing_gate_is_one_message_without_traceback_in_run_and_transform(published) -> None:
    """As a user meets it: the CLI in its own process (reporting to the session's Prefect server)."""
    import subprocess
    import sys

    from prefect.settings import PREFECT_API_URL

    _broken_batch(published)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CLARION_"))}
    env |= {"PREFECT_API_URL": str(PREFECT_API_URL.value()), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env["PYTHONPATH"] = os.pathsep.join([str(SUITES.parent), env.get("PYTHONPATH", "")])
    for verb in ("run", "transform"):
        proc = subprocess.run(
            [sys.executable, "-m", "clarion.cli", verb],
            cwd=published.var_dir.parent,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 4, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, verb
        assert proc.stderr.count("quality gate 'raw' failed") == 1, proc.stderr[-3000:]
        assert "error: quality gate 'raw' failed" in proc.stderr and "raw.quarantine-rate-stop" in proc.stderr


def test_each_rule_on_a_mart_table_is_defined_in_one_place() -> None:
    """A key, not-null or accepted-values rule lives either in dbt's schema files or in the marts
    suite, never in both; the suites keep custom metrics only for what no expectation expresses."""
    from clarion.quality.suites import METRICS

    as_expectation = {
        "unique": "expect_column_values_to_be_unique",
        "not_null": "expect_column_values_to_not_be_null",
        "accepted_values": "expect_column_values_to_be_in_set",
    }
    in_dbt = set()
    for path in (SUITES.parent / "dbt" / "models").rglob("*.yml"):
        for model in (yaml.safe_load(path.read_text()) or {}).get("models", []):
            for column in model.get("columns", []):
                for test in column.get("data_tests") or []:
                    name = test if isinstance(test, str) else next(iter(test))
                    if name in as_expectation:
                        in_dbt.add((model["name"], column["name"], as_expectation[name]))
    suites = [load_suite(SUITES, name) for name in ("raw", "marts")]
    in_suites = {
        (c.table, c.kwargs.get("column"), c.expectation) for s in suites for c in s.checks if c.table
    }
    assert ("dim_customers", "contact_id", "expect_column_values_to_be_unique") in in_dbt
    assert ("customer_features", "contact_id", "expect_column_values_to_be_unique") in in_suites
    assert not in_dbt & in_suites
    metrics = {c.metric for s in suites for c in s.checks if c.metric}
    assert metrics <= {"row_count_ratio", "psi", "quarantine_rate", "hours_since_load", "unfinished_labels"}
    assert not {"row_count", "null_rate"} & (set(METRICS["raw"]) | set(METRICS["marts"]))


def test_a_transform_recomputes_the_changed_customers_exposures_and_full_refresh_all(published) -> None:
    """`clarion transform` on unchanged data recomputes no customer's campaign exposures (and says
    so), `--full-refresh` recomputes every one; the published marts are the same either way."""
    customers = query(
        published,
        "select count(distinct contact_id) from (select contact_id from raw.email_events "
        "union all select contact_id from raw.orders)",
    )[0][0]
    exposures = "select count(*), coalesce(sum(hash(e)), 0) from marts.fct_campaign_exposures e"
    before = query(published, exposures)

    again = CliRunner().invoke(cli, ["transform"], catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert f"campaign exposures recomputed for 0 of {customers:,} customers (incremental" in again.output
    assert query(published, exposures) == before

    whole = CliRunner().invoke(cli, ["transform", "--full-refresh", "--json"], catch_exceptions=False)
    assert whole.exit_code == 0, whole.output
    summary = yaml.safe_load(whole.output)["stages"]["transform"]
    assert summary["exposures"] == {"recomputed": customers, "customers": customers, "full_refresh": True}
    assert query(published, exposures) == before
    assert "--full-refresh" in CliRunner().invoke(cli, ["run", "--help"]).output
