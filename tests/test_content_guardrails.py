"""Guardrails on generated copy: planted bad drafts are blocked by the right check, good drafts pass.

Copy is rendered here the way the renderer does it, from the real example briefs in campaigns/: the
slots go into the brief's templates, the offer comes from ``brief.facts()``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from models.content.brief import PLACEHOLDERS, SLOT_NAMES, SLOTS, Brief, load_briefs
from models.content.guardrails import CHECKS, Check, CheckReport, check_copy, check_slot
from models.content.slots import SPECS

BRIEFS = {b.name: b for b in load_briefs(Path(__file__).resolve().parents[1] / "campaigns")}
SAMPLE_NAME = "Maximilian-Alexander"
HEADLINE = "Something special for you"
HOOK = "It has been a while, and we would love to see you again soon."
OTHER_HEADLINE = "Your favourites missed you"
OTHER_HOOK = "Your favourites have missed you, and there is plenty of new to explore this season."
LONG_HEADLINE = "Wonderful personal recommendations and beautiful surprises are waiting for you"
CONVOLUTED_HOOK = (
    "Notwithstanding the considerable organisational complexities of our comprehensive institutional "
    "reconceptualisation, it necessitates multidimensional interdisciplinary collaboration with you."
)
KEEP = {p: "{" + p + "}" for p in PLACEHOLDERS if p not in SLOT_NAMES}  # placeholders stay in the templates
PREHEADER = "A little something is waiting for you inside."
CTA = "Come take a look"
BODY = f"{HOOK} The new season is in, with light fabrics and fresh colours."  # two sentences


def render(brief: Brief, channel: str, headline: str = HEADLINE, hook: str = HOOK) -> tuple[dict, dict]:
    """(templates with the slots filled, copy with everything filled) for each part of the channel:
    the headline text also in the subject and push slots, the hook text in the body and SMS slots."""
    templates, rendered = {}, {}
    words = {"subject": headline, "headline": headline, "push": headline, "preheader": PREHEADER}
    words |= {"body": hook, "hook": hook, "sms": hook, "cta": CTA}
    for part in brief.parts(channel):
        source = brief.template(part)
        templates[part] = source.format(**KEEP, **words)
        rendered[part] = source.format(**brief.facts(), first_name=SAMPLE_NAME, **words)
    return templates, rendered


Edit = Callable[[dict, dict, dict], None]  # (templates, rendered, facts) -> None, in place


def copy(
    hook: str = HOOK,
    *,
    brief: str = "winback-summer",
    channel: str = "email",
    headline: str = HEADLINE,
    edit: Edit | None = None,
    others: tuple[dict, ...] = (),
) -> CheckReport:
    templates, rendered = render(BRIEFS[brief], channel, headline, hook)
    if edit:
        edit(templates, rendered, BRIEFS[brief].facts())
    return check_copy(rendered, BRIEFS[brief], channel, templates=templates, other_variants=list(others))


def slot(text: str, which: str = "body", brief: str = "winback-summer") -> CheckReport:
    return check_slot(text, BRIEFS[brief], which)


def _drop_push_code(templates: dict, rendered: dict, facts: dict) -> None:
    templates["push"] = templates["push"].replace(" with code {code}", "")
    rendered["push"] = rendered["push"].replace(f" with code {facts['code']}", "")


def _price_placeholder(templates: dict, rendered: dict, facts: dict) -> None:
    templates["email_body"] += "\n\nNow from {price}."


def _leftover_braces(templates: dict, rendered: dict, facts: dict) -> None:
    rendered["sms"] = rendered["sms"].replace(facts["url"], "{url}")


def _unfilled_slot(templates: dict, rendered: dict, facts: dict) -> None:
    templates["email_subject"] = "{headline}: {offer} off"


def _drop_disclaimer(templates: dict, rendered: dict, facts: dict) -> None:
    rendered["email_body"] = rendered["email_body"].replace(facts["disclaimer"], "")


def _blank_sms(templates: dict, rendered: dict, facts: dict) -> None:
    rendered["sms"] = "   "


LONG_HOOK = (  # 35 words: a valid hook, but with the offer an SMS of more than 160 characters
    "We have missed you over the last few months, and we would really love to welcome you back to see "
    "everything new that has arrived in the shop while you were away from us."
)

Case = tuple[str, str, Callable[[], CheckReport]]  # (id, the check that must block it, the draft's report)


def bad_copy(case: str, expected: str, hook: str = HOOK, **kw) -> Case:
    return case, expected, partial(copy, hook, **kw)


def bad_slot(case: str, expected: str, text: str, which: str = "hook") -> Case:
    return case, expected, partial(slot, text, which)


CORPUS: list[Case] = [
    # invented facts in the copy
    bad_copy("discount-20", "invented_facts", "Take 20% off everything before the summer is over."),
    bad_copy("price-eur", "invented_facts", "Your favourites are back for only EUR 9.99 this week."),
    bad_copy(
        "price-symbol",
        "invented_facts",
        "Treat yourself to something new for just €10 this summer.",
        brief="welcome-new",
        channel="sms",
    ),
    bad_copy("price-words", "invented_facts", "Spend 10 euros and enjoy a little treat from the new range."),
    bad_copy("spelled-discount", "invented_facts", "Take twenty percent off everything new this summer."),
    bad_copy("code-digits", "invented_facts", "Just use code SAVE50 at checkout to welcome yourself back."),
    bad_copy("code-letters", "invented_facts", "Just use code FREESHIP at checkout when you come back."),
    bad_copy("code-extended", "invented_facts", "Use COMEBACK150 when you come back to see what is new."),
    bad_copy(
        "code-of-another-brief",
        "invented_facts",
        "Use COMEBACK15 when you come back to see what is new.",
        brief="vip-thank-you",
    ),
    bad_copy("date-words", "invented_facts", "The offer ends 30 September, so there is time to come back."),
    bad_copy("date-iso", "invented_facts", "Come back and enjoy the new collection until 2026-12-01."),
    bad_copy("date-weekday-time", "invented_facts", "Come back before Friday 5pm and see what is new."),
    bad_copy("date-reordered", "invented_facts", "The offer runs until August 31, so there is time to come."),
    bad_copy("domain", "invented_facts", "Visit shop-deals.net to see everything new in the collection."),
    bad_copy("link", "invented_facts", "Find your favourites at http://tinyurl.com/comeback before they go."),
    bad_copy(
        "link-extended", "invented_facts", "See it all at https://shop.example.com/welcome-back-now today."
    ),
    # personal data
    bad_copy("email-address", "pii", "Write to help@shop-example.org if you have any questions at all."),
    bad_copy(
        "phone-international", "pii", "Call us on +44 20 7946 0958 and we will help you find something."
    ),
    bad_copy("phone-national", "pii", "Call us on 030 1234567 and we will help you find something new."),
    bad_copy("street-address", "pii", "Visit us at 12 Baker Street and see the new collection in person."),
    bad_copy("iban", "pii", "Pay by transfer to DE89 3704 0044 0532 0130 00 and save time."),
    # length, measured with the long sample first name
    bad_copy("sms-too-long", "length", LONG_HOOK, channel="sms"),
    bad_copy("push-too-long", "length", brief="welcome-new", channel="push", headline=LONG_HEADLINE),
    bad_copy("subject-too-long", "length", brief="vip-thank-you", headline=LONG_HEADLINE),
    # words and claims
    bad_copy("banned-word", "banned_words", "Hurry back, the new collection is waiting for you to see it."),
    bad_copy("banned-phrase", "banned_words", "This is your LAST CHANCE to come back and see what is new."),
    bad_copy(
        "banned-word-plural",
        "banned_words",
        "Our deals on the new collection are waiting for you to see.",
        brief="vip-thank-you",
    ),
    bad_copy("banned-claim", "banned_claims", "We always have the best price on everything you love."),
    bad_copy("banned-claim-spacing", "banned_claims", "Come back with No  strings\tattached and see it all."),
    bad_copy(
        "builtin-claim",
        "banned_claims",
        "Our clinically proven care keeps you feeling great all season.",
        brief="vip-thank-you",
    ),
    bad_copy(
        "builtin-claim-spelling",
        "banned_claims",
        "Try the new collection risk free and see what you think of it.",
        brief="vip-thank-you",
    ),
    # templates and rendering
    bad_copy(
        "template-without-code", "placeholders", brief="welcome-new", channel="push", edit=_drop_push_code
    ),
    bad_copy("unknown-placeholder", "placeholders", edit=_price_placeholder),
    bad_copy("leftover-braces", "placeholders", channel="sms", edit=_leftover_braces),
    bad_copy("unfilled-slot", "placeholders", edit=_unfilled_slot),
    bad_copy("missing-disclaimer", "disclaimer", edit=_drop_disclaimer),
    bad_copy("empty-part", "empty", channel="sms", edit=_blank_sms),
    # slots
    bad_slot("empty-hook", "empty", "  \n "),
    bad_slot(
        "headline-too-long", "shape", "A very special thank you from all of us here at the shop", "headline"
    ),
    bad_slot("headline-full-stop", "shape", "Welcome back.", "headline"),
    bad_slot("cta-stops-on-an-article", "shape", "Take a look at the", "cta"),
    bad_slot("subject-stops-on-a-possessive", "shape", "Fresh picks from our", "subject"),
    bad_slot("sms-three-sentences", "shape", "We miss you. Come back. See what is new in the shop.", "sms"),
    bad_slot("hook-too-short", "shape", "Come back soon."),
    bad_slot(
        "hook-german", "language", "Es ist schon eine Weile her, und wir würden uns freuen, dich zu sehen."
    ),
    bad_slot(
        "hook-french", "language", "Cela fait longtemps, et nous serions ravis de vous revoir très bientôt."
    ),
    bad_slot("hook-spanish", "language", "Hace tiempo que no nos visitas y queremos verte pronto de nuevo."),
    bad_slot("hook-dutch", "language", "Het is al een tijdje geleden en we zouden je graag weer zien."),
    # no Swedish word list: next to no common English words is enough
    bad_slot("hook-swedish", "language", "Det var länge sedan, och jag skulle gärna träffa dig igen snart."),
    bad_slot("hook-digits", "invented_facts", "We miss you 2 much and would love to see you again."),
    bad_slot("hook-brief-offer", "invented_facts", "Enjoy 15% off when you come back to see us again."),
    bad_slot(
        "hook-placeholder", "placeholders", "{first_name}, we have missed you and would love to see you."
    ),
    bad_slot("hook-fill-in", "placeholders", "Dear [Name], we have missed you and would love to see you."),
    bad_slot("headline-banned-word", "banned_words", "Cheap treats for you", "headline"),
    # offensive words (more, with offers in words and meaning drift, in tests/data/bad_drafts.yaml)
    bad_slot("headline-offensive", "offensive", "Damn good treats for you", "headline"),
    bad_copy("offensive-copy", "offensive", "Only an idiot would miss the new collection this season."),
]


def failing(report: CheckReport) -> set[str]:
    return {c.name for c in report.failed}


@pytest.mark.parametrize(("expected", "make"), [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_planted_bad_draft_is_blocked_by_the_right_check(expected: str, make: Callable[[], CheckReport]):
    report = make()
    assert report.blocked, report.to_json()
    assert expected in {c.name for c in report.failed if c.severity == "block"}, report.to_json()


def test_the_whole_corpus_is_blocked():
    assert len(CORPUS) >= 25
    missed = [name for name, _, make in CORPUS if not make().blocked]
    assert missed == [], f"{len(missed)}/{len(CORPUS)} planted drafts got through: {missed}"


@pytest.mark.parametrize(
    ("brief", "channel"), [(b.name, ch) for b in BRIEFS.values() for ch in b.channels], ids=str
)
def test_good_copy_passes_every_check(brief: str, channel: str):
    variant = render(BRIEFS[brief], channel, OTHER_HEADLINE, OTHER_HOOK)[1]
    report = copy(brief=brief, channel=channel, others=(variant,))
    assert report.failed == [], report.to_json()
    assert {c.name for c in report.checks} == set(CHECKS) - {"shape"}


@pytest.mark.parametrize("brief", sorted(BRIEFS))
@pytest.mark.parametrize("source", ["written", "seeds"])
def test_good_slots_pass_every_check(brief: str, source: str):
    b = BRIEFS[brief]
    written = {"subject": HEADLINE, "preheader": PREHEADER, "headline": HEADLINE, "body": BODY, "cta": CTA}
    written |= {"sms": HOOK, "push": HEADLINE}
    for which in SLOTS:
        text = written[which] if source == "written" else b.seeds.seed(which)
        report = check_slot(text, b, which)
        assert report.failed == [], (which, report.to_json())
    assert slot(BODY, brief=brief).checks[0] == Check("empty", "block", True, "the body has text")


@pytest.mark.parametrize(
    ("text", "slot", "stop"),
    [
        ("Take a look at the", "cta", "the"),
        ("Shop the best of our", "cta", "our"),
        ("See what's", "cta", "what's"),
        ("Come and see what’s", "push", "what's"),
        ("Summer picks for you and", "headline", "and"),
        ("New arrivals for!", "subject", "for"),
        ("Sign up", "cta", None),
        ("Check it out", "cta", None),
        ("Log in", "cta", None),
        ("Learn more", "cta", None),
        ("Come back", "push", None),
        ("Love this", "cta", None),
        ("You make our shop what it is", "subject", None),
        ("Made for", "preheader", None),  # a sentence slot: its end punctuation and length judge it
    ],
)
def test_a_phrase_does_not_stop_on_a_dangling_word(text: str, slot: str, stop: str | None):
    b = BRIEFS["winback-summer"]
    problems = [p for p in _shape_problems(text, b, slot) if "stops on" in p]
    if stop is None:
        assert problems == []
    else:
        assert problems == [
            f"the {slot} stops on {stop!r}: {SPECS[slot].what} does not end on an article, "
            "a conjunction, a preposition or a possessive"
        ]


def _shape_problems(text: str, b: Brief, slot: str) -> list[str]:
    (shape,) = [c for c in check_slot(text, b, slot).checks if c.name == "shape"]
    return [] if shape.passed else shape.detail.split("; ")


def test_the_brief_facts_in_the_copy_are_not_invented_but_others_are_named():
    report = copy("Take 20% off everything before the summer is over.")
    (invented,) = [c for c in report.failed if c.name == "invented_facts"]
    assert "'20%'" in invented.detail and "email_body" in invented.detail
    assert (
        "15%" not in invented.detail
        and "COMEBACK15" not in invented.detail
        and SAMPLE_NAME not in invented.detail
    )


def test_length_names_the_length_and_the_limit():
    assert not slot(f"{LONG_HOOK} See you soon.").blocked  # as a body it is fine: only an SMS is too long
    (length,) = [c for c in copy(LONG_HOOK, channel="sms").failed if c.name == "length"]
    n = len(render(BRIEFS["winback-summer"], "sms", hook=LONG_HOOK)[1]["sms"])
    assert length.detail == f"sms: {n} characters, limit 160"


def test_disclaimer_is_checked_in_the_email_body_only():
    assert "disclaimer" in failing(copy(edit=_drop_disclaimer))
    (sms,) = [c for c in copy(channel="sms").checks if c.name == "disclaimer"]
    assert sms.passed and "exempt" in sms.detail


def test_near_duplicate_warns_on_identical_variants_only():
    same = render(BRIEFS["winback-summer"], "email")[1]
    report = copy(others=(same,))
    (dup,) = report.failed
    assert (dup.name, dup.severity) == ("near_duplicate", "warn")
    assert "1.00 similar to other variant 1" in dup.detail
    assert not report.blocked

    different = render(BRIEFS["winback-summer"], "email", OTHER_HEADLINE, OTHER_HOOK)[1]
    (check,) = [c for c in copy(others=(different,)).checks if c.name == "near_duplicate"]
    assert check.passed
    assert float(re.search(r"at most (\d\.\d\d)", check.detail).group(1)) < 0.8


def _flesch_in(report: CheckReport) -> tuple[Check, float]:
    (check,) = [c for c in report.checks if c.name == "readability"]
    return check, float(re.search(r"reading ease (-?\d+\.\d)", check.detail).group(1))


def test_readability_fails_convoluted_copy_and_passes_plain_copy():
    report = slot(f"{CONVOLUTED_HOOK} It is an institutional reconceptualisation of the organisation.")
    check, score = _flesch_in(report)
    assert not check.passed and check.severity == "warn" and score < 20
    assert failing(report) == {"readability"} and not report.blocked

    check, score = _flesch_in(slot(HOOK, "sms"))
    assert check.passed and score >= BRIEFS["winback-summer"].readability.min

    check, score = _flesch_in(copy(CONVOLUTED_HOOK, channel="sms"))
    assert not check.passed and score < 50


def test_language_warns_on_copy_and_blocks_a_slot():
    german = "Es ist schon eine Weile her, und wir würden uns freuen, dich bald wiederzusehen."
    report = copy(german)
    assert [(c.name, c.severity) for c in report.failed] == [("language", "warn")]
    assert not report.blocked
    (check,) = slot(f"{german} Wir haben etwas für dich im Laden.").failed
    assert (check.name, check.severity) == ("language", "block")
    assert "German" in check.detail


def test_a_warning_alone_does_not_block_and_the_report_serialises():
    report = CheckReport(
        (Check("readability", "warn", False, "too hard"), Check("length", "block", True, "sms: 90 of 160"))
    )
    assert not report.blocked and report.failed == [report.checks[0]]
    assert report.to_json()[0] == {
        "name": "readability",
        "severity": "warn",
        "passed": False,
        "detail": "too hard",
    }
    assert CheckReport((Check("pii", "block", False, "phone"),)).blocked


def test_catalogue_severities():
    assert {name for name, severity in CHECKS.items() if severity == "warn"} == {
        "language",
        "readability",
        "near_duplicate",
    }
    assert all(severity in ("block", "warn") for severity in CHECKS.values())


def test_every_check_is_exercised():
    seen = set().union(*(failing(make()) for _, _, make in CORPUS))
    seen |= failing(copy(others=(render(BRIEFS["winback-summer"], "email")[1],)))  # near_duplicate
    seen |= failing(slot(CONVOLUTED_HOOK))  # readability
    assert seen == set(CHECKS)


def test_unknown_slot_or_channel_is_an_error():
    with pytest.raises(ValueError, match="slot"):
        check_slot("Hello there", BRIEFS["winback-summer"], "footer")
    with pytest.raises(ValueError, match="channel"):
        check_copy({}, BRIEFS["winback-summer"], "fax", templates={})
