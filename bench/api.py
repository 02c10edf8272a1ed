"""`python -m bench api`: customer lookups through the REST API at 1M customers, idle and while a
writer keeps publishing snapshots; the floor is the same lookup done directly in DuckDB in-process.

Data: the tables the API reads, written straight into a warehouse at the real schemas (no pipeline
run): ``ml.customer_scores`` (two scoring runs, each customer's rows in contact-id order as the
segment stage writes them, up to four stored reasons per customer), ``ml.segments``,
``ml.next_best_action`` (one decision per customer), ``marts.dim_customers`` (contact ids; 2% of
customers are objectors: not scored), the pseudonym key kept in ``privacy.keys``. A read snapshot is
published as a run would publish it.

Serving: ``clarion api serve`` (real uvicorn, one worker) in its own process. Load: ``wrk`` with 16
connections on 2 threads for 20 s, each request a random customer's pseudonym (``GET
/api/v1/customers/{pseudonym}`` with an API key); wrk's own latency distribution. Writer: another
process in a loop of writer sessions (update one row, release: each publishes a snapshot), so the
API keeps switching snapshots while it serves.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import report

CONNECTIONS = 16
SECONDS = 20
SAMPLE = 20_000  # pseudonyms the load draws from


def build(workdir: Path, n: int) -> dict[str, Any]:
    """The warehouse, its snapshot, a project file and a key; returns where and what to ask."""
    from clarion.api.keys import KeyStore
    from clarion.config import load_settings
    from clarion.nba.decide import ensure_tables as nba_tables
    from clarion.privacy.pseudonym import Pseudonymizer, kept_key
    from clarion.segment.scoring import ensure_tables as ml_tables
    from clarion.warehouse import Warehouse

    (workdir / "clarion.yaml").write_text(
        f"var_dir: {workdir}/var\nwarehouse:\n  path: {workdir}/var/warehouse.duckdb\n"
        "logging:\n  level: WARNING\n"
    )
    settings = load_settings(workdir / "clarion.yaml", env={})
    started = time.perf_counter()
    with Warehouse.from_settings(settings).connect("bench build") as con:
        ml_tables(con)
        nba_tables(con)
        key = kept_key(con, "pseudonym")
        con.execute(f"create table marts.dim_customers as select range as contact_id from range(1, {n + 1})")
        con.execute(f"create or replace table privacy.objections as {OBJECTORS.format(n=n)}")
        for k, run in enumerate(("20261101T000000Z-bench001", "20261201T000000Z-bench002")):
            con.execute(SCORES.format(n=n, run=run, day=k + 1))
            con.execute(
                "insert into audit.runs (run_id, command, status, started_at, finished_at, config_hash, "
                "code_version) values (?, 'clarion run', 'completed', now(), now(), 'bench', 'bench')",
                [run],
            )
        con.execute(SEGMENTS.format(run="20261201T000000Z-bench002"))
        con.execute(NBA.format(run="20261201T000000Z-bench002"))
    build_s = time.perf_counter() - started
    p = Pseudonymizer(key)
    rng = random.Random(7)
    ids = [rng.randint(1, n) for _ in range(SAMPLE)]
    store = KeyStore.for_settings(settings)
    _, api_key = store.create("bench", "marketer", by="bench")
    path = Path(settings.warehouse.path)
    return {
        "config": str(workdir / "clarion.yaml"),
        "warehouse": str(path),
        "bytes": path.stat().st_size,
        "build_s": build_s,
        "key": api_key,
        "ids": ids,
        "pseudonyms": [p(i) for i in ids],
    }


OBJECTORS = (
    "select range as contact_id, null::varchar as reference, now() as requested_at, 'bench' as requested_by "
    "from range(1, {n} + 1) where hash(range) % 50 = 0"
)
SCORES = """
insert into ml.customer_scores by name
select '{run}' as run_id, i as contact_id, date '2026-11-0{day}' as as_of, 90 as horizon_days,
       'v000{day}' as model_version, p as purchase_probability, 1 - p as churn_risk,
       round(p * 300, 2) as expected_value_eur,
       (['at_risk_high_value', 'at_risk', 'loyal', 'new', 'dormant', 'steady', 'high_value'])[1 + i % 7]
       as segment,
       [{{'feature': 'recency_days', 'family': 'recency', 'direction': 'raises_risk', 'effect': 0.4 + p,
          'value': (i % 200)::double, 'text': 'Last bought ' || (i % 200) || ' days ago'}},
        {{'feature': 'orders_90d', 'family': 'frequency', 'direction': 'lowers_risk', 'effect': -0.2 - p,
          'value': (i % 7)::double, 'text': 'Bought ' || (i % 7) || ' times in the last 90 days'}}]
       as reasons,
       'Last bought ' || (i % 200) || ' days ago; bought ' || (i % 7) || ' times in the last 90 days'
       as reasons_text,
       timestamptz '2026-12-0{day} 00:00:00+00' as scored_at, ln(p / (1 - p)) as margin, -0.5 as base_margin,
       case when p < 0.3 then 'below' when p > 0.5 then 'above' else 'close' end as vs_average,
       0.38 as average_probability, 'EUR' as currency
