"""Guardrails on generated copy: what keeps a draft from going out, and what only warns the approver.

The language model writes slots of plain words (subject, preheader, headline, body, cta, sms, push:
models/content/slots.py); every figure, code, date
and link in the final copy comes from the brief through the channel templates. So there are two gates:

* :func:`check_slot` -- one slot before it goes into a template: plain words, the right shape, English.
* :func:`check_copy` -- a channel's rendered copy: nothing the brief did not state, within the channel's
  length, no personal data, placeholders intact, disclaimer present, readable, not a copy of a sibling.

A failed ``block`` check keeps the draft out (the brief's seed copy goes instead); a failed ``warn``
check is shown to the approver. Every check says what it found and where, so whoever reads the report
can act on it without re-running anything. Pure Python: these run per segment and variant, offline.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

from models.content.brief import (
    CHANNEL_LIMITS,
    CHANNELS,
    PLACEHOLDERS,
    REQUIRED,
    SAMPLE_RECIPIENT,
    SLOT_NAMES,
    Brief,
)
from models.content.copy_patterns import (
    ENGLISH,
    FACT_PATTERNS,
    LETTERS,
    OFFENSIVE,
    OTHER_LANGUAGES,
    PII_PATTERNS,
    SENTENCE_END,
    SLOT_MARKUP,
    URL,
    WORD,
)
from models.content.slots import SPECS, dangling
from models.content.slots import spec as slot_spec

CHECKS: dict[str, str] = {
    "empty": "block",
    "shape": "block",
    "placeholders": "block",
    "invented_facts": "block",
    "pii": "block",
    "banned_words": "block",
    "banned_claims": "block",
    "offensive": "block",
    "length": "block",
    "disclaimer": "block",
    # a slot in another language blocks (check_slot): it would be rewritten anyway; on copy it warns
    "language": "warn",
    "readability": "warn",
    "near_duplicate": "warn",
}

# Claims no campaign may make, whatever its brief says (consumer-protection and health-claim rules).
BANNED_CLAIMS = (
    "guaranteed results",
    "100% free",
    "risk-free",
    "no risk",
    "act now or lose",
    "cure",
    "clinically proven",
    "miracle",
)
NEAR_DUPLICATE = 0.8  # Jaccard similarity of word 3-shingles from which two variants are one
ENGLISH_MIN_SHARE = 0.1  # below this share of common English words, 4+ words do not read as English


@dataclass(frozen=True)
class Check:
    name: str  # one of CHECKS
    severity: str  # "block" | "warn"
    passed: bool
    detail: str  # what was found and where, or what was checked when it passed


@dataclass(frozen=True)
class CheckReport:
    checks: tuple[Check, ...]

    @property
    def blocked(self) -> bool:
        """A failed blocking check: the draft may not go out."""
        return any(c.severity == "block" for c in self.failed)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def to_json(self) -> list[dict]:
        return [asdict(c) for c in self.checks]


def check_slot(text: str, brief: Brief, slot: str) -> CheckReport:
    """Checks on one model-written slot before it goes into a template.

    A slot is plain words in its spec's shape (models/content/slots.py: words, sentences, end
    punctuation, characters): even the brief's own offer is refused here, because the templates state
    it (a model that repeats '15%' may as well write '20%'). An empty slot is reported alone: nothing
    else can be said about it. ``hook`` is read as ``body``.
    """
    s = slot_spec(slot)
    slot = s.name
    if not text.strip():
        return CheckReport((_check("empty", [f"the {slot} is empty"], ""),))
    markup = [repr(m.group()) for m in SLOT_MARKUP.finditer(text)]
    facts = [f"{token!r} ({kind})" for kind, token in _scan(text, FACT_PATTERNS)]
    if s.readability:
        readability = _readability(text, brief, slot)
    else:
        readability = _check("readability", [], f"{s.what} is too short to score")
    return CheckReport(
        (
            _check("empty", [], f"the {slot} has text"),
            _check("shape", _shape(text, slot), f"the {slot} has the shape of {s.what}"),
            _check(
                "placeholders",
                [
                    f"{m} in the {slot}: a slot is plain words, fill-ins come from the template"
                    for m in markup
                ],
                f"no placeholders in the {slot}",
            ),
            _check(
                "invented_facts",
                [
                    f"{f} in the {slot}: slots are plain words, the offer comes from the template"
                    for f in facts
                ],
                f"no figures, codes, dates or links in the {slot}",
            ),
            _check("pii", _pii(text, slot), f"no personal data in the {slot}"),
            _banned_words(brief, {slot: text}),
            _banned_claims(brief, {slot: text}),
            _offensive({slot: text}),
            _language(text, slot, severity="block"),
            readability,
        )
    )


def check_copy(
    rendered: Mapping[str, str],
    brief: Brief,
    channel: str,
    *,
    templates: Mapping[str, str],
    sample_first_name: str = SAMPLE_RECIPIENT["first_name"],
    other_variants: Sequence[Mapping[str, str]] = (),
    fills: Sequence[str] | None = None,
) -> CheckReport:
    """Checks on a channel's final copy.

    ``rendered`` maps each part of the channel (``brief.parts(channel)``) to its text with the offer
    and ``{first_name}`` filled, the name being ``sample_first_name`` (deliberately long, so the length
    check holds for real names). ``templates`` maps the same parts to the text with the slots filled
    and the placeholders still in. Everything the brief states (``brief.facts()``) and the sample name
    are taken out before the scans for invented facts and personal data: they are the approved part.
    Banned words and claims are looked for everywhere: the avoid lists bind the brief's own text too.

    ``fills``: other texts filled in from an approved source and taken out like the facts; default the
    sample recommended product and its link (``SAMPLE_RECIPIENT``), which drafts are previewed with.
    The export checks each real product it fills in with ``fills=(its link,)``: the link comes from
    the shop's own setting, the product name from the catalogue, so the name is scanned like model
    words (a name that smuggles in "50% off" is an invented fact).
    """
    if fills is None:
        fills = (SAMPLE_RECIPIENT["recommended_product"], SAMPLE_RECIPIENT["recommended_product_url"])
    if channel not in CHANNELS:
        raise ValueError(f"channel {channel!r}: channels are {list(CHANNELS)}")
    parts = brief.parts(channel)
    texts = {part: rendered.get(part, "") for part in parts}
    stripped = {part: _strip_facts(text, brief, sample_first_name, fills) for part, text in texts.items()}
    prose = _prose(stripped.values())
    empty = [f"{part} is empty" for part, text in texts.items() if not text.strip()]
    stated = _stated(brief, channel)
    invented = [
        f"{part}: {token!r} ({kind}) is not an offer fact of the brief"
        for part, text in stripped.items()
        for kind, token in _scan(text, FACT_PATTERNS)
        if not _states(stated, kind, token)
    ]
    pii = [problem for part, text in stripped.items() for problem in _pii(text, part)]
    others = [
        _prose(_strip_facts(other.get(part, ""), brief, sample_first_name, fills) for part in parts)
        for other in other_variants
    ]
    return CheckReport(
        (
            _check("empty", empty, f"every part of the {channel} copy has text"),
            _check(
                "placeholders", _placeholders(texts, templates), "placeholders are the brief's and filled"
            ),
            _check("invented_facts", invented, "every figure, code, date and link comes from the brief"),
            _check("pii", pii, "no personal data besides the recipient's first name"),
            _banned_words(brief, texts),
            _banned_claims(brief, texts),
            _offensive(texts),
            _length(texts),
            _disclaimer(texts, brief, channel),
            _language(prose, channel, severity=CHECKS["language"]),
            _copy_readability(texts, brief, channel, sample_first_name),
            _near_duplicate(prose, others),
        )
    )


# -- the checks ---------------------------------------------------------------------------------------
def _check(name: str, problems: list[str], ok: str, severity: str | None = None) -> Check:
    return Check(name, severity or CHECKS[name], not problems, "; ".join(problems) if problems else ok)


def _shape(text: str, slot: str) -> list[str]:
    """The slot's spec: one line, its word and sentence range, its end punctuation, its characters."""
    s = SPECS[slot]
    words = WORD.findall(text)
    problems = [f"the {slot} spans several lines: it is one line"] if "\n" in text.strip() else []
    low, high = s.words
    if not low <= len(words) <= high:
        problems.append(f"the {slot} has {len(words)} words; {s.what} has {low} to {high}")
    if len(text) > s.max_chars:
        problems.append(f"the {slot} has {len(text)} characters, at most {s.max_chars}")
    stripped = text.strip()
    end = stripped[-1:] if stripped[-1:] in ".!?;:," else ""
    if s.sentences == (1, 1):
        inner = stripped[:-1] if end else stripped
        # a phrase the template follows with ': offer' or ': link' has no colon of its own
        inside = r"[.?!;]" if "." in s.ends or s.colon else r"[.?!;:]"
        stops = ", ".join(repr(c) for c in sorted(set(re.findall(inside, inner))))
        if stops:
            problems.append(f"the {slot} has {stops} inside: {s.what} is one sentence or phrase")
    else:
        count = len(_sentences(text))
        if not s.sentences[0] <= count <= s.sentences[1]:
            problems.append(
                f"the {slot} has {count} sentence(s); {s.what} has {s.sentences[0]} to {s.sentences[1]}"
            )
    stop = dangling(text) if s.phrase else None
    if stop:
        problems.append(
            f"the {slot} stops on {stop!r}: {s.what} does not end on an article, a conjunction, "
            "a preposition or a possessive"
        )
    sentence = "." in s.ends  # a sentence ends in its punctuation; a phrase ends bare or in '!'
    allowed = (
        " or ".join(repr(c) for c in s.ends)
        if sentence
        else "nothing" + "".join(f" or {c!r}" for c in s.ends)
    )
    if (end and end not in s.ends) or (sentence and not end):
        problems.append(f"the {slot} ends in {end or 'no punctuation'!r}: {s.what} ends in {allowed}")
    return problems


