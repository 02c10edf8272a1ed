"""Rescoring only what can change (clarion/segment/rescore.py).

On a copy of the small run's project, late rows arrive for two customers, dated inside the
published day (a late order, a late open) and a third customer's contact row is updated without
touching any feature. The next transform + segment run must rescore exactly the two (that set is
worked out here from what the test changed) and keep everyone else's rows from the previous run;
a full rescore of the same day (segment.rescore: all) must then give every customer the same
score, explanation, reasons and segment. A full refresh and an erasure fit the day's lifecycle
models again instead of reusing the recorded fit.
"""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from extract_helpers import query

from clarion.cli import cli
from clarion.config import load_settings
from clarion.segment import scoring, snapshots
from clarion.segment.rescore import input_keys
from clarion.subject.erase import erase
from clarion.warehouse import Warehouse
from flows.pipeline import pipeline
from models import customer_base

pytestmark = pytest.mark.usefixtures("prefect_server")
FLOATS = (
    "purchase_probability",
    "churn_risk",
    "expected_value_eur",
    "margin",
    "base_margin",
    "average_probability",
)


@pytest.fixture
def project(small_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    shutil.copytree(small_run["root"], root)
    monkeypatch.chdir(root)
    return root


def scores(settings, run_id: str) -> pd.DataFrame:
    rows = query(
        settings,
        "select * exclude (run_id, scored_at), to_json(reasons)::varchar as reasons_json "
        "from ml.customer_scores where run_id = ? order by contact_id",
        [run_id],
    )
    columns = [
        r[0] for r in query(settings, "describe ml.customer_scores") if r[0] not in ("run_id", "scored_at")
    ]
    return pd.DataFrame(rows, columns=[*columns, "reasons_json"]).drop(columns=["reasons"])


def fit_of(settings, run_id: str) -> dict:
    [(fit,)] = query(settings, "select fit from ml.lifecycle_fits where run_id = ?", [run_id])
    return json.loads(fit)


def write(settings, sql: str, params: list) -> None:
    with Warehouse.from_settings(settings).connect("test") as con:
        con.execute(sql, params)


def test_only_the_customers_whose_inputs_changed_are_rescored_and_a_full_rescore_agrees(
    small_run, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(project / "clarion.yaml", env={})
    first = small_run["result"]["run_id"]
    before = scores(settings, first)
    everyone = len(before)
    assert everyone > 250 and before["inputs_key"].notna().all()
    (as_of,) = query(settings, "select max(as_of) from marts.customer_features")[0]
    # a late order of one customer, dated inside the published day (the day does not move)
    buyer, like = query(
        settings,
        "select contact_id, order_id from raw.orders where status = 'completed' "
        "and ordered_at < ? - interval 30 day order by contact_id desc limit 1",
        [as_of],
    )[0]
    (order_id, item_id) = query(
        settings,
        "select (select max(order_id) + 1 from raw.orders), "
        "(select max(order_item_id) + 1 from raw.order_items)",
    )[0]
    at = f"{as_of - timedelta(days=3)} 10:00:00+00"
    write(
        settings,
        "insert into raw.orders select * replace (? as order_id, cast(? as timestamptz) as ordered_at, "
        "cast(? as timestamptz) as updated_at, 'late' as _load_id) from raw.orders where order_id = ?",
        [order_id, at, at, like],
    )
    write(
        settings,
        "insert into raw.order_items select * replace (? as order_item_id, ? as order_id, "
        "'late' as _load_id) from raw.order_items where order_id = ? limit 1",
        [item_id, order_id, like],
    )
    # a late open of another customer's recent send
    opener, event = query(
        settings,
        "select contact_id, event_id from raw.email_events e where event_type = 'sent' "
        "and occurred_at >= ? - interval 20 day and contact_id <> ? and not exists (select 1 from "
        "raw.email_events o where o.contact_id = e.contact_id and o.campaign_id = e.campaign_id "
        "and o.event_type <> 'sent') order by contact_id limit 1",
        [as_of, buyer],
    )[0]
    write(
        settings,
        "insert into raw.email_events select * replace ((select max(event_id) + 1 from raw.email_events) "
        "as event_id, 'open' as event_type, occurred_at + interval 2 hour as occurred_at, "
        "'late' as _load_id) from raw.email_events where event_id = ?",
        [event],
    )
    # a third customer's contact row updated in a column no feature reads
    (renamed,) = query(
        settings,
        "select contact_id from raw.contacts where contact_id not in (?, ?) order by 1 limit 1",
        [buyer, opener],
    )[0]
    write(
        settings,
        "update raw.contacts set first_name = 'Renamed', _load_id = 'update' where contact_id = ?",
        [renamed],
    )

    result = pipeline(config_path="clarion.yaml", stages=["transform", "segment"])
    assert result["status"] == "completed"
    second = result["run_id"]
    summary = result["stages"]["segment"]
    assert summary["as_of"] == str(as_of)
    after = scores(settings, second)
    assert after["contact_id"].tolist() == before["contact_id"].tolist()
    moved = set(after.loc[after["inputs_key"].to_numpy() != before["inputs_key"].to_numpy(), "contact_id"])
    assert moved == {buyer, opener}
    assert summary["rescored"] == {
        "customers": 2,
        "kept": everyone - 2,
        "from_run": first,
        "full_refresh": False,
        "rescore": "changed",
    }
    assert fit_of(settings, second)["reused_from"] == first
    assert fit_of(settings, second)["bg_nbd"] == fit_of(settings, first)["bg_nbd"]
    row = after.set_index("contact_id")
    was = before.set_index("contact_id")
    assert row.loc[buyer, "purchase_probability"] != was.loc[buyer, "purchase_probability"]
    kept = ~after["contact_id"].isin([buyer, opener]).to_numpy()
    same = [c for c in after.columns if c != "segment"]  # segments are assigned again: the shop's rate moved
    pd.testing.assert_frame_equal(after.loc[kept, same], before.loc[kept, same])

    # every customer scored again on the same day, with the same lifecycle fit: the same rows
    monkeypatch.setenv("CLARION_SEGMENT__RESCORE", "all")
    full = pipeline(config_path="clarion.yaml", stages=["segment"])
    assert full["stages"]["segment"]["rescored"]["customers"] == everyone
    assert full["stages"]["segment"]["rescored"]["kept"] == 0
    rescored = scores(settings, full["run_id"])
    text = [c for c in after.columns if c not in FLOATS]
    pd.testing.assert_frame_equal(rescored[text], after[text])
    for column in FLOATS:
        assert np.allclose(rescored[column], after[column], rtol=0, atol=1e-12, equal_nan=True), column


def test_a_full_refresh_and_an_erasure_fit_the_day_again_and_rescore(small_run, project: Path) -> None:
    settings = load_settings(project / "clarion.yaml", env={})
    first = small_run["result"]["run_id"]
    everyone = len(scores(settings, first))
    out = CliRunner().invoke(cli, ["segment", "--full-refresh"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert f"scored and explained {everyone:,} of {everyone:,} customers (full refresh)" in out.output
    (refreshed,) = query(settings, "select run_id from audit.runs order by started_at desc limit 1")[0]
    assert "reused_from" not in fit_of(settings, refreshed)
    out = CliRunner().invoke(cli, ["segment"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert (
        f"scored and explained 0 of {everyone:,} customers ({everyone:,} kept from {refreshed}: "
        in out.output
    )
    (kept,) = query(settings, "select run_id from audit.runs order by started_at desc limit 1")[0]
    assert fit_of(settings, kept)["reused_from"] == refreshed

    plan = snapshots.plan(settings, None, None)
    assert scoring.kept_lifecycle_fit(settings, plan)[str(plan.as_of)]["reused_from"] == refreshed
    (gone,) = query(settings, "select contact_id from ml.customer_scores where run_id = ? limit 1", [kept])[0]
    erase(settings, str(gone), "TICKET-1")
    assert scoring.kept_lifecycle_fit(settings, plan) == {}  # that fit saw the erased person: fitted again


def test_an_input_key_moves_with_any_figure_and_with_the_context() -> None:
    rng = np.random.default_rng(3)
    figures = rng.normal(size=(500, 40))
    figures[::7, 3] = np.nan
    season = np.full(500, 0.25)
    keys = input_keys(figures, season, 11)
    assert len(set(keys.tolist())) == 500
    assert np.array_equal(keys, input_keys(figures.copy(), season, 11))
    other_nan = figures.copy()
    other_nan[::7, 3] = np.float64(np.nan) * -1  # another NaN bit pattern: the same value
    assert np.array_equal(keys, input_keys(other_nan, season, 11))
    for column in range(40):
        changed = figures.copy()
        changed[5, column] = 0.0 if np.isnan(changed[5, column]) else np.nextafter(changed[5, column], np.inf)
        moved = keys != input_keys(changed, season, 11)
        assert moved.tolist() == [i == 5 for i in range(500)], column
    assert (keys != input_keys(figures, season + 1e-12, 11)).all()
    assert (keys != input_keys(figures, season, 12)).all()


def test_a_kept_lifecycle_fit_gives_the_columns_a_fit_gives() -> None:
    """apply_day with a day's recorded parameters reproduces fit_day's columns on the same customers."""
    rng = np.random.default_rng(8)
    n = 2000
    age = rng.uniform(30, 720, n)
    purchase_days = rng.poisson(age / 120) * (rng.random(n) < 0.7)
    recency = np.where(purchase_days > 1, rng.uniform(0, 1, n) * age, age)
    frame = pd.DataFrame(
        {
            "first_order_days": np.where(purchase_days > 0, age, np.nan),
            "purchase_days": purchase_days,
            "recency_days": np.where(purchase_days > 0, recency, np.nan),
            "avg_order_value_eur": np.where(purchase_days > 0, rng.gamma(4, 15, n), np.nan),
        }
    )
    fitted, summary = customer_base.fit_day(frame, 90)
    assert summary["fitted"]
    applied, again = customer_base.apply_day(frame, 90, json.loads(json.dumps(summary)))
    pd.testing.assert_frame_equal(applied, fitted)
    assert again["bg_nbd"] == summary["bg_nbd"] and again["buyers"] == summary["buyers"]
    assert customer_base.apply_day(frame, 90, {"fitted": False, "why": "too few"}) is None
