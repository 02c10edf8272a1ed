"""The segment stage: scores, honest validation, faithful explanations, registry, CLI, segment rules.

One golden project (synthetic CRM, defects 0) runs the whole pipeline once; tests that change state
work on a copy of it.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest
import shap
from click.testing import CliRunner
from extract_helpers import query
from project_helpers import run_pipeline_in
from sklearn.metrics import roc_auc_score

from clarion.cli import cli
from clarion.config import GenerateSettings, Settings, load_settings
from clarion.errors import ConfigError
from clarion.segment import runner
from clarion.synth.generator import generate
from flows.pipeline import pipeline
from models import metrics
from models.explain import explain
from models.features import FAMILIES, FAMILY_OF, FEATURES
from models.reasons import CATALOGUE, reason_codes, reason_table
from models.registry import Registry
from models.segments import SEGMENTS, Thresholds, assign
from models.train import LABEL, ModelParams, fit, matrix

pytestmark = pytest.mark.usefixtures("prefect_server")

CONFIG = "warehouse:\n  path: var/warehouse.duckdb\ngenerate:\n  out: var/crm\n"
PII = {"first_name", "last_name", "email", "phone", "subject", "body"}
PUBLISHED_AS_OF = date(2026, 7, 1)
HORIZON = 90


@dataclass
class Golden:
    root: Path
    run_id: str
    settings: Settings
    result: dict[str, Any]


@pytest.fixture(scope="module")
def golden(tmp_path_factory, prefect_server) -> Golden:
    """One project: 1,500 clean synthetic customers through prepare, extract, transform, segment."""
    root = tmp_path_factory.mktemp("segment_golden")
    (root / "clarion.yaml").write_text(CONFIG)
    generate(GenerateSettings(customers=1500, seed=12, defects=0.0), out=root / "var" / "crm")
    result = run_pipeline_in(root)
    assert result["status"] == "completed"
    return Golden(root, result["run_id"], load_settings(root / "clarion.yaml", env={}), result)


@pytest.fixture
def copy(golden: Golden, tmp_path: Path, monkeypatch) -> Settings:
    """A copy of the golden project, as the working directory: the test may change it."""
    project = tmp_path / "project"
    shutil.copytree(golden.root, project)
    monkeypatch.chdir(project)
    return load_settings(project / "clarion.yaml", env={})


@pytest.fixture(scope="module")
def features(golden: Golden) -> pd.DataFrame:
    return _frame(golden.settings, "select * from marts.customer_features order by contact_id")


@pytest.fixture(scope="module")
def scores(golden: Golden) -> pd.DataFrame:
    return _frame(
        golden.settings,
        "select * from ml.customer_scores where run_id = ? order by contact_id",
        [golden.run_id],
    )


def _frame(settings: Settings, sql: str, params: list | None = None) -> pd.DataFrame:
    con = duckdb.connect(str(settings.warehouse.path), read_only=True)
    try:
        return con.execute(sql, params or []).df()
    finally:
        con.close()


def _registry(settings: Settings) -> Registry:
    return Registry(settings.var_dir / "registry")


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


# -- 1. a full run ------------------------------------------------------------------------------
@pytest.mark.slow  # needs the golden project's pipeline run
def test_full_run_scores_every_published_customer_once(golden, features, scores) -> None:
    assert golden.result["stages"]["segment"]["customers"] == len(features) > 0
    assert len(scores) == scores["contact_id"].nunique() == len(features)
    assert set(scores["contact_id"]) == set(features["contact_id"])
    assert (scores["run_id"] == golden.run_id).all()
    # this run is the only one in the golden project: nothing outside it either
    assert query(golden.settings, "select count(*) from ml.customer_scores")[0][0] == len(features)

    p, churn = scores["purchase_probability"], scores["churn_risk"]
    assert p.notna().all() and ((p >= 0) & (p <= 1)).all()
    assert np.allclose(churn, 1 - p, atol=1e-12)
    assert (scores["expected_value_eur"] >= 0).all()
    assert set(scores["segment"]) <= set(SEGMENTS)
    promoted = _registry(golden.settings).promoted()
    assert promoted is not None
    assert (scores["model_version"] == promoted.name).all()
    assert (pd.to_datetime(scores["as_of"]).dt.date == PUBLISHED_AS_OF).all()
    assert (scores["horizon_days"] == HORIZON).all()

    seg = _frame(golden.settings, "select * from ml.segments where run_id = ?", [golden.run_id])
    assert seg["segment"].is_unique and set(seg["segment"]) <= set(SEGMENTS)
    assert seg["customers"].sum() == len(scores)
    assert seg["share"].sum() == pytest.approx(1.0, abs=1e-9)
    # each segment row describes exactly the customers scored into it
    counts = scores.groupby("segment").size()
    mean_risk = scores.groupby("segment")["churn_risk"].mean()
    for row in seg.itertuples():
        assert row.customers == counts[row.segment]
        assert row.share == pytest.approx(row.customers / len(scores))
        assert row.mean_churn_risk == pytest.approx(mean_risk[row.segment])
        assert row.model_version == promoted.name


@pytest.mark.slow  # needs the golden project's pipeline run
def test_stored_segments_follow_the_rules_on_real_customers(golden, features, scores) -> None:
    s = golden.settings.segment
    both = scores.merge(features, on="contact_id", validate="one_to_one")
    (high_cut,) = {
        r[0]
        for r in query(
            golden.settings,
            "select distinct high_value_from_eur from ml.segments where run_id = ?",
            [golden.run_id],
        )
    }
    buyers = both.loc[both["spend_365d_eur"].fillna(0) > 0, "spend_365d_eur"]
    assert high_cut == pytest.approx(float(np.quantile(buyers, s.value_high_quantile)))
    tenure = both["tenure_days"]
    dormant = both["orders_365d"].fillna(0) == 0
    spend = both["spend_365d_eur"].fillna(0)
    risk = both["churn_risk"]
    by = {name: both["segment"] == name for name in SEGMENTS}
    assert (tenure[by["new"]] < s.new_days).all()
    assert (tenure[~by["new"]] >= s.new_days).all()
    assert dormant[by["hibernating"]].all()
    active = ~by["new"] & ~by["hibernating"]
    assert not dormant[active].any()
    assert (risk[by["at_risk_high_value"] | by["at_risk_low_value"]] >= s.risk_high).all()
    assert (spend[by["at_risk_high_value"] | by["champions"]] >= high_cut).all()
    assert (spend[by["at_risk_low_value"] | by["loyal"]] < high_cut).all()
    assert (risk[by["champions"] | by["loyal"]] < s.risk_low).all()
    assert ((risk[by["promising"]] >= s.risk_low) & (risk[by["promising"]] < s.risk_high)).all()


# -- 2. honest validation -----------------------------------------------------------------------
@pytest.mark.slow  # needs the golden project's pipeline run
def test_validation_is_out_of_time_beats_the_baseline_and_ranks_the_truth(golden, scores) -> None:
    version = _registry(golden.settings).promoted()
    meta = version.meta
    as_of = date.fromisoformat(meta["data"]["scoring_as_of"])
    assert as_of == PUBLISHED_AS_OF
    assert meta["horizon_days"] == HORIZON
    assert date.fromisoformat(meta["data"]["train_as_of"]) == as_of - timedelta(days=2 * HORIZON)
    assert date.fromisoformat(meta["data"]["valid_as_of"]) == as_of - timedelta(days=HORIZON)
    # older snapshots hold fewer (or as many) customers: only those signed up before their day
    assert 50 <= meta["data"]["train_customers"] <= meta["data"]["valid_customers"] <= len(scores)

    model_auc = meta["metrics"]["propensity"]["roc_auc"]
    baseline_auc = meta["metrics"]["baseline"]["roc_auc"]
    assert model_auc is not None and baseline_auc is not None
    assert model_auc > baseline_auc, (model_auc, baseline_auc)

    truth = pd.read_csv(golden.root / "var" / "crm" / "truth" / "contacts.csv")
    both = scores.merge(truth, on="contact_id", how="left", validate="one_to_one")
    assert both["will_purchase_90d"].notna().all()
    y = both["will_purchase_90d"].astype(bool)
    assert 0 < y.sum() < len(y)
    truth_auc = roc_auc_score(y, both["purchase_probability"])
    assert truth_auc > 0.65, truth_auc


# -- 3. faithful explanations -------------------------------------------------------------------
@pytest.mark.slow  # needs the golden project's pipeline run
def test_explanations_add_up_match_shap_and_the_stored_reasons(golden, features, scores) -> None:
    version = _registry(golden.settings).promoted()
    booster = version.load().propensity
    x = matrix(features)
    expl = explain(booster, x)
    margin = booster.predict(x, raw_score=True)
    gap = np.abs(expl.contributions.sum(axis=1) + expl.base_value - margin)
    assert gap.max() <= 1e-6, gap.max()

    # the leaf tables (what scoring uses) are LightGBM's TreeSHAP on every customer, and that is
    # shap's TreeExplainer, on a sample of 200 customers
    assert expl.method == "leaf-tables"
    lightgbm = explain(booster, x, method="lightgbm")
    assert lightgbm.method == "lightgbm-pred-contrib"
    assert np.abs(expl.contributions - lightgbm.contributions).max() <= 1e-9
    assert expl.base_value == pytest.approx(lightgbm.base_value, abs=1e-12)
    rows = np.random.default_rng(5).choice(len(x), size=200, replace=False)
    contrib = booster.predict(x[rows], pred_contrib=True)
    explainer = shap.TreeExplainer(booster)
    values = explainer.shap_values(x[rows])
    if isinstance(values, list):  # older shap: one array per class, the positive class last
        values = values[-1]
    values = np.asarray(values)
    assert values.shape == (200, len(FEATURES))
    assert np.abs(contrib[:, : len(FEATURES)] - values).max() <= 1e-6
    expected = np.ravel(explainer.expected_value)[-1]
    assert np.abs(contrib[:, len(FEATURES)] - expected).max() <= 1e-6

    # stored reasons: one per feature family, traceable to this model's SHAP values and this
    # customer's own figures
    s = golden.settings.segment
    used = set(version.meta["used_features"])
    assert used <= set(FEATURES)
    assert set(scores["contact_id"]) == set(features["contact_id"])
    position = {f: j for j, f in enumerate(FEATURES)}
    row_of = {cid: i for i, cid in enumerate(features["contact_id"])}
    at_risk_seen = safe_seen = 0
    for rec in scores.itertuples():
        i = row_of[rec.contact_id]
        reasons = list(rec.reasons)
        assert len(reasons) <= s.reasons
        effects = [abs(r["effect"]) for r in reasons]
        assert effects == sorted(effects, reverse=True), (rec.contact_id, effects)
        assert len({r["family"] for r in reasons}) == len(reasons)
        assert rec.reasons_text == "; ".join(r["text"] for r in reasons)
        at_risk = rec.churn_risk >= 0.5
        at_risk_seen += at_risk and bool(reasons)
        safe_seen += (not at_risk) and bool(reasons)
        # what each used feature adds to the log-odds of *not* buying
        risk = {f: -expl.contributions[i, j] for f, j in position.items() if f in used}

        def value(name: str, row: np.ndarray = x[i]) -> float | None:
            v = row[position[name]]
            return None if math.isnan(v) else float(v)

        for r in reasons:
            assert r["feature"] in used
            assert r["family"] == FAMILY_OF[r["feature"]]
            if at_risk:
                assert r["direction"] == "raises_risk" and r["effect"] > 0, (rec.contact_id, r)
            else:
                assert r["direction"] == "lowers_risk" and r["effect"] < 0, (rec.contact_id, r)
            assert abs(r["effect"]) >= s.min_reason_effect
            # the effect is the family's SHAP values summed (log-odds of not buying), rounded to 1e-6
            members = [f for f in FAMILIES[r["family"]] if f in used]
            assert r["effect"] == pytest.approx(sum(risk[f] for f in members), abs=1e-6)
            # worded by the family's feature pushing hardest the customer's way
            sign = 1.0 if at_risk else -1.0
            assert sign * risk[r["feature"]] > 0
            assert sign * risk[r["feature"]] == pytest.approx(max(sign * risk[f] for f in members))
            expected_value = value(r["feature"])
            assert (r["value"] is None) == (expected_value is None)
            if expected_value is not None:
                assert r["value"] == pytest.approx(expected_value)
            assert r["text"] == CATALOGUE[r["feature"]](value)
    assert at_risk_seen > 0 and safe_seen > 0  # both branches were exercised
    assert set(FEATURES) <= set(CATALOGUE)


@pytest.mark.slow  # needs the golden project's pipeline run
def test_every_customer_gets_the_families_that_push_most(golden, features, scores) -> None:
    """A customer's reasons are the (up to `reasons`) families whose summed SHAP values push the
    customer's way by at least min_reason_effect, the strongest first: none is left out."""
    version = _registry(golden.settings).promoted()
    s = golden.settings.segment
    used = set(version.meta["used_features"])
    contributions = explain(version.load().propensity, matrix(features)).contributions
    row_of = {cid: i for i, cid in enumerate(features["contact_id"])}
    wrong = []
    for rec in scores.itertuples():
        i = row_of[rec.contact_id]
        sign = 1.0 if rec.churn_risk >= 0.5 else -1.0
        toward = {
            family: sum(-sign * contributions[i, FEATURES.index(f)] for f in fs if f in used)
            for family, fs in FAMILIES.items()
        }
        qualifying = sorted(
            (f for f, e in toward.items() if e >= s.min_reason_effect), key=lambda f: -toward[f]
        )
        got = [r["family"] for r in rec.reasons]
        if len(got) != min(s.reasons, len(qualifying)) or set(got) - set(qualifying):
            wrong.append((rec.contact_id, got, qualifying[: s.reasons]))
            continue
        # ties aside, the chosen families are the strongest ones
        weakest_chosen = min((toward[f] for f in got), default=math.inf)
        assert all(toward[f] <= weakest_chosen + 1e-9 for f in qualifying if f not in got)
    assert not wrong, f"customers whose reasons miss a family (id, got, expected): {wrong[:10]}"


