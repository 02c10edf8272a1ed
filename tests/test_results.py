"""Campaign results: counts, uplift against the control group, the variant experiment and its
verdicts, sample-ratio and contamination checks, from a real DuckDB warehouse whose exposure mart
is written row by row here, so every figure can be re-derived from the rows with pandas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from clarion import results
from clarion.config import load_settings
from clarion.results.views import results_text
from models import experiments as ex

BASE = datetime(2026, 6, 2, 9, tzinfo=UTC)


def _arm_rows(
    campaign: str, arm: str, variant: str | None, n: int, rate: float, rng, first_id: int
) -> list[dict]:
    converted = rng.random(n) < rate
    orders = np.where(converted, rng.integers(1, 3, n), 0)
    return [
        {
            "campaign_id": campaign,
            "contact_id": first_id + i,
            "arm": arm,
            "variant_id": variant,
            "exposed_at": BASE + timedelta(days=int(rng.integers(0, 5))),
            "delivered": arm == "treatment" and bool(rng.random() < 0.97),
            "opened": arm == "treatment" and bool(rng.random() < 0.3),
            "clicked": arm == "treatment" and bool(rng.random() < 0.05),
            "unsubscribed": arm == "treatment" and bool(rng.random() < 0.01),
            "bounced": False,
            "conversions": int(orders[i]),
            "revenue_eur": float(orders[i] * rng.uniform(20, 90)),
            "converted": bool(converted[i]),
            "contaminated": False,
        }
        for i in range(n)
    ]


ORDERS_DDL = (
    "create table marts.fct_orders (order_id bigint, contact_id bigint, ordered_at timestamptz, "
    "total_eur double, is_cancelled boolean)"
)
EVENTS_DDL = (
    "create table marts.fct_email_events (event_id bigint, contact_id bigint, campaign_id varchar, "
    "event_type varchar, occurred_at timestamptz)"
)


def _warehouse(
    tmp_path: Path,
    frames: list[list[dict]],
    segments: dict[int, str] | None = None,
    orders: list[tuple] = (),
):
    (tmp_path / "clarion.yaml").write_text("warehouse:\n  path: var/warehouse.duckdb\n")
    settings = load_settings(tmp_path / "clarion.yaml", env={})
    settings.warehouse.path.parent.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame([r for f in frames for r in f])
    with duckdb.connect(str(settings.warehouse.path)) as con:
        con.execute("create schema marts")
        con.execute("create schema ml")
        con.register("df", df)
        con.execute(ORDERS_DDL)
        con.execute(EVENTS_DDL)
        if orders:
            con.executemany("insert into marts.fct_orders values (?, ?, ?, ?, false)", orders)
        con.execute(
            "create table marts.fct_campaign_exposures as select campaign_id, contact_id::bigint contact_id, "
            "arm, variant_id, exposed_at::timestamptz exposed_at, delivered, opened, clicked, unsubscribed, "
            "bounced, conversions::int conversions, revenue_eur, converted, contaminated from df"
        )
        if segments:
            seg = pd.DataFrame({"contact_id": list(segments), "segment": list(segments.values())})
            con.register("seg", seg)
            con.execute(
                "create table ml.customer_scores as select 'R1' run_id, contact_id::bigint contact_id, "
                "segment, now() scored_at, date '2026-07-01' as_of from seg"
            )
    return settings, df


def _arms(summary: dict, campaign: str) -> dict[str, dict]:
    [c] = [c for c in summary["campaigns"] if c["campaign"] == campaign]
    return {a["variant"]: a for a in c["arms"]}


def test_counts_and_uplift_match_the_rows_and_a_clearly_better_variant_wins(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frames = [
        _arm_rows("C1", "control", None, 1_000, 0.05, rng, 1),
        _arm_rows("C1", "treatment", "A", 4_500, 0.09, rng, 10_001),
        _arm_rows("C1", "treatment", "B", 4_500, 0.05, rng, 20_001),
    ]
    settings, df = _warehouse(tmp_path, frames)
    summary = results.run(settings, "R-test")
    arms = _arms(summary, "C1")
    for variant, rows in df.assign(v=df.variant_id.fillna("control")).groupby("v"):
        a = arms[variant]
        assert a["customers"] == len(rows)
        assert a["converters"] == int(rows.converted.sum())
        assert a["conversions"] == int(rows.conversions.sum())
        assert a["opened"] == int(rows.opened.sum()) and a["clicked"] == int(rows.clicked.sum())
        assert a["revenue_eur"] == pytest.approx(rows.revenue_eur.sum())
    control = df[df.arm == "control"]
    for variant in ("A", "B"):
        treated = df[df.variant_id == variant]
        want = treated.converted.mean() - control.converted.mean()
        u = arms[variant]["uplift"]
        assert u["absolute"] == pytest.approx(want)
        assert u["low"] < want < u["high"]
        inc = (treated.revenue_eur.mean() - control.revenue_eur.mean()) * len(treated)
        assert arms[variant]["incremental_revenue_eur"] == pytest.approx(inc)
    pooled = df[df.arm == "treatment"]
    assert arms["all"]["customers"] == len(pooled)
    assert arms["all"]["uplift"]["absolute"] == pytest.approx(
        pooled.converted.mean() - control.converted.mean()
    )
    assert arms["A"]["verdict"] == "winner" and arms["B"]["verdict"] == "retired"
    [c] = summary["campaigns"]
    assert c["experiment"]["leader"] == "A"
    assert c["experiment"]["prob_best"]["A"] > 0.99
    assert c["experiment"]["tests"]["B"]["looks"] == df.exposed_at.dt.date.nunique()
    assert c["srm_p"] > 0.001 and not c["notes"]


def test_equal_variants_are_left_running_and_nothing_is_retired(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    frames = [
        _arm_rows("C2", "control", None, 500, 0.06, rng, 1),
        _arm_rows("C2", "treatment", "A", 2_250, 0.06, rng, 10_001),
        _arm_rows("C2", "treatment", "B", 2_250, 0.06, rng, 20_001),
    ]
    settings, _ = _warehouse(tmp_path, frames)
    arms = _arms(results.run(settings), "C2")
    assert {arms["A"]["verdict"], arms["B"]["verdict"]} == {"leading", "running"}


def test_a_control_group_of_the_wrong_size_or_that_was_sent_to_is_flagged(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    leaked = _arm_rows("C3", "control", None, 2_000, 0.05, rng, 1)
    for r in leaked[:40]:
        r["contaminated"] = True
    frames = [leaked, _arm_rows("C3", "treatment", "A", 8_000, 0.06, rng, 10_001)]
    settings, _ = _warehouse(tmp_path, frames)
    [c] = results.run(settings)["campaigns"]
    assert c["srm_p"] < 0.001  # 20% held out, 10% planned
    assert any("sample-ratio mismatch" in n for n in c["notes"])
    assert any(n.startswith("40 control customer(s) were also sent") for n in c["notes"])
    assert all(a["verdict"] == "only variant" for a in c["arms"] if a["arm"] == "treatment")


def test_a_campaign_without_control_group_is_counted_but_has_no_uplift(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    settings, _ = _warehouse(tmp_path, [_arm_rows("C4", "treatment", None, 300, 0.05, rng, 1)])
    summary = results.run(settings)
    [c] = summary["campaigns"]
    [a] = c["arms"]
    assert a["customers"] == 300 and a["uplift"] is None
    assert any("no control group" in n for n in c["notes"])
    assert "C4" not in results_text(summary) and "1 other campaign(s) had no control group" in results_text(
        summary
    )
    assert "C4" in results_text(summary, every=True)


def test_uplift_per_segment_uses_each_customers_own_segment(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    frames = [
        _arm_rows("C5", "control", None, 1_000, 0.05, rng, 1),
        _arm_rows("C5", "treatment", "A", 4_000, 0.08, rng, 10_001),
    ]
    ids = [r["contact_id"] for f in frames for r in f]
    segments = {i: ("at_risk" if i % 2 else "loyal") for i in ids[:-10]}  # 10 customers were never scored
    settings, df = _warehouse(tmp_path, frames, segments)
    [c] = results.run(settings)["campaigns"]
    df["segment"] = df.contact_id.map(segments).fillna("unscored")
    got = {s["segment"]: s for s in c["segments"]}
    assert "unscored" not in got  # 10 treated, no control: too few to say anything
    for name in ("at_risk", "loyal"):
        rows = df[df.segment == name]
        t, k = rows[rows.arm == "treatment"], rows[rows.arm == "control"]
        assert got[name]["treated"] == len(t) and got[name]["control"] == len(k)
        assert got[name]["absolute"] == pytest.approx(t.converted.mean() - k.converted.mean())
    with duckdb.connect(str(settings.warehouse.path)) as con:
        uplift = dict(
            con.execute("select segment, treated from ml.campaign_uplift where campaign = 'C5'").fetchall()
        )
    assert uplift == {"all": 4_000, "at_risk": got["at_risk"]["treated"], "loyal": got["loyal"]["treated"]}


def test_every_figure_of_three_variants_equals_its_computation_from_each_row(tmp_path: Path) -> None:
    """The warehouse sends grouped counts and moments, not rows: each arm's orders and revenue
    intervals (the variants and every variant pooled), the sequential test's cumulative looks and the
    per-segment uplift of the latest scoring run must equal the per-customer computation."""
    rng = np.random.default_rng(6)
    frames = [
        _arm_rows("C6", "control", None, 1_500, 0.05, rng, 1),
        _arm_rows("C6", "treatment", "A", 3_000, 0.08, rng, 10_001),
        _arm_rows("C6", "treatment", "B", 3_000, 0.065, rng, 20_001),
        _arm_rows("C6", "treatment", "C", 3_000, 0.05, rng, 30_001),
    ]
    ids = [r["contact_id"] for f in frames for r in f]
    segments = {i: ("at_risk", "loyal", "new")[i % 3] for i in ids[25:]}  # 25 control customers unscored
    settings, df = _warehouse(tmp_path, frames, segments)
    with duckdb.connect(str(settings.warehouse.path)) as con:  # an older run, with other segments
        con.execute(
            "insert into ml.customer_scores select 'R0', contact_id, 'stale', "
            "scored_at - interval 1 day, as_of from ml.customer_scores"
        )
    [c] = results.run(settings, "R-all")["campaigns"]
    arms = {a["variant"]: a for a in c["arms"]}
    control = df[df.arm == "control"]
    treated = df[df.arm == "treatment"]
    for variant, rows in [*treated.groupby("variant_id"), ("all", treated)]:
        a = arms[variant]
        for figure, column in (("orders_uplift", "conversions"), ("revenue_uplift", "revenue_eur")):
            want = ex.mean_difference(rows[column].to_numpy(float), control[column].to_numpy(float), 0.05)
            got = a[figure]
            assert (got["difference"], got["low"], got["high"], got["p_value"]) == pytest.approx(
                (want.difference, want.low, want.high, want.p_value), rel=1e-9, abs=1e-12
            ), (variant, figure)
            if column == "revenue_eur":
                assert a["incremental_revenue_low"] == pytest.approx(want.low * len(rows), rel=1e-9)
                assert a["incremental_revenue_high"] == pytest.approx(want.high * len(rows), rel=1e-9)
    rates = treated.groupby("variant_id").converted.mean()
    leader = rates.idxmax()
    assert c["experiment"]["leader"] == leader
    looks = sorted(df.exposed_at.dt.date.unique())

    def cumulative(variant: str) -> tuple[np.ndarray, np.ndarray]:
        by_day = treated[treated.variant_id == variant].groupby(treated.exposed_at.dt.date).converted
        return (
            by_day.sum().reindex(looks, fill_value=0).cumsum().to_numpy(),
            by_day.size().reindex(looks, fill_value=0).cumsum().to_numpy(),
        )

    assert set(c["experiment"]["tests"]) == set(rates.index) - {leader}
    for variant, test in c["experiment"]["tests"].items():
        want = ex.sequential_test(*cumulative(leader), *cumulative(variant), alpha=0.05)
        assert test["looks"] == len(looks) == want.looks
        assert (test["difference"], test["low"], test["high"], test["p_value"]) == pytest.approx(
            (want.difference, want.low, want.high, want.p_value)
        )
        assert arms[variant]["verdict"] == ("retired" if want.significant else "running")
    df["segment"] = df.contact_id.map(segments).fillna("unscored")
    got = {s["segment"]: s for s in c["segments"]}
    assert set(got) == {"at_risk", "loyal", "new"}  # not "stale" (the older run); "unscored": 25 control only
    for name, rows in df[df.segment != "unscored"].groupby("segment"):
        t, k = rows[rows.arm == "treatment"], rows[rows.arm == "control"]
        assert (got[name]["treated"], got[name]["control"]) == (len(t), len(k))
        assert got[name]["absolute"] == pytest.approx(t.converted.mean() - k.converted.mean())


def test_stored_results_read_back_as_measured_and_render_as_text(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    frames = [
        _arm_rows("C6", "control", None, 600, 0.05, rng, 1),
        _arm_rows("C6", "treatment", "A", 2_700, 0.07, rng, 10_001),
        _arm_rows("C6", "treatment", "B", 2_700, 0.06, rng, 20_001),
    ]
    settings, _ = _warehouse(tmp_path, frames)
    measured = results.run(settings, "R6")
    loaded = results.load(settings, "C6")
    assert loaded["results_run_id"] == "R6"
    [m], [back] = measured["campaigns"], loaded["campaigns"]
    assert {a["variant"]: a["converters"] for a in back["arms"]} == {
        a["variant"]: a["converters"] for a in m["arms"]
    }
    assert back["experiment"] == m["experiment"]
    text = results_text(loaded)
    assert "C6" in text and "uplift, pts" in text and "always-valid p" in text
    with pytest.raises(results.ResultsError, match="campaign 'nope' has no sends"):
        results.load(settings, "nope")


def test_results_before_the_exposure_mart_exists_say_what_to_run(tmp_path: Path) -> None:
    (tmp_path / "clarion.yaml").write_text("warehouse:\n  path: var/warehouse.duckdb\n")
    settings = load_settings(tmp_path / "clarion.yaml", env={})
    settings.warehouse.path.parent.mkdir(parents=True)
    duckdb.connect(str(settings.warehouse.path)).close()
    with pytest.raises(results.ResultsError, match="run `clarion transform`"):
        results.run(settings)


def test_the_report_section_shows_each_campaigns_arms_and_verdicts_and_no_customer(tmp_path: Path) -> None:
    from clarion.report.activity import campaign_results, results_html

    rng = np.random.default_rng(7)
    frames = [
        _arm_rows("C7", "control", None, 1_000, 0.05, rng, 900_001),
        _arm_rows("C7", "treatment", "A", 4_500, 0.09, rng, 910_001),
        _arm_rows("C7", "treatment", "B", 4_500, 0.05, rng, 920_001),
    ]
    settings, df = _warehouse(tmp_path, frames)
    with duckdb.connect(str(settings.warehouse.path)) as con:
        assert campaign_results(con)["campaigns"] == []  # nothing measured yet
    results.run(settings)
    with duckdb.connect(str(settings.warehouse.path)) as con:
        section = results_html({"campaign_results": campaign_results(con)})
    assert 'data-campaign="C7"' in section
    for variant, verdict in (("A", "winner"), ("B", "retired")):
        rows = df[df.variant_id == variant]
        assert f"<td>{variant}</td><td class='num'>{len(rows):,}</td>" in section
        assert f"<td>{verdict}</td>" in section
    assert not any(str(i) in section for i in (900_001, 910_001, 920_001))


def _planted_uplift(tmp_path: Path, moved: bool = True):
    """Planted: customers who ordered in the year before the send convert 25% when treated, 5% when
    held out; the others 5% either way. ``moved=False``: everyone converts 10% treated, 5% held out
    (no customer is moved more than another: nothing for a ranking to find). Returns the settings,
    the ids and who is a buyer."""
    rng = np.random.default_rng(8)
    n = 12_000
    ids = np.arange(1, n + 1)
    buyer = rng.random(n) < 0.5
    treated = rng.random(n) < 0.7
    p = np.where(buyer & treated, 0.25, 0.05) if moved else np.where(treated, 0.10, 0.05)
    converted = rng.random(n) < p
    rows = [
        {
            "campaign_id": "C8",
            "contact_id": int(i),
            "arm": "treatment" if t else "control",
            "variant_id": "A" if t else None,
            "exposed_at": BASE,
            "delivered": bool(t),
            "opened": False,
            "clicked": False,
            "unsubscribed": False,
            "bounced": False,
            "conversions": int(c),
            "revenue_eur": 40.0 * c,
            "converted": bool(c),
            "contaminated": False,
        }
        for i, t, c in zip(ids, treated, converted, strict=True)
    ]
    history = [(int(i), int(i), BASE - timedelta(days=int(30 + i % 200)), 55.0) for i in ids[buyer]]
    settings, _ = _warehouse(tmp_path, [rows], {int(i): "any" for i in ids}, orders=history)
    return settings, ids, buyer


def test_the_uplift_model_finds_who_is_moved_and_scores_current_customers_only_when_it_validates(
    tmp_path: Path,
) -> None:
    """The model learns the planted effect from pre-exposure features alone."""
    settings, ids, buyer = _planted_uplift(tmp_path)
    n = len(ids)
    model = results.run(settings)["uplift_model"]
    assert model["status"] == "validated", model
    assert model["p_value"] < 0.05 and model["qini"] > model["random_p95"]
    assert model["validation_customers"] + model["train_customers"] == n
    with duckdb.connect(str(settings.warehouse.path)) as con:
        scored = con.execute("select contact_id, uplift from ml.customer_uplift").df()
    assert len(scored) == n
    scored["buyer"] = scored.contact_id.isin(ids[buyer])
    means = scored.groupby("buyer").uplift.mean()
    assert means[True] > 0.12 and means[False] < 0.06  # planted: 0.20 and 0.00


def _uplift_rows(settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    with duckdb.connect(str(settings.warehouse.path)) as con:
        scored = con.execute(
            "select contact_id, uplift, p_treated, p_control from ml.customer_uplift order by contact_id"
        ).df()
        runs = con.execute(
            "select results_run_id, status, model_version, qini, p_value from ml.uplift_models "
            "order by recorded_at"
        ).df()
    return scored, runs


def test_a_validated_uplift_model_is_reused_with_the_same_scores_as_a_fresh_fit(tmp_path: Path) -> None:
    from models.registry import Registry

    settings, ids, _ = _planted_uplift(tmp_path)
    first = results.run(settings, "R1")["uplift_model"]
    assert first["status"] == "validated" and first["model_version"] == "v0001" and "reused" not in first
    fitted, _ = _uplift_rows(settings)
    second = results.run(settings, "R2")["uplift_model"]
    assert second["reused"] == {
        "version": "v0001",
        "as_of": "2026-07-01",
        "age_days": 0,
        "exposures_then": len(ids),
        "exposures": len(ids),
        "every_days": 7,
    }
    assert second["status"] == "validated" and second["model_version"] == "v0001"
    assert (second["qini"], second["p_value"]) == (first["qini"], first["p_value"])  # its validation
    assert "reused uplift v0001, fitted for 2026-07-01 (0 days before this run's day)" in second["reason"]
    reused, runs = _uplift_rows(settings)
    pd.testing.assert_frame_equal(reused, fitted)  # the stored classifiers predict as the fitted ones
    assert runs["results_run_id"].tolist() == ["R1", "R2"] and set(runs["model_version"]) == {"v0001"}
    # the same data with reuse off: fitted again, registered as v0002, the same scores
    fresh = load_settings(
        tmp_path / "clarion.yaml", env={"CLARION_EXPERIMENTS__UPLIFT_REFIT_EVERY_DAYS": "0"}
    )
    third = results.run(fresh, "R3")["uplift_model"]
    assert third["model_version"] == "v0002" and "reused" not in third
    pd.testing.assert_frame_equal(_uplift_rows(settings)[0], fitted)
    versions = Registry(settings.var_dir / "registry", model="uplift").versions()
    assert [v.name for v in versions] == ["v0001", "v0002"]
    assert "p = " in (versions[1].path / "card.md").read_text()
    assert results.run(settings, "R4")["uplift_model"]["reused"]["version"] == "v0002"
    from click.testing import CliRunner

    from clarion.cli import cli

    helped = " ".join(CliRunner().invoke(cli, ["results", "--help"]).output.split())
    assert "reused by later runs for experiments.uplift_refit_every_days days" in helped
    assert "experiments.uplift_arm_ratio (10) exposures per exposure of the smaller arm" in helped


def test_a_fit_that_does_not_validate_is_kept_too_and_its_reuse_scores_no_one(tmp_path: Path) -> None:
    """A model no better than random is not refitted every day either: the next run keeps its
    verdict (and the evidence it was judged on), and no customer gets an uplift from it."""
    settings, _, _ = _planted_uplift(tmp_path, moved=False)
    first = results.run(settings, "R1")["uplift_model"]
    assert first["status"] == "not validated" and first["model_version"] == "v0001", first
    assert first["p_value"] >= 0.05 and "no better than random targeting" in first["reason"]
    second = results.run(settings, "R2")["uplift_model"]
    assert second["reused"]["version"] == "v0001" and second["status"] == "not validated"
    assert second["p_value"] == first["p_value"] and "reused uplift v0001" in second["reason"]
    scored, runs = _uplift_rows(settings)
    assert scored.empty and runs["model_version"].tolist() == ["v0001", "v0001"]
    card = (settings.var_dir / "registry" / "uplift" / "v0001" / "card.md").read_text()
    assert "- status: not validated: no better than random targeting" in card


def test_uplift_model_reuse_stops_at_its_age_exposure_change_settings_and_erasure_limits(
    tmp_path: Path,
) -> None:
    import json
    from datetime import date

    from clarion.results import uplift

    settings, ids, _ = _planted_uplift(tmp_path)
    results.run(settings, "R1")
    root = settings.var_dir / "registry"
    n = len(ids)
    day = date(2026, 7, 1)
    exp = settings.experiments

    def reuse(exp=exp, as_of=day, exposures=n):
        with duckdb.connect(str(settings.warehouse.path)) as con:
            found = uplift.reusable(con, exp, root, as_of, exposures)
        return None if found is None else found[1]["version"]

    assert reuse() == "v0001"
    assert reuse(as_of=date(2026, 7, 7)) == "v0001"  # 6 days after: still reused
    assert reuse(as_of=date(2026, 7, 8)) is None  # 7 days: fitted again
    assert reuse(as_of=date(2026, 6, 30)) is None  # a day before the one it was fitted for
    assert reuse(exposures=int(n * 1.09)) == "v0001"
    assert reuse(exposures=int(n * 1.11) + 1) is None and reuse(exposures=int(n * 0.89) - 1) is None
    assert reuse(exp=exp.model_copy(update={"uplift_refit_every_days": 0})) is None
    assert reuse(exp=exp.model_copy(update={"uplift_refit_every_days": 30}), as_of=date(2026, 7, 20))
    assert reuse(exp=exp.model_copy(update={"min_evidence": 300})) is None
    assert reuse(exp=exp.model_copy(update={"uplift_arm_ratio": 2})) is None
    with duckdb.connect(str(settings.warehouse.path)) as con:  # a later run that used no model
        con.execute(
            "insert into ml.uplift_models (results_run_id, status, recorded_at) "
            "values ('R9', 'not trained', now())"
        )
    assert reuse() is None
    with duckdb.connect(str(settings.warehouse.path)) as con:
        con.execute("delete from ml.uplift_models where results_run_id = 'R9'")
    assert reuse() == "v0001"
    meta = root / "uplift" / "v0001" / "meta.json"
    data = json.loads(meta.read_text())
    meta.write_text(json.dumps(data | {"retrain_required": {"reason": "erasure", "reference": "E1"}}))
    assert reuse() is None
    again = results.run(settings, "R2")["uplift_model"]
    assert again["model_version"] == "v0002" and "reused" not in again  # flagged: fitted afresh


def test_uplift_features_equal_their_definition_at_every_edge(tmp_path: Path) -> None:
    """Orders and events exactly at the anchor, at the window's start, a second inside it, at the
    same instant as another, cancelled, of other event types; a customer with none; the same
    customer and instant in two campaigns. The stage's as-of joins against the row-by-row definition."""
    from uplift_oracle import features_by_definition

    from clarion.results import uplift

    t0 = BASE
    day = timedelta(days=1)
    second = timedelta(seconds=1)
    orders = [  # (order_id, contact_id, ordered_at, total_eur, is_cancelled)
        (1, 1, t0, 10.0, False),  # at the anchor: not before it
        (2, 1, t0 - 365 * day, 20.0, False),  # the window's first instant
        (3, 1, t0 - 365 * day - second, 30.0, False),  # just outside: lifetime only
        (4, 1, t0 - 2 * day, 40.0, False),
        (5, 1, t0 - 2 * day, 50.0, False),  # the same instant as order 4
        (6, 1, t0 - day, 60.0, True),  # cancelled
        (7, 2, t0 + day, 70.0, False),  # after the anchor only
        (8, 3, t0 - 800 * day, 5.5, False),
    ]
    events = [  # (event_id, contact_id, campaign_id, event_type, occurred_at)
        (1, 1, "C", "open", t0),
        (2, 1, "C", "open", t0 - 180 * day),
        (3, 1, "C", "open", t0 - 180 * day - second),
        (4, 1, "C", "click", t0 - second),
        (5, 1, "C", "click", t0 - second),
        (6, 1, "C", "sent", t0 - day),
        (7, 2, "C", "open", t0 - 10 * day),
        (8, 3, "C", "bounce", t0 - day),
    ]
    exposures = [(c, k, a) for c, k, a in [("C1", 1, t0), ("C2", 1, t0), ("C1", 2, t0), ("C1", 3, t0),
                                          ("C1", 4, t0), ("C2", 3, t0 - 400 * day)]]  # fmt: skip
    db = tmp_path / "edges.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("create schema marts")
        con.execute(ORDERS_DDL)
        con.execute(EVENTS_DDL)
        con.executemany("insert into marts.fct_orders values (?, ?, ?, ?, ?)", orders)
        con.executemany("insert into marts.fct_email_events values (?, ?, ?, ?, ?)", events)
        con.execute("create table anchors (campaign_id varchar, contact_id bigint, anchor timestamptz)")
        con.executemany("insert into anchors values (?, ?, ?)", exposures)
        got = con.execute(uplift._features_sql("anchor", "select * from anchors")).df()
        want = features_by_definition(con, "select * from anchors")
    assert len(got) == len(exposures)
    pd.testing.assert_frame_equal(got[["contact_id", *uplift.FEATURES]], want, rtol=1e-12)
    first = got.iloc[0]  # customer 1 at t0: orders 2, 4, 5 in the year, 3 before it too
    assert (first.orders_365d, first.spend_365d_eur, first.avg_order_eur) == (3.0, 110.0, 35.0)
    assert (first.recency_days, first.opens_180d, first.clicks_180d) == (2.0, 1.0, 2.0)


