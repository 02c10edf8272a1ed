"""Prompts for the copy slots, built from a brief and a segment's aggregated profile only.

What reaches the language model: the brief's tone and approved seed sentence, the segment's name,
size band and typical reason families in plain words. Never a single customer's data, never a
name, e-mail, phone or any CRM free text (support tickets can carry prompt injections): the inputs
below are closed vocabularies and the brief, and `audience_words` only maps known family names.

The template has a version; its hash and every prompt's hash go into each draft's provenance.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from models.content.brief import Brief
from models.content.slots import SPECS, spec

TEMPLATE_VERSION = "slots-v2"
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

    def sha256(self) -> str:
        return hashlib.sha256(f"{self.system}\n\n{self.user}".encode()).hexdigest()


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
    brief: Brief, segment: str, slot: str, top_drivers: list[dict[str, Any]] | None
) -> SlotPrompt:
    s = spec(slot)
    ask = s.ask.format(seed=brief.seeds.seed(s.name))
    user = USER.format(audience=audience_words(segment, top_drivers), tone=brief.tone, ask=ask, label=s.label)
    return SlotPrompt(slot=s.name, segment=segment, system=SYSTEM, user=user)
