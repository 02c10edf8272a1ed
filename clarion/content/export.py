"""Export: approved, unedited drafts to one file per campaign and channel, one row per consenting
recipient of the target audience with merge fields filled; who was left out and why is counted."""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import duckdb

from clarion import audit, lineage
from clarion.config import Settings
from clarion.content.store import DRAFT_COLUMNS, RULE_SEGMENT, ContentError, draft_row, ensure_tables, utc_now
from clarion.warehouse import Warehouse
from models.content.brief import Brief, load_brief
from models.content.drafts import AI_DISCLOSURE, content_hash

CHANNEL_ADDRESS = {"email": "email", "sms": "phone", "push": None}
CHANNEL_CONSENT = {"email": "email_consent", "sms": "sms_consent", "push": None}


@dataclass(frozen=True)
class Subset:
    """An export to some customers of a campaign only (a trigger's), apart from its full export.

    A subset cannot wait for a person, so it takes the newest content run with an approved draft
    rather than the newest run; the audience is read from ``scoring_run`` (where the customers were
    found), and ``label`` names the export and its file so the full export is never overwritten."""

    contacts: frozenset[int]
    scoring_run: str
    label: str


def export(settings: Settings, campaign: str | None = None, subset: Subset | None = None) -> dict[str, Any]:
    """Approved, unedited drafts of the latest content run of each campaign, to one file per
    campaign and channel; one row per consenting recipient with merge fields filled. With a
    ``subset``, only its customers (see `Subset`)."""
    wh = Warehouse.from_settings(settings)
    exports: list[dict[str, Any]] = []
    with wh.connect("content export") as con:
        ensure_tables(con)
        latest = con.execute(
            "select campaign, arg_max(run_id, created_at) from content.drafts "
            "where (? is null or campaign = ?) and (? or status = 'approved') "
            "group by campaign order by campaign",
            [campaign, campaign, subset is None],
        ).fetchall()
        if not latest:
            raise ContentError(
                "no drafts to export"
                + (f" for campaign {campaign}" if campaign else "")
                + ": run `clarion content`"
            )
        for name, run_id in latest:
            rows = con.execute(
                f"select {', '.join(DRAFT_COLUMNS)} from content.drafts where campaign = ? and run_id = ? "
                "order by segment, channel, variant",
                [name, run_id],
            ).fetchall()
            drafts = [draft_row(r) for r in rows]
            channels = sorted({d["channel"] for d in drafts})
            for channel in channels:
                exports.append(
                    _export_channel(
                        settings,
                        con,
                        name,
                        run_id,
                        channel,
                        [d for d in drafts if d["channel"] == channel],
                        subset,
                    )
                )
        for _, run_id in latest:  # the exports belong to the run that drafted them: its manifest lists them
            if con.execute("select count(*) from audit.runs where run_id = ?", [run_id]).fetchone()[0]:
                lineage.write(settings, run_id, con)
    return {"exports": exports}


def _approved(con: duckdb.DuckDBPyConnection, draft: dict[str, Any]) -> str | None:
    """Why a draft may not be exported, or None if it may."""
    if draft["status"] != "approved":
        return f"status {draft['status']}"
    last = con.execute(
        "select decision, content_sha256 from content.decisions where draft_id = ? and decision <> 'edit' "
        "order by decided_at desc limit 1",
        [draft["draft_id"]],
    ).fetchone()
    if last is None or last[0] != "approve":
        return "no approval on record"
    if last[1] != draft["content_sha256"] or content_hash(draft["content"]) != draft["content_sha256"]:
        return "content changed after approval"
    return None


