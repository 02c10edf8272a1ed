"""Export: approved, unedited drafts to one file per campaign and channel, one row per consenting
recipient of the target audience with merge fields filled; who was left out and why is counted.

Every eligible member of the audience (consenting, reachable, not objecting, not erased) is assigned
an arm and recorded in ``content.assignments`` (export_id, campaign, contact_id, arm, variant,
assigned_at): ``global_control`` and ``holdout`` are never written to the file, only ``treatment``
is (with its variant). The arms come from clarion.experiments (a seeded hash): the same customer is
in the same arm of a campaign on every export, which is what makes the holdout a control group.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from clarion import audit, experiments, fairness, lineage
from clarion.config import Settings
from clarion.content import recommended
from clarion.content.review import _as_template
from clarion.content.store import DRAFT_COLUMNS, RULE_SEGMENT, ContentError, draft_row, ensure_tables, utc_now
from clarion.oversight import tiers
from clarion.privacy.suppression import erased_sql
from clarion.runs import CONTENT_UNFINISHED, ON_DEMAND_RUNS
from clarion.runtime import checkpoint
from clarion.warehouse import Warehouse
from models.content.brief import CHANNEL_PARTS, Brief
from models.content.drafts import AI_DISCLOSURE, content_hash, fill

CHANNEL_ADDRESS = {"email": "email", "sms": "phone", "push": None}
CHANNEL_CONSENT = {"email": "email_consent", "sms": "sms_consent", "push": None}
TREATMENT, HOLDOUT, GLOBAL_CONTROL = "treatment", "holdout", "global_control"
ARMS = (TREATMENT, HOLDOUT, GLOBAL_CONTROL)
ARM_EXCLUSION = {HOLDOUT: "holdout", GLOBAL_CONTROL: "global control"}  # as the exclusion counts name them


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
    campaign and channel; one row per consenting recipient with merge fields filled. A run that
    stopped before its drafting finished is passed over: it may hold a campaign's drafts while a
    finished run holds the approved ones. With a ``subset``, only its customers (see `Subset`)."""
    wh = Warehouse.from_settings(settings)
    exports: list[dict[str, Any]] = []
    with wh.connect("content export") as con:
        ensure_tables(con)
        latest = con.execute(
            "select campaign, arg_max(run_id, created_at) from content.drafts "
            f"where (? is null or campaign = ?) and run_id not in ({CONTENT_UNFINISHED}) "
            f"and run_id not in ({ON_DEMAND_RUNS}) "
            "and (? or status = 'approved') "
            "group by campaign order by campaign",
            [campaign, campaign, subset is None],
        ).fetchall()
        if not latest:
            raise ContentError(_nothing_to_export(con, campaign))
        fairness.gate_export(settings, con, latest, subset.scoring_run if subset else None)  # sign-offs
        by_campaign = {}
        for name, run_id in latest:
            rows = con.execute(
                f"select {', '.join(DRAFT_COLUMNS)} from content.drafts where campaign = ? and run_id = ? "
                "order by segment, channel, variant",
                [name, run_id],
            ).fetchall()
            by_campaign[name] = [draft_row(r) for r in rows]
            if any(d["status"] == "approved" and recommended.uses(d["content"]) for d in by_campaign[name]):
                recommended.require(settings, con, name)  # before any file is written
        for name, run_id in latest:
            drafts = by_campaign[name]
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


def _nothing_to_export(con: duckdb.DuckDBPyConnection, campaign: str | None) -> str:
    """Why there is nothing to export: no drafts at all, or only those of runs that did not finish."""
    stopped = con.execute(
        "select distinct run_id from content.drafts where (? is null or campaign = ?) order by 1",
        [campaign, campaign],
    ).fetchall()
    where = f" for campaign {campaign}" if campaign else ""
    if stopped:
        return (
            f"no drafts to export{where}: the only drafts are from run(s) "
            f"{', '.join(r[0] for r in stopped)}, which stopped before their drafting finished; "
            "run `clarion content` (or `clarion run --resume`), approve the new drafts, then export"
        )
    return f"no drafts to export{where}: run `clarion content`"


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


def held_back(con: duckdb.DuckDBPyConnection, brief: Brief | None, draft: dict[str, Any]) -> str | None:
    """Why the export would hold ``draft`` back now (not approved, changed since, an approval its
    risk tier still asks for), or None when it would go out. ``brief``: the campaign's brief as it
    is now (`tiers.current_brief`). Read-only: the web app shows it on the draft's page. An on-demand
    draft is never in a campaign's batch export (its requester reads it through the API)."""
    if con.execute(f"select count(*) from ({ON_DEMAND_RUNS}) where run_id = ?", [draft["run_id"]]).fetchone()[
        0
    ]:
        return "drafted on demand: not part of the campaign's export (its requester reads it once approved)"
    return _approved(con, draft) or tiers.unmet(con, brief, draft)


