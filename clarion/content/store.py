"""Drafts as stored: the content tables, and reading drafts back (shared by drafting, review and export)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import duckdb

from clarion.config import Settings
from clarion.errors import ClarionError
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
    return [draft_row(r) for r in rows]


def get_draft(con: duckdb.DuckDBPyConnection, did: str) -> dict[str, Any]:
    row = None
    if relation_exists(con, "content", "drafts"):
        row = con.execute(
            f"select {', '.join(DRAFT_COLUMNS)} from content.drafts where draft_id = ?", [did]
        ).fetchone()
    if row is None:
        raise ContentError(f"no draft {did!r}: `clarion drafts list` shows the drafts and their ids")
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
