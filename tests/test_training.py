"""The training recipe's parts by hand: folds, calibration, ranking figures, snapshot days, the
customer-base features, segment thresholds and the registry's promotion history. No pipeline run."""

from __future__ import annotations

import json
from datetime import date, timedelta

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from clarion.segment.scoring import POSITIONS, position, thresholds
from clarion.segment.snapshots import training_days
from clarion.segment.training import covered_days
from models import customer_base, metrics
from models.registry import Registry, RegistryError
from models.train import (
    Calibrator,
    Fitted,
    ModelParams,
    TrainingError,
    choose_calibration,
    customer_fold,
    fit,
)


# -- folds --------------------------------------------------------------------------------------
@pytest.mark.parametrize("step", [1, 5, 10, 1000])
def test_customer_folds_are_balanced_whatever_the_id_step(step: int) -> None:
    """`id % 5` put every customer of a CRM whose ids step by 5 or 10 into one fold; a hash does not."""
    ids = np.arange(1, 20_001) * step
    shares = np.bincount(customer_fold(ids), minlength=5) / len(ids)
    assert shares.min() > 0.18 and shares.max() < 0.22, shares
    assert np.array_equal(customer_fold(ids), customer_fold(ids.copy()))  # the same every time


def test_a_one_class_calibration_holdout_is_refused_with_what_to_do() -> None:
    margin = np.linspace(-1, 1, 200)
    with pytest.raises(TrainingError, match=r"0 buyers and 200 non-buyers.*segment.snapshots"):
        choose_calibration(margin, np.zeros(200), np.zeros(200), np.arange(200))


def test_calibration_folds_hold_both_classes_even_when_buyers_are_rare() -> None:
    """Six buyers among 400: a plain split could give a fold no buyer and Platt would crash."""
    rng = np.random.default_rng(3)
    y = np.zeros(400)
    y[rng.choice(400, 6, replace=False)] = 1
    margin = rng.normal(0, 1, 400) + 2 * y
    cal, how = choose_calibration(margin, np.zeros(400), y, np.arange(400) * 10)
    assert how["method"] in ("isotonic", "platt") and set(how["holdout_brier"]) == {"isotonic", "platt"}
    p = cal(margin)
    assert np.all((p >= 0) & (p <= 1))


def test_the_season_term_moves_probabilities_with_the_season() -> None:
    """Same customers, two seasons: the calibrator learns that a busier season lifts everyone."""
    rng = np.random.default_rng(5)
    n = 20_000
    margin = rng.normal(0, 1, n)
    season = np.log(np.where(np.arange(n) % 2 == 0, 0.7, 1.3))
    y = (rng.random(n) < 1 / (1 + np.exp(-(margin + 1.5 * season)))).astype(float)
    cal = Calibrator.fit("platt", margin, season, y)
    assert cal.params["c"] == pytest.approx(1.5, abs=0.15)
    busy, quiet = cal(np.zeros(1), np.log([1.3])), cal(np.zeros(1), np.log([0.7]))
    assert busy[0] > quiet[0] + 0.15
    iso = Calibrator.fit("isotonic", margin, season, y)
    assert iso.params["k"] == pytest.approx(1.5, abs=0.2)
    assert Calibrator.from_json(iso.to_json())(margin[:50], season[:50]) == pytest.approx(
        iso(margin[:50], season[:50])
    )


# -- ranking figures ----------------------------------------------------------------------------
def test_ranking_figures_come_from_the_margin_not_the_tied_probabilities() -> None:
    """Isotonic calibration maps many margins to one probability; AUC on those ties is lower than
    the model's own ranking. classification(score=margin) ranks on the margin, calibrates on p."""
    rng = np.random.default_rng(1)
    margin = rng.normal(0, 1, 5000)
    y = (rng.random(5000) < 1 / (1 + np.exp(-2 * margin))).astype(float)
    p = np.round(1 / (1 + np.exp(-2 * margin)), 1)  # a step function: ties, as isotonic makes
    on_p = metrics.classification(y, p)
    on_margin = metrics.classification(y, p, score=margin)
    assert on_margin["roc_auc"] > on_p["roc_auc"] + 0.002
    assert on_margin["brier"] == on_p["brier"] and on_margin["ece"] == on_p["ece"]
    assert on_margin["ranked_on"] == "margin"


