"""Campaign briefs: the example briefs load, and every way a brief can be wrong is refused with a
BriefError that names the file, the field and what to write instead."""

from __future__ import annotations

import copy
import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from clarion.errors import ClarionError
from models.content.brief import DEFAULT_TEMPLATES, RULE_COLUMNS, BriefError, load_brief, load_briefs
from models.segments import SEGMENTS

REPO = Path(__file__).resolve().parents[1]
CAMPAIGNS = REPO / "campaigns"

# A complete, valid brief (the shape of campaigns/winback-summer.yaml) that each test bends one way.
BASE: dict[str, Any] = {
    "name": "winback-summer",
    "goal": "Bring customers at risk of lapsing back before the end of summer",
    "audience": {"segments": ["at_risk_high_value", "at_risk_low_value"]},
    "channels": ["email", "sms"],
    "tone": "warm, personal, no pressure",
    "offer": {
        "discount": "15%",
        "code": "COMEBACK15",
        "expiry": datetime.date(2026, 8, 31),
        "url": "https://shop.example.com/welcome-back",
        "conditions": "Minimum order EUR 40. One use per customer.",
    },
    "avoid": {"words": ["cheap", "hurry"], "claims": ["best price"]},
    "disclaimer": "Offer ends {expiry}. {conditions} You can unsubscribe at any time.",
    "disclose_ai": True,
    "variants": 2,
    "approvers": ["marketing-lead", "compliance-officer"],
    "readability": {"min": 50, "max": 100},
    "seeds": {
        "headline": "We saved something for you",
        "hook": "It has been a while since your last visit, and we would love to welcome you back.",
    },
}

DROP = object()  # a change that removes the field


def brief_data(**changes: Any) -> dict[str, Any]:
    """BASE with dotted-path changes applied; a value of DROP removes the field."""
    data = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = data
        for p in parents:
            node = node.setdefault(p, {})
        if value is DROP:
            node.pop(leaf)
        else:
            node[leaf] = value
    return data


