"""Recommendations and voice of the customer where people see them: the marketer report's two
sections (aggregates only: no person, no ticket text, example phrases only from >= k customers),
`clarion explain ID` (the customer's recommendations with their reasons) and `clarion subject access
ID` (their recommendations and their tickets' topics, nobody else's).

On a copy of the session's `small_run`, with ml.recommendations / ml.ticket_topics / ml.voc_topics /
ml.voc_trend rows made from that run's own orders and tickets (tests/insights_helpers.py) and a
recommender card in its registry, as parts REC and VOC will leave them.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from click.testing import CliRunner
from insights_helpers import plant_recommendations, plant_voc, register_recommender_card

from clarion.cli import cli
from clarion.config import Settings, load_settings
from clarion.report import build, insights, render

pytestmark = pytest.mark.slow  # a copy of the pipeline run and two reports: end to end

RUN = "20990301T000000Z-insights"


@pytest.fixture(scope="module")
def planted(small_run: dict, tmp_path_factory) -> Settings:
    root = tmp_path_factory.mktemp("insights_project")
    shutil.copytree(small_run["root"], root, dirs_exist_ok=True)
    settings = load_settings(root / "clarion.yaml", env={})
    con = duckdb.connect(str(settings.warehouse.path))
    plant_recommendations(con, RUN, created_at="2099-03-01 00:00:00+00")
    plant_voc(con, RUN, min_customers=settings.ml.voc.min_customers_per_phrase)
    con.close()
    register_recommender_card(settings.var_dir / "registry")
    return settings


@pytest.fixture(scope="module")
def report(planted: Settings) -> tuple[dict, str]:
    data = build.collect(planted)
    return data, render.html(data)


def _frame(settings: Settings, sql: str, params: list | None = None) -> pd.DataFrame:
    con = duckdb.connect(str(settings.warehouse.path), read_only=True)
    try:
        return con.execute(sql, params or []).df()
    finally:
        con.close()


def test_recommendations_section_counts_match_the_table(planted: Settings, report) -> None:
    data, page = report
    r = data["recommendations"]
    recs = _frame(planted, "select * from ml.recommendations where run_id = ?", [RUN])
    assert r["run_id"] == RUN and r["customers"] == recs.contact_id.nunique() and r["rows"] == len(recs)
    counts = recs.groupby("product_id").contact_id.nunique()
    firsts = recs[recs["rank"] == 1].groupby("product_id").contact_id.nunique()
    for p in r["top_products"]:
        assert p["customers"] == counts[p["product_id"]] >= insights.MIN_GROUP
        assert p["rank1"] == firsts.get(p["product_id"], 0)
        assert f'data-product="{p["product_id"]}"' in page
    assert [p["customers"] for p in r["top_products"]] == sorted(counts, reverse=True)[
        : len(r["top_products"])
    ]
    mix = recs.reason_kind.value_counts()
    assert {m["reason_kind"]: m["rows"] for m in r["reason_mix"]} == mix.to_dict()
    # the evaluation comes from the recommender card, every method beside the baselines
    card = json.loads((planted.var_dir / "registry" / "recommender" / "v0001" / "meta.json").read_text())
    ev = r["evaluation"]
    assert ev["chosen"] == card["method"] and ev["cut_day"] == card["evaluation"]["cut"]
    assert {
        m["method"]: (m["recall_at_10"], m["ndcg_at_10"], m["coverage"], m["customers"])
        for m in ev["methods"]
    } == {
        name: (f["recall_at_k"], f["ndcg_at_k"], f["coverage"], card["evaluation"]["customers"])
        for name, f in card["evaluation"]["methods"].items()
    }
    section = page[page.index('<section id="recommendations">') : page.index('<section id="voc">')]
    assert 'data-method="popularity"' in section and "cooccurrence (chosen)" in section


def test_voc_section_shows_topics_trend_and_only_k_anonymous_phrases(planted: Settings, report) -> None:
    data, page = report
    v = data["voc"]
    tickets = _frame(planted, "select * from raw.support_tickets")
    assert v["tickets"] == len(tickets) and v["customers"] == tickets.contact_id.nunique()
    by_category = tickets.groupby("category").ticket_id.count().sort_values(ascending=False)
    assert [t["tickets"] for t in v["topics"]] == list(by_category.values)
    k = planted.ml.voc.min_customers_per_phrase
    section = page[page.index('<section id="voc">') :]
    for t in v["topics"]:
        assert f'data-topic="{t["topic_id"]}"' in section
        for x in t["examples"]:  # each phrase re-counted from the tickets: >= k distinct customers
            writers = tickets[tickets.subject.str.lower() == x["phrase"]].contact_id.nunique()
            assert writers == x["customers"] >= k
    assert "only two people wrote this" not in page  # planted below k in every topic
    months = _frame(planted, "select count(*) n from ml.voc_trend where run_id = ?", [RUN]).n[0]
    assert len(v["trend"]) == months and "Tickets per month" in section
    assert f"most about {v['topics'][0]['topic']} ({v['topics'][0]['tickets']})" in render.text(data)


def test_the_report_names_no_person_and_quotes_no_ticket(planted: Settings, report) -> None:
    data, page = report
    text = page + json.dumps(data, default=str)
    contacts = _frame(planted, "select first_name, last_name, email, phone from raw.contacts")
    for c in contacts.itertuples(index=False):
        for value in (c.email, c.phone, f"{c.first_name} {c.last_name}"):
            assert not isinstance(value, str) or value not in text
    bodies = _frame(planted, "select body from raw.support_tickets").body
    assert not [b for b in bodies if b and b in text]
    reasons = _frame(planted, "select distinct reason from ml.recommendations").reason
    assert not [s for s in reasons if s in text]  # a reason is that customer's: only its kind is counted
    orders = _frame(planted, "select order_id from raw.orders").order_id
    assert not [o for o in orders if f"order #{o}" in text or f"order no. {o}" in text]


def test_both_sections_say_so_when_their_stage_did_not_run(small_run: dict, tmp_path: Path) -> None:
    root = tmp_path / "project"
    shutil.copytree(small_run["root"], root)
    settings = load_settings(root / "clarion.yaml", env={})
    with duckdb.connect(str(settings.warehouse.path)) as con:  # as before either stage ever ran
        for table in ("recommendations", "voc_topics", "voc_trend", "ticket_topics"):
            con.execute(f"drop table if exists ml.{table}")
    data = build.collect(settings)
    assert data["recommendations"] is None and data["voc"] is None
    page = render.html(data)
    assert "The recommend stage did not run" in page and "The voc stage did not run" in page


def _invoke(settings: Settings, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--config", str(settings.var_dir.parent / "clarion.yaml"), *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_explain_lists_the_customers_recommendations_with_their_reasons(planted: Settings) -> None:
    recs = _frame(
        planted, "select * from ml.recommendations where run_id = ? order by contact_id, rank", [RUN]
    )
    cid = int(recs.contact_id.iloc[0])
    out = _invoke(planted, "explain", str(cid))
    names = dict(_frame(planted, "select product_id, name from raw.products").itertuples(index=False))
    mine = recs[recs.contact_id == cid]
    tail = out[out.index("Recommended (") :]
    lines = [line.strip() for line in tail.splitlines()[1:]]
    assert lines == [f"{r.rank}. {names[r.product_id]} \u2014 {r.reason}" for r in mine.itertuples()]
    scored = set(_frame(planted, "select contact_id from ml.customer_scores").contact_id)
    without = sorted(scored - set(recs.contact_id))
    assert without  # customers with no orders have no co-purchase to go on
    assert "Recommended: none" in _invoke(planted, "explain", str(without[0]))
    as_json = json.loads(_invoke(planted, "explain", str(cid), "--json"))
    assert [(r["rank"], r["product_id"]) for r in as_json["recommendations"]] == list(
        zip(mine["rank"], mine.product_id, strict=True)
    )


def test_every_reason_shown_is_true_for_its_customer(planted: Settings) -> None:
    """The planted reasons are what explain prints: each re-derived from the customer's own orders."""
    recs = _frame(planted, "select * from ml.recommendations where run_id = ?", [RUN])
    lines = _frame(
        planted,
        "select distinct o.contact_id, i.product_id from raw.orders o "
        "join raw.order_items i using (order_id)",
    )
    bought = lines.groupby("contact_id").product_id.apply(set).to_dict()
    buyers = lines.groupby("product_id").contact_id.apply(set).to_dict()
    names = dict(_frame(planted, "select product_id, name from raw.products").itertuples(index=False))
    for r in recs.itertuples():
        a = int(r.because_product_id)
        assert a in bought[r.contact_id] and r.product_id not in bought[r.contact_id]
        share = len(buyers[a] & buyers[r.product_id]) / len(buyers[a])
        assert r.reason == f"bought with {names[a]} by {math.floor(100 * share + 0.5)}% of its buyers"


