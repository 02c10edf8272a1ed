"""What alerts add to a run: gathering a run's alerts from what it recorded, and delivering one.

Data: a scoring run written straight into a warehouse (no pipeline run), seven segments in the
demo's shares and the protected attribute ``age_band`` in six groups on marts.dim_customers, one
``model.kept`` audit event. *Gather*: `clarion.ops.alerts.from_run` with every event on, what the
pipeline calls once at the end of a run: the run's audit events, and the fairness findings of what
it scored and selected (clarion.fairness.run_figures: each segment's selection rate per group); in
brackets without the imports, which a pipeline run has done already. *Floor*: one SQL pass over the
same join counting customers per segment and group, which any per-group figure needs. *Deliver*: one
alert by e-mail to a local SMTP server (aiosmtpd) and by webhook to a local HTTP server, recorded in
alerts.sqlite; the same at every size. Each measurement in its own process on the same warehouse
(read only).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from bench.bench_nba import segment_case
from bench.harness import OUT, measure, report, workdir_settings

DATA = OUT / "alerts"
GROUPS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")


def build(workdir: str, customers: int) -> dict[str, Any]:
    from clarion.warehouse import Warehouse

    settings = workdir_settings(workdir)
    Warehouse.from_settings(settings).ensure()
    groups = ", ".join(f"'{g}'" for g in GROUPS)
    with Warehouse.from_settings(settings).connect("bench alerts build") as con:
        con.execute("select setseed(0.42)")
        con.execute(
            f"""
            create or replace table ml.customer_scores as
            select 'bench-run' as run_id, i as contact_id, 'v0001' as model_version,
                   {segment_case()} as segment, now() as scored_at
            from (select i, random() as u from range(1, {customers} + 1) t(i))
            """
        )
        con.execute(
            f"""
            create or replace table marts.dim_customers as
            select contact_id, ([{groups}])[1 + cast(floor(random() * 6) as int)] as age_band
            from ml.customer_scores
            """
        )
    from clarion import audit

    with Warehouse.from_settings(settings).connect("bench alerts event") as con:
        details = {"version": "v0001", "candidate": "v0002", "previous": "v0001", "reason": "bench"}
        audit.AuditLog.for_settings(settings).record(
            con, audit.MODEL_KEPT, "v0001", run_id="bench-run", details=details
        )
    return {"customers": customers}


def _settings(workdir: str) -> Any:
    return workdir_settings(workdir, alerts={"webhooks": ["http://127.0.0.1:9/x"]})


def run_gather(workdir: str) -> dict[str, Any]:
    import time

    import clarion.fairness  # noqa: F401  (imported already in a pipeline run: not the gathering's cost)
    import models.registry  # noqa: F401
    from clarion.ops.alerts import from_run
    from clarion.warehouse import Warehouse

    settings = _settings(workdir)
    with Warehouse.from_settings(settings).read() as con:
        started = time.perf_counter()
        found = from_run(settings, con, "bench-run")
        seconds = time.perf_counter() - started
    findings = sum(a.counts.get("findings", 0) for a in found)
    return {"seconds": seconds, "alerts": [a.event for a in found], "findings": findings}


def run_floor(workdir: str) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect(f"{workdir}/warehouse.duckdb", read_only=True)
    try:
        rows = con.execute(
            "select s.segment, d.age_band, count(*) from ml.customer_scores s "
            "left join marts.dim_customers d using (contact_id) where s.run_id = 'bench-run' group by all"
        ).fetchall()
    finally:
        con.close()
    return {"cells": len(rows)}


def run_deliver(workdir: str) -> dict[str, Any]:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from alert_helpers import http_receiver, smtp_server

    from clarion.config import load_settings
    from clarion.ops.alerts import test_alert
    from clarion.ops.alerts_send import deliver

    with smtp_server() as (inbox, port), http_receiver() as (received, url):
        settings = load_settings(
            Path(workdir) / "clarion.yaml",
            env={},
            overrides={
                "var_dir": workdir,
                "report": {"smtp_host": "127.0.0.1", "smtp_port": port},
                "alerts": {"email": ["ops@example.org"], "webhooks": [url]},
            },
        )
        import time

        started = time.perf_counter()
        records = deliver(settings, [test_alert(settings)])
        seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "sent": sum(r["status"] == "sent" for r in records),
        "mails": len(inbox.messages),
        "posts": len(received.requests),
    }


def main(sizes: list[int]) -> str:
    import os

    records, loads = [], []
    rows = [
        "| customers | gather s (without imports) | gather peak MB | findings | floor s | floor peak MB "
        "| gather / floor "
        "| deliver ms (e-mail + webhook) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in sizes:
        folder = DATA / f"wh-{n}"
        if not (folder / "built").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            measure("bench.alerts:build", workdir=str(folder), customers=n)
            (folder / "built").write_text("ok\n")
        loads.append(f"{n:,}: {os.getloadavg()[0]:.2f}")
        floor = measure("bench.alerts:run_floor", workdir=str(folder))
        gather = measure("bench.alerts:run_gather", workdir=str(folder))
        sent = measure("bench.alerts:run_deliver", workdir=str(folder))
        record = {
            "customers": n,
            "gather": {"wall_s": gather.wall_s, "peak_rss_mb": gather.peak_rss_mb, **gather.result},
            "floor": {"wall_s": floor.wall_s, "peak_rss_mb": floor.peak_rss_mb, **floor.result},
            "deliver": sent.result,
        }
        records.append(record)
        print(record, flush=True)
        rows.append(
            f"| {n:,} | {gather.wall_s:.2f} ({gather.result['seconds']:.2f}) | {gather.peak_rss_mb:,.0f} "
            f"| {gather.result['findings']} | {floor.wall_s:.2f} | {floor.peak_rss_mb:,.0f} "
            f"| {gather.result['seconds'] / floor.wall_s:.1f}x "
            f"| {1000 * sent.result['seconds']:.0f} |"
        )
    notes = " ".join(__doc__.split("\n\n", 1)[1].split())
    notes += f" One-minute load average (2 cores) as each size started: {'; '.join(loads)}."
    return report("alerts", records, notes, rows, title="Alerts")
