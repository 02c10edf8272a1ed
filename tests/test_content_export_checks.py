"""What the export checks before a draft reaches a customer, beyond its approval: the brief it was
approved under is still the brief, the AI disclosure line is still there (an edit cannot remove it),
each first name merged in looks like a name, and the file's columns are the channel's parts.

Fast: a small warehouse written here (real DuckDB, the real review and export code), a brief of the
repository's test helpers, drafts made of the brief's own copy with the disclosure drafting adds.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
from project_helpers import write_tiny_brief

from clarion import audit, runs
from clarion.config import Settings
from clarion.content import runner
from clarion.content.holds import BRIEF_CHANGED, held_back
from clarion.content.store import DRAFT_COLUMNS, get_draft
from clarion.oversight import tiers
from clarion.warehouse import Warehouse
from models.content import greeting
from models.content.brief import load_brief
from models.content.drafts import AI_DISCLOSURE, content_hash

CAMPAIGN = "greet-a"
SCORING = "20260101T000000Z-scoring"
RUN = "20260102T000000Z-content"
# contact id -> the first name in the CRM, and the greeting the e-mail must open with
NAMES: dict[int, tuple[str | None, str]] = {
    1: ("Anna", "Anna"),
    2: ("  José ", "José"),
    3: ("Mary-Jane O'Neil", "Mary-Jane O'Neil"),
    4: ("Zoë", "Zoë"),
    5: ("Björn Ågren", "Björn Ågren"),
    6: ("Li Wei", "Li Wei"),
    7: ("Sinéad O’Brien", "Sinéad O’Brien"),
    8: (None, "there"),
    9: ("   ", "there"),
    10: ("<b>Bob</b>", "there"),
    11: ("https://evil.example.net/win", "there"),
    12: ("Bob123", "there"),
    13: ("bob@example.org", "there"),
    14: ("A" * 41, "there"),
    15: ("Anna\nBcc: all", "there"),
    16: ("www.cheap.example", "there"),
    17: ("{first_name}", "there"),
    18: ("Dr. Who", "there"),
    19: ("Anna--Lena", "there"),
}
MISSING = {8, 9}


@pytest.fixture
def settings(project) -> Settings:
    """One scoring run whose segment `promising` holds every contact of NAMES (all consenting, with an
    e-mail address), the brief greet-a for it, and the content run RUN that finished drafting."""
    s = project("experiments:\n  holdout_share: 0\n")
    write_tiny_brief(s.content.briefs, CAMPAIGN, "promising", variants=1)
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
        for cid, (name, _) in NAMES.items():
            con.execute(
                "insert into ml.customer_scores values (?, ?, 'promising', 'v1', '2026-01-01', now())",
                [SCORING, cid],
            )
            con.execute("insert into marts.dim_customers values (?, true, false, false)", [cid])
            con.execute(
                "insert into raw.contacts values (?, ?, ?, null)", [cid, name, f"c{cid}@example.test"]
            )
        runs.start_run(con, run_id=RUN, command="clarion content", config_hash="test")
        runs.record_stage(con, RUN, "content", {"campaigns": [CAMPAIGN]})
        runs.finish_run(con, RUN, status="completed", stages={"content": {"campaigns": [CAMPAIGN]}})
    return s


def _brief(settings: Settings):
    return load_brief(settings.content.briefs / f"{CAMPAIGN}.yaml")


def _store(settings: Settings, *, ai: bool = True, disclosed: bool = True, variant: str = "A") -> str:
    """A pending e-mail draft of the brief's own copy, as drafting stores it: when the model helped
    (``ai``) its body ends with the disclosure line (unless ``disclosed`` is False)."""
    brief = _brief(settings)
    content = tiers.own_copy(brief, "email")
    if ai and disclosed:
        content["email_body"] += f"\n\n{AI_DISCLOSURE}"
    sha = content_hash(content)
    did = runner.draft_id(RUN, CAMPAIGN, "promising", "email", variant, sha)
    now = datetime.now(UTC)
    values = {
        "draft_id": did,
        "run_id": RUN,
        "scoring_run_id": SCORING,
        "campaign": CAMPAIGN,
        "segment": "promising",
        "channel": "email",
        "variant": variant,
        "status": "pending",
        "content": json.dumps(content),
        "content_sha256": sha,
        "fallback": not ai,
        "ai_generated": ai,
        "checks": "[]",
        "provenance": json.dumps({"run_id": RUN, "brief": {"name": CAMPAIGN, "sha256": brief.sha256()}}),
        "created_at": now,
        "updated_at": now,
    }
    with Warehouse.from_settings(settings).connect("test drafts") as con:
        con.execute(
            f"insert into content.drafts values ({', '.join('?' * len(DRAFT_COLUMNS))})",
            [values[c] for c in DRAFT_COLUMNS],
        )
    return did


def _approved(settings: Settings, **kw) -> str:
    did = _store(settings, **kw)
    runner.decide(settings, did, "approve", "marketing-lead", None)
    return did


def _export(settings: Settings) -> dict[str, Any]:
    [email] = runner.export(settings, CAMPAIGN)["exports"]
    return email


def _csv(path: str) -> tuple[list[str], list[dict[str, str]]]:
    with Path(path).open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def _query(settings: Settings, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(settings.warehouse.path), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def _held_now(settings: Settings, did: str) -> str | None:
    """What the web app shows on the draft's page: held_back with the brief as it is now."""
    con = duckdb.connect(str(settings.warehouse.path), read_only=True)
    try:
        return held_back(con, tiers.current_brief(settings, CAMPAIGN), get_draft(con, did))
    finally:
        con.close()


