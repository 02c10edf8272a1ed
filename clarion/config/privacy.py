"""Settings of privacy by design: pseudonym key, retention, fairness limits, human oversight."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from clarion.config.base import ENV_NAME, Section, not_a_setting

_ENV_NAME = ENV_NAME
_COLUMN = _ENV_NAME  # a column of marts.dim_customers


class PrivacySettings(Section):
    """Keyed pseudonyms for every id that leaves the warehouse (docs/privacy.md)."""

    pseudonym_key_env: str | None = Field(
        "PSEUDONYM_KEY",
        pattern=_ENV_NAME,
        description="environment variable holding the pseudonym key (HMAC-SHA256); when it is unset "
        "Clarion uses pseudonym_key_secret, else a random key it keeps inside the warehouse",
    )
    pseudonym_key_secret: str | None = Field(
        None, min_length=1, description="name of a Prefect Secret block holding the pseudonym key"
    )
    require_key: bool = Field(
        False,
        description="refuse to run without a key from the environment or a Prefect Secret (no key kept "
        "in the warehouse)",
    )

    @field_validator("pseudonym_key_env")
    @classmethod
    def _not_a_setting(cls, value: str | None) -> str | None:
        return not_a_setting(value, "pseudonym key", "PSEUDONYM_KEY")


class RetentionSettings(Section):
    """How long Clarion keeps what it made (`clarion retention apply`, the `retention` deployment).
    None keeps everything of that kind."""

    scores_keep_runs: int | None = Field(
        12, ge=1, description="scoring runs whose ml.customer_scores rows are kept (the newest N)"
    )
    scores_keep_days: int | None = Field(
        None, ge=1, description="... and/or scores younger than this many days (both apply when both set)"
    )
    exports_keep_days: int | None = Field(
        90,
        ge=1,
        description="export files (var/exports: the recipient lists with contact details) older than this "
        "are deleted; content.assignments, the experiment record, stays",
    )
    quarantine_redact_days: int | None = Field(
        30,
        ge=1,
        description="quarantined rows older than this keep their reason, entity and key, not their body",
    )
    reports_keep_runs: int | None = Field(
        12, ge=1, description="marketer reports (var/reports/RUN_ID) kept: the newest N runs"
    )
    packs_keep_days: int | None = Field(
        365, ge=1, description="compliance packs (var/compliance) older than this are deleted"
    )


class FairnessSettings(Section):
    """Per-group figures for each protected attribute, and the limits of the fairness gate."""

    attributes: list[str] = Field(
        default_factory=lambda: ["age_band"],
        description="columns of marts.dim_customers that are protected attributes (never model inputs)",
    )
    min_group: int = Field(
        50, ge=1, description="groups with fewer customers are suppressed (figures not shown or judged)"
    )
    disparate_impact_warn: float = Field(
        0.8, gt=0, le=1, description="selection-rate ratio (group / most selected group) below this: warn"
    )
    disparate_impact_fail: float = Field(
        0.6, gt=0, le=1, description="... below this: fail (model not promoted; audience needs sign-off)"
    )
    ece_gap_warn: float = Field(0.05, ge=0, le=1, description="calibration error gap between groups: warn")
    ece_gap_fail: float = Field(0.10, ge=0, le=1, description="... fail")
    rate_gap_warn: float = Field(
        0.10, ge=0, le=1, description="true/false positive rate gap between groups: warn"
    )
    rate_gap_fail: float = Field(0.20, ge=0, le=1, description="... fail")
    significance: float = Field(
        0.05,
        gt=0,
        le=1,
        description="a difference is a finding only when a test finds it this unlikely by chance (p below "
        "this): a z-test of the rates, Hosmer-Lemeshow for calibration; 1 judges every difference",
    )

    @field_validator("attributes")
    @classmethod
    def _not_inputs(cls, value: list[str]) -> list[str]:
        from models.features import FEATURES

        bad = [a for a in value if not re.match(_COLUMN, a)]
        if bad:
            raise ValueError(f"{bad} are not column names of marts.dim_customers (letters, digits, _)")
        inputs = sorted(set(value) & set(FEATURES))
        if inputs:
            raise ValueError(
                f"{inputs} are model inputs: a protected attribute must never be one; name another column"
            )
        return value

    @model_validator(mode="after")
    def _ordered(self):
        if self.disparate_impact_fail > self.disparate_impact_warn:
            raise ValueError("disparate_impact_fail must not be above disparate_impact_warn")
        for name in ("ece_gap", "rate_gap"):
            if getattr(self, f"{name}_fail") < getattr(self, f"{name}_warn"):
                raise ValueError(f"{name}_fail must not be below {name}_warn")
        return self


class OversightSettings(Section):
    """Human oversight: who counts as vulnerable, and how approvers are identified."""

    vulnerable_rule: str | None = Field(
        None,
        description="SQL condition over marts.dim_customers and marts.customer_features (as c and f) that "
        "flags a customer vulnerable; high-risk campaigns never reach them [none: nobody is flagged]",
    )
    require_principal: bool = Field(
        True,
        description="record the operating-system user (or the API's authenticated principal) with "
        "every approval, beside the name typed with --by",
    )

    @field_validator("vulnerable_rule")
    @classmethod
    def _one_condition(cls, value: str | None) -> str | None:
        """The rule is pasted into a WHERE clause: one condition, not a statement or a comment."""
        if value is not None and (not value.strip() or ";" in value or "--" in value or "/*" in value):
            raise ValueError(
                "vulnerable_rule is one SQL condition over c (marts.dim_customers) and f "
                "(marts.customer_features), e.g. 'f.negative_tickets_90d >= 2', without ';' or comments; "
                "or null"
            )
        return value
