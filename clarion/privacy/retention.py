"""Retention: what Clarion made is kept only as long as `settings.retention` says (docs/privacy.md).

`plan` works out what has outlived its period, `apply` removes it and counts every removal in the
audit log (``retention.applied``, counts per kind, never a person). The kinds:

| kind | what goes | setting |
|---|---|---|
| ``scores`` | ml.customer_scores rows of runs beyond the newest N / older than N days | scores_keep_* |
| ``nba_decisions`` | ml.next_best_action rows decided on those scoring runs | scores_keep_* |
| ``trigger_hits`` | ml.trigger_hits rows found in those scoring runs | scores_keep_* |
| ``customer_uplift`` | ml.customer_uplift rows of results runs beyond the same limits | scores_keep_* |
| ``quarantine_bodies`` | a quarantined row's ``record``, cut to its field names | quarantine_redact_days |
| ``quarantine_findings`` | quarantine.field_findings' rejected ``value``, nulled | quarantine_redact_days |
| ``export_files`` | export files (var/exports) of exports older than N days | exports_keep_days |
| ``reports`` | report folders (var/reports/RUN_ID) beyond the newest N runs | reports_keep_runs |
| ``compliance_packs`` | pack folders and zips (var/compliance) older than N days | packs_keep_days |

The newest scoring run is always kept: content, next best action and the report work from it.
``content.assignments`` is kept: it is the experiment record (who was held out of which campaign)
that results, uplift and the holdout model read, and it holds no contact details; an erasure removes
a person from it. Files listed by a run's lineage manifest are noted in ``var/runs/RUN_ID/
retention.json`` before they go, so `clarion lineage verify` reports them as removed by retention
rather than as missing.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import duckdb

from clarion.audit import AuditLog
from clarion.audit.events import RETENTION_APPLIED
from clarion.config import Settings
from clarion.runs import sha256_file
from clarion.warehouse import Warehouse, relation_exists

KINDS = (
    "scores",
    "nba_decisions",
    "trigger_hits",
    "customer_uplift",
    "quarantine_bodies",
    "quarantine_findings",
    "export_files",
    "reports",
    "compliance_packs",
)
NOTE = "retention.json"
# A quarantined body reduced to its field names: {"a": null, "b": null}; a body that is not a JSON
# object becomes {}. Comparing a body with this form tells whether it is redacted already.
_REDACTED = (
    "case when json_valid(record) and json_type(record::json) = 'OBJECT' then coalesce(list_aggregate("
    "list_transform(json_keys(record::json), lambda k: to_json(k)::varchar || ':null'), "
    "'string_agg', ','), '') else null end"
)
REDACTED_SQL = f"case when {_REDACTED} is null then '{{}}' else '{{' || {_REDACTED} || '}}' end"


@dataclass(frozen=True)
class Item:
    """One kind of thing that outlived its period: ``count`` rows or files, described in ``what``
    (ids of runs and tables only). ``runs`` and ``paths`` say exactly which go."""

    kind: str
    what: str
    count: int
    runs: tuple[str, ...] = ()
    paths: tuple[str, ...] = field(default=(), repr=False)
    tables: tuple[tuple[str, int], ...] = ()
    before: datetime | None = None  # what was made before this time goes (kinds limited by days)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tables"] = dict(self.tables)
        data["before"] = self.before.isoformat() if self.before else None
        return data


def cutoff(today: date, days: int) -> datetime:
    """Things made before the start (UTC) of the day ``days`` before ``today`` are older than ``days``."""
    return datetime.combine(today - timedelta(days=days), time(0), UTC)


def plan(settings: Settings, con: duckdb.DuckDBPyConnection, today: date) -> list[Item]:
    """What retention removes today, kind by kind (only kinds with something to remove)."""
    r = settings.retention
    items = [
        *_score_items(con, today, r.scores_keep_runs, r.scores_keep_days),
        *_quarantine_items(con, today, r.quarantine_redact_days),
        *_export_items(settings, con, today, r.exports_keep_days),
        *_report_items(settings, con, r.reports_keep_runs),
        *_pack_items(settings, today, r.packs_keep_days),
    ]
    return [i for i in items if i.count]


def apply(
    settings: Settings,
    dry_run: bool = False,
    *,
    today: date | None = None,
    wait_seconds: float | None = None,
) -> dict[str, Any]:
    """Remove what outlived its period (or, with ``dry_run``, only say what would go: nothing is
    touched, no lock is taken), and record the counts as one ``retention.applied`` audit event."""
    today = today or datetime.now(UTC).date()
    warehouse = Warehouse.from_settings(settings)
    if not warehouse.path.exists():  # a fresh install: no run has made anything yet (and none is created)
        return _summary(today, [], dry_run=dry_run) | {"note": f"no warehouse at {warehouse.path} yet"}
    if dry_run:
        with warehouse.read() as con:
            items = plan(settings, con, today)
        return _summary(today, items, dry_run=True)
    with warehouse.connect("retention", wait_seconds) as con:
        items = plan(settings, con, today)
        con.execute("begin")
        try:
            done = [_delete_rows(con, item) for item in items]
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
        done = [_delete_files(settings, item, today) for item in done]
        if any(i.kind in ("scores", "quarantine_bodies", "quarantine_findings") for i in done):
            con.execute("checkpoint")  # fewer freed blocks left holding the removed rows
        result = _summary(today, done, dry_run=False)
        AuditLog.for_settings(settings).record(
            con,
            RETENTION_APPLIED,
            f"retention {today.isoformat()}",
            details={"counts": result["counts"], "runs": result["runs"], "settings": _limits(settings)},
        )
    return result


def removed_files(settings: Settings, run_id: str) -> dict[str, dict[str, Any]]:
    """The files of ``run_id`` that retention removed (path -> kind, sha256, removed_on), as
    `clarion lineage verify` reads them."""
    path = settings.var_dir / "runs" / run_id / NOTE
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text()).get("removed", [])
    except ValueError:
        return {}
    return {e["path"]: e for e in entries if isinstance(e, dict) and "path" in e}


# ------------------------------------------------------------------------------------------------
def _summary(today: date, items: list[Item], *, dry_run: bool) -> dict[str, Any]:
    counts = {kind: 0 for kind in KINDS}
    runs: dict[str, list[str]] = {}
    for item in items:
        counts[item.kind] += item.count
        if item.runs:
            runs[item.kind] = sorted(item.runs)
    return {
        "today": today.isoformat(),
        "dry_run": dry_run,
        "items": [{k: v for k, v in i.as_dict().items() if k != "paths"} for i in items],
        "counts": counts,
        "runs": runs,
        "total": sum(counts.values()),
    }


def _limits(settings: Settings) -> dict[str, Any]:
    return settings.retention.model_dump()


def _stale_runs(
    con: duckdb.DuckDBPyConnection,
    table: str,
    run_col: str,
    time_col: str,
    today: date,
    keep_runs: int | None,
    keep_days: int | None,
) -> list[str]:
    """Runs of ``table`` beyond the newest ``keep_runs`` or whose newest row is older than
    ``keep_days``; the newest run is always kept."""
    schema, name = table.split(".")
    if (keep_runs is None and keep_days is None) or not relation_exists(con, schema, name):
        return []
    rows = con.execute(
        f"select {run_col}, max({time_col})::timestamptz from {table} where {run_col} is not null "
        "group by 1 order by 2 desc, 1 desc"
    ).fetchall()
    limit = cutoff(today, keep_days) if keep_days is not None else None
    stale = []
    for rank, (run, newest) in enumerate(rows):
        if rank == 0:
            continue
        if (keep_runs is not None and rank >= keep_runs) or (limit is not None and newest < limit):
            stale.append(run)
    return stale


def _count_in(con: duckdb.DuckDBPyConnection, table: str, column: str, runs: list[str]) -> int:
    schema, name = table.split(".")
    if not runs or not relation_exists(con, schema, name):
        return 0
    return con.execute(
        f"select count(*) from {table} where {column} in (select unnest(?))", [runs]
    ).fetchone()[0]


def _score_items(
    con: duckdb.DuckDBPyConnection, today: date, keep_runs: int | None, keep_days: int | None
) -> list[Item]:
    limits = f"newest {keep_runs} runs" if keep_runs else "all runs"
    if keep_days:
        limits += f", younger than {keep_days} days"
    runs = _stale_runs(con, "ml.customer_scores", "run_id", "scored_at", today, keep_runs, keep_days)
    uplift = _stale_runs(con, "ml.customer_uplift", "results_run_id", "as_of", today, keep_runs, keep_days)
    found = [
        ("scores", "ml.customer_scores", "run_id", runs),
        ("nba_decisions", "ml.next_best_action", "run_id", runs),
        ("trigger_hits", "ml.trigger_hits", "scoring_run_id", runs),
        ("customer_uplift", "ml.customer_uplift", "results_run_id", uplift),
    ]
    items = []
    for kind, table, column, stale in found:
        n = _count_in(con, table, column, stale)
        what = f"{table} rows of {len(stale)} run(s) beyond the kept ones ({limits})"
        items.append(Item(kind, what, n, tuple(stale), tables=((table, n),)))
    return items


def _quarantine_items(con: duckdb.DuckDBPyConnection, today: date, days: int | None) -> list[Item]:
    if days is None:
        return []
    limit = cutoff(today, days)
    tables = con.execute(
        "select table_name from information_schema.columns where table_schema = 'quarantine' "
        "and column_name in ('record', 'quarantined_at') group by 1 having count(*) = 2 order by 1"
    ).fetchall()
    bodies = []
    for (table,) in tables:
        n = con.execute(
            f'select count(*) from quarantine."{table}" where quarantined_at < ? and record is not null '
            f"and record <> {REDACTED_SQL}",
            [limit],
        ).fetchone()[0]
        if n:
            bodies.append((f"quarantine.{table}", n))
    items = [
        Item(
            "quarantine_bodies",
            f"quarantined rows older than {days} days: body redacted to its field names "
            "(entity, source, file, row, key, reason, field and load id kept)",
            sum(n for _, n in bodies),
            tables=tuple(bodies),
            before=limit,
        )
    ]
    if relation_exists(con, "quarantine", "field_findings"):
        n = con.execute(
            "select count(*) from quarantine.field_findings where found_at < ? and value is not null", [limit]
        ).fetchone()[0]
        what = f"field findings older than {days} days: the rejected value nulled (field and reason kept)"
        items.append(
            Item("quarantine_findings", what, n, tables=(("quarantine.field_findings", n),), before=limit)
        )
    return items


def _export_items(
    settings: Settings, con: duckdb.DuckDBPyConnection, today: date, days: int | None
) -> list[Item]:
    if days is None or not relation_exists(con, "content", "exports"):
        return []
    limit = cutoff(today, days)
    rows = con.execute(
        "select export_id, path from content.exports where exported_at < ? and path is not null "
        "order by export_id",
        [limit],
    ).fetchall()
    paths = sorted({p for _, p in rows if Path(p).is_file()})
    exports = tuple(sorted({e for e, p in rows if p in paths}))
    what = f"export files of {len(exports)} export(s) older than {days} days (content.assignments kept)"
    return [Item("export_files", what, len(paths), exports, tuple(paths), before=limit)]


def _report_items(settings: Settings, con: duckdb.DuckDBPyConnection, keep: int | None) -> list[Item]:
    root = settings.var_dir / "reports"
    if keep is None or not root.is_dir():
        return []
    folders = [p for p in root.iterdir() if p.is_dir()]
    started = {}
    if folders and relation_exists(con, "audit", "runs"):
        started = dict(
            con.execute(
                "select run_id, started_at from audit.runs where run_id in (select unnest(?))",
                [[p.name for p in folders]],
            ).fetchall()
        )

    def when(folder: Path) -> datetime:
        known = started.get(folder.name)
        return known if known is not None else datetime.fromtimestamp(folder.stat().st_mtime, UTC)

    stale = sorted(folders, key=lambda p: (when(p), p.name), reverse=True)[keep:]
    what = f"report folders beyond the newest {keep} runs"
    return [Item("reports", what, len(stale), tuple(sorted(p.name for p in stale)), tuple(map(str, stale)))]


def _pack_items(settings: Settings, today: date, days: int | None) -> list[Item]:
    root = settings.var_dir / "compliance"
    if days is None or not root.is_dir():
        return []
    limit = cutoff(today, days).timestamp()
    stale = []
    for p in root.iterdir():
        if p.is_dir():
            sums = p / "SHA256SUMS"
            written = (sums if sums.is_file() else p).stat().st_mtime
        elif p.is_file() and p.suffix == ".zip":
            written = p.stat().st_mtime
        else:
            continue
        if written < limit:
            stale.append(p)
    stale.sort()
    runs = tuple(sorted({p.stem if p.suffix == ".zip" else p.name for p in stale}))
    what = f"compliance pack folders and zips older than {days} days (each counted)"
    return [
        Item("compliance_packs", what, len(stale), runs, tuple(map(str, stale)), before=cutoff(today, days))
    ]


def _delete_rows(con: duckdb.DuckDBPyConnection, item: Item) -> Item:
    """Remove or redact the item's rows in the caller's transaction; its count becomes what changed."""
    if item.kind in ("scores", "nba_decisions", "trigger_hits", "customer_uplift"):
        (table, _), *_ = item.tables
        column = {"ml.trigger_hits": "scoring_run_id", "ml.customer_uplift": "results_run_id"}.get(
            table, "run_id"
        )
        n = con.execute(
            f"delete from {table} where {column} in (select unnest(?))", [list(item.runs)]
        ).fetchone()[0]
        return Item(item.kind, item.what, n, item.runs, tables=((table, n),))
    if item.kind == "quarantine_bodies":
        done = []
        for table, _ in item.tables:
            n = con.execute(
                f"update {_quoted(table)} set record = {REDACTED_SQL} where quarantined_at < ? "
                f"and record is not null and record <> {REDACTED_SQL}",
                [item.before],
            ).fetchone()[0]
            done.append((table, n))
        return Item(item.kind, item.what, sum(n for _, n in done), tables=tuple(done), before=item.before)
    if item.kind == "quarantine_findings":
        n = con.execute(
            "update quarantine.field_findings set value = null where found_at < ? and value is not null",
            [item.before],
        ).fetchone()[0]
        return Item(item.kind, item.what, n, tables=(("quarantine.field_findings", n),), before=item.before)
    return item


def _quoted(table: str) -> str:
    schema, name = table.split(".")
    return f'{schema}."{name}"'


def _delete_files(settings: Settings, item: Item, today: date) -> Item:
    """Remove the item's files, noting first those a run's lineage manifest may list."""
    if item.kind not in ("export_files", "reports", "compliance_packs"):
        return item
    removed = 0
    if item.kind in ("export_files", "reports"):
        _note(settings, item, today)
    for raw in item.paths:
        path = Path(raw)
        if path.is_dir():
            shutil.rmtree(path)
        elif path.is_file():
            path.unlink()
        else:
            continue
        removed += 1
        if item.kind == "export_files":
            _prune_empty(path.parent, settings.var_dir / "exports")
    return Item(item.kind, item.what, removed, item.runs, item.paths, before=item.before)


def _prune_empty(folder: Path, root: Path) -> None:
    while folder != root and root in folder.parents and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def _owner(settings: Settings, path: Path, kind: str) -> str | None:
    base = settings.var_dir / ("exports" if kind == "export_files" else "reports")
    try:
        return path.resolve().relative_to(base.resolve()).parts[0]
    except (ValueError, IndexError):
        return None


def _note(settings: Settings, item: Item, today: date) -> None:
    """Add the files about to go to ``var/runs/RUN_ID/retention.json`` of the run that made them."""
    by_run: dict[str, list[dict[str, Any]]] = {}
    for raw in item.paths:
        path = Path(raw)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        run = _owner(settings, path, item.kind)
        if run is None:
            continue
        for f in files:
            if f.is_file():
                entry = {"path": str(f), "sha256": sha256_file(f), "kind": item.kind}
                by_run.setdefault(run, []).append(entry | {"removed_on": today.isoformat()})
    for run, entries in by_run.items():
        folder = settings.var_dir / "runs" / run
        if not folder.is_dir():  # no manifest of that run lists anything
            continue
        known = removed_files(settings, run)
        known.update({e["path"]: e for e in entries})
        note = folder / NOTE
        tmp = note.with_name(f".{NOTE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"removed": sorted(known.values(), key=lambda e: e["path"])}, indent=2))
        tmp.replace(note)
