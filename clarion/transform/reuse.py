"""The staging build's day-independent tables, lent to the training snapshots while still current.

A training snapshot (clarion/segment/snapshots.py) builds the features of past days into a scratch
schema with the same dbt models as the published day. Two of the tables it builds do not read the
day: ``int_orders`` (every order in euros with its item counts) and ``stg_support_tickets`` (every
ticket with its text's sentiment). At 1,000,000 customers they cost 4.9 s and 1.3 s, and the
staging build of the same run has just written the same rows.

So a staging build that succeeded records what those tables were built from (:func:`record`): the
dbt project's files, the raw schema, and per raw table they read its row count and the sum of its
whole rows' hashes (every column, however the row got there: 0.9 s for the 25 million rows of a
million customers). A
snapshot asks :func:`deferrable`: when the staging tables are still there, the project and dbt are
the same and every raw table still has the same count and sum, nothing they read has changed, and the
snapshot's dbt build defers them to staging (dbt's ``--defer --favor-state`` with the build's
manifest) instead of building them again. Any difference (a load since, an erasure, an edited
model or seed, another dbt version, ``transform.keep_staging: false``, a failed build) and the snapshot
builds them itself, as before. The record is removed before every staging build and written only
after a successful one, so a record never describes tables a later build replaced.
"""

from __future__ import annotations

import json
import logging
import shutil
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import duckdb

from clarion.config import Settings
from clarion.transform.dbt import project_digest
from clarion.warehouse import relation_exists

log = logging.getLogger(__name__)

# staging table -> the raw tables it reads (through staging views and the fx_rates seed, which the
# project's digest covers); none of them reads the day or the sample
DAY_INDEPENDENT = {
    "int_orders": ("orders", "order_items"),
    "stg_support_tickets": ("support_tickets",),
}
RECORD = "built_from.json"


def state_dir(settings: Settings) -> Path:
    """Where the last successful staging build's manifest and record are kept."""
    return settings.var_dir / "dbt" / "staging-state"


def forget(settings: Settings) -> None:
    """Before a staging build: the record no longer describes what staging will hold."""
    (state_dir(settings) / RECORD).unlink(missing_ok=True)


def record(settings: Settings, con: duckdb.DuckDBPyConnection, raw_schema: str = "raw") -> None:
    """After a successful staging build: its manifest (what ``--defer`` resolves to) and what its
    day-independent tables were built from."""
    manifest = settings.var_dir / "dbt" / "target" / "manifest.json"
    if not manifest.exists():
        return
    d = state_dir(settings)
    d.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(manifest, d / "manifest.json")
    built = {
        "dbt": _dbt_version(),
        "project": project_digest(settings),
        "raw_schema": raw_schema,
        "sources": _sources(con, raw_schema),
    }
    tmp = d / f".{RECORD}.tmp"
    tmp.write_text(json.dumps(built, indent=1))
    tmp.replace(d / RECORD)


def deferrable(settings: Settings, con: duckdb.DuckDBPyConnection, raw_schema: str = "raw") -> list[str]:
    """The day-independent staging tables a snapshot may read instead of building: all of them when
    the record says they were built from exactly what the project and raw hold now, else none."""
    try:
        built = json.loads((state_dir(settings) / RECORD).read_text())
    except (FileNotFoundError, ValueError):
        return []
    if not (state_dir(settings) / "manifest.json").exists():
        return []
    if not all(relation_exists(con, "staging", t) for t in DAY_INDEPENDENT):
        return []  # dropped after publishing (transform.keep_staging: false), or never built
    if built.get("raw_schema") != raw_schema or built.get("project") != project_digest(settings):
        return []
    if built.get("dbt") != _dbt_version():
        return []  # another dbt might not read that manifest
    if built.get("sources") != _sources(con, raw_schema):
        return []
    return sorted(DAY_INDEPENDENT)


def defer_args(settings: Settings, models: list[str]) -> list[str]:
    """dbt's arguments that leave ``models`` out of a build and resolve them to the staging build."""
    if not models:
        return []
    return ["--exclude", *models, "--defer", "--favor-state", "--state", str(state_dir(settings))]


def _dbt_version() -> str | None:
    try:
        return version("dbt-core")
    except PackageNotFoundError:
        return None


def _sources(con: duckdb.DuckDBPyConnection, raw_schema: str) -> dict[str, Any]:
    """Per raw table the day-independent tables read: rows and the sum of their whole rows' hashes
    (an added, removed or changed row moves one of them). A missing table is ``None``."""
    out: dict[str, Any] = {}
    for table in sorted({t for tables in DAY_INDEPENDENT.values() for t in tables}):
        if not relation_exists(con, raw_schema, table):
            out[table] = None
            continue
        rows, total = con.execute(
            f'select count(*), sum(cast(hash(t) as hugeint)) from "{raw_schema}"."{table}" as t'
        ).fetchone()
        out[table] = [rows, str(total)]
    return out