def write(folder: Path, data: Any, stem: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if stem is None:
        stem = data["name"]
    path = folder / f"{stem}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def error_for(path: Path) -> str:
    with pytest.raises(BriefError) as info:
        load_brief(path)
    message = str(info.value)
    assert str(path) in message, f"the message does not name the file:\n{message}"
    return message


# -- the example briefs --------------------------------------------------------------------------


def test_example_briefs_load() -> None:
    briefs = load_briefs(CAMPAIGNS)  # README.md next to them is not a brief
    assert [b.name for b in briefs] == ["vip-thank-you", "welcome-new", "winback-summer"]
    assert {b.name: b.channels for b in briefs} == {
        "vip-thank-you": ("email", "push"),
        "welcome-new": ("email", "sms", "push"),
        "winback-summer": ("email", "sms"),
    }
    welcome = next(b for b in briefs if b.name == "welcome-new")
    assert welcome.audience.segments == ()
    assert welcome.audience.rule == "segment = 'new' and purchase_probability < 0.5"


def test_winback_summer_triggers_on_a_churn_jump_of_fifteen_points() -> None:
    brief = load_brief(CAMPAIGNS / "winback-summer.yaml")
    assert brief.trigger is not None and brief.trigger.rule() == {"churn_jump": 0.15}
    assert [b.name for b in load_briefs(CAMPAIGNS) if b.trigger] == ["winback-summer"]


@pytest.mark.parametrize(
    "trigger",
    [
        {"churn_jump": 0.2},
        {"enters_segment": "at_risk_high_value"},
        {"churn_jump": 0.1, "enters_segment": "at_risk_low_value"},
    ],
)
def test_a_trigger_loads_as_written(tmp_path: Path, trigger: dict[str, Any]) -> None:
    brief = load_brief(write(tmp_path, brief_data(trigger=trigger)))
    assert brief.trigger is not None and brief.trigger.rule() == trigger


def test_a_rule_audience_may_trigger_on_any_segment(tmp_path: Path) -> None:
    data = brief_data(audience={"rule": "churn_risk >= 0.5"}, trigger={"enters_segment": "loyal"})
    assert load_brief(write(tmp_path, data)).trigger.enters_segment == "loyal"


def test_facts_of_winback_summer_are_exact() -> None:
    brief = load_brief(CAMPAIGNS / "winback-summer.yaml")
    assert brief.facts() == {
        "offer": "15%",
        "code": "COMEBACK15",
        "expiry": "31 August 2026",
        "url": "https://shop.example.com/welcome-back",
        "conditions": "Minimum order EUR 40. One use per customer.",
        "disclaimer": (
            "Offer ends 31 August 2026. Minimum order EUR 40. One use per customer. "
            "You can unsubscribe at any time."
        ),
    }


@pytest.mark.parametrize(
    ("name", "disclaimer"),
    [
        ("vip-thank-you", "Valid until 15 September 2026. Valid on full-price items."),
        ("welcome-new", "Ends 15 August 2026. On orders over EUR 30."),
    ],
)
def test_facts_fill_the_disclaimer_of_each_example(name: str, disclaimer: str) -> None:
    facts = load_brief(CAMPAIGNS / f"{name}.yaml").facts()
    assert facts["disclaimer"] == disclaimer
    assert "{" not in "".join(facts.values())


def test_expiry_reads_without_a_leading_zero(tmp_path: Path) -> None:
    brief = load_brief(write(tmp_path, brief_data(offer__expiry=datetime.date(2026, 9, 5))))
    assert brief.facts()["expiry"] == "5 September 2026"
    assert brief.facts()["disclaimer"].startswith("Offer ends 5 September 2026. ")


def test_empty_disclaimer_stays_empty(tmp_path: Path) -> None:
    brief = load_brief(write(tmp_path, brief_data(disclaimer=DROP)))
    assert brief.facts()["disclaimer"] == ""


def test_sha256_is_stable_across_loads() -> None:
    first = load_brief(CAMPAIGNS / "winback-summer.yaml").sha256()
    second = load_brief(CAMPAIGNS / "winback-summer.yaml").sha256()
    assert first == second
    assert len(first) == 64 and int(first, 16) >= 0
    assert first != load_brief(CAMPAIGNS / "welcome-new.yaml").sha256()


def test_sha256_does_not_depend_on_key_order_or_comments(tmp_path: Path) -> None:
    plain = load_brief(write(tmp_path / "a", BASE)).sha256()
    reordered = dict(reversed(list(copy.deepcopy(BASE).items())))
    path = write(tmp_path / "b", reordered)
    path.write_text("# a comment\n" + path.read_text(encoding="utf-8"), encoding="utf-8")
    assert load_brief(path).sha256() == plain


@pytest.mark.parametrize(
    "changes",
    [
        {"goal": "Bring lapsing customers back"},
        {"audience__segments": ["at_risk_high_value"]},
        {"audience__rule": "churn_risk >= 0.6"},
        {"channels": ["email"]},
        {"channels": ["sms", "email"]},
        {"tone": "warm"},
        {"offer__discount": "20%"},
        {"offer__code": "COMEBACK20"},
        {"offer__expiry": datetime.date(2026, 9, 1)},
        {"offer__url": "https://shop.example.com/back"},
        {"offer__conditions": "One use per customer."},
        {"avoid__words": ["cheap"]},
        {"avoid__claims": ["risk-free"]},
        {"disclaimer": "Offer ends {expiry}."},
        {"disclose_ai": False},
        {"variants": 3},
        {"approvers": ["marketing-lead"]},
        {"readability__min": 45},
        {"readability__max": 90},
        {"seeds__headline": "We kept something for you"},
        {"seeds__hook": "We would love to welcome you back."},
        {"templates": {"push": "{headline}: use code {code}"}},
    ],
    ids=lambda c: next(iter(c)),
)
def test_sha256_changes_when_any_field_changes(tmp_path: Path, changes: dict[str, Any]) -> None:
    before = load_brief(write(tmp_path / "before", BASE)).sha256()
    after = load_brief(write(tmp_path / "after", brief_data(**changes))).sha256()
    assert after != before


def test_template_is_the_default_without_an_override() -> None:
    brief = load_brief(CAMPAIGNS / "winback-summer.yaml")
    assert brief.templates == {}
    assert brief.template("sms") == "{sms} {offer} off with code {code} until {expiry}: {url}"
    for key, default in DEFAULT_TEMPLATES.items():
        assert brief.template(key) == default


def test_template_override_replaces_only_its_key(tmp_path: Path) -> None:
    override = "{hook} Code {code}: {url}"
    brief = load_brief(write(tmp_path, brief_data(templates={"sms": override})))
    assert brief.template("sms") == override
    assert brief.template("push") == DEFAULT_TEMPLATES["push"]
    assert brief.template("email_body") == DEFAULT_TEMPLATES["email_body"]
    with pytest.raises(KeyError):
        brief.template("fax")


def test_parts_of_each_channel() -> None:
    brief = load_brief(CAMPAIGNS / "welcome-new.yaml")
    assert brief.parts("email") == ("email_subject", "email_preheader", "email_body")
    assert brief.parts("sms") == ("sms",)
    assert brief.parts("push") == ("push",)


def test_defaults_of_optional_fields(tmp_path: Path) -> None:
    data = brief_data(
        channels=DROP,
        tone=DROP,
        avoid=DROP,
        disclaimer=DROP,
        disclose_ai=DROP,
        variants=DROP,
        readability=DROP,
    )
    brief = load_brief(write(tmp_path, data))
    assert brief.channels == ("email",)
    assert brief.language == "en"
    assert brief.variants == 2
    assert brief.disclose_ai is True
    assert (brief.readability.min, brief.readability.max) == (40.0, 100.0)
    assert brief.avoid.words == () and brief.avoid.claims == ()


# -- files that are not briefs -------------------------------------------------------------------


def test_not_yaml_at_all(tmp_path: Path) -> None:
    path = tmp_path / "winback-summer.yaml"
    path.write_text("name: winback-summer\naudience: [unclosed\noffer:\n  code: X\n", encoding="utf-8")
    message = error_for(path)
    assert "not valid YAML" in message
    assert "line" in message  # where the syntax error is
    assert "fix the file" in message


def test_yaml_list_instead_of_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, [BASE], stem="winback-summer")
    message = error_for(path)
    assert "a brief is a YAML mapping" in message
    assert "name:" in message and "offer:" in message  # what a brief looks like


