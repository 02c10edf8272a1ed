"""The main flow: every stage in order, under one warehouse writer lock, recorded in ``audit.runs``.

Stages are subflows so each shows in the Prefect UI with its own state, logs and artifacts. They
receive the validated settings and the run id; they own their logic in the libraries (``clarion``,
``models``), and this module only orders them. Later stages append themselves to ``STAGES``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from clarion import runs
from clarion.config import Settings, load_settings
from clarion.warehouse import Warehouse


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[Settings, str], dict[str, Any]]
    description: str


@flow(name="prepare-warehouse", log_prints=False)
def prepare_warehouse(settings: Settings, run_id: str) -> dict[str, Any]:
    """Create the warehouse file, its schemas and core tables if missing; report what it holds."""
    logger = get_run_logger()
    warehouse = Warehouse.from_settings(settings)
    warehouse.ensure()
    inventory = warehouse.inventory()
    tables = sum(len(t) for t in inventory["schemas"].values())
    logger.info(
        "warehouse %s ready: %d schemas, %d tables", warehouse.path, len(inventory["schemas"]), tables
    )
    return {"warehouse": str(warehouse.path), "schemas": len(inventory["schemas"]), "tables": tables}


STAGES: list[Stage] = [
    Stage("prepare", prepare_warehouse, "warehouse file, schemas and core tables"),
]


@flow(name="clarion-pipeline", log_prints=False)
def pipeline(config_path: str | None = None, wait_seconds: float | None = None) -> dict[str, Any]:
    """Run every stage in order. One writer at a time: a second run waits or stops with a message."""
    logger = get_run_logger()
    settings = load_settings(config_path)
    warehouse = Warehouse.from_settings(settings)
    run_id = runs.new_run_id()
    summaries: dict[str, Any] = {}
    with warehouse.writing("clarion run", wait_seconds):
        with warehouse.connect("clarion run") as con:
            runs.start_run(
                con,
                run_id=run_id,
                command="clarion run",
                config_hash=settings.fingerprint(),
                flow_run_id=str(flow_run.get_id() or ""),
            )
        logger.info(
            "run %s started (config %s, code %s)", run_id, settings.fingerprint(), runs.code_version()
        )
        try:
            for stage in STAGES:
                summaries[stage.name] = stage.run(settings, run_id)
        except BaseException as exc:
            with warehouse.connect("clarion run") as con:
                runs.finish_run(
                    con,
                    run_id,
                    status="failed",
                    stages=summaries,
                    error=f"{type(exc).__name__}: {exc}"[:2000],
                )
            raise
        with warehouse.connect("clarion run") as con:
            runs.finish_run(con, run_id, status="completed", stages=summaries)
    create_markdown_artifact(
        key="clarion-run-summary",
        markdown=_summary_markdown(run_id, settings, summaries),
        description=f"Clarion run {run_id}",
    )
    return {"run_id": run_id, "status": "completed", "warehouse": str(warehouse.path), "stages": summaries}


def _summary_markdown(run_id: str, settings: Settings, summaries: dict[str, Any]) -> str:
    lines = [
        f"# Clarion run `{run_id}`",
        "",
        f"Warehouse: `{Path(settings.warehouse.path)}` · config `{settings.fingerprint()}` · "
        f"code `{runs.code_version()}`",
        "",
        "| stage | result |",
        "|---|---|",
    ]
    for name, summary in summaries.items():
        lines.append(f"| {name} | `{json.dumps(summary, default=str, sort_keys=True)}` |")
    return "\n".join(lines)