# -- first names ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "want"), list(NAMES.values()), ids=[str(k) for k in NAMES])
def test_a_first_name_is_merged_only_if_it_looks_like_one(raw: str | None, want: str) -> None:
    name, why = greeting.first_name(raw)
    assert name == want
    assert why == (
        None if want != "there" else greeting.MISSING if not (raw or "").strip() else greeting.INVALID
    )


def test_first_name_limits() -> None:
    assert greeting.valid("A" * 40) and not greeting.valid("A" * 41)
    assert greeting.valid("Ólafur") and greeting.valid("Ngũgĩ") and greeting.valid("Дмитрий")
    assert greeting.first_name("Zoe\u0308")[0] == "Zoë"  # a combining diaeresis is composed first
    for bad in ("-Anna", "Anna-", "'Anna", "Anna ", "An  na", "Anna;", "Anna&Bob", "Anna_B", "Anna😀"):
        assert not greeting.valid(bad), bad


def test_the_export_greets_a_bad_or_missing_name_neutrally_and_counts_it_without_the_name(
    settings: Settings,
) -> None:
    did = _approved(settings)
    email = _export(settings)
    _, rows = _csv(email["path"])
    assert {int(r["contact_id"]) for r in rows} == set(NAMES) and email["recipients"] == len(NAMES)
    for r in rows:
        assert r["draft_id"] == did
        assert r["email_body"].startswith(f"Hi {NAMES[int(r['contact_id'])][1]},\n\n"), r["email_body"][:80]
    invalid = sum(1 for cid, (_, want) in NAMES.items() if want == "there" and cid not in MISSING)
    assert email["notes"] == {
        "neutral greeting: no first name on record": len(MISSING),
        "neutral greeting: first name failed validation": invalid,
    }
    assert email["excluded"] == {}  # a neutral greeting is sent, not left out
    (record,) = _query(settings, "select drafts from content.exports")
    assert json.loads(record[0])["notes"] == email["notes"]
    (details,) = _query(settings, "select details from audit.events where action = ?", [audit.EXPORT_WRITTEN])
    assert json.loads(details[0])["notes"] == email["notes"]
    logged = json.dumps(_query(settings, "select * from audit.events"), default=str)
    for raw, want in NAMES.values():  # the record and the audit log name no one
        if (raw or "").strip() and want == "there":
            assert raw.strip() not in json.dumps(record) and json.dumps(raw.strip())[1:-1] not in logged


# -- columns ----------------------------------------------------------------------------------------
def test_the_files_columns_are_the_channels_parts_filled(settings: Settings) -> None:
    did = _approved(settings)
    header, rows = _csv(_export(settings)["path"])
    parts = list(_brief(settings).parts("email"))
    assert parts[0] == "email_subject" and "email_body" in parts
    assert header == ["contact_id", "to", "draft_id", "variant", *parts, "ai_generated", "ai_disclosure"]
    with Warehouse.from_settings(settings).connect("test read") as con:
        content = get_draft(con, did)["content"]
    anna = next(r for r in rows if r["contact_id"] == "1")
    for part in parts:
        assert anna[part] == content[part].replace("{first_name}", "Anna") and anna[part].strip()
    assert (anna["ai_generated"], anna["ai_disclosure"]) == ("true", AI_DISCLOSURE)


