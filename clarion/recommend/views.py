"""What people see of recommendations: the recommender card (registry), the run's summary (CLI,
Prefect artifact) and one customer's list with reasons (`clarion recommend show ID`)."""

from __future__ import annotations

import json
from typing import Any

import duckdb

from clarion.config import Settings
from clarion.runs import NOT_SETTLED
from clarion.warehouse import Warehouse, relation_exists

LABELS = {
    "popularity": "popularity (baseline)",
    "category": "favourite category (baseline)",
    "cooccurrence": "item-item co-occurrence",
    "als": "implicit ALS",
}


def _table(evaluation: dict[str, Any], chosen: str) -> list[str]:
    k = evaluation.get("k", 10)
    lines = [
        f"| method | recall@{k} | NDCG@{k} | coverage | recall@{k} returning | NDCG@{k} returning "
        "| from the model |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m, f in evaluation.get("methods", {}).items():
        mark = " **(chosen)**" if m == chosen else ""
        lines.append(
            f"| {LABELS.get(m, m)}{mark} | {f['recall_at_k']:.4f} | {f['ndcg_at_k']:.4f}{_se(f)} "
            f"| {f['coverage']:.1%} | {f['returning']['recall_at_k']:.4f} "
            f"| {f['returning']['ndcg_at_k']:.4f} | {f['from_model']:.0%} |"
        )
    return lines


def _se(f: dict[str, Any]) -> str:
    return f" ± {f['ndcg_se']:.4f}" if f.get("ndcg_se") else ""


def sample_text(e: dict[str, Any]) -> str:
    """How many customers the evaluation drew, when it drew fewer than all (empty otherwise)."""
    drawn, everyone = e.get("sampled_customers"), e.get("all_customers")
    if not drawn or not everyone or drawn >= everyone:
        return ""
    return (
        f"a random sample of {drawn:,} of the {everyone:,} customers "
        "(ml.recommendations.eval_max_customers), every method fitted on their lines alone"
    )


def reuse_text(s: dict[str, Any]) -> str:
    """Where the evaluation came from, when a run reused it (empty when it evaluated)."""
    reuse = s.get("evaluation_reused")
    if not reuse:
        return ""
    days = f"{reuse['age_days']} day{'' if reuse['age_days'] == 1 else 's'}"
    return (
        f"evaluation reused from recommender {reuse['version']} ({days} old, made on "
        f"{reuse['order_lines_then']:,} order lines; redone when {reuse['every_days']} days old or when "
        "the order lines change by more than 10%); the method was refitted on this run's data"
    )


def card_markdown(meta: dict[str, Any]) -> str:
    """The recommender card: use, data, metrics against the baselines, the choice, limits."""
    e, d = meta["evaluation"], meta["data"]
    s = meta.get("settings", {})
    lines = [
        "# Recommender card: {version}",
        "",
        "## Intended use",
        "",
        f"The top {s.get('top_n', '?')} products to put in front of each customer (`ml.recommendations`, "
        "`clarion recommend show ID`, the `{recommended_product}` placeholder of a brief). Only active "
        f"products a customer has not bought in the last {s.get('exclude_bought_days', '?')} days. Each "
        "recommendation carries a reason that is a fact about the customer's own purchases (bought "
        "with a product they bought, their most bought category, or the shop's popularity); never "
        "from protected attributes, names or contact details.",
        "",
        "## Data",
        "",
        f"As of {meta.get('as_of', '?')} ({meta.get('as_of_source', '')}): {d['customers']:,} customers "
        f"({d['buyers']:,} with purchases, {d['repeat_buyers']:,} with 2 or more products), "
        f"{d['products']:,} products ({d['active_products']:,} active), {d['order_lines']:,} order lines "
        "(cancelled orders excluded).",
        "",
        "## Evaluation by time",
        "",
        *([f"The evaluation ran on {sample_text(e)}.", ""] if sample_text(e) else []),
        f"Fitted on the order lines before {e.get('cut', '?')} (latest order day - "
        f"{s.get('eval_holdout_days', '?')} days), measured on the purchases from that day to "
        f"{e.get('end', '?')}: {e['customers']:,} customers bought a product they had not bought in the "
        f"{s.get('exclude_bought_days', '?')} days before ({e['returning_customers']:,} of them with "
        f"earlier purchases). recall@{e['k']} and NDCG@{e['k']} (binary relevance) are means over those "
        "customers (NDCG with its standard error after ±); coverage is the share of active products "
        'recommended to any of them; "from the model" is the share of rows placed by the method itself '
        "rather than by the fill (favourite category, then popularity).",
        "",
        *_table(e, meta["method"]),
        "",
        f"Chosen: **{LABELS.get(meta['method'], meta['method'])}**: {meta['why']}.",
        *(["", reuse_text(meta)[0].upper() + reuse_text(meta)[1:] + "."] if reuse_text(meta) else []),
        "",
        "## Limitations",
        "",
        "- Implicit feedback only: a purchase is a signal of interest; not buying is not dislike.",
        "- Customers without purchases get the shop's most bought products (their reason says so).",
        "- The evaluation holds one period out; a shop with strong seasons should read it with that in mind.",
        "- A new product has no co-purchases until customers buy it: it reaches people through popularity.",
    ]
    if meta.get("note"):
        lines += ["", f"Note: {meta['note']}"]
    return "\n".join(lines) + "\n"


def card_files(meta: dict[str, Any]) -> dict[str, str]:
    return {"card.md": card_markdown(meta), "card.json": json.dumps(meta, indent=2, default=str)}


def summary_text(s: dict[str, Any]) -> str:
    if not s.get("recommended"):
        return f"recommend   {s.get('note', 'nothing recommended')}"
    e = s["evaluation"]
    lines = [
        f"recommend   {s['recommended']:,} recommendations for {s['customers']:,} customers "
        f"as of {s['as_of']} by {s['method']} (recommender {s['model_version']})",
        f"  why: {s['why']}",
        f"  evaluation: fit before {e['cut']}, measured on {e['customers']:,} customers' purchases after it",
        *([f"  ({sample_text(e)})"] if sample_text(e) else []),
        *([f"  {reuse_text(s)}"] if reuse_text(s) else []),
        f"  {'method':<14} {'recall@10':>10} {'NDCG@10':>9} {'coverage':>9}",
    ]
    for m, f in e["methods"].items():
        lines.append(f"  {m:<14} {f['recall_at_k']:>10.4f} {f['ndcg_at_k']:>9.4f} {f['coverage']:>9.1%}")
    lines.append("  reasons: " + ", ".join(f"{k} {n:,}" for k, n in s["reason_kinds"].items()))
    if s.get("note"):
        lines.append(f"  note: {s['note']}")
    lines.append(
        "  one customer's list: clarion recommend show ID; the card: clarion models show --model recommender"
    )
    return "\n".join(lines)


def summary_markdown(s: dict[str, Any]) -> str:
    if not s.get("recommended"):
        return f"# Recommendations\n\n{s.get('note', 'nothing recommended')}\n"
    e = s["evaluation"]
    lines = [
        "# Recommendations",
        "",
        f"{s['recommended']:,} recommendations for {s['customers']:,} customers as of {s['as_of']} by "
        f"**{LABELS.get(s['method'], s['method'])}** (recommender {s['model_version']}): {s['why']}.",
        "",
        f"Evaluation: fitted before {e['cut']}, measured on {e['customers']:,} customers' "
        "purchases after it"
        + (f", from {sample_text(e)}." if sample_text(e) else ".")
        + (f" The {reuse_text(s)}." if reuse_text(s) else ""),
        "",
        *_table(e, s["method"]),
        "",
        "| reason | rows |",
        "|---|---:|",
        *(f"| {k} | {n:,} |" for k, n in s["reason_kinds"].items()),
    ]
    if s.get("note"):
        lines += ["", f"Note: {s['note']}"]
    return "\n".join(lines) + "\n"


# the catalogue as it is now: raw keeps every load's version of a product
PRODUCTS_NOW = """
select product_id, sku, name, category, active from raw.products
qualify row_number() over (partition by product_id order by updated_at desc nulls last) = 1
"""


def latest_run(con: duckdb.DuckDBPyConnection) -> str | None:
    """The newest recommend run that settled (not failed or interrupted), or None: what explain,
    the export, the report and the API read."""
    if not relation_exists(con, "ml", "recommendations"):
        return None
    row = con.execute(
        f"select run_id from ml.recommendations where run_id not in ({NOT_SETTLED}) "
        "group by run_id order by max(created_at) desc, run_id desc limit 1"
    ).fetchone()
    return row[0] if row else None


def customer(settings: Settings, contact_id: int) -> dict[str, Any] | None:
    """The customer's latest recommendations (of a run that finished) with product names, or None."""
    with Warehouse.from_settings(settings).read() as con:
        return latest_for(con, contact_id)


def latest_for(
    con: duckdb.DuckDBPyConnection, contact_id: int, run_id: str | None = None
) -> dict[str, Any] | None:
    """`customer` on an open connection (the API's read snapshot): the rows of the newest settled
    run (or ``run_id``, when the caller looked it up once) for this customer, best first, with the
    product's name, category and whether it is still on sale now; None when that run has none for
    them (the export fills nothing then either)."""
    run_id = run_id or latest_run(con)
    if run_id is None:
        return None
    products = (
        PRODUCTS_NOW
        if relation_exists(con, "raw", "products")
        else "select null::bigint product_id, null sku, null name, null category, null::boolean active "
        "where false"
    )
    cur = con.execute(
        f"""
        select r.run_id, r.as_of, r.rank, r.product_id, p.name as product, p.category,
               coalesce(p.active, false) as active, r.score, r.method, r.reason_kind, r.reason,
               r.because_product_id, r.support, r.model_version
        from ml.recommendations r
        left join ({products}) p using (product_id)
        where r.run_id = ? and r.contact_id = ?
        order by r.rank, r.product_id
        """,
        [run_id, contact_id],
    )
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    if not rows:
        return None
    head = rows[0]
    return {
        "contact_id": contact_id,
        "run_id": head["run_id"],
        "as_of": str(head["as_of"]),
        "model_version": head["model_version"],
        "method": head["method"],
        "recommendations": [
            {k: v for k, v in r.items() if k not in ("run_id", "as_of", "model_version")} for r in rows
        ],
    }


def customer_text(c: dict[str, Any] | None) -> str:
    """`Recommended (run R, as of D, recommender V):` then `  1. Trail Boots — bought with ...`."""
    if not c:
        return "Recommended: none (the recommend stage has not run, or found nothing for this customer)"
    lines = [f"Recommended (run {c['run_id']}, as of {c['as_of']}, recommender {c['model_version']}):"]
    for r in c["recommendations"]:
        name = r["product"] or f"product {r['product_id']}"
        off = "" if r["active"] else " (no longer on sale: not sent)"
        lines.append(f"  {r['rank']}. {name} \u2014 {r['reason']}{off}")
    return "\n".join(lines)
