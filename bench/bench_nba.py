"""Next best action at several sizes x 5 campaigns: the whole `nba` stage against a floor.

Data: the stage's inputs written straight into a warehouse (no pipeline run: the segment stage at
1M customers costs far more than this one), shaped like the demo's: scores with the seven segments
in the demo's shares, purchase probabilities from a Beta, mean order values log-normal (4% of
customers without orders), e-mail consent 57%, SMS consent 31%, objection 3%, erasures 0.1%, and
about three `sent` e-mails per customer over the 30 days before the scoring day (so the frequency
cap and the cool-down bite). Campaigns: the three example briefs plus two (a rule audience on
e-mail and SMS for EUR 3, a 5% loyalty mail to three segments with a budget), with a prior of 0.5 so
that values compete; holdouts 10%, a 5% global control group.

*NBA*: `clarion.nba.decide`, everything the stage does: briefs, one SQL read of the facts
(audiences, consent, sends, order values, sha256 holdouts), per-pair eligibility and value, the
budgeted arbitration, and the write of one row per customer (with the why-not JSON).
*Floor*: one SQL pass over the same tables computing the value of every (customer, campaign,
channel) pair of the audiences, with consent and objection, summed: what any engine reading these
inputs must at least do. Each measurement runs in its own process on a copy of the warehouse.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from bench.harness import OUT, measure, report, workdir_settings

DATA = OUT / "nba"
REPO = Path(__file__).resolve().parents[1]
AS_OF = "2026-07-01"
SEGMENT_SHARES = {
    "champions": 0.13,
    "loyal": 0.01,
    "promising": 0.57,
    "new": 0.09,
    "at_risk_high_value": 0.01,
    "at_risk_low_value": 0.06,
    "hibernating": 0.13,
}
EXTRA = {
    "reactivate": {
        "audience": {"rule": "churn_risk >= 0.3"},
        "channels": ["email", "sms"],
        "offer": {"discount": "EUR 3"},
    },
    "loyalty-points": {
        "audience": {"segments": ["champions", "loyal", "promising"]},
        "channels": ["email"],
        "offer": {"discount": "5%"},
        "budget": 10_000,
    },
}
SETTINGS = {
    "nba": {"prior_relative_uplift": 0.5},
    "experiments": {"holdout_share": 0.1, "global_control_share": 0.05},
}


def _briefs(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for path in (REPO / "campaigns").glob("*.yaml"):
        shutil.copy(path, folder / path.name)
    base = yaml.safe_load((REPO / "campaigns" / "winback-summer.yaml").read_text())
    for name, change in EXTRA.items():
        brief = {**base, "name": name, **change, "offer": {**base["offer"], **change["offer"]}}
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(brief))


def segment_case(draw: str = "u") -> str:
    """A SQL CASE giving each customer a segment from a uniform draw ``draw``, in SEGMENT_SHARES."""
    cuts, total = [], 0.0
    for name, share in SEGMENT_SHARES.items():
        total += share
        cuts.append(f"when {draw} < {total:.4f} then '{name}'")
    return f"case {' '.join(cuts)} else 'promising' end"


def build(workdir: str, customers: int) -> dict[str, Any]:
    """The inputs of the stage for `customers` customers, in SQL (seeded: the same every time)."""
    from clarion.warehouse import Warehouse

    settings = workdir_settings(workdir)
    Warehouse.from_settings(settings).ensure()
    segment = segment_case()
    with Warehouse.from_settings(settings).connect("bench nba build") as con:
        con.execute("select setseed(0.42)")
        con.execute(
            f"""
            create or replace table ml.customer_scores as
            select 'bench-scores' as run_id, i as contact_id, date '{AS_OF}' as as_of, 90 as horizon_days,
                   'v0001' as model_version, p as purchase_probability, 1 - p as churn_risk,
                   p * 250 as expected_value_eur, {segment} as segment,
                   'their purchase pattern suggests 0.4 purchases in the next 90 days' as reasons_text,
                   'below' as vs_average, now() as scored_at
            from (select i, random() as u, greatest(0.01, least(0.99, random() * random() * 1.6)) as p
                  from range(1, {customers} + 1) t(i))
            """
        )
        con.execute(
            """
            create or replace table marts.customer_features as
            select contact_id, as_of,
                   case when random() < 0.04 then null else exp(4.3 + 0.5 * sqrt(-2 * ln(1 - random()))
                        * cos(2 * pi() * random())) end as avg_order_value_eur
            from ml.customer_scores
            """
        )
        con.execute(
            """
            create or replace table marts.dim_customers as
            select contact_id, random() < 0.57 as email_consent, random() < 0.31 as sms_consent,
                   random() < 0.03 as marketing_objection
            from ml.customer_scores
            """
        )
        con.execute(
            """
            create or replace table raw.contacts as
            select contact_id, 'x' || contact_id || '@example.com' as email,
                   case when random() < 0.9 then '+100' || contact_id end as phone
            from ml.customer_scores
            """
        )
        con.execute(
            f"""
            create or replace table marts.fct_email_events as
            select row_number() over () as event_id, contact_id, 'CMP-' || (k % 9) as campaign_id,
                   'sent' as event_type,
                   timestamptz '{AS_OF} 00:00:00+00' - to_seconds(cast(random() * 30 * 86400 as bigint))
                       as occurred_at
            from ml.customer_scores, range(3) r(k)
            where random() < 0.95
            """
        )
        con.execute(
            "create table if not exists audit.erasures (contact_id bigint, requested_at timestamptz, "
            "reference varchar)"
        )
        con.execute("delete from audit.erasures")
        con.execute("insert into audit.erasures select contact_id, now(), 'b' from ml.customer_scores "
                    "where random() < 0.001")  # fmt: skip
        events = con.execute("select count(*) from marts.fct_email_events").fetchall()[0][0]
    return {"customers": customers, "events": events}


def _settings(workdir: str) -> Any:
    return workdir_settings(workdir, content={"briefs": f"{workdir}/campaigns"}, **SETTINGS)


def run_nba(workdir: str) -> dict[str, Any]:
    from clarion.nba import decide
    from clarion.warehouse import Warehouse

    settings = _settings(workdir)
    with Warehouse.from_settings(settings).writing("bench"):
        summary = decide(settings, "bench-nba")
    return {
        "seconds": summary["seconds"],
        "customers": summary["customers"],
        "decided": summary["decided"],
        "actions": summary["actions"],
        "campaigns": summary["campaigns"],
    }


def run_floor(workdir: str) -> dict[str, Any]:
    """Every pair's value in one SQL pass (no holdouts, caps or arbitration), summed."""
    import duckdb

    from clarion.nba.eligibility import audience_sql
    from models.content.brief import load_briefs
    from models.nba import parse_discount

    settings = _settings(workdir)
    briefs = load_briefs(settings.content.briefs)
    rel, c = settings.nba.prior_relative_uplift, settings.nba.contact_cost
    parts = []
    for b in briefs:
        d = parse_discount(b.offer.discount)
        per_buyer = f"aov * {d.amount / 100}" if d.kind == "percent" else str(d.amount)
        for ch in b.channels:
            ok = {"email": "email_consent", "sms": "sms_consent", "push": "false"}[ch]
            parts.append(
                f"select contact_id, {rel} * p * aov - least(1, p * {1 + rel}) * {per_buyer} - {c} as value "
                f"from base where {audience_sql(b)} and {ok} and not objection"
            )
    con = duckdb.connect(f"{workdir}/warehouse.duckdb", read_only=True)
    try:
        pairs, total = con.execute(
            f"""
            with base as (
                select s.contact_id, s.segment, s.churn_risk, s.purchase_probability,
                       s.expected_value_eur, s.purchase_probability as p,
                       coalesce(f.avg_order_value_eur, 110.0) as aov,
                       d.email_consent, d.sms_consent, d.marketing_objection as objection
                from ml.customer_scores s
                join marts.customer_features f using (contact_id)
                join marts.dim_customers d using (contact_id)
            )
            select count(*), sum(value) from ({" union all ".join(parts)})
            """
        ).fetchall()[0]
    finally:
        con.close()
    return {"pairs": pairs, "value_sum": total}