def _placeholders(texts: Mapping[str, str], templates: Mapping[str, str]) -> list[str]:
    """Each template carries what its part requires and only the brief's placeholders, slots filled."""
    problems = []
    for part, text in texts.items():
        if part not in templates:
            problems.append(f"{part}: no template text to check")
            continue
        try:
            fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(templates[part])]
        except ValueError as exc:
            problems.append(f"{part}: the template's braces do not pair up ({exc})")
            fields = []
        names = {name for name, _, _ in fields if name is not None}
        for name in sorted(names - set(PLACEHOLDERS)):
            problems.append(f"{part}: {{{name}}} is not a placeholder; use some of {list(PLACEHOLDERS)}")
        for name in sorted(names & set(SLOT_NAMES)):
            problems.append(f"{part}: the slot {{{name}}} was not filled")
        for name, spec, conv in fields:
            if name is not None and (spec or conv):
                problems.append(f"{part}: {{{name}}} carries a format or conversion; write it plain")
        for name in REQUIRED[part]:
            if name not in names:
                problems.append(f"{part}: the template lacks {{{name}}} (the offer comes from the brief)")
        brace = re.search(r"[{}]", text)
        if brace:
            problems.append(f"{part}: braces left in the rendered text at {_around(text, brace.start())!r}")
    return problems


