"""Exact path-dependent TreeSHAP for a LightGBM forest, a leaf at a time, in numpy.

The values are those of LightGBM's ``pred_contrib=True`` and shap's TreeExplainer (tests check
equality to 1e-9 on real models); the way of computing them is what differs. A leaf ``l`` with
value ``v`` adds ``v * prod_j w_j(S)`` to the tree's expected output given the features in ``S``,
where ``j`` runs over the features split on along the leaf's path, ``w_j = 1[x follows the path at
every split on j]`` for ``j`` in ``S`` and ``w_j = r_j`` (the share of training rows following
those splits) otherwise. Shapley values are linear in the game, so each leaf is a small game of
at most ``depth`` players. Which player "follows the path" is one bit per feature, so a leaf's
Shapley values for any row are one of ``2^k`` precomputed vectors (``k`` = distinct features on
its path): per row the work is a few comparisons and a table lookup per leaf, instead of the
``depth^2`` polynomial updates of the recursive algorithm.

This pays for the compact forests Clarion explains every customer with: at 60 trees of 8 leaves it
is several times faster than ``pred_contrib`` on 2 cores (bench/RESULTS.md). Forests with
categorical splits or more than ``MAX_PATH_FEATURES`` distinct features on a path are not taken:
`supports` says so, and the caller uses LightGBM's own.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np

MAX_PATH_FEATURES = 8
ZERO = 1e-35  # LightGBM's kZeroThreshold


@dataclass(frozen=True)
class _Split:
    feature: int
    threshold: float
    default_left: bool
    missing: str  # "None" | "Zero" | "NaN"


@dataclass(frozen=True)
class _Leaf:
    features: tuple[int, ...]  # distinct features on the path
    conditions: tuple[tuple[int, bool], ...]  # (split index in the tree, went left) along the path
    owner: tuple[int, ...]  # for each condition, which of `features` it constrains
    table: np.ndarray  # 2^k x k Shapley values, indexed by the bit mask of followed features
    expected: float  # the leaf's share of the tree's expected output
    columns: tuple[np.ndarray, ...] = ()  # the table's columns, each contiguous (what _phi gathers from)


@dataclass(frozen=True)
class _Tree:
    splits: tuple[_Split, ...]
    leaves: tuple[_Leaf, ...]


def supports(forest: lgb.Booster) -> bool:
    """True when every split is numerical and no path splits on more than MAX_PATH_FEATURES features."""
    try:
        _parse(forest.dump_model())
    except _UnsupportedError:
        return False
    return True


class _UnsupportedError(ValueError):
    pass


class LeafTreeShap:
    """Precomputed tables of one forest; `contributions(x)` has pred_contrib's layout."""

    def __init__(self, forest: lgb.Booster, threads: int = 2) -> None:
        model = forest.dump_model()
        self.n_features = int(model["max_feature_idx"]) + 1
        self.trees = _parse(model)
        self.base_value = float(sum(leaf.expected for tree in self.trees for leaf in tree.leaves))
        self.threads = max(1, threads)

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Rows x (features + 1): each feature's SHAP value, then the base value (as pred_contrib)."""
        x = np.asarray(x, dtype=np.float64)
        out = np.empty((x.shape[0], self.n_features + 1))
        parts = np.array_split(np.arange(x.shape[0]), self.threads) if x.shape[0] else []
        spans = [(int(p[0]), int(p[-1]) + 1) for p in parts if len(p)]

        def work(span: tuple[int, int]) -> None:
            lo, hi = span
            out[lo:hi, : self.n_features] = self._phi(x[lo:hi]).T

        if len(spans) > 1:
            with ThreadPoolExecutor(len(spans)) as pool:  # numpy releases the GIL in the vector work
                list(pool.map(work, spans))
        else:
            for span in spans:
                work(span)
        out[:, self.n_features] = self.base_value
        return out

    def _phi(self, x: np.ndarray) -> np.ndarray:
        phi = np.zeros((self.n_features, x.shape[0]))  # feature-major: each feature's row is contiguous
        columns = np.ascontiguousarray(x.T)
        for tree in self.trees:
            left = [_goes_left(columns[s.feature], s) for s in tree.splits]
            right = [~side for side in left]
            for leaf in tree.leaves:
                # bit b of a row's mask: the row follows the path at every split on feature b (one
                # byte per row: k <= MAX_PATH_FEATURES)
                follow: dict[int, np.ndarray] = {}
                for (split, went_left), owner in zip(leaf.conditions, leaf.owner, strict=True):
                    side = left[split] if went_left else right[split]
                    follow[owner] = side if owner not in follow else follow[owner] & side
                mask = np.zeros(x.shape[0], dtype=np.uint8)
                for b, bits in follow.items():
                    mask |= bits.view(np.uint8) << np.uint8(b)
                for b, feature in enumerate(leaf.features):
                    phi[feature] += leaf.columns[b][mask]  # one gather per feature, contiguous
        return phi


