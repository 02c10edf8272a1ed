"""The bad-draft corpus (tests/data/bad_drafts.yaml): every planted draft is caught by the check it
names, and the near misses beside them are let through.

Copy is rendered the way drafting renders it (models.content.drafts): the text goes into one slot of
the real example brief's templates, its seeds fill the other slots, its offer the placeholders, the
sample recipient the rest; the meaning entries are scored by the real sentence-embedding model.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from models.content.brief import CHANNELS, SLOTS, Brief, load_briefs, validate_brief
from models.content.drafts import AI_DISCLOSURE, DraftParams, meaning_floor, preview
from models.content.guardrails import CHECKS, CheckReport, check_copy, check_slot
from models.content.meaning import default_meaning_model

REPO = Path(__file__).resolve().parents[1]
CORPUS = yaml.safe_load((REPO / "tests" / "data" / "bad_drafts.yaml").read_text(encoding="utf-8"))
BRIEFS = {b.name: b for b in load_briefs(REPO / "campaigns")}
MEANING = "meaning"


CHANNEL_SLOT = {"email": "body", "sms": "sms", "push": "push"}  # the slot a channel's copy is made around


def _brief(entry: dict[str, Any]) -> Brief:
    brief = BRIEFS[entry.get("brief", "winback-summer")]
    if "offer" not in entry:
        return brief
    data = brief.model_dump(mode="json")
    return validate_brief({**data, "offer": {**data["offer"], **entry["offer"]}}, entry["id"])


class _Keep(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _seeds(brief: Brief) -> dict[str, str]:
    """Every slot's seed (derived where the brief has none of its own): the brief's own copy."""
    return brief.seeds.all()


def report(entry: dict[str, Any]) -> CheckReport:
    """The guardrails' report on the entry's text where it goes."""
    brief, where = _brief(entry), entry["where"]
    if where not in CHANNELS:
        return check_slot(entry["text"], brief, where)
    words = {**_seeds(brief), entry.get("slot", CHANNEL_SLOT[where]): entry["text"]}
    templates, content = {}, {}
    for part in brief.parts(where):
        template = brief.template(part)
        if part == "email_body" and brief.disclose_ai:
            template = f"{template}\n\n{AI_DISCLOSURE}"
        templates[part] = template.format_map(_Keep(words))
        content[part] = template.format_map(_Keep({**words, **brief.facts()}))
    return check_copy(preview(content), brief, where, templates=templates)


BAD = CORPUS["bad"]
GOOD = CORPUS["good"]
GUARDED = [e for e in BAD if e["check"] != MEANING]
DRIFTS = [e for e in BAD if e["check"] == MEANING]


def test_the_corpus_is_well_formed_and_covers_what_the_review_found() -> None:
    ids = [e["id"] for e in BAD + GOOD]
    assert len(ids) == len(set(ids)), "ids are unique"
    for e in BAD + GOOD:
        assert e["where"] in (*CHANNELS, *SLOTS), e["id"]
        assert e.get("brief", "winback-summer") in BRIEFS, e["id"]
        assert isinstance(e["text"], str) and e["text"].strip(), e["id"]
    assert {e["check"] for e in BAD} <= {*CHECKS, MEANING}
    assert all(set(e["passes"]) <= set(CHECKS) for e in GOOD)
    by_check = {c: sum(e["check"] == c for e in BAD) for c in ("invented_facts", "offensive", MEANING)}
    assert by_check["invented_facts"] >= 15 and by_check["offensive"] >= 5 and by_check[MEANING] >= 3
    texts = " ".join(e["text"] for e in BAD).lower()
    for phrase in ("sixteen percent", "per cent", "half the price", "buy one, get one free", "bogo"):
        assert phrase in texts, phrase
    assert "free shipping" in texts and "WELCOMEBACK" in " ".join(e["text"] for e in BAD)
    assert {e["where"] for e in BAD} >= {"email", "sms", "push", "headline", "body"}


@pytest.mark.parametrize("entry", GUARDED, ids=[e["id"] for e in GUARDED])
def test_each_bad_draft_fails_the_check_it_names(entry: dict[str, Any]) -> None:
    got = report(entry)
    failed = {c.name for c in got.failed if c.severity == "block"}
    assert entry["check"] in failed, got.to_json()
    assert got.blocked


@pytest.mark.parametrize("entry", GOOD, ids=[e["id"] for e in GOOD])
def test_each_near_miss_passes_the_checks_it_names(entry: dict[str, Any]) -> None:
    got = report(entry)
    failed = {c.name: c.detail for c in got.failed}
    assert not set(entry["passes"]) & set(failed), failed


@cache
def _meaning():
    return default_meaning_model()


@pytest.mark.parametrize("entry", DRIFTS, ids=[e["id"] for e in DRIFTS])
def test_meaning_drift_passes_the_slot_checks_and_fails_the_meaning_floor(entry: dict[str, Any]) -> None:
    brief, slot = _brief(entry), entry["where"]
    assert entry["where"] not in CHANNELS, "meaning is checked on a slot against its seed"
    failed = {c.name for c in check_slot(entry["text"], brief, slot).failed if c.severity == "block"}
    assert not failed, failed  # only the meaning check can catch it
    seed = _seeds(brief)[slot]
    (score,) = _meaning().similarity([entry["text"]], seed)
    assert score < meaning_floor(DraftParams(), slot), (entry["text"], seed, float(score))


def test_a_finding_names_what_it_found_its_kind_and_where() -> None:
    entry = {
        "id": "x",
        "where": "email",
        "text": "Take sixteen percent off and get free shipping with SUMMERFUN.",
    }
    (invented,) = [c for c in report(entry).failed if c.name == "invented_facts"]
    for found in (
        "'sixteen percent' (amount in words)",
        "'free shipping' (offer in words)",
        "'SUMMERFUN' (code)",
    ):
        assert f"email_body: {found} is not an offer fact of the brief" in invented.detail, invented.detail
    (offensive,) = report({"id": "y", "where": "headline", "text": "Stupid good treats"}).failed
    assert (offensive.name, offensive.detail) == ("offensive", "headline: 'Stupid' is offensive")