def test_reasons_sum_each_family_and_skip_unused_features() -> None:
    """By hand: a customer likely to buy (churn risk 0.2); reasons explain why they stay."""
    buy = {  # SHAP values in log-odds of buying
        "open_rate_60d": 0.6,
        "click_rate_60d": -0.2,  # engagement: 0.6 - 0.2 = 0.4
        "recency_days": 0.2,
        "recency_vs_usual": 0.15,  # recency: 0.35
        "orders_365d": 0.3,  # frequency: 0.3
        "avg_satisfaction_365d": 0.1,  # support: 0.1
        "discount_share": 0.01,  # price: below min_effect
        "tenure_days": -0.5,  # tenure: pushes towards lapsing, not a reason to stay
    }
    values = {
        "open_rate_60d": 0.5,
        "open_rate_prior_120d": 0.25,
        "click_rate_60d": 0.1,
        "recency_days": 12.0,
        "recency_vs_usual": 0.5,
        "orders_365d": 4.0,
        "avg_satisfaction_365d": 4.5,
        "discount_share": 0.2,
        "tenure_days": 700.0,
    }
    contributions = np.zeros((1, len(FEATURES)))
    x = np.full((1, len(FEATURES)), np.nan)
    for f, c in buy.items():
        contributions[0, FEATURES.index(f)] = c
    for f, v in values.items():
        x[0, FEATURES.index(f)] = v
    before = contributions.copy()
    churn = np.array([0.2])

    (reasons,) = reason_codes(contributions, x, churn, set(FEATURES), limit=4, min_effect=0.02)
    assert np.array_equal(contributions, before)  # the caller's SHAP values are left as they were
    assert [(r["family"], r["feature"]) for r in reasons] == [
        ("engagement", "open_rate_60d"),
        ("recency", "recency_days"),
        ("frequency", "orders_365d"),
        ("support", "avg_satisfaction_365d"),
    ]
    assert [r["effect"] for r in reasons] == pytest.approx([-0.4, -0.35, -0.3, -0.1])
    assert all(r["direction"] == "lowers_risk" for r in reasons)
    assert reasons[1]["text"] == "no purchase for 12 days" and reasons[1]["value"] == 12.0
    assert reasons[2]["text"] == "4 orders in the last 12 months"

    # three places: the weakest family goes; a model that never split on open_rate_60d leaves
    # engagement with click_rate_60d alone, which pushes the other way: no engagement reason
    (three,) = reason_codes(contributions, x, churn, set(FEATURES), limit=3, min_effect=0.02)
    assert [r["family"] for r in three] == ["engagement", "recency", "frequency"]
    (unused,) = reason_codes(contributions, x, churn, set(FEATURES) - {"open_rate_60d"}, 4, 0.02)
    assert [r["family"] for r in unused] == ["recency", "frequency", "support"]

    # the same SHAP values for a customer about to lapse: the reasons are what raises the risk
    (lapsing,) = reason_codes(contributions, x, np.array([0.8]), set(FEATURES), limit=4, min_effect=0.02)
    assert [(r["family"], r["feature"], r["direction"]) for r in lapsing] == [
        ("tenure", "tenure_days", "raises_risk")
    ]
    assert lapsing[0]["effect"] == pytest.approx(0.5)


