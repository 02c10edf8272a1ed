"""`clarion content tune`: learn the brand from what marketers approved, and keep it only if it helps.

Examples (models.content.tune.Example: a slot's prompt -> the text the brand would write) come from
three places:

* **approved** drafts in ``content.drafts``: each model-written slot, with the prompt stored in the
  draft's provenance (the one ``content.prompts`` kept for that run, campaign, segment and slot);
* marketers' **edits** (``content.decisions`` rows ``edit``): the slot text is read back out of the
  edited part by matching it against the brief's template (the offer facts are the brief's, so what
  is left is the slot), and where it differs from what the model wrote, the edited text is the answer;
* the **brand corpus** (``content.brand_corpus``, campaigns/brand): themes of approved lines; each
  line becomes the seed the prompt asks to reword, and another line of the same theme the answer.

Then a LoRA adapter is fitted on the embedded model (models.content.tune) and judged on **held-out**
campaign x segment pairs (none of their drafts was a training example, and no corpus line equals
their seeds): the same drafting as `clarion content` (``draft_brief``) runs with the base model and
with the adapter. The adapter is registered (var/registry/content_adapter/vNNNN: the adapter files,
meta.json, card.md) and promoted only if the usable-candidate rate rises and guardrail findings do
not; ``content.adapter: auto`` then drafts with it.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import string
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from clarion.config import Settings
from clarion.content.adapter_card import card_markdown
from clarion.content.corpus import (
    MAX_EXAMPLES,
    checked_examples,
    corpus_examples,
    load_corpus,
    shot_lines,
)
from clarion.content.store import ContentError
from clarion.warehouse import Warehouse, relation_exists
from models.content.adapter import apply_adapter, check_folder
from models.content.brief import SLOTS, Brief, load_briefs
from models.content.drafts import AI_DISCLOSURE, DraftParams, draft_brief
from models.content.slots import ALIASES
from models.content.tune import (
    Example,
    TuneParams,
    counts_by_source,
    examples_sha256,
    train_adapter,
)
from models.registry import Registry

log = logging.getLogger(__name__)

MODEL = "content_adapter"  # its folder in the model registry
CORPUS_ANSWERS = ("checked", "pairs", "both")
MIN_EXAMPLES = 8


# -- approved drafts and edits ----------------------------------------------------------------------
def slot_texts(content: dict[str, str], brief: Brief) -> dict[str, str]:
    """The slots' text read back out of a draft's (possibly edited) parts, where the part still has
    its template's shape: the brief's facts and the recipient's placeholders as they were, the slots
    anything. A part rewritten beyond its template gives nothing (there is no slot to learn from)."""
    facts = brief.facts()
    found: dict[str, str] = {}
    for part, text in content.items():
        try:
            template = brief.template(part)
        except KeyError:
            continue
        for tpl in (f"{template}\n\n{AI_DISCLOSURE}", template):
            pattern, names = _pattern(tpl, facts)
            match = re.fullmatch(pattern, text, flags=re.DOTALL)
            if match:
                for name in names:
                    value = match.group(name).strip()
                    if value and "\n" not in value:
                        found.setdefault(name, value)
                break
    return found


def _pattern(template: str, facts: dict[str, str]) -> tuple[str, list[str]]:
    out, names = [], []
    for literal, name, _, _ in string.Formatter().parse(template):
        out.append(re.escape(literal))
        if name is None:
            continue
        slot = ALIASES.get(name, name)  # {hook} in a custom template is the body
        if slot in SLOTS and slot in names:
            out.append(f"(?P={slot})")
        elif slot in SLOTS:
            out.append(f"(?P<{slot}>.+?)")
            names.append(slot)
        elif name in facts:
            out.append(re.escape(facts[name]))
        else:  # the recipient's placeholders stay in stored content until export
            out.append(re.escape("{" + name + "}"))
    return "".join(out), names


def draft_examples(
    drafts: list[dict[str, Any]], edited: set[str], briefs: dict[str, Brief], exclude: set[tuple[str, str]]
) -> list[Example]:
    """Examples from stored drafts (dicts with campaign, segment, status, content, provenance):
    approved ones' model-written slots, and every edited slot of a draft a marketer edited (``edited``:
    their ids) that was not rejected. Drafts of the (campaign, segment) pairs in ``exclude`` are held out."""
    seen: set[str] = set()
    out: list[Example] = []
    for d in drafts:
        brief = briefs.get(d["campaign"])
        if brief is None or (d["campaign"], d["segment"]) in exclude or d["status"] == "rejected":
            continue
        prov = d["provenance"]
        prompts = {p["slot"]: p for p in prov.get("prompts", [])}
        now = slot_texts(d["content"], brief)
        for slot, original in (prov.get("slots") or {}).items():
            prompt = prompts.get(slot)
            text = now.get(slot)
            if prompt is None or not text:
                continue
            if d["draft_id"] in edited and text != original.get("text"):
                source = "edit"
            elif d["status"] == "approved" and not original.get("fallback"):
                source = "approved"
            else:
                continue
            shown = tuple(tuple(shot) for shot in prompt.get("examples") or ())
            example = Example(source, slot, prompt["system"], prompt["user"], text, shown)
            if example.key() not in seen:
                seen.add(example.key())
                out.append(example)
    return out


def read_drafts(con: Any) -> tuple[list[dict[str, Any]], set[str]]:
    """Approved drafts and drafts with an edit decision, and the ids of the edited ones."""
    if not relation_exists(con, "content", "drafts"):
        return [], set()
    edited = {
        r[0]
        for r in con.execute(
            "select distinct draft_id from content.decisions where decision = 'edit'"
        ).fetchall()
    }
    rows = con.execute(
        "select draft_id, campaign, segment, status, content, provenance from content.drafts "
        "where status = 'approved' "
        "or draft_id in (select draft_id from content.decisions where decision = 'edit') "
        "order by created_at, draft_id"
    ).fetchall()
    drafts = [
        {
            "draft_id": r[0],
            "campaign": r[1],
            "segment": r[2],
            "status": r[3],
            "content": json.loads(r[4]),
            "provenance": json.loads(r[5]),
        }
        for r in rows
    ]
    return drafts, edited


# -- evaluation and the gate ------------------------------------------------------------------------
def evaluate(
    lm: Any,
    meaning: Any,
    targets: list[tuple[Brief, dict[str, Any]]],
    params: DraftParams,
    corpus: dict[str, list[tuple[str, ...]]] | None = None,
) -> dict[str, Any]:
    """Draft the held-out (brief, segment) pairs as `clarion content` does and count, per slot, the
    usable candidates (every slot check passed and the meaning kept) among those generated, and the
    guardrail findings: failed checks on the drafts, plus failed slot checks where drafting counts them."""
    per_slot: dict[str, dict[str, int]] = {}
    findings = 0
    for brief, segment in targets:
        drafts, _ = draft_brief(brief, [segment], lm, meaning, params, {}, corpus=corpus)
        findings += sum(len(d.checks.failed) for d in drafts)
        slots: dict[
            str, dict[str, Any]
        ] = {}  # each slot once: every variant and channel shares its candidates
        for d in drafts:
            for slot, s in d.provenance["slots"].items():
                slots.setdefault(slot, s)
        for slot, s in slots.items():
            usable = s.get("usable", s.get("passing", 0))
            candidates = s["candidates"] if "usable" in s else s["candidates"] * brief.variants
            findings += sum((s.get("findings") or {}).values())
            row = per_slot.setdefault(slot, {"usable": 0, "distinct": 0, "candidates": 0})
            row["usable"] += int(usable)
            row["distinct"] += int(s.get("distinct") or 0)
            row["candidates"] += int(candidates)
    usable = sum(r["usable"] for r in per_slot.values())
    candidates = sum(r["candidates"] for r in per_slot.values())
    return {
        "usable_rate": round(usable / candidates, 4) if candidates else 0.0,
        "usable": usable,
        "distinct": sum(r["distinct"] for r in per_slot.values()),
        "candidates": candidates,
        "findings": findings,
        "per_slot": {
            k: {**v, "usable_rate": round(v["usable"] / v["candidates"], 4) if v["candidates"] else 0.0}
            for k, v in sorted(per_slot.items())
        },
    }


def gate(before: dict[str, Any], after: dict[str, Any]) -> tuple[bool, str]:
    """Promote only an adapter that makes more candidates usable, no fewer of them different from
    each other and from the seed (``distinct``: an adapter that learnt to repeat one safe line raises
    the usable rate and leaves the variants nothing to choose from), and no more guardrail findings."""
    if after["usable_rate"] <= before["usable_rate"]:
        return False, (
            f"usable-candidate rate did not rise ({before['usable_rate']:.1%} -> {after['usable_rate']:.1%})"
        )
    if after.get("distinct", 0) < before.get("distinct", 0):
        return False, (
            f"distinct usable candidates fell ({before['distinct']} -> {after['distinct']}): "
            "the adapter repeats lines"
        )
    if after["findings"] > before["findings"]:
        return False, f"guardrail findings rose ({before['findings']} -> {after['findings']})"
    return True, (
        f"usable-candidate rate {before['usable_rate']:.1%} -> {after['usable_rate']:.1%}, "
        f"distinct usable {before.get('distinct', 0)} -> {after.get('distinct', 0)}, "
        f"findings {before['findings']} -> {after['findings']}"
    )


# -- the verb ---------------------------------------------------------------------------------------
def tune(
    settings: Settings,
    params: TuneParams | None = None,
    max_examples: int = MAX_EXAMPLES,
    candidates: int | None = None,
    corpus_answers: str = "both",
) -> dict[str, Any]:
    """Collect examples, fit the adapter, judge it on held-out briefs, register it; promote if better.
    ``candidates``: per slot and variant, in the evaluation and for checked answers [content.candidates].
    ``corpus_answers``: what answers a corpus line's prompt: ``checked`` (distinct candidates of the
    base model that passed every check), ``pairs`` (a theme-mate line that keeps its meaning) or
    ``both`` (half the corpus room each: on the demo the only mix whose adapter kept its variety,
    bench/RESULTS.md "Brand adapter")."""
    if corpus_answers not in CORPUS_ANSWERS:
        raise ContentError(f"corpus answers {corpus_answers!r}: use one of {', '.join(CORPUS_ANSWERS)}")
    from clarion.content.runner import audiences, draft_params, latest_scoring_run, lm_settings
    from models.content.llm import LocalLM
    from models.content.meaning import default_meaning_model

    c = settings.content
    if c.source and str(c.source).startswith(("http://", "https://")):
        raise ContentError(
            f"content.source is a model server ({c.source}): `clarion content tune` trains the local model; "
            "tune the server's model with its own tools, or unset content.source"
        )
    params = params or TuneParams(seed=c.seed)
    briefs = load_briefs(c.briefs)
    if not briefs:
        raise ContentError(f"no campaign briefs in {c.briefs}: tuning is judged on held-out briefs")
    by_name = {b.name: b for b in briefs}
    with Warehouse.from_settings(settings).read() as con:
        run, _ = latest_scoring_run(con)
        pairs = [
            (b, {"segment": a.segment, "top_drivers": a.top_drivers})
            for b in briefs
            for a in audiences(con, b, run)
        ]
        drafts, edited = read_drafts(con) if relation_exists(con, "content", "drafts") else ([], set())
    if not pairs:
        raise ContentError("no campaign has customers in the latest segments: nothing to judge an adapter on")
    held = held_out(pairs, drafts)
    exclude_pairs = {(b.name, s["segment"]) for b, s in held}
    from_drafts = draft_examples(drafts, edited, by_name, exclude_pairs)
    seeds = {b.seeds.seed(slot).lower() for b, _ in held for slot in SLOTS}
    themes = load_corpus(c.brand_corpus)
    room = max(0, max_examples - len(from_drafts))
    meaning = default_meaning_model()
    lm = LocalLM.load(lm_settings(settings))  # drafts the checked answers, then the evaluation
    dp = draft_params(settings)
    if candidates:
        dp = replace(dp, candidates=candidates)
    share = {"checked": (room, 0), "pairs": (0, room), "both": (room - room // 2, room // 2)}[corpus_answers]
    started = time.perf_counter()
    from_checked = (
        checked_examples(
            themes,
            briefs[0],
            lm,
            meaning,
            dp,
            SLOTS,
            exclude=seeds,
            per_slot=share[0] // len(SLOTS),
            seed=params.seed,
        )
        if share[0] >= len(SLOTS)
        else []
    )
    checked_seconds = time.perf_counter() - started
    from_corpus = (
        corpus_examples(
            themes,
            briefs[0],
            SLOTS,
            exclude=seeds,
            per_slot=share[1] // len(SLOTS),
            seed=params.seed,
            meaning=meaning,
        )
        if share[1] >= len(SLOTS)
        else []
    )
    examples = [*from_drafts, *from_checked, *from_corpus][:max_examples]
    if len(examples) < MIN_EXAMPLES:
        raise ContentError(
            f"only {len(examples)} training examples (approved drafts, edits, brand corpus "
            f"{c.brand_corpus}): need at least {MIN_EXAMPLES}; approve some drafts or set "
            "content.brand_corpus to a corpus folder"
        )
    work = Path(tempfile.mkdtemp(prefix="tune-", dir=_tmp(settings)))
    try:
        trainee = LocalLM.load(lm_settings(settings, dtype="float32"))
        result = train_adapter(trainee, examples, params, work / "adapter")
        del trainee
        log.info(
            "brand adapter trained: %s examples, %s steps, %.0f s",
            len(examples),
            result.steps,
            result.seconds,
        )
        started = time.perf_counter()
        before = evaluate(lm, meaning, held, dp, shot_lines(themes))
        apply_adapter(lm, work / "adapter", "candidate")
        after = evaluate(lm, meaning, held, dp, shot_lines(themes))
        eval_seconds = time.perf_counter() - started
        passed, why = gate(before, after)
        meta = {
            "base_model": lm.name,
            "base_weights_sha256": lm.weights_sha256,
            "data": {
                "examples": len(examples),
                "by_source": counts_by_source(examples),
                "by_slot": {
                    s: sum(e.slot == s for e in examples) for s in sorted({e.slot for e in examples})
                },
                "examples_sha256": examples_sha256(examples),
                "corpus": str(c.brand_corpus) if themes else None,
                "corpus_themes": len(themes),
                "corpus_answers": corpus_answers,
                "checked_seconds": round(checked_seconds, 1),
            },
            "params": result.params,
            "training": {
                "steps": result.steps,
                "seconds": round(result.seconds, 1),
                "tokens": result.train_tokens,
                "loss_first": result.loss_first,
                "loss_last": result.loss_last,
            },
            "evaluation": {
                "held_out": [f"{b.name}/{s['segment']}" for b, s in held],
                "draft_params": {"candidates": dp.candidates, "min_meaning": dp.min_meaning, "seed": dp.seed},
                "before": before,
                "after": after,
                "seconds": round(eval_seconds, 1),
            },
            "gate": {"passed": passed, "reason": why},
        }
        reg = Registry(settings.var_dir / "registry", model=MODEL)
        version = reg.register_files(
            meta,
            {
                "card.md": card_markdown({**meta, "version": "{version}"}),
                "card.json": json.dumps({**meta, "version": "{version}"}, indent=2) + "\n",
            },
            work / "adapter",
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if passed:
        reg.promote(version.name, why)
    else:
        reg.note("not_promoted", version.name, why)
    return {
        "version": version.name,
        "promoted": passed,
        "reason": why,
        "path": str(version.path),
        "examples": meta["data"],
        "training": meta["training"],
        "before": {k: before[k] for k in ("usable_rate", "usable", "distinct", "candidates", "findings")},
        "after": {k: after[k] for k in ("usable_rate", "usable", "distinct", "candidates", "findings")},
        "held_out": meta["evaluation"]["held_out"],
    }


def held_out(
    pairs: list[tuple[Brief, dict[str, Any]]], drafts: list[dict[str, Any]]
) -> list[tuple[Brief, dict[str, Any]]]:
    """The (brief, segment) pairs the adapter is judged on: those no stored draft teaches; when every
    pair has approved or edited drafts, every other pair (by name), whose drafts are then not taught."""
    taught = {(d["campaign"], d["segment"]) for d in drafts}
    fresh = [p for p in pairs if (p[0].name, p[1]["segment"]) not in taught]
    if fresh:
        return fresh
    ordered = sorted(pairs, key=lambda p: (p[0].name, p[1]["segment"]))
    return ordered[::2]


def _tmp(settings: Settings) -> Path:
    path = settings.var_dir / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- drafting with the adapter ----------------------------------------------------------------------
def adapter_folder(settings: Settings) -> tuple[Path, str] | None:
    """The adapter content.adapter names: (folder, version), or None (none, or auto with none promoted)."""
    choice = (settings.content.adapter or "auto").strip()
    if choice.lower() == "none":
        return None
    if choice.lower() == "auto":
        version = Registry(settings.var_dir / "registry", model=MODEL).promoted()
        return (version.path, version.name) if version else None
    folder = Path(choice).expanduser()
    if not folder.is_absolute():
        folder = settings.var_dir.parent / folder
    check_folder(folder)
    return folder, folder.name


def apply_configured(settings: Settings, lm: Any) -> Any:
    """``lm`` with the configured brand adapter merged in (a local model only); provenance reads
    ``lm.adapter`` ({version, sha256}, or None)."""
    if not hasattr(lm, "model"):  # a model server: adapters are the server's business
        return lm
    found = adapter_folder(settings)
    lm.adapter = None
    if found is not None:
        apply_adapter(lm, *found)
        log.info("drafting with brand adapter %s", lm.adapter["version"])
    return lm
