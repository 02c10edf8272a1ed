"""What the pages show, read from the read snapshot through the same functions the CLI and the report
use: `report.build.collect` (segments, drivers, charts), `segment.views.explanation` (one customer),
`content.store` (drafts), `content.export.held_back` (export eligibility), `results.load`.

Nothing here writes, and nothing reads the writer's warehouse file.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import duckdb

from clarion.api.reads import Reader
from clarion.api.web.pages import WebError
from clarion.content import export
from clarion.content.store import ContentError, get_draft, list_drafts, show_draft
from clarion.errors import ClarionError, NotFoundError
from clarion.privacy import pseudonym
from clarion.report import build, charts
from clarion.report.fmt import BLUE, label
from clarion.report.render import segment_chart
from clarion.results import ResultsError, load
from clarion.results.views import measured
from clarion.segment.views import explanation
from clarion.warehouse import Warehouse, relation_exists
from models.content.brief import Brief, BriefError, load_brief
from models.content.drafts import floor_words

PSEUDONYM = re.compile(r"^p_[0-9a-f]{16}$")
CONTACT_ID = re.compile(r"^[0-9]{1,18}$")
STATUSES = ("pending", "approved", "rejected", "blocked")

_overview_lock = threading.Lock()
_overview: dict[Path, dict[str, Any]] = {}  # snapshot file -> the report's figures (built once per snapshot)


def _inline(svg: str) -> str:
    """An SVG for inline use in HTML: HTML needs no namespace URI (pages name no other host)."""
    return svg.replace(' xmlns="http://www.w3.org/2000/svg"', "", 1)


# -- segments ---------------------------------------------------------------------------------------
def overview(reader: Reader) -> dict[str, Any]:
    """The report's figures for the latest scoring run of the current snapshot, and its charts."""
    path = reader.path
    with _overview_lock:
        if path in _overview:
            return _overview[path]
    with reader.pinned() as (settings, _):  # the file stays open even if a newer snapshot replaces it
        data = build.collect(settings)
    segments = data["segments"]
    data["charts"] = {
        "segments": _inline(segment_chart(segments)),
        "drivers": _inline(
            charts.hbars(
                [
                    (x["label"], x["mean_abs_shap"], f"{x['mean_abs_shap']:.3f}", BLUE)
                    for x in data["drivers"]
                ],
                "what moves the scores most (mean absolute SHAP, log-odds)",
                width=700,
                label_w=290,
            )
        ),
        "scores": _inline(
            charts.histogram(data["score_distribution"]["bins"], "customers by purchase probability")
        ),
    }
    with _overview_lock:
        _overview.clear()  # an older snapshot's figures are never shown again
        _overview[path] = data
    return data


# -- one customer -----------------------------------------------------------------------------------
def customer(reader: Reader, base: Any, *, by_pseudonym: str = "", by_contact_id: str = "") -> dict[str, Any]:
    """One customer's latest score, segment and reasons, by pseudonym or by contact id. The result
    carries the contact id; the page shows it only to roles with read:contact_id. ``base``: the
    app's settings (the writer's warehouse, for the one-time pseudonym key)."""
    pz = _pseudonymizer(reader, base)
    # one snapshot for the lookup and the explanation: a snapshot published meanwhile (and the old
    # file deleted) does not pull the file from under the explanation
    with reader.pinned() as (settings, cur):
        if not relation_exists(cur, "ml", "customer_scores"):
            raise NotFoundError("no customer has been scored yet: run the pipeline once")
        if by_contact_id:
            if not CONTACT_ID.match(by_contact_id):
                raise ClarionError("contact id: give the CRM's contact id, digits only")
            contact_id = int(by_contact_id)
            scored = cur.execute(
                "select 1 from ml.customer_scores where contact_id = ? limit 1", [contact_id]
            ).fetchone()
        else:
            if not PSEUDONYM.match(by_pseudonym):
                raise ClarionError(
                    "pseudonym: give p_ followed by 16 hexadecimal digits, as reports and packs print it "
                    "(for example p_3f9a0c1b2d4e5f60)"
                )
            expr, params = pz.sql("contact_id")
            scored = cur.execute(
                f"select contact_id from (select distinct contact_id from ml.customer_scores) "
                f"where {expr} = ? limit 1",
                [*params, by_pseudonym],
            ).fetchone()
            contact_id = scored[0] if scored else None
        if scored is None:
            asked = f"the contact id {by_contact_id}" if by_contact_id else f"the pseudonym {by_pseudonym}"
            raise NotFoundError(
                f"no scored customer has {asked}: check it (a customer who joined after the last scoring "
                "day, objected to profiling or was erased has no score)"
            )
        found = explanation(settings, contact_id)
    found["pseudonym"] = pz(contact_id)
    return found


def _pseudonymizer(reader: Reader, base: Any) -> pseudonym.Pseudonymizer:
    """The project's pseudonymizer. Before any pseudonym was ever issued the snapshot holds no key
    (and cannot make one: it is read-only): the writer's warehouse makes it once, under the writer
    lock, and publishes a snapshot holding it."""
    try:
        with reader.pinned() as (settings, cur):
            return pseudonym.for_settings(settings, cur)
    except duckdb.Error:
        with Warehouse.from_settings(base).writing("pseudonym key", base.api.write_wait_seconds):
            made = pseudonym.for_settings(base)
        reader.invalidate()
        return made