def test_the_larger_arm_is_fitted_on_an_unbiased_repeatable_sample_at_the_arm_ratio(tmp_path: Path) -> None:
    """experiments.uplift_arm_ratio 1: the planted warehouse's treated arm (about 8,400 exposures) is
    sampled to about the control arm's size (about 3,600), which is kept whole; the sample's rows carry
    the features they have in the whole set, its buyers' share is the whole arm's, the same rows come
    back on every call, and the model still finds the planted effect."""
    from clarion.results import uplift

    settings, ids, buyer = _planted_uplift(tmp_path)
    sampled = load_settings(tmp_path / "clarion.yaml", env={"CLARION_EXPERIMENTS__UPLIFT_ARM_RATIO": "1"})
    with duckdb.connect(str(settings.warehouse.path)) as con:
        count = "select count(*) from marts.fct_campaign_exposures where arm = ?"
        treated, control = (con.execute(count, [arm]).fetchone()[0] for arm in ("treatment", "control"))
        whole = uplift.exposures_frame(con)
        kept = uplift.kept_buckets(treated, control, 1)
        part = uplift.exposures_frame(con, kept)
        again = uplift.exposures_frame(con, kept)
    assert treated > 2 * control and kept[1] == uplift.BUCKETS and kept[0] < uplift.BUCKETS
    assert uplift.kept_buckets(control, treated, 1) == kept[::-1]  # a larger control arm is the sampled one
    assert uplift.kept_buckets(treated, control, 3) == (uplift.BUCKETS,) * 2  # within the ratio: whole
    assert uplift.kept_buckets(treated, control, 0) == (uplift.BUCKETS,) * 2
    pd.testing.assert_frame_equal(part, again)
    assert int((~part.treated).sum()) == control  # the control arm whole
    n = int(part.treated.sum())
    assert abs(n - control) < 5 * np.sqrt(control * (1 - control / treated))  # binomial: within 5 sd
    key = ["contact_id", "treated"]
    joined = part.merge(whole, on=key, suffixes=("", "_whole"), validate="one_to_one")
    assert len(joined) == len(part)  # every sampled row is one of the whole set's, with its features
    for column in [*uplift.FEATURES, "converted"]:
        assert (joined[column] == joined[f"{column}_whole"]).all(), column
    is_buyer = set(ids[buyer].tolist())
    share = part[part.treated].contact_id.isin(is_buyer).mean()
    share_whole = whole[whole.treated].contact_id.isin(is_buyer).mean()
    assert abs(share - share_whole) < 5 * np.sqrt(share_whole * (1 - share_whole) / n)

    model = results.run(sampled, "R1")["uplift_model"]
    assert model["train_customers"] + model["validation_customers"] == n + control
    assert (model["treated"], model["control"]) == (treated, control)  # what the arms hold
    assert model["status"] == "validated", model
    assert model["reason"].endswith(
        f"; fitted and validated on a sample of {n:,} of {treated:,} treated exposures and every control "
        "one (experiments.uplift_arm_ratio: 1)"
    )
    card = (settings.var_dir / "registry" / "uplift" / "v0001" / "card.md").read_text()
    assert f"a sample of {n:,} of {treated:,} treated exposures" in card
    # the default (10) samples no arm here: every exposure, nothing said
    full = results.run(settings, "R2")["uplift_model"]
    assert full["model_version"] == "v0002" and "reused" not in full  # another ratio: fitted again
    assert full["train_customers"] + full["validation_customers"] == len(ids)
    assert "sample" not in full["reason"]


