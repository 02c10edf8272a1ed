"""Erase one person everywhere (GDPR Art. 17), and keep them out.

One call does, in order:
1. find where they are (:mod:`clarion.subject.locate`) and read what identifies them;
2. in one transaction: add their salted hashes to the suppression list (so no later extract brings
   them back), delete their rows from every table that holds them, rewrite the content exports that
   list them (and update ``content.exports``: its sha256, recipients, and an "erased after export"
   count), and log the request in ``audit.erasures`` (reference and counts, never an id);
3. flag every registered model version trained while they were in the data ``retrain_required``
   (the next run trains instead of reusing it) with a ``model.retrain_required`` audit event;
4. delete working files that mention them (landing, dlt packages, dbt and GX output, reports),
   add a lineage revision with reason "erasure" to each run whose outputs changed, and rewrite the
   compliance packs of those runs;
5. compact the warehouse file (deleted rows linger in freed DuckDB blocks until it is rewritten).

``audit.erasures`` used to keep the raw contact id of every erased person: a trace of exactly the
person erased. It now keeps the reference, when, who and the counts; recognising an erased id is the
suppression list's job (:func:`clarion.privacy.suppression.erased_sql`).
"""

from __future__ import annotations

import csv
import getpass
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from clarion import audit
from clarion.config import Settings
from clarion.errors import ClarionError
from clarion.privacy import suppression
from clarion.subject import locate
from clarion.subject.find import by_email
from clarion.warehouse import Warehouse, relation_exists

log = logging.getLogger(__name__)

ERASURES_DDL = """
create table if not exists audit.erasures (
    reference varchar, requested_at timestamptz, requested_by varchar, rows_removed bigint,
    files_changed bigint, compacted boolean
)
"""


class EraseError(ClarionError):
    exit_code = 2


class NothingHeldError(EraseError):
    """Nothing of the person is held (never known, or erased already)."""

    http_status = 404


def resolve(con: duckdb.DuckDBPyConnection, who: str) -> int:
    """A contact id from an id, or from an e-mail (trimmed, any case; as loaded or as corrected) through
    the same lookup as the other rights (:func:`clarion.subject.find.by_email`). An id is taken as given:
    a person erased already is no longer in raw.contacts, and must still get a clear answer."""
    text = who.strip()
    if text.isdigit():
        return int(text)
    if "@" in text:
        ids = by_email(con, text)
        if len(ids) == 1:
            return ids[0]
        if len(ids) > 1:
            raise EraseError(
                f"{len(ids)} contacts share that e-mail address: erase each by contact id "
                "(`clarion subject access EMAIL` lists them)"
            )
    raise EraseError(
        "no contact with that e-mail address in raw.contacts (give a contact id, or check the address)"
        if "@" in text
        else f"{who!r} is neither a contact id (a number) nor an e-mail address"
    )


def ensure_erasures(con: duckdb.DuckDBPyConnection) -> None:
    """``audit.erasures`` in its current shape. A table of the old shape (raw contact ids) is moved:
    each id goes onto the suppression list under its reference, then the ids are dropped."""
    if relation_exists(con, "audit", "erasures"):
        cols = {r[0] for r in con.execute("describe audit.erasures").fetchall()}
        if "contact_id" in cols:
            old = con.execute("select contact_id, requested_at, reference from audit.erasures").fetchall()
            for contact_id, _, reference in old:
                suppression.add(con, "contact_id", [contact_id], reference or "")
            con.execute("drop table audit.erasures")
            con.execute(ERASURES_DDL)
            con.executemany(
                "insert into audit.erasures values (?, ?, null, null, null, null)",
                [[reference, at] for _, at, reference in old],
            )
    con.execute(ERASURES_DDL)


def is_erased(con: duckdb.DuckDBPyConnection, contact_id: int) -> bool:
    if not suppression.active(con):
        return False
    return con.execute(f"select {suppression.erased_sql(con, '?')}", [contact_id]).fetchone()[0]


