"""Try a proposal's `sql:` mappings over the folder's files before writing them.

Each data file is a view named by :func:`clarion.extract.mapping.table_name` (files with one name
are one table, read together by name), read with DuckDB's sniffer as the extract reads them. A
mapping that fails to run, or lacks a required contract column, becomes a question in the proposal.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from clarion.contract import ENTITIES
from clarion.extract.formats import file_kind
from clarion.extract.mapping import is_data_file, table_name
from clarion.onboard.propose import Proposal


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def file_views(con: duckdb.DuckDBPyConnection, folder: Path) -> dict[str, list[Path]]:
    """Create one view per table name over the folder's data files; returns table -> files."""
    tables: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and is_data_file(p):
            tables.setdefault(table_name(p), []).append(p)
    for name, paths in tables.items():
        fmt, _ = file_kind(paths[0])
        files = "[" + ", ".join(_lit(str(p)) for p in paths) + "]"
        if fmt == "parquet":
            src = f"read_parquet({files}, union_by_name=true)"
        elif fmt == "jsonl":
            src = f"read_json({files}, format='newline_delimited', union_by_name=true)"
        else:
            src = f"read_csv({files}, union_by_name=true)"
        con.execute(f'create or replace view "{name}" as select * from {src}')
    return tables


def run_mapping(folder: Path, sql: str) -> tuple[list[str], list[tuple]]:
    """(columns, rows) of one mapping over the folder's files."""
    con = duckdb.connect()
    try:
        con.execute("set TimeZone = 'UTC'")
        file_views(con, folder)
        cur = con.execute(sql)
        cols = [d[0] for d in cur.description]
        return cols, cur.fetchall()
    finally:
        con.close()


def check_proposal(prop: Proposal, folder: Path) -> None:
    """Run every sql: mapping of the proposal; failures and missing columns become questions."""
    for plan in prop.entities:
        key = plan.keys.get("sql")
        if key is None:
            continue
        try:
            cols, rows = run_mapping(folder, key.value)
        except duckdb.Error as exc:
            first = str(exc).splitlines()[0][:200]
            prop.ask(key, f"{plan.entity}: the proposed SQL does not run ({first}); fix it by hand")
            plan.confidence = min(plan.confidence, 0.3)
            continue
        defaults = plan.keys.get("defaults")
        given = set(cols) | set(defaults.value if defaults else {})
        missing = [
            c for c in ENTITIES[plan.entity].required if c not in given and not _consent(plan.entity, c)
        ]
        if missing:
            prop.ask(key, f"{plan.entity}: the mapping gives no {', '.join(missing)}; add them")
        if not rows:
            prop.ask(key, f"{plan.entity}: the mapping returns no rows")


def _consent(entity: str, column: str) -> bool:
    """Contacts without any consent column load with consent unknown (docs/extract.md)."""
    return entity == "contacts" and column in ("email_consent", "sms_consent", "marketing_objection")
