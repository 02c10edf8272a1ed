"""`clarion quarantine`: what was rejected, where it came from and why, without showing PII by default."""

from __future__ import annotations

import json
from typing import Any

from clarion.config import Settings
from clarion.contract import ENTITIES
from clarion.errors import ClarionError
from clarion.warehouse import Warehouse

QUARANTINED = (*ENTITIES, "transactions")


def listing(
    settings: Settings,
    entity: str | None,
    *,
    reason: str | None = None,
    source: str | None = None,
    limit: int = 20,
    values: bool = False,
) -> dict[str, Any]:
    if entity is not None and entity not in QUARANTINED:
        raise ClarionError(f"no entity {entity!r}; choose one of {', '.join(QUARANTINED)}")
    where, params = [], []
    if reason:
        where.append("reason = ?")
        params.append(reason)
    if source:
        where.append("source = ?")
        params.append(source)
    clause = f"where {' and '.join(where)}" if where else ""
    with Warehouse.from_settings(settings).read() as con:
        existing = {
            t
            for (t,) in con.execute(
                "select table_name from duckdb_tables() where schema_name = 'quarantine'"
            ).fetchall()
        }
        counts = []
        for name in [entity] if entity else QUARANTINED:
            if name not in existing:
                continue
            counts += [
                {"entity": name, "source": s, "reason": r, "field": f, "rows": n}
                for s, r, f, n in con.execute(
                    f'select source, reason, field, count(*) from quarantine."{name}" {clause} '
                    "group by all order by 4 desc",
                    params,
                ).fetchall()
            ]
        rows = []
        if entity and entity in existing and limit > 0:
            columns = "source, file, row, key, reason, field, load_id, quarantined_at" + (
                ", record" if values else ""
            )
            for rec in con.execute(
                f'select {columns} from quarantine."{entity}" {clause} order by file, row, key limit ?',
                [*params, limit],
            ).fetchall():
                item = dict(zip([c.strip() for c in columns.split(",")], rec, strict=True))
                item["quarantined_at"] = str(item["quarantined_at"])
                if values:
                    item["record"] = json.loads(item["record"])
                rows.append(item)
        found = _findings(con, existing, entity, reason, source, limit, values)
    return {"entity": entity, "counts": counts, "rows": rows, "values_shown": values, **found}


def _findings(con, existing, entity, reason, source, limit, values) -> dict[str, Any]:
    """Rows that loaded with an invalid optional value nulled (quarantine.field_findings)."""
    if "field_findings" not in existing:
        return {"findings": [], "finding_rows": []}
    where, params = [], []
    for column, value in (("entity", entity), ("reason", reason), ("source", source)):
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    clause = f"where {' and '.join(where)}" if where else ""
    table = "quarantine.field_findings"
    counts = [
        {"entity": e, "source": s, "reason": r, "field": f, "rows": n}
        for e, s, r, f, n in con.execute(
            f"select entity, source, reason, field, count(*) from {table} {clause} "
            "group by all order by 5 desc",
            params,
        ).fetchall()
    ]
    rows = []
    if entity and limit > 0:
        columns = ["source", "file", "row", "key", "field", "reason", "load_id"] + (
            ["value"] if values else []
        )
        rows = [
            dict(zip(columns, rec, strict=True))
            for rec in con.execute(
                f"select {', '.join(columns)} from {table} {clause} order by file, row, key limit ?",
                [*params, limit],
            ).fetchall()
        ]
    return {"findings": counts, "finding_rows": rows}


def render(report: dict[str, Any]) -> str:
    text = _render_quarantine(report)
    if report.get("findings"):
        text += "\n\n" + _render_findings(report)
    return text


def _render_findings(report: dict[str, Any]) -> str:
    lines = [
        "Loaded with a field nulled (quarantine.field_findings: an invalid optional value, original kept):",
        f"{'entity':<16} {'source':<10} {'reason':<17} {'field':<22} {'rows':>9}",
    ]
    for c in report["findings"]:
        lines.append(
            f"{c['entity']:<16} {c['source']:<10} {c['reason']:<17} {c['field'][:22]:<22} {c['rows']:>9,}"
        )
    for r in report.get("finding_rows", []):
        where = f"{r['file']}:{r['row']}" if r["file"] else f"key {r['key']}"
        value = f"  value {r['value']!r}" if report["values_shown"] else ""
        lines.append(f"  {r['source']} {where}  {r['reason']} ({r['field']}){value}")
    return "\n".join(lines)


def _render_quarantine(report: dict[str, Any]) -> str:
    if not report["counts"]:
        return "Nothing in quarantine" + (f" for {report['entity']}" if report["entity"] else "") + "."
    lines = [f"{'entity':<16} {'source':<10} {'reason':<17} {'field':<22} {'rows':>9}"]
    for c in report["counts"]:
        lines.append(
            f"{c['entity']:<16} {c['source']:<10} {c['reason']:<17} {c['field'][:22]:<22} {c['rows']:>9,}"
        )
    if report["rows"]:
        lines += ["", "Rows (file:row, or key for database and API sources):"]
        for r in report["rows"]:
            where = f"{r['file']}:{r['row']}" if r["file"] else f"key {r['key']}"
            lines.append(f"  {r['source']} {where}  {r['reason']} ({r['field']})")
            if report["values_shown"]:
                lines.append(f"      {json.dumps(r['record'], ensure_ascii=False)[:300]}")
    elif report["entity"] is None:
        lines += ["", "Name an entity to list its rows: clarion quarantine orders [--reason orphan]"]
    return "\n".join(lines)
