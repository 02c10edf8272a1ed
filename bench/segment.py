"""Segment at several sizes: train, then score + explain + segment every customer, against a floor.

*Train* is the stage's training step: stacked snapshots (13 past days every 28 days, sampled to
about 300,000 customer-days, one dbt build), the lifecycle fits per day, the validation fit, the
production refit, calibration, the card. *Score* is the step every run does: the lifecycle fit of
the day, probabilities, expected value, SHAP values for every customer (additivity checked),
reason codes, segments, and the write to ``ml.customer_scores``. *Floor*: the same forest's plain
prediction (raw margin) on the same customers, the least any scoring can do. Quality is measured
out of time (the card: model, recency/frequency baseline, BG/NBD alone on the same customers) and
against the generator's planted truth (who really bought in the 90 days after as_of). At one size
the model size is varied to show what a cheaper explanation costs in accuracy.

A second table does the same on the transactions-only shop (`clarion generate --profile
transactions`): customer, day and amount alone, where the model has to earn its place against
recency/frequency and BG/NBD.

Each size's warehouse (extracted and published once) is kept under bench/out/segment; every
measurement runs in its own process on a copy.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench.extract import DATA, ensure_data
from bench.harness import OUT, measure, report, workdir_settings
from bench.transform import ensure_warehouse

WAREHOUSES = OUT / "segment"
DRIVER_COLUMNS = (
    "driver",
    "customers",
    "top",
    "any",
    "recent_customers",
    "recent_top",
    "recent_any",
    "recent_below_top",
)
SHAPES = ((60, 8, 3), (120, 15, 5), (200, 31, 8))  # (trees, leaves, depth)
TRANSACTIONS = {
    "files": ["transactions*.parquet"],
    "columns": {"customer_id": "contact_id", "order_date": "ordered_at", "amount": "total_amount"},
    "currency": "USD",
}


def publish(workdir: str) -> dict[str, Any]:
    from bench.transform import run_stage

    return run_stage(workdir)


def ensure_published(customers: int) -> Path:
    folder = WAREHOUSES / f"wh-{customers}"
    if (folder / "published").exists():
        return folder / "warehouse.duckdb"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copy(ensure_warehouse(customers), folder / "warehouse.duckdb")
    measure("bench.segment:publish", workdir=str(folder))
    (folder / "published").write_text("ok\n")
    return folder / "warehouse.duckdb"


def ensure_shop(customers: int) -> tuple[Path, Path]:
    """The transactions-only shop of this size: generated, extracted and published once."""
    data = DATA / f"shop-{customers}-parquet"
    if not (data / "manifest.json").exists():
        from clarion.config import GenerateSettings
        from clarion.synth.generator import generate

        generate(GenerateSettings(customers=customers, format="parquet", profile="transactions"), out=data)
    folder = WAREHOUSES / f"shop-{customers}"
    if not (folder / "published").exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        measure(
            "bench.extract:run_extract",
            source={"kind": "files", "path": str(data), "transactions": TRANSACTIONS},
            workdir=str(folder),
        )
        measure("bench.segment:publish", workdir=str(folder))
        (folder / "published").write_text("ok\n")
    return folder / "warehouse.duckdb", data / "truth" / "customers.parquet"


def run_train(workdir: str) -> dict[str, Any]:
    from clarion.segment import runner
    from clarion.warehouse import Warehouse

    settings = workdir_settings(workdir)
    with Warehouse.from_settings(settings).writing("bench"):
        plan = runner.plan(settings, None, None)
        scoring = runner.scoring_snapshot(settings, plan)
        trained = runner.train(settings, plan, scoring)
    return trained


def run_score(workdir: str, truth: str, key: str = "contact_id") -> dict[str, Any]:
    import time

    import duckdb
    import numpy as np

    from clarion.segment import runner
    from clarion.warehouse import Warehouse
    from models import metrics
    from models.features import DRIVER_FAMILY

    settings = workdir_settings(workdir)
    with Warehouse.from_settings(settings).writing("bench"):
        plan = runner.plan(settings, None, None)
        started = time.perf_counter()
        # full_refresh: the day fitted and every customer scored, whatever ran before in the folder
        scoring = runner.scoring_snapshot(settings, plan, "bench", full_refresh=True)
        read_s = time.perf_counter() - started
        version = runner.registry(settings).promoted()
        result = runner.score(settings, "bench", plan, version, scoring, full_refresh=True)
    con = duckdb.connect(f"{workdir}/warehouse.duckdb", read_only=True)
    truth_sql = f"(select {key} as contact_id, * exclude ({key}) from read_parquet('{truth}'))"
    rows = con.execute(
        f"select s.purchase_probability, s.margin, t.will_purchase_90d from ml.customer_scores s "
        f"join {truth_sql} t using (contact_id)"
    ).fetchall()
    p = np.array([r[0] for r in rows])
    margin = np.array([r[1] for r in rows])
    y = np.array([bool(r[2]) for r in rows], dtype=float)
    quality = metrics.classification(y, p, score=margin)
    out = {
        **result["timings"],
        "read_s": read_s,
        "customers": result["customers"],
        "additivity_max_gap": result["additivity_max_gap"],
        "truth_roc_auc": quality["roc_auc"],
        "truth_ece": quality["ece"],
        "at_risk_share": sum(g["share"] for g in result["segments"] if g["segment"].startswith("at_risk")),
        "drivers": [],
    }
    columns = {r[0] for r in con.execute(f"describe select * from {truth_sql}").fetchall()}
    if "drivers" in columns:
        families = ", ".join(f"'{d}': '{f}'" for d, f in DRIVER_FAMILY.items())
        by_driver = con.execute(
            f"""
            with planted as (
                select unnest(string_split(t.drivers, ';')) as driver,
                       t.onset_date < s.as_of and date_diff('day', t.onset_date, s.as_of) <= 120 as recent,
                       s.vs_average = 'below' as below,
                       list_transform(s.reasons, lambda r: r.family) as families
                from ml.customer_scores s join {truth_sql} t using (contact_id)
                where coalesce(t.drivers, '') <> '' and t.onset_date < s.as_of
            )
            select driver, count(*),
                   avg((families[1] = map {{{families}}}[driver])::int),
                   avg(list_contains(families, map {{{families}}}[driver])::int),
                   count(*) filter (where recent),
                   avg((families[1] = map {{{families}}}[driver])::int) filter (where recent),
                   avg(list_contains(families, map {{{families}}}[driver])::int) filter (where recent),
                   avg((families[1] = map {{{families}}}[driver])::int) filter (where recent and below)
            from planted group by driver order by driver
            """
        ).fetchall()
        out["drivers"] = [dict(zip(DRIVER_COLUMNS, r, strict=True)) for r in by_driver]
        (n, top) = con.execute(
            f"""
            select count(*), avg(list_has_any(
                list_transform(s.reasons, lambda r: r.family)[1:1],
                list_transform(string_split(t.drivers, ';'), lambda d: map {{{families}}}[d]))::int)
            from ml.customer_scores s join {truth_sql} t using (contact_id)
            where coalesce(t.drivers, '') <> '' and t.onset_date < s.as_of
              and date_diff('day', t.onset_date, s.as_of) <= 120
            """
        ).fetchone()
        out["recent_planted"], out["recent_driver_top"] = n, top
    con.close()
    return out


def run_floor(workdir: str) -> dict[str, Any]:
    import time

    from clarion.segment import runner
    from models.train import matrix

    settings = workdir_settings(workdir)
    plan = runner.plan(settings, None, None)
    x = matrix(runner.scoring_snapshot(settings, plan))
    forest = runner.registry(settings).promoted().load().propensity
    started = time.perf_counter()
    forest.predict(x, raw_score=True)
    return {"predict_s": time.perf_counter() - started, "customers": len(x)}


def run_shapes(workdir: str) -> list[dict[str, Any]]:
    """Accuracy against explanation speed for a few forest sizes (validation recipe only)."""
    import time

    from clarion.segment import runner, training
    from clarion.warehouse import Warehouse
    from models.explain import explain
    from models.train import ModelParams, matrix, validate

    settings = workdir_settings(workdir)
    out = []
    with Warehouse.from_settings(settings).writing("bench"):
        plan = runner.plan(settings, None, None)
        frames, _ = training.build_frames(settings, plan)
        newer = frames["validation"]
        x = matrix(newer)
        for trees, leaves, depth in SHAPES:
            params = ModelParams(trees=trees, leaves=leaves, max_depth=depth)
            checked = validate(frames["validation_fit"], newer, params, "auto")
            speed = {}
            for method in ("leaf", "lightgbm"):
                started = time.perf_counter()
                explain(checked["model"].propensity, x, method=method)
                speed[method] = len(x) / (time.perf_counter() - started)
            out.append(
                {
                    "shape": f"{trees} trees, {leaves} leaves, depth {depth}",
                    "trees_kept": checked["calibration"].get("trees", trees),
                    "roc_auc": checked["propensity"]["roc_auc"],
                    "pr_auc": checked["propensity"]["pr_auc"],
                    "ece": checked["propensity"]["ece"],
                    "explain_rows_per_s": speed["leaf"],
                    "pred_contrib_rows_per_s": speed["lightgbm"],
                }
            )
    return out


def _copy(db: Path, prefix: str) -> Path:
    work = Path(tempfile.mkdtemp(prefix=prefix))
    shutil.copy(db, work / "warehouse.duckdb")
    return work


def _quality_cells(t: dict[str, Any]) -> list[str]:
    v, b, c = t["validation"], t["baseline"], t["customer_base"]
    return [
        f"{v['roc_auc']:.3f} / {b['roc_auc']:.3f} / {c['roc_auc']:.3f}",
        f"{v['ece']:.3f}",
    ]


def measure_size(db: Path, truth: str, n: int, key: str, shapes: bool) -> dict[str, Any]:
    work = _copy(db, f"bench-segment-{n}-")
    try:
        train = measure("bench.segment:run_train", workdir=str(work))
        score = measure("bench.segment:run_score", workdir=str(work), truth=truth, key=key)
        floor = measure("bench.segment:run_floor", workdir=str(work))
        shaped = measure("bench.segment:run_shapes", workdir=str(work)) if shapes else None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    s = score.result
    steps = s["score_s"] + s["explain_s"] + s["reasons_s"] + s["write_s"]
    return {
        "customers": n,
        "train_s": train.wall_s,
        "train_peak_rss_mb": train.peak_rss_mb,
        "train": train.result,
        "score_wall_s": score.wall_s,
        "score_steps_s": steps,
        "score_peak_rss_mb": score.peak_rss_mb,
        "score": s,
        "floor_predict_s": floor.result["predict_s"],
        "shapes": shaped.result if shaped else None,
    }


def main(sizes: list[int], shapes_at: int | None = 100_000, shop_sizes: list[int] | None = None) -> str:
    header = (
        "| customers | train s (days, customer-days) | train peak MB | out-of-time ROC AUC: model / "
        "recency-frequency / BG/NBD | ECE out of time | score+explain s (score / SHAP / reasons / write) "
        "| customers/s | peak MB | floor s | / floor | truth ROC AUC | truth ECE | at risk | top reason = "
        "planted driver, onset <= 120 days |"
    )
    rows_md = [header, "|---:|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    shop_md = [header.replace(" top reason = planted driver, onset <= 120 days |", ""),
               "|---:|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    records = []
    shapes_md: list[str] = []
    drivers_md: list[str] = []
    runs = [("crm", n) for n in sizes] + [("transactions", n) for n in (shop_sizes or [])]
    for kind, n in runs:
        if kind == "crm":
            db, truth, key = (
                ensure_published(n),
                str(ensure_data(n) / "truth" / "contacts.parquet"),
                "contact_id",
            )
        else:
            db, truth_path = ensure_shop(n)
            truth, key = str(truth_path), "customer_id"
        record = {"kind": kind, **measure_size(db, truth, n, key, kind == "crm" and n == shapes_at)}
        records.append(record)
        print(record, flush=True)
        s, t = record["score"], record["train"]
        steps = record["score_steps_s"]
        split = " / ".join(f"{s[k]:.1f}" for k in ("score_s", "explain_s", "reasons_s", "write_s"))
        cells = [
            f"{n:,}",
            f"{record['train_s']:.1f} ({t['days']}, {t['rows']:,})",
            f"{record['train_peak_rss_mb']:,.0f}",
            *_quality_cells(t),
            f"{steps:.1f} ({split})",
            f"{s['customers'] / steps:,.0f}",
            f"{record['score_peak_rss_mb']:,.0f}",
            f"{record['floor_predict_s']:.2f}",
            f"{steps / record['floor_predict_s']:.0f}x",
            f"{s['truth_roc_auc']:.3f}",
            f"{s['truth_ece']:.3f}",
            f"{s['at_risk_share']:.0%}",
        ]
        if kind == "crm":
            cells.append(f"{s['recent_driver_top']:.0%} of {s['recent_planted']:,}")
            rows_md.append("| " + " | ".join(cells) + " |")
        else:
            shop_md.append("| " + " | ".join(cells) + " |")
        if record["shapes"]:
            shapes_md = [
                f"\nModel size against explanation speed ({n:,} customers, validation recipe; early "
                "stopping may keep fewer trees than the most allowed):\n",
                "| forest | trees kept | out-of-time ROC AUC | PR AUC | ECE | SHAP rows/s, leaf tables "
                "| SHAP rows/s, LightGBM pred_contrib |",
                "|---|---:|---:|---:|---:|---:|---:|",
                *(
                    f"| {r['shape']} | {r['trees_kept']} | {r['roc_auc']:.4f} | {r['pr_auc']:.4f} "
                    f"| {r['ece']:.4f} | {r['explain_rows_per_s']:,.0f} "
                    f"| {r['pred_contrib_rows_per_s']:,.0f} |"
                    for r in record["shapes"]
                ),
            ]
        if kind == "crm" and s.get("drivers"):
            drivers_md = [
                f"\nPlanted churn drivers and the reasons given ({n:,} customers whose onset came before "
                "as_of; the share whose first reason / any of their reasons names the driver's feature "
                "family; last column: those the model scores below the average customer, whose reasons "
                "explain the risk):\n",
                "| driver | customers | first reason | any reason | onset <= 120 days before as_of: "
                "customers | first reason | any reason | first reason, below average |",
                "|---|---:|---:|---:|---:|---:|---:|---:|",
                *(
                    f"| {d['driver']} | {d['customers']:,} | {d['top']:.0%} | {d['any']:.0%} "
                    f"| {d['recent_customers']:,} | {d['recent_top']:.0%} | {d['recent_any']:.0%} "
                    f"| {d['recent_below_top'] or 0:.0%} |"
                    for d in s["drivers"]
                ),
            ]
    notes = (
        "*Train*: stacked snapshots (13 days every 28 days, customers sampled by a hash of the id to about "
        "300,000 customer-days, one dbt build), BG/NBD and Gamma-Gamma fitted per day, validation fit, "
        "production refit (early stopping on the newest day's held-out customers), calibration with the "
        "season, card; once per model version. *Score+explain*: probabilities, expected value, SHAP for "
        "every customer (additivity checked), reason codes, segments, write to ml.customer_scores (every "
        "run); customers/s over those steps. *Floor*: the same forest's raw prediction alone. *Out of "
        "time*: the card's figures on the validation day's customers (ranking on the margin). *Truth*: "
        "the generator's planted purchases in the 90 days after as_of. *At risk*: customers in the two "
        "at-risk segments (relative thresholds: purchase probability below half the shop's mean). Each "
        "measurement in its own process. SHAP values come from `models/treeshap.py` (exact "
        "path-dependent TreeSHAP as a table lookup per leaf; equal to LightGBM's pred_contrib to 1e-9, "
        "tested). Drivers: the reasons are the SHAP order of the model's own attributions; a decline "
        "whose onset came months ago shows first as the lapse itself (the purchase history families), "
        "which predicts better than its cause, so the planted driver comes first for fewer customers "
        "than it appears among their reasons."
    )
    shop = (
        ["\nThe transactions-only shop (`clarion generate --profile transactions`: customer, day and "
         "amount in USD; e-mail, support and delivery empty):\n", *shop_md]
        if shop_sizes
        else []
    )  # fmt: skip
    return report("segment", records, notes, rows_md + shop + shapes_md + drivers_md)
