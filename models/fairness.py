"""Fairness figures per group of a protected attribute, and the findings a gate acts on.

Pure functions over arrays (no warehouse, no settings object): the caller passes the groups, who
was selected (or the model's outcome, probability and decision) and the `Limits`.

* Selection: per group, the share selected (into a segment, an audience, an action) and the
  disparate-impact ratio: the group's rate over the highest rate of any judged group (the "four
  fifths" rule flags a ratio under 0.8).
* Model: per group, the observed and predicted rates, the expected calibration error (ECE) and the
  true/false positive rates of the model's decision, with each group's gap to the best group
  (lowest ECE, highest TPR, lowest FPR).

Groups with fewer than ``min_group`` members are *suppressed*: counted as suppressed, their figures
neither shown nor judged (small cells identify people and swing by chance). Members without a value
(``unknown``) are shown but not judged: a missing attribute says nothing about a protected group.
A rate difference becomes a finding only when it is also unlikely by chance (two-sided
two-proportion z-test against the reference group, p < ``alpha``, 0.05): a tiny audience of three
customers from one group is not evidence against the others; an ECE gap counts when the group's own
calibration fails a Hosmer-Lemeshow test at the same level. The level holds for all the comparisons of
one scope and attribute together (Holm-Bonferroni, :func:`holm`). A finding's id is stable:
``<scope>:<attribute>:<metric>:<group>``, so a sign-off can name it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import chi2

from models.metrics import expected_calibration_error

UNKNOWN = "unknown"
SEVERITIES = ("warn", "fail")
METRICS = {
    "di": "disparate-impact ratio",
    "ece_gap": "calibration error (ECE) gap",
    "tpr_gap": "true positive rate gap",
    "fpr_gap": "false positive rate gap",
}


@dataclass(frozen=True)
class Limits:
    """The gate's limits (settings.fairness): a ratio below ``di_*``, a gap above ``*_gap_*``."""

    min_group: int = 50
    di_warn: float = 0.8
    di_fail: float = 0.6
    ece_gap_warn: float = 0.05
    ece_gap_fail: float = 0.10
    rate_gap_warn: float = 0.10
    rate_gap_fail: float = 0.20
    alpha: float = 0.05  # a rate difference counts only when a z-test finds it unlikely by chance