def test_reasons_never_name_a_family_without_effect() -> None:
    """segment.min_reason_effect may be 0 (the config allows it): a family whose SHAP values are all
    zero (or whose features the model never used) neither raises nor lowers the risk and must not
    become a reason, let alone one worded by a feature the model never used."""
    contributions = np.zeros((1, len(FEATURES)))
    contributions[0, FEATURES.index("recency_days")] = -0.7  # raises the risk of lapsing
    x = np.zeros((1, len(FEATURES)))
    (reasons,) = reason_codes(contributions, x, np.array([0.9]), {"recency_days"}, limit=4, min_effect=0.0)
    assert [r["feature"] for r in reasons] == ["recency_days"]
    assert all(r["direction"] == "raises_risk" and r["effect"] > 0 for r in reasons)


def test_reason_columns_match_the_catalogue_sentence_by_sentence() -> None:
    """Sentences are rendered once per distinct set of figures and shared: every customer's text must
    still be the catalogue's sentence for that customer's own figures, unknown values included, and
    the joined text and first family must agree with the reasons themselves."""
    rng = np.random.default_rng(7)
    n = 3000
    contributions = rng.normal(0, 0.3, (n, len(FEATURES)))
    x = rng.integers(0, 6, (n, len(FEATURES))).astype(float)  # few distinct figures: much sharing
    for f in ("recency_vs_usual", "open_rate_60d", "open_rate_prior_120d", "avg_satisfaction_365d"):
        x[:, FEATURES.index(f)] = rng.random(n) * 3  # continuous: little sharing
    x[rng.random(x.shape) < 0.15] = np.nan
    table = reason_table(contributions, x, rng.random(n), set(FEATURES), limit=4, min_effect=0.02)
    rows = table.rows()
    joined = table.joined_text().to_pylist()
    first = table.first_family()
    assert len(rows) == n and sum(map(len, rows)) == len(table.text) > n
    for i, reasons in enumerate(rows):

        def value(name: str, i: int = i) -> float | None:
            v = x[i, FEATURES.index(name)]
            return None if math.isnan(v) else float(v)

        for r in reasons:
            assert r["text"] == CATALOGUE[r["feature"]](value), (i, r)
            assert (r["value"] is None) == (value(r["feature"]) is None)
        assert joined[i] == "; ".join(r["text"] for r in reasons)
        assert first[i] == (reasons[0]["family"] if reasons else None)


