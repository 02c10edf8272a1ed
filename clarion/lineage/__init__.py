"""The lineage manifest of a run: what went in, what code and settings ran, what came out.

``var/runs/RUN_ID/manifest.json`` is written when a run ends, and its sha256 goes into the run's
``run.finished`` audit event. A manifest is never rewritten in place: when something later belongs to
the run (a report written again, an export of its drafts, a compliance export) and the manifest's
content changes, a revision ``manifest.r2.json``, ``manifest.r3.json``... is added, naming the revision
before it and that file's sha256. ``clarion lineage verify RUN_ID`` checks the chain of revisions, the
first one against the audit event, and re-hashes the outputs the latest revision lists.

What a manifest holds is ``collect``'s business (``clarion.lineage.collect``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import duckdb

from clarion.config import Settings
from clarion.lineage.collect import LineageError, collect
from clarion.privacy.retention import removed_files
from clarion.runs import sha256_file
from clarion.warehouse import Warehouse, relation_exists

__all__ = [
    "LineageError",
    "collect",
    "latest_manifest",
    "manifest_path",
    "revisions",
    "verify",
    "write",
]

# Fields that say when and why a revision was written: a new revision is added only when the rest differs.
REVISION_FIELDS = ("written_at", "revision", "previous", "reason", "audit")
_REVISION = re.compile(r"^manifest\.r(\d+)\.json$")


def manifest_path(settings: Settings, run_id: str) -> Path:
    """The first revision, written when the run ended."""
    return settings.var_dir / "runs" / run_id / "manifest.json"


def revisions(settings: Settings, run_id: str) -> list[tuple[int, Path]]:
    """(number, path) of every revision on disk, in order: 1 is ``manifest.json``."""
    first = manifest_path(settings, run_id)
    found = [(1, first)] if first.is_file() else []
    if first.parent.is_dir():
        for p in first.parent.iterdir():
            m = _REVISION.match(p.name)
            if m and int(m[1]) >= 2:
                found.append((int(m[1]), p))
    return sorted(found)


def latest_manifest(settings: Settings, run_id: str) -> Path:
    revs = revisions(settings, run_id)
    if not revs:
        path = manifest_path(settings, run_id)
        raise LineageError(f"no manifest for run {run_id} at {path}: it is written when a run ends")
    return revs[-1][1]


def write(
    settings: Settings,
    run_id: str,
    con: duckdb.DuckDBPyConnection | None = None,
    reason: str = "a later change",
) -> Path:
    """Write the run's first manifest, or add a revision if its content changed; returns the path of
    the revision that describes the run now. An existing file is never replaced."""
    if con is None:
        with Warehouse.from_settings(settings).read() as reader:
            data = collect(settings, reader, run_id)
    else:
        data = collect(settings, con, run_id)
    data = json.loads(json.dumps(data, default=str))
    revs = revisions(settings, run_id)
    if revs:
        number, last = revs[-1]
        try:
            unchanged = _body(json.loads(last.read_text())) == _body(data)
        except ValueError:
            unchanged = False
        if unchanged:
            return last
        number += 1
        data |= {
            "revision": number,
            "previous": {"file": last.name, "sha256": sha256_file(last)},
            "reason": reason,
        }
        path = last.with_name(f"manifest.r{number}.json")
    else:
        data |= {"revision": 1, "previous": None, "reason": "run finished"}
        path = manifest_path(settings, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    _create(path, json.dumps(data, indent=2, sort_keys=True))
    return path


def verify(settings: Settings, run_id: str) -> dict[str, Any]:
    """The chain of revisions, the first one against its ``run.finished`` audit event, and every output
    the latest revision lists, re-hashed; each problem names the file."""
    revs = revisions(settings, run_id)
    if not revs:
        path = manifest_path(settings, run_id)
        raise LineageError(f"no manifest for run {run_id} at {path}: it is written when a run ends")
    problems: list[str] = []
    notes: list[str] = []
    expected, before = 1, None
    latest: dict[str, Any] = {}
    for number, path in revs:
        if number != expected:
            problems.append(
                f"{path.name}: revisions jump from r{expected - 1} to r{number} (a revision deleted)"
            )
        try:
            data = json.loads(path.read_text())
        except ValueError:
            problems.append(f"{path.name}: not valid JSON (damaged)")
            data = {}
        if data.get("revision", 1) != number:
            problems.append(f"{path.name}: says it is revision {data.get('revision')} (renamed)")
        if before is not None:
            named = data.get("previous") or {}
            if named.get("file") != before.name:
                problems.append(
                    f"{path.name}: names {named.get('file')} as its previous revision, not {before.name}"
                )
            elif named.get("sha256") != sha256_file(before):
                problems.append(
                    f"{before.name}: sha256 differs from the one {path.name} recorded (rewritten after it)"
                )
        expected, before, latest = number + 1, path, data
    problems += _against_audit(settings, run_id, notes)
    outputs = latest.get("outputs", [])
    retained = removed_files(settings, run_id)
    for out in outputs:
        p = Path(out["path"])
        gone = retained.get(str(p))
        if not p.exists() and gone and gone.get("sha256") == out["sha256"]:
            notes.append(f"{p}: removed by retention on {gone.get('removed_on')} ({gone.get('kind')})")
        elif not p.exists():
            problems.append(f"{p}: missing")
        elif sha256_file(p) != out["sha256"]:
            problems.append(f"{p}: sha256 differs from the manifest (changed after the run)")
    return {
        "run_id": run_id,
        "manifest": str(revs[-1][1]),
        "revisions": len(revs),
        "outputs": len(outputs),
        "ok": not problems,
        "problems": problems,
        "notes": notes,
    }


def _against_audit(settings: Settings, run_id: str, notes: list[str]) -> list[str]:
    """The revision the run ended with must still be the file whose sha256 ``run.finished`` recorded."""
    with Warehouse.from_settings(settings).read() as con:
        row = (
            con.execute(
                "select details from audit.events where action = 'run.finished' and run_id = ? "
                "order by seq desc limit 1",
                [run_id],
            ).fetchone()
            if relation_exists(con, "audit", "events")
            else None
        )
    details = json.loads(row[0]) if row and row[0] else {}
    recorded, name = details.get("manifest_sha256"), details.get("manifest")
    if not recorded or not name:
        notes.append(f"no run.finished event of run {run_id} records a manifest hash (a run before it did)")
        return []
    path = settings.var_dir / "runs" / run_id / Path(name).name
    if not path.is_file():
        return [f"{path.name}: missing, but the run.finished audit event recorded its sha256"]
    if sha256_file(path) != recorded:
        return [
            f"{path.name}: sha256 differs from the one the run.finished audit event recorded "
            "(rewritten in place)"
        ]
    return []


def _body(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in REVISION_FIELDS}


def _create(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all, and only if it does not exist yet (a hard link from a
    temporary file fails on an existing name, where a rename would replace it)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text + "\n")
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise LineageError(
            f"{path} exists already: a manifest revision is never rewritten (another process wrote it "
            "at the same moment; run the command again)"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