@dataclass(frozen=True)
class Finding:
    """A figure beyond a limit: which scope (model version, segment, audience), attribute, metric
    and group, its value, the limit it crossed, and the group it was compared with."""

    id: str
    scope: str
    attribute: str
    metric: str
    group: str
    value: float
    limit: float
    severity: str
    reference: str
    p_value: float | None = None  # z-test against the reference; Hosmer-Lemeshow for an ECE gap

    def text(self) -> str:
        side = "below" if self.metric == "di" else "above"
        return (
            f"{self.severity.upper()} {self.id}: {METRICS[self.metric]} of {self.attribute} {self.group} is "
            f"{self.value:.3f}, {side} the {self.severity} limit {self.limit:g} "
            f"(compared with {self.reference}"
            + (f", p = {self.p_value:.2g})" if self.p_value is not None else ")")
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def labels(values: Sequence[Any] | pd.Series | np.ndarray) -> np.ndarray:
    """The group of each member as text; missing values become ``unknown``."""
    s = pd.Series(values, dtype="object")
    return s.where(s.notna(), UNKNOWN).astype(str).to_numpy()


def p_value(k1: float, n1: int, k2: float, n2: int) -> float:
    """Two-sided two-proportion z-test (pooled): how likely a difference at least this large is
    between two groups selected at the same rate. Tiny audiences differ by chance; this keeps a
    handful of customers from becoming a finding."""
    if not n1 or not n2:
        return 1.0
    pooled = (k1 + k2) / (n1 + n2)
    if pooled <= 0 or pooled >= 1:
        return 1.0
    z = abs(k1 / n1 - k2 / n2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return math.erfc(z / math.sqrt(2))


def calibration_p_value(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Hosmer-Lemeshow test on held-out customers: how likely observed counts this far from the
    predicted ones per probability bin (the ECE's bins) are if the group is well calibrated
    (chi-squared, one degree of freedom per non-empty bin). ECE is biased upwards in small groups;
    this keeps noise from becoming a calibration finding."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    stat, dof = 0.0, 0
    for b in range(bins):
        mask = which == b
        n, expected = int(mask.sum()), float(p[mask].sum())
        var = expected * (1 - expected / n) if n else 0.0
        if var > 0:
            stat += (float(y[mask].sum()) - expected) ** 2 / var
            dof += 1
    return float(chi2.sf(stat, dof)) if dof else 1.0


def _judged(group: str, n: int, limits: Limits) -> bool:
    return group != UNKNOWN and n >= limits.min_group


def _per_group(
    groups: Sequence[Any] | np.ndarray, limits: Limits, figures: Callable[[np.ndarray], dict[str, Any]]
) -> list[dict[str, Any]]:
    """One row per group in name order: suppressed ones bare, the others with `figures(mask)`."""
    g = labels(groups)
    masks = {name: g == name for name in sorted(set(g))}
    return [_row(name, int(m.sum()), limits, lambda m=m: figures(m)) for name, m in masks.items()]


def _row(name: str, n: int, limits: Limits, figures: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A group of n members: bare when suppressed (under limits.min_group), else with `figures()`."""
    if n < limits.min_group:
        return {"group": name, "suppressed": True, "judged": False}
    return {
        "group": name,
        "suppressed": False,
        "judged": _judged(name, n, limits),
        "customers": n,
        **figures(),
    }


def selection(
    groups: Sequence[Any] | np.ndarray, selected: Sequence[bool] | np.ndarray, limits: Limits
) -> list[dict[str, Any]]:
    """Per group: members, selected, selection rate and disparate-impact ratio (None when suppressed).
    The reference is the judged group selected most often."""
    sel = np.asarray(selected, dtype=bool)
    g = labels(groups)
    counts = {name: (int(mask.sum()), int(sel[mask].sum())) for name in set(g) for mask in [g == name]}
    return selection_counts(counts, limits)


def selection_counts(counts: Mapping[str, tuple[int, int]], limits: Limits) -> list[dict[str, Any]]:
    """``selection`` from each group's (members, selected) counts, as a warehouse can count them
    (group labels as ``labels`` gives them)."""
    rows = [
        _row(name, n, limits, lambda n=n, k=k: {"selected": k, "rate": k / n})
        for name, (n, k) in sorted(counts.items())
    ]
    judged = [r for r in rows if r["judged"]]
    top = max(judged, key=lambda r: r["rate"], default=None)
    for r in rows:
        if r["suppressed"]:
            continue
        r["reference"] = top["group"] if top else None
        r["di"] = r["rate"] / top["rate"] if top and top["rate"] > 0 else None
    return rows


def selection_findings(
    rows: list[dict[str, Any]], scope: str, attribute: str, limits: Limits
) -> list[Finding]:
    """A warn or fail finding for each judged group whose disparate-impact ratio is under a limit
    and whose rate differs from the reference group's beyond chance: a z-test, p under limits.alpha
    after Holm's correction over the groups compared (several groups give several chances to find a
    difference that is only noise)."""
    by_name = {r["group"]: r for r in rows}
    tests = []
    for r in rows:
        if not r["judged"] or r.get("di") is None or r["group"] == r["reference"]:
            continue
        ref = by_name[r["reference"]]
        tests.append((r, p_value(r["selected"], r["customers"], ref["selected"], ref["customers"])))
    out = []
    for (r, p), significant in zip(tests, holm([p for _, p in tests], limits.alpha), strict=True):
        severity = "fail" if r["di"] < limits.di_fail else "warn" if r["di"] < limits.di_warn else None
        if severity and significant:
            limit = limits.di_fail if severity == "fail" else limits.di_warn
            out.append(
                _finding(scope, attribute, "di", r["group"], r["di"], limit, severity, r["reference"], p)
            )
    return out


def holm(p_values: Sequence[float], alpha: float) -> list[bool]:
    """Which of the tests reject at family-wise error rate ``alpha`` (Holm-Bonferroni): the k-th
    smallest p must be under alpha / (m - k), and every smaller one under its own bound."""
    m = len(p_values)
    if alpha >= 1:  # fairness.significance: 1 judges every gap, by chance or not
        return [True] * m
    order = sorted(range(m), key=lambda i: p_values[i])
    out = [False] * m
    for k, i in enumerate(order):
        if not p_values[i] < alpha / (m - k):
            break
        out[i] = True
    return out


def _rate(flags: np.ndarray) -> float | None:
    return float(flags.mean()) if len(flags) else None


def model(
    groups: Sequence[Any] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    p: Sequence[float] | np.ndarray,
    decided: Sequence[bool] | np.ndarray,
    limits: Limits,
) -> list[dict[str, Any]]:
    """Per group: customers, observed rate of the outcome ``y``, mean predicted probability ``p``,
    ECE, and the true/false positive rates of the decision ``decided`` (which predicts ``y``); then
    each judged group's gap to the best judged group (lowest ECE, highest TPR, lowest FPR), and the
    disparate-impact ratio of the share decided (over the judged group decided most often)."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    d = np.asarray(decided, dtype=bool)

    def figures(mask: np.ndarray) -> dict[str, Any]:
        yg, pg, dg = y[mask], p[mask], d[mask]
        return {
            "observed_rate": float(yg.mean()),
            "mean_predicted": float(pg.mean()),
            "ece": expected_calibration_error(yg, pg),
            "calibration_p": calibration_p_value(yg, pg),
            "decided_rate": float(dg.mean()),
            "decided": int(dg.sum()),
            "positives": int((yg == 1).sum()),
            "tpr": _rate(dg[yg == 1]),
            "fpr": _rate(dg[yg == 0]),
        }

    rows = _per_group(groups, limits, figures)
    judged = [r for r in rows if r["judged"]]
    best = {
        "ece": min((r["ece"] for r in judged), default=None),
        "tpr": max((r["tpr"] for r in judged if r["tpr"] is not None), default=None),
        "fpr": min((r["fpr"] for r in judged if r["fpr"] is not None), default=None),
    }
    ref = {
        k: next((r["group"] for r in judged if r[k] is not None and r[k] == v), None) for k, v in best.items()
    }
    top = max(judged, key=lambda r: r["decided_rate"], default=None)
    for r in rows:
        if r["suppressed"]:
            continue
        r["di"] = r["decided_rate"] / top["decided_rate"] if top and top["decided_rate"] > 0 else None
        r["di_reference"] = top["group"] if top else None
        for k in ("ece", "tpr", "fpr"):
            r[f"{k}_gap"] = abs(r[k] - best[k]) if r[k] is not None and best[k] is not None else None
            r[f"{k}_reference"] = ref[k]
    return rows


def model_findings(rows: list[dict[str, Any]], scope: str, attribute: str, limits: Limits) -> list[Finding]:
    """A warn or fail finding for each judged group whose ECE, TPR or FPR gap is over a limit and
    beyond chance (p < limits.alpha, Holm-corrected): a z-test against the reference group, and for
    a calibration gap, a Hosmer-Lemeshow test of the group's own calibration. The share flagged (and
    its DI) is shown, not judged: groups' churn rates differ, so equal shares flagged would mean unequal
    errors; TPR and FPR compare like with like (equalised odds)."""
    out: list[Finding] = []
    by_name = {r["group"]: r for r in rows}

    def counts(r: dict[str, Any], metric: str) -> tuple[float, int]:
        n = r["positives"] if metric == "tpr" else r["customers"] - r["positives"]
        return (r[metric] or 0.0) * n, n

    tests = []  # every comparison made, whether or not its gap is over a limit: the family Holm corrects
    for r in rows:
        if not r["judged"]:
            continue
        for metric, warn, fail in (
            ("ece", limits.ece_gap_warn, limits.ece_gap_fail),
            ("tpr", limits.rate_gap_warn, limits.rate_gap_fail),
            ("fpr", limits.rate_gap_warn, limits.rate_gap_fail),
        ):
            gap = r.get(f"{metric}_gap")
            ref = r.get(f"{metric}_reference")
            if gap is None or ref is None or ref == r["group"]:
                continue
            if metric == "ece":
                p = r["calibration_p"]  # the group itself is miscalibrated beyond chance
                p = 1.0 if p is None else p
            else:
                p = p_value(*counts(r, metric), *counts(by_name[ref], metric))
            severity = "fail" if gap > fail else "warn" if gap > warn else None
            tests.append((r["group"], metric, gap, ref, p, severity, fail if severity == "fail" else warn))
    for (group, metric, gap, ref, p, severity, limit), significant in zip(
        tests, holm([t[4] for t in tests], limits.alpha), strict=True
    ):
        if severity and significant:
            out.append(_finding(scope, attribute, f"{metric}_gap", group, gap, limit, severity, ref, p))
    return out


def _finding(
    scope: str,
    attribute: str,
    metric: str,
    group: str,
    value: float,
    limit: float,
    severity: str,
    ref: str,
    p: float | None = None,
) -> Finding:
    return Finding(
        id=f"{scope}:{attribute}:{metric}:{group}",
        scope=scope,
        attribute=attribute,
        metric=metric,
        group=group,
        value=float(value),
        limit=float(limit),
        severity=severity,
        reference=str(ref),
        p_value=None if p is None else float(p),
    )


def worst(findings: Sequence[Finding | dict[str, Any]]) -> str | None:
    """The most severe finding's severity ("fail", "warn") or None when there is none."""
    seen = {f["severity"] if isinstance(f, dict) else f.severity for f in findings}
    return "fail" if "fail" in seen else "warn" if "warn" in seen else None


def _f(v: Any, fmt: str = ".3f") -> str:
    return "-" if v is None else format(v, fmt)


def card_section(fair: dict[str, Any] | list[dict[str, Any]] | None) -> str:
    """The model card's fairness section (markdown). Versions registered before the fairness
    library kept a plain list of age-band rows; those are shown as they were."""
    head = (
        "## Fairness\n\nThe protected attributes are never model inputs; these figures show how the model "
        "behaves across them on the validation customers.\n\n"
    )
    if isinstance(fair, list) or not fair:
        if not fair:
            return head + "No protected attribute was present in the data: no fairness figures.\n"
        rows = [
            "| age band | customers | observed purchase rate | mean predicted | ROC AUC |",
            "|---|---:|---:|---:|---:|",
            *(
                f"| {f['group']} | {f['customers']:,} | {f['observed_rate']:.3f} | {f['mean_predicted']:.3f} "
                f"| {_f(f.get('roc_auc'), '.4f')} |"
                for f in fair
            ),
        ]
        return head + "\n".join(rows) + "\n"
    lim = fair["limits"]
    parts = [
        head + f"Decision judged: {fair['decision']}; flagged is the share it flags, DI that share over "
        "the highest group's (shown, not judged: churn rates differ by group; TPR and FPR are judged). "
        f"Groups with fewer than {lim['min_group']} customers are suppressed (not shown, not judged); "
        "customers without a value are shown, not judged. Limits: "
        f"ECE gap warn > {lim['ece_gap_warn']:g}, fail > {lim['ece_gap_fail']:g}; TPR/FPR gap warn > "
        f"{lim['rate_gap_warn']:g}, fail > {lim['rate_gap_fail']:g}; a gap counts only beyond chance "
        f"(two-proportion z-test; for ECE a Hosmer-Lemeshow test; p < {lim.get('alpha', 0.05):g}, "
        "Holm-corrected over the comparisons made).\n"
    ]
    for a in fair["attributes"]:
        rows = [
            f"\n**{a['attribute']}**\n",
            "| group | customers | observed churn | mean predicted churn | ECE | ECE gap | TPR | TPR gap "
            "| FPR | FPR gap | flagged | DI |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in a["groups"]:
            if r["suppressed"]:
                rows.append(f"| {r['group']} | suppressed | | | | | | | | | | |")
                continue
            rows.append(
                f"| {r['group']}{'' if r['judged'] else ' (not judged)'} | {r['customers']:,} "
                f"| {r['observed_rate']:.3f} | {r['mean_predicted']:.3f} | {r['ece']:.3f} "
                f"| {_f(r['ece_gap'])} "
                f"| {_f(r['tpr'])} | {_f(r['tpr_gap'])} | {_f(r['fpr'])} | {_f(r['fpr_gap'])} "
                f"| {_f(r['decided_rate'])} | {_f(r['di'])} |"
            )
        parts.append("\n".join(rows) + "\n")
    findings = fair.get("findings") or []
    parts.append(
        "\n**Findings.** "
        + (
            "none: every judged group is within the limits.\n"
            if not findings
            else f"{len(findings)} ({worst(findings)} at worst); a fail finding keeps the version from "
            "being promoted automatically.\n\n"
            + "\n".join(f"- {Finding(**f).text()}" for f in findings)
            + "\n"
        )
    )
    return "".join(parts)
