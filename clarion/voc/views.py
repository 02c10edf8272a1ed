"""What people see of the voice of the customer: the stage's summary (CLI, Prefect artifact) and
the topics of the latest run (`clarion voc topics`); the marketer report reads the same tables
(clarion.report.insights). Aggregates only: topic names, counts, scores, and example phrases that
passed the scrub and were written by at least ``min_customers_per_phrase`` distinct customers."""

from __future__ import annotations

import json
from typing import Any

import duckdb

from clarion.runs import NOT_SETTLED
from clarion.voc.card import choice_text
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
        + (f"\n            {choice_text(s['choice_reused'])}" if s.get("choice_reused") else "")
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
        if t["examples"]:
            said = "; ".join(f"\u201c{x['phrase']}\u201d ({x['customers']} customers)" for x in t["examples"])
            lines.append(f"     said: {said}")
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
        *([choice_text(s["choice_reused"]) + ".", ""] if s.get("choice_reused") else []),
        "Topics: " + "; ".join(s["topics"]),
        "",
    ]
    if "classifier_macro_f1" in e:
        lines.append(
            f"Sentiment on {e['held_out_tickets']:,} held-out tickets: classifier macro F1 "
            f"{e['classifier_macro_f1']:.3f}, lexicon {e['lexicon_macro_f1']:.3f}."
        )
    return "\n".join(lines) + "\n"
