"""The brand corpus (``content.brand_corpus``, campaigns/brand) and the training examples made from it.

A corpus is a folder of themes, one YAML file each: lines of every slot that say the same thing in
the brand's voice. Drafting shows a few of them as few-shot turns (``shot_lines``); `clarion content
tune` learns from them in two ways:

* **corpus** pairs (``corpus_examples``): one line of a theme as the seed a prompt asks to reword,
  another line of the same theme as the answer (only pairs that keep the seed's meaning);
* **checked** answers (``checked_examples``): the same prompts, answered by the base model itself,
  drafted exactly as `clarion content` drafts (sampling, token bans, every slot check, the meaning
  floor, the composite ranking of select.py), keeping the best candidate and only where one passed.
  They are what the gate would put before a marketer for the brand's own seed lines: an adapter
  trained on them learns to write what passes, in the brand's prompts, instead of drifting toward a
  theme-mate's different words.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from clarion.config import Settings
from clarion.content.store import ContentError
from models.content.brief import SLOTS, Brief
from models.content.drafts import DraftParams, judge, sample
from models.content.prompts import SlotPrompt, slot_prompt
from models.content.slots import SPECS
from models.content.tune import Example

CORPUS_SLOTS = SLOTS  # subject, preheader, headline, body, cta, sms, push
MAX_EXAMPLES = 300  # a few minutes of training on two CPU cores


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
            brief = _seeded(carrier, theme, slot, seed_line)
            p = slot_prompt(brief, segment, slot, None, shots)
            out.append(Example("corpus", slot, p.system, p.user, answer, p.shots))
    return out


def checked_examples(
    themes: list[Theme],
    carrier: Brief,
    lm: Any,
    meaning: Any,
    params: DraftParams,
    slots: tuple[str, ...] = SLOTS,
    *,
    exclude: set[str] = frozenset(),
    per_slot: int = MAX_EXAMPLES,
    seed: int = 7,
) -> list[Example]:
    """Each corpus line (not in ``exclude``: held-out briefs' seeds, lower-cased) as the seed of the
    slot's prompt, built as ``corpus_examples`` builds it (the theme's tone, one of its segments, the
    few-shot turns drafting shows), drafted by ``lm`` as `clarion content` drafts it (``params``:
    candidates, sampling seed) and judged as drafting judges (models/content/drafts.py ``judge``).
    The answers are the prompt's *distinct* usable candidates (near-copies of the seed left out),
    drawn uniformly by ``seed``: one from every prompt, then a second from every prompt, and so on,
    up to ``per_slot`` per slot. Not the best-scored one, and not weighted by how often a line was
    sampled: training on a prompt's single best answer taught the model to repeat one line (on the
    demo, distinct usable candidates fell from 237 to 186 while usable ones rose from 300 to 385).
    A prompt whose candidates all failed gives no example. The prompts of one theme and slot share
    a generate call: the copy guard (``avoid``) then keeps every candidate off those few lines."""
    rng = random.Random(seed)
    shots = shot_lines(themes, slots)
    out: list[Example] = []
    for slot in slots:
        asks: list[tuple[int, Brief, SlotPrompt]] = []
        for t_index, theme in enumerate(themes):
            for i, line in enumerate(theme.lines.get(slot, ())):
                if line.lower() in exclude:
                    continue
                brief = _seeded(carrier, theme, slot, line)
                segment = theme.segments[(t_index + i) % len(theme.segments)]
                asks.append((t_index, brief, slot_prompt(brief, segment, slot, None, shots)))
        rng.shuffle(asks)
        asks = sorted(asks[:per_slot], key=lambda a: a[0])  # at most one prompt per example wanted
        answers: list[tuple[SlotPrompt, list[str]]] = []
        for t_index in dict.fromkeys(a[0] for a in asks):
            group = [a for a in asks if a[0] == t_index]
            seeds = [b.seeds.seed(slot) for _, b, _ in group]
            outputs = sample(lm, [p for _, _, p in group], params, params.candidates, seeds)
            for (_, brief, prompt), generations in zip(group, outputs, strict=True):
                distinct = judge(brief, prompt, generations, meaning, params).distinct()
                rng.shuffle(distinct)
                answers.append((prompt, distinct))
        rng.shuffle(answers)
        taken = 0
        for round_ in range(max((len(a) for _, a in answers), default=0)):
            for prompt, texts in answers:
                if round_ < len(texts) and taken < per_slot:
                    out.append(
                        Example("checked", slot, prompt.system, prompt.user, texts[round_], prompt.shots)
                    )
                    taken += 1
    return out


def _seeded(carrier: Brief, theme: Theme, slot: str, line: str) -> Brief:
    """``carrier`` with the theme's tone and ``line`` as the slot's seed: a corpus line asked as drafting
    would ask it."""
    seeds = carrier.seeds.model_copy(update={slot: line})
    return carrier.model_copy(update={"tone": theme.tone, "seeds": seeds})
