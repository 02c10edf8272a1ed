"""The report's "Recommendations" and "Voice of the customer" sections: aggregates only.

Recommendations: the method the recommend stage chose and its time-split evaluation against the
baselines (from the recommender card in the registry), the products recommended most often (how many
customers have each, and at rank 1) and the mix of reason kinds. No per-customer row, no reason
sentence (a reason names a product the customer bought: it is theirs, so only its kind is counted).

Voice of the customer: topics of support tickets with their volume, negative share, satisfaction,
a monthly trend and example phrases, read from the voc stage's tables (:func:`voc_from_tables`);
the dict's shape is :data:`VOC_SHAPE`. No ticket text is read here, and an example phrase is shown
only when it came from at least ``ml.voc.min_customers_per_phrase`` distinct customers and passes
the PII scrub again (a second lock on a door VOC already closed).

Each section is None when its stage did not run; the renderer then prints one line saying so.
The reads of the two stages' tables are the small functions at the top, so a change of their
schema is a change there only.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb

from clarion.config import Settings
from clarion.privacy.scrub import scrub
from clarion.recommend.views import latest_run
from clarion.report.fmt import e, n, num, pct
from clarion.voc.views import latest_run as latest_voc_run
from clarion.warehouse import relation_exists
from models.registry import Registry, RegistryError

TOP_PRODUCTS = 10
TOP_TOPICS = 8
MIN_GROUP = 5  # as build.MIN_GROUP: a count over fewer customers could describe one person
REASON_TEXT = {
    "bought_with": "bought with a product they bought (co-purchase share)",
    "category": "popular in their favourite category",
    "popular": "one of the shop's most bought products",
}

VOC_SHAPE = """
{
  "run_id": str,                      # the voc run the figures come from
  "tickets": int,                     # tickets with a topic in that run
  "customers": int,                   # distinct customers who wrote them
  "min_customers_per_phrase": int,    # the k of the example phrases
  "topics": [                         # the top topics, most tickets first
    {
      "topic_id": int,
      "topic": str,                   # its name, e.g. "refund · weeks · returned"
      "terms": [str, ...],            # its most characteristic terms, best first
      "tickets": int,
      "customers": int,
      "negative_share": float | None, # 0..1, classifier-negative tickets / tickets
      "avg_satisfaction": float | None,   # 1..5, over tickets with a score
      "examples": [{"phrase": str, "customers": int}, ...],  # scrubbed, >= k customers each
    },
  ],
  "trend": [                          # per topic and month, oldest first
    {"topic_id": int, "month": "YYYY-MM-DD" (first of month), "tickets": int, "negative": int,
     "avg_satisfaction": float | None},
  ],
}
"""


# -- reads (one per table; integration with parts REC and VOC happens here) ------------------------
def recommender_card(settings: Settings, model_version: str | None) -> dict[str, Any] | None:
    """The recommender card's meta (registry model "recommender"): the version that wrote the rows,
    else the promoted one, else the newest; None when there is none."""
    reg = Registry(settings.var_dir / "registry", model="recommender")
    try:
        if model_version:
            return reg.get(model_version).meta
    except RegistryError:
        pass
    try:
        version = reg.promoted()
    except RegistryError:
        version = None
    if version is None:
        versions = reg.versions()
        version = versions[-1] if versions else None
    return version.meta if version else None


def voc_from_tables(con: duckdb.DuckDBPyConnection, top: int = TOP_TOPICS) -> dict[str, Any] | None:
    """:data:`VOC_SHAPE` from ml.voc_topics and ml.voc_trend of the newest settled voc run."""
    run_id = latest_voc_run(con)
    if run_id is None:
        return None
    rows = con.execute(
        "select topic_id, topic, terms, tickets, customers, negative_share, avg_satisfaction, examples "
        "from ml.voc_topics where run_id = ? order by tickets desc, topic_id",
        [run_id],
    ).fetchall()
    topics = [
        {
            "topic_id": int(t[0]),
            "topic": t[1],
            "terms": _json_list(t[2]),
            "tickets": int(t[3]),
            "customers": int(t[4]),
            "negative_share": t[5],
            "avg_satisfaction": t[6],
            "examples": _json_list(t[7]),
        }
        for t in rows
    ]
    trend = []
    if relation_exists(con, "ml", "voc_trend"):
        trend = [
            {
                "topic_id": int(r[0]),
                "month": str(r[1]),
                "tickets": int(r[2]),
                "negative": int(r[3]),
                "avg_satisfaction": r[4],
            }
            for r in con.execute(
                "select topic_id, month, tickets, negative, avg_satisfaction from ml.voc_trend "
                "where run_id = ? order by month, topic_id",
                [run_id],
            ).fetchall()
        ]
    customers = 0
    if relation_exists(con, "ml", "ticket_topics"):
        customers = con.execute(
            "select count(distinct contact_id) from ml.ticket_topics where run_id = ?", [run_id]
        ).fetchone()[0]
    return {
        "run_id": run_id,
        "tickets": sum(t["tickets"] for t in topics),
        "customers": int(customers),
        "min_customers_per_phrase": None,  # the caller knows the setting
        "topics": topics[:top],
        "trend": trend,
    }


# -- collect ----------------------------------------------------------------------------------------
def recommendations(settings: Settings, con: duckdb.DuckDBPyConnection) -> dict[str, Any] | None:
    """The Recommendations section's data, or None when the recommend stage has not run."""
    run_id = latest_run(con)
    if run_id is None:
        return None
    (as_of, customers, rows, version, method) = con.execute(
        "select any_value(as_of)::varchar, count(distinct contact_id), count(*), mode(model_version), "
        "mode(method) from ml.recommendations where run_id = ?",
        [run_id],
    ).fetchone()
    top = con.execute(
        """
        with products as (
            select product_id, name, category from raw.products
            qualify row_number() over (partition by product_id order by updated_at desc nulls last) = 1
        )
        select r.product_id, p.name, p.category, count(distinct r.contact_id) customers,
               count(distinct r.contact_id) filter (where r.rank = 1) first
        from ml.recommendations r left join products p using (product_id)
        where r.run_id = ? group by all
        having count(distinct r.contact_id) >= ?
        order by customers desc, first desc, r.product_id limit ?
        """,
        [run_id, MIN_GROUP, TOP_PRODUCTS],
    ).fetchall()
    mix = con.execute(
        "select reason_kind, count(*) from ml.recommendations where run_id = ? group by 1 order by 2 desc, 1",
        [run_id],
    ).fetchall()
    card = recommender_card(settings, version)
    return {
        "run_id": run_id,
        "as_of": as_of,
        "customers": int(customers),
        "rows": int(rows),
        "method": method,
        "model_version": version,
        "evaluation": card_evaluation(card) if card else None,
        "top_products": [
            {"product_id": int(p), "name": name, "category": cat, "customers": int(c), "rank1": int(f)}
            for p, name, cat, c, f in top
        ],
        "reason_mix": [
            {
                "reason_kind": k,
                "rows": int(c),
                "share": c / rows if rows else 0.0,
                "text": REASON_TEXT.get(k, k),
            }
            for k, c in mix
        ],
    }


