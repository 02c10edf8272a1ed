"""The lineage manifest of a run: what went in, what code and settings ran, what came out.

``var/runs/RUN_ID/manifest.json`` is written when a run ends, and written again when something later
belongs to the run (an export of its drafts). It lists:

* the run (command, status, times, code version, config fingerprint);
* inputs: every extracted file with its sha256 and rows, and each entity's read / loaded /
  quarantined counts;
* the transform: the dbt manifest's sha256 and the models it built, the publication, and the
  quality results by suite;
* the model that scored (version, its training data fingerprint, the scoring counts by segment);
* content: the model weights' and briefs' and prompts' hashes, every draft with its status and
  decisions, every export with its recipient and exclusion counts;
* every output file with its sha256: `clarion lineage verify RUN_ID` re-hashes them.

Ids, counts and hashes only: no names, e-mails, phones or free text.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from clarion.config import Settings
from clarion.errors import ClarionError
from clarion.runs import sha256_file
from clarion.warehouse import Warehouse, relation_exists


class LineageError(ClarionError):
    exit_code = 6


def manifest_path(settings: Settings, run_id: str) -> Path:
    return settings.var_dir / "runs" / run_id / "manifest.json"


def _rows(con: duckdb.DuckDBPyConnection, schema: str, table: str, sql: str, params: list) -> list[dict]:
    if not relation_exists(con, schema, table):
        return []
    cur = con.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, (_plain(v) for v in row), strict=True)) for row in cur.fetchall()]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def collect(settings: Settings, con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any]:
    runs = _rows(con, "audit", "runs", "select * exclude (error) from audit.runs where run_id = ?", [run_id])
    if not runs:
        raise LineageError(f"no run {run_id!r} in audit.runs: `clarion status` lists the recent runs")
    outputs: list[Path] = []
    loads = _rows(
        con,
        "audit",
        "extract_loads",
        "select source, entity, status, read, loaded, quarantined, inserted, updated, unchanged "
        "from audit.extract_loads where run_id = ? order by source, entity",
        [run_id],
    )
    files = _rows(
        con,
        "audit",
        "extract_files",
        "select source, entity, file, sha256, rows from audit.extract_files where run_id = ? "
        "order by 1, 2, 3",
        [run_id],
    )
    quality = _rows(
        con,
        "audit",
        "quality_results",
        "select suite, any_value(suite_version) suite_version, count(*) checks, "
        "count(*) filter (where status = 'passed') passed, count(*) filter (where status = 'failed') failed "
        "from audit.quality_results where run_id = ? group by suite order by suite",
        [run_id],
    )
    publication = _rows(
        con,
        "audit",
        "publications",
        "select as_of, horizon_days, tables from audit.publications where run_id = ?",
        [run_id],
    )
    dbt_manifest = settings.var_dir / "dbt" / "target" / "manifest.json"
    dbt = {"manifest_sha256": sha256_file(dbt_manifest) if dbt_manifest.exists() else None}
    if dbt_manifest.exists() and publication:
        nodes = json.loads(dbt_manifest.read_text()).get("nodes", {})
        dbt["models"] = sorted(n["name"] for n in nodes.values() if n.get("resource_type") == "model")
    scoring = _rows(
        con,
        "ml",
        "customer_scores",
        "select any_value(model_version) model_version, any_value(as_of) as_of, segment, count(*) customers "
        "from ml.customer_scores where run_id = ? group by segment order by segment",
        [run_id],
    )
    model: dict[str, Any] = {}
    if scoring:
        version = scoring[0]["model_version"]
        folder = settings.var_dir / "registry" / "purchase_propensity" / version
        meta = json.loads((folder / "meta.json").read_text()) if (folder / "meta.json").exists() else {}
        model = {
            "version": version,
            "as_of": scoring[0]["as_of"],
            "training_fingerprint": meta.get("data", {}).get("fingerprint"),
            "config_fingerprint": meta.get("data", {}).get("config_fingerprint"),
            "scored": {r["segment"]: r["customers"] for r in scoring},
        }
        outputs += sorted(p for p in folder.glob("*") if p.is_file())
    drafts = _rows(
        con,
        "content",
        "drafts",
        "select draft_id, campaign, segment, channel, variant, status, content_sha256, ai_generated, "
        "fallback, "
        "provenance->>'$.brief.sha256' brief_sha256, provenance->>'$.model.weights_sha256' weights_sha256, "
        "provenance->>'$.prompt_template.sha256' template_sha256 "
        "from content.drafts where run_id = ? order by campaign, segment, channel, variant",
        [run_id],
    )
    decisions = _rows(
        con,
        "content",
        "decisions",
        "select d.draft_id, d.decision, d.decided_by, d.content_sha256, d.via, d.decided_at "
        "from content.decisions d join content.drafts x using (draft_id) where x.run_id = ? "
        "order by d.decided_at",
        [run_id],
    )
    prompts = _rows(
        con,
        "content",
        "prompts",
        "select campaign, segment, slot, sha256 from content.prompts where run_id = ? order by 1, 2, 3",
        [run_id],
    )
    exports = _rows(
        con,
        "content",
        "exports",
        "select export_id, campaign, channel, recipients, excluded, path, file_sha256, exported_at "
        "from content.exports where export_id like ? order by export_id",
        [f"{run_id}-%"],
    )
    outputs += [Path(e["path"]) for e in exports]
    reports = settings.var_dir / "reports" / run_id
    outputs += sorted(p for p in reports.glob("*") if p.is_file()) if reports.exists() else []
    return {
        "manifest_version": 1,
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "run": runs[0],
        "inputs": {"loads": loads, "files": files},
        "transform": {"publication": publication[0] if publication else None, "dbt": dbt, "quality": quality},
        "model": model,
        "content": {"drafts": drafts, "decisions": decisions, "prompts": prompts, "exports": exports},
        "outputs": [
            {"path": str(p), "sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in outputs
            if p.exists()
        ],
    }


def write(settings: Settings, run_id: str, con: duckdb.DuckDBPyConnection | None = None) -> Path:
    """(Re)write the run's manifest atomically; returns its path."""
    if con is None:
        with Warehouse.from_settings(settings).read() as reader:
            data = collect(settings, reader, run_id)
    else:
        data = collect(settings, con, run_id)
    path = manifest_path(settings, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    tmp.replace(path)
    return path


def verify(settings: Settings, run_id: str) -> dict[str, Any]:
    """Re-hash every output the manifest lists; name each file that changed or disappeared."""
    path = manifest_path(settings, run_id)
    if not path.exists():
        raise LineageError(f"no manifest for run {run_id} at {path}: it is written when a run ends")
    data = json.loads(path.read_text())
    problems = []
    for out in data["outputs"]:
        p = Path(out["path"])
        if not p.exists():
            problems.append(f"{p}: missing")
        elif sha256_file(p) != out["sha256"]:
            problems.append(f"{p}: sha256 differs from the manifest (changed after the run)")
    return {
        "run_id": run_id,
        "manifest": str(path),
        "outputs": len(data["outputs"]),
        "ok": not problems,
        "problems": problems,
    }