def _pii(text: str, where: str) -> list[str]:
    return [f"{where}: {kind} {token!r}" for kind, token in _scan(text, PII_PATTERNS)]


def _banned_words(brief: Brief, texts: Mapping[str, str]) -> Check:
    """The brief's words, whole and with a plural ending: 'deal' also catches 'deals', not 'ideal'."""
    problems = [
        f"{where}: {found!r} (the brief avoids {word!r})"
        for word in brief.avoid.words
        for where, text in texts.items()
        for found in _find_phrase(word, text, plural=True)
    ]
    return _check("banned_words", problems, f"none of the brief's {len(brief.avoid.words)} avoided words")


def _banned_claims(brief: Brief, texts: Mapping[str, str]) -> Check:
    claims = [(c, "the brief avoids") for c in brief.avoid.claims] + [
        (c, "no campaign may claim") for c in BANNED_CLAIMS
    ]
    problems = [
        f"{where}: {found!r} ({why} {claim!r})"
        for claim, why in claims
        for where, text in texts.items()
        for found in _find_phrase(claim, text, plural=False)
    ]
    return _check("banned_claims", problems, f"none of {len(claims)} banned claims")


def _offensive(texts: Mapping[str, str]) -> Check:
    """Profanity, insults and slurs (copy_patterns.OFFENSIVE_WORDS): no brief allows them, and the
    brief's own text is held to it too."""
    problems = [
        f"{where}: {m.group()!r} is offensive"
        for where, text in texts.items()
        for m in OFFENSIVE.finditer(text)
    ]
    return _check("offensive", problems, "no offensive words")


