"""models.fairness as a specification: planted bias is found, small groups are suppressed, and every
figure agrees with an independent computation written here (pandas group-bys and plain loops)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from scipy.stats import chi2, chi2_contingency

from clarion.config import load_settings
from clarion.config.privacy import FairnessSettings
from clarion.fairness import limits
from models import fairness as lib
from models.card import render
from models.features import FEATURES


def _p(k1: float, n1: int, k2: float, n2: int) -> float:
    """The chance of so large a difference between two equal rates: a 2x2 chi-squared test without
    continuity correction (the square of the pooled two-proportion z statistic)."""
    k1, k2 = round(k1), round(k2)
    return chi2_contingency([[k1, n1 - k1], [k2, n2 - k2]], correction=False)[1]


LIMITS = (
    lib.Limits()
)  # the settings' defaults: min_group 50, DI warn 0.8 / fail 0.6, gaps 0.05/0.10, 0.10/0.20


def _planted_selection(seed: int = 3) -> pd.DataFrame:
    """Four groups of 400 with planted selection counts (in shuffled order), a tiny group selected
    most, and customers without a value."""
    rng = np.random.default_rng(seed)
    selected = {"A": 120, "B": 112, "C": 84, "D": 60}  # rates .30, .28, .21 (0.7 of A), .15 (half of A)
    parts = [
        pd.DataFrame({"group": g, "selected": rng.permutation(np.arange(400) < k)})
        for g, k in selected.items()
    ]
    parts.append(pd.DataFrame({"group": ["E"] * 12, "selected": [True] * 12}))  # small, selected most
    parts.append(pd.DataFrame({"group": [None] * 300, "selected": rng.permutation(np.arange(300) < 15)}))
    return pd.concat(parts, ignore_index=True).sample(frac=1.0, random_state=seed)


def test_a_group_selected_at_half_the_rate_is_a_fail_and_one_at_seven_tenths_a_warn() -> None:
    frame = _planted_selection()
    rows = {r["group"]: r for r in lib.selection(frame["group"], frame["selected"], LIMITS)}
    # independent: rates by group-by, the reference is the highest rate among judged (named, big) groups
    named = frame.dropna(subset=["group"])
    counts = named.groupby("group")["selected"].agg(["size", "sum", "mean"])
    big = counts[counts["size"] >= 50]
    top = big["mean"].max()
    assert big["mean"].idxmax() == "A"
    for g in ("A", "B", "C", "D"):
        assert rows[g]["customers"] == counts.loc[g, "size"] and rows[g]["selected"] == counts.loc[g, "sum"]
        assert rows[g]["rate"] == pytest.approx(counts.loc[g, "mean"])
        assert rows[g]["di"] == pytest.approx(counts.loc[g, "mean"] / top)
        assert rows[g]["reference"] == "A"
    found = {
        f.id: f
        for f in lib.selection_findings(list(rows.values()), "audience:r1:winback:at_risk", "age", LIMITS)
    }
    expected = {}
    for g in ("A", "B", "C", "D"):
        di = counts.loc[g, "mean"] / top
        if _p(counts.loc[g, "sum"], 400, counts.loc["A", "sum"], 400) >= 0.05:
            continue
        if di < 0.6:
            expected[f"audience:r1:winback:at_risk:age:di:{g}"] = "fail"
        elif di < 0.8:
            expected[f"audience:r1:winback:at_risk:age:di:{g}"] = "warn"
    assert expected == {
        "audience:r1:winback:at_risk:age:di:D": "fail",
        "audience:r1:winback:at_risk:age:di:C": "warn",
    }  # the planted rates land where they were planted
    assert {i: f.severity for i, f in found.items()} == expected
    d = found["audience:r1:winback:at_risk:age:di:D"]
    assert (d.limit, d.reference, d.metric) == (0.6, "A", "di") and "below the fail limit 0.6" in d.text()
    assert d.p_value == pytest.approx(_p(60, 400, 120, 400))
    assert lib.worst(list(found.values())) == "fail"


def test_small_groups_are_suppressed_and_unknowns_shown_but_not_judged() -> None:
    frame = _planted_selection()
    rows = {r["group"]: r for r in lib.selection(frame["group"], frame["selected"], LIMITS)}
    # E: 12 customers, every one selected: suppressed, so neither shown, judged, nor the reference
    assert rows["E"] == {"group": "E", "suppressed": True, "judged": False}
    unknown = rows[lib.UNKNOWN]
    assert unknown["customers"] == int(frame["group"].isna().sum()) and not unknown["judged"]
    assert unknown["di"] < 0.6  # far below A, yet no finding: a missing value is not a protected group
    ids = [f.id for f in lib.selection_findings(list(rows.values()), "s", "age", LIMITS)]
    assert not [i for i in ids if i.endswith((":E", ":unknown"))]
    # with min_group 10, E is judged and becomes the reference (rate 1.0): every other group fails
    low = lib.Limits(min_group=10)
    rows10 = {r["group"]: r for r in lib.selection(frame["group"], frame["selected"], low)}
    assert rows10["E"]["judged"] and rows10["A"]["reference"] == "E"
    fails = {
        f.group
        for f in lib.selection_findings(list(rows10.values()), "s", "age", low)
        if f.severity == "fail"
    }
    assert fails == {"A", "B", "C", "D"}


def _ece(y: np.ndarray, p: np.ndarray) -> float:
    """ECE written out again: ten equal-width bins, [0, .1), ..., [.9, 1], size-weighted |rate - mean p|."""
    total = 0.0
    for b in range(10):
        lo, hi = b / 10, (b + 1) / 10
        inside = (p >= lo) & ((p < hi) if b < 9 else (p <= hi))
        if inside.any():
            total += inside.sum() * abs(y[inside].mean() - p[inside].mean())
    return total / len(y)


def _hosmer_lemeshow(y: np.ndarray, p: np.ndarray) -> float:
    """Hosmer-Lemeshow again, on the ECE's ten bins: sum of (observed - expected)^2 / variance,
    chi-squared with one degree of freedom per non-empty bin (held-out data)."""
    frame = pd.DataFrame({"y": y, "p": p, "bin": np.minimum((p * 10).astype(int), 9)})
    per = frame.groupby("bin").agg(n=("y", "size"), o=("y", "sum"), e=("p", "sum"))
    per = per[per["e"] * (1 - per["e"] / per["n"]) > 0]
    stat = ((per["o"] - per["e"]) ** 2 / (per["e"] * (1 - per["e"] / per["n"]))).sum()
    return chi2.sf(stat, len(per))


def _model_frame(seed: int = 11) -> pd.DataFrame:
    """Three groups: A calibrated and decided well; B whose probabilities run 0.2 high (miscalibrated);
    C for whom the decision catches only half as many positives (a TPR gap); plus a tiny group."""
    rng = np.random.default_rng(seed)
    parts = []
    for g, n in (("A", 600), ("B", 500), ("C", 500), ("tiny", 20)):
        p = rng.uniform(0.05, 0.75, n)
        y = (rng.random(n) < p).astype(float)
        decided = p > 0.5
        if g == "B":
            p = np.clip(p + 0.2, 0, 1)
        if g == "C":
            decided = decided & (rng.random(n) < 0.5)
        parts.append(pd.DataFrame({"group": g, "y": y, "p": p, "decided": decided}))
    return pd.concat(parts, ignore_index=True)


def test_model_figures_match_an_independent_ece_tpr_and_fpr_and_planted_gaps_are_found() -> None:
    frame = _model_frame()
    rows = {
        r["group"]: r for r in lib.model(frame["group"], frame["y"], frame["p"], frame["decided"], LIMITS)
    }
    assert rows["tiny"] == {"group": "tiny", "suppressed": True, "judged": False}
    mine = {}
    for g, part in frame.groupby("group"):
        if len(part) < 50:
            continue
        y, p, d = part["y"].to_numpy(), part["p"].to_numpy(), part["decided"].to_numpy()
        mine[g] = {
            "ece": _ece(y, p),
            "tpr": (d & (y == 1)).sum() / (y == 1).sum(),
            "fpr": (d & (y == 0)).sum() / (y == 0).sum(),
            "decided": d.mean(),
            "hl": _hosmer_lemeshow(y, p),
            "tpr_counts": ((d & (y == 1)).sum(), int((y == 1).sum())),
            "fpr_counts": ((d & (y == 0)).sum(), int((y == 0).sum())),
        }
        assert rows[g]["customers"] == len(part)
        assert rows[g]["observed_rate"] == pytest.approx(y.mean())
        assert rows[g]["mean_predicted"] == pytest.approx(p.mean())
        for k in ("ece", "tpr", "fpr"):
            assert rows[g][k] == pytest.approx(mine[g][k]), (g, k)
    best = {
        "ece": min(m["ece"] for m in mine.values()),
        "tpr": max(m["tpr"] for m in mine.values()),
        "fpr": min(m["fpr"] for m in mine.values()),
    }
    for g in mine:
        for k in ("ece", "tpr", "fpr"):
            assert rows[g][f"{k}_gap"] == pytest.approx(abs(mine[g][k] - best[k]))
    assert mine["B"]["ece"] - best["ece"] > 0.10  # the planted miscalibration is a fail
    assert rows["B"]["calibration_p"] == pytest.approx(mine["B"]["hl"]) and mine["B"]["hl"] < 1e-6
    assert rows["A"]["calibration_p"] == pytest.approx(mine["A"]["hl"])
    assert best["tpr"] - mine["C"]["tpr"] > 0.20  # the planted missed positives are a fail
    found = {f.id: f for f in lib.model_findings(list(rows.values()), "model:v0007", "age_band", LIMITS)}
    assert found["model:v0007:age_band:ece_gap:B"].severity == "fail"
    assert found["model:v0007:age_band:tpr_gap:C"].severity == "fail"
    # exactly the gaps over a limit are findings, each with the severity of the limit it crossed
    expected = {}
    for g in mine:
        for k, (warn, fail) in {"ece": (0.05, 0.10), "tpr": (0.10, 0.20), "fpr": (0.10, 0.20)}.items():
            gap = abs(mine[g][k] - best[k])
            ref = next(h for h in mine if mine[h][k] == best[k])
            chance = mine[g]["hl"] if k == "ece" else _p(*mine[g][f"{k}_counts"], *mine[ref][f"{k}_counts"])
            if chance >= 0.05:
                continue
            if gap > warn:
                expected[f"model:v0007:age_band:{k}_gap:{g}"] = "fail" if gap > fail else "warn"
    most = max(m["decided"] for m in mine.values())
    for g in mine:  # the share flagged and its ratio are shown, not judged
        assert rows[g]["di"] == pytest.approx(mine[g]["decided"] / most)
    assert mine["C"]["decided"] / most < 0.6 and not [i for i in found if ":di:" in i]
    assert {i: f.severity for i, f in found.items()} == expected
    # stable: the same figures give the same ids
    again = lib.model_findings(list(rows.values()), "model:v0007", "age_band", LIMITS)
    assert [f.id for f in again] == list(found)


def test_limits_come_from_settings_fairness() -> None:
    settings = load_settings(
        None, env={"CLARION_FAIRNESS__MIN_GROUP": "7", "CLARION_FAIRNESS__RATE_GAP_FAIL": "0.3"}
    )
    lim = limits(settings)
    assert (
        lim.min_group == 7
        and lim.rate_gap_fail == 0.3
        and lim.di_fail == settings.fairness.disparate_impact_fail
    )


def test_a_protected_attribute_can_never_be_a_model_input() -> None:
    """Every configured protected attribute (the defaults and any a user names) is outside the
    features the model reads; naming a feature as protected is refused when the settings load."""
    for attribute in FairnessSettings().attributes:
        assert attribute not in FEATURES
    for feature in ("recency_days", FEATURES[-1]):
        with pytest.raises(ValidationError, match="model inputs"):
            FairnessSettings(attributes=["age_band", feature])
    with pytest.raises(ValidationError, match="column names"):
        FairnessSettings(attributes=["age band; drop table x"])


def test_the_card_shows_per_group_figures_findings_and_still_reads_old_versions() -> None:
    frame = _model_frame()
    rows = lib.model(frame["group"], frame["y"], frame["p"], frame["decided"], LIMITS)
    findings = [f.as_dict() for f in lib.model_findings(rows, "model:{version}", "age_band", LIMITS)]
    fair = {
        "decision": "flagged at risk",
        "limits": LIMITS.__dict__,
        "attributes": [{"attribute": "age_band", "groups": rows}],
        "findings": findings,
    }
    md = lib.card_section(fair)
    b = next(r for r in rows if r["group"] == "B")
    assert f"| B | {b['customers']:,} | {b['observed_rate']:.3f} |" in md
    assert "| tiny | suppressed |" in md and "fewer than 50 customers are suppressed" in md
    assert "model:{version}:age_band:ece_gap:B" in md and "FAIL" in md
    legacy = [
        {"group": "25-34", "customers": 52, "observed_rate": 0.4, "mean_predicted": 0.5, "roc_auc": 0.8}
    ]
    assert "| 25-34 | 52 | 0.400 | 0.500 | 0.8000 |" in lib.card_section(legacy)
    assert "no fairness figures" in lib.card_section([])
    assert "## Fairness" in lib.card_section(fair) and callable(render)


def test_a_tiny_audience_is_not_a_finding_by_chance_alone() -> None:
    """Three customers of one group in an audience: the others' ratio is 0, yet a difference of 3 in
    200 is well within chance (p about 0.08), so there is no finding; at 30 it is a fail."""
    groups = np.array(["A"] * 200 + ["B"] * 200)
    for chosen, expect in ((3, set()), (30, {"B"})):
        selected = np.zeros(400, dtype=bool)
        selected[:chosen] = True  # all in A
        rows = lib.selection(groups, selected, LIMITS)
        assert next(r for r in rows if r["group"] == "B")["di"] == 0.0
        assert (_p(chosen, 200, 0, 200) < 0.05) == bool(expect)
        assert {f.group for f in lib.selection_findings(rows, "s", "age", LIMITS)} == expect


def test_an_attribute_the_warehouse_lacks_is_named_as_not_judged(tmp_path) -> None:
    import duckdb

    from clarion.fairness import attributes, missing

    settings = load_settings(None, env={"CLARION_FAIRNESS__ATTRIBUTES": '["age_band", "region"]'})
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("create schema marts")
    con.execute("create table marts.dim_customers (contact_id bigint, age_band varchar)")
    assert attributes(settings, con) == ["age_band"] and missing(settings, con) == ["region"]
    con.close()


def test_holm_keeps_the_family_error_rate_when_many_groups_are_compared() -> None:
    """Six groups, three metrics: eighteen chances to see noise as a gap. A finding needs its p under
    alpha / (tests left), smallest first (Holm-Bonferroni), worked out here by hand."""
    assert lib.holm([0.01, 0.04, 0.03], 0.05) == [True, False, False]  # 0.01 < 0.05/3; 0.03 > 0.05/2
    assert lib.holm([0.001, 0.02, 0.04], 0.05) == [True, True, True]  # 0.001, 0.02 < 0.025, 0.04 < 0.05
    assert lib.holm([0.2, 0.004], 0.05) == [False, True]
    assert lib.holm([], 0.05) == []
    assert lib.holm([0.9, 0.5], 1) == [True, True]  # fairness.significance: 1 judges every gap
    # one group of five selected at 40% against 60%: alone (two groups) a finding, among five not
    rng = np.random.default_rng(11)
    n = 200
    two = ["a"] * n + ["b"] * n
    chosen = np.r_[rng.random(n) < 0.6, rng.random(n) < 0.4]
    rows = lib.selection(two, chosen, LIMITS)
    found = lib.selection_findings(rows, "s", "age", LIMITS)
    (alone,) = [r for r in rows if r["group"] == "b"]
    ref = next(r for r in rows if r["group"] == "a")
    p = lib.p_value(alone["selected"], alone["customers"], ref["selected"], ref["customers"])
    assert alone["di"] < LIMITS.di_warn and p < 0.05 / 1 and [f.group for f in found] == ["b"]
    many = two + [g for g in "cde" for _ in range(n)]
    chosen_many = np.r_[chosen, rng.random(3 * n) < 0.6]
    rows_many = lib.selection(many, chosen_many, LIMITS)
    ps = {
        r["group"]: lib.p_value(
            r["selected"],
            r["customers"],
            *next((x["selected"], x["customers"]) for x in rows_many if x["group"] == r["reference"]),
        )
        for r in rows_many
        if r["judged"] and r["group"] != r["reference"]
    }
    want = {g for g, ok in zip(ps, lib.holm(list(ps.values()), LIMITS.alpha), strict=True) if ok}
    got = {f.group for f in lib.selection_findings(rows_many, "s", "age", LIMITS) if f.group in ps}
    di = {r["group"]: r["di"] for r in rows_many}
    assert got == {g for g in want if di[g] < LIMITS.di_warn}


def test_a_selection_counted_in_the_warehouse_equals_the_per_customer_computation(tmp_path) -> None:
    """`clarion fairness` counts each attribute value's members and selected in DuckDB; text, whole
    numbers, booleans and missing values must give the groups (labels included) and figures that
    `lib.selection` gives from every customer's row."""
    import duckdb

    from clarion.fairness import _selection

    rng = np.random.default_rng(11)
    n = 5_000
    people = pd.DataFrame(
        {
            "contact_id": np.arange(n),
            "age_band": rng.choice(np.array(["18-24", "25-34", "35-54", None], dtype=object), n),
            "region_code": pd.array(rng.choice([1, 2, 3, 4, 5], n), dtype="Int64"),
            "vip": rng.random(n) < 0.3,
            "selected": rng.random(n) < 0.2,
        }
    )
    people.loc[rng.random(n) < 0.05, "region_code"] = pd.NA
    people.loc[people.region_code == 5, "selected"] &= rng.random(int((people.region_code == 5).sum())) < 0.4
    people.loc[people.index[:30], "region_code"] = 9  # a group under min_group: suppressed
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.register("people", people)
    con.execute("create schema marts")
    con.execute(
        "create table marts.dim_customers as select contact_id, age_band, "
        "region_code::integer as region_code, vip from people"
    )
    con.execute("create table picked as select contact_id, selected from people")
    names = ["age_band", "region_code", "vip"]
    sql = "select s.selected, {attributes} from picked s left join marts.dim_customers d using (contact_id)"
    got = _selection(con, names, sql, [], LIMITS, "s")
    rows = con.execute(sql.replace("{attributes}", ", ".join(f"d.{a}" for a in names))).df()
    con.close()
    for i, (name, figures) in enumerate(zip(names, got, strict=True)):
        want = lib.selection(rows.iloc[:, 1 + i].to_numpy(), rows.iloc[:, 0].to_numpy(), LIMITS)
        assert figures["attribute"] == name and figures["groups"] == want, name
        assert figures["findings"] == [f.as_dict() for f in lib.selection_findings(want, "s", name, LIMITS)]
    labels = {a: {g["group"] for g in f["groups"]} for a, f in zip(names, got, strict=True)}
    assert "unknown" in labels["age_band"] and "unknown" in labels["region_code"] and len(labels["vip"]) == 2
    assert (
        any(g["suppressed"] for g in got[1]["groups"]) and got[1]["findings"]
    )  # region 5: a planted finding
