"""The segment stage: scores, honest validation, faithful explanations, registry, CLI, segment rules.

One golden project (synthetic CRM, defects 0) runs the whole pipeline once; tests that change state
work on a copy of it. Reason codes by hand are in test_reasons.py, the recipe's parts in
test_training.py.
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
from reason_oracle import Shop, check_run
from scipy.special import hyp2f1
from sklearn.metrics import roc_auc_score

from clarion.cli import cli
from clarion.config import GenerateSettings, Settings, load_settings
from clarion.errors import ConfigError
from clarion.segment import runner, snapshots, training
from clarion.synth.generator import generate
from flows.pipeline import pipeline
from models import customer_base, metrics
from models.explain import explain
from models.features import FAMILIES, FAMILY_OF, FEATURES
from models.reasons import CATALOGUE
from models.registry import Registry
from models.segments import SEGMENTS, Thresholds, assign
from models.train import LABEL, matrix

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
    """The published features with the lifecycle columns the scoring run fitted (same data, same seed):
    the customers who may be profiled, i.e. without those who object to it (Art. 21)."""
    frame = _frame(
        golden.settings,
        "select * from marts.customer_features where contact_id not in "
        "(select contact_id from raw.contacts where marketing_objection) order by contact_id",
    )
    return customer_base.add_features(frame, HORIZON, golden.settings.segment.seed)[0]


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
    (published,) = query(golden.settings, "select count(*) from marts.customer_features")[0]
    objecting = published - len(features)  # objectors are not profiled: neither scored nor segmented
    assert golden.result["stages"]["segment"]["not_profiled"] == {"objection": objecting} and objecting > 0
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
    (high_cut, risk_high, risk_low, rate) = query(
        golden.settings,
        "select distinct high_value_from_eur, risk_high, risk_low, shop_purchase_rate from ml.segments "
        "where run_id = ?",
        [golden.run_id],
    )[0]
    # relative thresholds, recomputed from the stored probabilities
    assert rate == pytest.approx(scores["purchase_probability"].mean())
    assert risk_high == pytest.approx(1 - s.at_risk_below * rate)
    assert risk_low == pytest.approx(1 - s.safe_from * rate)
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
    assert (risk[by["at_risk_high_value"] | by["at_risk_low_value"]] >= risk_high).all()
    assert (spend[by["at_risk_high_value"] | by["champions"]] >= high_cut).all()
    assert (spend[by["at_risk_low_value"] | by["loyal"]] < high_cut).all()
    assert (risk[by["champions"] | by["loyal"]] < risk_low).all()
    assert ((risk[by["promising"]] >= risk_low) & (risk[by["promising"]] < risk_high)).all()
    # the at-risk share follows the shop: at risk means less than half the shop's purchase rate
    at_risk = by["at_risk_high_value"] | by["at_risk_low_value"]
    assert (both.loc[at_risk, "purchase_probability"] <= s.at_risk_below * rate + 1e-12).all()


# -- 2. honest validation -----------------------------------------------------------------------
@pytest.mark.slow  # needs the golden project's pipeline run
def test_validation_is_out_of_time_beats_the_baselines_and_ranks_the_truth(golden, scores) -> None:
    version = _registry(golden.settings).promoted()
    meta = version.meta
    data = meta["data"]
    as_of = date.fromisoformat(data["scoring_as_of"])
    assert as_of == PUBLISHED_AS_OF and meta["horizon_days"] == HORIZON
    valid_day = date.fromisoformat(data["valid_as_of"])
    assert valid_day == as_of - timedelta(days=HORIZON)
    # stacked snapshots: production days up to as_of - h, the validation fit's days up to as_of - 2h
    production = [date.fromisoformat(d) for d in data["production_days"]]
    fit_days = [date.fromisoformat(d) for d in data["validation_fit_days"]]
    assert production[0] == valid_day and len(production) == golden.settings.segment.snapshots
    assert all(d + timedelta(days=HORIZON) <= valid_day for d in fit_days)
    assert all(d + timedelta(days=HORIZON) <= as_of for d in production)
    assert data["production_rows"] > data["valid_customers"] > 50

    m = meta["metrics"]
    model_auc, baseline_auc, bgnbd_auc = (
        m[k]["roc_auc"] for k in ("propensity", "baseline", "customer_base")
    )
    assert model_auc > baseline_auc, (model_auc, baseline_auc)
    assert model_auc > bgnbd_auc, (model_auc, bgnbd_auc)
    assert m["propensity"]["ranked_on"] == "margin"

    truth = pd.read_csv(golden.root / "var" / "crm" / "truth" / "contacts.csv")
    both = scores.merge(truth, on="contact_id", how="left", validate="one_to_one")
    assert both["will_purchase_90d"].notna().all()
    y = both["will_purchase_90d"].astype(bool)
    assert 0 < y.sum() < len(y)
    truth_auc = roc_auc_score(y, both["margin"])
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

    # stored: the margin and the base value of the model that scored, and the side they give
    row_of = {cid: i for i, cid in enumerate(features["contact_id"])}
    at = np.array([row_of[c] for c in scores["contact_id"]])
    assert np.allclose(scores["margin"], margin[at], atol=1e-9)
    assert np.allclose(scores["base_margin"], expl.base_value, atol=1e-9)
    band = golden.settings.segment.close_to_average
    gap_to_average = margin[at] - expl.base_value
    expected_side = np.where(
        np.abs(gap_to_average) < band, "close", np.where(gap_to_average < 0, "below", "above")
    )
    assert (scores["vs_average"].to_numpy() == expected_side).all()

    s = golden.settings.segment
    used = set(version.meta["used_features"])
    assert used <= set(FEATURES)
    position = {f: j for j, f in enumerate(FEATURES)}
    below_seen = above_seen = 0
    for rec in scores.itertuples():
        i = row_of[rec.contact_id]
        reasons = list(rec.reasons)
        assert len(reasons) <= s.reasons
        effects = [abs(r["effect"]) for r in reasons]
        assert effects == sorted(effects, reverse=True), (rec.contact_id, effects)
        assert len({r["family"] for r in reasons}) == len(reasons)
        assert rec.reasons_text == "; ".join(r["text"] for r in reasons)
        below = margin[i] < expl.base_value  # less likely to buy than the average customer
        below_seen += below and bool(reasons)
        above_seen += (not below) and bool(reasons)
        risk = {f: -expl.contributions[i, j] for f, j in position.items() if f in used}
        for r in reasons:
            assert r["feature"] in used
            assert r["family"] == FAMILY_OF[r["feature"]]
            if below:
                assert r["direction"] == "raises_risk" and r["effect"] > 0, (rec.contact_id, r)
            else:
                assert r["direction"] == "lowers_risk" and r["effect"] < 0, (rec.contact_id, r)
            assert abs(r["effect"]) >= s.min_reason_effect
            members = [f for f in FAMILIES[r["family"]] if f in used]
            assert r["effect"] == pytest.approx(sum(risk[f] for f in members), abs=1e-6)
            sign = 1.0 if below else -1.0
            assert sign * risk[r["feature"]] > 0
            assert sign * risk[r["feature"]] == pytest.approx(max(sign * risk[f] for f in members))
            # "other ... figures pull the other way" exactly when a family member pushes against
            against = any(sign * risk[f] <= -s.min_reason_effect for f in members)
            assert r["text"].endswith("pull the other way)") == against, (rec.contact_id, r)
    assert below_seen > 0 and above_seen > 0  # both sides were exercised
    assert set(FEATURES) <= set(CATALOGUE)


def _lifecycle_from_stored_fit(golden: Golden, features: pd.DataFrame) -> pd.DataFrame:
    """p_alive, expected purchases and expected order value recomputed here from the BG/NBD and
    Gamma-Gamma parameters the run recorded (ml.lifecycle_fits), with the published formulas (Fader,
    Hardie & Lee 2005), not with models/clv."""
    [(fit,)] = query(golden.settings, "select fit from ml.lifecycle_fits where run_id = ?", [golden.run_id])
    fit = json.loads(fit)
    r, alpha, a, b = (fit["bg_nbd"][k] for k in ("r", "alpha", "a", "b"))
    gg = fit["gamma_gamma"]
    out = pd.DataFrame(
        index=features.index,
        columns=["p_alive", "expected_orders_horizon", "expected_order_value_eur"],
        dtype=float,
    )
    bought = features["purchase_days"].fillna(0) > 0
    f = features[bought]
    x = (f["purchase_days"] - 1).to_numpy(dtype=float)
    big_t = f["first_order_days"].to_numpy(dtype=float)
    t_x = np.where(x > 0, np.clip(big_t - f["recency_days"].to_numpy(dtype=float), 0, big_t), 0.0)
    ratio = (a / (b + np.maximum(x, 1) - 1)) * ((alpha + big_t) / (alpha + t_x)) ** (r + x)
    alive = np.where(x > 0, 1 / (1 + np.where(x > 0, ratio, 0)), 1.0)
    t = float(HORIZON)
    z = t / (alpha + big_t + t)
    term = 1 - ((alpha + big_t) / (alpha + big_t + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
    expected = alive * (a + b + x - 1) / (a - 1) * term
    m = f["avg_order_value_eur"].to_numpy(dtype=float)
    p, q, v = gg["p"], gg["q"], gg["v"]
    value = p * (v + x * m) / (p * x + q - 1)
    out.loc[bought, "p_alive"] = alive
    out.loc[bought, "expected_orders_horizon"] = expected
    out.loc[bought, "expected_order_value_eur"] = value
    return out


@pytest.mark.slow  # needs the golden project's pipeline run
def test_every_sentence_of_every_customer_is_true_for_that_customer(golden, features, scores) -> None:
    """The faithfulness test: each rendered reason of every scored customer is re-derived from that
    customer's own figures (tests/reason_oracle.py reads the printed figures, units and direction
    words back) and must agree; amounts in the shop's currency, found here from the orders."""
    lifecycle = _lifecycle_from_stored_fit(golden, features)
    recomputed = features.drop(columns=list(lifecycle.columns)).join(lifecycle)
    (currency,) = query(
        golden.settings,
        "select currency from raw.orders group by 1 order by count(*) desc, currency limit 1",
    )[0]
    rates = dict(pd.read_csv(Path(__file__).resolve().parents[1] / "dbt" / "seeds" / "fx_rates.csv").values)
    shop = Shop(currency, float(rates[currency]), HORIZON)
    assert (scores["currency"] == currency).all()
    figures = recomputed.set_index("contact_id")
    problems, checked, _ = check_run(scores.itertuples(), figures, shop)
    assert checked > 2 * len(scores)
    assert not problems, f"{len(problems)} false sentences, e.g. {problems[:5]}"
    # the recomputed lifecycle figures are the ones the run used (a reason's stored value)
    for rec in scores.itertuples():
        for r in rec.reasons:
            if r["family"] == "lifecycle" and r["value"] is not None:
                assert r["value"] == pytest.approx(
                    figures.loc[rec.contact_id, r["feature"]], rel=1e-6, abs=1e-9
                )