# -- 4. point in time ---------------------------------------------------------------------------
@pytest.mark.slow  # needs the golden project's pipeline run
def test_training_snapshots_only_see_the_past_and_are_dropped(golden, copy) -> None:
    leftover = query(
        golden.settings,
        "select table_name from duckdb_tables() where schema_name = ? "
        "union all select view_name from duckdb_views() where schema_name = ?",
        [runner.SNAPSHOT_SCHEMA, runner.SNAPSHOT_SCHEMA],
    )
    assert leftover == []

    settings = copy
    day = PUBLISHED_AS_OF - timedelta(days=HORIZON)
    snap = runner.snapshot(settings, day, HORIZON, PUBLISHED_AS_OF)
    after = query(
        settings,
        "select count(*) from duckdb_tables() where schema_name = ?",
        [runner.SNAPSHOT_SCHEMA],
    )
    assert after[0][0] == 0  # the scratch schema is dropped after reading

    # several days at once (what training does) build the day-independent models once and only
    # the as-of models again for the next day: the frame equals the one built alone
    older_day = day - timedelta(days=HORIZON)
    older, again = runner.snapshots(settings, (older_day, day), HORIZON, PUBLISHED_AS_OF)
    pd.testing.assert_frame_equal(again, snap)
    last_build = json.loads((settings.var_dir / "dbt" / "target" / "run_results.json").read_text())
    assert {r["unique_id"].split(".")[-1] for r in last_build["results"]} == set(runner.AS_OF_MODELS)
    assert (pd.to_datetime(older["as_of"]).dt.date == older_day).all()
    assert 0 < len(older) < len(snap)
    assert query(
        settings, "select count(*) from duckdb_tables() where schema_name = ?", [runner.SNAPSHOT_SCHEMA]
    ) == [(0,)]

    assert len(snap) > 0 and snap["contact_id"].is_unique
    assert (pd.to_datetime(snap["as_of"]).dt.date == day).all()
    signup = dict(query(settings, "select contact_id, signup_date from raw.contacts"))
    assert all(signup[c] < day for c in snap["contact_id"])
    # every customer signed up before the day is in it, and no one else
    (expected,) = query(settings, "select count(*) from raw.contacts where signup_date < ?", [day])[0]
    assert len(snap) == expected
    assert len(snap) == _registry(golden.settings).promoted().meta["data"]["valid_customers"]
    # features see orders strictly before the day; labels only the horizon after it
    orders = _frame(
        settings,
        """
        select contact_id,
               count(*) filter (where ordered_at < cast(? as timestamptz)) as before,
               count(*) filter (where ordered_at >= cast(? as timestamptz)
                                  and ordered_at < cast(? as timestamptz)) as after
        from marts.fct_orders where not is_cancelled group by contact_id
        """,
        [f"{day} 00:00:00+00", f"{day} 00:00:00+00", f"{day + timedelta(days=HORIZON)} 00:00:00+00"],
    )
    both = snap.merge(orders, on="contact_id", how="left").fillna({"before": 0, "after": 0})
    assert (both["orders_lifetime"] == both["before"]).all()
    assert (both[LABEL] == (both["after"] > 0)).all()
    assert both[LABEL].any() and not both[LABEL].all()
    # the older day, built on the first day's staging tables, counts only its own past
    lifetime = _frame(
        settings,
        "select contact_id, count(*) as before from marts.fct_orders "
        "where not is_cancelled and ordered_at < cast(? as timestamptz) group by contact_id",
        [f"{older_day} 00:00:00+00"],
    )
    old = older.merge(lifetime, on="contact_id", how="left").fillna({"before": 0})
    assert (old["orders_lifetime"] == old["before"]).all()
    pair = older.merge(snap, on="contact_id", suffixes=("_older", "_newer"))
    assert len(pair) == len(older)  # everyone signed up by the older day is in the newer one
    assert (pair["orders_lifetime_older"] <= pair["orders_lifetime_newer"]).all()
    assert (pair["orders_lifetime_older"] < pair["orders_lifetime_newer"]).any()
    recency = both["recency_days"].dropna()
    assert (recency >= 0).all()
    assert (both["tenure_days"] > 0).all()