def test_empty_file_is_not_a_brief(tmp_path: Path) -> None:
    path = tmp_path / "winback-summer.yaml"
    path.write_text("# nothing yet\n", encoding="utf-8")
    assert "a brief is a YAML mapping" in error_for(path)


def test_missing_file_is_a_brief_error(tmp_path: Path) -> None:
    message = error_for(tmp_path / "winback-summer.yaml")
    assert "cannot be read" in message


def test_brief_error_is_a_clarion_error_with_usage_exit_code() -> None:
    assert issubclass(BriefError, ClarionError)
    assert BriefError.exit_code == 2


# -- invalid fields: each names the file, the field path and what to do ----------------------------

INVALID: list[tuple[str, dict[str, Any], str, tuple[str, ...]]] = [
    # (id, changes, where the problem line says it is, further fragments the message must carry)
    ("typo-tonee", {"tonee": "warm"}, "tonee", ("not a field of a brief", "typo")),
    ("missing-offer", {"offer": DROP}, "offer", ("required",)),
    ("missing-approvers", {"approvers": DROP}, "approvers", ("required",)),
    ("empty-approvers", {"approvers": []}, "approvers", ("at least 1 item",)),
    ("code-lower-case", {"offer__code": "comeback15"}, "offer.code", ("'comeback15'", "A-Z0-9")),
    ("code-with-spaces", {"offer__code": "COME BACK15"}, "offer.code", ("'COME BACK15'", "A-Z0-9")),
    (
        "url-not-https",
        {"offer__url": "http://shop.example.com/welcome-back"},
        "offer.url",
        ("'http://shop.example.com/welcome-back'", "https://"),
    ),
    (
        "url-with-braces",
        {"offer__url": "https://shop.example.com/{code}"},
        "offer.url",
        ("'https://shop.example.com/{code}'", "https://"),
    ),
    (
        "unknown-segment",
        {"audience__segments": ["at_risk_high_value", "vips"]},
        "audience.segments",
        ("unknown segment", "'vips'", *SEGMENTS),
    ),
    (
        "audience-neither-segments-nor-rule",
        {"audience": {}},
        "audience",
        ("say who the campaign is for", "audience.segments", "audience.rule"),
    ),
    (
        "audience-empty-segments",
        {"audience": {"segments": []}},
        "audience",
        ("say who the campaign is for",),
    ),
    (
        "rule-column-not-allowed",
        {"audience": {"rule": "email like '%x%'"}},
        "audience.rule",
        ("'email'", *RULE_COLUMNS),
    ),
    (
        "rule-sql-injection",
        {"audience": {"rule": "churn_risk > 0.5; drop table ml.customer_scores"}},
        "audience.rule",
        ("';'", *RULE_COLUMNS),
    ),
    (
        "rule-function-call",
        {"audience": {"rule": "churn_risk > random()"}},
        "audience.rule",
        ("'random'",),
    ),
    ("variants-0", {"variants": 0}, "variants", ("greater than or equal to 1",)),
    ("variants-6", {"variants": 6}, "variants", ("less than or equal to 5",)),
    ("unknown-channel", {"channels": ["email", "fax"]}, "channels.1", ("'email'", "'sms'", "'push'")),
    ("channel-twice", {"channels": ["email", "sms", "email"]}, "channels", ("listed twice",)),
    ("no-channel", {"channels": []}, "channels", ("at least one of", "email", "sms", "push")),
    (
        "unknown-template-key",
        {"templates": {"emai_body": "Hi {first_name}, {code} {url} {disclaimer}"}},
        "templates",
        ("templates.emai_body: not a template", *DEFAULT_TEMPLATES),
    ),
    (
        "template-unknown-placeholder",
        {"templates": {"sms": "{hook} now {price} with code {code}: {url}"}},
        "templates",
        ("templates.sms uses ['price']", "placeholders are", "'code'", "'first_name'"),
    ),
    (
        "sms-template-without-code",
        {"templates": {"sms": "{hook} {offer} off: {url}"}},
        "templates",
        ("templates.sms must carry ['code']",),
    ),
    (
        "email-body-without-disclaimer",
        {"templates": {"email_body": "Hi {first_name}, use {code}: {url}"}},
        "templates",
        ("templates.email_body must carry ['disclaimer']",),
    ),
    (
        "disclaimer-with-first-name",
        {"disclaimer": "Dear {first_name}, offer ends {expiry}."},
        "(top level)",  # a check across fields; the text names the field
        ("disclaimer may use", "not ['first_name']", "'expiry'", "'conditions'"),
    ),
    (
        "headline-with-digits",
        {"seeds__headline": "Save 15 today"},
        "seeds.headline",
        ("plain words", "digits"),
    ),
    ("headline-with-percent", {"seeds__headline": "Big % savings"}, "seeds.headline", ("plain words",)),
    (
        "headline-with-url",
        {"seeds__headline": "See https://shop.example.com"},
        "seeds.headline",
        ("plain words", "links"),
    ),
    (
        "hook-with-placeholder",
        {"seeds__hook": "Use {code} before it ends"},
        "seeds.body",
        ("plain words", "placeholders"),
    ),
    ("headline-too-long", {"seeds__headline": "word " * 13}, "seeds.headline", ("at most 60",)),
    (
        "readability-min-above-max",
        {"readability": {"min": 80, "max": 60}},
        "readability",
        ("readability.min (80.0) must not exceed readability.max (60.0)",),
    ),
    ("readability-max-150", {"readability": {"min": 40, "max": 150}}, "readability.max", ("100",)),
    ("readability-min-negative", {"readability": {"min": -5}}, "readability.min", ("0",)),
    ("language-not-en", {"language": "de"}, "language", ("'en'",)),
    ("expiry-not-a-date", {"offer__expiry": "end of August"}, "offer.expiry", ("date",)),
    ("trigger-empty", {"trigger": {}}, "trigger", ("churn_jump", "enters_segment", "remove `trigger:`")),
    ("trigger-jump-zero", {"trigger": {"churn_jump": 0}}, "trigger.churn_jump", ("above 0", "e.g. 0.15")),
    ("trigger-jump-percent", {"trigger": {"churn_jump": 15}}, "trigger.churn_jump", ("below 1", "not 15")),
    ("trigger-jump-text", {"trigger": {"churn_jump": "15%"}}, "trigger.churn_jump", ("a number", "'15%'")),
    ("trigger-typo", {"trigger": {"churn_jmp": 0.1}}, "trigger.churn_jmp", ("not a field of a brief",)),
    (
        "trigger-unknown-segment",
        {"trigger": {"enters_segment": "vips"}},
        "trigger.enters_segment",
        ("'vips' is not a segment", *SEGMENTS),
    ),
    (
        "trigger-segment-outside-audience",
        {"trigger": {"enters_segment": "loyal"}},
        "(top level)",
        ("trigger.enters_segment 'loyal' is not in audience.segments", "could never reach"),
    ),
]


