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
import random
import re
import shutil
import string
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from clarion.config import Settings
from clarion.content.adapter_card import card_markdown
from clarion.content.store import ContentError
from clarion.warehouse import Warehouse, relation_exists
from models.content.adapter import apply_adapter, check_folder
from models.content.brief import SLOTS, Brief, load_briefs
from models.content.drafts import AI_DISCLOSURE, DraftParams, draft_brief
from models.content.prompts import slot_prompt
from models.content.slots import ALIASES, SPECS
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
CORPUS_SLOTS = SLOTS  # subject, preheader, headline, body, cta, sms, push
MAX_EXAMPLES = 300  # a few minutes of training on two CPU cores
MIN_EXAMPLES = 8


@dataclass(frozen=True)
class Theme:
    name: str
    tone: str
    segments: tuple[str, ...]
    lines: dict[str, tuple[str, ...]]  # slot -> lines that say the same thing


# -- the brand corpus -------------------------------------------------------------------------------
def load_corpus(folder: Path | None) -> list[Theme]:
    """Every theme file (*.yaml) of the corpus folder; none when the folder is not set or absent."""
    if folder is None or not Path(folder).is_dir():
        return []
    themes = []
    for path in sorted(Path(folder).glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ContentError(f"brand corpus {path}: not valid YAML ({exc})") from exc
        if not isinstance(data, dict) or not isinstance(data.get("theme"), str):
            raise ContentError(
                f"brand corpus {path}: needs `theme:` (a name) and slot lists such as `headline:`"
            )
        lines: dict[str, tuple[str, ...]] = {}
        for slot in CORPUS_SLOTS:
            value = data.get(slot, [])
            if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
                raise ContentError(f"brand corpus {path}: `{slot}` is a list of lines of text")
            lines[slot] = tuple(v.strip() for v in value)
        unknown = set(data) - {"theme", "tone", "segments", *CORPUS_SLOTS}
        if unknown:
            raise ContentError(
                f"brand corpus {path}: {sorted(unknown)} not known; "
                f"use theme, tone, segments and {list(CORPUS_SLOTS)}"
            )
        segments = tuple(data.get("segments") or ("promising",))
        themes.append(Theme(data["theme"], str(data.get("tone") or "friendly, clear"), segments, lines))
    return themes


def shot_lines(
    themes: list[Theme], slots: tuple[str, ...] = CORPUS_SLOTS
) -> dict[str, list[tuple[str, ...]]]:
    """Slot -> each theme's lines of that slot: what drafting's few-shot examples are picked from
    (models/content/prompts.py ``pick_shots``)."""
    return {slot: [t.lines[slot] for t in themes if t.lines.get(slot)] for slot in slots}


def brand_shots(settings: Settings) -> dict[str, list[tuple[str, ...]]]:
    """``shot_lines`` of ``content.brand_corpus``; empty without a corpus."""
    return shot_lines(load_corpus(settings.content.brand_corpus))


def corpus_examples(
    themes: list[Theme],
    carrier: Brief,
    slots: tuple[str, ...] = SLOTS,
    *,
    exclude: set[str] = frozenset(),
    per_slot: int = MAX_EXAMPLES,
    seed: int = 7,
    meaning: Any = None,
) -> list[Example]:
    """Each ordered pair of a theme's lines (seed -> answer) as the slot's prompt -> answer. The
    prompt is built by ``slot_prompt`` from ``carrier`` (any brief) with the theme's tone and the
    seed line, for one of the theme's segments, with the few-shot examples drafting would show: the
    same prompt drafting sends. Lines in ``exclude``
    (held-out briefs' seeds, lower-cased) are left out. At most ``per_slot`` per slot, drawn by ``seed``.

    ``meaning`` (the drafting meaning model): only pairs whose answer keeps the seed line's meaning as
    drafting requires (cosine >= the slot's floor) are examples. Lines of one theme say the same thing
    only loosely; an adapter taught to answer a seed with any theme-mate learns to drift from it."""
    rng = random.Random(seed)
    out: list[Example] = []
    # drafting's few-shot examples come from the same corpus (the seed's own theme is never shown)
    shots = shot_lines(themes, slots)
    for slot in slots:
        pairs = []
        for t_index, theme in enumerate(themes):
            lines = [line for line in theme.lines.get(slot, ()) if line.lower() not in exclude]
            for i, seed_line in enumerate(lines):
                for j, answer in enumerate(lines):
                    if i != j:
                        segment = theme.segments[(t_index + i + j) % len(theme.segments)]
                        pairs.append((theme, segment, seed_line, answer))
        if meaning is not None and pairs:
            floor = SPECS[slot].min_meaning
            cosine: dict[tuple[str, str], float] = {}
            for seed_line in {p[2] for p in pairs}:
                answers = [p[3] for p in pairs if p[2] == seed_line]
                for answer, cos in zip(answers, meaning.similarity(answers, seed_line), strict=True):
                    cosine[(seed_line, answer)] = float(cos)
            pairs = [p for p in pairs if cosine[(p[2], p[3])] >= floor]
        rng.shuffle(pairs)
        for theme, segment, seed_line, answer in pairs[:per_slot]:
            brief = carrier.model_copy(
                update={"tone": theme.tone, "seeds": carrier.seeds.model_copy(update={slot: seed_line})}
            )
            p = slot_prompt(brief, segment, slot, None, shots)
            out.append(Example("corpus", slot, p.system, p.user, answer, p.shots))
    return out


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
            row = per_slot.setdefault(slot, {"usable": 0, "candidates": 0})
            row["usable"] += int(usable)
            row["candidates"] += int(candidates)
    usable = sum(r["usable"] for r in per_slot.values())
    candidates = sum(r["candidates"] for r in per_slot.values())
    return {
        "usable_rate": round(usable / candidates, 4) if candidates else 0.0,
        "usable": usable,
        "candidates": candidates,
        "findings": findings,
        "per_slot": {
            k: {**v, "usable_rate": round(v["usable"] / v["candidates"], 4) if v["candidates"] else 0.0}
            for k, v in sorted(per_slot.items())
        },
    }


def gate(before: dict[str, Any], after: dict[str, Any]) -> tuple[bool, str]:
    """Promote only an adapter that makes more candidates usable and no more guardrail findings."""
    if after["usable_rate"] <= before["usable_rate"]:
        return False, (
            f"usable-candidate rate did not rise ({before['usable_rate']:.1%} -> {after['usable_rate']:.1%})"
        )
    if after["findings"] > before["findings"]:
        return False, f"guardrail findings rose ({before['findings']} -> {after['findings']})"
    return True, (
        f"usable-candidate rate {before['usable_rate']:.1%} -> {after['usable_rate']:.1%}, "
        f"findings {before['findings']} -> {after['findings']}"
    )


# -- the verb ---------------------------------------------------------------------------------------
def tune(
    settings: Settings,
    params: TuneParams | None = None,
    max_examples: int = MAX_EXAMPLES,
    candidates: int | None = None,
) -> dict[str, Any]:
    """Collect examples, fit the adapter, judge it on held-out briefs, register it; promote if better.
    ``candidates``: per slot and variant in the evaluation [content.candidates]."""
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
    from_corpus = corpus_examples(
        themes,
        briefs[0],
        SLOTS,
        exclude=seeds,
        per_slot=room // len(SLOTS),
        seed=params.seed,
        meaning=meaning,
    )
    examples = [*from_drafts, *from_corpus][:max_examples]
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
        lm = LocalLM.load(lm_settings(settings))
        dp = draft_params(settings)
        if candidates:
            dp = replace(dp, candidates=candidates)
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
        "before": {k: before[k] for k in ("usable_rate", "usable", "candidates", "findings")},
        "after": {k: after[k] for k in ("usable_rate", "usable", "candidates", "findings")},
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
