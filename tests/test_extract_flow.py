"""The extract stage as a Prefect flow: a task per entity, retries, an accounting artifact, failures."""

from __future__ import annotations

import pytest
from extract_helpers import query
from prefect_api import artifacts, child_flow_run, task_runs

from clarion.config import GenerateSettings
from clarion.contract import ENTITIES
from clarion.extract.readers import ExtractError
from clarion.synth.generator import generate
from flows.pipeline import pipeline

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_extract_runs_one_task_per_entity_and_publishes_its_accounting(project, tmp_path) -> None:
    settings = project()
    generate(GenerateSettings(customers=200, seed=3, defects=0.02), out=tmp_path / "var" / "crm")
    result = pipeline(config_path="clarion.yaml", stages=["extract"])
    assert result["command"] == "clarion extract"
    [(flow_run_id,)] = query(settings, "select flow_run_id from audit.runs")
    extract_run = child_flow_run(flow_run_id, "extract")
    tasks = task_runs(extract_run)
    assert set(tasks) == {f"crm/{e}" for e in ENTITIES}
    assert all(state == "COMPLETED" for state, _ in tasks.values())
    [table] = [a for a in artifacts(extract_run) if a.key == "extract-accounting"]
    accounting = result["stages"]["extract"]["accounting"]
    for row in accounting:
        assert (
            f"| crm | {row['entity']} | {row['status']} | {row['read']:,} | {row['loaded']:,} |" in table.data
        )
    assert sum(r["quarantined"] for r in accounting) > 0 and "duplicate_key" in table.data


def test_a_failing_source_is_retried_named_and_its_children_skipped_while_others_load(
    project, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("BROKEN_CRM_DSN", "postgresql://alice:s3cret@127.0.0.1:1/test")
    settings = project(
        "sources:\n"
        "  crm: {kind: files, path: var/crm}\n"
        "  legacy: {kind: postgres, dsn_env: BROKEN_CRM_DSN, schema: crm,\n"
        "           entities: {contacts: {}, orders: {}}}\n"
        "extract: {retries: 1, retry_delay_seconds: 0.1}\n"
    )
    generate(GenerateSettings(customers=150, seed=4), out=tmp_path / "var" / "crm")
    with pytest.raises(ExtractError) as failure:
        pipeline(config_path="clarion.yaml", stages=["extract"])
    message = str(failure.value)
    assert "legacy/contacts" in message and "source legacy" in message and "s3cret" not in message
    [(flow_run_id, status, error)] = query(settings, "select flow_run_id, status, error from audit.runs")
    assert status == "failed" and "legacy" in error
    tasks = task_runs(child_flow_run(flow_run_id, "extract"))
    assert tasks["legacy/contacts"] == ("FAILED", 2)  # the first try and one retry
    assert "legacy/orders" not in tasks  # skipped: its parent did not load
    assert all(tasks[f"crm/{e}"][0] == "COMPLETED" for e in ("contacts", "orders", "order_items"))
    assert query(settings, "select count(*) from raw.orders where _source = 'crm'")[0][0] > 0
