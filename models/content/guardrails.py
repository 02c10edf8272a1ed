"""Guardrails on generated copy: what keeps a draft from going out, and what only warns the approver.

The language model writes two slots of plain words (``headline``, ``hook``); every figure, code, date
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
    SLOTS,
    Brief,
)

CHECKS: dict[str, str] = {
    "empty": "block",
    "shape": "block",
    "placeholders": "block",
    "invented_facts": "block",
    "pii": "block",
    "banned_words": "block",
    "banned_claims": "block",
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
HEADLINE_MAX_WORDS = 8
HOOK_WORDS = (5, 35)
NEAR_DUPLICATE = 0.8  # Jaccard similarity of word 3-shingles from which two variants are one
ENGLISH_MIN_SHARE = 0.1  # below this share of common English words, 4+ words do not read as English

# -- what a fact looks like ---------------------------------------------------------------------------
_MONTH = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|December"
    r"|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec)\.?"
)
_NUM = r"\d+(?:[.,]\d+)*"
_CURRENCY = r"(?:(?<![A-Za-z])(?:EUR|USD|GBP|CHF)(?![A-Za-z])|[€$£¥])"
_TLD = (
    "com|net|org|info|biz|io|co|uk|de|fr|es|it|nl|at|ch|eu|us|ca|au|shop|store|online|site|app|xyz|top|"
    "club|deals|sale|me|ly|tv|ai"
)
_STREET = r"(?:Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Drive|Dr|Boulevard|Blvd|Way|Court|Ct|Place|Pl|Square|Sq)"

_URL = re.compile(r"(?i)(?:https?://|www\.)[^\s<>\"']*[^\s<>\"'.,;:!?)]")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_DOMAIN = re.compile(rf"(?i)(?<![\w@.-])(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+(?:{_TLD})(?![\w-])(?:/\S*)?")
_DATE = re.compile(
    rf"(?i)(?<!\d)\d{{4}}-\d{{1,2}}-\d{{1,2}}(?!\d)"  # 2026-08-31
    rf"|(?<![\d.])\d{{1,2}}\.\d{{1,2}}\.\d{{2,4}}(?!\d)"  # 31.08.2026
    rf"|(?<![\d/])\d{{1,2}}/\d{{1,2}}(?:/\d{{2,4}})?(?![\d/])"  # 31/08, 08/31/26
    rf"|(?<!\d)\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}(?![a-z])(?:,?\s+\d{{4}})?"  # 31 August 2026
    rf"|\b{_MONTH}(?![a-z])\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?(?!\d)"  # August 31, 2026
)
# 7 to 15 digits with single separators, optionally +country code or (area code); not a date
_PHONE = re.compile(
    r"(?<![\w+])(?!\d{4}-\d{1,2}-\d{1,2}(?!\d))(?!\d{1,2}[./]\d{1,2}[./]\d{2,4}(?!\d))"
    r"(?:\+\d{1,3}[ .-]?(?:\(0\)[ .-]?)?|\(\d{2,5}\)[ .-]?)?\d(?:[ .\-/]?\d){6,14}(?!\w)"
)
_TIME = re.compile(
    r"(?i)(?<!\d)\d{1,2}(?::\d{2})?\s?(?:am|pm|a\.m\.|p\.m\.)(?!\w)|(?<!\d)\d{1,2}:\d{2}(?!\d)"
)
_AMOUNT = re.compile(
    rf"(?i){_CURRENCY}\s?{_NUM}|{_NUM}\s?(?:{_CURRENCY}|euros?|dollars?|pounds?|cents?|bucks)(?![A-Za-z])"
)
_PERCENT = re.compile(rf"(?i){_NUM}\s?(?:%|percent\b|per\s?cent\b)")
_SPELLED = re.compile(
    r"(?i)\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty"
    r"|fifty|sixty|seventy|eighty|ninety|(?:a|one)\s+hundred)(?:[\s-](?:one|two|three|four|five|six|seven"
    r"|eight|nine))?\s+(?:percent|per\s+cent|euros?|dollars?|pounds?)\b|\bhalf[\s-](?:price|off)\b"
)
_CODE = re.compile(r"(?<![\w-])(?=[A-Z0-9_-]*\d)(?=[A-Z0-9_-]*[A-Z])[A-Z0-9][A-Z0-9_-]{2,}(?![\w-])")
_CODE_AFTER_WORD = re.compile(r"(?i:\b(?:code|coupon|voucher|promo))\s*:?\s*(?P<t>[A-Z]{4,})(?![\w-])")
# deadlines in words; "May" is left out (a verb far more often than a month), with a number it is a date
_DATE_WORD = re.compile(
    r"\b(?:January|February|March|April|June|July|August|September|October|November|December)\b"
    r"|(?i:\b(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|tomorrow|tonight|midnight)\b)"
)
_NUMBER = re.compile(r"\d+(?:[.,:/-]\d+)*")
_CURRENCY_SIGN = re.compile(r"[€$£¥]")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])")
_STREET_ADDRESS = re.compile(  # 12 Baker Street, Baker Street 12, Hauptstraße 12
    rf"(?<!\w)\d{{1,5}}[A-Za-z]?,?[ \t]+(?:[A-Z][\w'-]*[ \t]+){{1,3}}{_STREET}\b\.?"
    rf"|(?:[A-Z][\w'-]*[ \t]+){{1,3}}{_STREET}\.?[ \t]+\d{{1,5}}[a-z]?(?!\w)"
    r"|\b[A-ZÄÖÜ][\wäöüß-]*(?:straße|strasse|str\.|weg|allee|platz|gasse)[ \t]+\d{1,4}[a-z]?(?!\w)"
)
# first match wins: each pattern blanks what it found, so '20%' is one percentage, not also a number
_FACT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("link", _URL),
    ("e-mail address", _EMAIL),
    ("domain", _DOMAIN),
    ("IBAN", _IBAN),
    ("date", _DATE),
    ("phone number", _PHONE),
    ("street address", _STREET_ADDRESS),
    ("time", _TIME),
    ("amount", _AMOUNT),
    ("percentage", _PERCENT),
    ("amount in words", _SPELLED),
    ("code", _CODE),
    ("code", _CODE_AFTER_WORD),
    ("date", _DATE_WORD),
    ("number", _NUMBER),
    ("currency sign", _CURRENCY_SIGN),
)
_PII_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("e-mail address", _EMAIL),
    ("IBAN", _IBAN),
    ("phone number", _PHONE),
    ("street address", _STREET_ADDRESS),
)


def _vocabulary(words: str) -> frozenset[str]:
    return frozenset(words.split())


# -- what a word and a sentence are -------------------------------------------------------------------
_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")  # "it's", "full-price" and "20" are one word each
_LETTERS = re.compile(r"[^\W\d_]+")  # letter runs: "it's" -> "it", "s"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n")
_SLOT_MARKUP = re.compile(
    r"\{[^{}]*\}|[{}]|\[[^\]]*\]|<[^>]*>"
)  # {first_name}, [Name], <name>: a model's fill-ins

_ENGLISH = _vocabulary(  # function words, then the everyday words of shop copy
    """
    a about after again against all almost also always am an and another any anyone anything are around as
    at away back be because been before being below best better between both but by can come comes coming
    could d day days did do does doing done down during each early enjoy enough even ever every everyone
    everything few find first for found from full get gets give go goes going good great had has have
    having he her here hers him his how i if in inside into is it its just keep know last least less let
    like little ll long look looking lot love loved m made make many may me might more most much must my
    myself need never new next no nor not nothing now of off often on once one only or other our ours out
    over own per please quite rather re ready really right s same see seen she should since so some
    someone something soon still such sure t take than thank thanks that the their theirs them then there
    these they thing things think this those though through time times to today together too under until
    up upon us ve very want wanted was way we well were what when where which while who whole why will
    with within without would year years yes yet you your yours yourself
    account autumn bit choose choosing code collection customer customers dear discover end ends
    especially explore extra favourite favourites favorite favorites fresh gift hello hi home item items
    miss missed minimum moment offer order orders picked picks preview price season shop shopping special
    spring style summer treat unsubscribe use valid visit waiting welcome winter
    """
)
# function words of the languages a draft most likely slips into (none of them also English)
_OTHER_LANGUAGES: dict[str, frozenset[str]] = {
    "German": _vocabulary(
        """
        und der die das ist nicht ein eine einen dem den des mit sich auf für von zu wir ihr sie es uns
        dich dir du ich auch noch schon nur bei nach wie aber oder wenn wieder bald hier jetzt sehr mehr
        gibt haben sind werden wird würden freuen kein keine hallo danke ihre ihren unser unsere dein
        deine etwas weile zum zur im vom neue neuen lange zeit
        """
    ),
    "French": _vocabulary(
        """
        le la les un une des du et est sont nous vous ils elle pour avec dans sur pas que qui ce cette ces
        mais ou votre vos notre nos très plus bientôt depuis encore bonjour merci été avons avez être
        avoir je tu il au aux leur en de revoir temps nouvelle
        """
    ),
    "Spanish": _vocabulary(
        """
        el la los las un una unos y es que de del en con por para nos te tu su sus muy más pero como hace
        tiempo hola gracias nuestro nuestra volver verte pronto está estamos queremos hemos ya lo le se al
        nueva nuevo desde
        """
    ),
    "Dutch": _vocabulary(
        """
        de het een en van ik je dat die niet zijn op aan met voor er maar om dan zou wat mijn dit zo ze zich
        bij ook kan nog al worden wij zouden graag weer zien tijdje geleden jullie onze ons uw bent heeft
        hebben naar nieuwe
        """
    ),
    "Italian": _vocabulary(
        """
        il lo gli la le un una di da del della dei che e è non con su ci ti vi mi sono siamo abbiamo
        vorremmo tempo presto ancora nuovo nuova nostra nostro vostro tuo tua grazie ciao rivederti passato
        molto più anche questo questa ma
        """
    ),
    "Portuguese": _vocabulary(
        """
        o os um uma uns de da dos das em na nos que e é para com por não mais muito você vocês seu sua
        nosso nossa tempo saudades voltar obrigado olá ainda novo nova também está estamos queremos
        """
    ),
}


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

    A slot is plain words: even the brief's own offer is refused here, because the templates state it
    (a model that repeats '15%' may as well write '20%'). An empty slot is reported alone: nothing else
    can be said about it.
    """
    if slot not in SLOTS:
        raise ValueError(f"slot {slot!r}: the model writes {list(SLOTS)}")
    if not text.strip():
        return CheckReport((_check("empty", [f"the {slot} is empty"], ""),))
    markup = [repr(m.group()) for m in _SLOT_MARKUP.finditer(text)]
    facts = [f"{token!r} ({kind})" for kind, token in _scan(text, _FACT_PATTERNS)]
    if slot == "hook":
        readability = _readability(text, brief, slot)
    else:
        readability = _check("readability", [], "a headline is too short to score")
    return CheckReport(
        (
            _check("empty", [], f"the {slot} has text"),
            _check("shape", _shape(text, slot), f"the {slot} has the shape of a {slot}"),
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
    invented = [
        f"{part}: {token!r} ({kind}) is not an offer fact of the brief"
        for part, text in stripped.items()
        for kind, token in _scan(text, _FACT_PATTERNS)
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
    words = _WORD.findall(text)
    problems = [f"the {slot} spans several lines: it is one line"] if "\n" in text.strip() else []
    if slot == "headline":
        if len(words) > HEADLINE_MAX_WORDS:
            problems.append(f"the headline has {len(words)} words, at most {HEADLINE_MAX_WORDS}")
        body = text.strip().removesuffix("!")
        stops = ", ".join(repr(c) for c in sorted(set(re.findall(r"[.?!;:]", body))))
        if stops:
            problems.append(
                f"the headline has {stops}: it ends in '!' or nothing (the subject adds ': offer')"
            )
    else:
        low, high = HOOK_WORDS
        if not low <= len(words) <= high:
            problems.append(f"the hook has {len(words)} words; it has {low} to {high}")
        sentences = _sentences(text)
        if len(sentences) > 1:
            problems.append(f"the hook has {len(sentences)} sentences; it is one")
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
        for name in sorted(names & set(SLOTS)):
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
    return [f"{where}: {kind} {token!r}" for kind, token in _scan(text, _PII_PATTERNS)]


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
        words = [w.lower() for w in _LETTERS.findall(sentence)]
        english = sum(w in _ENGLISH for w in words)
        english_words, words_seen = english_words + english, words_seen + len(words)
        share, language = max((sum(w in v for w in words), name) for name, v in _OTHER_LANGUAGES.items())
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
    text = _remove(_URL.sub(" ", texts[part]), first_name)
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
    return [s for s in _SENTENCE_END.split(text.strip()) if _LETTERS.search(s)]


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
    words = [w for s in sentences for w in _WORD.findall(s) if _LETTERS.search(w)]
    if not words:
        return None
    syllables = sum(_syllables(w) for w in words)
    score = 206.835 - 1.015 * len(words) / len(sentences) - 84.6 * syllables / len(words)
    return min(max(score, 0.0), 100.0)


def _shingles(text: str) -> set[tuple[str, ...]]:
    words = [w.lower() for w in _WORD.findall(text)]
    return {tuple(words[i : i + 3]) for i in range(max(len(words) - 2, 1))} if words else set()


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def _around(text: str, at: int) -> str:
    return text[max(at - 20, 0) : at + 20]


def _clip(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
