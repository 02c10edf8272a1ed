"""What to say when a whole file is rejected because it lacks required columns: which columns, and
how to supply each (a mapping, a default, a SQL derivation, or `clarion init`'s proposal).

Used by the extract summary (a file rejected in this load) and before the raw gate (an entity that
has nothing in ``raw`` because all its files were rejected: the run stops with one message, not
with a failed gate that only says the table is empty).
"""

from __future__ import annotations

from collections.abc import Mapping

import duckdb

from clarion.contract import ENTITIES
from clarion.extract.readers import ExtractError

EXAMPLES = {  # derivations real exports need (docs/extract.md, SQL mappings)
    "signup_date": "e.g. the customer's first order date",
    "total_amount": "e.g. the sum of an order's payments in cents / 100",
    "status": "e.g. case when InvoiceNo like 'C%' then 'cancelled' ... end",
}


def how_to_supply(entity: str, column: str) -> str:
    """One way to supply a missing contract column, in the words of clarion.yaml."""
    spec = ENTITIES.get(entity)
    col = next((c for c in spec.columns if c.name == column), None) if spec else None
    kind = col.type if col else "string"
    mapped = f"map your column: columns: {{<your column>: {column}}}"
    if (spec and column == spec.cursor) or (kind == "timestamp" and column.endswith("updated_at")):
        return f"defaults: {{{column}: load_time}} (the time of the load), or {mapped}"
    if kind == "bool":
        return f"defaults: {{{column}: false}} (unknown: no content goes to them), or {mapped}"
    ways = [mapped]
    if col and col.enum and len(col.enum) <= 8:
        ways.append(f"translate values with values: {{{column}: {{<yours>: <{'|'.join(col.enum)}>}}}}")
    if column == "currency":
        ways.append(f"one for all rows: defaults: {{{column}: <{'|'.join(col.enum)}>}}")
    ways.append("derive it in a sql: mapping" + (f" ({EXAMPLES[column]})" if column in EXAMPLES else ""))
    return "; ".join(ways)


def rejected_files_advice(
    source: str, entity: str, rejected: Mapping[str, list[str]], *, indent: str = "  "
) -> list[str]:
    """Lines for the extract summary: each rejected file with its missing columns, then how to
    supply each column under sources.<source>.entities.<entity>, then where to look first."""
    if not rejected:
        return []
    lines = [
        f"{source}/{entity}: {file} lacks required column(s) {', '.join(cols)}: "
        "the whole file was quarantined (missing_column)"
        for file, cols in rejected.items()
    ]
    columns = list(dict.fromkeys(c for cols in rejected.values() for c in cols))
    where = f"sources.{source}." + ("transactions" if entity == "transactions" else f"entities.{entity}")
    lines.append(f"{indent}supply them in clarion.yaml under {where}:")
    lines += [f"{indent}  {c}: {how_to_supply(entity, c)}" for c in columns]
    lines.append(
        f"{indent}or let `clarion init --from DIR` propose a mapping; "
        f"check it with `clarion extract --dry-run --source {source}`"
    )
    return lines


def unusable_entities(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], dict[str, list[str]]]:
    """(source, entity) -> {file: missing columns}, for each entity with no row in ``raw`` whose files
    were rejected whole (missing_column) at their latest read: nothing of it can load as configured."""
    found: dict[tuple[str, str], dict[str, list[str]]] = {}
    tables = {
        name
        for (name,) in con.execute(
            "select table_name from information_schema.tables where table_schema = 'quarantine'"
        ).fetchall()
    }
    for entity in [*ENTITIES, "transactions"]:  # a transactions-only file loads into raw.orders
        if entity not in tables:
            continue
        target = "orders" if entity == "transactions" else entity
        try:
            (loaded,) = con.execute(f'select count(*) from raw."{target}"').fetchone()
        except duckdb.CatalogException:
            loaded = 0
        if loaded:
            continue
        rows = con.execute(
            f"""
            with latest as (
                select source, file, max(quarantined_at) as at from quarantine."{entity}"
                where file is not null group by 1, 2
            )
            select distinct q.source, q.file, q.field from quarantine."{entity}" q
            join latest l on l.source = q.source and l.file = q.file and l.at = q.quarantined_at
            where q.reason = 'missing_column'
            order by 1, 2
            """
        ).fetchall()
        for source, file, field in rows:
            cols = found.setdefault((source, entity), {}).setdefault(file, [])
            cols += [c for c in (field or "").split(",") if c and c not in cols]
    return found


def stop_if_unusable(con: duckdb.DuckDBPyConnection) -> None:
    """Before the raw gate: an entity that loaded nothing because its files lack required columns
    stops the run with one message naming the files and columns, and what to do."""
    unusable = unusable_entities(con)
    if not unusable:
        return
    parts = []
    for (source, entity), files in unusable.items():
        listed = "; ".join(f"{file} lacks {', '.join(cols)}" for file, cols in files.items())
        parts.append(f"{source}/{entity} loaded nothing: {listed}")
    first = next(iter(unusable))[0]
    raise ExtractError(
        "the files do not have the columns the contract requires, so there is nothing to build on: "
        + "; ".join(parts)
        + ". Supply each column in clarion.yaml (map it under columns:, give a defaults: value, "
        "e.g. updated_at: load_time, or derive it with a sql: mapping), or let "
        "`clarion init --from DIR` propose a mapping; see what would load with "
        f"`clarion extract --dry-run --source {first}` (docs/extract.md, When a whole file is rejected)."
    )
