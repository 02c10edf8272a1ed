"""What the marketer report says, gathered from the warehouse and the model registry: aggregates only.

Every figure here is a count, a share, a mean, a median over a segment of at least
``MIN_GROUP`` customers, or a model-level statistic. No customer row, contact id, name, e-mail,
phone number or ticket text is read into the result: per-customer tables are only ever aggregated
in SQL. Reason codes are summarised by their feature family (a reason's text carries that
customer's own figures, so it is never copied); drafted content is company copy and is shown as
written, with its ``{first_name}`` placeholder left as a placeholder.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import duckdb

from clarion import runs
from clarion.config import Settings
from clarion.currency import shop_currency
from clarion.errors import ClarionError
from clarion.report import content_quality, fairness, insights, oversight
from clarion.report.activity import campaign_results, content, quality, ts
from clarion.segment.scoring import run_thresholds
from clarion.warehouse import Warehouse, relation_exists
from models.features import FAMILIES
from models.registry import Registry, RegistryError
from models.segments import PROFILE_FEATURES, SEGMENTS

REPORT_VERSION = 1
MIN_GROUP = 5  # medians and reason shares of smaller groups could describe a single customer
SCORE_BINS = 10
TOP_DRIVERS = 8
TOP_REASONS = 3
NOT_SCORED = "(not scored)"

SEGMENT_TEXT = {
    "champions": "low churn risk, high 12-month spend",
    "loyal": "low churn risk",
    "promising": "neither clearly staying nor clearly lapsing",
    "new": "joined recently",
    "at_risk_high_value": "high churn risk, high 12-month spend",
    "at_risk_low_value": "high churn risk",
    "hibernating": "no purchase in the last 12 months",
}

FAMILY_TEXT = {
    "recency": "time since the last purchase",
    "frequency": "how often they order",
    "monetary": "how much they spend",
    "rhythm": "the gaps between their purchases",
    "seasonality": "what they bought in the same weeks a year ago",
    "lifecycle": "how likely their purchase pattern says they still buy",
    "tenure": "how long they have been customers",
    "assortment": "how many categories they buy from",
    "price": "how often they buy with a discount",
    "returns": "how often they send orders back",
    "delivery": "late or lost deliveries",
    "engagement": "how they respond to marketing e-mails",
    "support": "support tickets and satisfaction",
}
DIRECTION_TEXT = {"raises_risk": "raises churn risk", "lowers_risk": "lowers churn risk"}

# profile features: label, unit ("n", "eur", "pct", "days")
PROFILE_LABELS: dict[str, tuple[str, str]] = {
    "recency_days": ("days since the last purchase", "days"),
    "orders_365d": ("orders in the last 12 months", "n"),
    "spend_365d_eur": ("spend in the last 12 months", "eur"),
    "avg_order_value_eur": ("average order", "eur"),
    "open_rate_60d": ("e-mail open rate, last 60 days", "pct"),
    "discount_share": ("orders with a discount", "pct"),
    "negative_tickets_90d": ("negative support tickets, last 90 days", "n"),
    "tenure_days": ("days as a customer", "days"),
}

FEATURE_LABELS: dict[str, str] = {
    "recency_days": "days since the last purchase",
    "recency_vs_usual": "time since the last purchase vs the customer's usual gap",
    "has_ordered": "has ever ordered",
    "orders_lifetime": "orders in total",
    "orders_30d": "orders in the last 30 days",
    "orders_90d": "orders in the last 90 days",
    "orders_180d": "orders in the last 180 days",
    "orders_365d": "orders in the last 12 months",
    "orders_decayed_90d": "recent orders, the latest counting most",
    "orders_same_window_last_year": "orders in the same weeks a year ago",
    "spend_lifetime_eur": "spend in total",
    "spend_90d_eur": "spend in the last 90 days",
    "spend_180d_eur": "spend in the last 180 days",
    "spend_prior_180d_eur": "spend in the 180 days before those",
    "spend_365d_eur": "spend in the last 12 months",
    "avg_order_value_eur": "average order value",
    "p_alive": "chance they are still an active customer (BG/NBD)",
    "expected_orders_horizon": "purchases expected in the horizon (BG/NBD)",
    "expected_order_value_eur": "expected order value (Gamma-Gamma)",
    "first_order_days": "days since the first purchase",
    "discount_share_180d": "share of the last 180 days' orders with a discount",
    "discount_share_change_180d": "change in the share of orders with a discount",
    "mean_gap_days": "usual days between purchases",
    "recent_gap_days": "days between the latest purchases",
    "gap_trend_ratio": "purchases slowing down or speeding up",
    "tenure_days": "days as a customer",
    "n_categories": "categories bought from",
    "top_category_share": "share of spend in the favourite category",
    "discount_share": "share of orders with a discount",
    "return_rate": "share of orders returned",
    "delivery_problems_180d": "late or lost deliveries, last 180 days",
    "delivery_problem_share_180d": "share of orders late or lost, last 180 days",
    "email_sends_60d": "marketing e-mails received, last 60 days",
    "open_rate_60d": "e-mail open rate, last 60 days",
    "open_rate_prior_120d": "e-mail open rate, the 120 days before",
    "open_rate_change": "change in e-mail open rate",
    "click_rate_60d": "e-mail click rate, last 60 days",
    "click_rate_prior_120d": "e-mail click rate, the 120 days before",
    "click_rate_change": "change in e-mail click rate",
    "days_since_last_open": "days since the last e-mail opened",
    "unsubscribed": "unsubscribed from e-mail",
    "tickets_90d": "support tickets, last 90 days",
    "negative_tickets_90d": "negative support tickets, last 90 days",
    "negative_tickets_365d": "negative support tickets, last 12 months",
    "avg_satisfaction_365d": "support satisfaction, last 12 months",
}


class ReportError(ClarionError):
    """The report cannot be built (no scoring run yet, an unknown run id...)."""


def collect(settings: Settings, run_id: str | None = None) -> dict[str, Any]:
    """Everything the report shows for one scoring run (default: the latest), aggregates only."""
    with Warehouse.from_settings(settings).read() as con:
        if not relation_exists(con, "ml", "customer_scores") or not relation_exists(con, "ml", "segments"):
            raise ReportError("no scoring run yet: run `clarion run` (or `clarion segment`) first")
        run = _run(con, run_id)
        previous = _previous(con, run)
        thresholds = run_thresholds(con, settings, run["run_id"])
        currency = shop_currency(settings, con)
        headline = _headline(con, run, thresholds["risk_high"])
        before = (
            _headline(con, previous, run_thresholds(con, settings, previous["run_id"])["risk_high"])
            if previous
            else None
        )
        data: dict[str, Any] = {
            "report_version": REPORT_VERSION,
            "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "run": run,
            "previous_run": previous,
            "thresholds": thresholds,
            "currency": {"code": currency.code, "units_per_eur": currency.units_per_eur},
            "headline": headline,
            "change": _change(headline, before) if before else None,
            "segments": _segments(con, run, previous),
            "movement": _movement(con, run, previous) if previous else None,
            "value_risk": _value_risk(con, run, thresholds),
            "score_distribution": _distribution(con, run),
            "profiles": _profiles(con, run),
            "content": content(con, run),
            "content_quality": content_quality.collect(con, run),
            "campaign_results": campaign_results(con),
            "quality": quality(con, run),
            "fairness": fairness.collect(settings, con, run),
            "oversight": oversight.collect(con),
            "recommendations": insights.recommendations(settings, con),
            "voc": insights.voc(settings, con),
        }
    data.update(_model(settings, run["model_version"]))
    return data


# -- runs -------------------------------------------------------------------------------------------
def _run(con: duckdb.DuckDBPyConnection, run_id: str | None) -> dict[str, Any]:
    rows = con.execute(
        "select run_id, any_value(as_of), any_value(model_version), max(scored_at) from ml.segments "
        f"where (? is null and run_id not in ({runs.NOT_SETTLED})) or run_id = ? "
        "group by run_id order by max(scored_at) desc limit 1",
        [run_id, run_id],
    ).fetchall()
    if not rows:
        if run_id is None:
            raise ReportError("no scoring run yet: run `clarion run` (or `clarion segment`) first")
        known = [
            r[0]
            for r in con.execute(
                "select run_id from ml.segments group by run_id order by max(scored_at) desc limit 5"
            ).fetchall()
        ]
        raise ReportError(
            f"no scoring run {run_id!r} in ml.segments; latest runs: {', '.join(known) or 'none'}"
        )
    rid, as_of, version, scored_at = rows[0]
    (horizon,) = con.execute(
        "select any_value(horizon_days) from ml.customer_scores where run_id = ?", [rid]
    ).fetchone()
    run = {
        "run_id": rid,
        "as_of": str(as_of),
        "model_version": version,
        "horizon_days": horizon,
        "scored_at": ts(scored_at),
        "status": None,
        "command": None,
        "code_version": None,
    }
    if relation_exists(con, "audit", "runs"):
        row = con.execute(
            "select status, command, code_version, started_at, finished_at from audit.runs where run_id = ?",
            [rid],
        ).fetchone()
        if row:
            run.update(
                status=row[0],
                command=row[1],
                code_version=row[2],
                started_at=ts(row[3]),
                finished_at=ts(row[4]),
            )
    return run


def _previous(con: duckdb.DuckDBPyConnection, run: dict[str, Any]) -> dict[str, Any] | None:
    row = con.execute(
        "select run_id, any_value(as_of), any_value(model_version), max(scored_at) from ml.segments "
        f"where run_id <> ? and run_id not in ({runs.NOT_SETTLED}) "
        "group by run_id having max(scored_at) < ?::timestamptz "
        "order by max(scored_at) desc limit 1",
        [run["run_id"], run["scored_at"]],
    ).fetchone()
    if row is None:
        return None
    return {"run_id": row[0], "as_of": str(row[1]), "model_version": row[2], "scored_at": ts(row[3])}


# -- headline and segments -------------------------------------------------------------------------
def _headline(con: duckdb.DuckDBPyConnection, run: dict[str, Any], risk_high: float) -> dict[str, Any]:
    n, at_risk, value, prob = con.execute(
        "select count(*), count(*) filter (where churn_risk >= ?), sum(expected_value_eur), "
        "avg(purchase_probability) from ml.customer_scores where run_id = ?",
        [risk_high, run["run_id"]],
    ).fetchone()
    return {
        "customers": int(n),
        "at_risk_customers": int(at_risk),
        "at_risk_share": at_risk / n if n else 0.0,
        "expected_value_eur": float(value or 0.0),
        "mean_purchase_probability": float(prob or 0.0),
        "model_version": run["model_version"],
        "as_of": run["as_of"],
    }


def _change(now: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "customers",
        "at_risk_customers",
        "at_risk_share",
        "expected_value_eur",
        "mean_purchase_probability",
    )
    return {k: now[k] - before[k] for k in keys} | {
        "model_changed": now["model_version"] != before["model_version"]
    }


def _order(names: list[str]) -> list[str]:
    known = [s for s in SEGMENTS if s in names]
    return known + sorted(n for n in names if n not in SEGMENTS)


def _segments(
    con: duckdb.DuckDBPyConnection, run: dict[str, Any], previous: dict[str, Any] | None
) -> list[dict[str, Any]]:
    rows = con.execute(
        "select segment, count(*), avg(churn_risk), avg(expected_value_eur), sum(expected_value_eur), "
        "avg(purchase_probability) from ml.customer_scores where run_id = ? group by segment",
        [run["run_id"]],
    ).fetchall()
    before: dict[str, int] = {}
    if previous:
        before = dict(
            con.execute(
                "select segment, count(*) from ml.customer_scores where run_id = ? group by segment",
                [previous["run_id"]],
            ).fetchall()
        )
    total = sum(r[1] for r in rows) or 1
    by_name = {r[0]: r for r in rows}
    out = []
    for name in _order(list(by_name) + list(before)):
        r = by_name.get(name, (name, 0, None, None, 0.0, None))
        out.append(
            {
                "segment": name,
                "description": SEGMENT_TEXT.get(name, ""),
                "customers": int(r[1]),
                "share": r[1] / total,
                "mean_churn_risk": r[2],
                "mean_expected_value_eur": r[3],
                "expected_value_eur": float(r[4] or 0.0),
                "mean_purchase_probability": r[5],
                "previous_customers": before.get(name) if previous else None,
                "change": (int(r[1]) - before.get(name, 0)) if previous else None,
            }
        )
    return out


def _movement(
    con: duckdb.DuckDBPyConnection, run: dict[str, Any], previous: dict[str, Any]
) -> dict[str, Any]:
    """From -> to counts between the previous scoring run and this one (customers who were scored
    in only one of them count as 'not scored' on the other side)."""
    rows = con.execute(
        """
        select coalesce(a.segment, $none), coalesce(b.segment, $none), count(*)
        from (select contact_id, segment from ml.customer_scores where run_id = $before) a
        full outer join (select contact_id, segment from ml.customer_scores where run_id = $now) b
          using (contact_id)
        group by all
        """,
        {"none": NOT_SCORED, "before": previous["run_id"], "now": run["run_id"]},
    ).fetchall()
    seen = {r[0] for r in rows} | {r[1] for r in rows}
    axis = _order(sorted(seen - {NOT_SCORED})) + ([NOT_SCORED] if NOT_SCORED in seen else [])
    counts = {(a, b): int(n) for a, b, n in rows}
    matrix = [[counts.get((a, b), 0) for b in axis] for a in axis]
    stayed = sum(n for (a, b), n in counts.items() if a == b)
    return {
        "from_run": previous["run_id"],
        "to_run": run["run_id"],
        "segments": axis,
        "matrix": matrix,  # rows: segment in the previous run; columns: segment now
        "stayed": stayed,
        "moved": sum(n for (a, b), n in counts.items() if a != b and NOT_SCORED not in (a, b)),
        "entered": sum(n for (a, _), n in counts.items() if a == NOT_SCORED),
        "left": sum(n for (_, b), n in counts.items() if b == NOT_SCORED),
    }


def _value_risk(con: duckdb.DuckDBPyConnection, run: dict[str, Any], t: dict[str, float]) -> dict[str, Any]:
    """Counts by churn-risk band (the segment thresholds) x expected-value band (median and the
    high-value quantile of this run's expected values)."""
    (cuts,) = con.execute(
        "select quantile_cont(expected_value_eur, [0.5, ?]) from ml.customer_scores where run_id = ?",
        [t["value_high_quantile"], run["run_id"]],
    ).fetchone()
    mid, high = (float(cuts[0]), float(cuts[1])) if cuts else (0.0, 0.0)
    rows = con.execute(
        """
        select case when churn_risk >= $high then 2 when churn_risk >= $low then 1 else 0 end,
               case when expected_value_eur >= $vhigh then 2
                    when expected_value_eur >= $vmid then 1 else 0 end,
               count(*)
        from ml.customer_scores where run_id = $run group by all
        """,
        {"high": t["risk_high"], "low": t["risk_low"], "vhigh": high, "vmid": mid, "run": run["run_id"]},
    ).fetchall()
    counts = [[0, 0, 0] for _ in range(3)]
    for r, v, n in rows:
        counts[r][v] = int(n)
    return {
        "risk_bands": [
            {"band": "low", "from": 0.0, "to": t["risk_low"]},
            {"band": "medium", "from": t["risk_low"], "to": t["risk_high"]},
            {"band": "high", "from": t["risk_high"], "to": 1.0},
        ],
        "value_bands": [
            {"band": "low", "from_eur": None, "to_eur": mid},
            {"band": "medium", "from_eur": mid, "to_eur": high},
            {"band": "high", "from_eur": high, "to_eur": None},
        ],
        "counts": counts,  # [risk band][value band]
    }


def _distribution(con: duckdb.DuckDBPyConnection, run: dict[str, Any]) -> dict[str, Any]:
    rows = dict(
        con.execute(
            f"select least(floor(purchase_probability * {SCORE_BINS})::int, {SCORE_BINS - 1}), count(*) "
            "from ml.customer_scores where run_id = ? and purchase_probability is not null group by 1",
            [run["run_id"]],
        ).fetchall()
    )
    return {
        "bins": [
            {"from": b / SCORE_BINS, "to": (b + 1) / SCORE_BINS, "customers": int(rows.get(b, 0))}
            for b in range(SCORE_BINS)
        ]
    }


# -- profiles ---------------------------------------------------------------------------------------
def _profiles(con: duckdb.DuckDBPyConnection, run: dict[str, Any]) -> list[dict[str, Any]]:
    stored = {
        r[0]: (int(r[1]), json.loads(r[2]) if r[2] else {}, json.loads(r[3]) if r[3] else [], r[4])
        for r in con.execute(
            "select segment, customers, profile, top_drivers, high_value_from_eur from ml.segments "
            "where run_id = ?",
            [run["run_id"]],
        ).fetchall()
    }
    # how many customers of each segment carry a reason of each family and direction
    reasons = con.execute(
        """
        select segment, r.family, r.direction, count(distinct contact_id)
        from (select segment, contact_id, unnest(reasons) as r from ml.customer_scores where run_id = ?)
        group by all
        """,
        [run["run_id"]],
    ).fetchall()
    by_segment: dict[str, list[tuple[str, str, int]]] = {}
    for seg, family, direction, n in reasons:
        by_segment.setdefault(seg, []).append((family, direction, int(n)))
    out = []
    for name in _order(list(stored)):
        customers, profile, firsts, high_cut = stored[name]
        entry: dict[str, Any] = {
            "segment": name,
            "description": SEGMENT_TEXT.get(name, ""),
            "customers": customers,
            "high_value_from_eur": high_cut,
        }
        if customers < MIN_GROUP:
            entry.update(suppressed=True, reasons=[], first_reasons=[], profile=[])
            out.append(entry)
            continue
        top = sorted(by_segment.get(name, []), key=lambda x: (-x[2], x[0], x[1]))[:TOP_REASONS]
        entry["suppressed"] = False
        entry["reasons"] = [
            {
                "family": family,
                "direction": direction,
                "customers": n,
                "share": n / customers,
                "text": f"{FAMILY_TEXT.get(family, family)} ({DIRECTION_TEXT.get(direction, direction)})",
            }
            for family, direction, n in top
        ]
        entry["first_reasons"] = [
            {
                "family": d["family"],
                "customers": int(d["customers"]),
                "share": int(d["customers"]) / customers,
                "text": FAMILY_TEXT.get(d["family"], d["family"]),
            }
            for d in firsts
            if d.get("family") in FAMILIES
        ]
        entry["profile"] = [_profile_row(f, profile.get(f) or {}) for f in PROFILE_FEATURES]
        out.append(entry)
    return out


def _profile_row(feature: str, medians: dict[str, Any]) -> dict[str, Any]:
    label, unit = PROFILE_LABELS.get(feature, (feature.replace("_", " "), "n"))
    seg, pop = medians.get("segment_median"), medians.get("population_median")
    if seg is None or pop is None:
        compare = "unknown"
    elif abs(seg - pop) <= 0.05 * max(abs(pop), 1e-9) or seg == pop:
        compare = "about the same as"
    else:
        compare = "higher than" if seg > pop else "lower than"
    return {
        "feature": feature,
        "label": label,
        "unit": unit,
        "segment_median": seg,
        "population_median": pop,
        "compare": compare,
    }


# -- model ----------------------------------------------------------------------------------------
def _model(settings: Settings, version: str) -> dict[str, Any]:
    """Calibration and global drivers from the model version that scored the run (the promoted
    one when that version is gone from the registry)."""
    reg = Registry(settings.var_dir / "registry")
    try:
        v = reg.get(version)
        source = "scoring"
    except RegistryError:
        v = reg.promoted()
        source = "promoted"
    if v is None:
        return {"model": None, "calibration": None, "drivers": []}
    meta = v.meta
    m = meta.get("metrics", {})
    prop, base = m.get("propensity", {}), m.get("baseline", {})
    model = {
        "version": v.name,
        "source": source,
        "registered_at": meta.get("registered_at"),
        "horizon_days": meta.get("horizon_days"),
        "valid_as_of": meta.get("data", {}).get("valid_as_of"),
        "valid_customers": meta.get("data", {}).get("valid_customers"),
        "roc_auc": prop.get("roc_auc"),
        "baseline_roc_auc": base.get("roc_auc"),
        "pr_auc": prop.get("pr_auc"),
        "brier": prop.get("brier"),
        "ece": prop.get("ece"),
        "lift_top10": prop.get("lift_top10"),
        "calibration_method": (m.get("calibration") or {}).get("method"),
    }
    calibration = {
        "points": [
            {k: p[k] for k in ("bin", "customers", "predicted", "observed")} for p in m.get("reliability", [])
        ],
        "brier": prop.get("brier"),
        "ece": prop.get("ece"),
        "method": model["calibration_method"],
        "customers": model["valid_customers"],
        "as_of": model["valid_as_of"],
    }
    drivers = [
        {
            "feature": d["feature"],
            "label": FEATURE_LABELS.get(d["feature"], d["feature"].replace("_", " ")),
            "family": d.get("family"),
            "mean_abs_shap": float(d["mean_abs_shap"]),
            "mean_shap": float(d.get("mean_shap", 0.0)),
        }
        for d in meta.get("global_drivers", [])[:TOP_DRIVERS]
    ]
    return {"model": model, "calibration": calibration, "drivers": drivers}