def test_only_the_as_of_models_read_the_day() -> None:
    """`runner.snapshots` rebuilds only AS_OF_MODELS for a further day: every other model must not
    depend on the as-of day or the horizon, or its second snapshot would be wrong."""
    models = Path(__file__).resolve().parents[1] / "dbt" / "models"
    reads_day = re.compile(r"as_of|horizon")
    readers = {f.stem for f in models.rglob("*.sql") if reads_day.search(f.read_text())}
    assert readers == set(runner.AS_OF_MODELS)


# -- 5. registry --------------------------------------------------------------------------------
@pytest.mark.slow  # needs the golden project's pipeline run
def test_registry_lists_shows_retrains_rolls_back_and_promotes(copy) -> None:
    settings = copy
    listing = _invoke("models", "list", "--json")
    assert listing.exit_code == 0, listing.output
    data = json.loads(listing.stdout)
    assert [v["version"] for v in data["versions"]] == ["v0001"]
    assert sum(v["promoted"] for v in data["versions"]) == 1 and data["promoted"] == "v0001"

    card = _invoke("models", "show")
    assert card.exit_code == 0, card.output
    assert "Out-of-time validation" in card.stdout and "Fairness" in card.stdout
    assert "v0001" in card.stdout and "{version}" not in card.stdout

    only_one = _invoke("models", "rollback")
    assert only_one.exit_code != 0
    assert "nothing to roll back to" in only_one.output and "only version ever promoted" in only_one.output
    assert _registry(settings).promoted().name == "v0001"

    result = pipeline(config_path="clarion.yaml", stages=["segment"], retrain=True)
    reg = _registry(settings)
    assert [v.name for v in reg.versions()] == ["v0001", "v0002"]
    first, second = reg.get("v0001"), reg.get("v0002")
    new_auc = second.meta["metrics"]["propensity"]["roc_auc"]
    old_auc = first.meta["metrics"]["propensity"]["roc_auc"]  # same data, same validation customers
    expected = "v0002" if new_auc >= old_auc - settings.segment.promote_tolerance else "v0001"
    assert reg.promoted().name == expected, result["stages"]["segment"]["trained"]["decision"]
    if expected == "v0001":
        assert _invoke("models", "promote", "v0002").exit_code == 0

    data = json.loads(_invoke("models", "list", "--json").stdout)
    assert [v["version"] for v in data["versions"]] == ["v0001", "v0002"]
    assert [v["version"] for v in data["versions"] if v["promoted"]] == ["v0002"]

    back = _invoke("models", "rollback")
    assert back.exit_code == 0, back.output
    assert _registry(settings).promoted().name == "v0001"
    again = _invoke("models", "promote", "v0002")
    assert again.exit_code == 0, again.output
    assert _registry(settings).promoted().name == "v0002"
    actions = [(e["action"], e["version"]) for e in _registry(settings).index()["events"]]
    assert actions[-2:] == [("rolled_back_to", "v0001"), ("promoted", "v0002")]

    unknown = _invoke("models", "promote", "v9999")
    assert unknown.exit_code != 0
    assert "v9999" in unknown.output and "v0001" in unknown.output and "v0002" in unknown.output
    assert _registry(settings).promoted().name == "v0002"