def card_evaluation(meta: dict[str, Any]) -> dict[str, Any]:
    """The time-split evaluation from a recommender card's meta (clarion.recommend registers it):
    per method recall@10, NDCG@10, catalogue coverage and the customers measured, the chosen method
    and why, the cut day. The card keeps ``evaluation.methods[m].recall_at_k`` with ``k`` beside it."""
    evaluation = meta.get("evaluation") or {}
    rows = [
        {
            "method": name,
            "recall_at_10": m.get("recall_at_k"),
            "ndcg_at_10": m.get("ndcg_at_k"),
            "coverage": m.get("coverage"),
            "customers": evaluation.get("customers"),
        }
        for name, m in (evaluation.get("methods") or {}).items()
    ]
    return {
        "chosen": meta.get("method"),
        "why": meta.get("why"),
        "cut_day": evaluation.get("cut"),
        "methods": rows,
    }


def voc(settings: Settings, con: duckdb.DuckDBPyConnection) -> dict[str, Any] | None:
    """The VoC section's data (:data:`VOC_SHAPE`), examples held to k customers and the scrub."""
    data = voc_from_tables(con)
    if not data:
        return None
    k = data.get("min_customers_per_phrase") or settings.ml.voc.min_customers_per_phrase
    k = max(int(k), settings.ml.voc.min_customers_per_phrase)
    topics = []
    for t in data.get("topics", []):
        examples = [x for x in (_example(x) for x in t.get("examples") or []) if x and x["customers"] >= k]
        topics.append({**t, "examples": [x for x in examples if scrub(x["phrase"]) == x["phrase"]]})
    return {**data, "min_customers_per_phrase": k, "topics": topics}