from (select range as i, 0.02 + (hash(range * {day}) % 9600) / 10000.0 as p from range(1, {n} + 1))
where hash(i) % 50 <> 0
order by i
"""
SEGMENTS = """
insert into ml.segments by name
select '{run}' as run_id, any_value(as_of) as as_of, any_value(model_version) as model_version, segment,
       count(*) as customers, count(*) / sum(count(*)) over () as share, avg(churn_risk) as mean_churn_risk,
       avg(expected_value_eur) as mean_expected_value_eur, '{{}}' as profile, '["recency"]' as top_drivers,
       200.0 as high_value_from_eur, max(scored_at) as scored_at
from ml.customer_scores where run_id = '{run}' group by segment
"""
NBA = """
insert into ml.next_best_action by name
select run_id, 'nba-bench' as nba_run_id, contact_id, as_of, segment,
       case when contact_id % 3 = 0 then 'winback' else 'none' end as action,
       case when contact_id % 3 = 0 then 'email' end as channel,
       case when contact_id % 3 = 0 then 'proposed' end as status,
       case when contact_id % 3 <> 0 then 'no campaign pays for its cost' end as reason,
       case when contact_id % 3 = 0 then 1.5 end as value_eur, 0.02 as uplift, 'prior' as uplift_source,
       'campaign' as uplift_scope, purchase_probability, 55.0 as expected_order_value_eur,
       'own' as order_value_source, '10%' as offer_discount, 0.5 as offer_cost_eur,
       0.01 as contact_cost_eur, '{{}}' as ineligible, 0 as sends_in_window,
       timestamptz '2026-12-02 00:00:00+00' as decided_at