def test_the_uplift_model_is_not_trained_below_the_evidence_floor_and_says_why(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    frames = [
        _arm_rows("C9", "control", None, 120, 0.05, rng, 1),
        _arm_rows("C9", "treatment", "A", 1_000, 0.08, rng, 10_001),
    ]
    settings, _ = _warehouse(tmp_path, frames)
    model = results.run(settings)["uplift_model"]
    assert model["status"] == "not trained"
    assert (
        model["reason"] == "1,000 treated and 120 control exposures; experiments.min_evidence is 200 per arm"
    )


def test_the_run_summary_counts_measured_campaigns_decisions_and_the_uplift_model(tmp_path: Path) -> None:
    from clarion.results.views import stage_text
    from flows.results import stage_summary

    rng = np.random.default_rng(10)
    frames = [
        _arm_rows("C10", "control", None, 1_000, 0.05, rng, 1),
        _arm_rows("C10", "treatment", "A", 4_500, 0.09, rng, 10_001),
        _arm_rows("C10", "treatment", "B", 4_500, 0.05, rng, 20_001),
        _arm_rows("C11", "treatment", None, 400, 0.05, rng, 40_001),
    ]
    settings, _ = _warehouse(tmp_path, frames)
    s = stage_summary(results.run(settings))
    assert (s["campaigns"], s["with_control"], s["experiments"], s["decided"], s["retired"]) == (
        2,
        1,
        1,
        1,
        1,
    )
    assert s["latest"]["campaign"] == "C10" and s["latest"]["leader"] == "A"
    assert s["uplift_model"]["status"] in ("validated", "not validated", "not trained")
    text = stage_text(s)
    assert "1 campaign(s) measured against a control group (1 more without one)" in text
    assert "1 decided, 1 variant(s) retired" in text and "uplift model: " in text
