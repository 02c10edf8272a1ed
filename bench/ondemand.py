"""On-demand drafts (clarion/content/ondemand.py): latency of one draft while someone waits.

A project of 300 synthetic customers with a real run (segments, scores) and the repository's briefs
is built once (cached in bench/out/ondemand-project). Per setting of candidates per slot and longest
slot in tokens, one fresh process: creates a `Drafter`, drafts once cold (model load included,
reported apart), then drafts ``N`` times in sequence with the model warm, each a full draft (read
the audience, generate, check, store in the warehouse with its run), for the campaign and segment of
the repository's win-back brief on e-mail. *Floor*: the raw model's ``generate`` for the same
prompts, candidates and token limit in one call (the same rows and seed, so the same tokens),
timed in the same process: what the draft costs beyond it is the checks, the meaning model and the
warehouse. Peak RSS is the whole process. *Other load*: cores kept busy by other processes while
timing (from /proc/stat; the machine has 2): above ~0.2, figures are pessimistic.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.harness import OUT, measure, report

REPO = Path(__file__).resolve().parents[1]
SETTINGS = ((1, 16), (2, 24), (3, 32))  # (candidates per slot, longest slot in tokens)
DRAFTS = 10
TARGET_P95_S = 1.5
CAMPAIGN, CHANNEL = "winback-summer", "email"


def build_project(root: str) -> dict[str, Any]:
    """The small project with one real run (its own process: Prefect's server comes and goes)."""
    import sys

    sys.path.insert(0, str(REPO / "tests"))
    from prefect.testing.utilities import prefect_test_harness
    from project_helpers import run_pipeline_in, small_project

    folder = small_project(Path(root))
    with prefect_test_harness(server_startup_timeout=180):
        result = run_pipeline_in(folder)
    return {"status": result["status"]}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run_series(root: str, candidates: int, tokens: int, drafts: int) -> dict[str, Any]:
    import time

    from bench.content import _OtherLoad
    from clarion.config import load_settings
    from clarion.content.ondemand import Drafter, OnDemandError
    from models.content.brief import load_brief
    from models.content.drafts import SLOT_BANS, SLOT_TOKENS
    from models.content.prompts import slot_prompt

    overrides = {"content": {"on_demand_candidates": candidates, "on_demand_max_new_tokens": tokens}}
    settings = load_settings(Path(root) / "clarion.yaml", env={}, overrides=overrides)
    brief = load_brief(settings.content.briefs / f"{CAMPAIGN}.yaml")
    drafter = Drafter(settings)
    started = time.perf_counter()
    segment = None
    for seg in brief.audience.segments:  # the first targeted segment with customers
        try:
            first = drafter.draft(settings, brief=CAMPAIGN, segment=seg, channel=CHANNEL, by="bench")
        except OnDemandError as exc:  # a segment without customers here: try the next
            if "no customers" in str(exc):
                continue
            raise
        segment = seg
        break
    cold = time.perf_counter() - started
    assert segment is not None, "no segment of the brief has customers"
    others = _OtherLoad()
    walls, totals, generate, tokens_made, statuses = [], [], [], [], []
    for _ in range(drafts):
        t = time.perf_counter()
        out = drafter.draft(settings, brief=CAMPAIGN, segment=segment, channel=CHANNEL, by="bench")
        walls.append(time.perf_counter() - t)
        totals.append(out["timings"]["total_s"])
        generate.append(out["timings"]["generate_s"])
        tokens_made.append(out["timings"]["tokens"])
        statuses.append(out["status"])
    load = others.cores()
    # floor: the raw model, the same rows and limit in one call, in this process
    lm = drafter._lm
    prompts = [slot_prompt(brief, segment, slot, None) for slot in brief.slots((CHANNEL,))]
    texts = [lm.chat_prompt(p.system, p.user) for p in prompts]
    limit = min(tokens, max(SLOT_TOKENS.values()))
    floors, floor_tokens = [], []
    for _ in range(max(5, drafts // 2)):
        before = lm.stats()["generated_tokens"]
        t = time.perf_counter()
        lm.generate(
            texts, candidates=candidates, max_new_tokens=limit, ban=SLOT_BANS, seed=settings.content.seed
        )
        floors.append(time.perf_counter() - t)
        floor_tokens.append(lm.stats()["generated_tokens"] - before)
    return {
        "candidates": candidates,
        "max_new_tokens": tokens,
        "segment": segment,
        "cold_s": cold,
        "first_status": first["status"],
        "load_s": drafter.load_seconds,
        "walls": walls,
        "generate_s": generate,
        "tokens": tokens_made,
        "statuses": statuses,
        "floor_s": floors,
        "floor_tokens": floor_tokens,
        "other_load": load,
    }


def run_api_series(root: str, segment: str, drafts: int) -> dict[str, Any]:
    """The same drafts through the live API: a real uvicorn server in this process, an httpx client."""
    import sys
    import time

    sys.path.insert(0, str(REPO / "tests"))
    from api_helpers import LiveServer

    from clarion.api import create_app
    from clarion.api.keys import KeyStore
    from clarion.config import load_settings

    settings = load_settings(Path(root) / "clarion.yaml", env={})
    key = KeyStore.for_settings(settings).create("bench", "marketer", by="bench")[1]
    body = {"brief": CAMPAIGN, "segment": segment, "channel": CHANNEL}
    walls, server_side = [], []
    with LiveServer(create_app(settings)) as server, server.client(key) as client:
        started = time.perf_counter()
        first = client.post("/api/v1/drafts/on-demand", json=body)
        cold = time.perf_counter() - started
        assert first.status_code == 201, first.text
        for _ in range(drafts):
            t = time.perf_counter()
            r = client.post("/api/v1/drafts/on-demand", json=body)
            walls.append(time.perf_counter() - t)
            assert r.status_code == 201, r.text
            server_side.append(r.json()["timings"]["total_s"])
    return {"cold_s": cold, "walls": walls, "server_s": server_side}


def main(sizes: list[int] | None = None, drafts: int = DRAFTS) -> str:
    """``sizes`` is ignored: the cost of a draft depends on the brief and the model, not on customers."""
    del sizes
    base = OUT / "ondemand-project"
    if not (base / "var" / "warehouse.duckdb").exists():
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(parents=True)
        measure("bench.ondemand:build_project", root=str(base))
    records: list[dict[str, Any]] = []
    rows_md = [
        "| candidates / slot | longest slot (tokens) | cold first draft s | p50 s | p95 s | max s "
        "| generate p50 s | tokens / draft | tokens/s | floor p50 s | p50 / floor | peak RSS MB "
        "| other load | status | p95 <= 1.5 s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for candidates, tokens in SETTINGS:
        work = Path(tempfile.mkdtemp(prefix="bench-ondemand-")) / "project"
        try:
            shutil.copytree(base, work)
            shutil.copytree(REPO / "campaigns", work / "campaigns", dirs_exist_ok=True)
            m = measure(
                "bench.ondemand:run_series",
                root=str(work),
                candidates=candidates,
                tokens=tokens,
                drafts=drafts,
            )
        finally:
            shutil.rmtree(work.parent, ignore_errors=True)
        r = m.result
        p50, p95 = statistics.median(r["walls"]), _percentile(r["walls"], 0.95)
        gen = statistics.median(r["generate_s"])
        per_draft = statistics.median(r["tokens"])
        rate = sum(r["tokens"]) / sum(r["generate_s"])
        floor = statistics.median(r["floor_s"])
        statuses = ", ".join(f"{r['statuses'].count(s)} {s}" for s in sorted(set(r["statuses"])))
        met = "yes" if p95 <= TARGET_P95_S else f"no (+{p95 - TARGET_P95_S:.2f} s)"
        records.append({**r, "peak_rss_mb": m.peak_rss_mb, "p50_s": p50, "p95_s": p95})
        print({k: v for k, v in records[-1].items() if not isinstance(v, list)}, flush=True)
        rows_md.append(
            f"| {candidates} | {tokens} | {r['cold_s']:.2f} (load {r['load_s']:.2f}) | {p50:.2f} | {p95:.2f} "
            f"| {max(r['walls']):.2f} | {gen:.2f} | {per_draft:.0f} | {rate:.0f} | {floor:.2f} "
            f"| {p50 / floor:.2f}x | {m.peak_rss_mb:,.0f} | {r['other_load']:.1f} | {statuses} | {met} |"
        )
    work = Path(tempfile.mkdtemp(prefix="bench-ondemand-")) / "project"
    try:
        shutil.copytree(base, work)
        shutil.copytree(REPO / "campaigns", work / "campaigns", dirs_exist_ok=True)
        m = measure(
            "bench.ondemand:run_api_series", root=str(work), segment=records[0]["segment"], drafts=drafts
        )
    finally:
        shutil.rmtree(work.parent, ignore_errors=True)
    r = m.result
    p50, p95 = statistics.median(r["walls"]), _percentile(r["walls"], 0.95)
    met = "yes" if p95 <= TARGET_P95_S else f"no (+{p95 - TARGET_P95_S:.2f} s)"
    records.append({"api": True, **r, "peak_rss_mb": m.peak_rss_mb, "p50_s": p50, "p95_s": p95})
    print({k: v for k, v in records[-1].items() if not isinstance(v, list)}, flush=True)
    rows_md.append(
        f"| through the live API (`POST /api/v1/drafts/on-demand`, defaults) | - | {r['cold_s']:.2f} "
        f"| {p50:.2f} | {p95:.2f} | {max(r['walls']):.2f} | - | - | - | - "
        f"| server side p50 {statistics.median(r['server_s']):.2f} s | {m.peak_rss_mb:,.0f} | - | - | {met} |"
    )
    notes = (__doc__ or "").split("\n\n", 1)[1].replace("\n", " ").strip()
    notes += (
        f" {drafts} warm drafts per setting, one at a time; segment {records[0]['segment']}, "
        f"campaign {CAMPAIGN}, channel {CHANNEL}; one variant, both slots in one generate call."
    )
    return report("ondemand", records, notes, rows_md, title="On-demand drafts")
