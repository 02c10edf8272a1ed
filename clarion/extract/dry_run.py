"""`clarion extract --dry-run`: what an extract would load and quarantine, without touching anything.

The real extract code runs against a copy: the warehouse file (copied under the writer lock, which is
held only for the copy; an empty warehouse when there is none yet) in a temporary directory, with
``var_dir`` (landing zone, dlt state) pointed there too. The report is read from the copy's
``audit.extract_loads``, ``quarantine.<entity>`` and ``quarantine.field_findings``, then the
directory is deleted. The real warehouse, file ledger and landing zone are never written.

Sample rows show the field names and where the row is (file:row, or key); values only of fields that
hold no personal data (contract columns not marked ``pii``), unless ``values`` is asked for.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb

from clarion.config import Settings
from clarion.contract import ENTITIES
from clarion.extract.advice import rejected_files_advice
from clarion.extract.readers import ExtractError
from clarion.extract.runner import Step, extract_step, parents_of, plan_steps
from clarion.warehouse import Warehouse

SAMPLES = 3  # rows shown per entity and reason
# Values never shown without --values: personal data and free text, and any column the contract
# does not know (an export's own column can hold anything).
SAFE_FIELDS = frozenset(
    c.name for e in ENTITIES.values() for c in e.columns if not c.pii and c.name not in ("subject", "body")
) | {"line", "bytes", "column"}


def dry_run(
    settings: Settings,
    source: str | None = None,
    *,
    values: bool = False,
    fresh: bool = False,
    wait_seconds: float | None = None,
) -> dict[str, Any]:
    """Run the extract on a throwaway copy of the warehouse and report per entity and reason.
    ``fresh``: forget the file ledger in the copy, so every file is read as if it were new."""
    plan_steps(settings, source)  # a bad source name or folder is the same message as for extract
    tmp = Path(tempfile.mkdtemp(prefix="clarion-dry-run-"))
    try:
        copy = _copy_warehouse(settings, tmp / "warehouse.duckdb", wait_seconds)
        dry = settings.model_copy(
            update={
                "var_dir": tmp / "var",
                "warehouse": settings.warehouse.model_copy(update={"path": copy}),
                "api": settings.api.model_copy(update={"snapshot": False}),
            }
        )
        warehouse = Warehouse.from_settings(dry)
        if fresh and copy.exists():
            with warehouse.connect("extract --dry-run") as con:
                con.execute("delete from audit.extract_files")
        run_id = f"dry-run-{uuid.uuid4().hex[:8]}"
        rows: list[dict[str, Any]] = []
        with warehouse.writing("extract --dry-run"), _quiet():
            failed: set[str] = set()
            for step in plan_steps(dry, source):
                broken = sorted(p for p in parents_of(step) if f"{step.source}/{p}" in failed)
                if broken:  # as the extract flow does: no children of a parent that did not load
                    failed.add(step.name)
                    rows.append(_row(step, "skipped", f"skipped: {', '.join(broken)} did not load"))
                    continue
                try:
                    rows += [r.as_dict() for r in extract_step(dry, warehouse, run_id, step)]
                except ExtractError as exc:
                    failed.add(step.name)
                    rows.append(_row(step, "failed", str(exc)))
            with warehouse.connect("extract --dry-run") as con:
                entities = [_entity(con, run_id, rows_of, values) for rows_of in _grouped(rows)]
        return {"dry_run": True, "fresh": fresh, "values_shown": values, "entities": entities}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The extract's own progress lines ("published: read ...") would say that something was
    published: in a dry run only its warnings are shown."""
    logger = logging.getLogger("clarion.extract")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def _row(step: Step, status: str, message: str) -> dict[str, Any]:
    return {"source": step.source, "entity": step.entity, "status": status, "message": message}


def _copy_warehouse(settings: Settings, target: Path, wait_seconds: float | None) -> Path:
    """The warehouse file (and its WAL) copied while no writer can change it; none: an empty one."""
    real = Warehouse.from_settings(settings)
    if real.path.exists():
        with real.lock.hold("clarion extract --dry-run (copying the warehouse)", _wait(real, wait_seconds)):
            shutil.copy2(real.path, target)
            wal = real.path.with_name(real.path.name + ".wal")
            if wal.exists():
                shutil.copy2(wal, target.with_name(target.name + ".wal"))
    return target


def _wait(warehouse: Warehouse, wait_seconds: float | None) -> float:
    return warehouse.lock_wait_seconds if wait_seconds is None else wait_seconds


def _grouped(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["source"], r["entity"]), []).append(r)
    return list(groups.values())


