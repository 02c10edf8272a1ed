"""The content evaluation (models/content/evaluate.py): each figure checked against a count made here.

Synthetic drafts in the per-slot provenance format (``candidates``, ``usable``, ``findings`` per slot and
segment) and in the format written before it (``candidates`` per variant, ``passing``); words, shingles
and weeks are counted in this file by hand or with its own small helpers, never with the module's.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from models.content import evaluate
from models.content.guardrails import NEAR_DUPLICATE

URL = "https://shop.example.com/spring"
TAIL = "Use code SPRING15 until 2026-06-30."  # template words: Use, code, SPRING15, until, 2026-06-30


def _email(subject: str, preheader: str, body: str, cta: str) -> dict[str, str]:
    return {
        "email_subject": f"{subject}: 15% off",
        "email_preheader": preheader,
        "email_body": f"Hi {{first_name}},\n\n{subject}\n\n{body}\n\n{TAIL}\n\n{cta}: {URL}",
    }


def _slot(
    text: str, fallback: bool, candidates: int, usable: int, findings: dict[str, int]
) -> dict[str, Any]:
    return {
        "text": text,
        "fallback": fallback,
        "meaning": None if fallback else 0.8,
        "score": None if fallback else 0.7,
        "candidates": candidates,
        "usable": usable,
        "passing": usable,
        "findings": findings,
    }


def _draft(
    campaign: str,
    segment: str,
    channel: str,
    variant: str,
    content: dict[str, str],
    slots: dict[str, dict[str, Any]],
    *,
    status: str = "pending",
    failed: tuple[tuple[str, str], ...] = (),
    run_id: str = "r1",
) -> dict[str, Any]:
    checks = [{"name": n, "severity": sev, "passed": False, "detail": "x"} for n, sev in failed]
    checks.append({"name": "pii", "severity": "block", "passed": True, "detail": "ok"})
    return {
        "draft_id": f"d-{campaign}-{segment}-{channel}-{variant}",
        "run_id": run_id,
        "campaign": campaign,
        "segment": segment,
        "channel": channel,
        "variant": variant,
        "status": status,
        "content": content,
        "fallback": all(s["fallback"] for s in slots.values()),
        "ai_generated": any(not s["fallback"] for s in slots.values()),
        "checks": checks,
        "provenance": {"slots": slots},
    }


# Variant A, segment loyal: subject, preheader and body by the model, the CTA the brief's seed.
A = {
    "subject": _slot("Fresh picks for you", False, 12, 9, {"shape": 2, "invented_facts": 1}),
    "preheader": _slot("New arrivals in your size", False, 12, 6, {"length": 6}),
    "body": _slot("Our new linen shirts stay cool on warm evenings.", False, 12, 4, {"meaning": 8}),
    "cta": _slot("Shop now", True, 12, 0, {"shape": 12}),
}
# Variant B: the same segment's candidates (same counts), other texts; the body fell back.
B = {
    "subject": {**A["subject"], "text": "Your spring edit is here"},
    "preheader": {**A["preheader"], "text": "Picked for the way you shop"},
    "body": {**A["body"], "text": "We kept your favourites in stock.", "fallback": True},
    "cta": {**A["cta"]},
}
# Segment new: fewer usable subjects.
N = {
    "subject": _slot("A warm welcome awaits", False, 12, 3, {"shape": 9}),
    "preheader": _slot("Start with our bestsellers", False, 12, 12, {}),
    "body": _slot("Our guides help you find the right fit from day one.", False, 12, 6, {"language": 6}),
    "cta": _slot("See the shop", False, 12, 12, {}),
}


def _email_of(slots: dict[str, dict[str, Any]]) -> dict[str, str]:
    return _email(*(slots[k]["text"] for k in ("subject", "preheader", "body", "cta")))


def _sms(text: str) -> dict[str, str]:
    return {"sms": f"{text} 15% off with code SPRING15 until 2026-06-30: {URL}"}


@pytest.fixture
def drafts() -> list[dict[str, Any]]:
    sms = {"sms": _slot("Spring is here and so are new shirts", False, 12, 6, {"shape": 6})}
    return [
        _draft("spring", "loyal", "email", "A", _email_of(A), A),
        _draft("spring", "loyal", "email", "B", _email_of(B), B),
        # a blocked e-mail draft of segment new: not delivered, so not in the word share
        _draft(
            "spring",
            "new",
            "email",
            "A",
            _email_of(N),
            N,
            status="blocked",
            failed=(("invented_facts", "block"),),
        ),
        _draft("spring", "new", "email", "B", _email_of(N), N, failed=(("readability", "warn"),)),
        # two SMS variants with the same copy: a near-duplicate pair
        _draft("spring", "loyal", "sms", "A", _sms("Spring is here and so are new shirts"), sms),
        _draft("spring", "loyal", "sms", "B", _sms("Spring is here and so are new shirts"), sms),
    ]


def test_usable_rate_counts_each_segments_candidates_once(drafts) -> None:
    slots = evaluate.usable_rates(drafts)
    # per slot: segment loyal + segment new, each once whatever its variants and channels
    assert slots["subject"]["candidates"] == 12 + 12
    assert slots["subject"]["usable"] == 9 + 3
    assert slots["subject"]["usable_rate"] == pytest.approx(12 / 24)
    assert slots["cta"]["usable"] == 0 + 12
    assert slots["sms"]["candidates"] == 12 and slots["sms"]["usable"] == 6
    # slot texts the model wrote, one per segment x variant: body fell back in loyal/B
    assert (slots["body"]["model_written"], slots["body"]["slot_texts"]) == (3, 4)
    assert (slots["cta"]["model_written"], slots["cta"]["slot_texts"]) == (2, 4)
    # findings summed over segments, once each
    assert slots["subject"]["findings"] == {"shape": 2 + 9, "invented_facts": 1}


def test_old_provenance_uses_passing_over_candidates_times_variants() -> None:
    old = {
        "headline": {
            "text": "We saved something",
            "fallback": False,
            "meaning": 0.7,
            "candidates": 3,
            "passing": 2,
        }
    }
    seed = {"headline": {"text": "Seed", "fallback": True, "meaning": None, "candidates": 0, "passing": 0}}
    drafts = [
        _draft("legacy", "loyal", "email", "A", {"email_subject": "x"}, old),
        _draft("legacy", "loyal", "email", "B", {"email_subject": "y"}, old),
        _draft("legacy", "loyal", "sms", "A", {"sms": "z"}, old),
        # a draft whose copy was blocked and re-assembled from the seeds records no candidates
        _draft("legacy", "loyal", "sms", "B", {"sms": "w"}, seed),
    ]
    slots = evaluate.usable_rates(drafts)
    # 3 candidates per variant x 2 variants generated; 2 passed for the segment
    assert slots["headline"]["candidates"] == 6
    assert slots["headline"]["usable"] == 2
    assert slots["headline"]["findings"] is None  # not recorded by that provenance


def test_model_written_share_counts_the_model_words_as_delivered(drafts) -> None:
    m = evaluate.model_written_share(drafts)
    # Counted by hand. Template words of an e-mail: subject ": 15% off" -> 15, off (2); body "Hi X" (2),
    # TAIL (5), "{cta}:" + link (the link is no words); the slot texts' words:
    # A: subject 4 (in the subject and the body), preheader 5, body 9, cta "Shop now" 2 (seed)
    # B: subject 5 (twice), preheader 6, body 6 (seed), cta 2 (seed)
    # new/B: subject 4 (twice), preheader 4, body 11, cta 3; new/A is blocked and not counted
    a_total = (4 + 2) + 5 + (2 + 4 + 9 + 5 + 2)
    b_total = (5 + 2) + 6 + (2 + 5 + 6 + 5 + 2)
    n_total = (4 + 2) + 4 + (2 + 4 + 11 + 5 + 3)
    a_model = 4 * 2 + 5 + 9
    b_model = 5 * 2 + 6
    n_model = 4 * 2 + 4 + 11 + 3
    assert m["email_drafts"] == 3
    assert m["words"] == a_total + b_total + n_total
    assert m["model_words"] == a_model + b_model + n_model
    assert m["share"] == pytest.approx(
        (a_model + b_model + n_model) / (a_total + b_total + n_total), abs=1e-4
    )


def test_an_edited_slot_no_longer_counts_as_the_models() -> None:
    content = _email_of(A)
    content["email_preheader"] = "Written by our marketer today"
    m = evaluate.model_written_share([_draft("spring", "loyal", "email", "A", content, A)])
    assert m["model_words"] == 4 * 2 + 9  # subject twice and body; the preheader is the marketer's now


def _shingles(text: str) -> set[tuple[str, ...]]:
    w = [t.lower() for t in text.replace(":", " ").replace(",", " ").replace(".", " ").split()]
    return {tuple(w[i : i + 3]) for i in range(len(w) - 2)}


def test_diversity_and_near_duplicates_over_variant_pairs(drafts) -> None:
    d = evaluate.diversity(drafts)
    # pairs: loyal/email A-B, new/email A-B, loyal/sms A-B
    assert d["pairs"] == 3
    parts = ("email_subject", "email_preheader", "email_body")
    texts = {v: "\n\n".join(_email_of(s)[p] for p in parts) for v, s in (("A", A), ("B", B))}
    sa, sb = _shingles(texts["A"]), _shingles(texts["B"])
    loyal = len(sa & sb) / len(sa | sb)
    assert loyal < NEAR_DUPLICATE
    # new/email: the same texts (similarity 1); sms: the same texts (1)
    assert d["near_duplicate_pairs"] == 2
    assert d["near_duplicate_share"] == pytest.approx(2 / 3, abs=1e-4)
    assert d["diversity"] == pytest.approx(((1 - loyal) + 0 + 0) / 3, abs=0.02)


def _flesch(sentences: int, words: int, syllables: int) -> float:
    return 206.835 - 1.015 * words / sentences - 84.6 * syllables / words


def test_readability_scores_the_email_body_without_its_link() -> None:
    body = "Hi {first_name},\n\nWe like cats.\n\nShop now: " + URL
    d = _draft("c", "s", "email", "A", {"email_subject": "x", "email_body": body}, {})
    r = evaluate.readability([d])
    # sentences "Hi ," / "We like cats." / "Shop now:" -> 3 sentences, 6 words (Hi We like cats Shop now),
    # one syllable each
    assert r["email_body"]["n"] == 1
    assert r["email_body"]["mean"] == pytest.approx(min(100.0, _flesch(3, 6, 6)), abs=0.05)


def test_findings_and_invented_facts_on_final_drafts(drafts) -> None:
    f = evaluate.findings(drafts)
    assert f["drafts"] == 6
    assert f["blocked"] == 1
    assert f["invented_facts"] == 1
    assert f["by_check"] == {
        "invented_facts": {"severity": "block", "drafts": 1},
        "readability": {"severity": "warn", "drafts": 1},
    }


def test_decisions_per_iso_week_keep_policy_approvals_apart() -> None:
    def at(day: int, month: int = 12) -> datetime:
        return datetime(2026, month, day, 10, tzinfo=UTC)

    rows = [
        {"campaign": "spring", "decision": "approve", "decided_at": at(30, 11), "via": "cli"},  # Mon, W49
        {"campaign": "spring", "decision": "reject", "decided_at": at(6), "via": "api"},  # Sun, W49
        {"campaign": "spring", "decision": "edit", "decided_at": at(6), "via": "cli"},
        {"campaign": "spring", "decision": "approve", "decided_at": at(6), "via": "policy"},
        {
            "campaign": "autumn",
            "decision": "approve",
            "decided_at": "2026-12-07T09:00:00+00:00",
            "via": "web",
        },
    ]
    d = evaluate.decisions_by_week(rows)
    weeks = {w["week"]: w for w in d["weeks"]}
    assert list(weeks) == ["2026-W49", "2026-W50"]
    w49 = weeks["2026-W49"]
    assert (w49["approve"], w49["edit"], w49["reject"], w49["decisions"]) == (1, 1, 1, 3)
    assert w49["approve_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert w49["policy_approvals"] == 1
    assert weeks["2026-W50"]["approve_rate"] == 1.0
    assert d["totals"]["decisions"] == 4 and d["totals"]["policy_approvals"] == 1
    assert [(c["campaign"], c["week"]) for c in d["by_campaign"]] == [
        ("autumn", "2026-W50"),
        ("spring", "2026-W49"),
    ]


def test_evaluate_groups_by_campaign_and_is_json(drafts) -> None:
    other = _draft("autumn", "loyal", "push", "A", {"push": "Cosy layers: 10% off with code X"}, {})
    out = evaluate.evaluate([*drafts, other])
    assert [c["campaign"] for c in out["campaigns"]] == ["autumn", "spring"]
    assert out["campaigns"][1]["drafts"] == 6
    assert out["totals"]["drafts"] == 7
    assert out["campaigns"][0]["model_written"]["email_drafts"] == 0
    assert out["campaigns"][0]["usable"]["usable_rate"] is None  # no candidates: no rate, not 0
    json.dumps(out)  # the CLI's --json and the report carry it as is
