"""The uplift model of past campaigns: who is moved by a message, learnt from treated vs control
customers, validated on held-out customers before next-best-action may use it.

Features describe each customer strictly before their exposure (orders and e-mail engagement up to
the day they were sent to or held out), so nothing the campaign caused leaks into what predicts it.
Three in ten exposed customers (by a hash of their id) are kept out of training and score the model
by its Qini coefficient against random targeting (``models.uplift``); the model is *validated* only
when it beats random rankings at p < 0.05 and each arm holds ``experiments.min_evidence`` customers.
Current customers are then scored with the same features as of the scoring run's day.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from models.experiments import ExperimentDataError
from models.uplift import TwoModelUplift, qini_vs_random

FEATURES = [
    "recency_days",
    "orders_365d",
    "spend_365d_eur",
    "avg_order_eur",
    "tenure_days",
    "opens_180d",
    "clicks_180d",
]
VALIDATION_SHARE = 3  # of 10: customers whose id hashes to 0..2 score the model, the rest train it
MAX_P = 0.05  # the model must beat random rankings of the held-out customers at this p-value

DDL = (
    """
    create table if not exists ml.uplift_models (
        results_run_id varchar, trained_at timestamptz, status varchar, reason varchar,
        train_customers bigint, validation_customers bigint, treated bigint, control bigint,
        qini double, random_p95 double, p_value double, features json
    )
    """,
    """
    create table if not exists ml.customer_uplift (
        results_run_id varchar, contact_id bigint, as_of date, uplift double, p_treated double,
        p_control double
    )
    """,
)


def _features_sql(anchor: str, source: str) -> str:
    """Features of each (contact_id, anchor) row of ``source``, from data strictly before the anchor."""
    return f"""
    with base as (select * from ({source})),
    o as (
        select b.contact_id, b.{anchor} as anchor,
               max(o.ordered_at) as last_order, min(o.ordered_at) as first_order,
               count(o.order_id) filter (where o.ordered_at >= b.{anchor} - interval 365 day) as orders_365d,
               coalesce(sum(o.total_eur) filter (where o.ordered_at >= b.{anchor} - interval 365 day), 0)
                   as spend_365d_eur,
               coalesce(avg(o.total_eur), 0) as avg_order_eur
        from base b
        left join marts.fct_orders o
            on o.contact_id = b.contact_id and o.ordered_at < b.{anchor} and not o.is_cancelled
        group by all
    ),
    m as (
        select b.contact_id, b.{anchor} as anchor,
               count(*) filter (where e.event_type = 'open') as opens_180d,
               count(*) filter (where e.event_type = 'click') as clicks_180d
        from base b
        left join marts.fct_email_events e
            on e.contact_id = b.contact_id and e.occurred_at < b.{anchor}
           and e.occurred_at >= b.{anchor} - interval 180 day
        group by all
    )
    select b.*,
           coalesce(date_diff('day', o.last_order, b.{anchor}), 3650)::double as recency_days,
           o.orders_365d::double as orders_365d, o.spend_365d_eur, o.avg_order_eur,
           coalesce(date_diff('day', o.first_order, b.{anchor}), 0)::double as tenure_days,
           m.opens_180d::double as opens_180d, m.clicks_180d::double as clicks_180d
    from base b
    join o on o.contact_id = b.contact_id and o.anchor = b.{anchor}
    join m on m.contact_id = b.contact_id and m.anchor = b.{anchor}
    order by b.contact_id, b.{anchor}
    """


def exposures_frame(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every exposure with its pre-exposure features, its arm and whether it converted."""
    source = (
        "select campaign_id, contact_id, arm = 'treatment' as treated, converted::int as converted, "
        "exposed_at from marts.fct_campaign_exposures where not contaminated"
    )
    return con.execute(_features_sql("exposed_at", source)).df()


def _validation(contact_ids: np.ndarray) -> np.ndarray:
    """A customer's part (training or validation) is fixed by their id, whatever the campaign."""
    return (contact_ids.astype(np.int64) * 2654435761 % 2**32) % 10 < VALIDATION_SHARE


def train(
    con: duckdb.DuckDBPyConnection,
    results_run_id: str,
    min_evidence: int,
    scoring: tuple[str, date] | None,
) -> dict[str, Any]:
    """Fit, validate and store the uplift model; score the customers of the scoring run if it
    validates. Returns the model's record (status ``validated``, ``not validated`` or ``not trained``)."""
    for ddl in DDL:
        con.execute(ddl)
    frame = exposures_frame(con)
    treated = int(frame["treated"].sum())
    control = len(frame) - treated
    record: dict[str, Any] = {
        "results_run_id": results_run_id,
        "trained_at": datetime.now(UTC),
        "status": "not trained",
        "reason": "",
        "train_customers": 0,
        "validation_customers": 0,
        "treated": treated,
        "control": control,
        "qini": None,
        "random_p95": None,
        "p_value": None,
        "features": json.dumps(FEATURES),
    }
    held = _validation(frame["contact_id"].to_numpy())
    fit, val = frame[~held], frame[held]
    record["train_customers"], record["validation_customers"] = len(fit), len(val)
    model = None
    if min(treated, control) < min_evidence:
        record["reason"] = (
            f"{treated:,} treated and {control:,} control exposures; experiments.min_evidence is "
            f"{min_evidence:,} per arm"
        )
    else:
        try:
            model = TwoModelUplift(seed=0).fit(fit[FEATURES], fit["treated"], fit["converted"])
            check = qini_vs_random(model.predict(val[FEATURES]), val["treated"], val["converted"], seed=0)
        except ExperimentDataError as exc:
            record["reason"] = str(exc)
            model = None
        else:
            record.update(qini=check.qini, random_p95=check.random_p95, p_value=check.p_value)
            if check.p_value < MAX_P:
                record["status"] = "validated"
                record["reason"] = f"beats random targeting of held-out customers (p = {check.p_value:.3g})"
            else:
                record["status"] = "not validated"
                record["reason"] = (
                    f"no better than random targeting of held-out customers (Qini {check.qini:.5f}, "
                    f"random 95th percentile {check.random_p95:.5f}, p = {check.p_value:.3g})"
                )
    con.execute("delete from ml.uplift_models where results_run_id = ?", [results_run_id])
    marks = ", ".join("?" * len(record))
    con.execute(f"insert into ml.uplift_models values ({marks})", list(record.values()))
    con.execute("delete from ml.customer_uplift")  # the current customers' uplift only
    if record["status"] == "validated" and model is not None and scoring is not None:
        scoring_run, as_of = scoring
        con.execute(
            "create or replace temp table uplift_now as select contact_id, ?::timestamptz as as_of_ts "
            "from ml.customer_scores where run_id = ?",
            [as_of.isoformat(), scoring_run],
        )
        now = con.execute(_features_sql("as_of_ts", "select * from uplift_now")).df()
        con.execute("drop table uplift_now")
        p_t, p_c = model.predict_arms(now[FEATURES])
        out = pd.DataFrame(
            {
                "results_run_id": results_run_id,
                "contact_id": now["contact_id"],
                "as_of": as_of,
                "uplift": p_t - p_c,
                "p_treated": p_t,
                "p_control": p_c,
            }
        )
        con.register("customer_uplift_new", out)
        con.execute("insert into ml.customer_uplift select * from customer_uplift_new")
        con.unregister("customer_uplift_new")
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in record.items()}