@pytest.mark.parametrize(
    ("changes", "loc", "fragments"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_brief_names_file_field_and_fix(
    tmp_path: Path, changes: dict[str, Any], loc: str, fragments: tuple[str, ...]
) -> None:
    message = error_for(write(tmp_path, brief_data(**changes)))
    assert "the brief is invalid (1 problem(s))" in message, message
    assert f"\n  - {loc}: " in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from:\n{message}"


def test_field_path_is_on_the_problem_line(tmp_path: Path) -> None:
    message = error_for(write(tmp_path, brief_data(offer__code="comeback15")))
    lines = message.splitlines()
    assert lines[0] == f"{tmp_path / 'winback-summer.yaml'}: the brief is invalid (1 problem(s)):"
    assert lines[1].startswith("  - offer.code: ")
    assert len(lines) == 2


def test_every_problem_is_listed(tmp_path: Path) -> None:
    data = brief_data(offer__code="bad code", variants=9, tonee="warm", approvers=DROP)
    message = error_for(write(tmp_path, data))
    assert "(4 problem(s))" in message
    problems = [line for line in message.splitlines() if line.startswith("  - ")]
    assert sorted(p.split(":")[0].removeprefix("  - ") for p in problems) == [
        "approvers",
        "offer.code",
        "tonee",
        "variants",
    ]


@pytest.mark.parametrize("name", ["Winback-Summer", "winback_summer", "-winback", "w"])
def test_bad_name(tmp_path: Path, name: str) -> None:
    message = error_for(write(tmp_path, brief_data(name=name)))
    assert "\n  - name: " in message
    assert "lower-case letters, digits and dashes" in message


def test_name_must_match_file_name(tmp_path: Path) -> None:
    path = write(tmp_path, brief_data(name="winback-autumn"), stem="winback-summer")
    message = error_for(path)
    assert "name is 'winback-autumn'" in message
    assert "winback-summer.yaml" in message
    assert "make them the same" in message


# -- load_briefs -------------------------------------------------------------------------------------


def test_load_briefs_unknown_name_lists_the_briefs_there(tmp_path: Path) -> None:
    write(tmp_path, brief_data(name="b-second"))
    write(tmp_path, brief_data(name="a-first"))
    with pytest.raises(BriefError) as info:
        load_briefs(tmp_path, ("a-first", "nope"))
    message = str(info.value)
    assert "['nope']" in message
    assert str(tmp_path) in message
    assert "['a-first', 'b-second']" in message


def test_load_briefs_unknown_name_in_example_folder() -> None:
    with pytest.raises(BriefError, match=r"'vip-thank-you', 'welcome-new', 'winback-summer'"):
        load_briefs(CAMPAIGNS, ("nope",))


def test_load_briefs_on_empty_folder(tmp_path: Path) -> None:
    assert load_briefs(tmp_path) == []
    assert load_briefs(tmp_path, ()) == []
    with pytest.raises(BriefError, match=r"briefs there are \[\]"):
        load_briefs(tmp_path, ("nope",))


def test_load_briefs_loads_all_sorted_by_file_name(tmp_path: Path) -> None:
    for name in ("c-third", "a-first", "b-second"):
        write(tmp_path, brief_data(name=name))
    (tmp_path / "notes.md").write_text("not a brief", encoding="utf-8")
    (tmp_path / "z-other.yml").write_text("not: loaded", encoding="utf-8")
    assert [b.name for b in load_briefs(tmp_path, ())] == ["a-first", "b-second", "c-third"]
    assert [b.name for b in load_briefs(tmp_path)] == ["a-first", "b-second", "c-third"]


def test_load_briefs_by_name_keeps_the_asked_order(tmp_path: Path) -> None:
    for name in ("a-first", "b-second", "c-third"):
        write(tmp_path, brief_data(name=name))
    assert [b.name for b in load_briefs(tmp_path, ("c-third", "a-first"))] == ["c-third", "a-first"]


def test_load_briefs_reports_the_invalid_file(tmp_path: Path) -> None:
    write(tmp_path, brief_data(name="a-first"))
    bad = write(tmp_path, brief_data(name="b-second", variants=0))
    with pytest.raises(BriefError) as info:
        load_briefs(tmp_path)
    assert str(bad) in str(info.value)
    assert "\n  - variants: " in str(info.value)


# -- valid rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rule",
    [
        "segment = 'new' and purchase_probability < 0.5",
        "churn_risk >= 0.6 or expected_value_eur between 10 and 50",
        "not (segment in ('champions', 'loyal')) and churn_risk <> 0.25",
        "churn_risk >= 0.6 AND expected_value_eur != 0",
    ],
)
def test_valid_rule_loads(tmp_path: Path, rule: str) -> None:
    brief = load_brief(write(tmp_path, brief_data(audience={"rule": rule})))
    assert brief.audience.rule == rule
    assert brief.audience.segments == ()


def test_rule_column_names_are_case_sensitive(tmp_path: Path) -> None:
    message = error_for(write(tmp_path, brief_data(audience={"rule": "CHURN_RISK >= 0.6"})))
    assert "\n  - audience.rule: rule names 'CHURN_RISK'" in message


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("churn_risk > 0) or (1 = 1", "closes a parenthesis"),
        ("(churn_risk > 0", "never closes"),
        ("churn_risk > 0.5 and segment = '", "quoted text"),
        ("1 = 1", "compares at least one"),
        ("and or not", "compares at least one"),
    ],
)
def test_rules_that_could_escape_or_mean_nothing_are_refused(rule: str, message: str) -> None:
    from models.content.brief import Audience

    with pytest.raises(ValueError, match=message):
        Audience(rule=rule)


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("headline", "Visit shop.example.com"),
        ("headline", "See WWW dot us at www.example"),
        ("hook", "Write to us at team@example.org and we reply."),
    ],
)
def test_seed_copy_with_links_or_addresses_is_refused(field: str, text: str) -> None:
    from models.content.brief import Seeds

    seeds = {"headline": "We saved something for you", "hook": "It has been a while, and we miss you."}
    with pytest.raises(ValueError, match="plain words"):
        Seeds(**{**seeds, field: text})


