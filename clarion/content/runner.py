"""The content stage and the approval workflow, without orchestration (flows/content.py).

* `generate`: for every brief, the segments of the latest scoring run it targets, drafts from the
  local language model (models.content), each checked and carrying its provenance, into
  ``content.drafts`` with status ``pending`` (or ``blocked``: never offered for approval). The
  prompts actually sent are kept in ``content.prompts``.
* `approve` / `reject` / `edit`: decisions go to ``content.decisions`` with the content's sha256
  at that moment; an approval is bound to that hash, so an edit needs a new approval.
* `export`: approved drafts only, one row per consenting recipient of the target audience, merge
  fields filled, to ``var/exports/``; who was left out and why is counted in ``content.exports``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb

from clarion import audit, lineage, runs
from clarion.config import Settings
from clarion.errors import ClarionError
from clarion.segment.scoring import run_thresholds
from clarion.warehouse import Warehouse, relation_exists
from models.content.brief import Brief, BriefError, load_brief, load_briefs
from models.content.drafts import (
    AI_DISCLOSURE,
    SAMPLE_FIRST_NAME,
    DraftParams,
    content_hash,
    draft_brief,
    fallback_problems,
)
from models.content.guardrails import check_copy

log = logging.getLogger(__name__)

CONTENT_DDL = (
    """
    create table if not exists content.drafts (
        draft_id varchar primary key, run_id varchar, scoring_run_id varchar, campaign varchar,
        segment varchar, channel varchar, variant varchar, status varchar, content json,
        content_sha256 varchar, fallback boolean, ai_generated boolean, checks json, provenance json,
        created_at timestamptz, updated_at timestamptz
    )
    """,
    """
    create table if not exists content.decisions (
        draft_id varchar, decision varchar, decided_by varchar, note varchar, content_sha256 varchar,
        via varchar, decided_at timestamptz
    )
    """,
    """
    create table if not exists content.prompts (
        run_id varchar, campaign varchar, segment varchar, slot varchar, sha256 varchar,
        system varchar, prompt varchar, sent_at timestamptz
    )
    """,
    """
    create table if not exists content.exports (
        export_id varchar, campaign varchar, channel varchar, drafts json, recipients bigint,
        excluded json, path varchar, file_sha256 varchar, exported_at timestamptz
    )
    """,
    """
    create table if not exists audit.erasures (
        contact_id bigint, requested_at timestamptz, reference varchar
    )
    """,
)
RULE_SEGMENT = "rule"  # the segment label of drafts for a brief whose audience is a rule


class ContentError(ClarionError):
    pass


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    for ddl in CONTENT_DDL:
        con.execute(ddl)


def _now() -> datetime:
    return datetime.now(UTC)


# -- generate ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Audience:
    segment: str
    customers: int
    top_drivers: list[dict[str, Any]]


def audiences(con: duckdb.DuckDBPyConnection, brief: Brief, scoring_run: str) -> list[Audience]:
    """The segments of the scoring run a brief targets, with their aggregated drivers; a rule
    audience is one group, described by the segment most of its customers are in."""
    if brief.audience.rule:
        rows = con.execute(
            f"select segment, count(*) from ml.customer_scores where run_id = ? and ({brief.audience.rule}) "
            "group by segment order by 2 desc",
            [scoring_run],
        ).fetchall()
        if not rows:
            return []
        drivers = _drivers(con, scoring_run, rows[0][0])
        return [Audience(RULE_SEGMENT, sum(r[1] for r in rows), drivers)]
    out = []
    for seg in brief.audience.segments:
        row = con.execute(
            "select customers, top_drivers from ml.segments where run_id = ? and segment = ?",
            [scoring_run, seg],
        ).fetchone()
        if row and row[0]:
            out.append(Audience(seg, int(row[0]), json.loads(row[1]) if row[1] else []))
    return out


def _drivers(con: duckdb.DuckDBPyConnection, scoring_run: str, segment: str) -> list[dict[str, Any]]:
    row = con.execute(
        "select top_drivers from ml.segments where run_id = ? and segment = ?", [scoring_run, segment]
    ).fetchone()
    return json.loads(row[0]) if row and row[0] else []


def latest_scoring_run(con: duckdb.DuckDBPyConnection) -> tuple[str, str]:
    if not relation_exists(con, "ml", "segments"):
        raise ContentError(
            "no segments yet: run `clarion segment` (or `clarion run`) before drafting content"
        )
    row = con.execute(
        "select run_id, any_value(as_of)::varchar from ml.segments "
        f"where run_id not in ({runs.NOT_SETTLED}) group by run_id order by max(scored_at) desc limit 1"
    ).fetchone()
    if row is None:
        raise ContentError(
            "no segments yet: run `clarion segment` (or `clarion run`) before drafting content"
        )
    return row[0], row[1]


def draft_params(settings: Settings) -> DraftParams:
    c = settings.content
    return DraftParams(
        candidates=c.candidates,
        min_meaning=c.min_meaning,
        seed=c.seed,
        max_new_tokens=c.max_new_tokens,
        temperature=c.temperature,
        top_p=c.top_p,
    )


def load_generator(settings: Settings) -> Any:
    from models.content.llm import LMSettings, LocalLM

    c = settings.content
    return LocalLM.load(
        LMSettings(
            source=str(c.source) if c.source else None,
            device=c.device,
            dtype=c.dtype,
            batch_size=c.batch_size,
            max_new_tokens=c.max_new_tokens,
            temperature=c.temperature,
            top_p=c.top_p,
            seed=c.seed,
            cache_dir=settings.var_dir / "models",
        )
    )


def generate(
    settings: Settings,
    run_id: str,
    campaigns: tuple[str, ...] = (),
    lm: Any = None,
    meaning: Any = None,
) -> dict[str, Any]:
    """Draft every brief (or the named ones) for the latest scoring run; write content.*."""
    briefs = load_briefs(settings.content.briefs, campaigns)
    if not briefs:
        log.info("no campaign briefs in %s: nothing to draft", settings.content.briefs)
        return {"campaigns": [], "note": f"no campaign briefs in {settings.content.briefs}"}
    for brief in briefs:
        problems = fallback_problems(brief)
        if problems:
            raise ContentError(
                f"campaign {brief.name}: its own copy (seeds in its templates) would be blocked, so it has "
                "nothing to fall back on when the model's candidates fail: "
                + "; ".join(problems)
                + ". Shorten or reword seeds.headline / seeds.hook, or override templates.<part> in the brief"
            )
    wh = Warehouse.from_settings(settings)
    with wh.connect("content plan") as con:
        ensure_tables(con)
        scoring_run, as_of = latest_scoring_run(con)
        targets = {b.name: audiences(con, b, scoring_run) for b in briefs}
        thresholds = run_thresholds(con, settings, scoring_run) if scoring_run else {}
        definitions = {
            r[0]: r[1:]
            for r in con.execute(
                "select segment, model_version, high_value_from_eur from ml.segments where run_id = ?",
                [scoring_run],
            ).fetchall()
        }
    started = time.perf_counter()
    if lm is None:
        lm = load_generator(settings)
    if meaning is None:
        from models.content.meaning import default_meaning_model

        meaning = default_meaning_model()
    load_s = time.perf_counter() - started
    params = draft_params(settings)
    s = settings.segment
    summary: dict[str, Any] = {
        "scoring_run_id": scoring_run,
        "as_of": as_of,
        "model": lm.name,
        "campaigns": [],
    }
    for brief in briefs:
        groups = targets[brief.name]
        if not groups:
            summary["campaigns"].append(
                {"campaign": brief.name, "drafts": 0, "note": "no customers in its audience"}
            )
            continue
        context = {
            "run_id": run_id,
            "scoring_run_id": scoring_run,
            "as_of": as_of,
            "segment_definition": {
                "rule": brief.audience.rule,
                "segments": list(brief.audience.segments),
                "thresholds": {**thresholds, "new_days": s.new_days},
                "scoring_model": {g: definitions.get(g, (None, None))[0] for g in brief.audience.segments},
            },
        }
        started = time.perf_counter()
        before = dict(lm.stats()) if hasattr(lm, "stats") else {}
        drafts, prompts = draft_brief(
            brief,
            [{"segment": g.segment, "top_drivers": g.top_drivers} for g in groups],
            lm,
            meaning,
            params,
            context,
        )
        seconds = time.perf_counter() - started
        after = dict(lm.stats()) if hasattr(lm, "stats") else {}
        _store(wh, run_id, scoring_run, brief, drafts, prompts)
        slots = [sl for d in drafts if d.channel == brief.channels[0] for sl in d.slots.values()]
        summary["campaigns"].append(
            {
                "campaign": brief.name,
                "segments": {g.segment: g.customers for g in groups},
                "drafts": len(drafts),
                "pending": sum(not d.blocked for d in drafts),
                "blocked": sum(d.blocked for d in drafts),
                "fallback_drafts": sum(d.fallback for d in drafts),
                "model_slots": sum(not sl.fallback for sl in slots),
                "slots": len(slots),
                "seconds": round(seconds, 1),
                "tokens": int(after.get("generated_tokens", 0) - before.get("generated_tokens", 0)),
            }
        )
    summary["load_seconds"] = round(load_s, 1)
    return summary


def draft_id(run_id: str, campaign: str, segment: str, channel: str, variant: str, sha: str) -> str:
    return (
        "d"
        + hashlib.sha256(f"{run_id}|{campaign}|{segment}|{channel}|{variant}|{sha}".encode()).hexdigest()[:10]
    )


def _store(
    wh: Warehouse, run_id: str, scoring_run: str, brief: Brief, drafts: list[Any], prompts: list[Any]
) -> None:
    now = _now()
    with wh.connect("content write") as con:
        ensure_tables(con)
        con.execute("begin transaction")
        try:
            # a rerun of the same run replaces what nobody has decided on yet
            con.execute(
                "delete from content.drafts where run_id = ? and campaign = ? "
                "and status in ('pending', 'blocked') "
                "and draft_id not in (select draft_id from content.decisions)",
                [run_id, brief.name],
            )
            con.execute("delete from content.prompts where run_id = ? and campaign = ?", [run_id, brief.name])
            con.executemany(
                "insert into content.prompts values (?, ?, ?, ?, ?, ?, ?, ?)",
                [[run_id, brief.name, p.segment, p.slot, p.sha256(), p.system, p.user, now] for p in prompts],
            )
            for d in drafts:
                sha = d.content_sha256
                did = draft_id(run_id, brief.name, d.segment, d.channel, d.variant, sha)
                con.execute(
                    "insert into content.drafts values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "on conflict (draft_id) do nothing",
                    [
                        did,
                        run_id,
                        scoring_run,
                        brief.name,
                        d.segment,
                        d.channel,
                        d.variant,
                        "blocked" if d.blocked else "pending",
                        json.dumps(d.content),
                        sha,
                        d.fallback,
                        d.ai_generated,
                        json.dumps(d.checks.to_json()),
                        json.dumps({**d.provenance, "draft_id": did}),
                        now,
                        now,
                    ],
                )
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise


# -- reading drafts ----------------------------------------------------------------------------
DRAFT_COLUMNS = (
    "draft_id",
    "run_id",
    "scoring_run_id",
    "campaign",
    "segment",
    "channel",
    "variant",
    "status",
    "content",
    "content_sha256",
    "fallback",
    "ai_generated",
    "checks",
    "provenance",
    "created_at",
    "updated_at",
)


def _draft_row(row: tuple) -> dict[str, Any]:
    d = dict(zip(DRAFT_COLUMNS, row, strict=True))
    for key in ("content", "checks", "provenance"):
        d[key] = json.loads(d[key]) if d[key] else None
    for key in ("created_at", "updated_at"):
        d[key] = str(d[key])
    return d


def list_drafts(
    settings: Settings, status: str | None = None, campaign: str | None = None
) -> list[dict[str, Any]]:
    with Warehouse.from_settings(settings).read() as con:
        if not relation_exists(con, "content", "drafts"):
            return []
        rows = con.execute(
            f"select {', '.join(DRAFT_COLUMNS)} from content.drafts "
            "where (? is null or status = ?) and (? is null or campaign = ?) "
            "order by created_at desc, campaign, segment, channel, variant",
            [status, status, campaign, campaign],
        ).fetchall()
    return [_draft_row(r) for r in rows]


def get_draft(con: duckdb.DuckDBPyConnection, did: str) -> dict[str, Any]:
    row = None
    if relation_exists(con, "content", "drafts"):
        row = con.execute(
            f"select {', '.join(DRAFT_COLUMNS)} from content.drafts where draft_id = ?", [did]
        ).fetchone()
    if row is None:
        raise ContentError(f"no draft {did!r}: `clarion drafts list` shows the drafts and their ids")
    return _draft_row(row)


def show_draft(settings: Settings, did: str) -> dict[str, Any]:
    with Warehouse.from_settings(settings).read() as con:
        draft = get_draft(con, did)
        draft["decisions"] = [
            dict(
                zip(
                    ("decision", "by", "note", "content_sha256", "via", "at"),
                    (*r[:-1], str(r[-1])),
                    strict=True,
                )
            )
            for r in con.execute(
                "select decision, decided_by, note, content_sha256, via, decided_at from content.decisions "
                "where draft_id = ? order by decided_at",
                [did],
            ).fetchall()
        ]
    return draft


# -- decisions ---------------------------------------------------------------------------------
def _brief_for(settings: Settings, draft: dict[str, Any]) -> Brief:
    path = settings.content.briefs / f"{draft['campaign']}.yaml"
    try:
        brief = load_brief(path)
    except BriefError as exc:
        raise ContentError(f"the brief of draft {draft['draft_id']} cannot be read: {exc}") from None
    drafted = (draft["provenance"] or {}).get("brief", {}).get("sha256")
    if drafted and drafted != brief.sha256():
        raise ContentError(
            f"{path} changed since draft {draft['draft_id']} was written (brief sha256 {drafted[:12]} -> "
            f"{brief.sha256()[:12]}): draft again with `clarion content --campaign {brief.name}`"
        )
    return brief


def _intact(draft: dict[str, Any]) -> None:
    if content_hash(draft["content"]) != draft["content_sha256"]:
        raise ContentError(
            f"draft {draft['draft_id']}'s content no longer matches its recorded sha256: it was changed "
            "outside "
            "Clarion; use `clarion drafts edit` so the change is checked and recorded"
        )


def decide(
    settings: Settings, did: str, decision: str, by: str, note: str | None, via: str = "cli"
) -> dict[str, Any]:
    """Approve or reject one draft; an approval binds the draft's current content hash."""
    if decision not in ("approve", "reject"):
        raise ValueError(decision)
    if not by.strip():
        raise ContentError("say who decides: --by NAME")
    if decision == "reject" and not (note or "").strip():
        raise ContentError("a rejection needs a reason: --reason TEXT")
    with Warehouse.from_settings(settings).connect(f"content {decision}") as con:
        ensure_tables(con)
        draft = get_draft(con, did)
        _intact(draft)
        if draft["status"] == "blocked":
            failed = [c["name"] for c in draft["checks"] if not c["passed"] and c["severity"] == "block"]
            raise ContentError(
                f"draft {did} failed blocking checks ({', '.join(failed)}) and cannot be approved; edit it "
                "(`clarion drafts edit`) or draft again"
            )
        if draft["status"] in ("approved", "rejected"):
            last = con.execute(
                "select decided_by, decided_at from content.decisions where draft_id = ? "
                "order by decided_at desc limit 1",
                [did],
            ).fetchone()
            who = f" by {last[0]} at {last[1]}" if last else ""
            raise ContentError(f"draft {did} is already {draft['status']}{who}; an edit reopens it")
        brief = _brief_for(settings, draft)
        if decision == "approve" and by not in brief.approvers:
            raise ContentError(
                f"{by!r} is not an approver of campaign {brief.name}: its brief lists {list(brief.approvers)}"
            )
        now = _now()
        con.execute(
            "insert into content.decisions values (?, ?, ?, ?, ?, ?, ?)",
            [did, decision, by, note, draft["content_sha256"], via, now],
        )
        status = "approved" if decision == "approve" else "rejected"
        con.execute(
            "update content.drafts set status = ?, updated_at = ? where draft_id = ?", [status, now, did]
        )
        audit.AuditLog.for_settings(settings).record(  # the note is free text: not in the audit log
            con,
            audit.DRAFT_APPROVED if decision == "approve" else audit.DRAFT_REJECTED,
            did,
            actor=by,
            details={
                "content_sha256": draft["content_sha256"],
                "via": via,
                "campaign": draft["campaign"],
                "channel": draft["channel"],
                "variant": draft["variant"],
            },
        )
    return {
        "draft_id": did,
        "status": status,
        "by": by,
        "content_sha256": draft["content_sha256"],
        "via": via,
    }