def _export_channel(
    settings: Settings,
    con: duckdb.DuckDBPyConnection,
    campaign: str,
    run_id: str,
    channel: str,
    drafts: list[dict],
    subset: Subset | None = None,
) -> dict[str, Any]:
    brief = tiers.current_brief(settings, campaign)  # its risk tier as it is now (None: unreadable)
    held = {d["draft_id"]: why for d in drafts if (why := held_back(con, brief, d))}
    vulnerable = tiers.vulnerable_ids(con, settings, brief) if len(held) < len(drafts) else set()
    ready = [d for d in drafts if d["draft_id"] not in held]
    by_segment: dict[str, list[dict]] = {}
    for d in ready:
        by_segment.setdefault(d["segment"], []).append(d)
    # {recommended_product}: filled from the latest recommend run, each product checked (recommended.py)
    needs = any(recommended.uses(d["content"]) for d in ready)
    rec_run = recommended.require(settings, con, campaign) if needs and brief is not None else None
    checks = (
        recommended.FillChecks(
            settings, brief, channel, {d["draft_id"]: _as_template(d["content"], brief) for d in ready}
        )
        if rec_run
        else None
    )
    export_id = f"{run_id}-{campaign}-{channel}" + (f"-{subset.label}" if subset else "")
    folder = settings.var_dir / "exports" / run_id / campaign / (subset.label if subset else "")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{channel}.csv"
    excluded: dict[str, int] = {}
    assigned: list[tuple[int, str, str | None]] = []  # every eligible member: (contact_id, arm, variant)
    recipients = 0
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        parts = list(brief.parts(channel) if brief else CHANNEL_PARTS[channel])
        extra = ["recommended_product_id"] if rec_run else []
        writer.writerow(
            ["contact_id", "to", "draft_id", "variant", *parts, "ai_generated", "ai_disclosure", *extra]
        )
        for segment, variants in by_segment.items():
            audience = _audience_sql(brief, segment)
            members = con.execute(
                f"""
                select s.contact_id, c.first_name, c.email, c.phone, d.email_consent, d.sms_consent,
                       coalesce(d.marketing_objection, false), {erased_sql(con, "s.contact_id")}
                from ml.customer_scores s
                left join marts.dim_customers d using (contact_id)
                left join (
                    select contact_id, any_value(first_name) first_name, any_value(email) email,
                           any_value(phone) phone
                    from raw.contacts group by contact_id
                ) c using (contact_id)
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
            eligible = []
            products = (
                recommended.top_active(con, rec_run, [m[0] for m in members]) if rec_run and members else {}
            )
            for member in members:
                why = _exclusion(channel, *member[2:], vulnerable=member[0] in vulnerable)
                if not why and checks is not None:
                    why = _without_product(
                        checks, variants[_bucket(member[0], len(variants))], products.get(member[0])
                    )
                if why:
                    excluded[why] = excluded.get(why, 0) + 1
                else:
                    eligible.append(member)
            arms = _arms(settings, campaign, [m[0] for m in eligible])
            for (contact_id, first_name, email, phone, *_), arm_ in zip(eligible, arms, strict=True):
                if arm_ != TREATMENT:
                    excluded[ARM_EXCLUSION[arm_]] = excluded.get(ARM_EXCLUSION[arm_], 0) + 1
                    assigned.append((contact_id, arm_, None))
                    continue
                d = variants[_bucket(contact_id, len(variants))]
                assigned.append((contact_id, arm_, d["variant"]))
                name = (first_name or "").strip() or "there"
                product = products.get(contact_id) if recommended.uses(d["content"]) else None
                fills = {"first_name": name, **recommended.values(settings, product)}
                texts = [fill(d["content"].get(p, ""), fills) for p in parts]
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
                        *([product.product_id if product else ""] if rec_run else []),
                    ]
                )
                recipients += 1
    tmp.replace(path)
    checkpoint("content.exported")  # the file in place, its content.exports row and audit event not yet
    file_sha = hashlib.sha256(path.read_bytes()).hexdigest()
    arm_counts = record_assignments(con, export_id, campaign, assigned)  # idempotent: a rerun keeps them
    con.execute("begin transaction")  # the export's one row is replaced, never briefly absent
    try:
        con.execute("delete from content.exports where export_id = ?", [export_id])
        con.execute(
            "insert into content.exports values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                export_id,
                campaign,
                channel,
                json.dumps(
                    {
                        "exported": [d["draft_id"] for d in ready],
                        "held": held,
                        **({"recommend_run": rec_run} if rec_run else {}),
                    }
                ),
                recipients,
                json.dumps(excluded),
                str(path),
                file_sha,
                utc_now(),
            ],
        )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
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
            "arms": arm_counts,
            "drafts_exported": [d["draft_id"] for d in ready],
            "drafts_held": sorted(held),
            "file_sha256": file_sha,
            **({"recommend_run": rec_run} if rec_run else {}),
        },
    )
    return {
        "campaign": campaign,
        "channel": channel,
        "drafts_exported": [d["draft_id"] for d in ready],
        "drafts_held": held,
        "recipients": recipients,
        "excluded": excluded,
        "arms": arm_counts,
        "path": str(path),
        **(
            {"recommendations": {"run_id": rec_run, "blocked_products": checks.blocked()}}
            if rec_run and checks
            else {}
        ),
    }


def _arms(settings: Settings, campaign: str, contact_ids: list[int]) -> list[str]:
    """Each eligible member's arm: the global control group first (no campaign contacts them),
    then the campaign's holdout, else treatment; the same on every export (clarion.experiments)."""
    x = settings.experiments
    ids = np.asarray(contact_ids, dtype=np.int64)
    held = experiments.arm(ids, campaign, x.holdout_share, x.seed)
    control = experiments.global_control(ids, x.global_control_share, x.seed)
    return np.where(control, GLOBAL_CONTROL, np.where(held, HOLDOUT, TREATMENT)).tolist()


def record_assignments(
    con: duckdb.DuckDBPyConnection, export_id: str, campaign: str, assigned: list[tuple[int, str, str | None]]
) -> dict[str, int]:
    """Replace the export's rows of content.assignments with `assigned`, keeping the first
    assigned_at of every row that is unchanged (a holdout's attribution window starts there, so a
    re-export must not move it); the count per arm."""
    rows = pa.table(
        {
            "contact_id": pa.array([a[0] for a in assigned], pa.int64()),
            "arm": pa.array([a[1] for a in assigned], pa.string()),
            "variant": pa.array([a[2] for a in assigned], pa.string()),
        }
    )
    cur = con.cursor()  # its own connection: a half-read result on `con` would block registering
    try:
        cur.register("assigned_now", rows)
        cur.execute(
            """
            delete from content.assignments a where export_id = ? and not exists (
                select 1 from assigned_now n where n.contact_id = a.contact_id and n.arm = a.arm
                and n.variant is not distinct from a.variant
            )
            """,
            [export_id],
        )
        cur.execute(
            """
            insert into content.assignments
            select ?, ?, n.contact_id, n.arm, n.variant, ? from assigned_now n
            where not exists (
                select 1 from content.assignments a where a.export_id = ? and a.contact_id = n.contact_id
            )
            """,
            [export_id, campaign, utc_now(), export_id],
        )
    finally:
        cur.close()
    counts = {arm_: 0 for arm_ in ARMS}
    for _, arm_, _ in assigned:
        counts[arm_] += 1
    return counts


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
    vulnerable: bool = False,
) -> str | None:
    if erased:
        return "erased"
    if objection:
        return "marketing objection"
    if vulnerable:  # a high-risk campaign never reaches them (oversight.vulnerable_rule)
        return tiers.VULNERABLE
    if channel == "push":
        return "no push permission recorded in the CRM"
    if not (email_ok if channel == "email" else sms_ok):
        return f"no {channel} consent"
    if not (email if channel == "email" else phone):
        return f"no {CHANNEL_ADDRESS[channel]} on record"
    return None


def _without_product(
    checks: recommended.FillChecks, draft: dict[str, Any], product: recommended.Product | None
) -> str | None:
    """Why a member cannot get a draft that names their recommended product (none, or one whose
    copy fails the guardrails), or None; a draft without the placeholder needs none."""
    if not recommended.uses(draft["content"]):
        return None
    if product is None:
        return recommended.NO_RECOMMENDATION
    return recommended.PRODUCT_BLOCKED if checks.problems(draft, product) else None


def _bucket(contact_id: int, variants: int) -> int:
    """A stable A/B/n assignment: the same customer gets the same variant on every export."""
    return int(hashlib.sha256(str(contact_id).encode()).hexdigest()[:8], 16) % variants