# -- 6. a worse model is not promoted ----------------------------------------------------------
@pytest.mark.slow  # needs the golden project's pipeline run
def test_a_worse_candidate_is_registered_but_not_promoted(copy) -> None:
    settings = copy
    with Path("clarion.yaml").open("a") as fh:
        fh.write("segment:\n  trees: 10\n  leaves: 4\n  max_depth: 2\n  promote_tolerance: 0.0\n")
    settings = load_settings("clarion.yaml", env={})
    assert (settings.segment.trees, settings.segment.leaves, settings.segment.max_depth) == (10, 4, 2)
    result = pipeline(config_path="clarion.yaml", stages=["segment"], retrain=True)
    reg = _registry(settings)
    first, second = reg.get("v0001"), reg.get("v0002")
    assert second.meta["params"]["trees"] == 10 and second.meta["params"]["max_depth"] == 2

    # both validation models on the same validation customers, measured here
    valid_day = date.fromisoformat(second.meta["data"]["valid_as_of"])
    valid = runner.snapshot(settings, valid_day, HORIZON, PUBLISHED_AS_OF)
    y = valid[LABEL].astype(float).to_numpy()
    old_auc = metrics.classification(y, first.load("validation").predict(matrix(valid))[1])["roc_auc"]
    new_auc = metrics.classification(y, second.load("validation").predict(matrix(valid))[1])["roc_auc"]
    assert new_auc == pytest.approx(second.meta["metrics"]["propensity"]["roc_auc"], abs=1e-12)
    assert old_auc == pytest.approx(first.meta["metrics"]["propensity"]["roc_auc"], abs=1e-12)

    events = reg.index()["events"]
    decision = result["stages"]["segment"]["trained"]["decision"]
    if new_auc < old_auc - settings.segment.promote_tolerance:
        assert reg.promoted().name == "v0001", decision
        assert decision.startswith("kept v0001")
        kept = [e for e in events if e["action"] == "kept"]
        assert len(kept) == 1 and kept[0]["version"] == "v0001"
        assert f"{new_auc:.4f}" in kept[0]["note"] and f"{old_auc:.4f}" in kept[0]["note"]
        assert ("promoted", "v0002") not in [(e["action"], e["version"]) for e in events]
        scored_with = "v0001"
    else:
        assert reg.promoted().name == "v0002", decision
        assert not [e for e in events if e["action"] == "kept"]
        scored_with = "v0002"
    assert result["stages"]["segment"]["model_version"] == scored_with
    run_id = result["run_id"]
    assert query(
        settings, "select distinct model_version from ml.customer_scores where run_id = ?", [run_id]
    ) == [(scored_with,)]


