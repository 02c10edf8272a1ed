"""What a fact, a word and a sentence look like in campaign copy: the patterns the guardrails
(models.content.guardrails) scan for (links, e-mails, dates, phones, amounts, percentages, codes,
addresses, offers in words), the offensive words no copy may use, and the word lists they read
language by. Pure data and regular expressions."""

from __future__ import annotations

import re

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

URL = re.compile(r"(?i)(?:https?://|www\.)[^\s<>\"']*[^\s<>\"'.,;:!?)]")
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
# offers written in words: a number word with a unit ("sixteen percent", "twenty-five euros", "ten
# off"; not "one off", which is a one-off), a fraction off ("half price", "a third off"), multi-buys
# ("buy one get one free", "BOGO", "two for one") and free extras ("free shipping", "delivery is free")
_UNITS = r"(?:one|two|three|four|five|six|seven|eight|nine)"
_TEENS = r"(?:ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen)"
_TENS = r"(?:twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)"
_NUMBER_WORD = rf"(?:(?:a|one)\s+hundred|{_TENS}(?:[\s-]{_UNITS})?|{_TEENS}|{_UNITS}|zero)"
_MONEY_WORD = r"(?:percent|per\s*cent|euros?|dollars?|pounds?|bucks|quid|cents?|pence)"
_SPELLED = re.compile(
    rf"(?i)\b{_NUMBER_WORD}\s+{_MONEY_WORD}\b"
    rf"|\b(?!one\s+off\b){_NUMBER_WORD}\s+off\b(?!-)"
    r"|\bhalf[\s-](?:the\s+)?(?:price[ds]?|cost|off)\b|\b(?:a|one)\s+(?:third|quarter|fifth)\s+off\b"
)
_OFFER_WORDS = re.compile(
    r"(?i)\bbuy\s+(?:one|two|three)\s*,?\s*(?:and\s+)?get\s+(?:one|another|a\s+second)"
    r"(?:\s+(?:free|half[\s-]price))?\b"
    r"|\bBOGOF?\b|\b(?:two|three)\s+for\s+(?:one|two|the\s+price\s+of\s+(?:one|two))\b"
    r"|\b(?:free|complimentary)\s+(?:shipping|delivery|returns?|postage|gifts?|samples?|trial)\b"
    r"|\b(?:shipping|delivery|returns|postage)\s+(?:is\s+|are\s+)?(?:always\s+)?(?:free|on\s+us)\b"
    r"|\bships\s+free\b"
)
_CODE = re.compile(r"(?<![\w-])(?=[A-Z0-9_-]*\d)(?=[A-Z0-9_-]*[A-Z])[A-Z0-9][A-Z0-9_-]{2,}(?![\w-])")
_CODE_AFTER_WORD = re.compile(r"(?i:\b(?:code|coupon|voucher|promo))\s*:?\s*(?P<t>[A-Z]{4,})(?![\w-])")
# a code of capitals only ("WELCOMEBACK", "SUMMER-SALE"): five letters or more, so "EUR", "SMS" and
# "FAQ" stay words; common acronyms of that length are let through
ACRONYMS = frozenset({"ASEAN", "COVID", "LASER", "NASDAQ", "RADAR", "SCUBA", "UNESCO", "UNICEF"})
_CODE_LETTERS = re.compile(
    rf"(?<![\w-])(?!(?:{'|'.join(sorted(ACRONYMS))})(?![\w-]))[A-Z][A-Z_-]{{3,}}[A-Z](?![\w-])"
)
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
FACT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("link", URL),
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
    ("offer in words", _OFFER_WORDS),
    ("code", _CODE),
    ("code", _CODE_AFTER_WORD),
    ("code", _CODE_LETTERS),
    ("date", _DATE_WORD),
    ("number", _NUMBER),
    ("currency sign", _CURRENCY_SIGN),
)
PII_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("e-mail address", _EMAIL),
    ("IBAN", _IBAN),
    ("phone number", _PHONE),
    ("street address", _STREET_ADDRESS),
)


def _vocabulary(words: str) -> frozenset[str]:
    return frozenset(words.split())


# words no brand copy uses, whatever its brief says: profanity, insults to the reader, slurs. Whole
# words with their usual endings ("idiots", "fucking"); a team adds its own in a brief's avoid.words
OFFENSIVE_WORDS = _vocabulary(
    """
    arse arsehole asshole bastard bitch bollocks bullshit crap cretin cunt damn dickhead dumb dumbass fag
    faggot fuck fucker fucking idiot imbecile jackass loser moron motherfucker nigger piss pissed retard
    retarded shit shitty slut stupid twat wanker whore worthless
    """
)
OFFENSIVE_PHRASES = ("go to hell", "screw you", "shut up", "piss off", "sod off")
OFFENSIVE = re.compile(
    r"(?i)(?<![\w'’-])(?:"
    + "|".join(re.escape(w) for w in sorted(OFFENSIVE_WORDS, key=lambda w: (-len(w), w)))
    + r")(?:s|es|ed|ing|y)?(?![\w'’-])|(?<!\w)(?:"
    + "|".join(r"[\s-]+".join(map(re.escape, p.split())) for p in OFFENSIVE_PHRASES)
    + r")(?!\w)"
)


# -- what a word and a sentence are -------------------------------------------------------------------
WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")  # "it's", "full-price" and "20" are one word each
LETTERS = re.compile(r"[^\W\d_]+")  # letter runs: "it's" -> "it", "s"
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n")
SLOT_MARKUP = re.compile(
    r"\{[^{}]*\}|[{}]|\[[^\]]*\]|<[^>]*>"
)  # {first_name}, [Name], <name>: a model's fill-ins

ENGLISH = _vocabulary(  # function words, then the everyday words of shop copy
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
OTHER_LANGUAGES: dict[str, frozenset[str]] = {
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
