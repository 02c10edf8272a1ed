"""Campaign briefs: what a campaign says, to whom, on which channels, and the facts it may state.

A brief is one YAML file under ``campaigns/``. Its **offer facts** (discount, code, expiry, landing
URL, conditions) are the only figures, codes, dates and links the final copy may contain: the model
writes short slots of plain words, the channel templates around them hold placeholders
(``{offer}``, ``{code}``, ``{expiry}``, ``{url}``, ``{conditions}``, ``{first_name}``...), and the
renderer fills those from the brief (offer) or from the recipient (first name, and the product
recommended to them: ``{recommended_product}``, ``{recommended_product_url}``) at export.

Errors name the file and the field path and say what to write instead.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from clarion.errors import ClarionError
from models.content.slots import ALIASES, SLOTS, SPECS
from models.segments import SEGMENTS

CHANNELS = ("email", "sms", "push")
CHANNEL_LIMITS = {"sms": 160, "push": 100, "email_subject": 78, "email_preheader": 110}
# placeholders filled from the brief's offer (at render) and from the recipient (at export)
OFFER_FIELDS = ("offer", "code", "expiry", "url", "conditions")
# the recipient's rank-1 active product recommendation (ml.recommendations): its name, and its link
# built from the setting ml.recommendations.product_url; only consenting recipients with one get the copy
RECOMMENDATION_FIELDS = ("recommended_product", "recommended_product_url")
RECIPIENT_FIELDS = ("first_name", *RECOMMENDATION_FIELDS)
# what drafts are checked with in place of the recipient's own values: long on purpose, so the length
# checks hold for real ones (the export checks every product it fills in again, with its real name)
SAMPLE_RECIPIENT = {
    "first_name": "Maximilian-Alexander",
    "recommended_product": "Merino Wool Trail Sweater",
    "recommended_product_url": "https://shop.example.com/products/SKU-APP-00000",
}
# what the language model writes, per segment and variant (models/content/slots.py: each slot's spec);
# `hook` is the deprecated name of `body`, still accepted in seeds and custom templates
SLOT_NAMES = (*SLOTS, *ALIASES)
PLACEHOLDERS = (*OFFER_FIELDS, *RECIPIENT_FIELDS, *SLOT_NAMES, "disclaimer")
# where a rule on scores may look (ml.customer_scores columns)
RULE_COLUMNS = ("churn_risk", "purchase_probability", "expected_value_eur", "segment")
COMPARISONS = ("=", "<", ">", ">=", "<=", "<>", "!=")
DELIVERY_FIELDS = ("active", "budget", "risk_tier")  # read by next-best-action, not by the copy
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")

# every offer fact is template text: the model's slots are plain words around it
DEFAULT_TEMPLATES = {
    "email_subject": "{subject}: {offer} off",
    "email_preheader": "{preheader}",
    "email_body": (
        "Hi {first_name},\n\n{headline}\n\n{body}\n\nUse code {code} for {offer} off your next order "
        "until {expiry}.\n\n{cta}: {url}\n\n{disclaimer}"
    ),
    "sms": "{sms} {offer} off with code {code} until {expiry}: {url}",
    "push": "{push}: {offer} off with code {code}",
}
CHANNEL_PARTS = {
    "email": ("email_subject", "email_preheader", "email_body"),
    "sms": ("sms",),
    "push": ("push",),
}
REQUIRED = {  # placeholders each channel's copy must carry so the offer is stated from the brief
    "email_subject": ("offer",),
    "email_preheader": (),
    "email_body": ("code", "url", "disclaimer"),
    "sms": ("code", "url"),
    "push": ("code",),
}


class BriefError(ClarionError):
    exit_code = 2

    def __init__(self, message: str, problems: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []  # [{field, message}] when a brief's fields are invalid


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Offer(_Strict):
    discount: str = Field(description="what the customer gets, as it should read: '15%', 'EUR 10'")
    code: str = Field(pattern=r"^[A-Z0-9][A-Z0-9_-]{2,31}$", description="promo code, upper case")
    expiry: date
    url: str = Field(pattern=r"^https://[^\s{}]+$", description="landing page, https")
    conditions: str = ""

    def values(self) -> dict[str, str]:
        """The placeholders' text, as the copy shows it."""
        return {
            "offer": self.discount,
            "code": self.code,
            "expiry": f"{self.expiry.day} {self.expiry:%B %Y}",
            "url": self.url,
            "conditions": self.conditions,
        }


