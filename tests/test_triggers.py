"""Campaign triggers: who fires a brief's trigger between two scoring runs, the event that says so
(counts only), and the triggered campaign that exports the approved copy to those customers only.

These tests write two scoring runs straight into a real DuckDB warehouse and re-derive, customer by
customer with pandas, who must fire (exact rises and rises just under the jump included).
tests/test_triggers_server.py runs it all through the pipeline against a real Prefect server.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from trigger_helpers import (
    WINBACK,
    held_out,
    jumped_scores,
    reachable,
    sent_to,
    write_brief,
    write_contacts,
    write_drafts,
    write_scoring_run,
)

from clarion import triggers
from clarion.config import Settings
from clarion.content import runner
from clarion.warehouse import Warehouse
from models.content.brief import load_brief

REPO = Path(__file__).resolve().parents[1]
AT_RISK = ("at_risk_high_value", "at_risk_low_value")
OTHERS = ("champions", "loyal", "new")


@pytest.fixture
def settings(project, tmp_path: Path) -> Settings:
    """A project whose campaigns/ holds the shipped winback-summer (trigger: churn_jump 0.15)."""
    (tmp_path / "campaigns").mkdir()
    shutil.copy(WINBACK, tmp_path / "campaigns")
    return project()


def _connect(settings: Settings):
    return Warehouse.from_settings(settings).connect("test")


def _hits(settings: Settings, trigger_id: str) -> pd.DataFrame:
    with _connect(settings) as con:
        return con.execute(
            "select * from ml.trigger_hits where trigger_id = ? order by contact_id", [trigger_id]
        ).df()


def _scored_twice(settings: Settings, before: pd.DataFrame, after: pd.DataFrame) -> None:
    """Scoring runs run-a and, a day later, run-b."""
    with _connect(settings) as con:
        write_scoring_run(con, "run-a", 0, before)
        write_scoring_run(con, "run-b", 24, after)


def _expected_jumpers(before: pd.DataFrame, after: pd.DataFrame, jump: float, audience: tuple) -> set[int]:
    """Independently: every customer of the audience (now) whose own two scores differ by at least
    the jump, in decimal terms (a rise of exactly 0.15 counts)."""
    both = after.merge(before, on="contact_id", suffixes=("_now", "_before"), how="inner")
    rise = (both["churn_risk_now"] - both["churn_risk_before"]).round(9)
    fired = both[(rise >= jump) & both["segment_now"].isin(audience)]
    return set(fired["contact_id"].astype(int))


# -- detection ------------------------------------------------------------------------------------
def test_churn_jump_fires_for_exactly_the_audience_customers_whose_own_risk_rose_by_the_jump(
    settings: Settings,
) -> None:
    ids = np.arange(1, 1201)
    before, after = jumped_scores(ids, 0.15, seed=1, segments=AT_RISK + OTHERS)
    _scored_twice(settings, before, after)
    found = triggers.detect(settings, "run-b")

    expected = _expected_jumpers(before, after, 0.15, AT_RISK)
    [fired] = found.fired
    assert (found.scoring_run_id, found.previous_run_id) == ("run-b", "run-a")
    assert fired.trigger_id == triggers.trigger_id("run-b", "winback-summer")
    hits = _hits(settings, fired.trigger_id)
    assert set(hits["contact_id"]) == expected and hits["contact_id"].is_unique
    assert fired.customers == len(expected) == fired.by_rule["churn_jump"]
    # the boundary cases are really there: exact rises fired, rises just under did not
    both = after.merge(before, on="contact_id", suffixes=("_now", "_before"))
    rise = both["churn_risk_now"] - both["churn_risk_before"]
    exact = both[(rise.round(9) == 0.15) & (rise < 0.15) & both["segment_now"].isin(AT_RISK)]
    under = both[(rise.round(9) == 0.149) & both["segment_now"].isin(AT_RISK)]
    assert len(exact) > 5 and set(exact["contact_id"]) <= expected
    assert len(under) > 5 and not set(under["contact_id"]) & expected
    row = hits.set_index("contact_id").loc[int(exact["contact_id"].iloc[0])]
    assert row["rule"] == "churn_jump" and row["previous_run_id"] == "run-a"
    assert row["churn_after"] - row["churn_before"] == pytest.approx(0.15)


def test_enters_segment_fires_for_newcomers_to_the_segment_including_customers_scored_first_now(
    settings: Settings,
) -> None:
    folder = settings.content.briefs
    (folder / "winback-summer.yaml").unlink()
    write_brief(
        folder, "rescue-high", {"segments": ["at_risk_high_value"]}, {"enters_segment": "at_risk_high_value"}
    )
    before = pd.DataFrame(
        {
            "contact_id": [1, 2, 3, 4, 5],
            "churn_risk": [0.5, 0.5, 0.5, 0.5, 0.5],
            "segment": ["loyal", "at_risk_high_value", "at_risk_low_value", "loyal", "champions"],
        }
    )
    after = pd.DataFrame(
        {
            "contact_id": [1, 2, 3, 4, 6],  # 5 left the shop; 6 is scored for the first time
            "churn_risk": [0.5, 0.5, 0.5, 0.5, 0.5],
            "segment": [
                "at_risk_high_value",
                "at_risk_high_value",
                "at_risk_high_value",
                "loyal",
                "at_risk_high_value",
            ],
        }
    )
    _scored_twice(settings, before, after)
    [fired] = triggers.detect(settings, "run-b").fired
    hits = _hits(settings, fired.trigger_id)
    assert list(hits["contact_id"]) == [1, 3, 6]  # 2 was in it already, 4 is not in it
    assert list(hits["segment_before"].fillna("-")) == ["loyal", "at_risk_low_value", "-"]
    assert set(hits["rule"]) == {"enters_segment"}
    assert fired.by_rule == {"enters_segment": 3} and fired.rule == {"enters_segment": "at_risk_high_value"}


def test_a_customer_meeting_both_rules_is_one_hit_naming_both(settings: Settings) -> None:
    folder = settings.content.briefs
    write_brief(
        folder,
        "rescue-both",
        {"rule": "churn_risk >= 0.0"},
        {"churn_jump": 0.2, "enters_segment": "at_risk_high_value"},
    )
    before = pd.DataFrame({"contact_id": [1, 2, 3], "churn_risk": [0.1, 0.1, 0.1], "segment": ["loyal"] * 3})
    after = pd.DataFrame(
        {
            "contact_id": [1, 2, 3],
            "churn_risk": [0.5, 0.5, 0.1],
            "segment": ["at_risk_high_value", "loyal", "at_risk_high_value"],
        }
    )
    _scored_twice(settings, before, after)
    fired = {f.campaign: f for f in triggers.detect(settings, "run-b").fired}["rescue-both"]
    hits = _hits(settings, fired.trigger_id)
    assert dict(zip(hits["contact_id"], hits["rule"], strict=True)) == {
        1: "churn_jump,enters_segment",
        2: "churn_jump",
        3: "enters_segment",
    }
    assert fired.customers == 3 and fired.by_rule == {"churn_jump": 2, "enters_segment": 2}


def test_the_previous_run_is_the_latest_settled_one_not_a_failed_or_interrupted_one(
    settings: Settings,
) -> None:
    ids = np.arange(1, 401)
    old, _ = jumped_scores(ids, 0.15, seed=2, segments=AT_RISK)
    broken = old.assign(churn_risk=0.0)  # against these, every at-risk customer would have jumped
    now = old.assign(churn_risk=np.clip(old["churn_risk"] + np.where(ids % 4 == 0, 0.3, 0.0), 0, 1))
    with _connect(settings) as con:
        write_scoring_run(con, "run-a", 0, old)
        write_scoring_run(con, "run-failed", 10, broken, status="failed")
        write_scoring_run(con, "run-killed", 20, broken, status="interrupted")
        write_scoring_run(con, "run-b", 24, now)
    found = triggers.detect(settings, "run-b")
    assert found.previous_run_id == "run-a"
    assert set(_hits(settings, found.fired[0].trigger_id)["contact_id"]) == set(ids[ids % 4 == 0])
    # a run scored later than the one asked about is never its "previous" run
    assert triggers.detect(settings, "run-a").previous_run_id is None


def test_detection_again_for_the_same_run_replaces_its_hits_instead_of_adding(settings: Settings) -> None:
    ids = np.arange(1, 301)
    before, after = jumped_scores(ids, 0.15, seed=3, segments=AT_RISK)
    _scored_twice(settings, before, after)
    first = triggers.detect(settings, "run-b").fired[0]
    hits = _hits(settings, first.trigger_id)
    second = triggers.detect(settings, "run-b").fired[0]
    again = _hits(settings, second.trigger_id)
    assert second.trigger_id == first.trigger_id and second.event_id == first.event_id
    assert len(again) == len(hits) == first.customers > 0
    pd.testing.assert_frame_equal(again.drop(columns="detected_at"), hits.drop(columns="detected_at"))
    with _connect(settings) as con:
        (total,) = con.execute("select count(*) from ml.trigger_hits").fetchone()
        fired_events = con.execute(
            "select subject, details from audit.events where action = 'trigger.fired'"
        ).fetchall()
    assert total == len(hits)
    assert [s for s, _ in fired_events] == [first.trigger_id] * 2  # each detection is on record
    assert json.loads(fired_events[0][1])["customers"] == len(hits)


def test_without_an_earlier_settled_run_nothing_fires_and_the_summary_says_why(settings: Settings) -> None:
    ids = np.arange(1, 51)
    _, after = jumped_scores(ids, 0.15, seed=4, segments=AT_RISK)
    with _connect(settings) as con:
        write_scoring_run(con, "run-b", 24, after)
    found = triggers.detect(settings, "run-b")
    assert found.fired == [] and "no earlier settled scoring run" in found.note
    assert found.summary()["fired"] == []


def test_briefs_without_a_trigger_are_not_watched(project, tmp_path: Path) -> None:
    write_brief(tmp_path / "campaigns", "plain", {"segments": list(AT_RISK)}, None)
    found = triggers.detect(project(), "run-b")
    assert found.fired == [] and found.checked == [] and "has a trigger" in found.note


def test_the_event_carries_counts_and_the_rule_but_no_customer(settings: Settings) -> None:
    ids = np.arange(1001, 1601)
    before, after = jumped_scores(ids, 0.15, seed=5, segments=AT_RISK)
    _scored_twice(settings, before, after)
    [fired] = triggers.detect(settings, "run-b").fired
    event = fired.event()
    assert event["event"] == "clarion.trigger.fired"
    assert event["resource"]["prefect.resource.id"] == "clarion.campaign.winback-summer"
    assert event["payload"] == {
        "trigger_id": fired.trigger_id,
        "campaign": "winback-summer",
        "customers": fired.customers,
        "by_rule": {"churn_jump": fired.customers},
        "rule": {"churn_jump": 0.15},
        "scoring_run_id": "run-b",
        "previous_run_id": "run-a",
    }
    text = json.dumps([event["payload"], event["resource"]])
    customers = set(_hits(settings, fired.trigger_id)["contact_id"])
    assert not [c for c in customers if str(c) in text]  # ids 1001-1600 never appear
    assert event["id"] == uuid.uuid5(triggers._EVENT_IDS, fired.trigger_id)


# -- the triggered campaign -----------------------------------------------------------------------
@pytest.fixture
def fired_project(settings: Settings) -> tuple[Settings, triggers.Fired, pd.DataFrame, list[str]]:
    """Two runs, contacts with mixed consent, pending drafts of winback-summer for both segments
    (drafted from the first run), and the detection of the second."""
    ids = np.arange(1, 801)
    before, after = jumped_scores(ids, 0.15, seed=6, segments=AT_RISK + OTHERS)
    brief = load_brief(settings.content.briefs / "winback-summer.yaml")
    with _connect(settings) as con:
        people = write_contacts(con, ids, seed=6)
        write_scoring_run(con, "run-a", 0, before)
        drafts = write_drafts(con, brief, "run-a", "run-a", list(AT_RISK))
        write_scoring_run(con, "run-b", 24, after)
    [fired] = triggers.detect(settings, "run-b").fired
    return settings, fired, people, drafts


def test_a_triggered_campaign_without_approved_copy_waits_for_approval_and_says_what_to_do(
    fired_project,
) -> None:
    settings, fired, _, _ = fired_project
    result = triggers.run(settings, fired.trigger_id)
    assert result["status"] == "waiting for approval" and result["recipients"] == 0
    assert result["customers"] == fired.customers and result["exports"] == []
    assert "clarion approve" in result["next"] and fired.trigger_id in result["next"]
    assert not (settings.var_dir / "exports").exists()
    with _connect(settings) as con:
        [(subject, details)] = con.execute(
            "select subject, details from audit.events where action = 'trigger.run'"
        ).fetchall()
    assert subject == fired.trigger_id and json.loads(details)["status"] == "waiting for approval"


def test_a_triggered_campaign_exports_the_approved_copy_to_the_triggered_customers_only(
    fired_project,
) -> None:
    settings, fired, people, drafts = fired_project
    for did in drafts:
        runner.decide(settings, did, "approve", "marketing-lead", None)
    full = runner.export(settings, "winback-summer")["exports"]  # the campaign's own export first
    full_rows = {e["channel"]: sent_to(e["path"]) for e in full}
    with _connect(settings) as con:  # the drafts' run (run-a) decides the full export's audience
        audience = {
            r[0]
            for r in con.execute(
                "select contact_id from ml.customer_scores where run_id = 'run-a' and segment like 'at_risk%'"
            ).fetchall()
        }
    x = settings.experiments
    kept_out = held_out(set(people["contact_id"].astype(int)), "winback-summer", x.seed, x.holdout_share,
                        x.global_control_share)  # fmt: skip
    assert kept_out  # the default 10% holdout is at work
    assert {c: set(rows) for c, rows in full_rows.items()} == {
        c: (audience & reachable(people, c)) - kept_out for c in ("email", "sms")
    }

    result = triggers.run(settings, fired.trigger_id)

    hits = set(_hits(settings, fired.trigger_id)["contact_id"])
    assert result["status"] == "exported" and result["customers"] == len(hits) > 20
    assert {e["channel"] for e in result["exports"]} == {"email", "sms"}
    for e in result["exports"]:
        sent = sent_to(e["path"])
        assert set(sent) == (hits & reachable(people, e["channel"])) - kept_out and len(sent) == len(
            set(sent)
        )
        assert e["recipients"] + sum(e["excluded"].values()) == len(hits) and e["without_approved_copy"] == 0
        assert Path(e["path"]).parent.name == "trigger-run-b"
    # the campaign's full export (audience of the drafts' run) is still on disk, untouched
    for e in full:
        assert (
            sent_to(e["path"]) == full_rows[e["channel"]] and Path(e["path"]).parent.name == "winback-summer"
        )
    with _connect(settings) as con:
        exports = dict(con.execute("select export_id, recipients from content.exports").fetchall())
        [details] = con.execute("select details from audit.events where action = 'trigger.run'").fetchone()
    assert len(exports) == 4  # two full, two triggered
    assert json.loads(details)["recipients"] == result["recipients"] > 0


def test_customers_in_a_segment_without_approved_copy_are_counted_not_lost(fired_project) -> None:
    settings, fired, _, _ = fired_project
    with _connect(settings) as con:
        high = [
            r[0]
            for r in con.execute(
                "select draft_id from content.drafts where segment = 'at_risk_high_value'"
            ).fetchall()
        ]
        low = set(
            r[0]
            for r in con.execute(
                "select contact_id from ml.trigger_hits "
                "where trigger_id = ? and segment_after = 'at_risk_low_value'",
                [fired.trigger_id],
            ).fetchall()
        )
    for did in high:
        runner.decide(settings, did, "approve", "marketing-lead", None)
    result = triggers.run(settings, fired.trigger_id)
    assert result["status"] == "exported" and low
    for e in result["exports"]:
        assert e["without_approved_copy"] == len(low)
        assert not set(sent_to(e["path"])) & low


def test_an_unknown_trigger_is_a_clear_error(settings: Settings) -> None:
    with pytest.raises(triggers.TriggerError, match=r"no customers are stored for trigger 'nope'.*mistyped"):
        triggers.run(settings, "nope")
