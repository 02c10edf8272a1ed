"""A content run that stops before its drafting finishes (killed, failed) is never reviewed, exported or
reported, and the next content run replaces the drafts it left that nobody decided on.

Fast checks on a small warehouse written here (real DuckDB, the real export, review and report code);
tests/test_reliability_content.py kills the real `clarion content` and `clarion export` instead.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from project_helpers import write_tiny_brief

from clarion import runs
from clarion.config import Settings
from clarion.content import runner
from clarion.content.store import DRAFT_COLUMNS
from clarion.report.activity import content as report_content
from clarion.warehouse import Warehouse
from models.content.brief import load_brief
from models.content.drafts import AI_DISCLOSURE, Draft, content_hash
from models.content.guardrails import CheckReport
from models.content.prompts import slot_prompt

SCORING = "20260101T000000Z-scoring"
FINISHED = "20260102T000000Z-finished"  # drafted kill-a to the end; its draft is approved
STOPPED = "20260103T000000Z-stopped"  # killed after kill-a's drafts were committed
NOW = "20260104T000000Z-now"  # the content run drafting now
REJECTED = "20260102T120000Z-rejected"  # stopped too, but a person rejected its draft
# contact id -> (segment, e-mail consent, marketing objection); ids 1-4 may get kill-a's e-mail
MEMBERS = {
    1: ("promising", True, False),
    2: ("promising", True, False),
    3: ("promising", True, False),
    4: ("promising", True, False),
    5: ("promising", False, False),
    6: ("promising", True, True),
    7: ("hibernating", True, False),
}
T0 = datetime(2026, 1, 5, tzinfo=UTC)


@pytest.fixture
def settings(project) -> Settings:
    """A warehouse with one scoring run, its customers, two briefs, and the runs FINISHED (content
    recorded), STOPPED (interrupted before its content stage was recorded) and NOW (running)."""
    s = project()
    for name in ("kill-a", "kill-b"):
        write_tiny_brief(s.content.briefs, name, "promising", variants=1)
    with Warehouse.from_settings(s).connect("test set-up") as con:
        runner.ensure_tables(con)
        con.execute(
            "create table ml.customer_scores (run_id varchar, contact_id bigint, segment varchar, "
            "model_version varchar, as_of date, scored_at timestamptz)"
        )
        con.execute(
            "create table marts.dim_customers (contact_id bigint, email_consent boolean, "
            "sms_consent boolean, marketing_objection boolean)"
        )
        con.execute(
            "create table raw.contacts (contact_id bigint, first_name varchar, email varchar, phone varchar)"
        )
        for cid, (segment, consent, objection) in MEMBERS.items():
            con.execute(
                "insert into ml.customer_scores values (?, ?, ?, 'v1', '2026-01-01', now())",
                [SCORING, cid, segment],
            )
            con.execute("insert into marts.dim_customers values (?, ?, false, ?)", [cid, consent, objection])
            con.execute(
                "insert into raw.contacts values (?, ?, ?, null)", [cid, f"P{cid}", f"p{cid}@example.test"]
            )
        for run_id in (FINISHED, STOPPED, NOW):
            runs.start_run(con, run_id=run_id, command="clarion content", config_hash="test")
        runs.record_stage(con, FINISHED, "content", {"campaigns": []})
        runs.finish_run(con, FINISHED, status="completed", stages={"content": {"campaigns": []}})
        runs.mark_interrupted(con, NOW)  # STOPPED lost its process
        con.execute("update audit.runs set status = 'running' where run_id = ?", [NOW])
    return s


def _draft(settings: Settings, run_id: str, campaign: str, minutes: int, headline: str) -> str:
    brief = load_brief(settings.content.briefs / f"{campaign}.yaml")
    content = {
        "email_subject": headline,
        "email_body": f"Hi {{first_name}}, {headline}. Use COMEBACK15 for 15% off.\n\n{AI_DISCLOSURE}",
    }
    content = {part: content.get(part, headline) for part in brief.parts("email")}  # a preheader too
    did = runner.draft_id(run_id, campaign, "promising", "email", "A", content_hash(content))
    at = T0 + timedelta(minutes=minutes)
    values = {
        "draft_id": did,
        "run_id": run_id,
        "scoring_run_id": SCORING,
        "campaign": campaign,
        "segment": "promising",
        "channel": "email",
        "variant": "A",
        "status": "pending",
        "content": json.dumps(content),
        "content_sha256": content_hash(content),
        "fallback": False,
        "ai_generated": True,
        "checks": "[]",
        "provenance": json.dumps({"run_id": run_id, "brief": {"sha256": brief.sha256()}}),
        "created_at": at,
        "updated_at": at,
    }
    with Warehouse.from_settings(settings).connect("test drafts") as con:
        con.execute(
            f"insert into content.drafts values ({', '.join('?' * len(DRAFT_COLUMNS))})",
            [values[c] for c in DRAFT_COLUMNS],
        )
        con.execute(
            "insert into content.prompts values (?, ?, 'promising', 'headline', 'sha', 'system', 'text', ?)",
            [run_id, campaign, at],
        )
    return did


def _rows(settings: Settings, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(settings.warehouse.path), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def _consenting(segment: str) -> set[int]:
    return {
        cid
        for cid, (seg, consent, objection) in MEMBERS.items()
        if seg == segment and consent and not objection
    }


def test_export_passes_over_a_later_run_that_stopped_before_its_drafting_finished(settings: Settings) -> None:
    approved = _draft(settings, FINISHED, "kill-a", 0, "We saved something for you")
    runner.decide(settings, approved, "approve", "marketing-lead", None)
    half = _draft(settings, STOPPED, "kill-a", 10, "We kept something for you")  # newer, never finished

    [email] = runner.export(settings, "kill-a")["exports"]

    assert email["drafts_exported"] == [approved] and half not in email["drafts_held"]
    with Path(email["path"]).open(newline="") as fh:
        exported = {int(row["contact_id"]) for row in csv.DictReader(fh)}
    assert exported == _consenting("promising") and email["recipients"] == len(exported)
    assert _rows(settings, "select export_id from content.exports") == [(f"{FINISHED}-kill-a-email",)]


def test_with_only_an_unfinished_runs_drafts_export_refuses_and_says_to_draft_again(
    settings: Settings,
) -> None:
    _draft(settings, STOPPED, "kill-a", 10, "We kept something for you")

    with pytest.raises(runner.ContentError) as failure:
        runner.export(settings, "kill-a")

    message = str(failure.value)
    assert STOPPED in message and "stopped before their drafting finished" in message
    assert "`clarion content`" in message
    assert _rows(settings, "select count(*) from content.exports") == [(0,)]
    assert not (settings.var_dir / "exports").exists()


def test_drafts_of_an_unfinished_run_are_not_offered_for_review_and_cannot_be_decided(
    settings: Settings,
) -> None:
    finished = _draft(settings, FINISHED, "kill-a", 0, "We saved something for you")
    half = _draft(settings, STOPPED, "kill-a", 10, "We kept something for you")

    assert [d["draft_id"] for d in runner.list_drafts(settings)] == [finished]
    assert [d["draft_id"] for d in runner.list_drafts(settings, status="pending")] == [finished]
    assert [d["draft_id"] for d in runner.list_drafts(settings, run_id=STOPPED)] == [half]  # its own report
    for decide in (
        lambda: runner.decide(settings, half, "approve", "marketing-lead", None),
        lambda: runner.decide(settings, half, "reject", "marketing-lead", "not now"),
        lambda: runner.edit(settings, half, "email_subject", "Welcome back", "marketing-lead"),
    ):
        with pytest.raises(runner.ContentError, match="stopped before its drafting finished"):
            decide()
    assert _rows(settings, "select count(*) from content.decisions") == [(0,)]
    assert _rows(settings, "select status from content.drafts where draft_id = ?", [half]) == [("pending",)]


def test_the_report_shows_the_latest_finished_drafts_of_a_campaign(settings: Settings) -> None:
    _draft(settings, FINISHED, "kill-a", 0, "We saved something for you")
    _draft(settings, STOPPED, "kill-a", 10, "We kept something for you")

    with Warehouse.from_settings(settings).read() as con:
        shown = report_content(con, {"run_id": SCORING})

    [campaign] = shown["campaigns"]
    assert campaign["content_run_id"] == FINISHED and len(campaign["drafts"]) == 1
    assert campaign["drafts"][0]["parts"]["email_subject"] == "We saved something for you"


def test_storing_a_campaigns_drafts_replaces_only_the_undecided_drafts_an_unfinished_run_left_of_it(
    settings: Settings,
) -> None:
    kept_finished = _draft(settings, FINISHED, "kill-a", 0, "We saved something for you")
    replaced = _draft(settings, STOPPED, "kill-a", 10, "We kept something for you")
    other_campaign = _draft(settings, STOPPED, "kill-b", 11, "We kept something for you")
    with Warehouse.from_settings(settings).connect("an older stopped run") as con:
        runs.start_run(con, run_id=REJECTED, command="clarion content", config_hash="test")
        runs.mark_interrupted(con, NOW)
        con.execute("update audit.runs set status = 'running' where run_id = ?", [NOW])
    decided = _draft(settings, REJECTED, "kill-a", 5, "We miss you")
    with Warehouse.from_settings(settings).connect("a decision taken earlier") as con:
        con.execute(
            "insert into content.decisions (draft_id, decision, decided_by, note, content_sha256, via, "
            "decided_at) values (?, 'reject', 'marketing-lead', 'no', 'sha', 'cli', now())",
            [decided],
        )
    brief = load_brief(settings.content.briefs / "kill-a.yaml")
    content = {"email_subject": "Welcome back", "email_body": "Hi {first_name}, use COMEBACK15 for 15% off."}
    new = Draft("kill-a", "promising", "email", "A", content, CheckReport(()), False, True, {})

    prompt = slot_prompt(brief, "promising", "headline", [])

    runner._store(Warehouse.from_settings(settings), NOW, SCORING, brief, [new], [prompt])

    left = {r[0] for r in _rows(settings, "select draft_id from content.drafts")}
    stored = runner.draft_id(NOW, "kill-a", "promising", "email", "A", content_hash(content))
    assert left == {kept_finished, other_campaign, decided, stored} and replaced not in left
    prompts = set(_rows(settings, "select run_id, campaign from content.prompts"))
    assert prompts == {
        (FINISHED, "kill-a"),
        (NOW, "kill-a"),
        (STOPPED, "kill-b"),  # another campaign: its own next drafting replaces it
        (REJECTED, "kill-a"),  # its draft has a decision: what was sent to the model stays on record
    }
