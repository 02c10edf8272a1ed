"""Classification and calibration metrics, written out so each one is plain to check."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Mean |observed rate - mean predicted| over equal-width probability bins, weighted by size."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.sum() * abs(y[mask].mean() - p[mask].mean())
    return float(total / len(y))


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Per probability bin: customers, mean predicted, observed rate (the calibration plot's points)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        mask = which == b
        if mask.any():
            out.append(
                {
                    "bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}",
                    "customers": int(mask.sum()),
                    "predicted": float(p[mask].mean()),
                    "observed": float(y[mask].mean()),
                }
            )
    return out


def lift_at(y: np.ndarray, score: np.ndarray, share: float) -> tuple[float, float]:
    """(lift, capture) of the top `share` of customers by score: how much richer in positives the
    top is than the whole, and which share of all positives it holds."""
    n = max(1, round(len(y) * share))
    top = np.argsort(-score, kind="stable")[:n]
    base = y.mean()
    rate = y[top].mean()
    return (float(rate / base) if base > 0 else float("nan"), float(y[top].sum() / max(1, y.sum())))


def classification(y: np.ndarray, p: np.ndarray, score: np.ndarray | None = None) -> dict[str, Any]:
    """Ranking figures (ROC AUC, PR AUC, lift, capture) on `score` (the model's raw margin, which a
    monotone calibration would only blur with ties), calibration figures (Brier, ECE, mean
    predicted) on the probabilities `p`. Without `score`, both on `p`."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    rank = p if score is None else np.asarray(score, dtype=float)
    both = 0 < y.sum() < len(y)
    lift10, capture10 = lift_at(y, rank, 0.1)
    lift20, capture20 = lift_at(y, rank, 0.2)
    return {
        "customers": len(y),
        "positive_rate": float(y.mean()),
        "mean_predicted": float(p.mean()),
        "ranked_on": "probability" if score is None else "margin",
        "roc_auc": float(roc_auc_score(y, rank)) if both else None,
        "pr_auc": float(average_precision_score(y, rank)) if both else None,
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p),
        "lift_top10": lift10,
        "capture_top10": capture10,
        "lift_top20": lift20,
        "capture_top20": capture20,
    }


def regression(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    y = np.asarray(y, dtype=float)
    pred = np.asarray(pred, dtype=float)
    _, capture10 = lift_at(y, pred, 0.1)
    return {
        "mae": float(np.abs(y - pred).mean()),
        "total_actual": float(y.sum()),
        "total_predicted": float(pred.sum()),
        "spend_capture_top10": capture10,
    }
