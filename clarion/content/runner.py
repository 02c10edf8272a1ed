"""The content stage and the approval workflow, without orchestration (flows/content.py).

Drafting lives here; the stored drafts in ``store``, decisions in ``review``, the export in
``export`` (re-exported below, as the stage's one entry point).

* `generate`: for every brief, the segments of the latest scoring run it targets, drafts from the
  local language model (models.content), each checked and carrying its provenance, into
  ``content.drafts`` with status ``pending`` (or ``blocked``: never offered for approval). The
  prompts actually sent are kept in ``content.prompts``. Each brief's drafts are committed
  together; a run that stops before its drafting finishes (killed, failed) is never reviewed,
  exported or reported, and the next run replaces the drafts it left that nobody decided on.
* `approve` / `reject` / `edit`: decisions go to ``content.decisions`` with the content's sha256
  at that moment; an approval is bound to that hash, so an edit needs a new approval.
* `export`: approved drafts only, one row per consenting recipient of the target audience, merge
  fields filled, to ``var/exports/``; who was left out and why is counted in ``content.exports``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import duckdb

from clarion import runs
from clarion.config import Settings
from clarion.content import recommended
from clarion.content.corpus import brand_shots
from clarion.content.export import export
from clarion.content.review import decide, edit
from clarion.content.store import (
    CONTENT_DDL,
    DRAFT_COLUMNS,
    RULE_SEGMENT,
    ContentError,
    ensure_tables,
    get_draft,
    list_drafts,
    show_draft,
    supersede_unfinished,
    utc_now,
)
from clarion.oversight import tiers
from clarion.results import retired_variants
from clarion.runtime import checkpoint
from clarion.segment.scoring import run_thresholds
from clarion.warehouse import Warehouse, relation_exists
from models.content.brief import Brief, load_briefs
from models.content.drafts import DraftParams, draft_brief, fallback_problems

__all__ = [  # the stage's surface: drafting here, the rest re-exported from store, review and export
    "CONTENT_DDL",
    "DRAFT_COLUMNS",
    "RULE_SEGMENT",
    "Audience",
    "ContentError",
    "audiences",
    "decide",
    "draft_id",
    "draft_params",
    "edit",
    "ensure_tables",
    "export",
    "generate",
    "get_draft",
    "latest_scoring_run",
    "list_drafts",
    "load_generator",
    "show_draft",
]

log = logging.getLogger(__name__)


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
    """The content model content.source names: the embedded or a local model (with the brand
    adapter content.adapter names merged in), or a model server."""
    from clarion.content import server
    from clarion.content.tune import apply_configured

    if server.uses_server(settings):
        return server.connect(settings)
    from models.content.llm import LocalLM

    lm = LocalLM.load(lm_settings(settings))
    return apply_configured(settings, lm)  # content.adapter: the brand adapter merged in, or none


def lm_settings(settings: Settings, **overrides: Any) -> Any:
    """The local model's settings from content.* (``overrides``: fields to set otherwise)."""
    from dataclasses import replace

    from models.content.llm import LMSettings

    c = settings.content
    base = LMSettings(
        source=str(c.source) if c.source else None,
        device=c.device,
        dtype=c.dtype,
        batch_size=c.batch_size,
        max_new_tokens=c.max_new_tokens,
        temperature=c.temperature,
        top_p=c.top_p,
        seed=c.seed,
        cache_dir=c.model_cache,  # None: the machine user's cache, shared by every project
    )
    return replace(base, **overrides)


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
        recommended.check_brief(settings, brief)
        problems = fallback_problems(brief)
        if problems:
            raise ContentError(
                f"campaign {brief.name}: its own copy (seeds in its templates) would be blocked, so it has "
                "nothing to fall back on when the model's candidates fail: "
                + "; ".join(problems)
                + ". Shorten or reword the brief's seeds (seeds.subject, .headline, .body, .sms, ...), "
                "or override templates.<part> in the brief"
            )
    wh = Warehouse.from_settings(settings)
    with wh.connect("content plan") as con:
        ensure_tables(con)
        scoring_run, as_of = latest_scoring_run(con)
        targets = {b.name: audiences(con, b, scoring_run) for b in briefs}
        contexts = {b.name: draft_context(con, settings, b, run_id, scoring_run, as_of) for b in briefs}
    started = time.perf_counter()
    if lm is None:
        lm = load_generator(settings)
    if meaning is None:
        from models.content.meaning import default_meaning_model

        meaning = default_meaning_model()
    load_s = time.perf_counter() - started
    params = draft_params(settings)
    shots = brand_shots(settings)  # few-shot examples for the short slots, from the brand corpus
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
        context = contexts[brief.name]
        retired = context["retired_variants"]
        started = time.perf_counter()
        before = dict(lm.stats()) if hasattr(lm, "stats") else {}
        drafts, prompts = draft_brief(
            brief,
            [{"segment": g.segment, "top_drivers": g.top_drivers} for g in groups],
            lm,
            meaning,
            params,
            context,
            retired,
            corpus=shots,
        )
        seconds = time.perf_counter() - started
        after = dict(lm.stats()) if hasattr(lm, "stats") else {}
        _store(wh, run_id, scoring_run, brief, drafts, prompts)
        checkpoint("content.drafted")  # this brief's drafts committed, the next briefs' not yet
        slots = [sl for d in drafts if d.channel == brief.channels[0] for sl in d.slots.values()]
        summary["campaigns"].append(
            {
                "campaign": brief.name,
                **({"retired_variants": retired} if retired else {}),
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
    summary["approved_by_policy"] = tiers.approve_by_policy(settings, run_id)  # low-tier briefs' own copy
    return summary


def draft_context(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    brief: Brief,
    run_id: str,
    scoring_run: str,
    as_of: str,
) -> dict[str, Any]:
    """What every draft of ``brief`` records about where it came from (its provenance's context):
    the runs, the variants retired by a measured experiment, and the segment definition it targets."""
    thresholds = run_thresholds(con, settings, scoring_run) if scoring_run else {}
    models = dict(
        con.execute(
            "select segment, model_version from ml.segments where run_id = ?", [scoring_run]
        ).fetchall()
    )
    return {
        "run_id": run_id,
        "scoring_run_id": scoring_run,
        "as_of": as_of,
        "retired_variants": retired_variants(con, brief.name),
        "segment_definition": {
            "rule": brief.audience.rule,
            "segments": list(brief.audience.segments),
            "thresholds": {**thresholds, "new_days": settings.segment.new_days},
            "scoring_model": {g: models.get(g) for g in brief.audience.segments},
        },
    }


def draft_id(run_id: str, campaign: str, segment: str, channel: str, variant: str, sha: str) -> str:
    return (
        "d"
        + hashlib.sha256(f"{run_id}|{campaign}|{segment}|{channel}|{variant}|{sha}".encode()).hexdigest()[:10]
    )


def _store(
    wh: Warehouse, run_id: str, scoring_run: str, brief: Brief, drafts: list[Any], prompts: list[Any]
) -> None:
    with wh.connect("content write") as con:
        ensure_tables(con)
        con.execute("begin transaction")
        try:
            write_drafts(con, run_id, scoring_run, brief, drafts, prompts)
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise


def write_drafts(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    scoring_run: str,
    brief: Brief,
    drafts: list[Any],
    prompts: list[Any],
) -> list[str]:
    """Store one brief's drafts of ``run_id`` and the prompts sent for them, in the caller's
    transaction; returns the drafts' ids in order. Blocked drafts are stored too, with their failed
    checks, and are never offered for approval."""
    now = utc_now()
    ids = []
    # a rerun of the same run replaces what nobody has decided on yet
    con.execute(
        "delete from content.drafts where run_id = ? and campaign = ? "
        "and status in ('pending', 'blocked') "
        "and draft_id not in (select draft_id from content.decisions)",
        [run_id, brief.name],
    )
    con.execute("delete from content.prompts where run_id = ? and campaign = ?", [run_id, brief.name])
    # and what a run that stopped before its drafting finished left of this campaign
    supersede_unfinished(con, run_id, brief.name)
    con.executemany(
        "insert into content.prompts values (?, ?, ?, ?, ?, ?, ?, ?)",
        [[run_id, brief.name, p.segment, p.slot, p.sha256(), p.system, p.sent(), now] for p in prompts],
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
        ids.append(did)
    return ids