# -- the recipe -----------------------------------------------------------------------------------
def stacked(days: int = 6, customers: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Customers on several days with two informative features, in the shape the recipe reads."""
    from models.features import FEATURES

    rng = np.random.default_rng(seed)
    rows = []
    for k in range(days):
        x = rng.normal(size=(customers, 2))
        p = 1 / (1 + np.exp(-(1.5 * x[:, 0] - 0.5)))
        frame = pd.DataFrame(np.nan, index=range(customers), columns=list(FEATURES))
        frame["recency_days"], frame["orders_365d"], frame["orders_lifetime"] = x[:, 0], x[:, 1], 1.0
        frame["contact_id"] = np.arange(customers) * 5
        frame["as_of"] = pd.Timestamp("2026-01-01") + pd.Timedelta(days=28 * k)
        frame["purchased_in_horizon"] = rng.random(customers) < p
        frame["spend_in_horizon_eur"] = frame["purchased_in_horizon"] * 50.0
        frame["shop_season_index"] = 1.0
        rows.append(frame)
    return pd.concat(rows, ignore_index=True)


def test_the_recipe_holds_out_a_fifth_of_customers_on_every_day_and_stops_early() -> None:
    frame = stacked()
    model = fit(frame, ModelParams(trees=200, threads=1))
    assert isinstance(model, Fitted)
    stop = model.calibration["early_stopping"]
    assert stop["used"] and 1 <= model.calibration["trees"] == stop["best_iteration"] < 200
    assert model.propensity.num_trees() == model.calibration["trees"]
    held = customer_fold(frame["contact_id"].to_numpy()) == 0
    assert model.calibration["holdout_rows"] == held.sum()
    # the forest never saw the held-out customers: refitting without them gives the same trees
    assert held.sum() > 0.15 * len(frame)


def test_one_label_value_is_refused() -> None:
    frame = stacked(days=1)
    frame["purchased_in_horizon"] = True
    with pytest.raises(TrainingError, match="purchased_in_horizon"):
        fit(frame, ModelParams(trees=10, threads=1))


# -- snapshot days ------------------------------------------------------------------------------
def test_training_days_have_complete_labels_and_validation_is_out_of_time() -> None:
    as_of, h = date(2026, 7, 1), 90
    days = training_days(as_of, h, 13, 28)
    assert days.production[0] == days.validation_day == as_of - timedelta(days=h)
    assert len(days.production) == len(days.validation_fit) == 13
    assert all(
        a - b == timedelta(days=28) for a, b in zip(days.production, days.production[1:], strict=False)
    )
    # every day's horizon ends by the scoring day; the validation fit's by the validation day
    assert all(d + timedelta(days=h) <= as_of for d in days.production)
    assert all(d + timedelta(days=h) <= days.validation_day for d in days.validation_fit)
    assert days.validation_fit[0] > days.validation_day - timedelta(days=h + 28)


def test_days_whose_windows_reach_before_an_event_history_are_left_out() -> None:
    days = training_days(date(2026, 7, 1), 90, 13, 28)
    since = {"email_events": date(2025, 7, 1), "support_tickets": None}
    kept = covered_days(days, since)
    assert all(d - timedelta(days=180) >= date(2025, 7, 1) for d in kept.production)
    assert 0 < len(kept.production) < len(days.production)
    # a history too short for any validation day keeps the newest, rather than nothing
    assert kept.validation_fit == days.validation_fit[:1]


# -- customer-base features ----------------------------------------------------------------------
def test_lifecycle_features_are_fitted_per_day_on_that_days_customers_only() -> None:
    rng = np.random.default_rng(4)
    frames = []
    for k, day in enumerate(("2026-01-01", "2026-02-01")):
        n = 800
        orders = rng.poisson(2 + k, n)
        first = rng.uniform(30, 700, n)
        frames.append(
            pd.DataFrame(
                {
                    "contact_id": np.arange(n),
                    "as_of": pd.Timestamp(day),
                    "has_ordered": orders > 0,
                    "purchase_days": orders,
                    "first_order_days": np.where(orders > 0, first, np.nan),
                    "recency_days": np.where(orders > 0, first * rng.uniform(0, 1, n), np.nan),
                    "avg_order_value_eur": np.where(orders > 0, rng.lognormal(4, 0.5, n), np.nan),
                }
            )
        )
    both, fits = customer_base.add_features(pd.concat(frames, ignore_index=True), 90)
    alone, _ = customer_base.add_features(frames[1], 90)
    second = both[both["as_of"] == pd.Timestamp("2026-02-01")].reset_index(drop=True)
    pd.testing.assert_frame_equal(second[list(customer_base.COLUMNS)], alone[list(customer_base.COLUMNS)])
    assert fits["2026-01-01"]["bg_nbd"] != fits["2026-02-01"]["bg_nbd"]
    never = both["purchase_days"] == 0
    assert both.loc[never, list(customer_base.COLUMNS)].isna().all().all()
    ok = ~never
    assert ((both.loc[ok, "p_alive"] > 0) & (both.loc[ok, "p_alive"] <= 1)).all()
    assert (both.loc[ok, "purchase_probability_bgnbd"] <= both.loc[ok, "p_alive"] + 1e-12).all()


# -- segment thresholds -------------------------------------------------------------------------
def test_relative_thresholds_follow_the_shops_purchase_rate() -> None:
    """A shop where 18% buy: fixed 0.6/0.3 called everyone with p <= 0.4 at risk (most of the shop);
    relative thresholds call at risk those below half the shop's rate, safe from 1.5 times it."""
    from clarion.config import Settings

    rng = np.random.default_rng(2)
    p = np.clip(rng.beta(2, 9, 10_000), 0, 1)
    rate = p.mean()
    settings = Settings()
    t = thresholds(settings, p)
    churn = 1 - p
    assert t.risk_high == pytest.approx(1 - 0.5 * rate) and t.risk_low == pytest.approx(1 - 1.5 * rate)
    assert (churn >= t.risk_high).mean() == pytest.approx((p <= 0.5 * rate).mean(), abs=1e-9)
    assert 0.05 < (churn >= t.risk_high).mean() < 0.35
    fixed = thresholds(
        settings.model_copy(
            update={"segment": settings.segment.model_copy(update={"risk_basis": "absolute"})}
        ),
        p,
    )
    assert (churn >= fixed.risk_high).mean() > 0.9  # what the fixed thresholds did to this shop


def test_close_to_average_is_within_the_band_only() -> None:
    where = position(np.array([-0.5, -0.05, 0.0, 0.09, 0.3]), 0.0, 0.1)
    assert [POSITIONS[i] for i in where] == ["below", "close", "close", "close", "above"]


# -- registry -------------------------------------------------------------------------------------
def tiny_fitted() -> Fitted:
    x = np.random.default_rng(0).normal(size=(200, 2))
    y = (x[:, 0] > 0).astype(float)
    forest = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(x, y), 2)
    value = lgb.train({"objective": "regression", "verbose": -1}, lgb.Dataset(x, y), 2)
    return Fitted(forest, Calibrator("platt", {"a": 1.0, "b": 0.0, "c": 0.0}), value)


