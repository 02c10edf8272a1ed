"""The settings that close the marketing loop: control groups and measured results (`experiments:`),
and the next-best-action decisions (`nba:`)."""

from __future__ import annotations

from pydantic import Field, model_validator

from clarion.config.base import Section


class ExperimentsSettings(Section):
    """Who is held out of a campaign, and how its results are measured (`clarion results`)."""

    holdout_share: float = Field(
        0.10,
        ge=0,
        le=0.5,
        description="share of each campaign's eligible audience held out (recorded, never contacted) to "
        "measure the campaign's uplift against [0: no holdout, no measured uplift]",
    )
    global_control_share: float = Field(
        0.0,
        ge=0,
        le=0.2,
        description="share of all customers that no campaign ever contacts: the long-run baseline [0: none]",
    )
    seed: str = Field(
        "clarion",
        min_length=1,
        description="salt of the assignment hash (a customer's arm is a hash of seed, campaign and "
        "customer): the same on every export; change it only to reshuffle every future assignment",
    )
    attribution_days: int = Field(
        7,
        ge=1,
        le=90,
        description="orders within this many days of a send (or a holdout's assignment) convert",
    )
    alpha: float = Field(
        0.05,
        gt=0,
        lt=0.5,
        description="error rate of every interval and of the always-valid winner test (safe to look daily)",
    )
    min_evidence: int = Field(
        200,
        ge=10,
        description="customers per arm before a measured uplift replaces the prior in next-best-action",
    )
    uplift_refit_every_days: int = Field(
        7,
        ge=0,
        le=365,
        description="a fitted uplift model and its verdict are reused (not fitted and validated "
        "again) by runs for days less than this many days after the day it was fitted for, while the "
        "exposures stay within 10% of the count it learnt from [0: fit it on every run]",
    )
    uplift_arm_ratio: int = Field(
        10,
        ge=0,
        description="the uplift model is fitted and validated on at most this many exposures of the "
        "larger arm (usually the treated one) per exposure of the smaller, which is kept whole: beyond "
        "that the smaller arm bounds the precision (a difference of two rates keeps at least "
        "1 / (1 + 1/10) = 91% of the precision every exposure would give). The larger arm is sampled "
        "by a hash of campaign and customer, the same rows on every run [0: every exposure]",
    )

    @model_validator(mode="after")
    def _room_for_treatment(self):
        if self.holdout_share + self.global_control_share >= 0.6:
            raise ValueError(
                f"holdout_share ({self.holdout_share}) + global_control_share ({self.global_control_share}) "
                "leave too few customers to treat: keep their sum under 0.6"
            )
        return self


class NbaSettings(Section):
    """Next best action: at most one message per customer per run, chosen by expected incremental value."""

    contact_cost: float = Field(0.05, ge=0, description="cost of sending one message, in EUR")
    prior_relative_uplift: float = Field(
        0.10,
        ge=0,
        le=2,
        description="until a campaign has measured evidence: the share by which it raises a customer's "
        "purchase probability (expected incremental purchase = this x purchase probability)",
    )
    frequency_cap: int = Field(3, ge=0, description="most marketing messages per customer within cap_days")
    cap_days: int = Field(7, ge=1, le=365, description="the window of the frequency cap, in days")
    cooldown_days: int = Field(
        2, ge=0, le=365, description="no message within this many days of the last one"
    )
