"""The recommend stage: read order lines and products, evaluate every method by time, choose one,
refit it on all the lines before the day and write each customer's top products with reasons
into ``ml.recommendations``; register the recommender card ("recommender" in the model registry).

Order lines are ``raw.order_items`` joined to the published ``marts.fct_orders`` (its contact,
its time; cancelled orders do not count as bought), products are ``raw.products`` (id, name,
category, active). Customers are ``marts.dim_customers`` minus the erased (the suppression list).
The day: the latest scoring run's as_of if there is one, else the day after the latest order.
A rerun of the stage within the same run replaces that run's rows.

The evaluation is the stage's costly part (four methods fitted and measured). It draws at most
``eval_max_customers`` customers at random, since ALS's fit grows with the customers (at a million:
120 s on every customer, 22 s on 200,000). A daily run reuses the promoted recommender's evaluation
while it is younger than ``evaluate_every_days``, was made with the same evaluation settings and the
order lines have not changed by more than ``REEVALUATE_CHANGE`` (`reused_evaluation`). The chosen
method is refitted on the day's lines either way, so every recommendation and reason comes from
today's data.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from clarion import runs
from clarion.config import Settings
from clarion.privacy.suppression import erased_sql
from clarion.recommend.views import card_files
from clarion.warehouse import Warehouse, relation_exists
from models import recommend as rec
from models import recommend_evaluation as evaluation_of
from models.registry import Registry

log = logging.getLogger(__name__)

DDL = """
create table if not exists ml.recommendations (
    run_id varchar, contact_id bigint, as_of date, rank integer, product_id bigint, score double,
    method varchar, reason_kind varchar, reason varchar, because_product_id bigint, support double,
    model_version varchar, created_at timestamptz
)
"""
CANNOT = (
    "cannot recommend: the data has no order lines with product ids (order_items and products); "
    "the orders alone do not say what was bought"
)
EPOCH = date(1970, 1, 1)
# An evaluation is redone when the order lines it measured changed by more than this share.
REEVALUATE_CHANGE = 0.10
# The settings an evaluation depends on: a change in any of them redoes it.
EVALUATION_SETTINGS = (
    "exclude_bought_days",
    "eval_holdout_days",
    "eval_max_customers",
    "als_factors",
    "als_iterations",
)


@dataclass
class Data:
    """The stage's inputs as arrays: products by index (sorted by id), customers by index."""

    product_id: np.ndarray
    names: list[str]
    catalogue: rec.Catalogue
    contact_id: np.ndarray  # customer index -> contact id
    targets: np.ndarray  # customer indexes to recommend for (dim_customers, not erased)
    lines: rec.Lines


def ensure_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(DDL)


def as_of_day(con: duckdb.DuckDBPyConnection) -> tuple[date | None, str]:
    """The latest scoring run's as_of (recommendations describe the same day as the scores), else
    the day after the latest order; None when there are no orders."""
    if relation_exists(con, "ml", "customer_scores"):
        rows = con.execute(
            "select any_value(as_of) from ml.customer_scores "
            f"where run_id not in ({runs.NOT_SETTLED}) group by run_id order by max(scored_at) desc limit 1"
        ).fetchall()
        if rows:
            return rows[0][0], "the latest scoring run's as_of"
    (latest,) = con.execute("select max(timezone('UTC', ordered_at))::date from marts.fct_orders").fetchone()
    return (None if latest is None else latest + timedelta(days=1)), "the day after the latest order"


def has_order_lines(con: duckdb.DuckDBPyConnection) -> bool:
    if not all(relation_exists(con, s, t) for s, t in (("raw", "order_items"), ("raw", "products"))):
        return False
    if not relation_exists(con, "marts", "fct_orders"):
        return False
    (n,) = con.execute(
        "select count(*) from "
        "(select 1 from raw.order_items i join raw.products p using (product_id) limit 1)"
    ).fetchone()
    return n > 0


def read(con: duckdb.DuckDBPyConnection, as_of: date) -> Data:
    """Products, customers and the order lines strictly before ``as_of`` (00:00 UTC)."""
    products = con.execute(
        "select product_id, coalesce(name, 'product ' || product_id) as name, "
        "coalesce(category, 'other') as category, coalesce(active, false) as active "
        "from raw.products where product_id is not null order by product_id"
    ).fetchnumpy()
    product_id = products["product_id"].astype(np.int64)
    categories = sorted({str(c) for c in products["category"].tolist()})
    category = np.searchsorted(categories, products["category"].astype(str))
    catalogue = rec.Catalogue(category.astype(np.int16), products["active"].astype(bool), categories)
    names = [str(x) for x in products["name"].tolist()]
    erased = erased_sql(con, "contact_id")
    targets = (
        con.execute(
            f"select contact_id from marts.dim_customers where contact_id is not null and not ({erased}) "
            "order by contact_id"
        )
        .fetchnumpy()["contact_id"]
        .astype(np.int64)
    )
    raw_lines = con.execute(
        """
        select o.contact_id, i.product_id,
               datediff('day', date '1970-01-01', timezone('UTC', o.ordered_at)::date)::integer as day
        from raw.order_items i
        join marts.fct_orders o on o.order_id = i.order_id
        where not coalesce(o.is_cancelled, false) and o.contact_id is not null
          and o.ordered_at < ?::timestamp at time zone 'UTC'
        """,
        [as_of],
    ).fetchnumpy()
    contact = raw_lines["contact_id"].astype(np.int64)
    product_at = np.searchsorted(product_id, raw_lines["product_id"].astype(np.int64))
    known = (product_at < product_id.size) & (
        product_id[np.minimum(product_at, product_id.size - 1)] == raw_lines["product_id"]
    )
    contact_id, customer = _customer_index(targets, contact)
    lines = rec.Lines(
        customer[known].astype(np.int32),
        product_at[known].astype(np.int32),
        raw_lines["day"][known].astype(np.int32),
        contact_id.size,
        product_id.size,
    )
    return Data(product_id, names, catalogue, contact_id, np.searchsorted(contact_id, targets), lines)