from ml.customer_scores where run_id = '{run}' order by contact_id
"""


# -- the writer -----------------------------------------------------------------------------------
def writer(config: str, stop_file: str) -> dict[str, Any]:
    """Writer sessions in a loop until ``stop_file`` exists: each changes one row and publishes."""
    from clarion.config import load_settings
    from clarion.warehouse import Warehouse

    settings = load_settings(Path(config), env={})
    settings = settings.model_copy(update={"api": settings.api.model_copy(update={"snapshot": True})})
    wh = Warehouse.from_settings(settings)
    times = []
    while not Path(stop_file).exists():
        started = time.perf_counter()
        with wh.connect("bench writer") as con:
            con.execute("update ml.segments set high_value_from_eur = high_value_from_eur + 1")
        times.append(time.perf_counter() - started)
    return {"sessions": len(times), "mean_session_s": sum(times) / max(len(times), 1)}


# -- the floor ------------------------------------------------------------------------------------
def floor(warehouse: str, ids: list[int]) -> dict[str, Any]:
    """The same lookups straight on one DuckDB cursor of the snapshot, in this process."""
    import duckdb

    from clarion import snapshot
    from clarion.nba.views import latest_decision
    from clarion.segment.views import latest_score, score_columns

    con = duckdb.connect(str(snapshot.current(Path(warehouse))), read_only=True)
    cur = con.cursor()
    standing = score_columns(cur)
    times = []
    cpu = time.process_time()
    for i in ids[:2000]:
        started = time.perf_counter()
        latest_score(cur, i, {"EUR": 1.0}, standing)
        latest_decision(cur, i)
        times.append(time.perf_counter() - started)
    cpu_ms = 1000 * (time.process_time() - cpu) / len(times)
    times.sort()
    return {
        "p50_ms": 1000 * times[len(times) // 2],
        "p99_ms": 1000 * times[int(len(times) * 0.99)],
        "cpu_ms": cpu_ms,  # CPU time per lookup: what the machine's load does not change
    }


def publish_vs_cp(warehouse: str) -> dict[str, Any]:
    """Publishing the snapshot of this warehouse (checkpoint, copy, fsync, rename) against `cp`."""
    from clarion import snapshot

    path = Path(warehouse)
    started = time.perf_counter()
    snapshot.publish(path)
    publish_s = time.perf_counter() - started
    target = path.with_name("cp-copy.duckdb")
    started = time.perf_counter()
    subprocess.run(["cp", str(path), str(target)], check=True)
    subprocess.run(["sync", str(target)], check=True)
    cp_s = time.perf_counter() - started
    target.unlink()
    return {"publish_s": publish_s, "cp_sync_s": cp_s, "mb": path.stat().st_size / 1e6}


# -- serving and load ---------------------------------------------------------------------------------
LUA = """
local ids = {}
for line in io.lines("%s") do ids[#ids + 1] = line end
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/api/v1/customers/" .. ids[math.random(#ids)], {["X-API-Key"] = "%s"})
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %%d %%d %%d %%d %%f %%d %%d\\n", latency:percentile(50),
    latency:percentile(99), latency.max, summary.requests, summary.duration / 1e6, e.status,
    e.connect + e.read + e.write + e.timeout))
