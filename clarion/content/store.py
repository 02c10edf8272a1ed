"""Drafts as stored: the content tables, and reading drafts back (shared by drafting, review and export)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import duckdb

from clarion.config import Settings
from clarion.errors import ClarionError
from clarion.runs import CONTENT_UNFINISHED
from clarion.warehouse import Warehouse, relation_exists

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
    create table if not exists content.assignments (
        export_id varchar, campaign varchar, contact_id bigint, arm varchar, variant varchar,
        assigned_at timestamptz
    )
    """,
    """
    create table if not exists audit.erasures (
        reference varchar, requested_at timestamptz, requested_by varchar, rows_removed bigint,
        files_changed bigint, compacted boolean
    )
    """,
)
RULE_SEGMENT = "rule"  # the segment label of drafts for a brief whose audience is a rule


class ContentError(ClarionError):
    pass


class DraftNotFoundError(ContentError):
    """No draft has the id asked for."""

    http_status = 404


class DraftConflictError(ContentError):
    """The draft is not in a state that takes the decision: its content changed since the caller
    read it, it was decided on already, or it failed blocking checks."""

    http_status = 409


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    for ddl in CONTENT_DDL:
        con.execute(ddl)
    from clarion.subject.erase import ensure_erasures

    ensure_erasures(con)  # an audit.erasures of raw ids (before suppression) moves to the list


def utc_now() -> datetime:
    return datetime.now(UTC)


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


def draft_row(row: tuple) -> dict[str, Any]:
    d = dict(zip(DRAFT_COLUMNS, row, strict=True))
    for key in ("content", "checks", "provenance"):
        d[key] = json.loads(d[key]) if d[key] else None
    for key in ("created_at", "updated_at"):
        d[key] = str(d[key])
    return d


def list_drafts(
    settings: Settings, status: str | None = None, campaign: str | None = None, run_id: str | None = None
) -> list[dict[str, Any]]:
    """The drafts waiting for or past review: those of content runs that finished drafting (a run
    killed half-way holds some campaigns' drafts and not others, so none of them is offered). With
    ``run_id``, that run's drafts whether it finished or not (the stage's own report of what it wrote)."""
    with Warehouse.from_settings(settings).read() as con:
        if not relation_exists(con, "content", "drafts"):
            return []
        rows = con.execute(
            f"select {', '.join(DRAFT_COLUMNS)} from content.drafts "
            "where (? is null or status = ?) and (? is null or campaign = ?) "
            f"and (run_id = ? or (? is null and run_id not in ({CONTENT_UNFINISHED}))) "
            "order by created_at desc, campaign, segment, channel, variant",
            [status, status, campaign, campaign, run_id, run_id],
        ).fetchall()
    return [draft_row(r) for r in rows]


def unfinished_run(con: duckdb.DuckDBPyConnection, run_id: str) -> bool:
    """Whether ``run_id`` is a run whose drafting did not finish (``runs.CONTENT_UNFINISHED``)."""
    return bool(
        con.execute(f"select count(*) from ({CONTENT_UNFINISHED}) where run_id = ?", [run_id]).fetchone()[0]
    )


def supersede_unfinished(con: duckdb.DuckDBPyConnection, run_id: str, campaign: str) -> int:
    """Before ``run_id`` stores a campaign's drafts: the drafts of that campaign that other runs
    left when they stopped before their drafting finished (killed, failed), and that nobody decided
    on, are removed with their prompts, so the new run's drafts are the campaign's only undecided
    ones, as after a clean run. Drafts with a decision stay on record. Returns how many went."""
    gone = con.execute(
        "delete from content.drafts where campaign = ? and run_id <> ? "
        f"and run_id in ({CONTENT_UNFINISHED}) and draft_id not in (select draft_id from content.decisions) "
        "returning draft_id",
        [campaign, run_id],
    ).fetchall()
    con.execute(
        "delete from content.prompts p where campaign = ? and run_id <> ? "
        f"and run_id in ({CONTENT_UNFINISHED}) "
        "and not exists (select 1 from content.drafts d "
        "where d.run_id = p.run_id and d.campaign = p.campaign)",
        [campaign, run_id],
    )
    return len(gone)


def get_draft(con: duckdb.DuckDBPyConnection, did: str) -> dict[str, Any]:
    row = None
    if relation_exists(con, "content", "drafts"):
        row = con.execute(
            f"select {', '.join(DRAFT_COLUMNS)} from content.drafts where draft_id = ?", [did]
        ).fetchone()
    if row is None:
        raise DraftNotFoundError(f"no draft {did!r}: `clarion drafts list` shows the drafts and their ids")
    return draft_row(row)


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