def test_rollback_walks_back_through_the_promotion_history(tmp_path) -> None:
    """v1, v2, v3 promoted; rollback, rollback must reach v1 (it went back and forth v3 <-> v2)."""
    reg = Registry(tmp_path)
    model = tiny_fitted()
    names = [reg.register(model, model, {"features": [], "horizon_days": 90}, {}).name for _ in range(3)]
    for name in names:
        reg.promote(name)
    assert reg.rollback().name == names[1]
    assert reg.rollback().name == names[0]
    with pytest.raises(RegistryError, match="first version in the promotion history"):
        reg.rollback()
    assert reg.promoted().name == names[0]
    # promoting again pushes onto the history: a rollback returns to the version before it
    reg.promote(names[2])
    assert reg.rollback().name == names[0]
    assert reg.promotion_history() == [names[0]]


def test_a_version_flagged_retrain_required_is_never_promoted_again(tmp_path) -> None:
    """An erasure flags the versions that learnt from the person: neither `clarion models promote` nor
    a rollback may bring one back to score customers."""
    reg = Registry(tmp_path)
    model = tiny_fitted()
    first, second = (
        reg.register(model, model, {"features": [], "horizon_days": 90}, {}).name for _ in range(2)
    )
    reg.promote(first)
    reg.promote(second)
    path = tmp_path / reg.model / first / "meta.json"
    data = json.loads(path.read_text())
    data["retrain_required"] = {"reason": "erasure", "reference": "GDPR-7"}
    path.write_text(json.dumps(data))
    with pytest.raises(RegistryError, match=rf"{first} may not score.*erasure.*GDPR-7"):
        reg.rollback()
    with pytest.raises(RegistryError, match="clarion segment --retrain"):
        reg.promote(first)
    assert reg.promoted().name == second  # nothing changed
    assert reg.promotion_history() == [first, second]