def _customer_index(targets: np.ndarray, contact: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The customers by index (``targets`` and every other contact with lines, sorted) and each
    line's customer index. The lines' contacts are nearly always customers already: then the index
    is ``targets`` itself, found without sorting the 15 million lines of a million customers again
    (``np.union1d``: 1.3 s)."""
    at = np.searchsorted(targets, contact)
    found = at < targets.size
    found[found] = targets[at[found]] == contact[found]
    if found.all():
        return targets, at
    contact_id = np.union1d(targets, contact[~found])
    return contact_id, np.searchsorted(contact_id, contact)


def run(settings: Settings, run_id: str) -> dict[str, Any]:
    """The stage: evaluate, choose, recommend, write, register the card. Returns its summary."""
    started = time.perf_counter()
    with Warehouse.from_settings(settings).connect("recommend") as con:
        ensure_table(con)
        if not has_order_lines(con):
            log.info(CANNOT)
            _write(con, run_id, None)
            return {"recommended": 0, "note": CANNOT}
        as_of, as_of_source = as_of_day(con)
        if as_of is None:
            _write(con, run_id, None)
            return {"recommended": 0, "note": "no orders yet: nothing to recommend from"}
        data = read(con, as_of)
        summary = {"as_of": str(as_of), "as_of_source": as_of_source} | _recommend(settings, data, as_of)
        version = _register(settings, run_id, data, summary)
        table = _rows(
            data, summary.pop("_rows"), summary.pop("_basis"), as_of, version.name, summary["method"]
        )
        _write(con, run_id, table)
    summary.update({"model_version": version.name, "seconds": round(time.perf_counter() - started, 2)})
    log.info(
        "%d recommendations for %d customers by %s (%s)%s",
        summary["recommended"],
        summary["customers"],
        summary["method"],
        summary["why"],
        f"; evaluation reused from {summary['evaluation_reused']['version']}"
        if summary.get("evaluation_reused")
        else "",
    )
    return summary


def _recommend(settings: Settings, data: Data, as_of: date) -> dict[str, Any]:
    r = settings.ml.recommendations
    params = {"factors": r.als_factors, "iterations": r.als_iterations, "num_threads": r.num_threads}
    day = (as_of - EPOCH).days
    lines = data.lines
    latest = int(lines.day.max()) if lines.day.size else day - 1
    cut = latest - r.eval_holdout_days
    order_lines = int((lines.day < day).sum())
    reused = reused_evaluation(settings, as_of, order_lines)
    if reused is not None:
        evaluation, reuse = reused
    else:
        evaluation = evaluation_of.evaluate(
            lines, data.catalogue, cut, day, r.exclude_bought_days, sample=r.eval_max_customers, **params
        )
        evaluation.update({"cut": str(EPOCH + timedelta(days=cut)), "end": str(as_of)})
        evaluation["order_lines"] = order_lines
        reuse = None
    b = rec.basis(lines, data.catalogue, day)
    notes = []
    if not evaluation["methods"]:
        method, why = "popularity", "no evaluation possible"
    elif evaluation["customers"] == 0:
        method, why = "popularity", "no purchases after the evaluation's cut day to measure: the baseline"
    else:
        method, why = evaluation_of.choose(evaluation)
    if r.method != "auto":
        method, why = r.method, f"set in ml.recommendations.method (auto would take {method}: {why})"
    if method in ("cooccurrence", "als") and rec.repeat_buyers(b) < 2:
        notes.append(
            f"cannot fit {method}: fewer than 2 customers bought 2 or more products; "
            "recommending popular products instead"
        )
        method, why = "popularity", notes[-1]
    model = rec.fit(method, b, **params)
    rows = rec.recommend(model, data.catalogue, data.targets, r.top_n, r.exclude_bought_days)
    summary: dict[str, Any] = {
        "recommended": len(rows),
        "customers": int(data.targets.size),
        "method": method,
        "why": why,
        "evaluation": evaluation,
        "data": {
            "customers": int(data.targets.size),
            "buyers": int((np.diff(b.bought.indptr) > 0).sum()),
            "products": int(data.product_id.size),
            "active_products": int(data.catalogue.active.sum()),
            "order_lines": order_lines,
            "repeat_buyers": rec.repeat_buyers(b),
        },
        "coverage": round(np.unique(rows.product).size / max(int(data.catalogue.active.sum()), 1), 4),
        "reason_kinds": {
            rec.KINDS[k]: int(n) for k, n in enumerate(np.bincount(rows.kind, minlength=3)) if n
        },
        "_rows": rows,
        "_basis": b,
    }
    if reuse is not None:
        summary["evaluation_reused"] = reuse
    if notes:
        summary["note"] = "; ".join(notes)
    return summary


def reused_evaluation(
    settings: Settings, as_of: date, order_lines: int
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The promoted recommender's evaluation and where it came from, when it may stand for today's:
    made for a day at most ``evaluate_every_days`` - 1 days before ``as_of`` (never after it), with
    the same evaluation settings, on order lines within ``REEVALUATE_CHANGE`` of today's count, by a
    version not flagged by an erasure. None: evaluate again."""
    r = settings.ml.recommendations
    if r.evaluate_every_days == 0:
        return None
    current = Registry(settings.var_dir / "registry", model="recommender").promoted_for_reuse()
    if current is None:
        return None
    evaluation = current.meta.get("evaluation") or {}
    measured = evaluation.get("order_lines")
    if not evaluation.get("methods") or not evaluation.get("end") or not measured:
        return None
    age = (as_of - date.fromisoformat(evaluation["end"])).days
    if not 0 <= age < r.evaluate_every_days:
        return None
    before = current.meta.get("settings") or {}
    if any(before.get(k) != getattr(r, k) for k in EVALUATION_SETTINGS):
        return None
    if abs(order_lines - measured) > REEVALUATE_CHANGE * measured:
        return None
    made_in = (current.meta.get("evaluation_reused") or {}).get("version", current.name)
    reuse = {
        "version": made_in,
        "age_days": age,
        "order_lines_then": measured,
        "every_days": r.evaluate_every_days,
    }
    return evaluation, reuse


def _rows(
    data: Data, rows: rec.Recommended, b: rec.Basis, as_of: date, version: str, chosen: str
) -> pa.Table:
    has_history = np.diff(b.bought.indptr) > 0
    codes, texts = rec.reason_texts(rows, b, data.catalogue, data.names, has_history)
    method = np.where(rows.tier == rec.TIER_MODEL, 0, np.where(rows.tier == rec.TIER_CATEGORY, 1, 2))
    n = len(rows)
    return pa.table(
        {
            "contact_id": pa.array(data.contact_id[rows.customer]),
            "as_of": pa.repeat(pa.scalar(as_of, pa.date32()), n),
            "rank": pa.array(rows.rank.astype(np.int32)),
            "product_id": pa.array(data.product_id[rows.product]),
            "score": pa.array(rows.score.astype(np.float64)),
            "method": pa.DictionaryArray.from_arrays(
                pa.array(method.astype(np.int32)), [chosen, "category", "popularity"]
            ),
            "reason_kind": pa.DictionaryArray.from_arrays(
                pa.array(rows.kind.astype(np.int32)), list(rec.KINDS)
            ),
            "reason": pa.DictionaryArray.from_arrays(pa.array(codes), texts),
            "because_product_id": pa.array(
                np.where(rows.because >= 0, data.product_id[np.maximum(rows.because, 0)], 0),
                mask=rows.because < 0,
            ),
            "support": pa.array(rows.support, mask=np.isnan(rows.support)),
            "model_version": pa.repeat(pa.scalar(version), n),
        }
    )


def _register(settings: Settings, run_id: str, data: Data, summary: dict[str, Any]) -> Any:
    """A registry version per run: the card (markdown + JSON) and its figures; promoted, since it
    is the recommender that wrote this run's rows."""
    reg = Registry(settings.var_dir / "registry", model="recommender")
    meta = {k: v for k, v in summary.items() if not k.startswith("_")} | {"run_id": run_id}
    meta["settings"] = settings.ml.recommendations.model_dump()
    version = reg.register_files(meta, card_files(meta))
    reg.promote(version.name, f"recommended in run {run_id}")
    return version


def _write(con: duckdb.DuckDBPyConnection, run_id: str, table: pa.Table | None) -> None:
    """Replace this run's rows (none when there is nothing to recommend) in one transaction."""
    cur = con.cursor()  # its own connection: nothing half-read blocks registering the table
    try:
        cur.execute("begin transaction")
        cur.execute("delete from ml.recommendations where run_id = ?", [run_id])
        if table is not None and table.num_rows:
            cur.register("recommendation_rows", table)
            cur.execute(
                """
                insert into ml.recommendations by name
                select ? as run_id, contact_id, as_of, rank, product_id, score,
                       method::varchar as method, reason_kind::varchar as reason_kind,
                       reason::varchar as reason, because_product_id, support, model_version,
                       ? as created_at
                from recommendation_rows
                """,
                [run_id, datetime.now(UTC)],
            )
        cur.execute("commit")
    except BaseException:
        cur.execute("rollback")
        raise
    finally:
        cur.close()
