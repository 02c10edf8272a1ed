"""How good is the drafted copy? Figures per slot and per campaign, from stored drafts alone.

Pure functions over drafts as ``clarion.content.store.draft_row`` returns them (dicts with ``content``,
``checks``, ``provenance``...) and decision rows (``campaign``, ``decision``, ``decided_at``, ``via``).
No model, no warehouse: the figures can be recomputed from the tables at any time, and the same
functions serve `clarion drafts stats`, the report and the benchmarks. The metrics:

* **usable-candidate rate**, per slot: candidates that passed every slot check and the meaning floor
  over candidates generated, both counted once per segment and slot (every variant and channel of a
  segment shares its slot's candidates). Provenance written before the per-slot rewrite has
  ``passing`` (usable, distinct) over ``candidates`` *per variant*; there the denominator is
  ``candidates`` x the segment's variants, so old and new runs compare.
* **model-written share of delivered e-mail words**: over e-mail drafts that may go out (not
  blocked), the words of the model's slot texts as they stand in the subject, preheader and body
  (a slot counted as often as it appears; a slot that fell back to the brief's seed, or that an edit
  removed, counts as not written by the model) over all words of those parts (a link is not words,
  a placeholder such as ``{first_name}`` is one).
* **variant diversity**: per run, campaign, segment and channel, every pair of variants compared
  by the Jaccard similarity of the word 3-shingles of the copy a recipient reads (all parts); the
  diversity is the mean of 1 - similarity, and a pair at or above ``guardrails.NEAR_DUPLICATE`` is a
  near-duplicate (the share of such pairs).
* **readability**: Flesch reading ease of the e-mail body as delivered (the link left out, as the
  readability check does), and of each sentence slot's texts.
* **guardrail findings**: drafts failing each check of their final check report; and, where the
  provenance records them, the slot candidates failing each slot check.
* **invented facts**: drafts whose final copy fails the ``invented_facts`` check (the bar is 0).
* **decisions over time**: approve / edit / reject counts and rates per ISO week; approvals the
  low-tier policy gave on its own (``via = 'policy'``) are counted apart, not as a marketer's.

Every figure carries its numerator and denominator, so a rate over few drafts reads as such.
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from models.content.copy_patterns import URL, WORD
from models.content.guardrails import NEAR_DUPLICATE, _flesch, _jaccard, _prose, _shingles

EMAIL_PARTS = ("email_subject", "email_preheader", "email_body")  # the parts a recipient reads, in order
DECISIONS = ("approve", "edit", "reject")
POLICY = "policy"  # clarion.oversight.tiers.POLICY: approvals no person gave
PLACEHOLDER = re.compile(r"\{[a-z_]+\}")
SENTENCE_SLOTS = ("hook", "body", "sms")  # slots long enough for a Flesch score to mean something


def words(text: str) -> int:
    """Words a recipient reads, as the guardrails count them ("it's", "full-price" and "20" are one
    word each): a link is not words, and a placeholder ({first_name}) is the one word it becomes."""
    return len(WORD.findall(PLACEHOLDER.sub(" X ", URL.sub(" ", text or ""))))


def _rate(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def _slots(draft: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return ((draft.get("provenance") or {}).get("slots")) or {}


def _checks(draft: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(draft.get("checks") or [])


def _blocked(draft: Mapping[str, Any]) -> bool:
    if draft.get("status") == "blocked":
        return True
    return any(not c.get("passed") and c.get("severity") == "block" for c in _checks(draft))


# -- usable-candidate rate ---------------------------------------------------------------------------
def usable_rates(drafts: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per slot: candidates generated, usable ones, the rate, and how many draft slots the model wrote.

    Each (run, campaign, segment, slot) counts once: its record with the most candidates (a draft
    that fell back to the seeds after its copy was blocked records none)."""
    drafts = list(drafts)
    variants: dict[tuple, set[str]] = defaultdict(set)
    for d in drafts:
        variants[(d.get("run_id"), d.get("campaign"), d.get("segment"))].add(d.get("variant"))
    best: dict[tuple, tuple[int, int, Mapping[str, Any]]] = {}
    written: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # slot -> [model-written, slots]
    seen_variant: set[tuple] = set()
    for d in drafts:
        group = (d.get("run_id"), d.get("campaign"), d.get("segment"))
        for slot, rec in _slots(d).items():
            candidates, usable = slot_counts(rec, len(variants[group]))
            key = (*group, slot)
            if key not in best or candidates > best[key][0]:
                best[key] = (candidates, usable, rec)
            # one slot text per segment x variant (the channels share it)
            if (*key, d.get("variant")) not in seen_variant:
                seen_variant.add((*key, d.get("variant")))
                written[slot][0] += not rec.get("fallback", True)
                written[slot][1] += 1
    out: dict[str, dict[str, Any]] = {}
    for (_, _, _, slot), (candidates, usable, rec) in sorted(best.items(), key=lambda kv: kv[0][3]):
        s = out.setdefault(slot, {"candidates": 0, "usable": 0, "findings": None})
        s["candidates"] += candidates
        s["usable"] += usable
        if isinstance(rec.get("findings"), Mapping):
            s["findings"] = s["findings"] or {}
            for check, n in rec["findings"].items():
                s["findings"][check] = s["findings"].get(check, 0) + int(n)
    for slot, s in out.items():
        s["usable_rate"] = _rate(s["usable"], s["candidates"])
        s["model_written"], s["slot_texts"] = written[slot]
        s["model_written_rate"] = _rate(*written[slot])
    return out


