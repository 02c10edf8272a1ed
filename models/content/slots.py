"""What the language model writes, slot by slot: each slot's prompt, token budget, shape and checks.

A slot is one piece of plain words that a channel template places around the brief's offer facts
(models/content/brief.py ``DEFAULT_TEMPLATES``): an e-mail's subject, preheader, headline, body and
call to action, an SMS line and a push line. A small model writes well-formed text only when it is
asked for exactly one thing of a known size, so every slot has its own :class:`SlotSpec`:

* ``ask`` -- the instruction of its prompt (models/content/prompts.py puts audience, tone and the
  brief's seed around it),
* ``max_new_tokens`` -- what decoding may spend on it (a CTA needs 10, a body 80),
* ``words`` / ``sentences`` -- the hard shape :func:`models.content.guardrails.check_slot` enforces,
* ``ideal_words`` -- the length the candidate ranking prefers inside that shape (select.py),
* ``ends`` -- the end punctuation allowed ("" = none: the template adds ': 15% off' or ': link'),
* ``max_chars`` -- so the rendered part stays within its channel limit with the longest offer,
* ``prefill`` -- the start of the answer, written into the prompt for the model: an opening quote
  makes a small model answer with one quoted phrase and close it, instead of rambling on.

Decoding bans digits, %, braces, currency signs and links and stops at the first newline for every
slot (models/content/llm.py); :func:`clean` then turns a generation into the slot's shape (labels and
quotes off, a body cut to its first three sentences, a CTA without end punctuation).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from models.content.copy_patterns import WORD

ALIASES = {"hook": "body"}  # deprecated slot names still accepted in seeds and templates


@dataclass(frozen=True)
class SlotSpec:
    name: str
    what: str  # the slot in words with its article, as messages name it
    ask: str  # the instruction; {seed} is the brief's seed text for the slot
    label: str  # the answer's label that ends the prompt ("New subject line:")
    max_new_tokens: int
    words: tuple[int, int]  # hard bounds (a shape check)
    ideal_words: tuple[int, int]  # preferred inside them (the length component of the ranking)
    sentences: tuple[int, int]
    ends: str  # allowed end punctuation; "" = must end without any
    max_chars: int
    readability: bool  # scored against the brief's Flesch band (too short to score otherwise)
    max_seed_chars: int  # a seed longer than this cannot be the fallback copy
    # sentence-embedding cosine to the seed a candidate must keep (models/content/meaning.py): the
    # 95th percentile of the cosines between this slot's lines of *different* themes of the brand
    # corpus, rounded up to 0.05 (docs/content.md, "The meaning floor"; test_content_meaning.py)
    min_meaning: float = 0.5
    shots: int = 0  # brand-corpus examples shown as earlier chat turns (prompts.py ``pick_shots``)
    colon: bool = False  # a colon inside is fine (no template follows the slot with ': offer')
    prefill: str = '"'  # the answer's first characters, written for the model (a local backend)

    @property
    def phrase(self) -> bool:
        """A phrase, not a sentence: one of them, ending bare or in '!' (subject, headline, CTA,
        push). A local model writes it inside its word range, and never stops it on a word in
        :data:`DANGLING` (models/content/decoding.py ``phrase_shape``)."""
        return self.sentences == (1, 1) and "." not in self.ends


SPECS: dict[str, SlotSpec] = {
    s.name: s
    for s in (
        SlotSpec(
            "subject",
            "an e-mail subject line",
            'Rewrite this e-mail subject line in at most seven words: "{seed}"',
            "New subject line:",
            16,
            (2, 8),
            (3, 6),
            (1, 1),
            "!",
            60,
            False,
            60,
            min_meaning=0.4,
            shots=2,
        ),
        SlotSpec(
            "preheader",
            "an e-mail preview line",
            'Rewrite this e-mail preview line as one short sentence: "{seed}"',
            "New preview line:",
            30,
            (4, 18),
            (6, 14),
            (1, 1),
            ".!",
            110,
            False,
            110,
            min_meaning=0.4,
            shots=2,
        ),
        SlotSpec(
            "headline",
            "an e-mail headline",
            'Rewrite this e-mail headline in at most six words: "{seed}"',
            "New headline:",
            14,
            (2, 8),
            (3, 6),
            (1, 1),
            "!",
            60,
            False,
            60,
            min_meaning=0.4,
            shots=0,
            colon=True,
        ),
        SlotSpec(
            "body",
            "an e-mail paragraph",
            'Rewrite this e-mail paragraph in your own words, in two or three short sentences: "{seed}"',
            "New paragraph:",
            80,
            (10, 70),
            (18, 50),
            (2, 3),
            ".!?",
            400,
            True,
            400,
            min_meaning=0.5,
            shots=0,
        ),
        SlotSpec(
            "cta",
            "a button label",
            'Rewrite this button label in two to four words: "{seed}"',
            "New button label:",
            10,
            (2, 5),
            (2, 4),
            (1, 1),
            "",
            32,
            False,
            32,
            min_meaning=0.45,
            shots=2,
        ),
        SlotSpec(
            "sms",
            "a text message",
            'Rewrite this text message in one or two short friendly sentences: "{seed}"',
            "New text message:",
            24,
            (4, 14),
            (5, 11),
            (1, 2),  # "We miss you. Come see what is new." is one text; its first sentence is too short
            ".!",
            70,
            True,
            70,
            min_meaning=0.45,
            shots=0,
        ),
        SlotSpec(
            "push",
            "an app notification",
            'Rewrite this app notification in at most six words: "{seed}"',
            "New notification:",
            14,
            (2, 8),
            (3, 6),
            (1, 1),
            "!",
            50,
            False,
            50,
            min_meaning=0.4,
            shots=2,
        ),
    )
}
SLOTS = tuple(SPECS)

# Words a phrase cannot stop on: articles, conjunctions, prepositions, possessives and a contracted
# 'is' ("Take a look at the", "Shop the best of our", "See what's"). Words that end real labels
# ("Sign up", "Log in", "Check it out", "Love this", "Guess what", "What it is") are not among them.
DANGLING = frozenset(
    {
        *("a", "an", "the"),  # articles
        *("and", "or", "but", "nor", "than"),  # conjunctions
        *("of", "to", "for", "with", "at", "from", "by", "into", "onto"),  # prepositions
        *("our", "your", "my", "their", "its", "every"),  # possessives, and a determiner
        *("what's", "it's", "that's"),  # a contracted 'is' never ends a clause ("what it is" may)
    }
)

_LABEL = re.compile(
    r"^\s*(?:new\s+|rewritten\s+|revised\s+)?(?:e-?mail\s+)?"
    r"(?:subject(?:\s+line)?|preheader|preview(?:\s+line)?|headline|paragraph|body|sentence|"
    r"button(?:\s+label)?|label|call to action|cta|text(?:\s+message)?|sms|message|notification|push)"
    r"\s*:\s*",
    re.IGNORECASE,
)
_ECHO = re.compile(r"^\s*(?:audience|tone|rewrite|original|example|now rewrite)\b", re.IGNORECASE)
_QUOTES = "\"“”'‘’«»"
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=\S)")


def spec(slot: str) -> SlotSpec:
    """The spec of a slot, by name or deprecated alias (``hook`` is ``body``)."""
    name = ALIASES.get(slot, slot)
    if name not in SPECS:
        raise ValueError(f"slot {slot!r}: the model writes {list(SLOTS)}")
    return SPECS[name]


def clean(text: str, slot: str) -> str:
    """A generation in its slot's shape: first line, labels and wrapping quotes off, a body (an SMS)
    cut to its first three (two) sentences with a cut-off last one dropped, no end punctuation where
    the template adds its own, a one-sentence slot cut to its first complete sentence. An echo of the prompt
    ("Tone: ...") comes back empty: it is no candidate."""
    s = spec(slot)
    line = text.strip().split("\n", 1)[0].strip()
    line = _LABEL.sub("", line, count=1).strip()
    if _ECHO.match(line) or "->" in line:
        return ""
    if line[:1] in '"“«':  # a quoted answer: what is inside the first pair of quotes
        inner = re.match(r"^[\"“«](.+?)[\"”»]", line)
        line = inner.group(1) if inner else line
    line = line.strip().strip(_QUOTES).strip()
    line = re.sub(r"\s+", " ", line)
    sentences = _SENTENCE.split(line)
    if s.sentences[1] > 1:  # a body, an SMS
        if len(sentences) > 1 and not sentences[-1].rstrip(_QUOTES).endswith((".", "!", "?")):
            sentences = sentences[:-1]  # cut off by the token budget
        line = " ".join(sentences[: s.sentences[1]])
        return line if s.name == "body" else _end(line, s)
    if len(sentences) > 1 and not sentences[0].endswith(".."):
        line = sentences[0]  # a one-sentence slot keeps the first sentence the model completed
    return _end(line, s)


def dangling(text: str) -> str | None:
    """The word a phrase stops on, if it is one of :data:`DANGLING` (lower-cased), else None."""
    words = WORD.findall(text)
    last = words[-1].lower().replace("’", "'") if words else ""
    return last if last in DANGLING else None


def _end(line: str, s: SlotSpec) -> str:
    """No end punctuation where the template adds its own; a phrase may end in '!' only."""
    if s.ends == "!":
        return line.rstrip(".,;:").strip()
    if s.ends == "":
        return line.rstrip(".,;:!?").strip()
    return line