def _entity(
    con: duckdb.DuckDBPyConnection, run_id: str, rows: list[dict[str, Any]], values: bool
) -> dict[str, Any]:
    source, entity = rows[0]["source"], rows[0]["entity"]
    rejected: dict[str, list[str]] = {}
    for r in rows:
        rejected.update(r.get("rejected_files") or {})
    out: dict[str, Any] = {
        "source": source,
        "entity": entity,
        "status": ", ".join(dict.fromkeys(r.get("status", "") for r in rows)),  # the extract's word
        "read": sum(r.get("read", 0) for r in rows),
        "would_load": sum(r.get("loaded", 0) for r in rows),
        "would_quarantine": sum(r.get("quarantined", 0) for r in rows),
        "suppressed": sum(r.get("suppressed", 0) for r in rows),
        "reasons": [],
        "nulled_fields": {},
        "rejected_files": rejected,
        "advice": rejected_files_advice(source, entity, rejected),
        "messages": [  # what the accounting says besides the rejected files (empty, unreadable files)
            m
            for r in rows
            for m in (r.get("message") or "").split("; ")
            if m and not m.endswith("(missing_column)")
        ],
    }
    table = "transactions" if entity == "transactions" else entity
    if _exists(con, "quarantine", table):
        reasons = con.execute(
            f"select reason, count(*), string_agg(distinct field, '; ') from quarantine.\"{table}\" "
            "where run_id = ? and source = ? group by 1 order by 2 desc, 1",
            [run_id, source],
        ).fetchall()
        for reason, count, fields in reasons:
            samples = con.execute(
                f'select file, row, key, field, record from quarantine."{table}" '
                "where run_id = ? and source = ? and reason = ? order by file, row, key limit ?",
                [run_id, source, reason, SAMPLES],
            ).fetchall()
            out["reasons"].append(
                {
                    "reason": reason,
                    "rows": count,
                    "fields": [f for f in (fields or "").split("; ") if f],
                    "samples": [_sample(*s, values=values) for s in samples],
                }
            )
    if _exists(con, "quarantine", "field_findings"):
        for field, reason, count in con.execute(
            "select field, reason, count(*) from quarantine.field_findings "
            "where run_id = ? and source = ? and entity = ? group by 1, 2 order by 1, 2",
            [run_id, source, entity],
        ).fetchall():
            out["nulled_fields"][f"{field}: {reason}"] = count
    return out


def _exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(
        con.execute(
            "select 1 from information_schema.tables where table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchone()
    )


def _sample(
    file: str | None, row: int | None, key: str | None, field: str, record: str | None, *, values: bool
) -> dict[str, Any]:
    """Where the row is, which field broke the contract, and its fields (values masked)."""
    try:
        data = json.loads(record) if record else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    fields = {
        k: (v if values or k in SAFE_FIELDS else "***")
        for k, v in data.items()
        if not k.startswith("_")  # the landing's own position columns
    }
    where = f"{file}:{row}" if file else f"key {key}" if key and (values or _safe_key(key)) else "key ***"
    return {"location": where, "field": field, "fields": fields}


def _safe_key(key: str) -> bool:
    return "@" not in key


def dry_run_text(report: dict[str, Any]) -> str:
    """The report as tables: per entity read / would load / would quarantine, then reasons and samples."""
    lines = [
        "Dry run of `clarion extract`: nothing was written (warehouse, file ledger and landing zone "
        "are as they were)" + ("; every file read as new (--fresh)" if report.get("fresh") else ""),
        "",
        f"{'source':<10} {'entity':<16} {'status':<10} {'read':>10} {'would load':>12} {'quarantine':>12}",
    ]
    for e in report["entities"]:
        status = "rejected" if e["read"] and not e["would_load"] else e["status"]  # read, none loads
        lines.append(
            f"{e['source']:<10} {e['entity']:<16} {status[:10]:<10} {e['read']:>10,} "
            f"{e['would_load']:>12,} {e['would_quarantine']:>12,}"
        )
    for e in report["entities"]:
        detail: list[str] = []
        for r in e["reasons"]:
            fields = f" ({', '.join(r['fields'])})" if r["fields"] else ""
            detail.append(f"  {r['reason']:<18} {r['rows']:>8,} rows{fields}")
            for s in r["samples"]:
                shown = ", ".join(f"{k}={_short(v)}" for k, v in s["fields"].items())
                detail.append(f"      {s['location']}  {shown}")
        for name, count in e["nulled_fields"].items():
            detail.append(f"  would load with a field nulled: {name} {count:,}")
        detail += [f"  {line}" for line in e["advice"]]
        detail += [f"  {m}" for m in e["messages"]]
        if detail:
            lines += ["", f"{e['source']}/{e['entity']}:", *detail]
    idle = all(e["status"] == "unchanged" and not e["read"] for e in report["entities"])
    if idle and not report.get("fresh"):
        lines += ["", "No new or changed file (or settings) to read; --fresh reads every file as new."]
    if not report.get("values_shown"):
        lines += ["", "Values of personal and unknown fields are shown as ***; --values shows them."]
    return "\n".join(lines)


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."