end
"""


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load(built: dict[str, Any], workdir: Path, with_writer: bool) -> dict[str, Any]:
    import httpx

    port = _port()
    server_log = workdir / f"server-{'writing' if with_writer else 'idle'}.log"
    command = ["-m", "clarion.cli", "--config", built["config"], "api", "serve", "--port", str(port)]
    server = subprocess.Popen(
        [sys.executable, *command], stdout=subprocess.DEVNULL, stderr=server_log.open("w")
    )
    writer_proc = None
    stop = workdir / "stop-writer"
    stop.unlink(missing_ok=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the API server did not start")
            time.sleep(0.2)
        headers = {"X-API-Key": built["key"]}
        started = time.perf_counter()
        first = httpx.get(f"{url}/api/v1/customers/{built['pseudonyms'][0]}", headers=headers, timeout=120)
        first_s = time.perf_counter() - started  # builds the pseudonym index of the snapshot
        assert first.status_code in (200, 404), first.text
        ids_file = workdir / "pseudonyms.txt"
        ids_file.write_text("\n".join(built["pseudonyms"]) + "\n")
        script = workdir / "lookup.lua"
        script.write_text(LUA % (ids_file, built["key"]))
        if with_writer:
            spec = json.dumps(
                {"target": "bench.api:writer", "kwargs": {"config": built["config"], "stop_file": str(stop)}}
            )
            writer_proc = subprocess.Popen(
                [sys.executable, "-m", "bench.harness", spec], stdout=subprocess.PIPE, text=True
            )
            time.sleep(2)
        cpu_before = _cpu_s(server.pid)
        out = subprocess.run(
            ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--timeout", "10s", "-s", str(script), url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        server_cpu_s = _cpu_s(server.pid) - cpu_before
        load_average = os.getloadavg()[0]  # other work on the machine competes for its 2 cores
        line = next(x for x in out.splitlines() if x.startswith("RESULT"))
        p50, p99, worst, requests, duration, bad_status, socket_errors = line.split()[1:]
        writer_result = None
        if writer_proc is not None:
            stop.touch()
            writer_out, _ = writer_proc.communicate(timeout=120)
            writer_result = json.loads(writer_out.strip().splitlines()[-1])["result"]
        return {
            "writer": with_writer,
            "first_lookup_s": first_s,
            "p50_ms": int(p50) / 1000,
            "p99_ms": int(p99) / 1000,
            "max_ms": int(worst) / 1000,
            "requests_per_s": int(requests) / float(duration),
            "server_cpu_ms_per_request": 1000 * server_cpu_s / max(int(requests), 1),
            "non_2xx": int(bad_status),
            "socket_errors": int(socket_errors),
            "server_peak_mb": _peak_mb(server.pid),
            "load_average_1m": load_average,
            "writer_sessions": writer_result,
            # what a 5xx was (the server logs the exception's name, never its text, for a 500)
            "server_errors": sorted(
                {
                    x.rsplit(":", 1)[-1].strip()
                    for x in server_log.read_text().splitlines()
                    if " failed: " in x
                }
            ),
        }
    finally:
        if writer_proc is not None and writer_proc.poll() is None:
            writer_proc.kill()
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def one_size(n: int) -> list[dict[str, Any]]:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-api-{n}-"))
    try:
        built = build(workdir, n)
        fl = floor(built["warehouse"], built["ids"])
        pub = publish_vs_cp(built["warehouse"])
        rows = []
        for with_writer in (False, True):
            rows.append(
                {
                    "customers": n,
                    "mb": built["bytes"] / 1e6,
                    "build_s": built["build_s"],
                    "floor": fl,
                    "publish": pub,
                    **load(built, workdir, with_writer),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
        return rows
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(sizes: list[int]) -> str:
    if shutil.which("wrk") is None:
        raise SystemExit("bench api drives the load with wrk: apt-get install -y wrk")
    records = [r for n in sizes for r in one_size(n)]
    rows = [
        "| customers | writer | p50 ms | p99 ms | max ms | requests/s | server CPU ms / request | non-2xx "
        "| server peak MB | first lookup s | floor p50 / p99 ms | floor CPU ms | snapshots published "
        "| load avg |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        w = r["writer_sessions"]
        rows.append(
            f"| {r['customers']:,} | {'writing' if r['writer'] else 'idle'} "
            f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
            f"| {r['max_ms']:.0f} | {r['requests_per_s']:,.0f} | {r['server_cpu_ms_per_request']:.1f} "
            f"| {r['non_2xx']} | {r['server_peak_mb']:.0f} "
            f"| {r['first_lookup_s']:.2f} | {r['floor']['p50_ms']:.2f} / {r['floor']['p99_ms']:.2f} "
            f"| {r['floor']['cpu_ms']:.2f} "
            f"| {w['sessions'] if w else '-'} | {r.get('load_average_1m', float('nan')):.1f} |"
        )
    rows += ["", "| customers | warehouse MB | snapshot publish s | cp + sync s |", "|---:|---:|---:|---:|"]
    for r in records[::2]:
        p = r["publish"]
        rows.append(f"| {r['customers']:,} | {p['mb']:,.0f} | {p['publish_s']:.2f} | {p['cp_sync_s']:.2f} |")
    rows += ["", ESTIMATE]
    for r in records:
        capacity = 2 * 1000 / max(r["server_cpu_ms_per_request"], 1e-9)
        rows.append(
            f"- {r['customers']:,} customers, {'writing' if r['writer'] else 'idle'}: "
            f"{r['server_cpu_ms_per_request']:.1f} ms CPU per request -> about {capacity:,.0f} requests/s "
            f"on two free cores, so about {1000 * CONNECTIONS / capacity:.0f} ms per request with "
            f"{CONNECTIONS} clients always waiting (floor: {r['floor']['cpu_ms']:.2f} ms CPU per lookup)"
        )
    return report(
        "api", records, __doc__.split("\n\n", 1)[1].strip(), rows, title="REST API: customer lookups"
    )


ESTIMATE = (
    "Latency here depends on how much of the two cores the server gets: the machine's load average "
    "(last column) counts the processes wanting a core. CPU time per request does not, so it says "
    "what the server would do alone (an estimate, from the figures above):"
)


if __name__ == "__main__":
    os.environ.setdefault("DO_NOT_TRACK", "1")
    print(main([int(s) for s in sys.argv[1:]] or [100_000]))