class Audience(_Strict):
    segments: tuple[str, ...] = ()
    rule: str | None = Field(
        default=None,
        description="a condition on scores, e.g. 'churn_risk >= 0.6 and expected_value_eur >= 50'",
    )

    @field_validator("segments")
    @classmethod
    def _known(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [s for s in v if s not in SEGMENTS]
        if unknown:
            raise ValueError(f"unknown segment(s) {unknown}: use some of {list(SEGMENTS)}")
        return v

    @field_validator("rule")
    @classmethod
    def _rule(cls, v: str | None) -> str | None:
        """A rule is pasted into SQL (inside parentheses), so it is held to a small grammar: allowed
        columns, numbers, quoted text, comparisons, and/or/not/in/between, balanced parentheses."""
        if v is None:
            return v
        tokens = re.findall(r"[A-Za-z_][A-Za-z_0-9]*|'[^']*'|\d+(?:\.\d+)?|>=|<=|<>|!=|[=<>(),]|\S", v)
        words = {"and", "or", "not", "in", "between"}
        depth = 0
        for t in tokens:
            if t[0].isalpha() or t[0] == "_":
                if t.lower() not in words and t not in RULE_COLUMNS:
                    raise ValueError(f"rule names {t!r}: a rule may use {list(RULE_COLUMNS)} and and/or/not")
            elif t == "(":
                depth += 1
            elif t == ")":
                depth -= 1
                if depth < 0:
                    raise ValueError("rule closes a parenthesis it never opened")
            elif not (t in COMPARISONS or t == "," or t[0].isdigit() or (len(t) >= 2 and t[0] == "'")):
                raise ValueError(
                    f"rule has {t!r}: only comparisons of {list(RULE_COLUMNS)} with numbers or 'quoted text'"
                )
        if depth:
            raise ValueError("rule opens a parenthesis it never closes")
        compares = any(t in COMPARISONS or t.lower() in ("in", "between") for t in tokens)
        if not compares or not any(t in RULE_COLUMNS for t in tokens):
            raise ValueError(
                f"a rule compares at least one of {list(RULE_COLUMNS)}, e.g. 'churn_risk >= 0.6'"
            )
        return v

    @model_validator(mode="after")
    def _some(self) -> Audience:
        if not self.segments and not self.rule:
            raise ValueError("say who the campaign is for: audience.segments (a list) or audience.rule")
        return self

    def where(self) -> str:
        """The whole audience as a SQL condition on one scoring run's ml.customer_scores columns
        (the rule when there is one, as drafting reads it; else the segments). Safe to paste: the
        rule is held to its grammar and segment names to the known ones."""
        if self.rule:
            return f"({self.rule})"
        return "segment in (" + ", ".join(f"'{s}'" for s in self.segments) + ")"


class Avoid(_Strict):
    words: tuple[str, ...] = ()
    claims: tuple[str, ...] = ()


class Readability(_Strict):
    """A band of Flesch reading ease (0-100, higher is easier) for the e-mail body, SMS and hook."""

    min: float = Field(40.0, ge=0, le=100)
    max: float = Field(100.0, ge=0, le=100)

    @model_validator(mode="after")
    def _band(self) -> Readability:
        if self.min > self.max:
            raise ValueError(f"readability.min ({self.min}) must not exceed readability.max ({self.max})")
        return self


class Seeds(_Strict):
    """Approved copy the model rewrites for each segment, one per slot; also the copy used when it
    fails. Only ``headline`` and ``body`` are required: a slot without its own seed derives one
    (:meth:`seed`). ``hook`` is the deprecated name of ``body`` and is read as it."""

    headline: str = Field(max_length=SPECS["headline"].max_seed_chars)
    body: str = Field(max_length=SPECS["body"].max_seed_chars)
    subject: str | None = Field(None, max_length=SPECS["subject"].max_seed_chars)
    preheader: str | None = Field(None, max_length=SPECS["preheader"].max_seed_chars)
    cta: str | None = Field(None, max_length=SPECS["cta"].max_seed_chars)
    sms: str | None = Field(None, max_length=SPECS["sms"].max_seed_chars)
    push: str | None = Field(None, max_length=SPECS["push"].max_seed_chars)

    @model_validator(mode="before")
    @classmethod
    def _hook(cls, data: Any) -> Any:
        if isinstance(data, dict) and "hook" in data:
            if "body" in data:
                raise ValueError("seeds.hook is the old name of seeds.body: keep one of them")
            data = {("body" if k == "hook" else k): v for k, v in data.items()}
        return data

    @field_validator(*SLOTS)
    @classmethod
    def _plain(cls, v: str | None) -> str | None:
        if v is not None and re.search(
            r"[{}0-9%@]|https?://|www\.|\b[a-z0-9-]+\.(com|net|org|io|shop|store|eu|de|uk)\b", v, re.I
        ):
            raise ValueError(
                "seed copy is plain words: no placeholders, digits, % or links (the offer goes in templates)"
            )
        if v is not None and not v.strip():
            raise ValueError("a seed is a sentence or phrase, not empty: write one or leave the key out")
        return v

    @property
    def hook(self) -> str:
        """The body seed under its deprecated name (old readers)."""
        return self.body

    def all(self) -> dict[str, str]:
        """Every slot's seed, and the deprecated names too: what a template is filled with when the
        brief's own copy is used."""
        return {name: self.seed(name) for name in SLOT_NAMES}

    def seed(self, slot: str) -> str:
        """The seed of a slot: its own, else one derived from the headline or the body (the first
        sentence of the body for a preheader or an SMS, the headline for a subject or a push)."""
        slot = ALIASES.get(slot, slot)
        own = getattr(self, slot)
        if own is not None:
            return own
        first = re.split(r"(?<=[.!?;])\s+", self.body.strip())[0].rstrip(";").strip()
        if first[-1:] not in ".!?":
            first += "."
        return {
            "subject": self.headline,
            "push": self.headline,
            "preheader": first,
            "sms": first,
            "cta": "Take a look",
        }[slot]


class Trigger(_Strict):
    """Starts the campaign on its own between scheduled sends, for the customers of its audience who
    just crossed a line: their churn risk rose by ``churn_jump`` or more between the two latest
    settled scoring runs, or they are in ``enters_segment`` now and were not in the previous run.
    With both, either one fires. A rise is measured on each customer's own two scores (the same
    customer, not a segment's average), so a jump says "this person just started drifting away"."""

    churn_jump: float | None = Field(
        default=None, description="rise in churn risk between two runs that fires, e.g. 0.15"
    )
    enters_segment: str | None = Field(
        default=None, description="segment whose newcomers fire, e.g. at_risk_high_value"
    )

    @field_validator("churn_jump", mode="before")
    @classmethod
    def _jump(cls, v: Any) -> Any:
        if v is None:
            return v
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < 1:
            raise ValueError(
                f"churn_jump is a rise in churn risk (a probability) between two runs: a number above 0 "
                f"and below 1, e.g. 0.15 for fifteen points, not {v!r}"
            )
        return float(v)

    @field_validator("enters_segment")
    @classmethod
    def _segment(cls, v: str | None) -> str | None:
        if v is not None and v not in SEGMENTS:
            raise ValueError(f"enters_segment {v!r} is not a segment: use one of {list(SEGMENTS)}")
        return v

    @model_validator(mode="after")
    def _some(self) -> Trigger:
        if self.churn_jump is None and self.enters_segment is None:
            raise ValueError(
                "a trigger says when to fire: churn_jump (e.g. 0.15) and/or enters_segment "
                "(e.g. at_risk_high_value); or remove `trigger:`"
            )
        return self

    def rule(self) -> dict[str, Any]:
        """The trigger as stated in the brief, without the parts left out (for events and the audit)."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class Brief(_Strict):
    name: str
    goal: str
    audience: Audience
    channels: tuple[Literal["email", "sms", "push"], ...] = ("email",)
    language: Literal["en"] = "en"
    tone: str = "friendly, clear"
    offer: Offer
    avoid: Avoid = Avoid()
    disclaimer: str = ""
    disclose_ai: bool = True
    variants: int = Field(default=2, ge=1, le=5)
    approvers: tuple[str, ...] = Field(min_length=1)
    readability: Readability = Readability()
    seeds: Seeds
    templates: dict[str, str] = Field(default_factory=dict)
    # how next-best-action (`clarion nba`) may use the campaign; not part of the copy's identity
    active: bool = Field(True, description="offered by next-best-action; false: kept but never chosen")
    budget: int | None = Field(
        None, ge=0, description="most sends per next-best-action run (the highest-value customers first)"
    )
    risk_tier: Literal["low", "standard", "high"] = Field(
        "standard",
        description="how much human oversight the campaign needs (docs/privacy.md, 'Human oversight'): "
        "low: the brief's own copy goes out after its checks, approved by policy; standard: one "
        "approver; high: two approvals by distinct people, never to customers flagged vulnerable, and "
        "next-best-action decisions wait for `clarion nba approve NAME --by WHO`",
    )
    trigger: Trigger | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME.match(v):
            raise ValueError("lower-case letters, digits and dashes, e.g. 'winback-summer'")
        return v

    @field_validator("approvers")
    @classmethod
    def _approvers(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if any(not a.strip() for a in v):
            raise ValueError("an approver is a name or role, not an empty string")
        return v

    @field_validator("channels")
    @classmethod
    def _channels(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError(f"at least one of {list(CHANNELS)}")
        if len(set(v)) != len(v):
            raise ValueError("a channel is listed twice")
        return v

    @field_validator("templates")
    @classmethod
    def _templates(cls, v: dict[str, str]) -> dict[str, str]:
        for key, text in v.items():
            if key not in DEFAULT_TEMPLATES:
                raise ValueError(f"templates.{key}: not a template; use some of {list(DEFAULT_TEMPLATES)}")
            names = _placeholders(text, f"templates.{key}")
            unknown = names - set(PLACEHOLDERS)
            if unknown:
                raise ValueError(
                    f"templates.{key} uses {sorted(unknown)}: placeholders are {list(PLACEHOLDERS)}"
                )
            missing = set(REQUIRED[key]) - names
            if missing:
                raise ValueError(
                    f"templates.{key} must carry {sorted(missing)} (the offer comes from the brief)"
                )
        return v

    @model_validator(mode="after")
    def _disclaimer(self) -> Brief:
        names = _placeholders(self.disclaimer, "disclaimer")
        if names - set(OFFER_FIELDS):
            raise ValueError(
                f"disclaimer may use {list(OFFER_FIELDS)}, not {sorted(names - set(OFFER_FIELDS))}"
            )
        return self

    @model_validator(mode="after")
    def _reachable(self) -> Brief:
        t = self.trigger
        if (
            t
            and t.enters_segment
            and not self.audience.rule
            and t.enters_segment not in self.audience.segments
        ):
            raise ValueError(
                f"trigger.enters_segment {t.enters_segment!r} is not in audience.segments "
                f"{list(self.audience.segments)}: the campaign could never reach those customers; "
                "add it to audience.segments or trigger on one of them"
            )
        return self

    # -- what the rest of Clarion reads ---------------------------------------------------------
    def template(self, key: str) -> str:
        return self.templates.get(key, DEFAULT_TEMPLATES[key])

    def parts(self, channel: str) -> tuple[str, ...]:
        """The templates a channel's copy is made of."""
        return CHANNEL_PARTS[channel]

    def slots(self, channels: tuple[str, ...] | list[str] | None = None) -> tuple[str, ...]:
        """The slots the model writes for these channels (default: the brief's): those their
        templates use, in SLOTS order, ``{hook}`` read as ``body``."""
        used = {
            ALIASES.get(name, name)
            for channel in (channels or self.channels)
            for part in self.parts(channel)
            for name in _placeholders(self.template(part), part)
        }
        return tuple(s for s in SLOTS if s in used)

    def uses_recommendations(self) -> bool:
        """Whether any of its channels' templates asks for the recipient's recommended product: the
        campaign then needs the recommend stage (`ml.recommendations`), and reaches only recipients
        who have a recommendation."""
        return any(
            set(RECOMMENDATION_FIELDS) & _placeholders(self.template(part), part)
            for channel in self.channels
            for part in self.parts(channel)
        )

    def facts(self) -> dict[str, str]:
        """Placeholder -> text for everything the brief states (the offer and the disclaimer)."""
        values = self.offer.values()
        return {**values, "disclaimer": self.disclaimer.format(**values)}

    def sha256(self) -> str:
        """The identity of what the campaign says and to whom: drafts and approvals are bound to it.
        Next-best-action's delivery fields (active, budget, risk tier) are left out, so pausing a
        campaign or changing its budget does not void approved copy."""
        data = self.model_dump(mode="json", exclude=set(DELIVERY_FIELDS))
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _placeholders(text: str, where: str) -> set[str]:
    """The {names} in a template; format specs and conversions ({code:.0}, {url!r}) would change
    or hide a fact, so they are refused."""
    try:
        fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(text) if f is not None]
    except ValueError as exc:
        raise ValueError(f"{where}: {exc} (write a literal brace as {{{{ or }}}})") from None
    for name, spec, conversion in fields:
        if spec or conversion:
            raise ValueError(f"{where}: write {{{name}}} as it is, without ':{spec}' or '!{conversion}'")
    return {name for name, _, _ in fields}


