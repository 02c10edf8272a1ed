"""The fairness gates on real runs (copies of the shared 300-contact `small_run`): a model version with
a fail finding is not promoted, a planted biased audience is not exported until a person signs its
finding off by name, and the figures in the card, the report and `clarion fairness` agree with an
independent computation from the warehouse."""

from __future__ import annotations

import getpass
import json
import shutil
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner
from project_helpers import query, run_pipeline_in, write_tiny_brief

from clarion.cli import cli
from clarion.config import Settings, load_settings
from clarion.content import runner
from clarion.fairness import FairnessError
from clarion.segment import runner as segment_runner
from clarion.segment.snapshots import SegmentError
from models.registry import Registry

pytestmark = [pytest.mark.usefixtures("prefect_server")]
CAMPAIGN, SEGMENT = "fair-test", "promising"
STRICT = "fairness:\n  min_group: 20\n  ece_gap_warn: 0.001\n  ece_gap_fail: 0.002\n  significance: 1\n"


def _copy(small_run: dict, to: Path, extra: str = "") -> Settings:
    shutil.copytree(small_run["root"], to)
    if extra:
        with (to / "clarion.yaml").open("a") as fh:
            fh.write(extra)
    return load_settings(to / "clarion.yaml", env={})


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


# -- the figures of a real run ----------------------------------------------------------------------
def test_card_report_and_cli_show_the_runs_figures_as_the_warehouse_says(
    small_run: dict, tmp_path, monkeypatch
) -> None:
    settings = _copy(small_run, tmp_path / "p")
    monkeypatch.chdir(tmp_path / "p")
    run_id = small_run["result"]["run_id"]
    report = json.loads((settings.var_dir / "reports" / run_id / "report.json").read_text())
    fair = report["fairness"]
    assert fair["run_id"] == run_id and fair["attributes"] == ["age_band"]
    html = (settings.var_dir / "reports" / run_id / "report.html").read_text()
    assert '<section id="fairness">' in html and "disparate-impact" in html
    # every segment's per-group rates, recomputed here from ml.customer_scores and marts.dim_customers
    band = "coalesce(d.age_band, 'unknown')"
    frm = "from ml.customer_scores s left join marts.dim_customers d using (contact_id) where s.run_id = ?"
    size = dict(query(settings, f"select {band}, count(*) {frm} group by 1", [run_id]))
    inside = {
        (seg, g): k
        for seg, g, k in query(settings, f"select s.segment, {band}, count(*) {frm} group by 1, 2", [run_id])
    }
    segments = {seg for seg, _ in inside}
    shown = {s["name"]: s["attributes"][0]["groups"] for s in fair["selections"] if s["kind"] == "segment"}
    assert set(shown) == segments
    min_group = settings.fairness.min_group
    for seg, groups in shown.items():
        judged = {
            g: inside.get((seg, g), 0) / n for g, n in size.items() if n >= min_group and g != "unknown"
        }
        top = max(judged.values()) if judged else None
        for r in groups:
            if size[r["group"]] < min_group:
                assert r == {"group": r["group"], "suppressed": True, "judged": False}
                continue
            assert r["customers"] == size[r["group"]]
            assert r["rate"] == pytest.approx(inside.get((seg, r["group"]), 0) / size[r["group"]])
            if top:
                assert r["di"] == pytest.approx(r["rate"] / top)
    assert any(r["suppressed"] for groups in shown.values() for r in groups)  # 300 contacts: most bands small
    # the model card of the run's version carries the same per-group figures as its meta
    version = Registry(settings.var_dir / "registry").get(fair["model_version"])
    card = (version.path / "card.md").read_text()
    used = set(version.meta["features"]) | set(version.meta["used_features"])
    assert settings.fairness.attributes and not used & set(settings.fairness.attributes)  # never inputs
    model_rows = version.meta["fairness"]["attributes"][0]["groups"]
    judged = [r for r in model_rows if not r["suppressed"]]
    assert judged and all(f"| {r['ece']:.3f} |" in card for r in judged)
    assert fair["model"]["attributes"][0]["groups"] == model_rows
    # and the CLI prints the same as JSON
    out = _invoke("fairness", "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["selections"] == json.loads(json.dumps(fair["selections"]))
    text = _invoke("fairness", "--run", run_id)
    assert text.exit_code == 0 and f"fairness of scoring run {run_id}" in text.stdout
    unknown = _invoke("fairness", "--run", "no-such-run")
    assert unknown.exit_code == 2 and "no scoring run 'no-such-run'" in unknown.output


# -- the promotion gate -------------------------------------------------------------------------------
@pytest.mark.slow  # retrains on a copy of the small run (about 30 s)
def test_a_version_with_a_fail_finding_is_not_promoted_and_the_decision_names_it(
    small_run: dict, tmp_path
) -> None:
    root = tmp_path / "p"
    settings = _copy(small_run, root, STRICT)
    result = run_pipeline_in(root, stages=["segment"], retrain=True)
    assert result["status"] == "completed", result  # the promoted version scores on
    reg = Registry(settings.var_dir / "registry")
    assert [v.name for v in reg.versions()] == ["v0001", "v0002"]
    assert reg.promoted().name == "v0001"
    fair = reg.get("v0002").meta["fairness"]
    # which findings fail, derived here from the stored per-group ECEs and the strict limit
    fails = set()
    for a in fair["attributes"]:
        judged = [r for r in a["groups"] if r["judged"]]
        best = min(r["ece"] for r in judged)
        fails |= {
            f"model:v0002:{a['attribute']}:ece_gap:{r['group']}" for r in judged if r["ece"] - best > 0.002
        }
    assert fails
    event = reg.index()["events"][-1]
    assert event["action"] == "held" and event["version"] == "v0002"
    assert all(f in event["note"] for f in fails) and "clarion models promote v0002" in event["note"]
    assert all(f in (reg.get("v0002").path / "card.md").read_text() for f in fails)
    (details,) = query(
        settings,
        "select details from audit.events where action = 'model.kept' and run_id = ?",
        [result["run_id"]],
    )[0]
    assert "fairness finding" in json.loads(details)["reason"]


@pytest.mark.slow  # trains a first version on a copy of the small run (about 30 s)
def test_a_first_version_with_a_fail_finding_is_held_and_nothing_scores(small_run: dict, tmp_path) -> None:
    root = tmp_path / "p"
    settings = _copy(small_run, root, STRICT)
    shutil.rmtree(settings.var_dir / "registry")
    with pytest.raises(
        SegmentError, match=r"not promoted v0001: fairness finding\(s\) at fail: model:v0001:"
    ):
        segment_runner.run(settings, "held-run", retrain=True)
    reg = Registry(settings.var_dir / "registry")
    assert reg.promoted() is None and [v.name for v in reg.versions()] == ["v0001"]
    assert query(settings, "select count(*) from ml.customer_scores where run_id = 'held-run'") == [(0,)]


@pytest.mark.slow  # retrains on a copy of the small run (about 30 s)
def test_a_version_erased_people_taught_never_scores_when_its_successor_is_held(
    small_run: dict, tmp_path
) -> None:
    """v0001 learnt from a person since erased; its successor is held by the fairness gate: the stage
    stops rather than score with v0001, and names both reasons."""
    root = tmp_path / "p"
    settings = _copy(small_run, root, STRICT)
    meta = settings.var_dir / "registry" / "purchase_propensity" / "v0001" / "meta.json"
    data = json.loads(meta.read_text())
    data["retrain_required"] = {"reason": "erasure", "reference": "T-1"}
    meta.write_text(json.dumps(data))
    with pytest.raises(SegmentError, match=r"not promoted v0002: .*v0001 may not score either"):
        segment_runner.run(settings, "flagged-run")
    assert Registry(settings.var_dir / "registry").promoted().name == "v0001"
    assert query(settings, "select count(*) from ml.customer_scores where run_id = 'flagged-run'") == [(0,)]


# -- the export gate ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def drafted(small_run: dict, tmp_path_factory) -> Path:
    """A copy of the small run with one approved-to-be draft of a campaign for `promising` (4 new
    tokens: the brief's own copy, so drafting costs little more than loading the model)."""
    root = tmp_path_factory.mktemp("fair_drafted") / "p"
    settings = _copy(small_run, root, "content:\n  candidates: 1\n  max_new_tokens: 4\n")
    write_tiny_brief(root / "campaigns", CAMPAIGN, SEGMENT, 1)
    runner.generate(settings, "content-fair", (CAMPAIGN,))
    return root


def _plant_age_bands(settings: Settings, run_id: str) -> None:
    """Only two judged groups: 25-34 (55 of 60 in the audience) and 65+ (10 of 60): a planted bias."""
    con = duckdb.connect(str(settings.warehouse.path))
    try:
        members = [
            r[0]
            for r in con.execute(
                "select contact_id from ml.customer_scores where run_id = ? and segment = ? order by 1",
                [run_id, SEGMENT],
            ).fetchall()
        ]
        others = [
            r[0]
            for r in con.execute(
                "select contact_id from ml.customer_scores where run_id = ? and segment <> ? order by 1",
                [run_id, SEGMENT],
            ).fetchall()
        ]
        young = members[:55] + others[:5]
        old = members[55:65] + others[5:55]
        con.execute("update marts.dim_customers set age_band = null")
        con.execute(
            "update marts.dim_customers set age_band = '25-34' where contact_id in (select unnest(?))",
            [young],
        )
        con.execute(
            "update marts.dim_customers set age_band = '65+' where contact_id in (select unnest(?))", [old]
        )
    finally:
        con.close()


@pytest.mark.slow  # loads the shipped language model once (about 30-60 s)
def test_a_biased_audience_is_not_exported_until_its_finding_is_signed_off(
    drafted: Path, tmp_path, monkeypatch
) -> None:
    root = tmp_path / "p"
    shutil.copytree(drafted, root)
    monkeypatch.chdir(root)
    settings = load_settings(root / "clarion.yaml", env={})
    (d,) = [d for d in runner.list_drafts(settings, campaign=CAMPAIGN) if d["status"] == "pending"]
    _plant_age_bands(settings, d["scoring_run_id"])
    runner.decide(settings, d["draft_id"], "approve", "marketing-lead", "ok")
    finding = f"audience:{d['scoring_run_id']}:{CAMPAIGN}:{SEGMENT}:age_band:di:65+"
    # independent: the audience's share of each planted group, from the warehouse
    (rates,) = query(
        settings,
        """
        select avg((s.segment = ?)::int) filter (where d.age_band = '25-34'),
               avg((s.segment = ?)::int) filter (where d.age_band = '65+')
        from ml.customer_scores s join marts.dim_customers d using (contact_id) where s.run_id = ?
        """,
        [SEGMENT, SEGMENT, d["scoring_run_id"]],
    )
    assert (
        rates == pytest.approx((55 / 60, 10 / 60))
        and rates[1] / rates[0] < settings.fairness.disparate_impact_fail
    )

    with pytest.raises(FairnessError, match="export refused") as refused:
        runner.export(settings, CAMPAIGN)
    assert finding in str(refused.value) and "clarion fairness accept" in str(refused.value)
    assert f"{rates[1] / rates[0]:.3f}" in str(refused.value)
    assert query(settings, "select count(*) from content.exports") == [(0,)]
    assert not (settings.var_dir / "exports").exists() or not list(
        (settings.var_dir / "exports").rglob("*.csv")
    )
    cli_refused = _invoke("export", "--campaign", CAMPAIGN)
    assert cli_refused.exit_code == 2 and finding in cli_refused.output

    listed = json.loads(_invoke("fairness", "--json").stdout)
    (open_,) = [f for f in listed["findings"] if f["id"] == finding]
    assert open_["severity"] == "fail" and open_["signed_off"] is None

    assert (
        _invoke(
            "fairness", "accept", "audience:nope:x:y:age_band:di:65+", "--by", "Dana", "--because", "x"
        ).exit_code
        == 2
    )
    no_reason = _invoke("fairness", "accept", finding, "--by", "Dana Ruiz", "--because", " ")
    assert no_reason.exit_code == 2 and "needs a reason" in no_reason.output
    ok = _invoke(
        "fairness", "accept", finding, "--by", "Dana Ruiz", "--because", "age mix reviewed: seasonal offer"
    )
    assert ok.exit_code == 0, ok.output
    assert query(
        settings, "select finding_id, severity, accepted_by, os_user, reason from privacy.fairness_signoffs"
    ) == [(finding, "fail", "Dana Ruiz", getpass.getuser(), "age mix reviewed: seasonal offer")]
    ((actor, subject, details),) = query(
        settings, "select actor, subject, details from audit.events where action = 'fairness.accepted'"
    )
    details = json.loads(details)
    assert (actor, subject, details["finding_id"], details["os_user"]) == (
        "Dana Ruiz",
        finding,
        finding,
        getpass.getuser(),
    )
    assert "seasonal" not in json.dumps(details)  # the free-text reason stays out of the audit log

    exported = runner.export(settings, CAMPAIGN)["exports"]
    email = next(e for e in exported if e["channel"] == "email")
    assert email["recipients"] > 0 and d["draft_id"] in email["drafts_exported"]
    signed = json.loads(_invoke("fairness", "--json").stdout)
    assert next(f for f in signed["findings"] if f["id"] == finding)["signed_off"]["by"] == "Dana Ruiz"
