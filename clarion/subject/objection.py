"""Art. 21: a person objects to profiling for direct marketing. From the next run on they are not
scored, not in training data, not segmented and so in no audience (content, next best action,
triggers all start from the scores).

An objection is kept in ``privacy.objections`` and applied like a correction: the extract sets
``raw.contacts.marketing_objection = true`` (see :func:`clarion.subject.correct.apply_overlay`), so
``marts.dim_customers`` says so. Who counts as an objector for profiling: a contact the CRM flags
(``marketing_objection``) or one Clarion recorded, whichever comes first (a recorded objection
counts even before the next extract has applied it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import duckdb

from clarion.subject.find import ensure_tables, find, record_request, requester
from clarion.warehouse import relation_exists

NOT_PROFILED_OBJECTION = "objection"  # the stage summary's "not profiled" reason


def objectors_sql(con: duckdb.DuckDBPyConnection) -> str:
    """A SELECT of the contact ids who object (empty when the warehouse knows of none)."""
    parts = []
    if relation_exists(con, "raw", "contacts"):
        parts.append("select contact_id from raw.contacts where marketing_objection")
    if relation_exists(con, "privacy", "objections"):
        parts.append("select contact_id from privacy.objections")
    return " union ".join(parts) if parts else "select cast(null as bigint) as contact_id where false"


def profiled_filter(con: duckdb.DuckDBPyConnection, alias: str) -> str:
    """A WHERE condition keeping only the customers who may be profiled (``alias.contact_id``)."""
    objectors = f"select contact_id from ({objectors_sql(con)}) where contact_id is not null"
    return f"{alias}.contact_id not in ({objectors})"


def not_profiled(con: duckdb.DuckDBPyConnection, relation: str) -> int:
    """How many customers of ``relation`` (with a contact_id) an objection keeps out of profiling."""
    (n,) = con.execute(
        f"select count(*) from {relation} as r where not ({profiled_filter(con, 'r')})"
    ).fetchone()
    return int(n)


def record(settings: Any, who: str, reference: str | None = None, actor: str | None = None) -> dict[str, Any]:
    """Keep an objection (once per person; a repeat is acknowledged, not duplicated) and audit it by
    pseudonym with counts only. ``actor``: who asked (the API's principal; default the OS user)."""
    from clarion.audit.events import SUBJECT_OBJECTED
    from clarion.privacy.pseudonym import for_settings
    from clarion.warehouse import Warehouse

    with Warehouse.from_settings(settings).connect("subject object") as con:
        subject = find(con, who)
        ensure_tables(con)
        pseudonym = for_settings(settings, con)(subject.contact_id)
        (before,) = con.execute(
            "select count(*) from privacy.objections where contact_id = ?", [subject.contact_id]
        ).fetchone()

        def write() -> dict[str, int]:
            if not before:
                con.execute(
                    "insert into privacy.objections values (?, ?, ?, ?)",
                    [subject.contact_id, reference, datetime.now(UTC), requester(actor)],
                )
            return {"objections": 1, "already_recorded": int(before)}

        record_request(settings, con, SUBJECT_OBJECTED, pseudonym, write, actor)
    return {
        "contact_id": subject.contact_id,
        "pseudonym": pseudonym,
        "looked_up": subject.looked_up,
        "already_recorded": bool(before),
        "reference": reference,
        "takes_effect": "next run: not scored, not in training data, not segmented, in no audience",
    }