# the findings a brief may state in words, so the copy may repeat them: "free shipping" when its
# conditions say so, a word-code its conditions name. Figures are matched as the brief's facts are.
_WORD_KINDS = ("amount in words", "offer in words", "code")


def _stated(brief: Brief, channel: str) -> str:
    """What the brief says around the copy: its facts and its own templates' words."""
    templates = [brief.template(part) for part in brief.parts(channel)]
    return "\n".join([*brief.facts().values(), *templates])


def _states(stated: str, kind: str, token: str) -> bool:
    """Whether the brief itself states a word-offer or code (a whole phrase; codes case-sensitive)."""
    if kind not in _WORD_KINDS:
        return False
    words = [re.escape(w) for w in token.split()]
    pattern = r"(?<![\w-])" + r"\s+".join(words) + r"(?![\w-])"
    return re.search(pattern, stated, 0 if kind == "code" else re.IGNORECASE) is not None


def _length(texts: Mapping[str, str]) -> Check:
    measured = [
        (part, len(text), CHANNEL_LIMITS[part]) for part, text in texts.items() if part in CHANNEL_LIMITS
    ]
    problems = [f"{part}: {n} characters, limit {limit}" for part, n, limit in measured if n > limit]
    ok = "; ".join(f"{part}: {n} of {limit} characters" for part, n, limit in measured) or "no length limit"
    return _check("length", problems, ok)


def _disclaimer(texts: Mapping[str, str], brief: Brief, channel: str) -> Check:
    if not brief.disclaimer.strip():
        return _check("disclaimer", [], "the brief has no disclaimer")
    if channel != "email":
        return _check("disclaimer", [], f"{channel} is exempt: the disclaimer goes in the e-mail body")
    wanted = brief.facts()["disclaimer"]
    if wanted in texts.get("email_body", ""):
        return _check("disclaimer", [], "the e-mail body carries the brief's disclaimer")
    return _check("disclaimer", [f"email_body lacks the brief's disclaimer {wanted!r}"], "")


def _language(text: str, where: str, severity: str) -> Check:
    """English, sentence by sentence: an English template around a German hook is not English copy.

    A sentence is English if it has more common English words than function words of another language
    the model is likely to slip into. Languages without a list are caught by having next to no common
    English words; the bar is low because content words ('linen dresses await') are not in the list.
    Two or three words rarely say which language they are in, so a short sentence fails only on evidence
    for another language.
    """
    problems, english_words, words_seen = [], 0, 0
    for sentence in _sentences(text):
        words = [w.lower() for w in LETTERS.findall(sentence)]
        english = sum(w in ENGLISH for w in words)
        english_words, words_seen = english_words + english, words_seen + len(words)
        share, language = max((sum(w in v for w in words), name) for name, v in OTHER_LANGUAGES.items())
        if share > english or (len(words) >= 4 and english < ENGLISH_MIN_SHARE * len(words)):
            other = f", {share} {language} function words" if share else ""
            problems.append(
                f"{where}: {_clip(sentence)!r} does not read as English "
                f"({english}/{len(words)} common English words{other})"
            )
    if not words_seen:
        return _check("language", [], f"no words in the {where} to judge", severity)
    ok = f"the {where} reads as English ({english_words / words_seen:.0%} common English words)"
    return _check("language", problems, ok, severity)


def _copy_readability(texts: Mapping[str, str], brief: Brief, channel: str, first_name: str) -> Check:
    if channel == "push":
        return _check("readability", [], "push is too short to score")
    part = "email_body" if channel == "email" else channel
    # what a reader reads: not the link, not the sample name standing in for theirs
    text = _remove(URL.sub(" ", texts[part]), first_name)
    return _readability(text, brief, part)


def _readability(text: str, brief: Brief, where: str) -> Check:
    score = _flesch(text)
    band = brief.readability
    if score is None:
        return _check("readability", [], f"no words in the {where} to score")
    found = f"{where}: Flesch reading ease {score:.1f}, band {band.min:g}-{band.max:g}"
    return _check("readability", [] if band.min <= score <= band.max else [found], found)


