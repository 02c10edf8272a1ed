"""The uplift model of past campaigns: who is moved by a message, learnt from treated vs control
customers, validated on held-out customers before next-best-action may use it.

Features describe each customer strictly before their exposure (orders and e-mail engagement up to
the day they were sent to or held out), so nothing the campaign caused leaks into what predicts it.
Three in ten exposed customers (by a hash of their id) are kept out of training and score the model
by its Qini coefficient against random targeting (``models.uplift``); the model is *validated* only
when it beats random rankings at p < 0.05 and each arm holds ``experiments.min_evidence`` customers.
Current customers are then scored with the same features as of the scoring run's day.

The larger arm (usually the treated one) is fitted and validated on at most
``experiments.uplift_arm_ratio`` (default 10) exposures per exposure of the smaller arm, which is
kept whole; each of its exposures is kept or not by a hash of its campaign and customer (the same
rows on every run), and the features of the rows left out are never built. The smaller arm bounds
the precision: a difference of two rates keeps at least 1 / (1 + 1/10) = 91% of the precision every
exposure would give. At 1,000,000 customers the treated arm holds about 32 million exposures, 79
for each control one.

A fitted model is kept in the registry (var/registry/uplift, with its card and its verdict) and
reused by the next runs instead of being fitted and validated again (the exposures' features, two fits and 200
random rankings: most of the results stage) while ``reusable`` allows: fitted for a day less than
``experiments.uplift_refit_every_days`` before the run's, exposures within 10% of the count it
learnt from, the same settings, and no erasure since. A validated model scores the customers on
every run, with today's features; one that did not validate scores no one until it is fitted again.
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from clarion.config.loop import ExperimentsSettings
from models.experiments import ExperimentDataError
from models.registry import Registry, Version
from models.uplift import PARAMS, RANDOM_DRAWS, TREES, TwoModelUplift, qini_vs_random

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
MODEL = "uplift"  # its registry (var/registry/uplift): validated models, which later runs may reuse
REFIT_CHANGE = 0.10  # a stored model is fitted again when the exposures changed by more than this share
BUCKETS = 1_000_000  # an exposure is sampled when the hash of its campaign and customer, modulo this,
# falls below the arm's kept buckets (all of them: every exposure)

COLUMNS = (
    "results_run_id", "trained_at", "status", "reason", "train_customers", "validation_customers",
    "treated", "control", "qini", "random_p95", "p_value", "features", "model_version", "recorded_at",
)  # fmt: skip
DDL = (
    """
    create table if not exists ml.uplift_models (
        results_run_id varchar, trained_at timestamptz, status varchar, reason varchar,
        train_customers bigint, validation_customers bigint, treated bigint, control bigint,
        qini double, random_p95 double, p_value double, features json, model_version varchar,
        recorded_at timestamptz
    )
    """,
    # warehouses made before models were kept (columns are added at the end, in this order)
    "alter table ml.uplift_models add column if not exists model_version varchar",
    "alter table ml.uplift_models add column if not exists recorded_at timestamptz",
    """
    create table if not exists ml.customer_uplift (
        results_run_id varchar, contact_id bigint, as_of date, uplift double, p_treated double,
        p_control double
    )
    """,
)


def _features_sql(anchor: str, source: str) -> str:
    """Features of each (contact_id, anchor) row of ``source``, from data strictly before the anchor.

    Running totals instead of a range join: each customer's orders (and opens and clicks) are
    summed cumulatively once, per distinct timestamp, and an as-of join reads the totals just before
    the anchor and just before the window's start; a window's count is their difference. A range
    join pairs every exposure with every earlier order and event of its customer (about 30 exposures
    and 45 events each in the demo data), which grows with the square of a customer's history.
    tests/test_results.py checks both give the same features. Days are counted between the
    instants' wall times in the session's zone (UTC on the warehouse's connections): the same day
    boundaries as on the zoned values, without a calendar lookup per row (1.5-2.9 s less for the
    4.4 million sampled exposures of a million customers)."""
    return f"""
    with base as (select * from ({source})),
    keys as (
        select distinct contact_id, {anchor} as anchor, {anchor} - interval 365 day as from_365d,
               {anchor} - interval 180 day as from_180d
        from base
    ),
    o as (
        select contact_id, ordered_at as t, min(ordered_at) over (partition by contact_id) as first_t,
               sum(count(*)) over w as orders, sum(sum(total_eur)) over w as spend
        from marts.fct_orders where not is_cancelled
        group by contact_id, ordered_at
        window w as (partition by contact_id order by ordered_at rows unbounded preceding)
    ),
    e as (
        select contact_id, occurred_at as t,
               sum(count(*) filter (where event_type = 'open')) over w as opens,
               sum(count(*) filter (where event_type = 'click')) over w as clicks
        from marts.fct_email_events where event_type in ('open', 'click')
        group by contact_id, occurred_at
        window w as (partition by contact_id order by occurred_at rows unbounded preceding)
    ),
    f as (
        select k.contact_id, k.anchor,
               o_now.t as last_order,
               o_now.first_t as first_order,
               coalesce(o_now.orders, 0) - coalesce(o_then.orders, 0) as orders_365d,
               coalesce(o_now.spend, 0) - coalesce(o_then.spend, 0) as spend_365d_eur,
               coalesce(o_now.spend / o_now.orders, 0) as avg_order_eur,
               coalesce(e_now.opens, 0) - coalesce(e_then.opens, 0) as opens_180d,
               coalesce(e_now.clicks, 0) - coalesce(e_then.clicks, 0) as clicks_180d
        from keys k
        asof left join o o_now on o_now.contact_id = k.contact_id and k.anchor > o_now.t
        asof left join o o_then on o_then.contact_id = k.contact_id and k.from_365d > o_then.t
        asof left join e e_now on e_now.contact_id = k.contact_id and k.anchor > e_now.t
        asof left join e e_then on e_then.contact_id = k.contact_id and k.from_180d > e_then.t
    )
    select b.* exclude ({anchor}),
           coalesce(date_diff('day', f.last_order::timestamp, b.{anchor}::timestamp), 3650)::double
               as recency_days,
           f.orders_365d::double as orders_365d, f.spend_365d_eur::double as spend_365d_eur,
           f.avg_order_eur::double as avg_order_eur,
           coalesce(date_diff('day', f.first_order::timestamp, b.{anchor}::timestamp), 0)::double
               as tenure_days,
           f.opens_180d::double as opens_180d, f.clicks_180d::double as clicks_180d
    from base b
    join f on f.contact_id = b.contact_id and f.anchor = b.{anchor}
    order by b.contact_id, b.{anchor}
    """


def kept_buckets(treated: int, control: int, ratio: int) -> tuple[int, int]:
    """How many of the ``BUCKETS`` hash buckets each arm (treated, control) keeps: the larger arm
    about ``ratio`` exposures per exposure of the smaller one, which keeps every bucket (so does
    an arm within the ratio, and every arm when ``ratio`` is 0)."""
    larger, smaller = max(treated, control), min(treated, control)
    if ratio == 0 or larger <= ratio * smaller:
        return BUCKETS, BUCKETS
    kept = max(1, ratio * smaller * BUCKETS // larger)
    return (kept, BUCKETS) if treated >= control else (BUCKETS, kept)


def exposures_frame(
    con: duckdb.DuckDBPyConnection, kept: tuple[int, int] = (BUCKETS, BUCKETS)
) -> pd.DataFrame:
    """Each sampled exposure's customer, pre-exposure features, arm and whether it converted
    (ordered by customer and time, so a fit sees the same rows in the same order on every run).
    ``kept``: the treated and the control arm's kept buckets (``kept_buckets``); an exposure is in
    the sample when DuckDB's hash of its (campaign, customer), modulo ``BUCKETS``, is below its arm's."""
    sample = ""
    if kept != (BUCKETS, BUCKETS):
        sample = (
            f" and hash(campaign_id, contact_id) % {BUCKETS} "
            f"< case when arm = 'treatment' then {int(kept[0])} else {int(kept[1])} end"
        )
    source = (
        "select contact_id, arm = 'treatment' as treated, converted::int as converted, exposed_at "
        f"from marts.fct_campaign_exposures where not contaminated{sample}"
    )
    return con.execute(_features_sql("exposed_at", source)).df()


def _validation(contact_ids: np.ndarray) -> np.ndarray:
    """A customer's part (training or validation) is fixed by their id, whatever the campaign."""
    return (contact_ids.astype(np.int64) * 2654435761 % 2**32) % 10 < VALIDATION_SHARE


def exposure_counts(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """(treated, control) exposures the model learns from, counted without building features."""
    treated, every = con.execute(
        "select count(*) filter (where arm = 'treatment'), count(*) from marts.fct_campaign_exposures "
        "where not contaminated"
    ).fetchone()
    return int(treated), int(every - treated)


def fit_settings(exp: ExperimentsSettings) -> dict[str, Any]:
    """What a fit and its validation depend on: a stored model fitted under other settings is not
    reused."""
    return json.loads(
        json.dumps(
            {
                "min_evidence": exp.min_evidence,
                "arm_ratio": exp.uplift_arm_ratio,
                "features": FEATURES,
                "trees": TREES,
                "params": PARAMS,
                "validation_share": VALIDATION_SHARE,
                "max_p": MAX_P,
                "random_draws": RANDOM_DRAWS,
            }
        )
    )


def reusable(
    con: duckdb.DuckDBPyConnection,
    exp: ExperimentsSettings,
    registry_root: Path,
    as_of: date,
    exposures: int,
) -> tuple[Version, dict[str, Any]] | None:
    """The promoted uplift model (validated or not) and how it may stand for a fit today: fitted for
    a day at most ``uplift_refit_every_days`` - 1 days before ``as_of`` (never after it), under
    today's settings, on exposures within ``REFIT_CHANGE`` of today's count, the model the last
    results run used, and not flagged by an erasure. None: fit and validate again."""
    every = exp.uplift_refit_every_days
    if every == 0:
        return None
    current = Registry(registry_root, model=MODEL).promoted_for_reuse()
    if current is None or not current.meta.get("as_of") or not current.meta.get("exposures"):
        return None
    age = (as_of - date.fromisoformat(current.meta["as_of"])).days
    if not 0 <= age < every:
        return None
    if current.meta.get("settings") != fit_settings(exp):
        return None
    then = int(current.meta["exposures"])
    if abs(exposures - then) > REFIT_CHANGE * then:
        return None
    last = con.execute(
        "select model_version from ml.uplift_models order by recorded_at desc nulls last limit 1"
    ).fetchone()
    if last is None or last[0] != current.name:
        return None
    if not TwoModelUplift.saved_in(current.path):
        return None
    return current, {
        "version": current.name,
        "as_of": current.meta["as_of"],
        "age_days": age,
        "exposures_then": then,
        "exposures": exposures,
        "every_days": every,
    }


def reuse_text(reuse: dict[str, Any]) -> str:
    days = f"{reuse['age_days']} day{'' if reuse['age_days'] == 1 else 's'}"
    return (
        f"reused uplift {reuse['version']}, fitted for {reuse['as_of']} ({days} before this run's day) "
        f"on {reuse['exposures_then']:,} exposures ({reuse['exposures']:,} now); fitted again after "
        f"{reuse['every_days']} days or a change of more than {REFIT_CHANGE:.0%} in exposures"
    )


def train(
    con: duckdb.DuckDBPyConnection,
    results_run_id: str,
    exp: ExperimentsSettings,
    registry_root: Path,
    scoring: tuple[str, date] | None,
) -> dict[str, Any]:
    """Fit, validate and store the uplift model, or reuse the stored one (``reusable``); score the
    customers of the scoring run with it if it validated. Returns the model's record (status
    ``validated``, ``not validated`` or ``not trained``; ``reused`` when it was not fitted here)."""
    for ddl in DDL:
        con.execute(ddl)
    treated, control = exposure_counts(con)
    found = reusable(con, exp, registry_root, scoring[1], treated + control) if scoring else None
    if found is not None:
        version, reuse = found
        model = TwoModelUplift.load(version.path, FEATURES)
        record = {**version.meta["record"], "model_version": version.name}
        record["reason"] = f"{record['reason']}; {reuse_text(reuse)}"
    else:
        reuse = None
        record, model = _fit(con, exp, treated, control)
    record.update(results_run_id=results_run_id, recorded_at=datetime.now(UTC))
    if reuse is None and model is not None and scoring is not None:  # validated or not: kept
        record["model_version"] = _register(registry_root, record, model, exp, scoring[1])
    con.execute("delete from ml.uplift_models where results_run_id = ?", [results_run_id])
    con.execute(
        f"insert into ml.uplift_models ({', '.join(COLUMNS)}) values ({', '.join('?' * len(COLUMNS))})",
        [record.get(c) for c in COLUMNS],
    )
    con.execute("delete from ml.customer_uplift")  # the current customers' uplift only
    if record["status"] == "validated" and model is not None and scoring is not None:
        _score(con, model, results_run_id, scoring)
    return _plain(record) | ({"reused": reuse} if reuse else {})


def _plain(record: dict[str, Any]) -> dict[str, Any]:
    """The record as JSON holds it (times as ISO strings)."""
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in record.items()}


def _fit(
    con: duckdb.DuckDBPyConnection, exp: ExperimentsSettings, treated: int, control: int
) -> tuple[dict[str, Any], TwoModelUplift | None]:
    """Fit on seven in ten exposed customers and validate on the rest (the record says how it went),
    the larger arm sampled to ``uplift_arm_ratio`` times the smaller; below the evidence floor nothing is
    built or fitted."""
    min_evidence = exp.min_evidence
    record: dict[str, Any] = {
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
        "model_version": None,
    }
    if min(treated, control) < min_evidence:
        record["reason"] = (
            f"{treated:,} treated and {control:,} control exposures; experiments.min_evidence is "
            f"{min_evidence:,} per arm"
        )
        return record, None
    kept = kept_buckets(treated, control, exp.uplift_arm_ratio)
    frame = exposures_frame(con, kept)
    held = _validation(frame["contact_id"].to_numpy())
    arm, converted = frame["treated"].to_numpy(), frame["converted"].to_numpy()
    sampled = _sample_text(kept, {True: treated, False: control}, arm, exp.uplift_arm_ratio)
    x = frame[FEATURES].to_numpy(dtype=np.float64)
    del frame  # at 1,000,000 customers: 32 million rows, so no copy of it is kept
    fit = pd.DataFrame(x[~held], columns=FEATURES, copy=False)
    val = pd.DataFrame(x[held], columns=FEATURES, copy=False)
    del x
    record["train_customers"], record["validation_customers"] = len(fit), len(val)
    try:
        model = TwoModelUplift(seed=0).fit(fit, arm[~held], converted[~held])
        del fit
        check = qini_vs_random(model.predict(val), arm[held], converted[held], seed=0)
    except ExperimentDataError as exc:
        record["reason"] = str(exc)
        return record, None
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
    record["reason"] += sampled
    return record, model


def _sample_text(kept: tuple[int, int], exposures: dict[bool, int], arm: np.ndarray, ratio: int) -> str:
    """What the reason says of the sampled arm (nothing when every exposure was used)."""
    if kept == (BUCKETS, BUCKETS):
        return ""
    sampled = kept[0] < BUCKETS  # True: the treated arm was sampled
    name, other = ("treated", "control") if sampled else ("control", "treated")
    return (
        f"; fitted and validated on a sample of {int((arm == sampled).sum()):,} of {exposures[sampled]:,} "
        f"{name} exposures and every {other} one (experiments.uplift_arm_ratio: {ratio})"
    )


def _register(
    registry_root: Path, record: dict[str, Any], model: TwoModelUplift, exp: ExperimentsSettings, as_of: date
) -> str:
    """A registry version of a fitted model, validated or not (its two classifiers, card and
    figures), promoted: later runs may reuse it (and its verdict: one that did not validate scores no
    one until it is fitted again), and an erasure flags it like every model that learnt from the
    person."""
    reg = Registry(registry_root, model=MODEL)
    meta = {
        "record": {k: v for k, v in _plain(record).items() if k not in ("results_run_id", "recorded_at")},
        "as_of": as_of.isoformat(),
        "exposures": record["treated"] + record["control"],
        "results_run_id": record["results_run_id"],
        "settings": fit_settings(exp),
    }
    with tempfile.TemporaryDirectory() as folder:
        model.save(Path(folder))
        version = reg.register_files(meta, {"card.md": _card(meta)}, Path(folder))
    reg.promote(version.name, f"{record['status']} in results run {record['results_run_id']}")
    return version.name


def _card(meta: dict[str, Any]) -> str:
    r = meta["record"]
    return "\n".join(
        [
            "# Uplift model {version}",
            "",
            "Two LightGBM classifiers (treated, control) of past campaigns' exposures; the predicted uplift",
            "is their difference (models/uplift.py). Used by next-best-action once validated.",
            "",
            f"- status: {r['status']}: {r['reason']}",
            f"- fitted for: {meta['as_of']} (results run {meta['results_run_id']}), at {r['trained_at']}",
            f"- exposures: {meta['exposures']:,} ({r['treated']:,} treated, {r['control']:,} control); "
            f"{r['train_customers']:,} fitted, {r['validation_customers']:,} held out by id",
            f"- validation: Qini {r['qini']:.5f} against random 95th percentile {r['random_p95']:.5f}, "
            f"p = {r['p_value']:.3g} ({meta['settings']['random_draws']} random rankings)",
            f"- features (each strictly before the exposure): {', '.join(meta['settings']['features'])}",
            "",
        ]
    )


def _score(
    con: duckdb.DuckDBPyConnection, model: TwoModelUplift, results_run_id: str, scoring: tuple[str, date]
) -> None:
    """Every customer of the scoring run, with the features as of its day."""
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
