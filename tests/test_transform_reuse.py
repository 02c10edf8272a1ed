"""Training snapshots read the staging build's day-independent tables (int_orders,
stg_support_tickets) only while those were built from exactly what raw and the dbt project hold
(clarion/transform/reuse.py), and the snapshot they give is the one a snapshot building everything
itself gives.

One 300-customer CRM is extracted and built into staging; each test works on a copy. Which models
a snapshot built is read from dbt's own run_results.json, not from the code under test.
"""

from __future__ import annotations

import json
import shutil
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from extract_helpers import generated_project, make_settings, query

from clarion.config import Settings
from clarion.segment import snapshots
from clarion.transform import reuse
from clarion.transform.dbt import run_dbt
from clarion.warehouse import Warehouse

AS_OF = date(2026, 7, 1)
DAYS = [date(2026, 1, 8), date(2026, 4, 2)]
HORIZON = 90
LENT = ["int_orders", "stg_support_tickets"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose staging build succeeded and was recorded, as the transform flow records it."""
    settings = generated_project(tmp_path_factory.mktemp("reuse"), customers=300, seed=41)
    run_dbt(settings, "build", AS_OF)
    with Warehouse.from_settings(settings).connect("test") as con:
        reuse.record(settings, con)
    return settings.var_dir.parent


@pytest.fixture
def project(built: Path, tmp_path: Path) -> Settings:
    """A copy of the built project that the test may change."""
    root = tmp_path / "project"
    shutil.copytree(built, root)
    return make_settings(root, {})


def write(settings: Settings, sql: str, params: list | None = None) -> None:
    with Warehouse.from_settings(settings).connect("test") as con:
        con.execute(sql, params or [])


def deferrable(settings: Settings) -> list[str]:
    with Warehouse.from_settings(settings).connect("test") as con:
        return reuse.deferrable(settings, con)


def snapshot_built(settings: Settings) -> set[str]:
    """The models the last dbt call built, as dbt's own run_results.json lists them."""
    results = json.loads((settings.var_dir / "dbt" / "target" / "run_results.json").read_text())
    return {r["unique_id"].split(".")[-1] for r in results["results"]}


def test_a_snapshot_reads_the_current_staging_tables_and_equals_one_that_builds_them(project) -> None:
    assert deferrable(project) == LENT
    lent = snapshots.build(project, DAYS, HORIZON)
    built = snapshot_built(project)
    assert "customer_features" in built and not set(LENT) & built  # read from staging, not built
    whole = snapshots.build(project, DAYS, HORIZON, reuse_staging=False)
    assert set(LENT) <= snapshot_built(project)
    assert len(lent) > 300  # two days of customers
    pd.testing.assert_frame_equal(lent, whole)
    assert query(project, "select count(*) from duckdb_tables() where schema_name = 'ml_snapshot'") == [(0,)]


def test_an_order_changed_in_raw_since_the_build_makes_the_snapshot_build_its_own(project) -> None:
    (order, contact) = query(
        project,
        "select order_id, contact_id from raw.orders where ordered_at < ? and ordered_at >= ? "
        "and status = 'completed' and updated_at < ? and contact_id in "
        "(select contact_id from raw.contacts where not marketing_objection) order by order_id limit 1",
        [DAYS[0], DAYS[0] - timedelta(days=300), DAYS[0]],
    )[0]
    before = snapshots.build(project, DAYS[:1], HORIZON)
    write(project, "update raw.orders set total_amount = total_amount + 1000 where order_id = ?", [order])
    assert deferrable(project) == []
    after = snapshots.build(project, DAYS[:1], HORIZON)
    assert set(LENT) <= snapshot_built(project)  # built from raw as it is now
    spent = "spend_365d_eur"
    was = before.set_index("contact_id").loc[contact, spent]
    now = after.set_index("contact_id").loc[contact, spent]
    assert now == pytest.approx(was + 1000, abs=1)  # the change reached the features (euros: fx 1.0 or not)
    pd.testing.assert_frame_equal(after, snapshots.build(project, DAYS[:1], HORIZON, reuse_staging=False))


@pytest.mark.parametrize("table", ["order_items", "support_tickets"])
def test_a_row_removed_from_any_table_they_read_stops_the_reuse(project, table) -> None:
    write(project, f"delete from raw.{table} where rowid = (select min(rowid) from raw.{table})")
    assert deferrable(project) == []


def test_no_reuse_without_the_staging_tables_a_record_or_the_same_project(project) -> None:
    record = reuse.state_dir(project) / reuse.RECORD
    kept = json.loads(record.read_text())
    record.write_text(json.dumps(kept | {"project": "0" * 64}))  # the dbt project was edited since
    assert deferrable(project) == []
    record.write_text(json.dumps(kept | {"raw_schema": "raw_other"}))
    assert deferrable(project) == []
    record.write_text(json.dumps(kept | {"dbt": "0.0.1"}))  # a manifest another dbt wrote
    assert deferrable(project) == []
    record.write_text(json.dumps(kept))
    assert deferrable(project) == LENT
    write(project, "drop table staging.stg_support_tickets")  # transform.keep_staging: false
    assert deferrable(project) == []
    assert snapshots.build(project, DAYS[:1], HORIZON).shape[0] > 0  # and the snapshot builds it


def test_any_build_into_staging_forgets_the_record_until_the_transform_writes_it_again(project) -> None:
    record = reuse.state_dir(project) / reuse.RECORD
    assert record.exists()
    run_dbt(project, "run", AS_OF, "--select", "stg_orders")
    assert not record.exists() and deferrable(project) == []
    snapshots.build(project, DAYS[:1], HORIZON)
    assert set(LENT) <= snapshot_built(project)
