"""The leaf-table TreeSHAP gives LightGBM's own SHAP values, whatever the forest and the missing values."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from models.explain import explain
from models.treeshap import LeafTreeShap, supports


def _data(n: int = 3000, features: int = 6, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features))
    x[:, 1] = np.where(rng.random(n) < 0.3, 0.0, x[:, 1])  # many exact zeros
    x[rng.random(x.shape) < 0.12] = np.nan  # unknown values everywhere
    signal = np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) * np.nan_to_num(x[:, 2]) - np.isnan(x[:, 3])
    y = (signal + rng.normal(size=n) > 0).astype(float)
    return x, y


def _forest(x: np.ndarray, y: np.ndarray, rounds: int = 25, **params: object) -> lgb.Booster:
    base = {"objective": "binary", "verbose": -1, "num_threads": 2, "seed": 1, "deterministic": True}
    return lgb.train({**base, **params}, lgb.Dataset(x, y), num_boost_round=rounds)


@pytest.mark.parametrize(
    "params",
    [
        {"num_leaves": 8, "max_depth": 3},  # Clarion's default shape
        {"num_leaves": 31, "max_depth": 8, "min_data_in_leaf": 5},  # deep paths, features repeated
        {"num_leaves": 15, "zero_as_missing": True},  # missing_type Zero: zero and NaN go the default way
        {"num_leaves": 15, "use_missing": False},  # missing_type None: NaN is read as 0
        {"num_leaves": 4, "objective": "regression"},
    ],
    ids=["compact", "deep", "zero-as-missing", "no-missing", "regression"],
)
def test_leaf_tables_equal_lightgbm_pred_contrib(params: dict) -> None:
    x, y = _data()
    forest = _forest(x, y, **params)
    assert supports(forest)
    expected = forest.predict(x, pred_contrib=True)
    got = LeafTreeShap(forest, threads=2).contributions(x)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-9
    # and they add up to the margin
    assert np.abs(got.sum(axis=1) - forest.predict(x, raw_score=True)).max() <= 1e-9


def test_trees_without_a_split_only_move_the_base_value() -> None:
    x, y = _data(n=200)
    forest = _forest(x, y, rounds=5, num_leaves=4, min_data_in_leaf=150)  # too few rows to split
    got = LeafTreeShap(forest).contributions(x)
    assert np.abs(got - forest.predict(x, pred_contrib=True)).max() <= 1e-9
    assert np.all(got[:, :-1] == 0.0)
    assert got[:, -1] == pytest.approx(forest.predict(x, raw_score=True))


def test_one_row_no_row_and_one_thread() -> None:
    x, y = _data()
    forest = _forest(x, y, num_leaves=8, max_depth=3)
    tables = LeafTreeShap(forest, threads=1)
    assert np.abs(tables.contributions(x[:1]) - forest.predict(x[:1], pred_contrib=True)).max() <= 1e-9
    assert tables.contributions(x[:0]).shape == (0, x.shape[1] + 1)


def test_categorical_forests_fall_back_to_lightgbm() -> None:
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.integers(0, 6, 2000), rng.normal(size=2000)]).astype(float)
    y = (np.isin(x[:, 0], [1, 4]) ^ (x[:, 1] > 1)).astype(float)
    forest = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 8},
        lgb.Dataset(x, y, categorical_feature=[0]),
        num_boost_round=10,
    )
    assert not supports(forest)
    expl = explain(forest, x)
    assert expl.method == "lightgbm-pred-contrib"
    assert np.abs(expl.contributions - forest.predict(x, pred_contrib=True)[:, :2]).max() == 0.0
    with pytest.raises(ValueError, match="categorical"):
        explain(forest, x, method="leaf")


def test_explain_uses_the_leaf_tables_and_checks_additivity() -> None:
    x, y = _data()
    forest = _forest(x, y, num_leaves=8, max_depth=3)
    expl = explain(forest, x, chunk_rows=700)  # several chunks
    assert expl.method == "leaf-tables"
    assert np.abs(expl.contributions - forest.predict(x, pred_contrib=True)[:, :-1]).max() <= 1e-9