@pytest.mark.slow  # needs the golden project's pipeline run
def test_every_customer_gets_the_families_that_push_most(golden, features, scores) -> None:
    """A customer's reasons are the (up to `reasons`) families whose summed SHAP values push the
    customer's way by at least min_reason_effect, the strongest first: none is left out."""
    version = _registry(golden.settings).promoted()
    s = golden.settings.segment
    used = set(version.meta["used_features"])
    expl = explain(version.load().propensity, matrix(features))
    contributions = expl.contributions
    row_of = {cid: i for i, cid in enumerate(features["contact_id"])}
    wrong = []
    for rec in scores.itertuples():
        i = row_of[rec.contact_id]
        sign = 1.0 if expl.margin[i] < expl.base_value else -1.0
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
        weakest_chosen = min((toward[f] for f in got), default=math.inf)
        assert all(toward[f] <= weakest_chosen + 1e-9 for f in qualifying if f not in got)
    assert not wrong, f"customers whose reasons miss a family (id, got, expected): {wrong[:10]}"


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
    older_day = day - timedelta(days=4 * 28)
    stacked = snapshots.build(settings, [older_day, day], HORIZON)
    assert query(
        settings, "select count(*) from duckdb_tables() where schema_name = ?", [runner.SNAPSHOT_SCHEMA]
    ) == [(0,)]  # the scratch schema is dropped after reading
    as_of = pd.to_datetime(stacked["as_of"]).dt.date
    snap, older = stacked[as_of == day], stacked[as_of == older_day]
    assert snap["contact_id"].is_unique and older["contact_id"].is_unique
    assert stacked["horizon_complete"].all()
    signup = dict(query(settings, "select contact_id, signup_date from raw.contacts"))
    for frame, d in ((snap, day), (older, older_day)):
        assert all(signup[c] < d for c in frame["contact_id"])
        (expected,) = query(
            settings,
            "select count(*) from raw.contacts where signup_date < ? and not marketing_objection",
            [d],
        )[0]
        assert len(frame) == expected  # everyone signed up before the day who may be profiled, no one else
    assert len(snap) == _registry(golden.settings).promoted().meta["data"]["valid_customers"]
    # features see orders placed before the day that were not known to be cancelled then; labels the
    # horizon after it (counted here from raw, not from the dbt models)
    for frame, d in ((snap, day), (older, older_day)):
        start, end = f"{d} 00:00:00+00", f"{d + timedelta(days=HORIZON)} 00:00:00+00"
        counts = _frame(
            settings,
            """
            select contact_id,
                   count(*) filter (where ordered_at < cast(? as timestamptz)
                       and not (status = 'cancelled' and updated_at < cast(? as timestamptz))) as before,
                   count(*) filter (where ordered_at >= cast(? as timestamptz)
                       and ordered_at < cast(? as timestamptz) and status <> 'cancelled') as after
            from raw.orders group by contact_id
            """,
            [start, start, start, end],
        )
        both = frame.merge(counts, on="contact_id", how="left").fillna({"before": 0, "after": 0})
        assert (both["orders_lifetime"] == both["before"]).all(), d
        assert (both[LABEL] == (both["after"] > 0)).all(), d
        assert both[LABEL].any() and not both[LABEL].all()
    pair = older.merge(snap, on="contact_id", suffixes=("_older", "_newer"))
    assert len(pair) == len(older)  # everyone signed up by the older day is in the newer one
    # lifetime orders only grow, but for an order whose cancellation was recorded between the days:
    # counted on the older day (not known cancelled then), not on the newer one
    revoked = _frame(
        settings,
        """
        select contact_id, count(*) as revoked from raw.orders
        where status = 'cancelled' and ordered_at < cast(? as timestamptz)
          and updated_at >= cast(? as timestamptz) and updated_at < cast(? as timestamptz)
        group by contact_id
        """,
        [f"{older_day} 00:00:00+00", f"{older_day} 00:00:00+00", f"{day} 00:00:00+00"],
    )
    pair = pair.merge(revoked, on="contact_id", how="left").fillna({"revoked": 0})
    assert (pair["orders_lifetime_older"] <= pair["orders_lifetime_newer"] + pair["revoked"]).all()
    assert (pair["orders_lifetime_older"] < pair["orders_lifetime_newer"]).any()
    # the published day's labels are unknown: its horizon runs after the latest order
    assert query(
        settings, "select count(*) from marts.customer_labels where purchased_in_horizon is not null"
    ) == [(0,)]


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
    assert (
        "nothing to roll back to" in only_one.output
        and "first version in the promotion history" in only_one.output
    )
    assert _registry(settings).promoted().name == "v0001"

    result = pipeline(config_path="clarion.yaml", stages=["segment"], retrain=True)
    reg = _registry(settings)
    assert [v.name for v in reg.versions()] == ["v0001", "v0002"]
    first, second = reg.get("v0001"), reg.get("v0002")
    # same data, same settings: the same model, byte for byte (features are exact sums, training is seeded)
    for name in ("propensity.txt", "propensity_validation.txt", "value.txt", "calibrators.json"):
        assert (first.path / name).read_bytes() == (second.path / name).read_bytes(), name
    new, old = second.meta["metrics"]["propensity"], first.meta["metrics"]["propensity"]  # same customers
    s = settings.segment
    earns = (
        new["roc_auc"] > second.meta["metrics"]["baseline"]["roc_auc"]
        and new["roc_auc"] >= old["roc_auc"] - s.promote_tolerance
        and new["ece"] <= old["ece"] + s.calibration_tolerance
    )
    expected = "v0002" if earns else "v0001"
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


