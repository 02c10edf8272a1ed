"""Prompts for the copy slots, built from a brief and a segment's aggregated profile only.

What reaches the language model: the brief's tone and approved seed sentence, the segment's name,
size band and typical reason families in plain words. Never a single customer's data, never a
name, e-mail, phone or any CRM free text (support tickets can carry prompt injections): the inputs
below are closed vocabularies and the brief, and `audience_words` only maps known family names.

The template has a version; its hash and every prompt's hash go into each draft's provenance.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from models.content.brief import Brief
from models.content.slots import SPECS, spec

TEMPLATE_VERSION = "slots-v3"
SYSTEM = (
    "You rewrite short marketing copy for an online shop. Keep the meaning of the text you are "
    "given. Use plain words only: no numbers, prices, dates, codes, names or links."
)
USER = "Audience: {audience}.\nTone: {tone}.\n{ask}\n{label}"  # ask and label: the slot's spec

SEGMENT_WORDS = {
    "champions": "our most loyal, high-spending customers",
    "loyal": "loyal customers who buy regularly",
    "promising": "customers who buy now and then",
    "new": "customers who placed their first order recently",
    "at_risk_high_value": "valued customers who have not ordered for a while",
    "at_risk_low_value": "customers who have not ordered for a while",
    "hibernating": "customers who have not ordered for over a year",
}
# reason families (models.features.FAMILIES) as the audience's shared situation, in plain words
FAMILY_WORDS = {
    "recency": "it has been longer than usual since their last order",
    "frequency": "they order less often than before",
    "monetary": "their spending has changed",
    "rhythm": "their buying rhythm has slowed",
    "seasonality": "they buy at certain times of the year",
    "lifecycle": "their purchase pattern has changed",
    "tenure": "they have been with us for some time",
    "assortment": "they shop in few categories",
    "price": "they mostly buy on promotion",
    "returns": "they return some orders",
    "delivery": "some of their deliveries went wrong",
    "engagement": "they read fewer of our e-mails",
    "support": "some had a poor support experience",
}


@dataclass(frozen=True)
class SlotPrompt:
    slot: str
    segment: str
    system: str
    user: str
    # brand-corpus examples as earlier chat turns: (the slot's ask about one line, another line of
    # the same theme in quotes); the slot spec's ``shots`` says how many
    shots: tuple[tuple[str, str], ...] = ()

    def sent(self) -> str:
        """The turns after the system prompt as sent, blank lines between: each example asked and
        answered, then the user turn (no examples: the user turn alone)."""
        return "\n\n".join([*(turn for shot in self.shots for turn in shot), self.user])

    def sha256(self) -> str:
        return hashlib.sha256(f"{self.system}\n\n{self.sent()}".encode()).hexdigest()

    def shown(self) -> list[str]:
        """The lines the examples show (a candidate that hands one back is a copy, not a rewrite)."""
        return [line for asked, answered in self.shots for line in (_quoted(asked), answered.strip('"'))]


def _quoted(text: str) -> str:
    return text.split('"')[1] if text.count('"') >= 2 else text


def pick_shots(
    corpus: Sequence[Sequence[str]], slot: str, seed: str, count: int
) -> tuple[tuple[str, str], ...]:
    """``count`` examples of the slot's task from the brand corpus: each from another theme (a
    group of lines that say the same thing), a pair of its lines as (ask about one, the other).
    Themes holding the seed itself are skipped, so no example answers the real question. The same
    seed picks the same examples (a hash, not the run's random state)."""
    s = spec(slot)
    groups = [list(g) for g in corpus if len(g) >= 2 and seed.strip().lower() not in {x.lower() for x in g}]
    if count < 1 or not groups:
        return ()
    digest = int(hashlib.sha256(f"{s.name}|{seed}".encode()).hexdigest(), 16)
    shots = []
    for k in range(min(count, len(groups))):
        group = groups[(digest + k) % len(groups)]  # distinct themes, next to each other
        a = (digest >> (8 * k)) % len(group)
        b = (a + 1 + (digest >> (8 * k + 4)) % (len(group) - 1)) % len(group)
        shots.append((f"{s.ask.format(seed=group[a])}\n{s.label}", f'"{group[b]}"'))
    return tuple(dict.fromkeys(shots))


def template_sha256() -> str:
    asks = "\n".join(f"{s.ask}\n{s.label}" for s in SPECS.values())
    return hashlib.sha256(f"{TEMPLATE_VERSION}\n{SYSTEM}\n{USER}\n{asks}".encode()).hexdigest()


def audience_words(segment: str, top_drivers: list[dict[str, Any]] | None = None) -> str:
    """The segment in words, plus its most common reason family when there is one. Unknown names
    are dropped, not echoed: only this module's vocabulary reaches a prompt."""
    words = SEGMENT_WORDS.get(segment, "our customers")
    families = [d.get("family") for d in (top_drivers or []) if d.get("family") in FAMILY_WORDS]
    if families and segment not in ("champions", "loyal"):
        words += f"; often {FAMILY_WORDS[families[0]]}"
    return words


def slot_prompt(
    brief: Brief,
    segment: str,
    slot: str,
    top_drivers: list[dict[str, Any]] | None,
    corpus: Mapping[str, Sequence[Sequence[str]]] | None = None,
) -> SlotPrompt:
    """The prompt of one slot for one segment. ``corpus``: slot -> the brand corpus's themes' lines
    of that slot; the spec's ``shots`` examples are picked from it (none without a corpus)."""
    s = spec(slot)
    seed = brief.seeds.seed(s.name)
    ask = s.ask.format(seed=seed)
    user = USER.format(audience=audience_words(segment, top_drivers), tone=brief.tone, ask=ask, label=s.label)
    shots = pick_shots((corpus or {}).get(s.name, ()), s.name, seed, s.shots)
    return SlotPrompt(slot=s.name, segment=segment, system=SYSTEM, user=user, shots=shots)
