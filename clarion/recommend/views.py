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
            f"| {LABELS.get(m, m)}{mark} | {f['recall_at_k']:.4f} | {f['ndcg_at_k']:.4f} "
            f"| {f['coverage']:.1%} | {f['returning']['recall_at_k']:.4f} "
            f"| {f['returning']['ndcg_at_k']:.4f} | {f['from_model']:.0%} |"
        )
    return lines


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
        f"Fitted on the order lines before {e.get('cut', '?')} (latest order day - "
        f"{s.get('eval_holdout_days', '?')} days), measured on the purchases from that day to "
        f"{e.get('end', '?')}: {e['customers']:,} customers bought a product they had not bought in the "
        f"{s.get('exclude_bought_days', '?')} days before ({e['returning_customers']:,} of them with "
        f"earlier purchases). recall@{e['k']} and NDCG@{e['k']} (binary relevance) are means over those "
        'customers; coverage is the share of active products recommended to any of them; "from the '
        'model" is the share of rows placed by the method itself rather than by the fill (favourite '
        "category, then popularity).",
        "",
        *_table(e, meta["method"]),
        "",
        f"Chosen: **{LABELS.get(meta['method'], meta['method'])}**: {meta['why']}.",
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
        "purchases after it.",
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


def customer(settings: Settings, contact_id: int) -> dict[str, Any] | None:
    """The customer's latest recommendations (of a run that finished) with product names, or None."""
    with Warehouse.from_settings(settings).read() as con:
        if not relation_exists(con, "ml", "recommendations"):
            return None
        return latest_for(con, contact_id)


def latest_for(con: duckdb.DuckDBPyConnection, contact_id: int) -> dict[str, Any] | None:
    """`customer` on an open connection (the API's read snapshot)."""
    cur = con.execute(
        f"""
        with latest as (
            select run_id from ml.recommendations
            where run_id not in ({NOT_SETTLED}) group by run_id order by max(created_at) desc limit 1
        )
        select r.run_id, r.as_of, r.rank, r.product_id, p.name as product, p.category, r.score, r.method,
               r.reason_kind, r.reason, r.because_product_id, r.support, r.model_version
        from ml.recommendations r
        join latest using (run_id)
        left join raw.products p on p.product_id = r.product_id
        where r.contact_id = ?
        order by r.rank
        """,
        [contact_id],
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
        "recommendations": [
            {k: v for k, v in r.items() if k not in ("run_id", "as_of", "model_version")} for r in rows
        ],
    }


def customer_text(c: dict[str, Any]) -> str:
    lines = [f"Recommended (run {c['run_id']}, as of {c['as_of']}, recommender {c['model_version']}):"]
    lines += [f"  {r['rank']}. {r['product']} ({r['category']}): {r['reason']}" for r in c["recommendations"]]
    return "\n".join(lines)