# -- drafts -----------------------------------------------------------------------------------------
def queue(reader: Reader, status: str) -> list[dict[str, Any]]:
    with reader.pinned() as (settings, _):
        return list_drafts(settings, status=None if status == "all" else status)


def draft(reader: Reader, draft_id: str) -> dict[str, Any]:
    """A draft with its decisions, its brief (as it is now; None when unreadable, with why), and
    why the export would hold it back (None: it would go out)."""
    with reader.pinned() as (settings, cur):
        return _draft(settings, cur, draft_id)


def _draft(settings: Any, cur: duckdb.DuckDBPyConnection, draft_id: str) -> dict[str, Any]:
    try:
        d = show_draft(settings, draft_id)
    except ContentError as exc:
        raise WebError(404, "No such draft", str(exc), "Pick a draft in the queue.", "/drafts") from None
    path = settings.content.briefs / f"{d['campaign']}.yaml"
    brief: Brief | None = None
    brief_problem = ""
    try:
        brief = load_brief(path)
    except BriefError as exc:
        brief_problem = f"the brief {path.name} cannot be read: {exc}"
    drafted = ((d["provenance"] or {}).get("brief") or {}).get("sha256")
    if brief is not None and drafted and drafted != brief.sha256():
        brief_problem = (
            f"the brief {path.name} changed since this draft was written: the draft cannot be approved; "
            "draft the campaign again"
        )
    held = export.held_back(cur, brief, get_draft(cur, draft_id)) if _tiers_ready(cur) else "not approved"
    return {"draft": d, "brief": brief, "brief_problem": brief_problem, "held_back": held}


def _tiers_ready(cur: duckdb.DuckDBPyConnection) -> bool:
    """Whether content.decisions has the principal columns the risk tiers read (a read-only snapshot
    cannot add them; a warehouse whose decisions predate them has no approval to count anyway)."""
    if not relation_exists(cur, "content", "decisions"):
        return False
    cols = {r[0] for r in cur.execute("describe content.decisions").fetchall()}
    return {"os_user", "principal"} <= cols


def brief_rows(brief: Brief) -> list[tuple[str, str]]:
    """The brief as the reviewer reads it beside the draft: (label, text)."""
    audience = ", ".join(label(s) for s in brief.audience.segments) or (brief.audience.rule or "")
    offer = brief.offer
    rows = [
        ("Goal", brief.goal),
        ("Audience", audience),
        ("Channels", ", ".join(brief.channels)),
        ("Tone", brief.tone),
        ("Offer", f"{offer.discount} with code {offer.code}, until {offer.expiry}"),
        ("Landing page", offer.url),
        ("Conditions", offer.conditions or "none"),
        ("Disclaimer", brief.disclaimer or "none"),
        *(
            (f"{slot.capitalize() if slot != 'cta' else 'CTA'} seed", brief.seeds.seed(slot))
            for slot in brief.slots()
        ),
        ("Variants", str(brief.variants)),
        ("Risk tier", brief.risk_tier),
        ("Approvers", ", ".join(brief.approvers)),
        ("AI disclosure", "added to AI-written copy" if brief.disclose_ai else "off"),
    ]
    if brief.avoid.words or brief.avoid.claims:
        rows.append(("Avoid", ", ".join([*brief.avoid.words, *brief.avoid.claims])))
    return rows


def provenance_rows(d: dict[str, Any]) -> list[tuple[str, str]]:
    """Where the draft came from, as `clarion drafts show` prints it (no prompt text)."""
    p = d["provenance"] or {}
    model, tpl, brief, gen = (p.get(k) or {} for k in ("model", "prompt_template", "brief", "generation"))
    rows = [
        ("Model", f"{model.get('name')} (weights sha256 {str(model.get('weights_sha256'))[:16]})"),
        ("Prompt template", f"{tpl.get('version')} ({str(tpl.get('sha256'))[:16]})"),
        ("Brief", f"{brief.get('name')} (sha256 {str(brief.get('sha256'))[:16]})"),
        ("Content run", str(p.get("run_id"))),
        ("Segments of run", f"{p.get('scoring_run_id')} as of {p.get('as_of')}"),
        (
            "Generation",
            f"seed {gen.get('seed')}, temperature {gen.get('temperature')}, top_p {gen.get('top_p')}, "
            f"{gen.get('candidates_per_slot')} candidates per slot, "
            f"meaning >= {floor_words(gen.get('min_meaning'))}",
        ),
    ]
    for name, slot in (p.get("slots") or {}).items():
        origin = "the brief (fallback)" if slot["fallback"] else f"the model, meaning {slot['meaning']:.2f}"
        passed = f"{slot.get('usable', slot.get('passing'))} of {slot['candidates']} candidates usable"
        rows.append((f"Slot {name}", f"{origin}; {passed}"))
    for edit in p.get("edits") or []:
        rows.append(("Edited", f"{edit.get('part')} by {edit.get('by')} at {edit.get('at')}"))
    return rows


# -- results ----------------------------------------------------------------------------------------
def results(reader: Reader) -> dict[str, Any] | None:
    """The latest campaign results as `clarion results` shows them (the campaigns with a control group
    or several variants; ``left_out`` counts the others), or None when nothing was measured yet."""
    try:
        with reader.pinned() as (settings, _):
            summary = load(settings)
    except ResultsError:
        return None
    if not summary["campaigns"]:
        return None
    shown = [c for c in summary["campaigns"] if measured(c)]
    return summary | {"campaigns": shown, "left_out": len(summary["campaigns"]) - len(shown)}
