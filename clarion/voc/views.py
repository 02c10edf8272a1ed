"""What people see of the voice of the customer: the stage's summary (CLI, Prefect artifact), the
topics of the latest run (`clarion voc topics`) and the report's section data
(:func:`report_section`). Aggregates only: topic names, counts, scores, and example phrases that
passed the scrub and were written by at least ``min_customers_per_phrase`` distinct customers."""

from __future__ import annotations

import json
from typing import Any

import duckdb

from clarion.runs import NOT_SETTLED
from clarion.warehouse import relation_exists


def latest_run(con: duckdb.DuckDBPyConnection) -> str | None:
    """The newest voc run with topics, among runs that did not fail or get interrupted."""
    if not relation_exists(con, "ml", "voc_topics"):
        return None
    settled = f"and run_id not in ({NOT_SETTLED})" if relation_exists(con, "audit", "runs") else ""
    row = con.execute(f"select max(run_id) from ml.voc_topics where true {settled}").fetchone()
    return row[0] if row else None


def topics(con: duckdb.DuckDBPyConnection, run_id: str | None = None) -> list[dict[str, Any]]:
    """Each topic of the run (default: the latest): name, terms, tickets, customers, negative share,
    average satisfaction, example phrases and its monthly trend, the largest topic first."""
    run_id = run_id or latest_run(con)
    if run_id is None:
        return []
    rows = con.execute(
        """
        select topic_id, topic, terms, tickets, customers, negative_share, avg_satisfaction, examples
        from ml.voc_topics where run_id = ? order by tickets desc, topic_id
        """,
        [run_id],
    ).fetchall()
    trend: dict[int, list[dict[str, Any]]] = {}
    for topic_id, month, tickets, negative, sat in con.execute(
        "select topic_id, month, tickets, negative, avg_satisfaction from ml.voc_trend "
        "where run_id = ? order by topic_id, month",
        [run_id],
    ).fetchall():
        trend.setdefault(topic_id, []).append(
            {
                "month": month.isoformat(),
                "tickets": tickets,
                "negative": negative,
                "avg_satisfaction": None if sat is None else round(sat, 3),
            }
        )
    return [
        {
            "run_id": run_id,
            "topic_id": topic_id,
            "topic": topic,
            "terms": [t["term"] for t in json.loads(terms)],
            "tickets": tickets,
            "customers": customers,
            "negative_share": round(negative_share, 4),
            "avg_satisfaction": None if sat is None else round(sat, 3),
            "examples": json.loads(examples),
            "trend": trend.get(topic_id, []),
        }
        for topic_id, topic, terms, tickets, customers, negative_share, sat, examples in rows
    ]


def report_section(con: duckdb.DuckDBPyConnection, top: int = 8) -> dict[str, Any] | None:
    """The marketer report's "Voice of the customer" data, or None when no voc run has topics.

    ``topics``: the ``top`` largest topics (name, terms, tickets, customers, negative share, average
    satisfaction, k-anonymous example phrases); ``trend``: tickets, negative tickets and average
    satisfaction per month, per topic and in total; ``tickets`` / ``customers``: the run's totals."""
    run_id = latest_run(con)
    if run_id is None:
        return None
    found = topics(con, run_id)
    monthly: dict[str, dict[str, Any]] = {}
    for t in found:
        for m in t["trend"]:
            total = monthly.setdefault(m["month"], {"month": m["month"], "tickets": 0, "negative": 0})
            total["tickets"] += m["tickets"]
            total["negative"] += m["negative"]
    [(tickets, customers, neg, version)] = con.execute(
        """
        select count(*), count(distinct contact_id),
               avg(case when sentiment = 'negative' then 1.0 else 0.0 end), any_value(model_version)
        from ml.ticket_topics where run_id = ?
        """,
        [run_id],
    ).fetchall()
    [(sat,)] = con.execute(
        "select sum(avg_satisfaction * tickets) / nullif(sum(case when avg_satisfaction is not null "
        "then tickets end), 0) from ml.voc_trend where run_id = ?",
        [run_id],
    ).fetchall()
    return {
        "run_id": run_id,
        "model_version": version,
        "tickets": tickets,
        "customers": customers,
        "negative_share": None if neg is None else round(neg, 4),
        "avg_satisfaction": None if sat is None else round(sat, 3),
        "k": len(found),
        "topics": [{k: v for k, v in t.items() if k not in ("run_id", "trend")} for t in found[:top]],
        "trend": {
            "total": sorted(monthly.values(), key=lambda m: m["month"]),
            "by_topic": {t["topic"]: t["trend"] for t in found[:top]},
        },
    }


def summary_text(s: dict[str, Any]) -> str:
    if "k" not in s:
        return f"voc         {s.get('note', 'no topics')}"
    e = s.get("sentiment", {})
    f1 = (
        f"sentiment macro F1 {e['classifier_macro_f1']:.3f} (lexicon {e['lexicon_macro_f1']:.3f})"
        if "classifier_macro_f1" in e
        else e.get("note", "")
    )
    rate = f", {s['embedded_per_second']} tickets/s" if s.get("embedded_per_second") else ""
    return (
        f"voc         {s['tickets']:,} tickets ({s['embedded']:,} embedded{rate}), {s['k']} topics "
        f"(silhouette {s['silhouette']:.3f}); {f1}; card {s['model_version']}"
    )


def topics_text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no topics yet: run `clarion voc` (or `clarion run`) first"
    lines = [f"topics of voc run {rows[0]['run_id']}:"]
    for t in rows:
        sat = "-" if t["avg_satisfaction"] is None else f"{t['avg_satisfaction']:.2f}"
        months = " ".join(str(m["tickets"]) for m in t["trend"][-6:])
        lines.append(
            f"  {t['topic_id']:>2} {t['topic']:<40} {t['tickets']:>6,} tickets "
            f"{t['customers']:>6,} customers "
            f"{t['negative_share']:>5.0%} negative  satisfaction {sat}  last months: {months}"
        )
        if t["terms"]:
            lines.append(f"     terms: {', '.join(t['terms'])}")
    return "\n".join(lines)


def summary_markdown(s: dict[str, Any]) -> str:
    if "k" not in s:
        return f"# Voice of the customer\n\n{s.get('note', 'no topics')}\n"
    e = s.get("sentiment", {})
    lines = [
        "# Voice of the customer",
        "",
        f"{s['tickets']:,} tickets, {s['embedded']:,} newly embedded; k = {s['k']} topics by silhouette "
        f"({s['silhouette']:.3f}); card {s['model_version']}.",
        "",
        "| k | silhouette |",
        "|---:|---:|",
        *(f"| {k} | {v:.3f} |" for k, v in s["silhouette_curve"].items()),
        "",
        "Topics: " + "; ".join(s["topics"]),
        "",
    ]
    if "classifier_macro_f1" in e:
        lines.append(
            f"Sentiment on {e['held_out_tickets']:,} held-out tickets: classifier macro F1 "
            f"{e['classifier_macro_f1']:.3f}, lexicon {e['lexicon_macro_f1']:.3f}."
        )
    return "\n".join(lines) + "\n"