def load_brief(path: Path) -> Brief:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise BriefError(f"{path}: not valid YAML ({exc}); fix the file") from None
    except OSError as exc:
        raise BriefError(f"{path}: cannot be read ({exc.strerror})") from None
    if not isinstance(data, dict):
        raise BriefError(f"{path}: a brief is a YAML mapping (name:, goal:, audience:, offer:, ...)")
    brief = validate_brief(data, str(path))
    if brief.name != path.stem:
        raise BriefError(f"{path}: name is {brief.name!r} but the file is {path.name}: make them the same")
    return brief


def validate_brief(data: Any, where: str) -> Brief:
    """A brief from its parsed document (a brief file's YAML, or a brief sent inline to the API),
    validated exactly as a brief file is; ``where`` names it in the messages. The error's ``problems``
    list each field path and what to write instead."""
    if not isinstance(data, dict):
        raise BriefError(
            f"{where}: a brief is a mapping (name:, goal:, audience:, offer:, ...)",
            problems=[{"field": "(top level)", "message": "a brief is a mapping of its fields"}],
        )
    try:
        return Brief.model_validate(data)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in err["loc"]) or "(top level)", "message": _message(err)}
            for err in exc.errors()
        ]
        lines = [f"{where}: the brief is invalid ({exc.error_count()} problem(s)):"]
        lines += [f"  - {p['field']}: {p['message']}" for p in problems]
        raise BriefError("\n".join(lines), problems=problems) from None


def load_briefs(folder: Path, names: tuple[str, ...] = ()) -> list[Brief]:
    files = sorted(folder.glob("*.yaml"))
    if names:
        known = {f.stem: f for f in files}
        missing = [n for n in names if n not in known]
        if missing:
            raise BriefError(f"no brief named {missing} in {folder}: briefs there are {sorted(known)}")
        files = [known[n] for n in names]
    return [load_brief(f) for f in files]


def _message(err: dict[str, Any]) -> str:
    if err["type"] == "extra_forbidden":
        return "not a field of a brief (typo?)"
    if err["type"] == "missing":
        return "required"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{msg} (got {err['input']!r})" if err["type"].endswith("_pattern_mismatch") else msg
