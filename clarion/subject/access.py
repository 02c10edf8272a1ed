"""Art. 15: everything Clarion holds about one person, for that person (JSON for a machine, HTML for
a reader who is not an engineer).

What is "held" is found, not listed by hand: every table of the schemas below with a ``contact_id``
column is read for the person, so a table a later release adds is in the report without a change
here. Beside those: order lines (through the person's orders), quarantined rows that name them (by
key, by a ``contact_id`` inside the rejected record, or by their e-mail anywhere in it), the drafts
of the campaigns and segments they were selected for, the exports that included them, and the runs
that touched them. This is the one output that shows a person's own data: it goes to the file the
caller names or to stdout, never to var/; the audit log gets the pseudonym and counts only.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from clarion.warehouse import relation_exists

SCHEMAS = ("raw", "quarantine", "marts", "ml", "content", "privacy", "audit")
# what each part is called for a reader; tables not named here appear under their schema.table name
TITLES = {
    "raw.contacts": "Your contact record",
    "raw.orders": "Your orders",
    "raw.orders_history": "Earlier versions of your orders",
    "raw.order_items": "Lines of your orders",
    "raw.email_events": "Marketing e-mails sent to you and what you did with them",
    "raw.support_tickets": "Your customer-service tickets",
    "raw.support_tickets_history": "Earlier versions of your tickets",
    "raw.consents": "Your consents, opt-outs and objections as the CRM recorded them",
    "privacy.corrections": "Corrections you asked for",
    "privacy.objections": "Objections to profiling you made",
    "marts.dim_customers": "How we describe you as a customer",
    "marts.customer_features": "The figures our model reads about you (latest day)",
    "ml.customer_scores": "Every score our model gave you, with its reasons and model version",
    "ml.next_best_action": "Next-best-action decisions about you",
    "ml.trigger_hits": "Campaign triggers that found you",
    "ml.customer_uplift": "Estimated effect of campaigns on you (uplift)",
    "ml.recommendations": "Products we would recommend to you, and why (every run)",
    "ml.ticket_topics": "What your customer-service tickets were about and their tone, as we read them",
    "content.assignments": "Campaigns and exports that included you",
    "audit.erasures": "Erasure requests",
}
PARTS = {
    "crm": ("Data from the CRM", ("raw",)),
    "quarantine": ("Rows we rejected on import that name you", ("quarantine",)),
    "rights": ("Your requests", ("privacy", "audit")),
    "profile": ("Your customer profile", ("marts",)),
    "decisions": ("Scores, segments and decisions", ("ml",)),
    "content": ("Campaign content", ("content",)),
}
SKIP = {
    ("marts", "customer_labels"),
    ("marts", "fct_campaign_exposures"),
    ("marts", "fct_campaign_exposures__inputs"),  # a hash of the rows shown, for incremental builds
    ("marts", "customer_features__inputs"),  # likewise
}  # derived again from the rows shown


def gather(con: duckdb.DuckDBPyConnection, contact_id: int, pseudonym: str) -> dict[str, Any]:
    """The report's data: {"person", "parts": {part: [{"table", "title", "rows"}]}, "runs", "counts"}."""
    tables: dict[str, list[dict[str, Any]]] = {}
    for schema, table in _tables_with_contact_id(con):
        if (schema, table) in SKIP or schema == "quarantine":
            continue
        sql = f'select * from "{schema}"."{table}" where contact_id = ?'
        if (schema, table) == ("ml", "recommendations") and relation_exists(con, "raw", "products"):
            sql = (  # the product's name beside its id: a person cannot read an id
                "select r.*, p.name as product_name from ml.recommendations r left join (select product_id, "
                "arg_max(name, updated_at) as name from raw.products group by 1) p using (product_id) "
                "where r.contact_id = ? order by r.created_at, r.rank"
            )
        if (schema, table) == ("marts", "customer_features"):
            sql += " and as_of = (select max(as_of) from marts.customer_features where contact_id = $1)"
            sql = sql.replace("?", "$1")
        order = None if " order by " in sql else _order_column(con, schema, table)
        rows = _rows(con, sql + (f' order by "{order}"' if order else ""), [contact_id])
        if rows:
            tables[f"{schema}.{table}"] = rows
    order_ids = [r["order_id"] for r in tables.get("raw.orders", []) + tables.get("raw.orders_history", [])]
    if order_ids and relation_exists(con, "raw", "order_items"):
        items = _rows(
            con,
            "select * from raw.order_items where order_id in (select unnest(?)) "
            "order by order_id, order_item_id",
            [sorted(set(order_ids))],
        )
        if items:
            tables["raw.order_items"] = items
    email = next((r.get("email") for r in tables.get("raw.contacts", []) if r.get("email")), None)
    tables.update(_quarantine(con, contact_id, email, tables))
    tables.update(_drafts(con, tables))
    runs = _runs(con, tables)
    parts: dict[str, Any] = {}
    for part, (title, schemas) in PARTS.items():
        listed = [
            {"table": name, "title": TITLES.get(name, name), "rows": rows}
            for name, rows in tables.items()
            if name.split(".")[0] in schemas
        ]
        parts[part] = {"title": title, "tables": listed}
    return {
        "person": {"contact_id": contact_id, "pseudonym": pseudonym},
        "generated_at": datetime.now(UTC).isoformat(),
        "parts": parts,
        "runs": runs,
        "counts": {name: len(rows) for name, rows in tables.items()},
    }


