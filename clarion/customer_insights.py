"""One customer's product recommendations and support-ticket topics, for the people allowed to see a
single customer: `clarion explain ID` (the recommendations, after the score and reasons) and
`clarion subject access ID` (both, for the person themself).

Only that customer's rows are read (by contact id, from the latest settled run of each stage);
topic names are aggregates over many tickets, and no other customer's text or phrase is shown.
The reads of part REC's ``ml.recommendations`` and part VOC's ``ml.ticket_topics`` are the two
functions below, so a change of their schema is a change here only.
"""

from __future__ import annotations

from typing import Any

import duckdb

from clarion.config import Settings
from clarion.runs import NOT_SETTLED
from clarion.warehouse import Warehouse, relation_exists

_PRODUCTS = """
select product_id, name, category, active from raw.products
qualify row_number() over (partition by product_id order by updated_at desc nulls last) = 1
"""


def recommendations_of(settings: Settings, contact_id: int) -> list[dict[str, Any]]:
    """`recommendations` on the warehouse's read snapshot (`clarion explain ID`)."""
    with Warehouse.from_settings(settings).read() as con:
        return recommendations(con, contact_id)


def recommendations(con: duckdb.DuckDBPyConnection, contact_id: int) -> list[dict[str, Any]]:
    """The customer's recommendations of the newest settled recommend run that has any for them,
    best first: rank, product, reason (its sentence), method, as of, whether still on sale."""
    if not relation_exists(con, "ml", "recommendations"):
        return []
    products = (
        _PRODUCTS
        if relation_exists(con, "raw", "products")
        else ("select null::bigint product_id, null name, null category, null::boolean active where false")
    )
    cur = con.execute(
        f"""
        with mine as (
            select * from ml.recommendations
            where contact_id = ? and run_id not in ({NOT_SETTLED})
            qualify run_id = first_value(run_id) over (order by created_at desc, run_id desc)
        )
        select m.run_id, m.as_of::varchar as_of, m.rank, m.product_id, p.name product, p.category,
               coalesce(p.active, false) active, m.method, m.reason_kind, m.reason, m.model_version
        from mine m left join ({products}) p using (product_id)
        order by m.rank, m.product_id
        """,
        [contact_id],
    )
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def ticket_topics(con: duckdb.DuckDBPyConnection, contact_id: int) -> list[dict[str, Any]]:
    """The topic and tone of each of the customer's tickets, from the newest settled voc run that
    read them: ticket id, created, topic, sentiment, p(negative). No ticket text."""
    if not relation_exists(con, "ml", "ticket_topics"):
        return []
    cur = con.execute(
        f"""
        select run_id, ticket_id, created_at, topic_id, topic, sentiment, p_negative, model_version
        from ml.ticket_topics
        where contact_id = ? and run_id not in ({NOT_SETTLED})
        qualify run_id = max(run_id) over ()
        order by created_at, ticket_id
        """,
        [contact_id],
    )
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def recommendations_text(rows: list[dict[str, Any]]) -> str:
    """`Recommended (run R, as of D, method M): 1. Trail Boots — bought with ... ; 2. ...`"""
    if not rows:
        return "Recommended: none (the recommend stage has not run, or found nothing for this customer)"
    first = rows[0]
    items = []
    for r in rows:
        name = r["product"] or f"product {r['product_id']}"
        off = "" if r["active"] else " (no longer on sale: not sent)"
        items.append(f"  {r['rank']}. {name} \u2014 {r['reason']}{off}")
    head = f"Recommended (run {first['run_id']}, as of {first['as_of']}, {first['method']}):"
    return "\n".join([head, *items])