def edit(settings: Settings, did: str, part: str, text: str, by: str) -> dict[str, Any]:
    """A person's change to one part of a draft: checked again, and back to pending (a new approval
    is needed; the old one stays on record, bound to the old content)."""
    with Warehouse.from_settings(settings).connect("content edit") as con:
        ensure_tables(con)
        draft = get_draft(con, did)
        _intact(draft)
        if part not in draft["content"]:
            raise ContentError(f"draft {did} has parts {list(draft['content'])}, not {part!r}")
        brief = _brief_for(settings, draft)
        content = {**draft["content"], part: text}
        preview = {k: v.replace("{first_name}", SAMPLE_FIRST_NAME) for k, v in content.items()}
        checks = check_copy(preview, brief, draft["channel"], templates=_as_template(content, brief))
        sha = content_hash(content)
        now = _now()
        provenance = {
            **draft["provenance"],
            "checks": checks.to_json(),
            "content_sha256": sha,
            "edits": [
                *draft["provenance"].get("edits", []),
                {
                    "by": by,
                    "at": now.isoformat(timespec="seconds"),
                    "part": part,
                    "previous_sha256": draft["content_sha256"],
                },
            ],
        }
        status = "blocked" if checks.blocked else "pending"
        con.execute(
            "update content.drafts set content = ?, content_sha256 = ?, checks = ?, provenance = ?, "
            "status = ?, "
            "updated_at = ? where draft_id = ?",
            [
                json.dumps(content),
                sha,
                json.dumps(checks.to_json()),
                json.dumps(provenance),
                status,
                now,
                did,
            ],
        )
        con.execute(
            "insert into content.decisions values (?, 'edit', ?, ?, ?, 'cli', ?)",
            [did, by, f"edited {part}", sha, now],
        )
        audit.AuditLog.for_settings(settings).record(
            con,
            audit.DRAFT_EDITED,
            did,
            actor=by,
            details={
                "part": part,
                "previous_sha256": draft["content_sha256"],
                "content_sha256": sha,
                "status": status,
                "campaign": draft["campaign"],
                "channel": draft["channel"],
            },
        )
    return {"draft_id": did, "status": status, "content_sha256": sha, "checks": checks.to_json()}


