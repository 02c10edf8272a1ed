"""End to end: one real `clarion run` per size, stage by stage, against floors, then an incremental rerun.

Per size: the CRM is generated once (`clarion generate`, Parquet, default settings, in a fresh
process) and cached under bench/out/data with its generate figures beside it. A fresh project under
bench/out/e2e/<size>/ gets its own copy of those files, a clarion.yaml pointing ``sources`` at it and
no campaigns folder (content is benchmarked on its own, bench/content.py). Then:

* *full run*: `clarion run --json` in a child process, reporting to a Prefect server this suite
  starts once (its start-up is in no figure). The whole process's wall, CPU and peak RSS come from
  the harness; each stage's from the meter the pipeline keeps (clarion/meter.py), printed in the
  run's JSON.
* *floors*, each in its own process: (a) DuckDB reading the same Parquet files and computing
  ``customer_features`` in one statement (bench/transform.py's SQL, checked to give the same
  values as the run's marts); (b) LightGBM's predict and pred_contrib (SHAP) on the same feature
  matrix with the model the run trained.
* ``BENCH_E2E_NO_VOC=1`` measures a size with ``ml.voc.enabled: false`` (voc's first run embeds every
  ticket: about 75 min at 1,000,000 customers); its rows and targets say so.
* *incremental rerun*: 1% new orders (with their items) dated in the last week before the cutoff,
  and a few hundred contacts opting out of e-mail (contact rows with a newer ``updated_at``, plus
  their consent-log rows), written as new files into the project's copy, then `clarion run` again.
  Its extract accounting is checked against what was changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.e2e_report import CHART, chart, report_rows, target_rows
from bench.harness import OUT, measure, report
from bench.transform import AS_OF, fingerprint, floor_sql

E2E = OUT / "e2e"
DATA = OUT / "data"
BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
CHANGED_CONTACTS = 300  # "a few hundred" contacts change between the runs
NEW_ORDER_SHARE = 0.01
RECENT = ("2026-06-24", 7)  # new orders fall in the 7 days from this day: the last week before the cutoff
SEED = 7
STEP_TIMINGS = ("score_s", "explain_s", "reasons_s", "write_s", "copy_s")  # scoring.score, in sequence
GENERATE_FIGURES = "bench-generate.json"  # beside the cached files: what generating them cost
PROJECT_YAML = """\
# bench/e2e.py: the generated CRM (a copy, in crm/), default settings, no campaigns folder
var_dir: var
warehouse:
  path: var/warehouse.duckdb
sources:
  crm:
    kind: files
    path: crm
content:
  briefs: campaigns                # absent: content is measured on its own (bench/content.py)
"""

# BENCH_E2E_NO_VOC=1: the size is measured without voc, whose first run embeds every support ticket
# (about 75 min at 1,000,000 customers on 2 cores); the table says so wherever it matters.
NO_VOC_YAML = """\
ml:
  voc:
    enabled: false                 # BENCH_E2E_NO_VOC=1