# -- 6. promotion: a candidate earns its place -------------------------------------------------
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
    frames, _ = training.build_frames(settings, runner.plan(settings, None, None))
    valid = frames["validation"]
    y = valid[LABEL].astype(float).to_numpy()
    figures = {}
    for name, version in (("old", first), ("new", second)):
        margin, p, _ = version.load("validation").predict_frame(valid)
        figures[name] = metrics.classification(y, p, score=margin)
    new, old = figures["new"], figures["old"]
    assert new["roc_auc"] == pytest.approx(second.meta["metrics"]["propensity"]["roc_auc"], abs=1e-12)
    assert old["roc_auc"] == pytest.approx(first.meta["metrics"]["propensity"]["roc_auc"], abs=1e-12)

    events = reg.index()["events"]
    decision = result["stages"]["segment"]["trained"]["decision"]
    s = settings.segment
    worse = (
        new["roc_auc"] < old["roc_auc"] - s.promote_tolerance
        or new["ece"] > old["ece"] + s.calibration_tolerance
    )
    if worse:
        assert reg.promoted().name == "v0001", decision
        assert decision.startswith("kept v0001")
        kept = [e for e in events if e["action"] == "kept"]
        assert len(kept) == 1 and kept[0]["version"] == "v0001"
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
def test_promotion_needs_beating_the_baseline_and_calibrating_no_worse(copy) -> None:
    """Candidates that rank as well as the promoted version but fail one of the other bars are kept
    out, each with the reason in the registry and the audit log; one that passes them all is promoted."""
    settings = copy
    reg = _registry(settings)
    current = reg.promoted()
    frames, _ = training.build_frames(settings, runner.plan(settings, None, None))
    valid = frames["validation"]
    m = current.meta["metrics"]
    base_auc, own = m["baseline"]["roc_auc"], m["propensity"]

    def candidate(**changes: float):
        meta = json.loads(json.dumps(current.meta))
        meta["metrics"]["propensity"].update(changes)
        fitted = current.load()
        return reg.register(fitted, current.load("validation"), meta, {})

    no_better = candidate(roc_auc=base_auc - 0.001)
    decision, outcome = training.promote(settings, reg, no_better, valid)
    assert (
        decision.startswith(f"kept {current.name}")
        and "does not beat the recency/frequency baseline" in decision
    )
    assert outcome["action"] == "model.kept" and reg.promoted().name == current.name

    miscalibrated = candidate(ece=own["ece"] + settings.segment.calibration_tolerance + 0.01)
    decision, _ = training.promote(settings, reg, miscalibrated, valid)
    assert decision.startswith(f"kept {current.name}") and "ECE" in decision
    assert reg.promoted().name == current.name

    fine = candidate()
    decision, outcome = training.promote(settings, reg, fine, valid)
    assert decision.startswith(f"promoted {fine.name}") and reg.promoted().name == fine.name
    notes = [e["note"] for e in reg.index()["events"] if e["action"] == "kept"]
    assert len(notes) == 2 and "baseline" in notes[0] and "ECE" in notes[1]


