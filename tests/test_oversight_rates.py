"""Override rates (clarion.oversight.rates, `clarion oversight`): drafts edited or rejected by a
person per campaign, brief version, content model, scoring model version and content run, and
policy approvals a person reversed; every figure re-derived here from content.decisions.

A small warehouse written here: two scoring runs (model versions v0001, v0002), two content runs
with the briefs' own copy as drafts (tests/trigger_helpers), and decisions made through the real
review code (approve, reject, edit, the low tier's policy).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
import yaml
from click.testing import CliRunner
from trigger_helpers import WINBACK, write_drafts

from clarion.cli import cli
from clarion.config import Settings
from clarion.content import runner
from clarion.oversight import card_figures, summary, tiers
from clarion.segment.scoring import ensure_tables as ensure_ml_tables
from clarion.warehouse import Warehouse
from models.card import oversight_section
from models.content.brief import load_brief

RUNS = {"20990101T000000Z-first": ("S1", "v0001"), "20990102T000000Z-second": ("S2", "v0002")}
SEGMENTS = ["promising", "hibernating"]


def _brief(settings: Settings, name: str, tier: str, variants: int, goal: str = "Bring them back") -> None:
    data = yaml.safe_load(WINBACK.read_text())
    data.pop("trigger", None)
    data.update(name=name, goal=goal, channels=["email"], variants=variants, risk_tier=tier)
    data["audience"] = {"segments": SEGMENTS}
    settings.content.briefs.mkdir(exist_ok=True)
    (settings.content.briefs / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def _write(settings: Settings, run: str) -> dict[str, list[str]]:
    scoring, version = RUNS[run]
    with Warehouse.from_settings(settings).connect("test set-up") as con:
        ensure_ml_tables(con)
        con.execute(
            "insert into ml.segments (run_id, as_of, model_version, segment, customers, scored_at) "
            "select ?, date '2099-01-01', ?, unnest(?), 10, ?",
            [scoring, version, SEGMENTS, datetime(2099, 1, 1, tzinfo=UTC)],
        )
        return {
            name: write_drafts(
                con, load_brief(settings.content.briefs / f"{name}.yaml"), run, scoring, SEGMENTS
            )
            for name in ("camp-a", "camp-b")
        }


@pytest.fixture(scope="module")
def decided(tmp_path_factory) -> tuple[Settings, dict]:
    """camp-a (standard, 2 variants) and camp-b (low, 1 variant) drafted twice; camp-a's brief
    changes between the runs. What people did is planted so that each count is known."""
    from clarion.config import load_settings

    root = tmp_path_factory.mktemp("oversight_rates")
    (root / "clarion.yaml").write_text(
        "warehouse:\n  path: var/warehouse.duckdb\ncontent:\n  briefs: campaigns\n"
    )
    cwd = Path.cwd()
    os.chdir(root)
    try:
        s = load_settings(root / "clarion.yaml", env={})
        _brief(s, "camp-a", "standard", 2)
        _brief(s, "camp-b", "low", 1)
        first = _write(s, "20990101T000000Z-first")
        a, b = first["camp-a"], first["camp-b"]
        runner.decide(s, a[0], "approve", "marketing-lead", None)
        runner.decide(s, a[1], "reject", "marketing-lead", "too pushy")
        runner.edit(s, a[2], "email_subject", "We kept something for you: 15% off", "marketing-lead")
        runner.decide(s, a[2], "approve", "marketing-lead", None)
        assert tiers.approve_by_policy(s, "20990101T000000Z-first") == {"camp-b": 2}
        runner.decide(s, b[0], "reject", "compliance-officer", "not this month")  # overrides the policy
        _brief(s, "camp-a", "standard", 2, goal="Bring them back before autumn")  # a new brief version
        second = _write(s, "20990102T000000Z-second")
        a2, b2 = second["camp-a"], second["camp-b"]
        runner.decide(s, a2[0], "approve", "marketing-lead", None)
        runner.edit(s, a2[1], "email_subject", "Come back soon: 15% off", "marketing-lead")
        runner.decide(s, a2[1], "reject", "marketing-lead", "still not right")
        assert tiers.approve_by_policy(s, "20990102T000000Z-second") == {"camp-b": 2}
        runner.edit(s, b2[1], "email_subject", "A treat for you: 15% off", "marketing-lead")  # override
    finally:
        os.chdir(cwd)
    with Warehouse.from_settings(s).read() as con:
        figures = summary(con)
    return s, figures


def _independent(settings: Settings, group: str) -> dict[tuple, tuple[int, int, int, int, int]]:
    """Per group: (drafts, reviewed, edited, rejected, overridden), from content.decisions alone."""
    con = duckdb.connect(str(settings.warehouse.path), read_only=True)
    try:
        rows = con.execute(
            f"""
            with human as (select * from content.decisions where via is distinct from 'policy')
            select {group},
                   count(*),
                   count(*) filter (where draft_id in (select draft_id from human)),
                   count(*) filter (where draft_id in (select draft_id from human where decision = 'edit')),
                   count(*) filter (where draft_id in (select draft_id from human where decision = 'reject')),
                   count(*) filter (where draft_id in (select draft_id from human
                                                       where decision in ('edit', 'reject')))
            from (select d.*, json_extract_string(d.provenance, '$.brief.sha256') brief_sha256,
                         s.model_version
                  from content.drafts d
                  join (select distinct run_id, model_version from ml.segments) s
                    on s.run_id = d.scoring_run_id) d
            group by all
            """
        ).fetchall()
    finally:
        con.close()
    n = len(group.split(","))
    return {tuple(r[:n]): tuple(r[n:]) for r in rows}


def _got(rows: list[dict], keys: tuple[str, ...]) -> dict[tuple, tuple[int, int, int, int, int]]:
    fields = ("drafts", "reviewed", "edited", "rejected", "overridden")
    return {tuple(r[k] for k in keys): tuple(r[f] for f in fields) for r in rows}


def test_override_rates_per_campaign_brief_model_and_run_match_content_decisions(decided) -> None:
    settings, s = decided
    assert _got(s["by_campaign"], ("campaign",)) == _independent(settings, "campaign")
    assert _got(s["by_brief"], ("campaign", "brief_sha256")) == _independent(
        settings, "campaign, brief_sha256"
    )
    assert _got(s["by_scoring_model"], ("model_version",)) == _independent(settings, "model_version")
    assert _got(s["trend"], ("run_id",)) == _independent(settings, "run_id")
    # and the planted counts: camp-a 8 drafts, 5 reviewed, 2 edited, 2 rejected, 3 overridden
    by_campaign = _got(s["by_campaign"], ("campaign",))
    assert by_campaign[("camp-a",)] == (8, 5, 2, 2, 3)
    assert by_campaign[("camp-b",)] == (4, 2, 1, 1, 2)  # policy approvals alone are not a review
    assert len(s["by_brief"]) == 3  # camp-a's two versions, camp-b's one
    for r in s["by_campaign"] + s["trend"]:
        assert r["override_rate"] == round(r["overridden"] / r["reviewed"], 4)
    assert [t["run_id"] for t in s["trend"]] == list(RUNS)  # oldest first
    first, second = (t["override_rate"] for t in s["trend"])
    assert (first, second) == (round(3 / 4, 4), round(2 / 3, 4)) and s["direction"] == "down"


def test_policy_approvals_a_person_reversed_are_overridden_automated_decisions(decided) -> None:
    settings, s = decided
    con = duckdb.connect(str(settings.warehouse.path), read_only=True)
    try:
        policy, reversed_ = con.execute(
            """
            select count(distinct p.draft_id),
                   count(distinct p.draft_id) filter (where h.draft_id is not null)
            from content.decisions p
            left join content.decisions h on h.draft_id = p.draft_id and h.via is distinct from 'policy'
                 and h.decision in ('edit', 'reject') and h.decided_at > p.decided_at
            where p.via = 'policy' and p.decision = 'approve'
            """
        ).fetchone()
    finally:
        con.close()
    a = s["automated"]
    assert (a["policy_approvals"], a["overridden"]) == (policy, reversed_) == (4, 2)
    assert a["override_rate"] == 0.5 and "not measurable" in a["nba"]


def test_cli_prints_the_same_figures(decided, monkeypatch) -> None:
    settings, s = decided
    monkeypatch.chdir(settings.warehouse.path.parent.parent)
    out = CliRunner().invoke(cli, ["oversight", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout) == json.loads(json.dumps(s, default=str))
    text = CliRunner().invoke(cli, ["oversight"])
    assert text.exit_code == 0 and "override rate 71%" in text.output  # 5 of 7 reviewed drafts
    assert "camp-a" in text.output and "v0002" in text.output and "(trend down)" in text.output
    only = CliRunner().invoke(cli, ["oversight", "--campaign", "camp-b", "--json"])
    assert json.loads(only.stdout)["totals"]["drafts"] == 4


def test_model_card_section_states_the_figures(decided, monkeypatch) -> None:
    settings, s = decided
    monkeypatch.chdir(settings.warehouse.path.parent.parent)
    figures = card_figures(settings)
    assert figures["by_scoring_model"] == s["by_scoring_model"]
    md = oversight_section(figures)
    assert md.startswith("## Human oversight")
    assert "| v0001 | 6 | 4 | 1 | 2 | 75% |" in md and "| v0002 | 6 | 3 | 2 | 1 | 67% |" in md
    assert "No drafts had been reviewed" in oversight_section({})


def test_an_old_warehouse_without_the_principal_column_still_counts_its_approvers(tmp_path) -> None:
    """Decisions recorded before the principal column existed count under their OS user."""
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("create schema content")
    con.execute(
        "create table content.decisions (draft_id varchar, decision varchar, decided_by varchar, "
        "note varchar, content_sha256 varchar, via varchar, decided_at timestamptz, os_user varchar)"
    )
    at = datetime(2099, 1, 1, tzinfo=UTC)
    con.executemany(
        "insert into content.decisions values ('d1', 'approve', ?, null, 'sha', 'cli', ?, ?)",
        [["marketing-lead", at, "ann"], ["compliance-officer", at + timedelta(minutes=1), "ann"]],
    )
    given = tiers.approvals(con, {"draft_id": "d1", "content_sha256": "sha"})
    assert {p for p, _, _ in given} == {"os:ann"}  # one account, two names: one approver
    con.close()
