"""The voc stage: support tickets into topics and sentiment, written to ``ml.ticket_topics``,
``ml.voc_topics`` and ``ml.voc_trend``, with a "voc" card in the model registry.

It runs after extract and before transform, so the dbt build of the same run reads its topics
(``marts.customer_features``: complaints and topic shares as of the day). Every ticket of
``raw.support_tickets`` (one row per ticket: the extract keeps the latest version, earlier ones go
to ``raw.support_tickets_history``) is scrubbed with its writer's own name and e-mail
(clarion.voc.scrub), embedded with the shipped MiniLM (cached by ticket in
``ml.ticket_embeddings`` with the scrubbed text's sha256, so a daily run embeds only new or
changed tickets), clustered and named (models.voc), and given a sentiment by a classifier learnt
from the tickets with a survey score. No ticket text is stored: only the embedding of the scrubbed
text, topic names, counts and phrases written by at least ``min_customers_per_phrase`` customers.
A rerun of the stage within the same run replaces that run's rows.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import re
import time
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
from threadpoolctl import threadpool_limits

from clarion.config import Settings
from clarion.errors import ClarionError
from clarion.voc import card
from clarion.voc.scrub import scrub_ticket
from clarion.warehouse import Warehouse, relation_exists
from models.voc import (
    SENTIMENTS,
    SentimentClassifier,
    choose_c,
    example_phrases,
    fit_topics,
    label_of,
    lexicon_sentiment,
    macro_f1,
    satisfaction_label,
    time_split,
)

log = logging.getLogger(__name__)

MIN_TICKETS = 50  # fewer: no topics (k-means and a silhouette over a handful of texts mean nothing)
MIN_LABELLED = 30  # fewer scored tickets: no classifier, the lexicon's sentiment is used
BATCH = 64
DIM = 384
SEED = 0

DDL = (
    f"""
    create table if not exists ml.ticket_embeddings (
        ticket_id bigint, text_sha256 varchar, embedding float[{DIM}]
    )
    """,
    """
    create table if not exists ml.ticket_topics (
        run_id varchar, ticket_id bigint, contact_id bigint, created_at timestamptz,
        topic_id integer, topic varchar, sentiment varchar, p_negative double, model_version varchar
    )
    """,
    """
    create table if not exists ml.voc_topics (
        run_id varchar, topic_id integer, topic varchar, terms json, tickets integer, customers integer,
        negative_share double, avg_satisfaction double, examples json
    )
    """,
    """
    create table if not exists ml.voc_trend (
        run_id varchar, topic_id integer, month date, tickets integer, negative integer,
        avg_satisfaction double
    )
    """,
)
OUTPUTS = ("ticket_topics", "voc_topics", "voc_trend")


class VocError(ClarionError):
    exit_code = 2


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    for ddl in DDL:
        con.execute(ddl)


def run(settings: Settings, run_id: str) -> dict[str, Any]:
    """Topics and sentiment of every ticket; the summary the flow and the CLI show."""
    started = time.perf_counter()
    voc = settings.ml.voc
    with Warehouse.from_settings(settings).connect("voc") as con:
        ensure_tables(con)  # always: the dbt source must exist even when there is nothing to say
        for table in OUTPUTS:
            con.execute(f"delete from ml.{table} where run_id = ?", [run_id])
        if not voc.enabled:
            return {"tickets": 0, "note": "voice of the customer is disabled (ml.voc.enabled: false)"}
        tickets = read_tickets(con)
        if len(tickets) < MIN_TICKETS:
            note = (
                f"{len(tickets)} support tickets: too few for topics (at least {MIN_TICKETS}); "
                "no topics this run"
            )
            log.info(note)
            return {"tickets": len(tickets), "note": note}
        texts = scrubbed_texts(tickets)
        x, embedded, seconds = embeddings(con, tickets["ticket_id"].to_numpy(), texts)
        reuse = card.reusable_choice(settings, len(tickets))
        topics = fit_topics(x, texts, voc.k_min, voc.k_max, SEED, k=reuse["k"] if reuse else None)
        with threadpool_limits(1):  # small matrices: one thread beats two fighting over two cores
            sentiment, p, evaluation = classify(settings, x, tickets, c=reuse.get("C") if reuse else None)
        forbidden = frozenset(w.lower() for col in ("first_name", "last_name") for w in all_names(con, col))
        examples = example_phrases(
            texts, topics.labels, tickets["contact_id"].to_numpy(), voc.min_customers_per_phrase, forbidden
        )
        version = card.register(settings, topics, evaluation, len(tickets), run_id, reuse)
        frame = tickets[["ticket_id", "contact_id", "created_at", "satisfaction_score"]].copy()
        frame["topic_id"] = topics.labels.astype(np.int32)
        frame["topic"] = [topics.names[t] for t in topics.labels]
        frame["sentiment"] = sentiment
        frame["p_negative"] = p[:, 0]
        write(con, run_id, version, frame, topics, examples)
    summary = {
        "tickets": len(tickets),
        "embedded": embedded,
        "embedded_per_second": round(embedded / seconds, 1) if embedded and seconds > 0 else None,
        "k": topics.k,
        "silhouette": topics.silhouette[topics.k],
        "silhouette_curve": topics.silhouette,
        "topics": topics.names,
        "sentiment": evaluation,
        **({"choice_reused": reuse} if reuse else {}),
        "model_version": version,
        "seconds": round(time.perf_counter() - started, 2),
    }
    log.info(
        "voc: %d tickets (%d embedded), %d topics (silhouette %.3f), classifier macro F1 %s vs lexicon %s",
        len(tickets),
        embedded,
        topics.k,
        topics.silhouette[topics.k],
        evaluation.get("classifier_macro_f1"),
        evaluation.get("lexicon_macro_f1"),
    )
    return summary


def read_tickets(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every ticket with its writer's own name and e-mail (for the scrub only; never stored)."""
    if not relation_exists(con, "raw", "support_tickets"):
        return pd.DataFrame(
            columns=["ticket_id", "contact_id", "created_at", "subject", "body", "satisfaction_score"]
        )
    contacts = relation_exists(con, "raw", "contacts")
    join = "left join raw.contacts as c on c.contact_id = t.contact_id" if contacts else ""
    person = "c.first_name, c.last_name, c.email" if contacts else "null, null, null"
    return (
        con.execute(
            f"""
        select t.ticket_id, t.contact_id, t.created_at, t.subject, t.body, t.satisfaction_score,
               {person}
        from raw.support_tickets as t {join}
        where t.contact_id is not null
        order by t.ticket_id
        """
        )
        .df()
        .set_axis(
            [
                "ticket_id",
                "contact_id",
                "created_at",
                "subject",
                "body",
                "satisfaction_score",
                "first_name",
                "last_name",
                "email",
            ],
            axis=1,
        )
    )


