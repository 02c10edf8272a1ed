"""Rows of the recommend and voc stages (parts REC and VOC of issue 19), made here from a real run's
own customers, orders, products and tickets, so the export, the report and the explanations can be
tested before those stages land. Table schemas as in the design (plan/DESIGN-19.md).

The recommendations are made honestly, so that every sentence in them is true for its person: for
each customer, the products most often bought by the buyers of a product they bought (and that they
did not buy), with the exact share as the reason. Ticket topics are the tickets' CRM category.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb

RECOMMENDATIONS_DDL = """
create schema if not exists ml;
create table if not exists ml.recommendations (
    run_id varchar, contact_id bigint, as_of date, rank integer, product_id bigint, score double,
    method varchar, reason_kind varchar, reason varchar, because_product_id bigint, support double,
    model_version varchar, created_at timestamptz
)
"""
VOC_DDL = """
create schema if not exists ml;
create table if not exists ml.ticket_topics (
    run_id varchar, ticket_id bigint, contact_id bigint, created_at timestamptz, topic_id integer,
    topic varchar, sentiment varchar, p_negative double, model_version varchar
);
create table if not exists ml.voc_topics (
    run_id varchar, topic_id integer, topic varchar, terms json, tickets bigint, customers bigint,
    negative_share double, avg_satisfaction double, examples json
);
create table if not exists ml.voc_trend (
    run_id varchar, topic_id integer, month date, tickets bigint, negative bigint, avg_satisfaction double
)
"""
TOPIC_TERMS = {  # the planted "topic" of a ticket is its category here; names in VOC's style
    "delivery": ["delivery", "late", "parcel"],
    "refund": ["refund", "weeks", "returned"],
    "product": ["item", "faulty", "size"],
    "account": ["account", "login", "password"],
    "billing": ["charged", "invoice", "payment"],
}


def plant_recommendations(
    con: duckdb.DuckDBPyConnection, run_id: str, top_n: int = 3, created_at: str = "2026-07-01 06:00:00+00"
) -> int:
    """ml.recommendations rows of ``run_id``: co-occurrence over the customers' own order lines, with
    true reasons ("bought with A by 31% of its buyers"); customers without orders get none."""
    con.execute(RECOMMENDATIONS_DDL)
    con.execute(
        f"""
        insert into ml.recommendations
        with lines as (
            select distinct o.contact_id, i.product_id
            from raw.orders o join raw.order_items i using (order_id)
        ),
        buyers as (select product_id, count(*) n from lines group by 1),
        pairs as (
            select a.product_id a, b.product_id b, count(*) n
            from lines a join lines b on a.contact_id = b.contact_id and a.product_id <> b.product_id
            group by 1, 2
        ),
        shares as (select p.a, p.b, p.n / bu.n support from pairs p join buyers bu on bu.product_id = p.a),
        candidates as (
            select l.contact_id, s.b product_id, s.a because, s.support
            from lines l join shares s on s.a = l.product_id
            where not exists (select 1 from lines m where m.contact_id = l.contact_id and m.product_id = s.b)
            qualify row_number() over (partition by l.contact_id, s.b order by s.support desc, s.a) = 1
        ),
        ranked as (
            select *, row_number() over (partition by contact_id order by support desc, product_id) rank
            from candidates
        )
        select ?, r.contact_id, date '2026-07-01', r.rank, r.product_id, r.support, 'cooccurrence',
               'bought_with',
               'bought with ' || p.name || ' by ' || round(100 * r.support)::int || '% of its buyers',
               r.because, r.support, 'v0001', ?::timestamptz
        from ranked r join raw.products p on p.product_id = r.because
        where r.rank <= {int(top_n)}
        """,
        [run_id, created_at],
    )
    return con.execute("select count(*) from ml.recommendations where run_id = ?", [run_id]).fetchone()[0]


def plant_voc(con: duckdb.DuckDBPyConnection, run_id: str, min_customers: int = 5) -> int:
    """ml.ticket_topics / voc_topics / voc_trend of ``run_id`` from raw.support_tickets: topic =
    category, sentiment from the satisfaction score; examples are the CRM's subject lines written by
    at least ``min_customers`` customers, and one phrase written by fewer (it must never be shown)."""
    con.execute(VOC_DDL)
    names = {c: " \u00b7 ".join(t) for c, t in TOPIC_TERMS.items()}
    con.execute(
        """
        insert into ml.ticket_topics
        select ?, ticket_id, contact_id, created_at,
               dense_rank() over (order by category)::int - 1,
               (select unnest(map_extract(?::map(varchar, varchar), category))),
               case when satisfaction_score <= 2 then 'negative' when satisfaction_score >= 4 then 'positive'
                    else 'neutral' end,
               case when satisfaction_score <= 2 then 0.9 else 0.1 end, 'voc-v0001'
        from raw.support_tickets
        """,
        [run_id, names],
    )
    topics = con.execute(
        """
        select t.topic_id, t.topic, any_value(s.category), count(*), count(distinct t.contact_id),
               avg((t.sentiment = 'negative')::int), avg(s.satisfaction_score)
        from ml.ticket_topics t join raw.support_tickets s using (ticket_id)
        where t.run_id = ? group by 1, 2 order by 1
        """,
        [run_id],
    ).fetchall()
    for tid, topic, category, tickets, customers, neg, sat in topics:
        phrases = con.execute(
            """
            select lower(s.subject), count(distinct s.contact_id) from raw.support_tickets s
            where s.category = ? group by 1 having count(distinct s.contact_id) >= ?
            order by 2 desc, 1 limit 2
            """,
            [category, min_customers],
        ).fetchall()
        examples = [{"phrase": p, "customers": int(c)} for p, c in phrases]
        examples.append({"phrase": "only two people wrote this", "customers": 2})  # below k
        con.execute(
            "insert into ml.voc_topics values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                run_id,
                tid,
                topic,
                json.dumps(TOPIC_TERMS[category]),
                tickets,
                customers,
                neg,
                sat,
                json.dumps(examples),
            ],
        )
    con.execute(
        """
        insert into ml.voc_trend
        select t.run_id, t.topic_id, date_trunc('month', t.created_at)::date, count(*),
               count(*) filter (where t.sentiment = 'negative'), avg(s.satisfaction_score)
        from ml.ticket_topics t join raw.support_tickets s using (ticket_id)
        where t.run_id = ? group by all
        """,
        [run_id],
    )
    return len(topics)


def register_recommender_card(registry: Path, version: str = "v0001") -> dict[str, Any]:
    """A recommender card as part REC registers it (models.registry layout: <root>/recommender/vNNNN/
    meta.json), with evaluation figures in the shape the report reads (insights.card_evaluation)."""

    def figures(recall: float, ndcg: float, coverage: float) -> dict[str, float]:
        return {"recall_at_k": recall, "ndcg_at_k": ndcg, "coverage": coverage}

    meta = {
        "model": "recommender",
        "version": version,
        "method": "cooccurrence",
        "why": "best NDCG@10 in the time split",
        "data": {"customers": 300, "products": 500},
        "evaluation": {
            "k": 10,
            "customers": 97,
            "cut": "2026-05-02",
            "methods": {
                "popularity": figures(0.041, 0.020, 0.02),
                "category": figures(0.063, 0.031, 0.05),
                "cooccurrence": figures(0.118, 0.064, 0.31),
                "als": figures(0.090, 0.047, 0.22),
            },
        },
    }
    folder = registry / "recommender" / version
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").write_text(json.dumps(meta))
    (registry / "recommender" / "index.json").write_text(
        json.dumps({"model": "recommender", "promoted": version, "events": []})
    )
    return meta
