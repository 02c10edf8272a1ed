"""Transform at several sizes: the dbt build (and the whole gated stage) against one hand-written SQL.

*dbt build* is what the transform stage runs between its gates: the seed, the staging views (ticket
sentiment stored as a table), int_orders, customer_features and customer_labels as tables, the
other marts as views (written once, when published), and every data test (60 nodes), through dbt's
own runner (the flow runs the same build through prefect-dbt, which adds a Prefect task per node).
*Stage* is the library path of the whole stage: raw gate, dbt build, marts gate, publish.
*Floor*, measured in the same run on a copy of the same warehouse: one hand-written DuckDB
statement computing ``customer_features`` from the raw tables (the same columns and definitions,
checked to give the same values), with no other mart, view or test.

Each size's raw tables are extracted once (from the extract benchmark's Parquet CRM) and kept under
bench/out/transform; every measurement runs in its own process on a fresh copy of that warehouse.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

from bench.extract import ensure_data, run_extract
from bench.harness import OUT, measure, report, workdir_settings

WAREHOUSES = OUT / "transform"
AS_OF = date(2026, 7, 1)  # the day after the generator's cutoff: what `clarion transform` resolves to

CATEGORIES = ("apparel", "footwear", "accessories", "home", "beauty", "outdoor", "electronics", "kids")


def lexicon() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The sentiment lexicon of dbt/models/staging/stg_support_tickets.sql, read from the model (a
    copy here drifted: ten negative phrases added there later made the floor count fewer negative
    tickets than the run, and the e2e bench's "same features" check said NO)."""
    from clarion.config import Settings
    from clarion.voc.stage import lexicon_words

    negative, positive = lexicon_words(Settings())
    return tuple(negative), tuple(positive)


def _days(ts: str) -> str:
    return f"timestamptz '{ts} 00:00:00+00:00'"


LINE_EUR = "cast(i.line_amount::double / fx.units_per_eur as decimal(18, 4))"  # as int_order_lines


