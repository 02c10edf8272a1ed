"""Drafts per campaign x segment x channel x variant: slots from the model, facts from the brief.

The small local model is good at rewording a sentence and bad at facts (stack.md: asked to write
`{offer}`, it wrote "a 20% discount"). So it writes the message's words, slot by slot (subject,
preheader, headline, body, cta, sms, push: models/content/slots.py), by rewording the brief's approved
seed for each slot for the segment's audience; digits, %, braces, currency signs and links are banned
while decoding, every slot stops at its first newline and no candidate repeats a run of four of the
seed's tokens (it is asked for a rewrite). Short slots are shown a couple of the brand corpus's
approved rewrites first, as earlier chat turns (few-shot). Each slot gets several sampled candidates
per variant; a candidate is usable only if it passes the slot guardrails and still means what the
seed means (sentence-embedding cosine >= the slot's calibrated `min_meaning`), and the variants are
the best usable ones by the composite score of models/content/select.py (meaning, novelty,
readability, length, fluency). The channel templates then place the brief's offer facts around the
slots, and the whole copy is checked again. Where no candidate is usable, the seed itself is used and
the draft says so (`fallback`): the campaign still works when the model does not.

Cost grows with segments x variants, not with customers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from models.content import select
from models.content.brief import SAMPLE_RECIPIENT, Brief
from models.content.decoding import Phrase
from models.content.guardrails import CheckReport, check_copy, check_slot
from models.content.llm import DEFAULT_BANS
from models.content.prompts import TEMPLATE_VERSION, SlotPrompt, slot_prompt, template_sha256
from models.content.slots import ALIASES, SPECS
from models.content.slots import clean as clean  # the cleaner lives with the slot specs

VARIANT_NAMES = "ABCDEFGHIJ"  # a retired variant's letter is not reused: the next one is
# tokens each slot may spend, at most; the configured max_new_tokens caps them all
SLOT_TOKENS = {name: s.max_new_tokens for name, s in SPECS.items()}
AI_DISCLOSURE = "This message was drafted with the help of AI and approved by our team."
SLOT_BANS = DEFAULT_BANS  # digits, %, braces, currency signs, @ and links: never from the model


class Generator(Protocol):
    name: str
    weights_sha256: str

    def chat_prompt(self, system: str, user: str, examples: Sequence[tuple[str, str]] = ()) -> str: ...

    def generate(
        self,
        prompts: list[str],
        candidates: int = 1,
        *,
        max_new_tokens: int | None = None,
        ban: Sequence[str] = (),
        seed: int | None = None,
        avoid: Sequence[str] = (),
    ) -> list[list[Any]]: ...


class Similarity(Protocol):
    def similarity(self, candidates: list[str], reference: str) -> Any: ...


@dataclass(frozen=True)
class DraftParams:
    candidates: int = 6  # sampled candidates per slot and variant
    min_meaning: float | None = None  # None: each slot's calibrated floor (slots.py SlotSpec.min_meaning)
    seed: int = 7
    max_new_tokens: int = 40
    temperature: float = 0.6
    top_p: float = 0.8
    one_call: bool = False  # every slot in one generate call: one wait instead of several (on demand)


@dataclass
class Slot:
    text: str
    fallback: bool
    prompt_sha256: str
    meaning: float | None
    candidates: int  # generated for this slot and segment, all variants together
    usable: int  # of those, how many passed every slot check and the meaning floor
    score: float | None = None
    components: dict[str, float | None] | None = None
    findings: dict[str, int] = field(default_factory=dict)  # check -> candidates that failed it
    distinct: int | None = (
        None  # different usable texts, near-copies of the seed left out (None: not counted)
    )

    @property
    def passing(self) -> int:
        """The old name of ``usable``."""
        return self.usable


@dataclass
class Draft:
    campaign: str
    segment: str
    channel: str
    variant: str
    content: dict[str, str]  # part -> text with the offer filled and {first_name} left for export
    checks: CheckReport
    fallback: bool
    ai_generated: bool
    slots: dict[str, Slot]
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def blocked(self) -> bool:
        return self.checks.blocked

    @property
    def content_sha256(self) -> str:
        return content_hash(self.content)


def content_hash(content: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def draft_brief(
    brief: Brief,
    segments: list[dict[str, Any]],
    lm: Generator,
    meaning: Similarity,
    params: DraftParams,
    context: dict[str, Any],
    retired: Collection[str] = (),
    *,
    channels: Sequence[str] | None = None,
    variants: int | None = None,
    corpus: Mapping[str, Sequence[Sequence[str]]] | None = None,
) -> tuple[list[Draft], list[SlotPrompt]]:
    """Every draft of one brief for the given segments (dicts with `segment`, `top_drivers`).
    `context` goes into each draft's provenance (run id, segment definition, ...). ``retired``:
    variants a measured experiment retired (`clarion results`): their letters are skipped, so the
    winner keeps its letter and a new challenger takes the next free one. ``channels`` and
    ``variants`` narrow the drafts to some of the brief's channels and its first variants (an
    on-demand draft: one channel, one variant). ``corpus``: slot -> the brand corpus's themes' lines,
    for the few-shot examples some slots are shown (prompts.py ``pick_shots``). Returns the drafts
    and the prompts actually sent."""
    count = brief.variants if variants is None else variants
    names = [n for n in VARIANT_NAMES if n not in set(retired)][:count]
    if len(names) < count:
        raise ValueError(f"campaign {brief.name}: every variant letter {VARIANT_NAMES} has been retired")
    wanted = brief.slots(tuple(channels or brief.channels))
    prompts = [
        slot_prompt(brief, s["segment"], slot, s.get("top_drivers"), corpus)
        for s in segments
        for slot in wanted
    ]
    n = count * params.candidates
    chosen: dict[tuple[str, str], list[Slot]] = {}
    # each slot its own call with its own token budget (a CTA needs 10, a body 80), unless one wait
    # matters more than the tokens padded rows waste (on demand)
    groups = [wanted] if params.one_call else [(slot,) for slot in wanted]
    for slots in groups:
        asked = [p for p in prompts if p.slot in slots]
        # avoid: a rewrite, not the seed handed back
        outputs = sample(lm, asked, params, n, [brief.seeds.seed(slot) for slot in slots])
        for prompt, generations in zip(asked, outputs, strict=True):
            chosen[(prompt.segment, prompt.slot)] = pick_slot(
                brief, prompt, generations, meaning, params, count, lm
            )
    facts = brief.facts()
    drafts: list[Draft] = []
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for s in segments:
        for channel in channels or brief.channels:
            earlier: list[dict[str, str]] = []
            for v in range(count):
                slots = {slot: chosen[(s["segment"], slot)][v] for slot in brief.slots((channel,))}
                draft = _assemble(brief, s["segment"], channel, names[v], slots, facts, earlier)
                if draft.blocked and not draft.fallback:
                    seeds = {k: _seed_slot(brief, k, slots[k].prompt_sha256) for k in slots}
                    draft = _assemble(brief, s["segment"], channel, names[v], seeds, facts, earlier)
                draft.provenance = _provenance(brief, draft, lm, params, prompts, context, now)
                earlier.append(_preview(draft.content))
                drafts.append(draft)
    return drafts, prompts


def sample(
    lm: Any, prompts: Sequence[SlotPrompt], params: DraftParams, candidates: int, avoid: Sequence[str]
) -> list[list[Any]]:
    """``candidates`` generations for each slot prompt, in one generate call, as drafting samples
    them: the slot's prefill written for the model and put back in front of each text, the slots'
    largest token budget, the decoding bans, the run's seed, ``avoid`` (lines no candidate may copy)."""
    if not prompts:
        return []
    prefill = prefills(lm)
    # a local model writes a phrase slot inside its word range and length and off a dangling last
    # word (decoding.py phrase_shape); a remote server takes no such grammar, and the slot checks
    # judge what it wrote
    shape = {"phrases": [_phrase(p.slot) for p in prompts]}
    outputs = lm.generate(
        [lm.chat_prompt(p.system, p.user, p.shots) + prefill(p.slot) for p in prompts],
        candidates=candidates,
        max_new_tokens=min(params.max_new_tokens, max(SLOT_TOKENS[p.slot] for p in prompts)),
        ban=SLOT_BANS,
        seed=params.seed,
        avoid=avoid,
        **(shape if _local(lm) else {}),
    )
    return [
        [dataclasses.replace(g, text=prefill(p.slot) + g.text) for g in generations]
        for p, generations in zip(prompts, outputs, strict=True)
    ]