def ensure_data(customers: int) -> Path:
    folder = DATA / f"wh-{customers}"
    if not (folder / "built").exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        measure("bench.bench_nba:build", workdir=str(folder), customers=customers)
        (folder / "built").write_text("ok\n")
    _briefs(folder / "campaigns")
    return folder


def _copy(folder: Path, name: str) -> Path:
    work = DATA / f"{folder.name}-{name}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copy(folder / "warehouse.duckdb", work / "warehouse.duckdb")
    shutil.copytree(folder / "campaigns", work / "campaigns")
    return work


def main(sizes: list[int]) -> str:
    import os

    records: list[dict[str, Any]] = []
    rows = [
        "| customers | NBA s (the stage's own clock) | NBA peak MB | customers/s | with an action "
        "| refused by budget | floor s | floor peak MB | pairs (floor) | NBA / floor |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    loads = []
    for n in sizes:
        folder = ensure_data(n)
        loads.append(f"{n:,}: {os.getloadavg()[0]:.2f}")
        floor = measure("bench.bench_nba:run_floor", workdir=str(_copy(folder, "floor")))
        work = _copy(folder, "nba")
        nba = measure("bench.bench_nba:run_nba", workdir=str(work))
        shutil.rmtree(work, ignore_errors=True)
        record = {
            "customers": n,
            "nba": {"wall_s": nba.wall_s, "cpu_s": nba.cpu_s, "peak_rss_mb": nba.peak_rss_mb, **nba.result},
            "floor": {"wall_s": floor.wall_s, "peak_rss_mb": floor.peak_rss_mb, **floor.result},
        }
        records.append(record)
        print(record, flush=True)
        rows.append(
            f"| {n:,} | {nba.wall_s:.1f} ({nba.result['seconds']:.1f}) | {nba.peak_rss_mb:,.0f} "
            f"| {n / nba.wall_s:,.0f} | {nba.result['decided']:,} "
            f"| {sum(c['refused_by_budget'] for c in nba.result['campaigns']):,} "
            f"| {floor.wall_s:.2f} | {floor.peak_rss_mb:,.0f} "
            f"| {floor.result['pairs']:,} | {nba.wall_s / floor.wall_s:.1f}x |"
        )
    notes = " ".join(__doc__.split("\n\n", 1)[1].split())
    notes += f" One-minute load average (2 cores) as each size started: {'; '.join(loads)}."
    return report("nba", records, notes, rows, title="Next best action")