def floor_sql(as_of: date) -> str:
    """customer_features in one statement, straight from raw (the definitions of the dbt models)."""
    from datetime import timedelta

    def before(days: int) -> str:
        return _days((as_of - timedelta(days=days)).isoformat())

    t0 = _days(as_of.isoformat())
    d60, d90, d180, d365 = before(60), before(90), before(180), before(365)
    shares = ",\n".join(
        f"sum(case when p.category = '{c}' then {LINE_EUR} else 0 end)::double "
        f"/ nullif(sum({LINE_EUR}), 0) as share_{c}"
        for c in CATEGORIES
    )

    def hits(words: tuple[str, ...]) -> str:
        return " + ".join(f"(text_lower like '%{w.replace(chr(39), chr(39) * 2)}%')::int" for w in words)

    negative, positive = lexicon()

    top = ", ".join(f"coalesce(cs.share_{c}, 0)" for c in CATEGORIES)
    share_cols = ",\n".join(f"coalesce(cs.share_{c}, 0) as share_{c}" for c in CATEGORIES)
    return f"""
with fx(currency, units_per_eur) as (values ('EUR', 1.0), ('GBP', 0.85), ('USD', 1.08), ('SEK', 11.3)),
tk as (
    select contact_id, created_at, satisfaction_score,
        case
            when satisfaction_score <= 2 then 'negative'
            when satisfaction_score >= 4 then 'positive'
            when {hits(negative)} > {hits(positive)} then 'negative'
            when {hits(positive)} > {hits(negative)} then 'positive'
            else 'neutral'
        end as sentiment
    from (
        select *, lower(coalesce(subject, '') || ' ' || coalesce(body, '')) as text_lower
        from raw.support_tickets where created_at < {t0}
    )
),
o as (
    select o.order_id, o.contact_id, o.ordered_at,
        cast(o.total_amount::double / fx.units_per_eur as decimal(18, 4)) as total_eur,
        o.status = 'returned' as is_returned,
        coalesce(o.discount_amount > 0, false) or o.discount_code is not null as has_discount,
        coalesce(o.delivery_status in ('late', 'lost'), false) as has_delivery_problem,
        o.currency
    from raw.orders o left join fx on o.currency = fx.currency
    where o.ordered_at < {t0} and o.status <> 'cancelled'
),
os as (
    select contact_id, count(*) as orders_lifetime,
        count(*) filter (ordered_at >= {before(90)}) as orders_90d,
        count(*) filter (ordered_at >= {before(365)}) as orders_365d,
        coalesce(sum(total_eur) filter (not is_returned), 0) as spend_lifetime_eur,
        coalesce(sum(total_eur) filter (not is_returned and ordered_at >= {d90}), 0) as spend_90d_eur,
        coalesce(sum(total_eur) filter (not is_returned and ordered_at >= {d365}), 0) as spend_365d_eur,
        avg(total_eur) as avg_order_value_eur, max(ordered_at) as last_order_at,
        avg(has_discount::double) as discount_share, avg(is_returned::double) as return_rate,
        count(*) filter (ordered_at >= {before(180)}) as orders_180d,
        count(*) filter (has_delivery_problem and ordered_at >= {before(180)}) as delivery_problems_180d
    from o group by contact_id
),
g as (
    select contact_id,
        date_diff('second', lag(ordered_at) over w, ordered_at) as gap_seconds,
        row_number() over (partition by contact_id order by ordered_at desc) as newest_first
    from o window w as (partition by contact_id order by ordered_at)
),
gs as (
    select contact_id, avg(gap_seconds) / 86400.0 as mean_gap_days,
        avg(gap_seconds) filter (newest_first <= 3) / 86400.0 as recent_gap_days
    from g where gap_seconds is not null group by contact_id
),
cs as (
    select o.contact_id, count(distinct p.category) as n_categories,
        {shares}
    from raw.order_items i join o on i.order_id = o.order_id
    left join raw.products p on i.product_id = p.product_id
    left join fx on o.currency = fx.currency
    group by o.contact_id
),
es as (
    select contact_id, campaign_id,
        min(occurred_at) filter (event_type = 'sent') as sent_at,
        bool_or(event_type = 'open')::int as opened, bool_or(event_type = 'click')::int as clicked,
        max(occurred_at) filter (event_type = 'open') as last_open_at,
        bool_or(event_type = 'unsubscribe') as unsubscribed
    from raw.email_events where occurred_at < {t0} group by contact_id, campaign_id
),
e as (
    select contact_id,
        count(*) filter (sent_at >= {d60}) as s60,
        coalesce(sum(opened) filter (sent_at >= {d60}), 0) as o60,
        coalesce(sum(clicked) filter (sent_at >= {d60}), 0) as c60,
        count(*) filter (sent_at < {d60} and sent_at >= {d180}) as s120,
        coalesce(sum(opened) filter (sent_at < {d60} and sent_at >= {d180}), 0) as o120,
        coalesce(sum(clicked) filter (sent_at < {d60} and sent_at >= {d180}), 0) as c120,
        max(last_open_at) as last_open_at, bool_or(unsubscribed) as unsubscribed
    from es group by contact_id
),
t as (
    select contact_id,
        count(*) filter (created_at >= {before(90)}) as tickets_90d,
        count(*) filter (created_at >= {before(365)}) as tickets_365d,
        count(*) filter (sentiment = 'negative' and created_at >= {before(90)}) as negative_tickets_90d,
        count(*) filter (sentiment = 'negative' and created_at >= {before(365)}) as negative_tickets_365d,
        avg(satisfaction_score::double) filter (created_at >= {before(365)}) as avg_satisfaction_365d
    from tk group by contact_id
),
cl as (
    select contact_id, channel, event as consent_event,
        row_number() over (partition by contact_id, channel order by recorded_at desc, consent_id desc) as n
    from raw.consents where recorded_at < {t0}
),
c as (
    select contact_id,
        bool_or(channel = 'email' and n = 1 and consent_event = 'opt_in') as email_consent,
        bool_or(channel = 'sms' and n = 1 and consent_event = 'opt_in') as sms_consent,
        bool_or(consent_event = 'objection') as marketing_objection
    from cl group by contact_id
)
select k.contact_id, date '{as_of.isoformat()}' as as_of,
    (date '{as_of.isoformat()}' - k.signup_date)::double as tenure_days,
    os.contact_id is not null as has_ordered,
    date_diff('second', os.last_order_at, {t0}) / 86400.0 as recency_days,
    coalesce(os.orders_lifetime, 0) as orders_lifetime, coalesce(os.orders_90d, 0) as orders_90d,
    coalesce(os.orders_365d, 0) as orders_365d, coalesce(os.spend_lifetime_eur, 0) as spend_lifetime_eur,
    coalesce(os.spend_90d_eur, 0) as spend_90d_eur, coalesce(os.spend_365d_eur, 0) as spend_365d_eur,
    os.avg_order_value_eur, gs.mean_gap_days, gs.recent_gap_days,
    gs.recent_gap_days / nullif(gs.mean_gap_days, 0) as gap_trend_ratio,
    (date_diff('second', os.last_order_at, {t0}) / 86400.0) / nullif(gs.mean_gap_days, 0) as recency_vs_usual,
    coalesce(cs.n_categories, 0) as n_categories, greatest({top}) as top_category_share,
    {share_cols},
    coalesce(os.discount_share, 0) as discount_share, coalesce(os.return_rate, 0) as return_rate,
    coalesce(os.delivery_problems_180d, 0) as delivery_problems_180d,
    coalesce(os.delivery_problems_180d / nullif(os.orders_180d, 0), 0) as delivery_problem_share_180d,
    coalesce(e.s60, 0) as email_sends_60d, coalesce(e.o60, 0) as email_opens_60d,
    coalesce(e.c60, 0) as email_clicks_60d,
    e.o60 / nullif(e.s60, 0) as open_rate_60d, e.o120 / nullif(e.s120, 0) as open_rate_prior_120d,
    e.o60 / nullif(e.s60, 0) - e.o120 / nullif(e.s120, 0) as open_rate_change,
    e.c60 / nullif(e.s60, 0) as click_rate_60d, e.c120 / nullif(e.s120, 0) as click_rate_prior_120d,
    e.c60 / nullif(e.s60, 0) - e.c120 / nullif(e.s120, 0) as click_rate_change,
    date_diff('second', e.last_open_at, {t0}) / 86400.0 as days_since_last_open,
    coalesce(e.unsubscribed, false) as unsubscribed,
    coalesce(t.tickets_90d, 0) as tickets_90d, coalesce(t.tickets_365d, 0) as tickets_365d,
    coalesce(t.negative_tickets_90d, 0) as negative_tickets_90d,
    coalesce(t.negative_tickets_365d, 0) as negative_tickets_365d, t.avg_satisfaction_365d,
    coalesce(c.email_consent, false) as email_consent, coalesce(c.sms_consent, false) as sms_consent,
    coalesce(c.marketing_objection, false) as marketing_objection
from raw.contacts k
left join os on k.contact_id = os.contact_id
left join gs on k.contact_id = gs.contact_id
left join cs on k.contact_id = cs.contact_id
left join e on k.contact_id = e.contact_id
left join t on k.contact_id = t.contact_id
left join c on k.contact_id = c.contact_id
where k.signup_date < date '{as_of.isoformat()}'
"""