# -- the brief it was approved under ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("code: COMEBACK15", "code: COMEBACK20"),  # the offer
        ("discount: 15%", "discount: 20%"),
        ("segments: [promising]", "segments: [promising, hibernating]"),  # the audience
        ("segments: [promising]", "rule: \"segment = 'promising' and churn_risk >= 0.5\""),
        ("tone: warm, personal, no pressure", "tone: upbeat"),  # anything the copy is drafted from
    ],
    ids=["code", "discount", "segments", "rule", "tone"],
)
def test_a_brief_changed_since_approval_holds_the_draft_back(settings: Settings, old: str, new: str) -> None:
    did = _approved(settings)
    path = settings.content.briefs / f"{CAMPAIGN}.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    email = _export(settings)
    assert email["recipients"] == 0 and email["drafts_exported"] == []
    why = email["drafts_held"][did]
    assert why.startswith(BRIEF_CHANGED) and f"clarion content --campaign {CAMPAIGN}" in why
    assert _held_now(settings, did) == why  # the web app shows the same reason
    path.write_text(text)  # the brief as approved again: the draft goes out
    assert _export(settings)["recipients"] == len(NAMES) and _held_now(settings, did) is None


def test_comments_layout_and_delivery_fields_are_not_a_change(settings: Settings) -> None:
    did = _approved(settings)
    path = settings.content.briefs / f"{CAMPAIGN}.yaml"
    text = path.read_text()
    path.write_text(
        "# reviewed again by legal, no change\n"
        + text.replace("tone: warm", "tone:    warm").replace("variants: 1", "variants: 1  # one is enough")
        + "budget: 500\nactive: true\n"
    )
    assert _held_now(settings, did) is None
    assert _export(settings)["recipients"] == len(NAMES)


def test_a_draft_without_the_brief_it_was_drafted_under_is_held_back(settings: Settings) -> None:
    did = _approved(settings)
    with Warehouse.from_settings(settings).connect("test tamper") as con:
        con.execute("update content.drafts set provenance = '{}' where draft_id = ?", [did])
    why = _export(settings)["drafts_held"][did]
    assert why.startswith(BRIEF_CHANGED) and "no brief sha256 on record" in why


# -- the AI disclosure ------------------------------------------------------------------------------
def test_an_edit_cannot_remove_the_ai_disclosure(settings: Settings) -> None:
    did = _store(settings)
    with Warehouse.from_settings(settings).connect("test read") as con:
        body = get_draft(con, did)["content"]["email_body"]
    without = body.replace(f"\n\n{AI_DISCLOSURE}", "")
    assert without != body
    with pytest.raises(
        runner.ContentError, match="removes the AI disclosure line from email_body"
    ) as refused:
        runner.edit(settings, did, "email_body", without, "marketing-lead")
    assert AI_DISCLOSURE in str(refused.value) and "leave that line in" in str(refused.value)
    reworded = body.replace(AI_DISCLOSURE, "Written by our team.")
    with pytest.raises(runner.ContentError, match="AI disclosure"):
        runner.edit(settings, did, "email_body", reworded, "marketing-lead")
    with Warehouse.from_settings(settings).connect("test read") as con:
        assert get_draft(con, did)["content"]["email_body"] == body  # nothing was written
    assert _query(settings, "select count(*) from content.decisions where draft_id = ?", [did]) == [(0,)]

    kept = body.replace("Hi {first_name},", "Hello {first_name},")
    edited = runner.edit(settings, did, "email_body", kept, "marketing-lead")
    assert edited["status"] == "pending"
    runner.edit(settings, did, "email_subject", "A little something for you: 15% off", "marketing-lead")
    runner.decide(settings, did, "approve", "marketing-lead", None)
    _, rows = _csv(_export(settings)["path"])
    assert rows and all(r["email_body"].endswith(AI_DISCLOSURE) for r in rows)


def test_an_edit_of_ai_copy_without_the_line_must_put_it_in(settings: Settings) -> None:
    did = _store(settings, disclosed=False)  # a draft stored before the line was required
    with Warehouse.from_settings(settings).connect("test read") as con:
        body = get_draft(con, did)["content"]["email_body"]
    with pytest.raises(runner.ContentError, match="AI disclosure"):
        runner.edit(settings, did, "email_body", body.replace("Hi ", "Hello "), "marketing-lead")
    edited = runner.edit(settings, did, "email_body", f"{body}\n\n{AI_DISCLOSURE}", "marketing-lead")
    assert edited["status"] == "pending"


def test_export_holds_back_ai_copy_without_the_disclosure_and_sends_the_brief_own_copy(
    settings: Settings,
) -> None:
    undisclosed = _approved(settings, disclosed=False)
    email = _export(settings)
    assert email["recipients"] == 0
    assert "AI disclosure line is missing" in email["drafts_held"][undisclosed]
    assert _held_now(settings, undisclosed) == email["drafts_held"][undisclosed]

    own = _approved(settings, ai=False, variant="B")  # no model words: no line, nothing held
    email = _export(settings)
    assert email["drafts_exported"] == [own] and email["recipients"] == len(NAMES)
    _, rows = _csv(email["path"])
    assert all((r["ai_generated"], r["ai_disclosure"]) == ("false", "") for r in rows)