def _goes_left(column: np.ndarray, split: _Split) -> np.ndarray:
    """LightGBM's numerical decision for every row (tree.h NumericalDecision)."""
    nan = np.isnan(column)
    value = np.where(nan, 0.0, column) if split.missing != "NaN" else column
    left = value <= split.threshold
    if split.missing == "Zero":
        missing = np.abs(value) <= ZERO
    elif split.missing == "NaN":
        missing = nan
    else:
        return left
    return np.where(missing, split.default_left, left)


def _parse(model: dict[str, Any]) -> list[_Tree]:
    return [_tree(info["tree_structure"]) for info in model["tree_info"]]


def _tree(root: dict[str, Any]) -> _Tree:
    splits: list[_Split] = []
    leaves: list[_Leaf] = []

    def walk(node: dict[str, Any], path: list[tuple[int, bool, float]]) -> None:
        if "leaf_value" in node:
            leaves.append(_leaf(float(node["leaf_value"]), path, splits))
            return
        if node.get("decision_type") != "<=":
            raise _UnsupportedError(f"split type {node.get('decision_type')!r}")
        index = len(splits)
        splits.append(
            _Split(
                feature=int(node["split_feature"]),
                threshold=float(node["threshold"]),
                default_left=bool(node["default_left"]),
                missing=str(node["missing_type"]),
            )
        )
        total = float(node["internal_count"])
        for child, went_left in ((node["left_child"], True), (node["right_child"], False)):
            count = float(child["internal_count"] if "internal_count" in child else child["leaf_count"])
            walk(child, [*path, (index, went_left, count / total if total else 0.0)])

    walk(root, [])
    return _Tree(tuple(splits), tuple(leaves))


def _leaf(value: float, path: list[tuple[int, bool, float]], splits: list[_Split]) -> _Leaf:
    features = tuple(dict.fromkeys(splits[i].feature for i, _, _ in path))
    k = len(features)
    if k > MAX_PATH_FEATURES:
        raise _UnsupportedError(f"{k} features on one path")
    share = dict.fromkeys(features, 1.0)  # r_j: the training rows' share following j's splits
    for i, _, fraction in path:
        share[splits[i].feature] *= fraction
    r = np.array([share[f] for f in features])
    table = _table(value, r)
    return _Leaf(
        features=features,
        conditions=tuple((i, went_left) for i, went_left, _ in path),
        owner=tuple(features.index(splits[i].feature) for i, _, _ in path),
        table=table,
        expected=value * float(np.prod(r)),
        columns=tuple(np.ascontiguousarray(table[:, b]) for b in range(len(features))),
    )


def _table(value: float, r: np.ndarray) -> np.ndarray:
    """Shapley values of the game g(S) = value * prod_{j in S} a_j * prod_{j not in S} r_j for every
    a in {0,1}^k (bit b of the row index is a_b).

    For player j: phi_j = value * (a_j - r_j) * sum_s w(s) c_s, where c_s is the coefficient of z^s
    in prod_{i != j} (a_i z + r_i) and w(s) = s! (k - s - 1)! / k!: k - 1 polynomial products,
    done for all 2^k masks at once.
    """
    k = len(r)
    weight = np.array([math.factorial(s) * math.factorial(k - s - 1) / math.factorial(k) for s in range(k)])
    a = ((np.arange(1 << k)[:, None] >> np.arange(k)) & 1).astype(np.float64)  # 2^k x k
    table = np.empty((1 << k, k))
    for j in range(k):
        coeffs = np.zeros((1 << k, k))
        coeffs[:, 0] = 1.0
        for i in range(k):
            if i != j:
                shifted = np.zeros_like(coeffs)
                shifted[:, 1:] = coeffs[:, :-1] * a[:, i : i + 1]
                coeffs = coeffs * r[i] + shifted
        table[:, j] = value * (a[:, j] - r[j]) * (coeffs @ weight)
    return table