def all_names(con: duckdb.DuckDBPyConnection, column: str) -> list[str]:
    """Every contact's first or last name: no example phrase may hold one, whoever wrote it."""
    if not relation_exists(con, "raw", "contacts"):
        return []
    return [n for (n,) in con.execute(f"select distinct {column} from raw.contacts").fetchall() if n]


def scrubbed_texts(tickets: pd.DataFrame) -> list[str]:
    """Subject and body of each ticket, scrubbed with the writer's own name and e-mail."""
    return [
        scrub_ticket(f"{subject or ''}\n{body or ''}", names=(first, last), emails=(email,))
        for subject, body, first, last, email in zip(
            tickets["subject"],
            tickets["body"],
            tickets["first_name"],
            tickets["last_name"],
            tickets["email"],
            strict=True,
        )
    ]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def embeddings(
    con: duckdb.DuckDBPyConnection, ticket_ids: np.ndarray, texts: list[str]
) -> tuple[np.ndarray, int, float]:
    """The embedding of each scrubbed text: from ml.ticket_embeddings when the ticket's scrubbed
    text is unchanged, else from the model (and cached). Returns (vectors, embedded, seconds)."""
    hashes = [sha256(t) for t in texts]
    con.register("voc_wanted", pa.table({"ticket_id": ticket_ids, "text_sha256": hashes}))
    cached = con.execute(
        """
        select e.ticket_id, e.embedding from ml.ticket_embeddings as e
        inner join voc_wanted as w on e.ticket_id = w.ticket_id and e.text_sha256 = w.text_sha256
        """
    ).fetchall()
    con.unregister("voc_wanted")
    found = {tid: np.asarray(vec, dtype=np.float32) for tid, vec in cached}
    missing = [i for i, tid in enumerate(ticket_ids) if int(tid) not in found]
    x = np.zeros((len(texts), DIM), dtype=np.float32)
    for i, tid in enumerate(ticket_ids):
        if int(tid) in found:
            x[i] = found[int(tid)]
    seconds = 0.0
    if missing:
        from models.content.meaning import default_meaning_model

        model = default_meaning_model()
        start = time.perf_counter()
        missing.sort(key=lambda i: len(texts[i]))  # batches of similar length: little padding
        for lo in range(0, len(missing), BATCH):
            idx = missing[lo : lo + BATCH]
            x[idx] = model.embed([texts[i] for i in idx])
        seconds = time.perf_counter() - start
        new = pa.table(
            {
                "ticket_id": pa.array(ticket_ids[missing].astype(np.int64), pa.int64()),
                "text_sha256": pa.array([hashes[i] for i in missing]),
                "embedding": pa.array(list(x[missing]), pa.list_(pa.float32(), DIM)),
            }
        )
        con.register("voc_new", new)
        con.execute("delete from ml.ticket_embeddings where ticket_id in (select ticket_id from voc_new)")
        con.execute("insert into ml.ticket_embeddings select ticket_id, text_sha256, embedding from voc_new")
        con.unregister("voc_new")
    return x, len(missing), seconds


