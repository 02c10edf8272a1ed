"""Running the real pipeline in a project folder, as the module fixtures of several test files do."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from clarion.config import GenerateSettings
from clarion.synth.generator import generate
from flows.pipeline import pipeline

SMALL_CUSTOMERS, SMALL_SEED = 300, 5
MARTS = (
    "customer_features",
    "customer_labels",
    "dim_customers",
    "fct_orders",
    "fct_email_events",
    "fct_campaign_exposures",
)
RUN_COLUMNS = ["run_id", "model_version", "scored_at"]  # differ between any two runs by design
REPORT_KEYS = (
    "headline",
    "change",
    "previous_run",
    "movement",
    "segments",
    "value_risk",
    "score_distribution",
    "calibration",
    "drivers",
    "profiles",
)


def run_pipeline_in(root: Path, **params: Any) -> dict[str, Any]:
    """`clarion run` in `root` (its clarion.yaml), returning to the current folder afterwards."""
    cwd = Path.cwd()
    os.chdir(root)
    try:
        return pipeline(config_path="clarion.yaml", **params)
    finally:
        os.chdir(cwd)


def small_project(root: Path) -> Path:
    """A project folder with default settings and a generated 300-contact CRM (seed 5, no defects)."""
    config = "warehouse:\n  path: var/warehouse.duckdb\ngenerate:\n  out: var/crm\n"
    (root / "clarion.yaml").write_text(config)
    crm = GenerateSettings(customers=SMALL_CUSTOMERS, seed=SMALL_SEED, defects=0.0)
    generate(crm, out=root / "var" / "crm")
    return root


TINY_BRIEF = """
name: {name}
goal: Bring customers back for a second look this season
audience:
  segments: [{segment}]
channels: [email]
tone: warm, personal, no pressure
offer:
  discount: 15%
  code: COMEBACK15
  expiry: 2026-08-31
  url: https://shop.example.com/welcome-back
  conditions: Minimum order EUR 40. One use per customer.
disclaimer: "Offer ends {{expiry}}. {{conditions}} You can unsubscribe at any time."
variants: {variants}
approvers: [marketing-lead]
seeds:
  headline: We saved something for you
  hook: It has been a while, and we would love to welcome you back.
"""


def write_tiny_brief(folder: Path, name: str, segment: str, variants: int) -> Path:
    """A campaign brief that costs the model little: one segment, e-mail only, approved by marketing-lead."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(TINY_BRIEF.format(name=name, segment=segment, variants=variants))
    return path


def assert_same_outputs(got: dict[str, Any], want: dict[str, Any]) -> None:
    """Two runs' outputs (from run_outputs) are equal, table by table and figure by figure."""
    assert got.keys() == want.keys()
    for name in want:
        if isinstance(want[name], pd.DataFrame):
            assert len(want[name]) > 0, name
            pd.testing.assert_frame_equal(got[name], want[name], check_exact=True, obj=name)
        else:
            assert got[name] == want[name], name


def run_outputs(root: Path, run_id: str) -> dict[str, Any]:
    """What a run leaves for its users (marts, scores, segments, report figures), without the ids
    and times that differ between any two runs; tables as text, so floats compare exactly."""
    con = duckdb.connect(str(root / "var" / "warehouse.duckdb"), read_only=True)
    try:
        out: dict[str, Any] = {
            f"marts.{t}": con.execute(f"select columns(*)::varchar from marts.{t} order by all").df()
            for t in MARTS
        }
        for table in ("customer_scores", "segments"):
            out[f"ml.{table}"] = con.execute(
                f"select columns(* exclude ({', '.join(RUN_COLUMNS)}))::varchar from ml.{table} "
                "where run_id = ? order by all",
                [run_id],
            ).df()
    finally:
        con.close()
    report = json.loads((root / "var" / "reports" / run_id / "report.json").read_text())
    out["report"] = {k: report[k] for k in REPORT_KEYS}
    return out


def query(settings: Any, sql: str, params: list | None = None) -> list[tuple]:
    """Rows of ``sql`` on the project's warehouse, read-only (a test looking, never writing)."""
    con = duckdb.connect(str(settings.warehouse.path), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()