def test_format_specs_in_templates_and_disclaimer_are_refused(tmp_path) -> None:
    base = (CAMPAIGNS / "winback-summer.yaml").read_text()
    for extra, where in (
        ('templates:\n  sms: "{hook} {code:.0}{url:.0}"\n', "templates"),
        ("", "disclaimer"),
    ):
        text = base + extra
        if where == "disclaimer":
            text = text.replace('disclaimer: "Offer ends {expiry}.', 'disclaimer: "Offer ends {expiry!r}.')
        path = tmp_path / "winback-summer.yaml"
        path.write_text(text)
        with pytest.raises(BriefError, match="without"):
            load_brief(path)


def test_every_example_brief_can_fall_back_on_its_own_copy() -> None:
    """The seeds in the templates pass every blocking check on every channel: a campaign whose
    model candidates all fail still has copy to approve."""
    from models.content.drafts import fallback_problems

    for brief in load_briefs(CAMPAIGNS):
        assert fallback_problems(brief) == [], brief.name
    long_hook = brief.model_copy(
        update={"seeds": brief.seeds.model_copy(update={"sms": "word " * 38}), "channels": ("sms",)}
    )
    assert any(p.startswith("sms: length") for p in fallback_problems(long_hook))


def test_next_best_action_fields_default_to_an_active_low_risk_campaign_without_a_budget(
    tmp_path: Path,
) -> None:
    brief = load_brief(write(tmp_path, BASE))
    assert (brief.active, brief.budget, brief.risk_tier) == (True, None, "standard")
    chosen = load_brief(write(tmp_path / "b", brief_data(active=False, budget=500, risk_tier="high")))
    assert (chosen.active, chosen.budget, chosen.risk_tier) == (False, 500, "high")
    # delivery settings, not the copy: changing them does not void drafts approved against the brief
    assert chosen.sha256() == brief.sha256()


@pytest.mark.parametrize(
    ("changes", "where"), [({"budget": -1}, "budget"), ({"risk_tier": "medium"}, "risk_tier")]
)
def test_a_wrong_next_best_action_field_names_itself(tmp_path: Path, changes: dict, where: str) -> None:
    with pytest.raises(BriefError, match=where):
        load_brief(write(tmp_path, brief_data(**changes)))