def _tables_with_contact_id(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    listed = ", ".join(f"'{s}'" for s in SCHEMAS)
    return con.execute(
        f"""
        select c.table_schema, c.table_name from information_schema.columns c
        join information_schema.tables t using (table_schema, table_name)
        where c.column_name = 'contact_id' and c.table_schema in ({listed})
        order by list_position([{listed}], c.table_schema), c.table_name
        """
    ).fetchall()


def _order_column(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> str | None:
    cols = [r[0] for r in con.execute(f'describe "{schema}"."{table}"').fetchall()]
    for name in (
        "scored_at",
        "decided_at",
        "detected_at",
        "assigned_at",
        "requested_at",
        "ordered_at",
        "occurred_at",
        "created_at",
        "recorded_at",
        "as_of",
    ):
        if name in cols:
            return name
    return None


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    rel = con.execute(sql, params)
    names = [d[0] for d in rel.description]
    return [dict(zip(names, row, strict=True)) for row in rel.fetchall()]


def _quarantine(
    con: duckdb.DuckDBPyConnection, contact_id: int, email: str | None, held: dict[str, list]
) -> dict[str, list[dict[str, Any]]]:
    """Rejected rows that name the person: a contact row by its key, a child row by the contact_id
    inside its record (or the key of one of their orders, for order lines), any row by their e-mail."""
    out: dict[str, list[dict[str, Any]]] = {}
    keys = {
        "orders": [r["order_id"] for r in held.get("raw.orders", [])],
        "support_tickets": [r["ticket_id"] for r in held.get("raw.support_tickets", [])],
        "email_events": [r["event_id"] for r in held.get("raw.email_events", [])],
        "consents": [r["consent_id"] for r in held.get("raw.consents", [])],
    }
    tables = [
        r[0]
        for r in con.execute(
            "select table_name from duckdb_tables() where schema_name = 'quarantine' order by 1"
        ).fetchall()
    ]
    needle = (email or "").strip().lower()
    for table in tables:
        cols = {r[0] for r in con.execute(f'describe quarantine."{table}"').fetchall()}
        if table == "field_findings":
            conds = ["(entity = 'contacts' and trim(key) = $id)"]
            conds += [
                f"(entity = '{e}' and trim(key) in (select cast(unnest($k_{e}) as varchar)))" for e in keys
            ]
            params: dict[str, Any] = {"id": str(contact_id), **{f"k_{e}": k for e, k in keys.items()}}
        elif "record" in cols:
            conds = ["trim(json_extract_string(record, '$.contact_id')) = $id"]
            if table == "contacts":
                conds.append("trim(key) = $id")
            if table == "order_items":
                conds.append(
                    "trim(json_extract_string(record, '$.order_id')) in (select cast(unnest($o) as varchar))"
                )
            params = {"id": str(contact_id)}
            if table == "order_items":
                params["o"] = keys["orders"]
            if needle:
                conds.append("contains(lower(record), $e)")
                params["e"] = needle
        else:
            continue
        rows = _rows(con, f'select * from quarantine."{table}" where {" or ".join(conds)}', params)
        if rows:
            out[f"quarantine.{table}"] = rows
    return out


def _drafts(con: duckdb.DuckDBPyConnection, held: dict[str, list]) -> dict[str, list[dict[str, Any]]]:
    """Drafts of the segments they were scored into (per scoring run), and of the campaigns whose
    exports included them; each export with what it was (not the other recipients)."""
    out: dict[str, list[dict[str, Any]]] = {}
    scored = [(r["run_id"], r["segment"]) for r in held.get("ml.customer_scores", [])]
    assigned = held.get("content.assignments", [])
    if relation_exists(con, "content", "drafts") and (scored or assigned):
        rows = _rows(
            con,
            """
            select draft_id, campaign, segment, channel, variant, status, scoring_run_id, created_at
            from content.drafts
            where (scoring_run_id, segment) in (select unnest($runs), unnest($segments))
               or campaign in (select unnest($campaigns))
            order by created_at, draft_id
            """,
            {
                "runs": [r for r, _ in scored],
                "segments": [s for _, s in scored],
                "campaigns": sorted({a["campaign"] for a in assigned}),
            },
        )
        if rows:
            out["content.drafts"] = rows
    if assigned and relation_exists(con, "content", "exports"):
        rows = _rows(
            con,
            "select export_id, campaign, channel, recipients, exported_at from content.exports "
            "where export_id in (select unnest(?)) order by exported_at",
            [sorted({a["export_id"] for a in assigned})],
        )
        if rows:
            out["content.exports"] = rows
    return out


def _runs(con: duckdb.DuckDBPyConnection, held: dict[str, list]) -> list[dict[str, Any]]:
    """The runs that touched them: those that loaded their rows (load ids), scored, decided or
    exported for them, or rejected a row naming them."""
    run_ids: set[str] = set()
    load_ids: set[str] = set()
    for rows in held.values():
        for r in rows:
            for key in ("run_id", "scoring_run_id", "nba_run_id"):
                if r.get(key):
                    run_ids.add(str(r[key]))
            for key in ("_load_id", "load_id"):
                if r.get(key):
                    load_ids.add(str(r[key]))
    if load_ids and relation_exists(con, "audit", "extract_loads"):
        run_ids |= {
            r[0]
            for r in con.execute(
                "select distinct run_id from audit.extract_loads where load_id in (select unnest(?))",
                [sorted(load_ids)],
            ).fetchall()
            if r[0]
        }
    if not run_ids or not relation_exists(con, "audit", "runs"):
        return []
    return _rows(
        con,
        "select run_id, command, status, started_at, finished_at from audit.runs "
        "where run_id in (select unnest(?)) order by started_at",
        [sorted(run_ids)],
    )


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value != value:
        return None
    return value


def as_json(report: dict[str, Any]) -> str:
    return json.dumps(_plain(report), indent=2, sort_keys=False, default=str)


def as_html(report: dict[str, Any]) -> str:
    """A page for the person: headings, a sentence per part, tables; every value escaped."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["cell"] = _cell
    return env.get_template("access.html").render(report=_plain(report))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list) and value and isinstance(value[0], dict) and "text" in value[0]:
        return "; ".join(str(v.get("text") or "") for v in value)  # reasons: their sentences
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value)


def produce(
    settings: Any, who: str, fmt: str = "json", actor: str | None = None
) -> tuple[str, dict[str, Any]]:
    """The access report as text in ``fmt`` (json|html) and its counts; audits it by pseudonym.
    ``actor``: who asked (the API's principal; default the OS user)."""
    from clarion.audit import AuditLog
    from clarion.audit.events import SUBJECT_ACCESSED
    from clarion.privacy.pseudonym import for_settings
    from clarion.subject.find import find
    from clarion.warehouse import Warehouse

    with Warehouse.from_settings(settings).connect("subject access") as con:
        subject = find(con, who)
        pseudonym = for_settings(settings, con)(subject.contact_id)
        report = gather(con, subject.contact_id, pseudonym)
        report["person"]["looked_up_by"] = subject.looked_up
        counts = report["counts"]
        AuditLog.for_settings(settings).record(
            con,
            SUBJECT_ACCESSED,
            pseudonym,
            actor=actor,
            details={
                "format": fmt,
                "tables": len(counts),
                "rows": sum(counts.values()),
                "runs": len(report["runs"]),
            },
        )
    return (as_html(report) if fmt == "html" else as_json(report)), report
