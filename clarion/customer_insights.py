"""One customer's product recommendations, for the people allowed to see a single customer:
`clarion explain ID` shows them after the score and reasons. (`clarion subject access ID` reads every
``ml`` table with a contact id for the person, so their ``ml.recommendations`` and
``ml.ticket_topics`` rows are in it without a read here; see clarion/subject/access.py.)

Only that customer's rows are read, from the newest settled recommend run.
The read of part REC's ``ml.recommendations`` is the one function below, so a change of its schema
is a change here only.
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
    """The customer's recommendations in the newest settled recommend run (as the export fills them;
    none when that run has none for them), best first: rank, product, reason (its sentence), method,
    as of, whether still on sale."""
    if not relation_exists(con, "ml", "recommendations"):
        return []
    products = (
        _PRODUCTS
        if relation_exists(con, "raw", "products")
        else ("select null::bigint product_id, null name, null category, null::boolean active where false")
    )
    cur = con.execute(
        f"""
        with latest as (
            select run_id from ml.recommendations where run_id not in ({NOT_SETTLED})
            group by run_id order by max(created_at) desc, run_id desc limit 1
        ),
        mine as (
            select * from ml.recommendations where contact_id = ? and run_id = (select run_id from latest)
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
