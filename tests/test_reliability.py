"""Nothing lost, nothing forged: `clarion run` survives kills, a second writer, source outages, a
full disk and a var/ turning read-only, and what it publishes afterwards equals what a clean run
publishes.

Each test drives the real CLI as separate processes on the 300-contact project
(tests/project_helpers.small_project) and reports to the session's Prefect test server. Faults are
placed by name through ``clarion.runtime.checkpoint`` (CLARION_TEST_KILL_AT=POINT[#N],
CLARION_TEST_DISK_FULL_AT=POINT, CLARION_TEST_STOP_AT=POINT), so no test depends on timing to hit
its point.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pytest
from hubspot_mock import HubSpotMock
from project_helpers import SMALL_CUSTOMERS, assert_same_outputs, run_outputs, run_pipeline_in, small_project
from psycopg.rows import dict_row
from reliability_helpers import (
    Cli,
    CuttableProxy,
    cli_env,
    cpu_seconds,
    csv_people,
    csv_rows,
    read_only_cause,
)

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]

RAW_FROM_CSV = (
    "contacts",
    "products",
    "orders",
    "order_items",
    "email_events",
    "support_tickets",
    "consents",
)

# The points a run is killed at, in the order one run meets them; each kill is followed by
# `clarion run --resume`, which the next point kills again. "#N": the Nth time the point is reached.
# Each kill costs a process start (~7 s of CPU to import Prefect, dbt and the rest), so one point per
# stage, inside it, plus the boundaries after extract, segment and report (a stage done but not
# recorded is redone).
KILL_POINTS = [
    "extract.publish#3",  # orders checked, merged and accounted, not committed; contacts, products published
    "stage.extract",  # every entity published, the stage's checkpoint not recorded
    "inside dbt build",  # killed from outside, 2 s into dbt build (it runs ~10 s)
    "transform.publish",  # every mart replaced inside the publish transaction, not committed
    "segment.registered",  # a model version trained and registered, not promoted
    "segment.scores",  # every score, reason and segment written, not committed
    "stage.segment",  # scores committed, the stage's checkpoint not recorded: redone
    "report.written",  # report.html and report.json written, the PDF not
    "stage.report",  # the report written, the run not finished: the report is redone
]


def test_a_run_killed_at_every_stage_boundary_and_inside_every_stage_resumes_to_the_clean_outputs(
    tmp_path: Path, small_run: dict[str, Any]
) -> None:
    cli = Cli(small_project(tmp_path), cli_env())
    crm = cli.root / "var" / "crm"
    times: dict[str, float] = {}
    cpu = cpu_seconds()

    started = time.perf_counter()
    cli.killed_at(KILL_POINTS[0])
    times[KILL_POINTS[0]] = time.perf_counter() - started
    [(run_id,)] = cli.sql("select run_id from audit.runs")
    # contacts and products published once each; the orders' merge rolled back, nothing else read
    assert cli.sql("select count(*) from raw.contacts") == [(csv_rows(crm / "contacts.csv"),)]
    assert cli.sql("select count(*) from raw.products") == [(csv_rows(crm / "products.csv"),)]
    raw = {t for (t,) in cli.sql("select table_name from information_schema.tables where table_schema='raw'")}
    assert "orders" not in raw or cli.sql("select count(*) from raw.orders") == [(0,)]

    for point in KILL_POINTS[1:]:
        started = time.perf_counter()
        if point == "inside dbt build":
            proc, log = cli.start("run", "--resume")
            cli.wait_for(proc, log, "Task run 'gate raw' - Finished")
            time.sleep(2)
            assert "dbt-build" not in log.read_text().split("gate raw' - Finished")[-1]  # still building
            cli.kill(proc, log)
        else:
            cli.killed_at(point, "--resume")
        times[point] = time.perf_counter() - started
        if point == "transform.publish":  # the killed transaction published nothing
            assert cli.marts() == {}

    started = time.perf_counter()
    done = json.loads(cli.run("run", "--resume", "--json").stdout)
    times["final resume"] = time.perf_counter() - started
    assert done["run_id"] == run_id and done["status"] == "completed"
    assert done["kept_stages"] == [
        "extract",
        "voc",
        "transform",
        "segment",
        "recommend",
        "results",
        "nba",
        "content",
    ]
    assert_same_outputs(run_outputs(cli.root, run_id), small_run["outputs"])

    # No duplicates: raw holds each CSV record once, each customer is scored once.
    for entity in RAW_FROM_CSV:
        assert cli.sql(f"select count(*) from raw.{entity}") == [(csv_rows(crm / f"{entity}.csv"),)], entity
    [(objecting,)] = cli.sql("select count(*) from raw.contacts where marketing_objection")
    profiled = SMALL_CUSTOMERS - objecting  # objectors are not scored (docs/privacy.md)
    assert cli.sql(
        "select count(*), count(distinct contact_id) from ml.customer_scores where run_id = ?", [run_id]
    ) == [(profiled, profiled)]
    assert cli.sql("select count(*) from audit.publications where run_id = ?", [run_id]) == [(1,)]
    assert (cli.root / "var" / "reports" / run_id / "report.pdf").stat().st_size > 0
    cli.assert_audit_verifies()
    assert "output files match the manifest" in cli.run("lineage", "verify", run_id).stdout
    cli.assert_no_personal_data_in_output(csv_people(crm))
    print("kill times (s):", {k: round(v, 1) for k, v in times.items()}, f"CPU {cpu_seconds() - cpu:.0f} s")


def test_two_writers_at_once_the_second_stops_with_exit_3_naming_the_first_or_queues_behind_it(
    tmp_path: Path,
) -> None:
    cli = Cli(small_project(tmp_path), cli_env())
    crm = cli.root / "var" / "crm"
    started, cpu = time.perf_counter(), cpu_seconds()
    first, log = cli.start("extract")
    cli.wait_for(first, log, "started (config")  # it holds the writer lock and is on record
    refused = cli.run("run", ok=False, timeout=120)
    queued, queued_log = cli.start("extract", "--wait", "120")
    assert first.wait(120) == 0, log.read_text()[-3000:]
    assert queued.wait(120) == 0, queued_log.read_text()[-3000:]
    cli.output += log.read_text() + queued_log.read_text()

    assert refused.returncode == 3
    [message] = refused.stderr.strip().splitlines()  # one line, no traceback
    assert message.startswith("error: the warehouse ") and f"'clarion extract' (pid {first.pid} " in message
    assert "--wait SECONDS" in message  # says what to do
    assert "waiting up to 120 s" in queued_log.read_text()  # the queued one said it waits, and for whom

    # Nothing interleaved: two runs on record (the refused one never started), one after the other.
    runs = cli.sql("select command, status, started_at, finished_at from audit.runs order by started_at")
    assert [(c, s) for c, s, _, _ in runs] == [("clarion extract", "completed")] * 2
    assert runs[1][2] >= runs[0][3]
    for entity in RAW_FROM_CSV:  # the second extract read everything again and duplicated nothing
        assert cli.sql(f"select count(*) from raw.{entity}") == [(csv_rows(crm / f"{entity}.csv"),)], entity
    cli.assert_audit_verifies()
    print(f"two writers: {time.perf_counter() - started:.1f} s, CPU {cpu_seconds() - cpu:.0f} s")


@pytest.fixture
def pg_project(tmp_path: Path, pg_schema: tuple[str, str]) -> Path:
    """The 300-contact CRM (seed 5) in a throwaway PostgreSQL schema, and a project reading it from
    the DSN in $RELIABILITY_PG_DSN with quick retries (2, after 1 s then 2 s)."""
    from clarion.config import GenerateSettings
    from clarion.synth.generator import generate

    dsn, schema = pg_schema
    generate(
        GenerateSettings(customers=SMALL_CUSTOMERS, seed=5, defects=0.0),
        out=tmp_path / "var" / "crm",
        postgres_dsn=dsn,
        pg_schema=schema,
    )
    (tmp_path / "clarion.yaml").write_text(
        "warehouse:\n  path: var/warehouse.duckdb\n"
        f"sources:\n  crm:\n    kind: postgres\n    dsn_env: {PG_DSN_ENV}\n    schema: {schema}\n"
        "extract:\n  retries: 2\n  retry_delay_seconds: 1\n"
    )
    return tmp_path


PG_DSN_ENV = "RELIABILITY_PG_DSN"


def test_postgresql_going_away_mid_extract_is_retried_then_fails_naming_source_and_entity_marts_kept(
    pg_project: Path, pg_schema: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    started, cpu = time.perf_counter(), cpu_seconds()
    cli = Cli(pg_project, cli_env())
    dsn, schema = pg_schema
    source = psycopg.connect(dsn, autocommit=True, row_factory=dict_row)
    in_source = {
        e: source.execute(f'select count(*) as n from "{schema}"."{e}"').fetchone()["n"] for e in RAW_FROM_CSV
    }
    people = source.execute(f'select email, phone, first_name, last_name from "{schema}".contacts').fetchall()
    source.close()
    monkeypatch.setenv(PG_DSN_ENV, "postgresql://postgres@127.0.0.1:5432/test")
    first = run_pipeline_in(pg_project, stages=["extract", "transform"])  # the last good marts
    assert first["status"] == "completed"
    good = cli.marts()
    assert len(good["customer_features"]) == SMALL_CUSTOMERS

    # 1. A short outage while orders are read: the retry after 1 s finds the database back.
    proxy = CuttableProxy(cut_on=b"orders", outage_seconds=0.3)
    try:
        survived = cli.run("extract", env={PG_DSN_ENV: proxy.dsn()})
    finally:
        proxy.close()
    assert proxy.cuts == 1
    assert "Retry 1/2" in survived.stderr
    for entity in RAW_FROM_CSV:  # nothing lost, nothing doubled by the cut and the retry
        assert cli.sql(f"select count(*) from raw.{entity}") == [(in_source[entity],)], entity

    # 2. The database goes away for good while orders are read: both retries fail, then one clear message.
    proxy = CuttableProxy(cut_on=b"orders")
    try:
        failed = cli.run("run", ok=False, env={PG_DSN_ENV: proxy.dsn()})
    finally:
        proxy.close()
    assert proxy.cuts == 1 and proxy.refused >= 2  # the retries reached for the database
    assert failed.returncode == 1
    [message] = [line for line in failed.stderr.splitlines() if line.startswith("error: ")]
    assert "crm/orders" in message and "fix the source and run again" in message, message
    assert failed.stderr.rstrip().splitlines()[-1] == message  # the last word, after Prefect's task logs
    assert "Traceback" not in failed.stderr  # Prefect logs the failed tasks without (-v shows them)
    print("postgres outage message:", message)
    assert "Retry 2/2" in failed.stderr
    assert cli.marts().keys() == good.keys()
    for name, table in good.items():  # the last good marts are still served
        pd.testing.assert_frame_equal(cli.marts()[name], table, check_exact=True, obj=name)
    assert cli.sql("select status from audit.runs order by started_at") == [
        ("completed",),
        ("completed",),
        ("failed",),
    ]
    cli.assert_audit_verifies()
    cli.assert_no_personal_data_in_output(people)
    print(f"postgres outage: {time.perf_counter() - started:.1f} s, CPU {cpu_seconds() - cpu:.0f} s")


HS_TOKEN_ENV = "RELIABILITY_HS_TOKEN"
# dlt's HTTP client: one retry of a failed request, a 1 s read timeout (defaults: 5 attempts, 60 s)
API_CLIENT = {
    "RUNTIME__REQUEST_MAX_ATTEMPTS": "2",
    "RUNTIME__REQUEST_TIMEOUT": "1",
    HS_TOKEN_ENV: "test-token",
}


def _raw(cli: Cli) -> dict[str, pd.DataFrame]:
    con_rows = {}
    for entity in RAW_FROM_CSV:
        con_rows[entity] = pd.DataFrame(cli.sql(f"select columns(*)::varchar from raw.{entity} order by all"))
    return con_rows


def test_an_api_answering_500s_or_stalling_is_retried_then_fails_naming_source_and_entity_raw_kept(
    tmp_path: Path,
) -> None:
    started, cpu = time.perf_counter(), cpu_seconds()
    root = small_project(tmp_path)
    crm = root / "var" / "crm"
    cli = Cli(root, cli_env() | API_CLIENT)
    with HubSpotMock(crm) as api:
        (root / "clarion.yaml").write_text(
            "warehouse:\n  path: var/warehouse.duckdb\n"
            f"sources:\n  hs:\n    kind: hubspot\n    base_url: {api.url}\n    token_env: {HS_TOKEN_ENV}\n"
            "extract:\n  retries: 1\n  retry_delay_seconds: 0.5\n"
        )
        cli.run("extract")
        for entity in RAW_FROM_CSV:
            assert cli.sql(f"select count(*) from raw.{entity}") == [(csv_rows(crm / f"{entity}.csv"),)], (
                entity
            )
        good = _raw(cli)

        outcomes = {}
        for outage in ("500", "stall"):
            first = api.request_count + 1
            if outage == "500":  # every request from now on answers 500
                api.fail_requests = set(range(first, first + 100_000))
            else:  # every request from now on answers after 3 s, when the client has given up
                api.fail_requests, api.stall_requests, api.stall_seconds = (
                    set(),
                    set(range(first, first + 1000)),
                    3,
                )
            proc = cli.run("extract", ok=False)
            outcomes[outage] = (proc, api.request_count - first + 1)
            api.stall_requests = set()

    for outage, (proc, requests) in outcomes.items():
        assert proc.returncode == 1, (outage, proc.stderr[-2000:])
        [message] = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        assert "hs/contacts" in message and "hs/products" in message, message  # the two roots of the plan
        assert "fix the source and run again" in message
        assert proc.stderr.rstrip().splitlines()[-1] == message  # the last word, after Prefect's task logs
        assert "Traceback" not in proc.stderr  # Prefect logs the failed tasks without (-v shows them)
        print(f"api {outage} message:", message)
        # 2 entities x 2 task tries x 2 attempts of the first request each: retries at both levels
        assert requests >= 8, (outage, requests)
        assert _raw(cli).keys() == good.keys()
        for entity, table in good.items():  # raw keeps its last good rows
            pd.testing.assert_frame_equal(_raw(cli)[entity], table, obj=f"{outage}: raw.{entity}")
    assert "500" in outcomes["500"][0].stderr
    assert "timed out" in outcomes["stall"][0].stderr.lower()
    assert cli.sql("select status from audit.runs order by started_at") == [
        ("completed",),
        ("failed",),
        ("failed",),
    ]
    cli.assert_audit_verifies()
    cli.assert_no_personal_data_in_output(csv_people(crm))
    print(f"api outages: {time.perf_counter() - started:.1f} s, CPU {cpu_seconds() - cpu:.0f} s")


def test_a_full_disk_while_publishing_marts_fails_the_run_with_one_message_and_publishes_nothing(
    tmp_path: Path, small_run: dict[str, Any]
) -> None:
    """The disk fills up (RLIMIT_FSIZE in the run's own process: root ignores file permissions) just
    before the marts publish commits; the marts stay those of the last good run."""
    started, cpu = time.perf_counter(), cpu_seconds()
    root = tmp_path / "project"
    shutil.copytree(small_run["root"], root, ignore=shutil.ignore_patterns("*.lock", "prefect"))
    cli = Cli(root, cli_env())
    good = cli.marts()
    assert len(good["customer_features"]) == SMALL_CUSTOMERS
    [(published_before,)] = cli.sql("select count(*) from audit.publications")

    failed = cli.disk_full_at("transform.publish", "transform")

    assert failed.returncode != 0 and failed.returncode != -signal.SIGXFSZ, failed.stderr[-3000:]
    assert "Traceback" not in failed.stderr, failed.stderr[-3000:]
    [message] = [line for line in failed.stderr.splitlines() if line.startswith("error: ")]
    assert message.startswith("error: publishing the marts (nothing published"), message
    assert "warehouse.duckdb" in message and "File too large" in message, message
    assert "Free disk space" in message and "clarion run --resume" in message, message
    assert failed.stderr.rstrip().splitlines()[-1] == message
    print("disk full message:", message)
    assert cli.marts().keys() == good.keys()
    for name, table in good.items():  # nothing half-published
        pd.testing.assert_frame_equal(cli.marts()[name], table, check_exact=True, obj=name)
    assert cli.sql("select count(*) from audit.publications") == [(published_before,)]
    cli.assert_audit_verifies()
    print(f"disk full: {time.perf_counter() - started:.1f} s, CPU {cpu_seconds() - cpu:.0f} s")


def test_var_turning_read_only_while_marts_are_published_fails_the_run_cleanly_and_a_resume_repairs_it(
    tmp_path: Path, small_run: dict[str, Any]
) -> None:
    """var/ becomes read-only (a read-only bind mount over it, in the run's own mount namespace;
    see Cli.run_with_var_read_only_from) while the run stands inside the publish transaction, every
    mart replaced and nothing committed. The commit fails; the run stops with one message naming the
    file and what to do; the marts stay those of the last good build. Writable again, `clarion run
    --resume` finishes the run with the outputs of a clean one."""
    started, cpu = time.perf_counter(), cpu_seconds()
    cli = Cli(small_project(tmp_path), cli_env())
    first = run_pipeline_in(cli.root, stages=["extract", "transform"])  # the last good marts
    assert first["status"] == "completed"
    good = cli.marts()
    assert len(good["customer_features"]) == SMALL_CUSTOMERS
    [(published_before,)] = cli.sql("select count(*) from audit.publications")
    cause = read_only_cause()

    failed = cli.run_with_var_read_only_from("transform.publish", "run")

    assert failed.returncode == 1, failed.stderr[-3000:]
    assert "Traceback" not in failed.stderr, failed.stderr[-3000:]
    [message] = [line for line in failed.stderr.splitlines() if line.startswith("error: ")]
    assert message.startswith("error: publishing the marts (nothing published"), message
    assert f"{cli.root / 'var' / 'warehouse.duckdb'}" in message and f": {cause}" in message, message
    assert "writable" in message and "clarion run --resume" in message, message
    assert "Free disk space" not in message, message
    assert failed.stderr.rstrip().splitlines()[-1] == message
    # once: Prefect's lines about the failed task and flow runs name the error's class only
    assert failed.stderr.count("publishing the marts (nothing published") == 1, failed.stderr[-3000:]
    print("read-only var/ message:", message)

    # var/ is writable again (the mount ended with the run's namespace): nothing half-published
    assert cli.marts().keys() == good.keys()
    for name, table in good.items():
        pd.testing.assert_frame_equal(cli.marts()[name], table, check_exact=True, obj=name)
    assert cli.sql("select count(*) from audit.publications") == [(published_before,)]
    cli.assert_audit_verifies()
    [(run_id,)] = cli.sql("select run_id from audit.runs where command = 'clarion run'")

    done = json.loads(cli.run("run", "--resume", "--json").stdout)
    assert done["run_id"] == run_id and done["status"] == "completed"
    assert done["kept_stages"] == ["extract", "voc"]  # completed before var/ turned read-only
    assert_same_outputs(run_outputs(cli.root, run_id), small_run["outputs"])
    assert cli.sql("select count(*) from audit.publications") == [(published_before + 1,)]
    cli.assert_audit_verifies()
    cli.assert_no_personal_data_in_output(csv_people(cli.root / "var" / "crm"))
    print(f"read-only var/: {time.perf_counter() - started:.1f} s, CPU {cpu_seconds() - cpu:.0f} s")
