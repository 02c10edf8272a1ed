"""`clarion status`: one screen on the state of a Clarion project, safe to call while a run writes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import clarion
from clarion import runs
from clarion.config import Settings
from clarion.errors import WarehouseBusyError
from clarion.ops import local_server
from clarion.synth.generator import MANIFEST_FILE
from clarion.warehouse import Warehouse


def collect(settings: Settings, *, config_file: Path | None, n_runs: int = 5) -> dict[str, Any]:
    warehouse = Warehouse.from_settings(settings)
    holder = warehouse.lock.holder()
    report: dict[str, Any] = {
        "clarion_version": clarion.__version__,
        "config_file": str(config_file) if config_file else None,
        "config_fingerprint": settings.fingerprint(),
        "warehouse": {
            "path": str(warehouse.path),
            "exists": warehouse.path.exists(),
            "writer": None if holder is None else holder.__dict__,
        },
        "runs": [],
        "generated": _generated(settings.generate.out),
        "prefect": {
            "api_url": os.environ.get("PREFECT_API_URL"),
            "home": os.environ.get("PREFECT_HOME") or str(settings.prefect.home),
            "kept_server": local_server.running(settings),  # `clarion prefect start`
        },
    }
    report["alerts"] = _alerts(settings)
    if warehouse.path.exists() and holder is None:
        try:
            report["warehouse"].update(warehouse.inventory())
            with warehouse.read() as con:
                report["runs"] = runs.recent_runs(con, n_runs)
        except WarehouseBusyError as exc:  # a writer started between the check and the read
            report["warehouse"]["busy"] = str(exc)
        for run in report["runs"]:
            if run["status"] == "running":
                run["status"] = "interrupted"  # nobody holds the lock, so that process is gone
    return report


def _alerts(settings: Settings) -> dict[str, Any]:
    from clarion.ops.alerts_send import recent

    a = settings.alerts
    last = recent(settings, 50)
    return {
        "configured": a.configured,
        "channels": a.channels(),
        "events": list(a.events),
        "failed_recently": sum(r["status"] == "failed" for r in last),
        "last": last[0] if last else None,
    }


def _generated(folder: Path) -> dict[str, Any] | None:
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        return None
    m = json.loads(path.read_text())
    return {
        "path": str(folder),
        "customers": m["customers"],
        "seed": m["seed"],
        "format": m["format"],
        "destination": m.get("destination", "files"),
        "defects": m["defects"]["rows"],
        "cutoff": m["cutoff"],
    }


def render(report: dict[str, Any]) -> str:
    w = report["warehouse"]
    lines = [
        f"Clarion {report['clarion_version']}  config: {report['config_file'] or 'built-in defaults'} "
        f"(fingerprint {report['config_fingerprint']})",
    ]
    if not w["exists"]:
        lines.append(f"Warehouse  {w['path']}: not created yet (run `clarion run` or `make demo`)")
    elif w["writer"]:
        h = w["writer"]
        lines.append(
            f"Warehouse  {w['path']}: being written by '{h['purpose']}' (pid {h['pid']} since {h['since']}); "
            "details after it finishes"
        )
    else:
        lines.append(f"Warehouse  {w['path']} ({_size(w.get('bytes', 0))}), idle")
        for schema, tables in w.get("schemas", {}).items():
            if not tables:
                lines.append(f"  {schema:<11} (empty)")
                continue
            shown = ", ".join(f"{t} {n:,}" for t, n in tables.items())
            lines.append(f"  {schema:<11} {shown}")
    if report["runs"]:
        lines.append("Last runs")
        for r in report["runs"]:
            ended = r["finished_at"] or "-"
            lines.append(f"  {r['run_id']}  {r['status']:<11} {r['started_at']} -> {ended}  {r['command']}")
            if r.get("error"):
                lines.append(f"      error: {r['error'][:200]}")
    g = report["generated"]
    if g:
        lines.append(
            f"Synthetic CRM  {g['path']}: {g['customers']:,} contacts, seed {g['seed']}, {g['format']}, "
            f"{g['defects']:,} injected defects, cutoff {g['cutoff']}"
        )
    else:
        lines.append("Synthetic CRM  none yet (clarion generate)")
    a = report["alerts"]
    if not a["configured"]:
        lines.append("Alerts     off (alerts.email / alerts.webhooks not set; see docs/alerts.md)")
    else:
        lines.append(f"Alerts     on: {', '.join(a['channels'])} for {', '.join(a['events'])}")
        if a["failed_recently"]:
            lines.append(f"  {a['failed_recently']} recent delivery(ies) FAILED: clarion alerts list")
    p = report["prefect"]
    if p["api_url"]:
        lines.append(f"Prefect    runs report to {p['api_url']}")
    elif p["kept_server"]:
        k = p["kept_server"]
        lines.append(
            f"Prefect    server kept for this project: {k['ui']} (pid {k['pid']}; clarion prefect stop)"
        )
    else:
        lines.append(
            f"Prefect    history in {p['home']}; to browse it: clarion prefect start (then its address)"
        )
    return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
