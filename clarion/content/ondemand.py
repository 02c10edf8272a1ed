"""On-demand drafts: one brief, one audience, one channel, drafted while someone waits (the API).

The same path as the batch stage (``runner.generate``), narrowed to one segment, one channel and
one variant: the segment's aggregated profile grounds the prompts (never a customer's data), the
local model writes the channel's slots (models/content/slots.py), the same guardrails check every
candidate and the whole copy, and the draft is stored with its provenance in ``content.drafts`` as
``pending`` (or ``blocked``, with its failed checks), in a content run of its own in ``audit.runs``,
so approve, reject, edit and export treat it exactly like a batch draft.

What makes it fast enough to wait for: the models are loaded once per process and kept warm
(`Drafter`), all its slots are generated in one ``generate`` call, with fewer candidates and shorter
slots than the batch stage (``content.on_demand_candidates`` / ``on_demand_max_new_tokens``).
One generation runs at a time (a lock): two at once would only share the same cores.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import duckdb

from clarion import audit, runs, snapshot
from clarion.config import Settings
from clarion.content.corpus import brand_shots
from clarion.content.runner import (
    draft_context,
    draft_params,
    latest_scoring_run,
    load_generator,
    write_drafts,
)
from clarion.content.store import RULE_SEGMENT, ensure_tables
from clarion.content.target import OnDemandError, resolve_target
from clarion.oversight import tiers
from clarion.warehouse import Warehouse
from models.content.brief import Brief, BriefError, load_briefs, validate_brief
from models.content.drafts import AI_DISCLOSURE, draft_brief

log = logging.getLogger(__name__)

__all__ = ["COMMAND", "Drafter", "OnDemandError", "reading", "resolve_brief"]

COMMAND = "draft on-demand"  # audit.runs.command of an on-demand draft's run (runs.ON_DEMAND_RUNS)


class Drafter:
    """The loaded language model and meaning model of one process, kept warm between drafts.

    ``settings`` choose the models (content.source, device, dtype); each `draft` call takes the
    project settings it drafts for (the writer's warehouse, never a read snapshot's copy)."""

    def __init__(self, settings: Settings, lm: Any = None, meaning: Any = None) -> None:
        self.settings = settings
        self._lm = lm
        self._meaning = meaning
        self._lock = threading.Lock()  # one generation at a time: they would share the same cores
        self._shots: dict[str, list[tuple[str, ...]]] | None = None  # the brand corpus, read once
        self.load_seconds: float | None = None

    def warm(self) -> float:
        """Load both models (if not yet) and run one short generation, so the first request does
        not pay for kernels' first use; returns the seconds it took."""
        started = time.perf_counter()
        with self._lock:
            lm, meaning = self._models()
            lm.generate([lm.chat_prompt("Reply with one word.", "Say hello.")], max_new_tokens=2)
            meaning.similarity(["hello"], "hi")
        return time.perf_counter() - started

    def _models(self) -> tuple[Any, Any]:
        if self._shots is None:
            self._shots = brand_shots(self.settings)
        if self._lm is None or self._meaning is None:
            started = time.perf_counter()
            if self._lm is None:
                self._lm = load_generator(self.settings)
            if self._meaning is None:
                from models.content.meaning import default_meaning_model

                self._meaning = default_meaning_model()
            self.load_seconds = time.perf_counter() - started
        return self._lm, self._meaning

    def draft(
        self,
        settings: Settings,
        *,
        brief: str | dict[str, Any],
        segment: str | None = None,
        pseudonym: str | None = None,
        channel: str,
        by: str,
        wait_seconds: float | None = None,
    ) -> dict[str, Any]:
        """One checked draft for ``brief`` (a campaign name, or a brief document validated as brief
        files are) to ``segment`` or to the segment of the customer ``pseudonym`` names, on
        ``channel``; stored as pending (or blocked) in a content run of its own. ``by`` is who
        asked (recorded in the audit log). The store waits ``wait_seconds`` at most for the writer
        lock (content.on_demand_wait_seconds by default), else WarehouseBusyError."""
        started = time.perf_counter()
        if not by or not by.strip():
            raise OnDemandError("by", "say who asks for the draft (a principal or user name)")
        the_brief, inline = resolve_brief(settings, brief)
        if channel not in the_brief.channels:
            raise OnDemandError(
                "channel",
                f"campaign {the_brief.name} is written for {list(the_brief.channels)}, not {channel!r}: "
                "ask for one of those channels",
            )
        run_id = runs.new_run_id()
        with reading(settings) as con:
            scoring_run, as_of = latest_scoring_run(con)
            target = resolve_target(con, settings, the_brief, scoring_run, segment, pseudonym, channel)
            context = draft_context(con, settings, the_brief, run_id, scoring_run, as_of)
        read_s = time.perf_counter() - started
        context["on_demand"] = {
            "requested_by": by,
            "channel": channel,
            "target": target.describe(),
            "inline_brief": inline,
        }
        if inline:  # an inline brief has no file: review reads it from here (its sha256 is checked)
            context["brief_document"] = the_brief.model_dump(mode="json")
        c = settings.content
        params = dataclasses.replace(
            draft_params(settings),
            candidates=c.on_demand_candidates,
            max_new_tokens=c.on_demand_max_new_tokens,
            one_call=True,
        )
        waited = time.perf_counter()
        with self._lock:
            generating = time.perf_counter()
            lm, meaning = self._models()
            before = lm.stats()["generated_tokens"] if hasattr(lm, "stats") else 0
            drafts, prompts = draft_brief(
                the_brief,
                [{"segment": target.segment, "top_drivers": target.top_drivers}],
                lm,
                meaning,
                params,
                context,
                context["retired_variants"],
                channels=[channel],
                variants=1,
                corpus=self._shots,
            )
            tokens = (lm.stats()["generated_tokens"] if hasattr(lm, "stats") else 0) - before
            generate_s = time.perf_counter() - generating
        (made,) = drafts
        if target.rule:  # a rule audience is exported as the rule, as the batch stage stores it
            made.segment = RULE_SEGMENT
        stored = time.perf_counter()
        did = _store(settings, run_id, scoring_run, the_brief, made, prompts, by, wait_seconds)
        status = "blocked" if made.blocked else "pending"
        if status == "pending" and the_brief.risk_tier == "low":
            policy = tiers.approve_by_policy(settings, run_id)  # a low-tier brief's own copy, as in batch
            status = "approved" if policy.get(the_brief.name) else status
        store_s = time.perf_counter() - stored
        total = time.perf_counter() - started
        log.info(
            "on-demand draft %s for %s/%s/%s: %s in %.2f s (%d tokens)",
            did,
            the_brief.name,
            made.segment,
            channel,
            status,
            total,
            tokens,
        )
        return {
            "draft_id": did,
            "run_id": run_id,
            "scoring_run_id": scoring_run,
            "campaign": the_brief.name,
            "segment": made.segment,
            "channel": channel,
            "variant": made.variant,
            "status": status,
            "content": made.content,
            "content_sha256": made.content_sha256,
            "fallback": made.fallback,
            "ai_generated": made.ai_generated,
            "ai_label": AI_DISCLOSURE if made.ai_generated else None,
            "checks": made.checks.to_json(),
            "provenance": {**made.provenance, "draft_id": did},
            "target": target.describe(),
            "timings": {
                "read_s": round(read_s, 3),
                "queued_s": round(generating - waited, 3),
                "generate_s": round(generate_s, 3),
                "store_s": round(store_s, 3),
                "total_s": round(total, 3),
                "tokens": int(tokens),
            },
        }