def slot_counts(rec: Mapping[str, Any], variants: int) -> tuple[int, int]:
    """(candidates generated, usable) of one slot record of a segment drafted with ``variants`` variants.

    The per-slot provenance counts the segment's candidates (all variants) and ``usable`` among them;
    older provenance has ``candidates`` per variant and ``passing`` for the segment."""
    candidates = int(rec.get("candidates") or 0)
    if "usable" in rec:
        return candidates, int(rec["usable"] or 0)
    return candidates * max(variants, 1), int(rec.get("passing") or 0)


# -- model-written share -----------------------------------------------------------------------------
def model_written_share(drafts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Model words over delivered words in e-mail drafts that are not blocked."""
    counted, total, model = 0, 0, 0
    for d in drafts:
        if d.get("channel") != "email" or _blocked(d):
            continue
        parts = [(d.get("content") or {}).get(p, "") for p in EMAIL_PARTS]
        counted += 1
        total += sum(words(p) for p in parts)
        for rec in _slots(d).values():
            text = (rec.get("text") or "").strip()
            if text and not rec.get("fallback", True):
                model += words(text) * sum(p.count(text) for p in parts)
    return {"email_drafts": counted, "words": total, "model_words": model, "share": _rate(model, total)}


# -- variant diversity -------------------------------------------------------------------------------
def similarity(a: Mapping[str, str], b: Mapping[str, str]) -> float:
    """Jaccard similarity of the word 3-shingles of two drafts' copy (parts in the first one's order)."""
    order = list(a)
    return _jaccard(
        _shingles(_prose(a.get(p, "") for p in order)), _shingles(_prose(b.get(p, "") for p in order))
    )


def diversity(drafts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Pairs of variants of one segment and channel: mean 1 - similarity and the near-duplicate share."""
    groups: dict[tuple, list[Mapping[str, Any]]] = defaultdict(list)
    for d in drafts:
        groups[(d.get("run_id"), d.get("campaign"), d.get("segment"), d.get("channel"))].append(d)
    sims = [
        similarity(a.get("content") or {}, b.get("content") or {})
        for members in groups.values()
        for a, b in itertools.combinations(sorted(members, key=lambda d: d.get("variant") or ""), 2)
    ]
    near = sum(s >= NEAR_DUPLICATE for s in sims)
    return {
        "pairs": len(sims),
        "diversity": round(sum(1 - s for s in sims) / len(sims), 4) if sims else None,
        "near_duplicate_pairs": near,
        "near_duplicate_share": _rate(near, len(sims)),
        "near_duplicate_at": NEAR_DUPLICATE,
    }


# -- readability -------------------------------------------------------------------------------------
def body_flesch(content: Mapping[str, str]) -> float | None:
    """Flesch reading ease of an e-mail body as a recipient reads it (the link is not prose)."""
    body = content.get("email_body")
    if not body:
        return None
    return _flesch(URL.sub(" ", body.replace("{first_name}", "")))