CHECKED = (
    "orders_lifetime",
    "spend_365d_eur",
    "mean_gap_days",
    "recent_gap_days",
    "top_category_share",
    "open_rate_change",
    "days_since_last_open",
    "negative_tickets_90d",
    "avg_satisfaction_365d",
)


def fingerprint(con: Any, table: str) -> dict[str, Any]:
    """Row count and rounded column sums: equal fingerprints mean the floor computes the same thing."""
    sums = ", ".join(f"round(sum({c}::double), 3)" for c in CHECKED)
    row = con.execute(
        f"select count(*), sum(email_consent::int), sum(unsubscribed::int), {sums} from {table}"
    ).fetchone()
    return {"rows": row[0], "values": [float(v) if v is not None else None for v in row[1:]]}


def run_floor(workdir: str) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect(f"{workdir}/warehouse.duckdb", config={"threads": "2", "memory_limit": "4GB"})
    con.execute("set TimeZone = 'UTC'")
    con.execute(f"create or replace table main.floor_features as {floor_sql(AS_OF)}")
    result = fingerprint(con, "main.floor_features")
    con.close()
    return result


def run_dbt_build(workdir: str) -> dict[str, Any]:
    from clarion.transform.dbt import run_dbt
    from clarion.warehouse import Warehouse

    settings = workdir_settings(workdir)
    result = run_dbt(settings, "build", AS_OF)
    nodes = len(result.result.results)
    with Warehouse.from_settings(settings).connect("bench") as con:
        return {"nodes": nodes, **fingerprint(con, "staging.customer_features")}


def run_stage(workdir: str) -> dict[str, Any]:
    """The transform stage's library path: raw gate, dbt build, marts gate, publish."""
    import time

    from clarion.quality.gate import ensure_tables, run_gate
    from clarion.transform.dbt import run_dbt
    from clarion.transform.publish import publish
    from clarion.warehouse import Warehouse

    settings = workdir_settings(workdir)
    warehouse = Warehouse.from_settings(settings)
    steps: dict[str, float] = {}
    with warehouse.writing("bench"):
        started = time.perf_counter()
        with warehouse.connect("bench") as con:
            ensure_tables(con)
            _passed(run_gate(settings, con, "raw", "bench"))
        steps["gate_raw_s"] = time.perf_counter() - started
        started = time.perf_counter()
        run_dbt(settings, "build", AS_OF)
        steps["dbt_s"] = time.perf_counter() - started
        started = time.perf_counter()
        with warehouse.connect("bench") as con:
            _passed(run_gate(settings, con, "marts", "bench"))
            steps["gate_marts_s"] = time.perf_counter() - started
            started = time.perf_counter()
            publish(con, "bench", AS_OF, settings.transform.horizon_days)
            steps["publish_s"] = time.perf_counter() - started
    return steps


