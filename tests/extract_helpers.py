"""Helpers for the extract tests: a project with given sources, an extraction run, and comparisons."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import duckdb

from clarion.config import GenerateSettings, Settings, load_settings
from clarion.contract import ENTITIES
from clarion.extract.publish import PublishResult
from clarion.extract.runner import extract_step, plan_steps
from clarion.synth.generator import generate
from clarion.warehouse import Warehouse


def make_settings(root: Path, sources: dict[str, Any], **extract: Any) -> Settings:
    """Settings for a throwaway project under ``root`` (warehouse, landing zone, dlt state).

    Read from an empty settings file of its own, so the repository's clarion.yaml (whichever
    directory the tests run from) never adds sources to the project."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "clarion.yaml").write_text("{}\n")
    return load_settings(
        root / "clarion.yaml",
        env={},
        overrides={
            "var_dir": str(root / "var"),
            "warehouse": {"path": str(root / "var" / "warehouse.duckdb")},
            "sources": sources,
            "extract": {"retries": 0, "retry_delay_seconds": 0, **extract},
        },
    )


def run_extract(
    settings: Settings, source: str | None = None, run_id: str = "test-run"
) -> list[PublishResult]:
    """What the extract flow does for each (source, entity) step, without Prefect around it."""
    warehouse = Warehouse.from_settings(settings)
    results: list[PublishResult] = []
    with warehouse.writing("test extract"):
        for step in plan_steps(settings, source):
            results += extract_step(settings, warehouse, run_id, step)
    return results


def generated_project(root: Path, customers: int, seed: int) -> Settings:
    """A clean generated CRM of ``customers`` (files under ``root/crm``) extracted into the raw
    tables of a project under ``root/project``."""
    generate(GenerateSettings(customers=customers, seed=seed, defects=0), out=root / "crm")
    settings = make_settings(root / "project", {"crm": {"kind": "files", "path": str(root / "crm")}})
    run_extract(settings)
    return settings


def by_entity(results: list[PublishResult]) -> dict[str, PublishResult]:
    return {r.entity: r for r in results}


def query(settings: Settings, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(settings.warehouse.path), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def quarantined(settings: Settings) -> dict[tuple[str, int], str]:
    """(file, row) -> reason, over every entity's quarantine table (file sources)."""
    found: dict[tuple[str, int], str] = {}
    for entity in ENTITIES:
        for file, row, reason in query(settings, f'select file, row, reason from quarantine."{entity}"'):
            found[(file, int(row))] = reason
    return found


def quarantined_keys(settings: Settings) -> dict[tuple[str, str], str]:
    """(entity, key) -> reason, for keyed sources (databases, APIs)."""
    found: dict[tuple[str, str], str] = {}
    for entity in ENTITIES:
        for key, reason in query(settings, f'select key, reason from quarantine."{entity}"'):
            found[(entity, key)] = reason
    return found


def defects(folder: Path) -> list[dict[str, str]]:
    with (folder / "defects.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def raw_fingerprint(settings: Settings, entity: str) -> tuple[int, int]:
    """(rows, order-independent hash of the contract columns): equal raw content, equal fingerprint."""
    columns = ", ".join(f'"{c}"' for c in ENTITIES[entity].column_names)
    [(rows, digest)] = query(
        settings, f'select count(*), coalesce(sum(hash({columns})), 0) from raw."{entity}"'
    )
    return int(rows), int(digest)


def accounting(settings: Settings) -> list[dict[str, Any]]:
    rows = query(
        settings,
        "select source, entity, status, read, loaded, quarantined, inserted, updated, unchanged, superseded "
        "from audit.extract_loads order by finished_at",
    )
    keys = (
        "source",
        "entity",
        "status",
        "read",
        "loaded",
        "quarantined",
        "inserted",
        "updated",
        "unchanged",
        "superseded",
    )
    return [dict(zip(keys, r, strict=True)) for r in rows]