def test_subject_access_holds_their_recommendations_and_ticket_topics_only(planted: Settings) -> None:
    topics = _frame(planted, "select contact_id, count(*) n from ml.ticket_topics group by 1 order by 2 desc")
    cid = int(topics.contact_id.iloc[0])
    report = json.loads(_invoke(planted, "subject", "access", str(cid)))
    tables = {t["table"]: t for t in report["parts"]["decisions"]["tables"]}
    recs = tables["ml.recommendations"]["rows"]
    want = _frame(planted, "select * from ml.recommendations where contact_id = ?", [cid])
    names = dict(_frame(planted, "select product_id, name from raw.products").itertuples(index=False))
    assert len(want.run_id.unique()) == 2  # the small run's own recommend stage and the planted run
    assert sorted((r["run_id"], r["rank"], r["product_id"], r["product_name"]) for r in recs) == sorted(
        (w.run_id, int(w.rank), int(w.product_id), names[w.product_id]) for w in want.itertuples()
    )
    mine = tables["ml.ticket_topics"]["rows"]
    own = _frame(
        planted,
        "select ticket_id, topic, sentiment from raw.support_tickets s join ml.ticket_topics "
        "using (ticket_id) where s.contact_id = ? order by s.created_at, ticket_id",
        [cid],
    )
    assert [(r["ticket_id"], r["topic"], r["sentiment"]) for r in mine] == list(
        own.itertuples(index=False, name=None)
    )
    assert {r["contact_id"] for r in recs + mine} == {cid}
    assert "Products we would recommend to you" in tables["ml.recommendations"]["title"]
    assert "ml.voc_topics" not in json.dumps(report)  # other customers' phrases are not theirs