@pytest.mark.slow  # needs the golden project's pipeline run
def test_a_stale_model_is_retrained(copy) -> None:
    """The promoted version was trained for the published day; a day more than max_model_age_days
    later needs a new one, an earlier day within the limit does not."""
    settings = copy
    trained_for = date.fromisoformat(_registry(settings).promoted().meta["data"]["scoring_as_of"])
    limit = settings.segment.max_model_age_days

    def plan(day: date) -> runner.Plan:
        return runner.Plan(day, HORIZON, PUBLISHED_AS_OF)

    assert runner.needs_training(settings, plan(trained_for + timedelta(days=limit)), None) is False
    assert runner.needs_training(settings, plan(trained_for + timedelta(days=limit + 1)), None) is True
    assert runner.needs_training(settings, plan(trained_for), True) is True  # asked


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
    # where the customer stands, in the words that match the stored side and the average's probability
    words = {"below": "less likely to buy than", "above": "more likely to buy than", "close": "close to"}
    assert (
        f"{words[rec['vs_average']]} the average customer ({rec['average_probability']:.0%})" in human.stdout
    )
    for side, expected in words.items():
        others = scores[scores["vs_average"] == side]
        if len(others):
            shown = _invoke("explain", str(int(others["contact_id"].iloc[0])))
            assert expected in shown.stdout, (side, shown.stdout)

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
    # rescore: all, or the run keeps every customer's row of the golden run (their inputs are the same)
    config.write_text(config.read_text() + "segment:\n  explain_chunk_rows: 1000\n  rescore: all\n")
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
    assert result["stages"]["segment"]["rescored"]["customers"] == len(scores)
    counts = _frame(settings, "select run_id, count(*) n from ml.customer_scores group by run_id")
    assert sorted(counts["n"].tolist()) == [len(scores), len(scores)]  # golden run + this one, once each