"""


# -- child processes ----------------------------------------------------------------------------
def run_cli(
    args: list[str], cwd: str, env: dict[str, str], log: str, server_group: int | None = None
) -> dict[str, Any]:
    """Run one command and return its wall time, CPU time, peak RSS and the JSON it printed.

    Called through bench.harness.measure, so this process is fresh and small and the command is its
    only child: RUSAGE_CHILDREN then holds that command's CPU and its peak RSS (ru_maxrss, the
    largest of the command and the children it waited for). Linux carries ru_maxrss across execve,
    so the figure can include this process's size at the fork (~30 MB), never a large parent's.
    Also returned: the CPU the Prefect server (process group ``server_group``) spent meanwhile, and
    how many cores other processes kept busy (a figure measured on a busy machine is pessimistic).
    """
    import resource

    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("CLARION_", "PREFECT_"))}
    child_env.update(env)
    server0, busy0, own0 = _group_cpu_s(server_group), _machine_busy_s(), time.process_time()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with Path(log).open("w") as err:
        proc = subprocess.run(args, cwd=cwd, env=child_env, stdout=subprocess.PIPE, stderr=err, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server = _group_cpu_s(server_group) - server0
    if proc.returncode != 0:
        tail = Path(log).read_text()[-3000:]
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode} (log {log}):\n{tail}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    others = (_machine_busy_s() - busy0) - cpu - server - (time.process_time() - own0)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_mb": after.ru_maxrss / 1024,
        "server_cpu_s": server,
        "other_load": max(0.0, others / wall),
        "output": _json(proc.stdout),
    }


def _machine_busy_s() -> float:
    """CPU seconds all processes have used since boot (/proc/stat: everything but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _group_cpu_s(group: int | None) -> float:
    """CPU seconds of the live processes of one process group (the Prefect server and its workers)."""
    if group is None:
        return 0.0
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            rest = stat.read_text().rsplit(")", 1)[1].split()
            if int(rest[2]) == group:
                total += int(rest[11]) + int(rest[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def _json(stdout: str) -> Any:
    """The JSON document a command printed with --json (log lines, if any, come before it)."""
    lines = stdout.splitlines()
    starts = [i for i, line in enumerate(lines) if line == "{"]
    return json.loads("\n".join(lines[starts[-1] :])) if starts else None


def floor_features(folder: str, workdir: str) -> dict[str, Any]:
    """Floor (a): customer_features straight from the Parquet files, one DuckDB statement."""
    import duckdb

    manifest = json.loads((Path(folder) / "manifest.json").read_text())
    db = Path(workdir) / "floor.duckdb"
    db.unlink(missing_ok=True)
    started = time.perf_counter()
    con = duckdb.connect(str(db), config={"threads": "2", "memory_limit": "4GB"})
    con.execute("set TimeZone = 'UTC'")
    con.execute("create schema raw")
    for entity, info in manifest["entities"].items():
        files = [str(Path(folder) / f) for f in info["files"]]
        con.execute(f"create view raw.{entity} as select * from read_parquet({files}, union_by_name = true)")
    con.execute(f"create table main.floor_features as {floor_sql(AS_OF)}")
    query_s = time.perf_counter() - started
    result = fingerprint(con, "main.floor_features")
    con.close()
    db.unlink(missing_ok=True)
    return {"query_s": query_s, **result}


def floor_predict(project: str) -> dict[str, Any]:
    """Floor (b): the promoted forest's raw prediction and its SHAP values (LightGBM pred_contrib)."""
    from clarion.config import load_settings
    from clarion.segment import runner
    from models.train import matrix

    os.chdir(project)
    settings = load_settings(Path(project) / "clarion.yaml", env={})
    plan = runner.plan(settings, None, None)
    x = matrix(runner.scoring_snapshot(settings, plan))
    forest = runner.registry(settings).promoted().load().propensity
    started = time.perf_counter()
    forest.predict(x, raw_score=True)
    predict_s = time.perf_counter() - started
    forest.predict(x, pred_contrib=True)
    return {"predict_s": predict_s, "seconds": time.perf_counter() - started, "customers": len(x)}


# -- data and project ---------------------------------------------------------------------------
def ensure_crm(customers: int) -> tuple[Path, dict[str, Any]]:
    """The default Parquet CRM of this size, generated once by `clarion generate` in a fresh process
    (measured then, and the figures kept beside the files for later runs)."""
    folder = DATA / f"crm-{customers}-parquet-clean"
    figures = folder / GENERATE_FIGURES
    if figures.exists() and (folder / "manifest.json").exists():
        manifest = json.loads((folder / "manifest.json").read_text())
        if manifest["customers"] == customers:
            return folder, json.loads(figures.read_text()) | {"cached": True}
    DATA.mkdir(parents=True, exist_ok=True)
    args = [str(BIN / "clarion"), "generate", "--customers", str(customers), "--format", "parquet"]
    args += ["--defects", "0", "--seed", str(SEED), "--out", str(folder), "--json"]
    log = DATA / f"crm-{customers}-parquet-clean.log"
    run = measure("bench.e2e:run_cli", args=args, cwd=str(DATA), env={}, log=str(log))
    manifest = json.loads((folder / "manifest.json").read_text())
    record = {
        "wall_s": run.result["wall_s"],
        "cpu_s": run.result["cpu_s"],
        "peak_rss_mb": run.result["peak_rss_mb"],
        "rows": {e: v["rows"] for e, v in manifest["entities"].items()},
        "bytes": sum((folder / f).stat().st_size for v in manifest["entities"].values() for f in v["files"]),
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    figures.write_text(json.dumps(record, indent=2))
    return folder, record | {"cached": False}


def make_project(customers: int, crm: Path) -> Path:
    """A fresh project folder with its own copy of the CRM files (changes go into the copy only)."""
    root = E2E / str(customers)
    shutil.rmtree(root, ignore_errors=True)
    (root / "crm").mkdir(parents=True)
    manifest = json.loads((crm / "manifest.json").read_text())
    for info in manifest["entities"].values():
        for rel in info["files"]:
            shutil.copy2(crm / rel, root / "crm" / rel)
    shutil.copy2(crm / "manifest.json", root / "crm" / "manifest.json")  # no entity's: never read
    extra = NO_VOC_YAML if os.environ.get("BENCH_E2E_NO_VOC") else ""
    (root / "clarion.yaml").write_text(PROJECT_YAML + extra)
    return root


def apply_changes(crm: Path, customers: int) -> dict[str, int]:
    """What a day of CRM activity adds, as new export files beside the first ones: 1% new orders (a
    sample of existing orders copied under new ids, dated in the last week before the cutoff) with
    their items, and a few hundred contacts opting out of e-mail (a newer version of each contact
    row, and an opt-out in the consent log). Returns what the next extract should report."""
    import duckdb
    import pyarrow.parquet as pq

    con = duckdb.connect(config={"threads": "2"})
    con.execute("set TimeZone = 'UTC'")

    def src(entity: str) -> str:
        return f"read_parquet('{crm / (entity + '.parquet')}')"

    (orders, max_order) = con.execute(f"select count(*), max(order_id) from {src('orders')}").fetchone()
    (max_item,) = con.execute(f"select max(order_item_id) from {src('order_items')}").fetchone()
    (max_consent,) = con.execute(f"select max(consent_id) from {src('consents')}").fetchone()
    new_orders = max(1, round(NEW_ORDER_SHARE * orders))
    day, days = RECENT
    recent = (
        f"timestamptz '{day} 00:00:00+00' + to_seconds((hash(order_id, {SEED}) % {days * 86400})::bigint)"
    )
    con.execute(
        f"""
        create table new_orders as
        with picked as (select * from {src("orders")} order by hash(order_id, {SEED}) limit {new_orders})
        select * replace (
                   {max_order} + row_number() over (order by order_id) as order_id,
                   {recent} as ordered_at,
                   {recent} as updated_at
               ),
               order_id as template_id
        from picked
        """
    )
    con.execute(
        f"""
        create table new_items as
        select i.* replace (
                   {max_item} + row_number() over (order by i.order_item_id) as order_item_id,
                   o.order_id as order_id,
                   o.updated_at as updated_at
               )
        from {src("order_items")} i join new_orders o on i.order_id = o.template_id
        """
    )
    changed = min(CHANGED_CONTACTS, max(1, customers // 20))
    con.execute(
        f"""
        create table changed_contacts as
        select * replace (
                   false as email_consent,
                   greatest(updated_at + interval 1 second, timestamptz '2026-06-30 20:00:00+00')
                       as email_consent_at,
                   'preference_center' as email_consent_source,
                   greatest(updated_at + interval 1 second, timestamptz '2026-06-30 20:00:00+00')
                       as updated_at
               )
        from {src("contacts")}
        where email_consent
        order by hash(contact_id, {SEED}) limit {changed}
        """
    )
    con.execute(
        f"""
        create table new_consents as
        select {max_consent} + row_number() over (order by contact_id) as consent_id, contact_id,
               'email' as channel, 'opt_out' as event, updated_at as recorded_at,
               'preference_center' as source, null::varchar as lawful_basis
        from changed_contacts
        """
    )
    tables = {
        "orders": "select * exclude (template_id) from new_orders",
        "order_items": "select * from new_items",
        "contacts": "select * from changed_contacts",
        "consents": "select * from new_consents",
    }
    counts = {}
    for entity, sql in tables.items():
        schema = pq.read_schema(crm / f"{entity}.parquet")  # the export's own types
        table = con.sql(sql).to_arrow_table().select(schema.names).cast(schema)
        pq.write_table(table, crm / f"{entity}.delta.parquet", compression="zstd")
        counts[entity] = table.num_rows
    con.close()
    return {
        "orders_inserted": counts["orders"],
        "order_items_inserted": counts["order_items"],
        "contacts_updated": counts["contacts"],
        "consents_inserted": counts["consents"],
    }


# -- Prefect server -----------------------------------------------------------------------------
@contextlib.contextmanager
def prefect_server() -> Iterator[tuple[str, int]]:
    """One local Prefect server for the whole suite (PREFECT_HOME under bench/out/e2e/prefect)."""
    home = E2E / "prefect"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(home)
    args = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--analytics-off", "--no-ui"]
    with (home / "server.log").open("w") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prefect server exited {proc.returncode}; see {home / 'server.log'}")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                if reply.status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"prefect server not healthy after 300 s; see {home / 'server.log'}")
            time.sleep(1)
        yield url, proc.pid  # the server leads its own process group
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # the server and its own workers: the group it leads
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# -- one size -----------------------------------------------------------------------------------
def run_size(customers: int, api_url: str, server_group: int) -> dict[str, Any]:
    crm, generated = ensure_crm(customers)
    root = make_project(customers, crm)
    env = {"PREFECT_API_URL": api_url, "PREFECT_HOME": str(root / "var" / "prefect")}
    full = clarion(root, env, server_group, "full", "run")
    floor_a = measure("bench.e2e:floor_features", folder=str(root / "crm"), workdir=str(root))
    floor_b = measure("bench.e2e:floor_predict", project=str(root))
    same = floor_a.result["rows"] > 0 and _same_features(root, floor_a.result)
    expected = apply_changes(root / "crm", customers)
    inc = clarion(root, env, server_group, "incremental", "run")
    record = {
        "contacts": customers,
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "generate": generated,
        "full": _run_figures(full),
        "incremental": _run_figures(inc),
        "floor_features": {**floor_a.result, "process_s": floor_a.wall_s, "peak_rss_mb": floor_a.peak_rss_mb},
        "floor_predict": {**floor_b.result, "peak_rss_mb": floor_b.peak_rss_mb},
        "same_features": same,
        "changes": expected,
        "voc_disabled": bool(os.environ.get("BENCH_E2E_NO_VOC")),
    }
    record["changes_seen"] = _changes_seen(record["incremental"]["accounting"])
    # BENCH_E2E_NO_CONTENT=1 leaves drafting out (it costs about 3 min a size and does not grow with it)
    record["content"] = {} if os.environ.get("BENCH_E2E_NO_CONTENT") else run_content(root, env, server_group)
    print(json.dumps({k: v for k, v in record.items() if k not in ("full", "incremental")}), flush=True)
    return record


def clarion(root: Path, env: dict[str, str], server_group: int, label: str, verb: str) -> dict[str, Any]:
    """`clarion VERB --json` in the project, measured in a fresh process (log: run-LABEL.log)."""
    return measure(
        "bench.e2e:run_cli",
        args=[str(BIN / "clarion"), verb, "--json"],
        cwd=str(root),
        env=env,
        log=str(root / f"run-{label}.log"),
        server_group=server_group,
    ).result


def _kept_records() -> list[dict[str, Any]]:
    path = OUT / "e2e.json"
    try:
        return [r for r in json.loads(path.read_text()) if "full" in r]
    except (OSError, ValueError):
        return []


def run_content(root: Path, env: dict[str, str], server_group: int) -> dict[str, Any]:
    """`clarion content` with the repository's campaign briefs, on this size's segments: what drafting
    costs as the customer count grows (drafts are per brief x segment x channel x variant, so it
    should not grow)."""
    shutil.copytree(REPO / "campaigns", root / "campaigns", dirs_exist_ok=True)
    run = clarion(root, env, server_group, "content", "content")
    stage = run["output"]["stages"]["content"]
    campaigns = stage.get("campaigns") or []
    return {
        "wall_s": run["wall_s"],
        "cpu_s": run["cpu_s"],
        "peak_rss_mb": run["peak_rss_mb"],
        "other_load": run["other_load"],
        "server_cpu_s": run["server_cpu_s"],
        "meter": stage.get("meter") or {},
        "briefs": len(campaigns),
        "drafts": sum(c.get("drafts", 0) for c in campaigns),
        "tokens": sum(c.get("tokens", 0) for c in campaigns),
        "drafting_s": sum(c.get("seconds", 0.0) for c in campaigns),
        "load_s": stage.get("load_seconds"),
        "audience": sum(sum((c.get("segments") or {}).values()) for c in campaigns),
    }


def _same_features(root: Path, floor: dict[str, Any]) -> bool:
    import duckdb

    con = duckdb.connect(str(root / "var" / "warehouse.duckdb"), read_only=True)
    try:
        run = fingerprint(con, "marts.customer_features")
    finally:
        con.close()
    return run["rows"] == floor["rows"] and all(
        (a is None and b is None) or (a is not None and b is not None and abs(a - b) <= 1e-6 * max(1, abs(a)))
        for a, b in zip(run["values"], floor["values"], strict=True)
    )


def _run_figures(run: dict[str, Any]) -> dict[str, Any]:
    """The process's figures and each stage's, from the run's JSON summary."""
    out = run["output"]
    stages = out["stages"]
    meter = {name: s.get("meter") for name, s in stages.items()}
    segment = stages.get("segment", {})
    timings = segment.get("timings", {})
    trained = segment.get("trained") or {}
    accounting = stages.get("extract", {}).get("accounting", [])
    stage_peaks = [m["peak_rss_mb"] for m in meter.values() if m]
    return {
        "wall_s": run["wall_s"],
        "cpu_s": run["cpu_s"],
        # the meter resets the kernel's high-water mark at each stage, and ru_maxrss with it: what
        # the harness reads is the peak after the last reset; the stages' peaks hold the rest
        "peak_rss_mb": max([run["peak_rss_mb"], *stage_peaks]),
        "ru_maxrss_after_last_reset_mb": run["peak_rss_mb"],
        "server_cpu_s": run["server_cpu_s"],
        "other_load": run["other_load"],
        "run_id": out["run_id"],
        "meter": meter,
        "customers": segment.get("customers"),
        "rows_read": sum(r.get("read", 0) for r in accounting),
        "accounting": [
            {
                k: r.get(k)
                for k in ("entity", "status", "read", "loaded", "quarantined", "inserted", "updated")
            }
            for r in accounting
        ],
        "train_s": trained.get("seconds"),
        "trained": bool(trained),
        # the stage's own steps in sequence (insert_thread_s overlaps them: not added)
        "score_explain_s": sum(timings.get(k, 0.0) for k in STEP_TIMINGS) if timings else None,
        "rescored": segment.get("rescored"),
        "features": stages.get("transform", {}).get("features"),
        "timings": timings,
        "voc": {k: stages.get("voc", {}).get(k) for k in ("tickets", "embedded", "k", "note")}
        | {"reused_from": (stages.get("voc", {}).get("choice_reused") or {}).get("version")},
        "recommend": {
            "method": stages.get("recommend", {}).get("method"),
            "reused_from": (stages.get("recommend", {}).get("evaluation_reused") or {}).get("version"),
        },
        "results": {
            k: (stages.get("results", {}).get("uplift_model") or {}).get(k)
            for k in ("status", "version", "reused_from")
        },
    }


def _changes_seen(accounting: list[dict[str, Any]]) -> dict[str, int]:
    by = {r["entity"]: r for r in accounting}

    def n(entity: str, what: str) -> int:
        return int((by.get(entity) or {}).get(what) or 0)

    return {
        "orders_inserted": n("orders", "inserted"),
        "order_items_inserted": n("order_items", "inserted"),
        "contacts_updated": n("contacts", "updated"),
        "consents_inserted": n("consents", "inserted"),
        "other_rows_changed": sum(
            n(e, "inserted") + n(e, "updated")
            for e in by
            if e not in ("orders", "order_items", "contacts", "consents")
        )
        + n("orders", "updated")
        + n("order_items", "updated")
        + n("contacts", "inserted")
        + n("consents", "updated"),
    }


def main(sizes: list[int]) -> str:
    """Measure these sizes; the other sizes' last records (bench/out/e2e.json) stay in the table, each
    with its own date, so one size can be measured again without the rest (no sizes: only re-render)."""
    records = []
    if sizes:
        with prefect_server() as (api_url, server_group):
            for n in sizes:
                records.append(run_size(n, api_url, server_group))
    kept = [r for r in _kept_records() if r["contacts"] not in sizes]
    records = sorted(records + kept, key=lambda r: r["contacts"])
    chart(records)
    rows_md = [
        "| contacts | stage | s | CPU s | peak RSS MB | rows/s | floor s | / floor | note |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in records:
        rows_md += report_rows(r)
    rows_md += [
        "",
        "Targets of issue 21, daily runs in minutes (sizes below 1,000,000 are only indications):",
        "",
    ]
    rows_md += target_rows(records)
    rows_md += ["", f"![time against size, one line per stage]({CHART.name})"]
    notes = (
        "One real `clarion run --json` per size in its own process, on a fresh project whose source is a "
        "copy of the generated Parquet CRM (`clarion generate --format parquet`, default settings, no "
        "defects, measured in its own process and cached), no campaign briefs in the runs (after them, "
        "`clarion content` with the repository's briefs drafts for that size's segments: generation "
        "cost against customer count; the model's own speed is under Content), "
        "reporting to a local Prefect server started once beforehand (its start-up is "
        "in no figure). *End to end*: the whole `clarion run` process (Python start, imports, every "
        "stage, Prefect's task and log traffic, lineage), wall, CPU (user + system, the process and "
        "its children; the Prefect server's CPU is given apart) and peak RSS (the largest of the "
        "stages' peaks and the process's ru_maxrss, which the meter's resets limit to the last stage). "
        "*Stages*: each stage's own wall, CPU and peak RSS, recorded by "
        "the pipeline's meter (`clarion/meter.py`: the high-water mark is reset at each stage's "
        "start); *train* and *score + explain* are the segment stage's own timings of those steps; "
        "rows/s is rows read for extract and rows written for generate, customers for the rest. "
        "*Floor (a)*: DuckDB reading the same Parquet files and computing `customer_features` in one "
        "statement (bench/transform.py's, checked to give the run's values), query time. *Floor (b)*: "
        "LightGBM predict + pred_contrib (SHAP) of the run's model on the same feature matrix. "
        "*Incremental rerun*: after the full run, 1% new orders (with their items) dated in the last "
        "week before the cutoff and 300 contacts opting out of e-mail (newer contact rows and their "
        "consent-log rows) arrive as new files in the project's copy; then `clarion run` again (no "
        "retraining: the promoted model fits). Only the new files are read; customer features and "
        "campaign exposures are computed again for the customers whose rows changed, scores, "
        "explanations and reasons for those whose inputs changed (the others keep the full run's, "
        "with the day's lifecycle fit kept); the report is rebuilt whole; voc embeds only tickets it has not "
        "embedded before (the first run embeds them all), and recommend reuses the promoted "
        "recommender's evaluation while it is under ml.recommendations.evaluate_every_days old, and "
        "results the uplift model and its verdict while it is under experiments.uplift_refit_every_days "
        "old."
    )
    # measured now, or (only re-rendered) when the newest record was
    stamp = None if sizes else max(r["measured_at"] for r in records)
    return report("e2e", records, notes, rows_md, title="End to end", stamp=stamp)