def _near_duplicate(prose: str, others: list[str]) -> Check:
    """Variants that differ in a word or two test nothing: the A/B split would measure noise."""
    if not others:
        return _check("near_duplicate", [], "no other variants to compare")
    mine = _shingles(prose)
    similarities = [_jaccard(mine, _shingles(other)) for other in others]
    problems = [
        f"{s:.2f} similar to other variant {i} (limit {NEAR_DUPLICATE:.2f})"
        for i, s in enumerate(similarities, 1)
        if s >= NEAR_DUPLICATE
    ]
    ok = f"at most {max(similarities):.2f} similar to {len(others)} other variant(s)"
    return _check("near_duplicate", problems, ok)


# -- helpers ------------------------------------------------------------------------------------------
def _scan(text: str, patterns: tuple[tuple[str, re.Pattern[str]], ...]) -> list[tuple[str, str]]:
    """(kind, token) for every match, in text order; each pattern blanks its matches for the next."""
    found = []
    for kind, pattern in patterns:
        for match in pattern.finditer(text):
            start, end = match.span("t") if "t" in pattern.groupindex else match.span()
            found.append((start, kind, text[start:end].strip()))
            text = text[:start] + " " * (end - start) + text[end:]
    return [(kind, token) for _, kind, token in sorted(found)]


def _strip_facts(text: str, brief: Brief, first_name: str, fills: Sequence[str] = ()) -> str:
    """The text without what the brief states and the sample name: what is left, the model wrote.

    Longest first (the disclaimer holds the expiry), and only where a fact stands alone: 'COMEBACK150'
    and '.../welcome-back-now' keep their tails, which the scans then report.
    """
    for fact in sorted({*brief.facts().values(), first_name, *fills}, key=len, reverse=True):
        text = _remove(text, fact)
    return text


def _remove(text: str, fact: str) -> str:
    if not fact.strip():
        return text
    return re.sub(rf"(?<![\w@/.-]){re.escape(fact)}(?![\w@/%#&=-]|[.,:?]\w)", " ", text)


def _find_phrase(phrase: str, text: str, *, plural: bool) -> list[str]:
    """Whole-word, case-insensitive matches; any run of spaces or dashes stands for one ('risk free')."""
    words = [re.escape(w) for w in re.split(r"[\s-]+", _apostrophes(phrase).strip()) if w]
    if not words:
        return []
    suffix = "(?:e?s)?" if plural else ""
    pattern = r"(?<!\w)" + r"[\s-]+".join(words) + suffix + r"(?!\w)"
    return [m.group() for m in re.finditer(pattern, _apostrophes(text), re.IGNORECASE)]


def _apostrophes(text: str) -> str:
    return text.replace("’", "'")


def _prose(parts: Iterable[str]) -> str:
    """A variant's parts as one text; each part ends its own sentence."""
    return "\n\n".join(parts)


def _sentences(text: str) -> list[str]:
    return [s for s in SENTENCE_END.split(text.strip()) if LETTERS.search(s)]


def _syllables(word: str) -> int:
    """Vowel groups, less a silent final 'e' ('while') or 'ed' ('saved'): the usual Flesch heuristic."""
    word = word.lower()
    count = len(re.findall(r"[aeiouy]+", word))
    silent_e = word.endswith("e") and not word.endswith(("le", "ee", "ye"))
    silent_ed = word.endswith("ed") and not word.endswith(("ted", "ded"))
    return count - 1 if count > 1 and (silent_e or silent_ed) else max(count, 1)


def _flesch(text: str) -> float | None:
    """Flesch reading ease, held to 0..100 (the scale briefs set their band on); None without words.

    Paragraph breaks end a sentence as much as a full stop does: 'Hi Anna,' is read on its own.
    """
    sentences = _sentences(text)
    words = [w for s in sentences for w in WORD.findall(s) if LETTERS.search(w)]
    if not words:
        return None
    syllables = sum(_syllables(w) for w in words)
    score = 206.835 - 1.015 * len(words) / len(sentences) - 84.6 * syllables / len(words)
    return min(max(score, 0.0), 100.0)


def _shingles(text: str) -> set[tuple[str, ...]]:
    words = [w.lower() for w in WORD.findall(text)]
    return {tuple(words[i : i + 3]) for i in range(max(len(words) - 2, 1))} if words else set()


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def _around(text: str, at: int) -> str:
    return text[max(at - 20, 0) : at + 20]


def _clip(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