def _spread(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "mean": None, "min": None, "max": None}
    return {
        "n": len(values),
        "mean": round(sum(values) / len(values), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
    }


def readability(drafts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Flesch of e-mail bodies (drafts not blocked) and of the distinct texts of each sentence slot."""
    drafts = list(drafts)
    bodies = [
        score
        for d in drafts
        if d.get("channel") == "email" and not _blocked(d)
        for score in [body_flesch(d.get("content") or {})]
        if score is not None
    ]
    texts: dict[str, set[str]] = defaultdict(set)
    for d in drafts:
        for slot, rec in _slots(d).items():
            if slot in SENTENCE_SLOTS and rec.get("text"):
                texts[slot].add(rec["text"])
    slots = {
        slot: _spread([s for t in sorted(ts) if (s := _flesch(t)) is not None]) for slot, ts in texts.items()
    }
    return {"email_body": _spread(bodies), "slots": dict(sorted(slots.items()))}


# -- guardrails --------------------------------------------------------------------------------------
def findings(drafts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Drafts failing each check of their final report, by check (with its severity), and invented facts."""
    drafts = list(drafts)
    failed: dict[str, dict[str, Any]] = {}
    for d in drafts:
        for c in _checks(d):
            if not c.get("passed"):
                f = failed.setdefault(c["name"], {"severity": c.get("severity"), "drafts": 0})
                f["drafts"] += 1
    invented = failed.get("invented_facts", {}).get("drafts", 0)
    return {
        "drafts": len(drafts),
        "blocked": sum(_blocked(d) for d in drafts),
        "by_check": dict(sorted(failed.items())),
        "invented_facts": invented,
    }


# -- decisions over time -----------------------------------------------------------------------------
def iso_week(at: Any) -> str:
    """'2026-W49' for a datetime, a date or an ISO 8601 string."""
    if isinstance(at, str):
        at = datetime.fromisoformat(at.replace("Z", "+00:00"))
    if not isinstance(at, date):
        raise ValueError(f"decided_at {at!r} is not a timestamp")
    year, week, _ = at.isocalendar()
    return f"{year}-W{week:02d}"


def _decision_figures(rows: list[Mapping[str, Any]]) -> dict[str, Any]:
    people = [r for r in rows if (r.get("via") or "") != POLICY]
    counts = {k: sum(r.get("decision") == k for r in people) for k in DECISIONS}
    total = sum(counts.values())
    return {
        **counts,
        "decisions": total,
        **{f"{k}_rate": _rate(counts[k], total) for k in DECISIONS},
        "policy_approvals": sum(r.get("decision") == "approve" for r in rows if r.get("via") == POLICY),
    }


def decisions_by_week(decisions: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Marketers' approve / edit / reject counts and rates: in total, per ISO week (oldest first) and per
    campaign per week."""
    rows = list(decisions)
    weeks: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    per_campaign: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        week = iso_week(r["decided_at"])
        weeks[week].append(r)
        per_campaign[(r.get("campaign") or "?", week)].append(r)
    return {
        "totals": _decision_figures(rows),
        "weeks": [{"week": w, **_decision_figures(weeks[w])} for w in sorted(weeks)],
        "by_campaign": [
            {"campaign": c, "week": w, **_decision_figures(per_campaign[(c, w)])}
            for c, w in sorted(per_campaign)
        ],
    }


# -- everything --------------------------------------------------------------------------------------
def measure(drafts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Every per-draft figure of one set of drafts (a campaign's, or a run's)."""
    drafts = list(drafts)
    slots = usable_rates(drafts)
    candidates = sum(s["candidates"] for s in slots.values())
    usable = sum(s["usable"] for s in slots.values())
    return {
        "drafts": len(drafts),
        "segments": len({d.get("segment") for d in drafts}),
        "usable": {"candidates": candidates, "usable": usable, "usable_rate": _rate(usable, candidates)},
        "slots": slots,
        "model_written": model_written_share(drafts),
        "diversity": diversity(drafts),
        "readability": readability(drafts),
        "findings": findings(drafts),
    }


def evaluate(
    drafts: Iterable[Mapping[str, Any]], decisions: Iterable[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """Per campaign and over all of them; the decisions per ISO week."""
    drafts = list(drafts)
    campaigns: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for d in drafts:
        campaigns[d.get("campaign") or "?"].append(d)
    return {
        "campaigns": [{"campaign": c, **measure(campaigns[c])} for c in sorted(campaigns)],
        "totals": measure(drafts),
        "decisions": decisions_by_week(decisions),
    }
