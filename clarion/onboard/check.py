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


def run_mapping(folder: Path, sql: str, *, count_only: bool = False) -> tuple[list[str], list[tuple] | int]:
    """(columns, rows) of one mapping over the folder's files, with the extract's own views;
    ``count_only``: the number of rows instead (the mapping still runs whole, in DuckDB)."""
    from clarion.config.sources import FileEntity
    from clarion.extract.mapping import connect

    con, _ = connect("init", "check", folder, FileEntity(sql=sql))
    try:
        con.execute("set TimeZone = 'UTC'")
        if count_only:
            cols = [d[0] for d in con.execute(f"select * from ({sql}) limit 0").description]
            return cols, con.execute(f"select count(*) from ({sql})").fetchone()[0]
        cur = con.execute(sql)
        cols = [d[0] for d in cur.description]
        return cols, cur.fetchall()
    finally:
        con.close()


def check_proposal(prop: Proposal, folder: Path) -> None:
    """Check every sql: mapping of the proposal as the settings loader does, and run it; what fails
    becomes a question (the file is still written, with the question beside the mapping)."""
    from clarion.config.sources import FileEntity
    from clarion.extract.mapping import problems

    for plan in prop.entities:
        key = plan.keys.get("sql")
        if key is None:
            continue
        defaults = plan.keys.get("defaults")
        spec = FileEntity(
            sql=key.value, defaults={k: v.value for k, v in (defaults.value if defaults else {}).items()}
        )
        found = problems(prop.source_name, plan.entity, folder, spec, ENTITIES[plan.entity])
        for problem in found:
            prop.ask(key, problem)
        if found:
            plan.confidence = min(plan.confidence, 0.3)
            continue
        try:
            _, rows = run_mapping(folder, key.value, count_only=True)  # a count: no rows in Python
        except duckdb.Error as exc:
            prop.ask(key, f"{plan.entity}: the proposed SQL does not run ({str(exc).splitlines()[0][:200]})")
            plan.confidence = min(plan.confidence, 0.3)
            continue
        if not rows:
            prop.ask(key, f"{plan.entity}: the mapping returns no rows")