def _passed(gate: Any) -> None:
    from clarion.quality.gate import QualityGateError

    if not gate.passed:
        raise QualityGateError(gate)


def ensure_warehouse(customers: int) -> Path:
    """Raw tables for this size, extracted once from the Parquet CRM and kept."""
    folder = WAREHOUSES / f"wh-{customers}"
    db = folder / "warehouse.duckdb"
    if db.exists() and (folder / "extracted").exists():
        return db
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    data = ensure_data(customers)
    run_extract({"kind": "files", "path": str(data)}, str(folder))
    (folder / "extracted").write_text("ok\n")
    return db


def _fresh_copy(db: Path, prefix: str) -> Path:
    work = Path(tempfile.mkdtemp(prefix=prefix))
    shutil.copy(db, work / "warehouse.duckdb")
    return work


def main(sizes: list[int]) -> str:
    rows_md = [
        "| contacts | raw rows | dbt build s | dbt peak MB | stage s (gate raw / dbt / gate marts / publish) "
        "| stage peak MB | floor s | floor peak MB | dbt / floor | stage / floor | same features |",
        "|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    records = []
    for n in sizes:
        db = ensure_warehouse(n)
        import duckdb

        con = duckdb.connect(str(db), read_only=True)
        raw_rows = con.execute(
            "select sum(estimated_size) from duckdb_tables() where schema_name = 'raw'"
        ).fetchone()[0]
        con.close()
        runs = {}
        for name, target in (
            ("floor", "bench.transform:run_floor"),
            ("dbt", "bench.transform:run_dbt_build"),
            ("stage", "bench.transform:run_stage"),
        ):
            work = _fresh_copy(db, f"bench-transform-{name}-{n}-")
            try:
                runs[name] = measure(target, workdir=str(work))
            finally:
                shutil.rmtree(work, ignore_errors=True)
        floor, dbt, stage = runs["floor"], runs["dbt"], runs["stage"]
        same = floor.result["rows"] == dbt.result["rows"] and all(
            (a is None and b is None)
            or (a is not None and b is not None and abs(a - b) <= 1e-6 * max(1, abs(a)))
            for a, b in zip(floor.result["values"], dbt.result["values"], strict=True)
        )
        record = {
            "contacts": n,
            "raw_rows": raw_rows,
            "dbt_s": dbt.wall_s,
            "dbt_cpu_s": dbt.cpu_s,
            "dbt_peak_rss_mb": dbt.peak_rss_mb,
            "dbt_nodes": dbt.result["nodes"],
            "stage_s": stage.wall_s,
            "stage_steps": stage.result,
            "stage_peak_rss_mb": stage.peak_rss_mb,
            "floor_s": floor.wall_s,
            "floor_peak_rss_mb": floor.peak_rss_mb,
            "dbt_ratio": dbt.wall_s / floor.wall_s,
            "stage_ratio": stage.wall_s / floor.wall_s,
            "same_features": same,
            "floor_fingerprint": floor.result,
            "dbt_fingerprint": {k: v for k, v in dbt.result.items() if k != "nodes"},
        }
        records.append(record)
        print(json.dumps(record), flush=True)
        s = stage.result
        steps = " / ".join(f"{s[k]:.1f}" for k in ("gate_raw_s", "dbt_s", "gate_marts_s", "publish_s"))
        cells = [
            f"{n:,}",
            f"{raw_rows:,}",
            f"{dbt.wall_s:.1f}",
            f"{dbt.peak_rss_mb:,.0f}",
            f"{stage.wall_s:.1f} ({steps})",
            f"{stage.peak_rss_mb:,.0f}",
            f"{floor.wall_s:.1f}",
            f"{floor.peak_rss_mb:,.0f}",
            f"{dbt.wall_s / floor.wall_s:.1f}x",
            f"{stage.wall_s / floor.wall_s:.1f}x",
            "yes" if same else "NO",
        ]
        rows_md.append("| " + " | ".join(cells) + " |")
    notes = (
        "*dbt build*: the stage's dbt build (60 nodes: seed, staging views, int_orders, customer_features "
        "and customer_labels as tables, the other marts as views written once at publish, every data "
        "test) through dbt's runner, on a fresh copy of an extracted warehouse (1% defects "
        "quarantined). *Stage*: raw gate + dbt build + marts gate + publish, the library path the "
        "flow runs without the Prefect server (under Prefect, prefect-dbt adds a task per node). "
        "*Floor*: one hand-written DuckDB statement computing `customer_features` from raw; *same "
        "features* compares its row count and column sums with dbt's. Each measurement in its own process."
    )
    return report("transform", records, notes, rows_md)