def resolve_brief(settings: Settings, brief: str | dict[str, Any]) -> tuple[Brief, bool]:
    """The brief named (a file in content.briefs) or given inline (validated as a file is), and
    whether it was inline. An inline brief that takes the name of a brief file must be that file's
    brief: approvals are bound to the brief's sha256, and the file is what review reads. A brief whose
    own copy fails its checks is not refused here (the batch stage refuses it): its draft is stored
    blocked, with the failed checks, which say what to change."""
    if isinstance(brief, str):
        try:
            (found,) = load_briefs(settings.content.briefs, (brief,))
        except BriefError as exc:
            raise OnDemandError("brief", str(exc), exc.problems or None) from None
        return found, False
    if not isinstance(brief, dict):
        raise OnDemandError("brief", "brief is a campaign name (a string) or a brief (an object)")
    try:
        parsed = validate_brief(brief, "the inline brief")
    except BriefError as exc:
        problems = [{"field": f"brief.{p['field']}", "message": p["message"]} for p in exc.problems]
        raise OnDemandError("brief", str(exc), problems) from None
    path = settings.content.briefs / f"{parsed.name}.yaml"
    if path.exists():
        try:
            (on_file,) = load_briefs(settings.content.briefs, (parsed.name,))
        except BriefError as exc:
            raise OnDemandError("brief.name", str(exc)) from None
        if on_file.sha256() != parsed.sha256():
            raise OnDemandError(
                "brief.name",
                f"campaign {parsed.name} exists as {path.name} with different content: send its name "
                "alone to draft for it, or give the inline brief a name of its own",
            )
        return on_file, False
    return parsed, True


@contextlib.contextmanager
def reading(settings: Settings) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection on the published read snapshot (clarion.snapshot) when there is one,
    so drafting never waits for a running pipeline; else on the warehouse itself."""
    path = snapshot.current(settings.warehouse.path)
    if path is None:
        with Warehouse.from_settings(settings).read() as con:
            yield con
        return
    w = settings.warehouse  # the API's Reader opens the snapshot with these: DuckDB wants one config
    con = Warehouse(path, threads=w.threads, memory_limit=w.memory_limit)._open(read_only=True)
    try:
        yield con
    finally:
        con.close()


def _store(
    settings: Settings,
    run_id: str,
    scoring_run: str,
    brief: Brief,
    draft: Any,
    prompts: list[Any],
    by: str,
    wait_seconds: float | None,
) -> str:
    """The draft, its prompts and its run, in one transaction: the run is recorded with its content
    stage done, so it is never an unfinished run that review and export pass over."""
    wait = settings.content.on_demand_wait_seconds if wait_seconds is None else wait_seconds
    wh = Warehouse.from_settings(settings)
    with wh.connect(COMMAND, wait_seconds=wait) as con:
        ensure_tables(con)
        con.execute("begin transaction")
        try:
            runs.start_run(con, run_id=run_id, command=COMMAND, config_hash=settings.fingerprint())
            (did,) = write_drafts(con, run_id, scoring_run, brief, [draft], prompts)
            summary = {
                "campaign": brief.name,
                "drafts": 1,
                "draft_id": did,
                "segment": draft.segment,
                "channel": draft.channel,
                "pending": int(not draft.blocked),
                "blocked": int(draft.blocked),
                "on_demand": True,
            }
            runs.finish_run(con, run_id, status="completed", stages={"content": summary})
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
        audit.AuditLog.for_settings(settings).record(  # after the commit: the log never names a lost run
            con,
            audit.RUN_FINISHED,
            run_id,
            actor=by,
            run_id=run_id,
            details={"status": "completed", "command": COMMAND, "stages": ["content"], **summary},
        )
    return did
