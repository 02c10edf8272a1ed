"""Choosing among a slot's candidates: a composite score, not "closest to the seed".

Ranking by meaning alone rewards near-copies of the seed (the variants then test nothing) and is blind
to nonsense that happens to share the seed's words ("We save from the back of your phone"). Each usable
candidate (it passed every slot check and the meaning floor) gets five components in [0, 1]:

* **meaning** -- MiniLM cosine to the seed (below ``min_meaning`` the candidate is not usable at all);
* **novelty** -- 1 - the largest cosine to the seed and to the variants already chosen for this slot
  and segment; a near-copy of either (cosine >= ``NEAR_COPY``) scores 0, and so does its total;
* **readability** -- 1 inside the brief's Flesch band, falling linearly to 0 at ``READABILITY_FALLOFF``
  points outside (slots too short to score get 1);
* **length** -- 1 inside the slot's ideal word range (models/content/slots.py ``ideal_words``), falling
  linearly to 0 at as many words outside as the range is wide (at least 3);
* **fluency** -- the model's own mean token log-probability of the text after a neutral prefix, without
  the brief around it, mapped linearly from ``FLUENCY_FLOOR`` (0) to ``FLUENCY_CEILING`` (1).

``score = 0.30 meaning + 0.20 novelty + 0.15 readability + 0.10 length + 0.25 fluency``
(``WEIGHTS``), except that a near-copy scores 0 outright: with these weights meaning outweighs novelty,
so without that rule the seed repeated back would still win. A backend that cannot score text
(``score`` missing or returning None) gets no fluency component: its weight is spread over the others
in proportion, so scores stay in [0, 1]. The variants of a slot are chosen greedily, best first,
novelty recomputed against those chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from models.content.brief import Brief
from models.content.slots import SlotSpec

WEIGHTS = {"meaning": 0.30, "novelty": 0.20, "readability": 0.15, "length": 0.10, "fluency": 0.25}
NEAR_COPY = 0.95  # cosine from which a candidate is a copy of the seed or of a chosen variant
READABILITY_FALLOFF = 20.0  # Flesch points outside the band at which readability reaches 0
# mean token log-probability (nats) of SmolLM2-135M on a line after FLUENCY_PREFIX: plain shop copy
# scores about -2.5 to -3.5, word salad about -5 to -7 (measured on the embedded model)
FLUENCY_FLOOR = -6.0
FLUENCY_CEILING = -2.5
FLUENCY_PREFIX = "Here is a line from an online shop's newsletter:"


@dataclass(frozen=True)
class Scored:
    text: str
    meaning: float
    components: dict[str, float | None]  # fluency None: the backend cannot score text
    score: float


def readability_component(flesch: float | None, low: float, high: float) -> float:
    if flesch is None:
        return 1.0
    outside = max(low - flesch, flesch - high, 0.0)
    return max(0.0, 1.0 - outside / READABILITY_FALLOFF)


def length_component(words: int, ideal: tuple[int, int]) -> float:
    low, high = ideal
    outside = max(low - words, words - high, 0)
    return max(0.0, 1.0 - outside / max(high - low, 3))


def fluency_component(logprob: float | None) -> float | None:
    if logprob is None:
        return None
    return min(1.0, max(0.0, (logprob - FLUENCY_FLOOR) / (FLUENCY_CEILING - FLUENCY_FLOOR)))


def novelty_component(cosines: Sequence[float]) -> float:
    """1 - the closest cosine to the seed or a chosen variant; a near-copy scores 0."""
    closest = max(cosines, default=0.0)
    return 0.0 if closest >= NEAR_COPY else max(0.0, 1.0 - closest)


def combine(components: dict[str, float | None]) -> float:
    """The weighted sum; a component that is None (fluency without a scoring backend) gives its
    weight to the others in proportion."""
    known = {k: v for k, v in components.items() if v is not None}
    total = sum(WEIGHTS[k] for k in known)
    return sum(WEIGHTS[k] * v for k, v in known.items()) / total if total else 0.0


def fluency(lm: Any, texts: list[str]) -> list[float | None]:
    """Each text's fluency component from the backend's ``score``; None where it has none."""
    scorer = getattr(lm, "score", None)
    raw = scorer(texts, FLUENCY_PREFIX) if scorer and texts else None
    if raw is None:
        return [None] * len(texts)
    return [fluency_component(x) for x in raw]


def choose(
    usable: list[str],
    meanings: list[float],
    seed: str,
    variants: int,
    spec: SlotSpec,
    brief: Brief,
    similarity: Any,
    fluencies: list[float | None],
) -> list[Scored]:
    """Up to ``variants`` candidates, best first: each the highest score given those already chosen."""
    from models.content.guardrails import WORD, _flesch  # the same counts the checks use

    base = []
    for text, meaning, flu in zip(usable, meanings, fluencies, strict=True):
        flesch = _flesch(text) if spec.readability else None
        base.append(
            {
                "meaning": max(0.0, min(1.0, meaning)),
                "readability": readability_component(flesch, brief.readability.min, brief.readability.max),
                "length": length_component(len(WORD.findall(text)), spec.ideal_words),
                "fluency": flu,
            }
        )
    closest = [[m] for m in meanings]  # cosines to the seed, then to each chosen variant
    chosen: list[Scored] = []
    left = set(range(len(usable)))
    while left and len(chosen) < variants:
        scored = []
        for i in sorted(left):
            parts = {**base[i], "novelty": novelty_component(closest[i])}
            copy = max(closest[i]) >= NEAR_COPY  # ranked last: used only when nothing else is usable
            scored.append((0.0 if copy else combine(parts), -i, i, parts))
        score, _, best, parts = max(scored)
        chosen.append(Scored(usable[best], meanings[best], parts, score))
        left.discard(best)
        if left and len(chosen) < variants:
            others = sorted(left)
            cosines = [float(x) for x in similarity.similarity([usable[i] for i in others], usable[best])]
            for i, c in zip(others, cosines, strict=True):
                closest[i].append(c)
    return chosen