def _local(lm: Any) -> bool:
    """The embedded model (prefills and the phrase grammar), not a remote server."""
    return getattr(lm, "backend", "local") == "local"


def _phrase(slot: str) -> Phrase | None:
    s = SPECS[slot]
    return Phrase(*s.words, chars=s.max_chars) if s.phrase else None


def prefills(lm: Any) -> Any:
    """The start of each slot's answer, written for the model: the embedded model answers with one
    quoted phrase when its answer opens with a quote. A remote chat API takes no partial answer."""
    local = _local(lm)
    return lambda slot: SPECS[slot].prefill if local else ""


def fallback_problems(brief: Brief) -> list[str]:
    """Why the brief's own copy (its seed sentences in its templates) would be blocked, per channel.
    That copy is what a campaign falls back on when no model candidate passes, so it must pass."""
    seeds = {k: _seed_slot(brief, k, "") for k in brief.slots()}
    problems = []
    for channel in brief.channels:
        draft = _assemble(brief, "fallback", channel, "A", seeds, brief.facts(), [])
        problems += [f"{channel}: {c.name}: {c.detail}" for c in draft.checks.failed if c.severity == "block"]
    return problems


@dataclass(frozen=True)
class Judged:
    """A slot's candidates judged as drafting judges them: ``texts`` in generation order (cleaned),
    ``verdict`` (each distinct text -> the checks it failed; none = usable), ``cosines`` (each text
    that passed the slot checks -> its cosine to the seed)."""

    texts: list[str]
    verdict: dict[str, list[str]]
    cosines: dict[str, float]

    def usable(self) -> list[str]:
        """The distinct usable texts, first generated first."""
        return [t for t, failed in self.verdict.items() if not failed]

    def distinct(self) -> list[str]:
        """The distinct usable texts that are not near-copies of the seed (cosine < select.NEAR_COPY):
        what a variant can honestly be. A model that repeats one line, or hands back the seed in other
        punctuation, has many usable candidates and few of these."""
        return [t for t in self.usable() if self.cosines[t] < select.NEAR_COPY]

    def findings(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for text in self.texts:
            for name in self.verdict[text]:
                found[name] = found.get(name, 0) + 1
        return found


def judge(
    brief: Brief, prompt: SlotPrompt, generations: list[Any], meaning: Similarity, params: DraftParams
) -> Judged:
    """Every candidate of one slot prompt through the slot checks, the copy guard (the seed or an
    example shown, handed back: ``copy``) and the meaning floor (``meaning``)."""
    seed = brief.seeds.seed(prompt.slot)
    texts = [clean(g.text, prompt.slot) for g in generations]
    verdict: dict[str, list[str]] = {}  # text -> the checks it failed
    for text in dict.fromkeys(texts):
        verdict[text] = [c.name for c in check_slot(text, brief, prompt.slot).failed if c.severity == "block"]
    copies = {tuple(_words(line)) for line in (seed, *prompt.shown())}
    for text, failed in verdict.items():
        if not failed and tuple(_words(text)) in copies:  # the seed or an example handed back
            failed.append("copy")
    passing = [t for t, failed in verdict.items() if not failed]
    cosines = (
        dict(zip(passing, (float(x) for x in meaning.similarity(passing, seed)), strict=True))
        if passing
        else {}
    )
    floor = meaning_floor(params, prompt.slot)
    for text, cos in cosines.items():
        if cos < floor:
            verdict[text] = ["meaning"]
    return Judged(texts, verdict, cosines)


def pick_slot(
    brief: Brief,
    prompt: SlotPrompt,
    generations: list[Any],
    meaning: Similarity,
    params: DraftParams,
    variants: int,
    lm: Any = None,
) -> list[Slot]:
    """One slot per variant: the usable candidates, distinct, by the composite score of select.py
    (novelty against the variants chosen before); the seed where too few are usable. Every
    generation is counted once in ``candidates``, and in ``usable`` if it passed every check and
    the meaning floor (so the two share a denominator), and in ``findings`` per check it failed
    (``meaning`` below the floor, ``copy`` for the seed's own words handed back); ``distinct``
    counts the different usable texts that are not near-copies of the seed."""
    judged = judge(brief, prompt, generations, meaning, params)
    findings = judged.findings()
    usable = judged.usable()
    usable_count = sum(not judged.verdict[t] for t in judged.texts)
    distinct = len(judged.distinct())
    picked = select.choose(
        usable,
        [judged.cosines[t] for t in usable],
        brief.seeds.seed(prompt.slot),
        variants,
        SPECS[prompt.slot],
        brief,
        meaning,
        select.fluency(lm, usable),
    )
    out: list[Slot] = []
    for v in range(variants):
        if v < len(picked):
            p = picked[v]
            out.append(
                Slot(
                    p.text,
                    False,
                    prompt.sha256(),
                    p.meaning,
                    len(generations),
                    usable_count,
                    p.score,
                    p.components,
                    dict(findings),
                    distinct,
                )
            )
        else:
            out.append(
                _seed_slot(
                    brief, prompt.slot, prompt.sha256(), len(generations), usable_count, findings, distinct
                )
            )
    return out


def meaning_floor(params: DraftParams, slot: str) -> float:
    """The cosine to the seed a candidate of ``slot`` must keep: the setting where one is set, else
    the slot's calibrated floor."""
    return SPECS[ALIASES.get(slot, slot)].min_meaning if params.min_meaning is None else params.min_meaning


def floor_words(value: Any) -> str:
    """A draft's recorded meaning floor in words: one number (older drafts, or the setting) or one
    per slot ("subject 0.40, body 0.50")."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {float(v):.2f}" for k, v in value.items())
    return str(value)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def _seed_slot(
    brief: Brief,
    slot: str,
    prompt_sha: str,
    candidates: int = 0,
    usable: int = 0,
    findings: dict[str, int] | None = None,
    distinct: int | None = None,
) -> Slot:
    return Slot(
        brief.seeds.seed(slot),
        True,
        prompt_sha,
        None,
        candidates,
        usable,
        findings=dict(findings or {}),
        distinct=distinct,
    )


def _assemble(
    brief: Brief,
    segment: str,
    channel: str,
    variant: str,
    slots: dict[str, Slot],
    facts: dict[str, str],
    earlier: list[dict[str, str]],
) -> Draft:
    words = {k: s.text for k, s in slots.items()}
    words.update({old: words[new] for old, new in ALIASES.items() if new in words})  # {hook} in a template
    ai = any(not s.fallback for s in slots.values())
    templates, content = {}, {}
    for part in brief.parts(channel):
        template = brief.template(part)
        if part == "email_body" and brief.disclose_ai and ai:
            template = f"{template}\n\n{AI_DISCLOSURE}"
        templates[part] = template.format_map(_Keep(words))
        content[part] = template.format_map(_Keep({**words, **facts}))
    checks = check_copy(_preview(content), brief, channel, templates=templates, other_variants=list(earlier))
    return Draft(
        campaign=brief.name,
        segment=segment,
        channel=channel,
        variant=variant,
        content=content,
        checks=checks,
        fallback=all(s.fallback for s in slots.values()),
        ai_generated=ai,
        slots=slots,
    )


SAMPLE_FIRST_NAME = SAMPLE_RECIPIENT["first_name"]  # long on purpose: lengths are checked with it


def preview(content: dict[str, str]) -> dict[str, str]:
    """A draft as the checks read it: the recipient's placeholders filled with the samples."""
    return {part: fill(text, SAMPLE_RECIPIENT) for part, text in content.items()}


_preview = preview


def fill(text: str, values: dict[str, str]) -> str:
    """The recipient's placeholders ({first_name}, {recommended_product}, ...) replaced in one pass,
    so a value that happens to hold a brace-name is never filled again."""
    return _RECIPIENT.sub(lambda m: values.get(m.group(1), m.group(0)), text)


_RECIPIENT = re.compile(r"\{(" + "|".join(SAMPLE_RECIPIENT) + r")\}")


class _Keep(dict):
    """format_map mapping that leaves unknown placeholders as they are ({first_name} until export)."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _provenance(
    brief: Brief,
    draft: Draft,
    lm: Generator,
    params: DraftParams,
    prompts: list[SlotPrompt],
    context: dict[str, Any],
    now: str,
) -> dict[str, Any]:
    used = {s.prompt_sha256 for s in draft.slots.values()}
    return {
        "ai_generated": draft.ai_generated,
        "disclosure": AI_DISCLOSURE if draft.ai_generated and brief.disclose_ai else None,
        "model": model_provenance(lm),
        "prompt_template": {"version": TEMPLATE_VERSION, "sha256": template_sha256()},
        "prompts": [
            {
                "slot": p.slot,
                "sha256": p.sha256(),
                "system": p.system,
                "examples": [list(shot) for shot in p.shots],
                "user": p.user,
            }
            for p in prompts
            if p.sha256() in used and p.segment == draft.segment
        ],
        "brief": {"name": brief.name, "sha256": brief.sha256()},
        "generation": {
            "candidates_per_slot": params.candidates,
            "min_meaning": {k: meaning_floor(params, k) for k in draft.slots},
            "seed": params.seed,
            "max_new_tokens": params.max_new_tokens,
            "max_new_tokens_per_slot": {k: min(params.max_new_tokens, SLOT_TOKENS[k]) for k in draft.slots},
            "selection_weights": dict(select.WEIGHTS),
            "temperature": params.temperature,
            "top_p": params.top_p,
            "banned_while_decoding": list(SLOT_BANS),
            # the phrase slots' grammar while decoding (decoding.py phrase_shape): a local model only
            "phrase_grammar": {
                k: {"words": list(SPECS[k].words), "max_chars": SPECS[k].max_chars, "no_dangling_end": True}
                for k in draft.slots
                if SPECS[k].phrase and _local(lm)
            },
        },
        "slots": {
            k: {
                "text": s.text,
                "fallback": s.fallback,
                "meaning": s.meaning,
                "score": s.score,
                "components": s.components,
                "candidates": s.candidates,
                "usable": s.usable,
                "passing": s.usable,  # the old name, for old readers
                "distinct": s.distinct,
                "findings": s.findings,
            }
            for k, s in draft.slots.items()
        },
        "checks": draft.checks.to_json(),
        "content_sha256": draft.content_sha256,
        "created_at": now,
        **context,
    }


def model_provenance(lm: Generator) -> dict[str, Any]:
    """What a draft records about its model: name, weights hash, backend ("local" | "openai"), the
    endpoint of a model server and the adapter applied, if any. A backend that knows more adds it
    itself (a model server: its request parameters and what its hash is; never its key)."""
    base = {
        "name": lm.name,
        "weights_sha256": lm.weights_sha256,
        "backend": getattr(lm, "backend", "local"),
        **({"endpoint": lm.endpoint} if getattr(lm, "endpoint", None) else {}),
        "adapter": getattr(lm, "adapter", None),
    }
    own = getattr(lm, "provenance", None)
    return {**base, **own()} if callable(own) else base
