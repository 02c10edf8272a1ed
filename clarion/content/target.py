"""Who an on-demand draft is for: a segment of the latest scoring run, or the segment of one
customer named by pseudonym. Only the segment's aggregated profile (its name and typical reasons)
ever reaches a prompt; a customer named by pseudonym only chooses the segment.

A pseudonym that names nobody in the latest scoring run, or a person who may not receive marketing
on the channel (no consent, an objection, an erasure), is refused with one message that names no
data of theirs and does not say which of those it was.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import duckdb

from clarion.config import Settings
from clarion.content.store import ContentError
from clarion.privacy import pseudonym as pseudonyms
from clarion.privacy.suppression import erased_sql
from clarion.subject.objection import objectors_sql
from clarion.warehouse import relation_exists
from models.content.brief import Brief
from models.segments import SEGMENTS

CONSENT_COLUMN = {"email": "email_consent", "sms": "sms_consent"}  # as the export reads consent


class OnDemandError(ContentError):
    """An on-demand request that cannot be drafted as given; ``field`` names the request field and
    ``problems`` lists each field with what to do (an inline brief can have several)."""

    exit_code = 2

    def __init__(self, field: str, message: str, problems: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.problems = problems or [{"field": field, "message": message}]


@dataclass(frozen=True)
class Target:
    segment: str  # the segment whose profile grounds the prompts
    customers: int  # its size in the scoring run
    top_drivers: list[dict[str, Any]] = field(default_factory=list)
    rule: bool = False  # the brief's audience is a rule: the draft is stored as the rule audience
    pseudonym: str | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "segment": self.segment,
            "customers": self.customers,
            **({"pseudonym": self.pseudonym} if self.pseudonym else {}),
        }


def resolve_target(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    brief: Brief,
    scoring_run: str,
    segment: str | None,
    pseudonym: str | None,
    channel: str,
) -> Target:
    if (segment is None) == (pseudonym is None):
        raise OnDemandError(
            "segment", "give either segment (a segment name) or pseudonym (a customer's), not both"
        )
    if pseudonym is not None:
        segment = _customer_segment(con, settings, brief, scoring_run, pseudonym.strip(), channel)
    elif segment not in SEGMENTS:
        raise OnDemandError("segment", f"unknown segment {segment!r}: use one of {list(SEGMENTS)}")
    elif not brief.audience.rule and segment not in brief.audience.segments:
        raise OnDemandError(
            "segment",
            f"campaign {brief.name} targets the segments {list(brief.audience.segments)}, not {segment!r}",
        )
    row = con.execute(
        "select customers, top_drivers from ml.segments where run_id = ? and segment = ?",
        [scoring_run, segment],
    ).fetchone()
    if not row or not row[0]:
        raise OnDemandError(
            "segment", f"segment {segment!r} has no customers in the latest scoring run ({scoring_run})"
        )
    customers = int(row[0])
    if brief.audience.rule:
        (customers,) = con.execute(
            "select count(*) from ml.customer_scores where run_id = ? and segment = ? "
            f"and ({brief.audience.rule})",
            [scoring_run, segment],
        ).fetchone()
        if not customers:
            raise OnDemandError(
                "segment",
                f"no customer of segment {segment!r} meets campaign {brief.name}'s audience rule "
                f"({brief.audience.rule}) in the latest scoring run",
            )
    return Target(
        segment=segment,
        customers=int(customers),
        top_drivers=json.loads(row[1]) if row[1] else [],
        rule=bool(brief.audience.rule),
        pseudonym=pseudonym,
    )


def _customer_segment(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    brief: Brief,
    scoring_run: str,
    pseudonym: str,
    channel: str,
) -> str:
    """The segment of the customer ``pseudonym`` names, if they may receive this campaign on this
    channel. The lookup computes pseudonyms inside DuckDB (the key bound, never in SQL text)."""
    if not (
        pseudonym.startswith(pseudonyms.PREFIX)
        and len(pseudonym) == len(pseudonyms.PREFIX) + pseudonyms.DIGITS
    ):
        raise OnDemandError(
            "pseudonym",
            f"a pseudonym is {pseudonyms.PREFIX} followed by {pseudonyms.DIGITS} hex digits (as exports and "
            "the API show customers)",
        )
    nobody = OnDemandError(
        "pseudonym",
        "no customer of the latest scoring run has that pseudonym, or they may not receive marketing on "
        "this channel (no consent, an objection or an erasure): no draft is made for them",
    )
    try:
        expr, key = pseudonyms.for_settings(settings, con).sql("s.contact_id")
    except duckdb.Error:  # a read-only snapshot without a kept key: no pseudonym was ever handed out
        raise nobody from None
    in_rule = f"({brief.audience.rule})" if brief.audience.rule else "true"
    row = con.execute(
        f"select s.contact_id, s.segment, {in_rule} from ml.customer_scores s "
        f"where s.run_id = ? and {expr} = ?",
        [scoring_run, *key, pseudonym],
    ).fetchone()
    if row is None or not _reachable(con, int(row[0]), channel):
        raise nobody
    _, segment, matches = row
    if brief.audience.rule and not matches:
        raise OnDemandError(
            "pseudonym", f"that customer is not in campaign {brief.name}'s audience ({brief.audience.rule})"
        )
    if not brief.audience.rule and segment not in brief.audience.segments:
        raise OnDemandError(
            "pseudonym",
            f"that customer is in segment {segment!r}, which campaign {brief.name} does not target "
            f"(it targets {list(brief.audience.segments)})",
        )
    return segment


def _reachable(con: duckdb.DuckDBPyConnection, contact_id: int, channel: str) -> bool:
    """Not objecting, not erased, and consenting to the channel where the CRM records consent."""
    objecting = con.execute(
        f"select count(*) from ({objectors_sql(con)}) where contact_id = ?", [contact_id]
    ).fetchone()[0]
    erased = con.execute(
        f"select {erased_sql(con, 'c.id')} from (select ?::bigint as id) c", [contact_id]
    ).fetchone()[0]
    if objecting or erased:
        return False
    column = CONSENT_COLUMN.get(channel)
    if column is None or not relation_exists(con, "marts", "dim_customers"):
        return True
    row = con.execute(
        f"select {column} from marts.dim_customers where contact_id = ?", [contact_id]
    ).fetchone()
    return bool(row and row[0])