def _score(value: float | None) -> str:
    return "-" if value is None else num(value, 2)


def _example(x: Any) -> dict[str, Any] | None:
    """An example phrase as {phrase, customers}; a bare string has no count and is not shown."""
    if isinstance(x, dict) and isinstance(x.get("phrase"), str):
        return {"phrase": x["phrase"], "customers": int(x.get("customers") or 0)}
    return None


def _json_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        value = json.loads(value)
    return list(value)


# -- render -----------------------------------------------------------------------------------------
def summary_lines(d: dict[str, Any]) -> list[str]:
    """One line per section for the e-mail's short versions (aggregates: counts and a topic name)."""
    lines = []
    r, v = d.get("recommendations"), d.get("voc")
    if r:
        lines.append(f"Recommendations: {n(r['customers'])} customers, by {r['method']}.")
    if v and v.get("topics"):
        top = v["topics"][0]
        lines.append(
            f"Voice of the customer: {n(v['tickets'])} tickets; most about {top['topic']} "
            f"({n(top['tickets'])})."
        )
    return lines


def recommendations_html(d: dict[str, Any]) -> str:
    r = d.get("recommendations")
    head = '<section id="recommendations"><h2>Recommendations</h2>'
    if not r:
        return (
            head
            + '<p class="note">The recommend stage did not run: no recommendations to show.</p></section>'
        )
    parts = [
        head,
        f"<p>{n(r['customers'])} customers have product recommendations (run {e(r['run_id'])}, as of "
        f"{e(r['as_of'])}), made by <b>{e(r['method'])}</b>"
        + (f" (recommender {e(r['model_version'])})" if r.get("model_version") else "")
        + ".</p>",
    ]
    ev = r.get("evaluation")
    if ev and ev["methods"]:
        cut = (
            f" fitted on orders before {e(ev['cut_day'])} and measured on the purchases after"
            if ev.get("cut_day")
            else ""
        )
        why = f" ({e(ev['why'])})" if ev.get("why") else ""
        parts.append(
            f"<p>Evaluated by time:{cut}; chosen: <b>{e(ev.get('chosen'))}</b>{why}.</p>"
            '<table class="evaluation"><tr><th>method</th><th class="num">recall@10</th>'
            '<th class="num">NDCG@10</th><th class="num">catalogue coverage</th>'
            '<th class="num">customers measured</th></tr>'
            + "".join(
                f'<tr data-method="{e(m["method"])}"><td>{e(m["method"])}'
                + (" (chosen)" if m["method"] == ev.get("chosen") else "")
                + f'</td><td class="num">{num(m["recall_at_10"])}</td>'
                f'<td class="num">{num(m["ndcg_at_10"])}</td>'
                f'<td class="num">{pct(m["coverage"]) if m["coverage"] is not None else "-"}</td>'
                f'<td class="num">{n(m["customers"]) if m["customers"] is not None else "-"}</td></tr>'
                for m in ev["methods"]
            )
            + "</table>"
        )
    else:
        parts.append('<p class="note">No recommender card in the registry: no evaluation to show.</p>')
    if r["top_products"]:
        parts.append(
            "<h3>Most recommended products</h3><p class='muted'>Products recommended to at least "
            f"{MIN_GROUP} customers.</p><table class='products'><tr><th>product</th><th>category</th>"
            '<th class="num">customers</th><th class="num">as first choice</th></tr>'
            + "".join(
                f'<tr data-product="{p["product_id"]}"><td>{e(p["name"] or p["product_id"])}</td>'
                f"<td>{e(p['category'] or '')}</td><td class='num'>{n(p['customers'])}</td>"
                f"<td class='num'>{n(p['rank1'])}</td></tr>"
                for p in r["top_products"]
            )
            + "</table>"
        )
    parts.append(
        "<h3>Why they were recommended</h3><table class='reasons'><tr><th>reason</th>"
        '<th class="num">recommendations</th><th class="num">share</th></tr>'
        + "".join(
            f'<tr data-reason="{e(m["reason_kind"])}"><td>{e(m["text"])}</td>'
            f'<td class="num">{n(m["rows"])}</td>'
            f'<td class="num">{pct(m["share"])}</td></tr>'
            for m in r["reason_mix"]
        )
        + "</table></section>"
    )
    return "".join(parts)