def erase(
    settings: Settings,
    who: str,
    reference: str,
    *,
    compact: bool = True,
    dry_run: bool = False,
    actor: str | None = None,
) -> dict[str, Any]:
    """Erase the person ``who`` (contact id or e-mail); returns counts only (safe to print or log).
    ``actor``: who asked (the API's principal; default the OS user), in audit.erasures and the events."""
    if not reference.strip():
        raise EraseError("--reference is required: the request's ticket or case number")
    warehouse = Warehouse.from_settings(settings)
    with warehouse.writing("subject erase"):
        with warehouse.connect("subject erase") as con:
            contact_id = resolve(con, who)
            person = locate.person(con, contact_id)
            places = [(pl, locate.count_rows(con, pl)) for pl in locate.places(con, person)]
            rows = {pl.name: n for pl, n in places if n}
            if not rows:
                if is_erased(con, contact_id):
                    raise NothingHeldError(
                        f"contact {contact_id} was erased already: nothing of them is held"
                    )
                raise NothingHeldError(f"no contact {contact_id} in the warehouse: nothing to erase")
            runs = _runs_touched(con, [pl for pl, n in places if n])
            exports = _exports(con, contact_id, person)
            files = locate.working_files(settings.var_dir, person)
            versions = _trained_on(settings, person)
            plan = {
                "reference": reference,
                "rows": rows,
                "rows_removed": sum(rows.values()),
                "exports_rewritten": len(exports),
                "working_files_deleted": len(files),
                "model_versions_flagged": [v for v, _ in versions],
                "runs": sorted((runs | {e["run_id"] for e in exports}) - {""}),
                "prefect_rows_mentioning": locate.prefect_mentions(person),  # checked, not changed
            }
            if dry_run:
                return plan | {"dry_run": True}
            suppression.ensure(con)  # the salt is made (or read) outside the transaction
            con.execute("begin transaction")
            try:
                ensure_erasures(con)
                added = suppression.add(con, "contact_id", [contact_id], reference)
                added += suppression.add(con, "email", person.emails, reference)
                added += suppression.add(con, "order_id", person.keys.get("order_id", []), reference)
                for pl, n in places:
                    if n:
                        con.execute(
                            f'delete from "{pl.schema}"."{pl.table}" where {pl.where}', list(pl.params)
                        )
                for e in exports:
                    _rewrite_export(con, e, contact_id, person)
                con.execute(
                    "insert into audit.erasures values (?, now(), ?, ?, ?, ?)",
                    [reference, actor or _user(), plan["rows_removed"], len(exports) + len(files), compact],
                )
                con.execute("commit")
            except BaseException:
                con.execute("rollback")
                raise
            log_ = audit.AuditLog.for_settings(settings)
            for name, path in versions:
                _flag(path, reference)
                log_.record(
                    con,
                    audit.MODEL_RETRAIN_REQUIRED,
                    name,
                    actor=actor,
                    details={"reason": "erasure", "reference": reference},
                )
            log_.record(
                con,
                audit.SUBJECT_ERASED,
                reference,
                actor=actor,
                details={
                    "rows_removed": plan["rows_removed"],
                    "tables": len(rows),
                    "suppression_hashes_added": added,
                    "exports_rewritten": [e["export_id"] for e in exports],
                    "working_files_deleted": len(files),
                    "model_versions_flagged": plan["model_versions_flagged"],
                    "compacted": compact,
                },
            )
        for path in files:
            path.unlink(missing_ok=True)
        plan["lineage_revisions"] = _revise(settings, plan["runs"])
        plan["compliance_packs_rewritten"] = _rewrite_packs(settings, plan["runs"])
        if compact:
            plan["compaction_seconds"] = compact_file(warehouse)
    log.info(
        "erased under reference %s: %d rows, %d exports rewritten, %d working files deleted",
        reference,
        plan["rows_removed"],
        len(exports),
        len(files),
    )
    return plan


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _runs_touched(con: duckdb.DuckDBPyConnection, places: list[locate.Place]) -> set[str]:
    """Runs whose per-run tables held the person: their lineage manifests change."""
    runs: set[str] = set()
    tables = locate.base_tables(con)
    for pl in places:
        for column in ("run_id", "nba_run_id", "results_run_id"):
            if column in tables.get((pl.schema, pl.table), set()):
                runs |= {
                    r[0]
                    for r in con.execute(
                        f'select distinct "{column}" from "{pl.schema}"."{pl.table}" where {pl.where}',
                        list(pl.params),
                    ).fetchall()
                    if r[0]
                }
    if relation_exists(con, "audit", "runs"):
        known = {r[0] for r in con.execute("select run_id from audit.runs").fetchall()}
        runs &= known
    return runs


def _exports(con: duckdb.DuckDBPyConnection, contact_id: int, person: locate.Person) -> list[dict[str, Any]]:
    """Content export files that list the person (by contact id or address)."""
    if not relation_exists(con, "content", "exports"):
        return []
    out = []
    for export_id, path, excluded, recipients in con.execute(
        "select export_id, path, excluded, recipients from content.exports"
    ).fetchall():
        file = Path(path)
        if file.is_file() and _lines_of(file, contact_id, person):
            out.append(
                {
                    "export_id": export_id,
                    "path": file,
                    "excluded": excluded,
                    "recipients": recipients,
                    "run_id": _run_of(con, export_id) or "",
                }
            )
    return out


def _run_of(con: duckdb.DuckDBPyConnection, export_id: str) -> str | None:
    if not relation_exists(con, "audit", "runs"):
        return None
    row = con.execute(
        "select run_id from audit.runs where ? like run_id || '-%' order by length(run_id) desc limit 1",
        [export_id],
    ).fetchone()
    return row[0] if row else None