@pytest.mark.slow  # needs the golden project's pipeline run
def test_scores_come_from_a_model_trained_for_their_horizon(copy) -> None:
    """A 60-day run records horizon_days 60; the model that scored it must predict 60 days, whether or
    not the new 60-day candidate beat the promoted 90-day version on the 60-day validation labels."""
    settings = copy
    with Path("clarion.yaml").open("a") as fh:
        fh.write("segment:\n  trees: 10\n  leaves: 4\n  max_depth: 2\n")
    settings = load_settings("clarion.yaml", env={})
    result = pipeline(config_path="clarion.yaml", stages=["segment"], horizon_days=60)
    rows = query(
        settings,
        "select distinct model_version, horizon_days from ml.customer_scores where run_id = ?",
        [result["run_id"]],
    )
    assert len(rows) == 1
    version, horizon = rows[0]
    assert horizon == 60
    decision = result["stages"]["segment"]["trained"]["decision"]
    assert _registry(settings).get(version).meta["horizon_days"] == horizon, decision


# -- 7. CLI -------------------------------------------------------------------------------------
@pytest.mark.slow  # needs the golden project's pipeline run
def test_explain_prints_a_customers_segment_and_reasons(golden, scores, monkeypatch) -> None:
    monkeypatch.chdir(golden.root)
    with_reasons = scores[scores["reasons"].map(len) > 0]
    rec = with_reasons.iloc[len(with_reasons) // 2]
    cid = int(rec["contact_id"])
    human = _invoke("explain", str(cid))
    assert human.exit_code == 0, human.output
    assert f"Customer {cid}" in human.stdout and f"segment {rec['segment']}" in human.stdout
    assert "why:" in human.stdout
    for r in rec["reasons"]:
        assert r["text"] in human.stdout

    as_json = _invoke("explain", str(cid), "--json")
    assert as_json.exit_code == 0, as_json.output
    e = json.loads(as_json.stdout)
    assert {"purchase_probability", "segment", "reasons", "model_version"} <= set(e)
    assert e["contact_id"] == cid and e["segment"] == rec["segment"]
    assert e["model_version"] == rec["model_version"]
    assert e["purchase_probability"] == pytest.approx(rec["purchase_probability"])
    assert [r["feature"] for r in e["reasons"]] == [r["feature"] for r in rec["reasons"]]

    missing = _invoke("explain", "99999999")
    assert missing.exit_code == 1
    assert "was not scored" in missing.output


def test_segment_without_published_features_says_to_transform(tmp_path, monkeypatch) -> None:
    (tmp_path / "clarion.yaml").write_text(CONFIG)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    for name in (
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
        "PREFECT_LOGGING_EXTRA_LOGGERS",
        "PREFECT_LOGGING_LEVEL",
    ):
        monkeypatch.delenv(name, raising=False)  # restored (removed) after the test
    result = _invoke("segment", "--json")
    assert result.exit_code != 0
    assert "clarion transform" in result.output
    assert not (tmp_path / "var" / "registry" / "purchase_propensity").exists()


# -- 8. bad input -------------------------------------------------------------------------------
@pytest.mark.slow  # needs the golden project's pipeline run
def test_a_snapshot_with_one_label_value_is_refused(features) -> None:
    frame = features.head(200).copy()
    frame[LABEL] = True
    frame["spend_in_horizon_eur"] = 10.0
    with pytest.raises(ValueError, match=LABEL):
        fit(frame, ModelParams(trees=10, leaves=4, max_depth=2, threads=1))


def test_inverted_risk_thresholds_fail_to_load(tmp_path) -> None:
    path = tmp_path / "clarion.yaml"
    path.write_text(CONFIG + "segment:\n  risk_low: 0.7\n  risk_high: 0.6\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    message = str(caught.value)
    assert "risk_low" in message and "risk_high" in message
    assert "0.7" in message and "0.6" in message


# -- 9. segment rules by hand -------------------------------------------------------------------
def test_segment_rules_on_hand_made_customers() -> None:
    rows = [
        # name, tenure_days, orders_365d, spend_365d_eur, churn risk
        ("new", 30, 0, 0.0, 0.9),  # new wins over everything, even high risk
        ("hibernating", 400, 0, 0.0, 0.1),  # no order in 12 months: hibernating, though safe
        ("at_risk_high_value", 400, 5, 1000.0, 0.7),
        ("at_risk_low_value", 400, 1, 100.0, 0.6),  # exactly risk_high counts as at risk
        ("champions", 400, 6, 1000.0, 0.1),
        ("loyal", 400, 2, 100.0, 0.29),
        ("promising", 400, 2, 1000.0, 0.3),  # exactly risk_low is not safe; high value alone is not enough
        ("hibernating", 90, 0, 0.0, 0.5),  # exactly new_days is no longer new
        ("hibernating", 200, float("nan"), float("nan"), 0.1),  # unknown orders and spend count as none
    ]
    frame = pd.DataFrame(
        [r[1:4] for r in rows], columns=["tenure_days", "orders_365d", "spend_365d_eur"], dtype=float
    )
    churn = np.array([r[4] for r in rows])
    segment, high_cut = assign(
        frame, churn, Thresholds(risk_high=0.6, risk_low=0.3, value_high_quantile=0.75)
    )
    # buyers spent 1000, 100, 1000, 100, 1000: the 75% quantile of [100, 100, 1000, 1000, 1000] is 1000
    assert high_cut == 1000.0
    assert list(segment) == [r[0] for r in rows]
    assert set(segment) == set(SEGMENTS)

    nobody_bought = frame.assign(spend_365d_eur=0.0)
    segment, high_cut = assign(nobody_bought, churn, Thresholds())
    assert high_cut == math.inf
    assert "champions" not in segment and "at_risk_high_value" not in segment


# -- 10. no personal data -----------------------------------------------------------------------
@pytest.mark.slow  # needs the golden project's pipeline run
def test_scores_and_reasons_hold_no_personal_data(golden, scores) -> None:
    for table in ("customer_scores", "segments"):
        columns = {
            r[0]
            for r in query(
                golden.settings,
                "select column_name from duckdb_columns() where schema_name = 'ml' and table_name = ?",
                [table],
            )
        }
        assert columns and not columns & PII, (table, columns & PII)

    people = {
        cid: (first, last, email)
        for cid, first, last, email in query(
            golden.settings, "select contact_id, first_name, last_name, email from raw.contacts"
        )
    }
    assert all("@" not in t for t in scores["reasons_text"])
    assert all("@" not in r["text"] for rs in scores["reasons"] for r in rs)
    sample = scores.sample(n=200, random_state=3)
    checked = 0
    for rec in sample.itertuples():
        first, last, _ = people[rec.contact_id]
        texts = [rec.reasons_text, *(r["text"] for r in rec.reasons)]
        for name in (first, last):
            if name:
                checked += 1
                pattern = re.compile(rf"\b{re.escape(name)}\b")
                assert not any(pattern.search(t) for t in texts), (rec.contact_id, name)
    assert checked >= 200

    segments = query(golden.settings, "select profile, top_drivers from ml.segments")
    assert all("@" not in (profile + drivers) for profile, drivers in segments)
    card = (_registry(golden.settings).promoted().path / "card.md").read_text()
    emails = {email for _, _, email in people.values() if email}
    assert emails and "@" not in card and not any(e in card for e in emails)


@pytest.mark.slow  # needs the golden project's pipeline run
def test_scoring_in_chunks_gives_the_same_scores_and_reasons(golden, copy, scores) -> None:
    """1,000-customer chunks (the smallest allowed) split the golden run's customers in two: the
    stored rows must be those of the one-chunk run, and a rerun replaces rather than duplicates."""
    config = copy.var_dir.parent / "clarion.yaml"
    config.write_text(config.read_text() + "segment:\n  explain_chunk_rows: 1000\n")
    assert len(scores) > 1000  # more than one chunk
    result = pipeline(config_path="clarion.yaml", stages=["segment"])
    chunked_run = result["run_id"]
    settings = load_settings(config, env={})
    chunked = _frame(
        settings,
        "select contact_id, purchase_probability, segment, reasons_text from ml.customer_scores "
        "where run_id = ? order by contact_id",
        [chunked_run],
    )
    assert chunked["contact_id"].tolist() == scores["contact_id"].tolist()
    assert np.allclose(chunked["purchase_probability"], scores["purchase_probability"], atol=1e-12)
    assert chunked["segment"].tolist() == scores["segment"].tolist()
    assert chunked["reasons_text"].tolist() == scores["reasons_text"].tolist()
    assert result["stages"]["segment"]["additivity_max_gap"] <= 1e-6
    counts = _frame(settings, "select run_id, count(*) n from ml.customer_scores group by run_id")
    assert sorted(counts["n"].tolist()) == [len(scores), len(scores)]  # golden run + this one, once each