def voc_html(d: dict[str, Any]) -> str:
    v = d.get("voc")
    head = '<section id="voc"><h2>Voice of the customer</h2>'
    if not v:
        return (
            head
            + '<p class="note">The voc stage did not run: no support-ticket topics to show.</p></section>'
        )
    months = sorted({t["month"] for t in v["trend"]})[-12:]
    names = {t["topic_id"]: t["topic"] for t in v["topics"]}
    per = {(t["topic_id"], t["month"]): t["tickets"] for t in v["trend"]}
    parts = [
        head,
        f"<p>{n(v['tickets'])} support tickets from {n(v['customers'])} customers, grouped into topics by "
        f"what they say (voc run {e(v['run_id'])}). Only counts and scores are shown; an example phrase "
        f"appears only when at least {v['min_customers_per_phrase']} different customers wrote it.</p>",
        "<table class='topics'><tr><th>topic</th><th class='num'>tickets</th><th class='num'>customers</th>"
        "<th class='num'>negative</th><th class='num'>satisfaction (1-5)</th><th>example phrases</th></tr>",
    ]
    for t in v["topics"]:
        examples = "; ".join(f"\u201c{e(x['phrase'])}\u201d ({n(x['customers'])})" for x in t["examples"])
        parts.append(
            f'<tr data-topic="{t["topic_id"]}"><td><b>{e(t["topic"])}</b></td>'
            f"<td class='num'>{n(t['tickets'])}</td><td class='num'>{n(t['customers'])}</td>"
            f"<td class='num'>{pct(t['negative_share']) if t['negative_share'] is not None else '-'}</td>"
            f"<td class='num'>{_score(t['avg_satisfaction'])}</td>"
            f"<td class='small'>{examples}</td></tr>"
        )
    parts.append("</table>")
    if months:
        parts.append(
            "<h3>Tickets per month</h3><table class='trend'><tr><th>topic</th>"
            + "".join(f"<th class='num'>{e(m[:7])}</th>" for m in months)
            + "</tr>"
            + "".join(
                f"<tr><td>{e(name)}</td>"
                + "".join(f"<td class='num'>{n(per.get((tid, m), 0))}</td>" for m in months)
                + "</tr>"
                for tid, name in names.items()
            )
            + "</table>"
        )
    parts.append("</section>")
    return "".join(parts)