def lexicon_words(settings: Settings) -> tuple[list[str], list[str]]:
    """The staging lexicon's word lists, read from the dbt model itself so the comparison is with
    the lexicon as it is, not a copy that drifts."""
    path = settings.transform.dbt_project_dir / "models" / "staging" / "stg_support_tickets.sql"
    sql = path.read_text()
    lists = {}
    for name in ("negative", "positive"):
        found = re.search(rf"set {name}\s*=\s*(\[.*?\])\s*-?%\}}", sql, re.DOTALL)
        if not found:
            raise VocError(
                f"{path} has no `{{%- set {name} = [...] -%}}` word list; the lexicon baseline needs it"
            )
        lists[name] = ast.literal_eval(found.group(1))
    return lists["negative"], lists["positive"]


def classify(
    settings: Settings, x: np.ndarray, tickets: pd.DataFrame, c: float | None = None
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Sentiment of every ticket and the held-out comparison with the lexicon. ``c``: the
    regularisation chosen before (card.reusable_choice); None chooses it again (choose_c).

    Held out: the newest 20% of the scored tickets (by creation). The classifier is fitted on the
    older 80% and both it and the lexicon are measured on the held-out ones. Then it is refitted on
    every scored ticket and predicts all tickets; a scored ticket's own prediction comes from the
    cross-fitted models that did not see its score."""
    labels = np.array([satisfaction_label(s) for s in tickets["satisfaction_score"]], dtype=object)
    scored = np.flatnonzero(labels != None)  # noqa: E711  (an object array)
    raw_text = (tickets["subject"].fillna("") + " " + tickets["body"].fillna("")).tolist()
    lexicon = np.array(lexicon_sentiment(raw_text, *lexicon_words(settings)), dtype=object)
    if len(scored) < MIN_LABELLED or len(set(labels[scored])) < 2:
        p = np.zeros((len(tickets), 3))
        p[np.arange(len(tickets)), [SENTIMENTS.index(s) for s in lexicon]] = 1.0
        note = (
            f"{len(scored)} tickets with a survey score: too few to learn from; "
            "the lexicon's sentiment is used"
        )
        return lexicon, p, {"scored_tickets": len(scored), "note": note}
    created = pd.to_datetime(tickets["created_at"].iloc[scored], utc=True).astype("int64").to_numpy()
    held = time_split(created)
    train, test = scored[~held], scored[held]
    evaluation: dict[str, Any] = {
        "scored_tickets": len(scored),
        "train_tickets": len(train),
        "held_out_tickets": len(test),
        "held_out_from": str(tickets["created_at"].iloc[test].min()),
        "method": "logistic regression on MiniLM embeddings, balanced classes; held out: the newest 20% "
        "of the scored tickets",
    }
    if c is None:
        c = choose_c(x[train], labels[train], seed=SEED) if len(set(labels[train])) >= 2 else 1.0
    evaluation["C"] = c
    if len(set(labels[train])) >= 2 and len(test):
        clf = SentimentClassifier(c, seed=SEED).fit(x[train], labels[train])
        predicted = label_of(clf.predict_proba(x[test]))
        evaluation["classifier_macro_f1"] = round(macro_f1(labels[test], predicted), 4)
        evaluation["lexicon_macro_f1"] = round(macro_f1(labels[test], lexicon[test]), 4)
        evaluation["classifier_accuracy"] = round(float(np.mean(predicted == labels[test])), 4)
        evaluation["lexicon_accuracy"] = round(float(np.mean(lexicon[test] == labels[test])), 4)
    final = SentimentClassifier(c, seed=SEED).fit(x[scored], labels[scored])
    p = final.predict_proba(x)
    p[scored] = final.cross_fitted(x[scored], labels[scored])
    return label_of(p), p, evaluation


def write(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    version: str,
    frame: pd.DataFrame,
    topics: Any,
    examples: list[list[tuple[str, int]]],
) -> None:
    rows = pa.table(
        {
            "run_id": pa.array([run_id] * len(frame)),
            "ticket_id": pa.array(frame["ticket_id"], pa.int64()),
            "contact_id": pa.array(frame["contact_id"], pa.int64()),
            "created_at": pa.array(frame["created_at"]),
            "topic_id": pa.array(frame["topic_id"], pa.int32()),
            "topic": pa.array(frame["topic"]),
            "sentiment": pa.array(frame["sentiment"].astype(str)),
            "p_negative": pa.array(frame["p_negative"], pa.float64()),
            "model_version": pa.array([version] * len(frame)),
            "satisfaction_score": pa.array(frame["satisfaction_score"], pa.float64()),
        }
    )
    meta = pa.table(
        {
            "topic_id": pa.array(range(topics.k), pa.int32()),
            "terms": pa.array([json.dumps([{"term": w, "weight": s} for w, s in t]) for t in topics.terms]),
            "examples": pa.array(
                [json.dumps([{"phrase": p, "customers": c} for p, c in e]) for e in examples]
            ),
        }
    )
    con.register("voc_rows", rows)
    con.register("voc_meta", meta)
    con.execute(
        """
        insert into ml.ticket_topics by name
        select run_id, ticket_id, contact_id, created_at, topic_id, topic, sentiment, p_negative,
               model_version
        from voc_rows
        """
    )
    con.execute(
        """
        insert into ml.voc_topics by name
        select any_value(r.run_id) as run_id, r.topic_id, any_value(r.topic) as topic,
               any_value(m.terms)::json as terms, count(*) as tickets,
               count(distinct r.contact_id) as customers,
               avg(case when r.sentiment = 'negative' then 1.0 else 0.0 end) as negative_share,
               avg(r.satisfaction_score) as avg_satisfaction, any_value(m.examples)::json as examples
        from voc_rows as r inner join voc_meta as m on m.topic_id = r.topic_id
        group by r.topic_id
        """
    )
    con.execute(
        """
        insert into ml.voc_trend by name
        select any_value(run_id) as run_id, topic_id,
               cast(date_trunc('month', created_at at time zone 'UTC') as date) as month,
               count(*) as tickets, sum(case when sentiment = 'negative' then 1 else 0 end) as negative,
               avg(satisfaction_score) as avg_satisfaction
        from voc_rows
        group by topic_id, month
        """
    )
    con.unregister("voc_rows")
    con.unregister("voc_meta")