def _theirs(row: dict[str, str], contact_id: int, person: locate.Person) -> bool:
    cid = (row.get("contact_id") or "").strip()
    to = (row.get("to") or "").strip().lower()
    return cid == str(contact_id) or (
        bool(to) and to in {*person.emails, *(p.lower() for p in person.phones)}
    )


def _lines_of(path: Path, contact_id: int, person: locate.Person) -> int:
    with path.open(newline="", encoding="utf-8") as fh:
        return sum(_theirs(r, contact_id, person) for r in csv.DictReader(fh))


def _rewrite_export(
    con: duckdb.DuckDBPyConnection, e: dict[str, Any], contact_id: int, person: locate.Person
) -> None:
    """The export file without the person's lines (written whole, then renamed over the old one),
    and its content.exports row updated to match."""
    path: Path = e["path"]
    tmp = path.with_name(f".{path.name}.erase.tmp")
    removed = 0
    with path.open(newline="", encoding="utf-8") as src, tmp.open("w", newline="", encoding="utf-8") as dst:
        reader = csv.DictReader(src)
        writer = csv.DictWriter(dst, fieldnames=reader.fieldnames or [])
        writer.writeheader()
        for row in reader:
            if _theirs(row, contact_id, person):
                removed += 1
            else:
                writer.writerow(row)
    tmp.replace(path)
    from clarion.runs import sha256_file

    excluded = json.loads(e["excluded"]) if e["excluded"] else {}
    excluded["erased after export"] = excluded.get("erased after export", 0) + removed
    con.execute(
        "update content.exports set file_sha256 = ?, recipients = recipients - ?, excluded = ? "
        "where export_id = ?",
        [sha256_file(path), removed, json.dumps(excluded), e["export_id"]],
    )


def _trained_on(settings: Settings, person: locate.Person) -> list[tuple[str, Path]]:
    """Registered versions trained while the person was in raw: registered after their first load.
    (A version registered before it never saw them.)"""
    root = settings.var_dir / "registry"
    found = []
    for meta in sorted(root.glob("*/v*/meta.json")) if root.is_dir() else []:
        data = json.loads(meta.read_text())
        registered = data.get("registered_at")
        if person.first_loaded is None or registered is None:
            trained = True
        else:
            at = datetime.fromisoformat(registered)  # "...Z" (the registry) or "+00:00"
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
            trained = at >= person.first_loaded
        if trained and not data.get("retrain_required"):
            found.append((f"{data.get('model', meta.parent.parent.name)}:{meta.parent.name}", meta))
    return found


def _flag(meta: Path, reference: str) -> None:
    data = json.loads(meta.read_text())
    data["retrain_required"] = {
        "reason": "erasure",
        "reference": reference,
        "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    tmp = meta.with_name(".meta.json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(meta)


def _revise(settings: Settings, runs: list[str]) -> int:
    """A lineage revision with reason "erasure" for each run whose manifest lists changed outputs."""
    from clarion import lineage

    written = 0
    for run_id in runs:
        if not lineage.revisions(settings, run_id):
            continue
        before = lineage.latest_manifest(settings, run_id)
        if lineage.write(settings, run_id, reason="erasure") != before:
            written += 1
    return written


def _rewrite_packs(settings: Settings, runs: list[str]) -> int:
    """Compliance packs are made from the warehouse: made again, they no longer hold the person (by
    id or pseudonym), and their SHA256SUMS and zip match the new files."""
    from clarion.compliance import export_pack

    done = 0
    root = settings.var_dir / "compliance"
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        if folder.name in runs or not runs:
            export_pack(settings, folder.name, make_zip=folder.with_suffix(".zip").exists())
            done += 1
    return done


def compact_file(warehouse: Warehouse) -> float:
    """Rewrite the warehouse into a new file and swap it in atomically: DuckDB reuses freed blocks
    but never clears them, so deleted rows stay readable in the file until it is rewritten. Runs under
    the writer lock (held by the caller). Returns the seconds it took."""
    started = time.perf_counter()
    path = warehouse.path
    fresh = path.with_name(f".{path.name}.compact")
    fresh.unlink(missing_ok=True)
    con = duckdb.connect(str(path), config=warehouse.duckdb_config())
    try:
        con.execute("checkpoint")
        (name,) = con.execute("select current_database()").fetchone()
        con.execute(f"attach '{str(fresh).replace(chr(39), chr(39) * 2)}' as __compact")
        con.execute(f'copy from database "{name}" to __compact')
        con.execute("detach __compact")
    finally:
        con.close()
    fresh.replace(path)
    path.with_name(path.name + ".wal").unlink(missing_ok=True)
    return round(time.perf_counter() - started, 3)