def _as_template(content: dict[str, str], brief: Brief) -> dict[str, str]:
    """Offer facts back into placeholders, so the placeholder checks can read an edited text."""
    facts = sorted(((k, v) for k, v in brief.facts().items() if v), key=lambda kv: -len(kv[1]))
    out = {}
    for part, text in content.items():
        for key, value in facts:
            text = text.replace(value, "{" + key + "}")
        out[part] = text
    return out


# -- export ------------------------------------------------------------------------------------
CHANNEL_ADDRESS = {"email": "email", "sms": "phone", "push": None}
CHANNEL_CONSENT = {"email": "email_consent", "sms": "sms_consent", "push": None}


def export(settings: Settings, campaign: str | None = None) -> dict[str, Any]:
    """Approved, unedited drafts of the latest content run of each campaign, to one file per
    campaign and channel; one row per consenting recipient with merge fields filled."""
    wh = Warehouse.from_settings(settings)
    exports: list[dict[str, Any]] = []
    with wh.connect("content export") as con:
        ensure_tables(con)
        latest = con.execute(
            "select campaign, arg_max(run_id, created_at) from content.drafts "
            "where (? is null or campaign = ?) "
            "group by campaign order by campaign",
            [campaign, campaign],
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
            drafts = [_draft_row(r) for r in rows]
            channels = sorted({d["channel"] for d in drafts})
            for channel in channels:
                exports.append(
                    _export_channel(
                        settings, con, name, run_id, channel, [d for d in drafts if d["channel"] == channel]
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
) -> dict[str, Any]:
    held = {d["draft_id"]: why for d in drafts if (why := _approved(con, d))}
    ready = [d for d in drafts if d["draft_id"] not in held]
    by_segment: dict[str, list[dict]] = {}
    for d in ready:
        by_segment.setdefault(d["segment"], []).append(d)
    export_id = f"{run_id}-{campaign}-{channel}"
    folder = settings.var_dir / "exports" / run_id / campaign
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
                order by s.contact_id
                """,
                [variants[0]["scoring_run_id"]],
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
            _now(),
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