def _export_channel(
    settings: Settings,
    con: duckdb.DuckDBPyConnection,
    campaign: str,
    run_id: str,
    channel: str,
    drafts: list[dict],
    subset: Subset | None = None,
) -> dict[str, Any]:
    held = {d["draft_id"]: why for d in drafts if (why := _approved(con, d))}
    ready = [d for d in drafts if d["draft_id"] not in held]
    by_segment: dict[str, list[dict]] = {}
    for d in ready:
        by_segment.setdefault(d["segment"], []).append(d)
    export_id = f"{run_id}-{campaign}-{channel}" + (f"-{subset.label}" if subset else "")
    folder = settings.var_dir / "exports" / run_id / campaign / (subset.label if subset else "")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{channel}.csv"
    excluded: dict[str, int] = {}
    recipients = 0
    brief = load_brief(settings.content.briefs / f"{campaign}.yaml") if by_segment else None
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        parts = ["email_subject", "email_body"] if channel == "email" else [channel]
        writer.writerow(["contact_id", "to", "draft_id", "variant", *parts, "ai_generated", "ai_disclosure"])
        for segment, variants in by_segment.items():
            audience = _audience_sql(brief, segment)
            members = con.execute(
                f"""
                select s.contact_id, c.first_name, c.email, c.phone, d.email_consent, d.sms_consent,
                       coalesce(d.marketing_objection, false), e.contact_id is not null
                from ml.customer_scores s
                left join marts.dim_customers d using (contact_id)
                left join (
                    select contact_id, any_value(first_name) first_name, any_value(email) email,
                           any_value(phone) phone
                    from raw.contacts group by contact_id
                ) c using (contact_id)
                left join (select distinct contact_id from audit.erasures) e using (contact_id)
                where s.run_id = ? and ({audience})
                  and (? or s.contact_id in (select unnest(?::bigint[])))
                order by s.contact_id
                """,
                [
                    subset.scoring_run if subset else variants[0]["scoring_run_id"],
                    subset is None,
                    sorted(subset.contacts) if subset else [],
                ],
            ).fetchall()
            for contact_id, first_name, email, phone, email_ok, sms_ok, objection, erased in members:
                why = _exclusion(channel, email, phone, email_ok, sms_ok, objection, erased)
                if why:
                    excluded[why] = excluded.get(why, 0) + 1
                    continue
                d = variants[_bucket(contact_id, len(variants))]
                name = (first_name or "").strip() or "there"
                texts = [d["content"][p].replace("{first_name}", name) for p in parts]
                to = email if channel == "email" else phone
                disclosure = AI_DISCLOSURE if d["ai_generated"] else ""
                writer.writerow(
                    [
                        contact_id,
                        to,
                        d["draft_id"],
                        d["variant"],
                        *texts,
                        str(d["ai_generated"]).lower(),
                        disclosure,
                    ]
                )
                recipients += 1
    tmp.replace(path)
    file_sha = hashlib.sha256(path.read_bytes()).hexdigest()
    con.execute("delete from content.exports where export_id = ?", [export_id])
    con.execute(
        "insert into content.exports values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            export_id,
            campaign,
            channel,
            json.dumps({"exported": [d["draft_id"] for d in ready], "held": held}),
            recipients,
            json.dumps(excluded),
            str(path),
            file_sha,
            utc_now(),
        ],
    )
    audit.AuditLog.for_settings(settings).record(
        con,
        audit.EXPORT_WRITTEN,
        export_id,
        details={
            "campaign": campaign,
            "channel": channel,
            "content_run_id": run_id,
            "recipients": recipients,
            "excluded": excluded,
            "drafts_exported": [d["draft_id"] for d in ready],
            "drafts_held": sorted(held),
            "file_sha256": file_sha,
        },
    )
    return {
        "campaign": campaign,
        "channel": channel,
        "drafts_exported": [d["draft_id"] for d in ready],
        "drafts_held": held,
        "recipients": recipients,
        "excluded": excluded,
        "path": str(path),
    }


def _audience_sql(brief: Brief | None, segment: str) -> str:
    if segment == RULE_SEGMENT and brief is not None and brief.audience.rule:
        return brief.audience.rule  # validated: only score columns, comparisons, and/or/not
    return "s.segment = '" + segment.replace("'", "''") + "'"


def _exclusion(
    channel: str,
    email: str | None,
    phone: str | None,
    email_ok: Any,
    sms_ok: Any,
    objection: bool,
    erased: bool,
) -> str | None:
    if erased:
        return "erased"
    if objection:
        return "marketing objection"
    if channel == "push":
        return "no push permission recorded in the CRM"
    if not (email_ok if channel == "email" else sms_ok):
        return f"no {channel} consent"
    if not (email if channel == "email" else phone):
        return f"no {CHANNEL_ADDRESS[channel]} on record"
    return None


def _bucket(contact_id: int, variants: int) -> int:
    """A stable A/B/n assignment: the same customer gets the same variant on every export."""
    return int(hashlib.sha256(str(contact_id).encode()).hexdigest()[:8], 16) % variants
