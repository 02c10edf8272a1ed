"""The voc stage on a real warehouse: a generated 800-customer CRM extracted into DuckDB, the shipped
MiniLM model, and the generator's truth (ticket sentiment, PII, topics) to check against."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from extract_helpers import make_settings, run_extract
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score, f1_score, silhouette_score

from clarion.config import GenerateSettings
from clarion.report.insights import voc_from_tables
from clarion.synth.generator import generate
from clarion.transform.dbt import run_dbt
from clarion.voc import run, topics
from clarion.voc.stage import lexicon_words, read_tickets, scrubbed_texts
from clarion.voc.views import summary_markdown
from clarion.warehouse import Warehouse
from models.voc import lexicon_sentiment, sentences

pytestmark = pytest.mark.slow  # a generated CRM, its extract and two voc runs: end to end

RUN, RERUN = "20261201T000000Z-voc00001", "20261202T000000Z-voc00002"
CUSTOMERS = 600  # about 380 tickets: ~10 s of embedding on two busy cores


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("voc")
    crm = root / "crm"
    generate(GenerateSettings(customers=CUSTOMERS, seed=11, defects=0.0, format="parquet"), out=crm)
    settings = make_settings(root / "project", {"crm": {"kind": "files", "path": str(crm)}})
    run_extract(settings)
    first = run(settings, RUN)
    again = run(settings, RUN)  # a rerun of the stage in the same run replaces its rows
    second = run(settings, RERUN)
    return {"settings": settings, "crm": crm, "first": first, "again": again, "second": second}


def con_of(stage: dict) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(stage["settings"].warehouse.path), read_only=True)


def truth_tickets(stage: dict) -> pd.DataFrame:
    tickets = pq.read_table(stage["crm"] / "support_tickets.parquet").to_pandas()
    truth = pq.read_table(stage["crm"] / "truth" / "tickets.parquet").to_pandas()
    return tickets.merge(truth, on="ticket_id")


def test_every_text_given_to_the_embedder_is_free_of_the_writers_pii_and_order_numbers(stage: dict) -> None:
    contacts = pq.read_table(stage["crm"] / "contacts.parquet").to_pandas().set_index("contact_id")
    orders = pq.read_table(stage["crm"] / "orders.parquet").to_pandas()
    order_ids = orders.groupby("contact_id")["order_id"].apply(set).to_dict()
    with Warehouse.from_settings(stage["settings"]).read() as con:
        tickets = read_tickets(con)
        cached = dict(con.execute("select ticket_id, text_sha256 from ml.ticket_embeddings").fetchall())
    texts = scrubbed_texts(tickets)
    truth = truth_tickets(stage).set_index("ticket_id")
    assert truth["contains_pii"].sum() > 100  # the CRM's tickets do quote their writers
    for ticket_id, contact_id, text in zip(tickets["ticket_id"], tickets["contact_id"], texts, strict=True):
        # what was embedded is exactly this text (the cache keeps its hash)
        assert cached[ticket_id] == hashlib.sha256(text.encode()).hexdigest()
        person = contacts.loc[contact_id]
        low = text.lower()
        for name in (person["first_name"], person["last_name"]):
            assert not re.search(rf"(?<!\w){re.escape(name.lower())}(?!\w)", low), (ticket_id, "name")
        for value in (person["email"], person["phone"]):
            if isinstance(value, str):
                assert value.lower() not in low, (ticket_id, "contact data")
        if isinstance(person["phone"], str):
            digits = re.sub(r"\D", "", person["phone"])
            assert digits[-6:] not in re.sub(r"\D", "", text), (ticket_id, "phone digits")
        assert not re.search(r"#\s?\d|\border\s*(no\.?|number)?\s*\d", low), (ticket_id, "order reference")
        for number in re.findall(r"\d+", text):
            assert int(number) not in order_ids.get(contact_id, set()), (ticket_id, "order id")
        assert "@" not in text


def test_topics_recover_the_planted_ones(stage: dict) -> None:
    with con_of(stage) as con:
        got = con.execute(f"select ticket_id, topic_id from ml.ticket_topics where run_id = '{RUN}'").df()
    m = got.merge(truth_tickets(stage), on="ticket_id")
    assert len(m) == len(got) == stage["first"]["tickets"]
    if "topic" in m.columns:
        # ten planted topics, finer than the categories, hundreds of wordings. ARI 0.5: far above
        # chance (0), and what a silhouette-chosen k reaches when the planted topics overlap in
        # wording (late_delivery and lost_parcel share "Where is my parcel?"; the large late_delivery
        # splits by sentiment): one split or merge of the largest topic costs 0.1-0.15 of ARI. And
        # most tickets sit in a cluster whose majority is their own topic (purity 0.8).
        assert adjusted_rand_score(m["topic"], m["topic_id"]) >= 0.5
        purity = m.groupby("topic_id")["topic"].agg(lambda c: c.value_counts().iloc[0]).sum() / len(m)
        assert purity >= 0.8
    else:  # before the generator plants topics: clusters may be finer than the 5 categories, never mixed
        purity = m.groupby("topic_id")["category"].agg(lambda c: c.value_counts().iloc[0]).sum() / len(m)
        assert purity >= 0.9


def test_k_is_the_best_silhouette_of_the_stated_curve(stage: dict) -> None:
    s = stage["first"]
    voc = stage["settings"].ml.voc
    curve = {int(k): v for k, v in s["silhouette_curve"].items()}
    assert set(curve) == set(range(voc.k_min, voc.k_max + 1))
    assert s["k"] == max(curve, key=lambda k: (curve[k], -k))
    with con_of(stage) as con:
        rows = con.execute(
            f"""
            select t.topic_id, e.embedding from ml.ticket_topics t
            join ml.ticket_embeddings e using (ticket_id) where t.run_id = '{RUN}' order by t.ticket_id
            """
        ).fetchall()
    x = np.array([r[1] for r in rows])
    labels = np.array([r[0] for r in rows])
    assert len(set(labels)) == s["k"]
    assert silhouette_score(x, labels) == pytest.approx(s["silhouette"], abs=1e-4)


def test_classifier_and_lexicon_f1_on_the_newest_scored_tickets(stage: dict) -> None:
    e = stage["first"]["sentiment"]
    t = truth_tickets(stage)
    t = t[t["satisfaction_score"].notna()].copy()
    t["label"] = np.where(
        t["satisfaction_score"] <= 2,
        "negative",
        np.where(t["satisfaction_score"] == 3, "neutral", "positive"),
    )
    held = t["created_at"] >= pd.Timestamp(e["held_out_from"])
    assert held.sum() == e["held_out_tickets"] and (~held).sum() == e["train_tickets"]
    with con_of(stage) as con:
        vec = dict(con.execute("select ticket_id, embedding from ml.ticket_embeddings").fetchall())
        # the lexicon, as SQL like dbt's staging model does it, on the raw text
        neg, pos = lexicon_words(stage["settings"])
        text = "lower(coalesce(subject, '') || ' ' || coalesce(body, ''))"

        def like(words: list[str]) -> str:
            quoted = [w.replace("'", "''") for w in words]
            return " + ".join(f"(case when {text} like '%{w}%' then 1 else 0 end)" for w in quoted)

        lex = dict(
            con.execute(
                f"select ticket_id, case when {like(neg)} > {like(pos)} then 'negative' "
                f"when {like(pos)} > {like(neg)} then 'positive' else 'neutral' end from raw.support_tickets"
            ).fetchall()
        )
    x = np.array([vec[i] for i in t["ticket_id"]])
    clf = LogisticRegression(C=e["C"], max_iter=2000, class_weight="balanced", random_state=0)
    clf.fit(x[~held.to_numpy()], t["label"][~held])
    truth_held = t["label"][held]
    assert f1_score(truth_held, clf.predict(x[held.to_numpy()]), average="macro") == pytest.approx(
        e["classifier_macro_f1"], abs=1e-3
    )
    assert f1_score(truth_held, [lex[i] for i in t["ticket_id"][held]], average="macro") == pytest.approx(
        e["lexicon_macro_f1"], abs=1e-3
    )


def test_the_classifier_agrees_with_the_true_sentiment(stage: dict) -> None:
    t = truth_tickets(stage)
    with con_of(stage) as con:
        got = con.execute(f"select ticket_id, sentiment from ml.ticket_topics where run_id = '{RUN}'").df()
    m = got.merge(t[["ticket_id", "sentiment"]], on="ticket_id", suffixes=("", "_truth"))
    # the survey blurs neutral and positive (a neutral ticket scores 3 or 4); negative is clear-cut
    assert (m["sentiment"] == m["sentiment_truth"]).mean() >= 0.7
    negative = m["sentiment_truth"] == "negative"
    assert (m.loc[negative, "sentiment"] == "negative").mean() >= 0.85


@pytest.mark.slow  # 2,000 customers: about 1,300 tickets to embed
def test_with_enough_scored_tickets_the_classifier_reads_sentiment_better_than_the_lexicon(
    tmp_path: Path,
) -> None:
    """Beyond the lexicon: against the true sentiment (not the survey's, which blurs neutral and
    positive) the classifier is at least as good as the staging lexicon, on every ticket and on the
    newest fifth. It needs data: at 600 customers (~150 scored tickets) the lexicon still wins."""
    crm = tmp_path / "crm"
    generate(GenerateSettings(customers=2000, seed=11, defects=0.0, format="parquet"), out=crm)
    settings = make_settings(tmp_path / "project", {"crm": {"kind": "files", "path": str(crm)}})
    run_extract(settings)
    run(settings, RUN)
    with duckdb.connect(str(settings.warehouse.path), read_only=True) as con:
        got = con.execute("select ticket_id, sentiment from ml.ticket_topics").df()
    t = pq.read_table(crm / "support_tickets.parquet").to_pandas()
    truth = pq.read_table(crm / "truth" / "tickets.parquet").to_pandas()[["ticket_id", "sentiment"]]
    m = got.merge(t, on="ticket_id").merge(truth, on="ticket_id", suffixes=("", "_truth"))
    m["lexicon"] = lexicon_sentiment((m["subject"] + " " + m["body"]).tolist(), *lexicon_words(settings))
    newest = m[m["created_at"] >= m["created_at"].quantile(0.8)]
    for part in (m, newest):
        classifier = f1_score(part["sentiment_truth"], part["sentiment"], average="macro")
        lexicon = f1_score(part["sentiment_truth"], part["lexicon"], average="macro")
        assert classifier >= lexicon - 0.01, (len(part), classifier, lexicon)


def test_tables_hold_one_row_per_ticket_per_run_and_consistent_aggregates(stage: dict) -> None:
    assert stage["again"]["embedded"] == 0 and stage["second"]["embedded"] == 0  # the cache served all
    assert stage["first"]["embedded"] == stage["first"]["tickets"]
    with con_of(stage) as con:
        per_run = dict(con.execute("select run_id, count(*) from ml.ticket_topics group by 1").fetchall())
        assert per_run == {RUN: stage["first"]["tickets"], RERUN: stage["first"]["tickets"]}
        [(dupes,)] = con.execute(
            "select count(*) - count(distinct (run_id, ticket_id)) from ml.ticket_topics"
        ).fetchall()
        assert dupes == 0
        [(cache_rows, cache_ids)] = con.execute(
            "select count(*), count(distinct ticket_id) from ml.ticket_embeddings"
        ).fetchall()
        assert cache_rows == cache_ids == stage["first"]["tickets"]
        tt = con.execute(f"select * from ml.ticket_topics where run_id = '{RUN}'").df()
        vt = con.execute(f"select * from ml.voc_topics where run_id = '{RUN}'").df().set_index("topic_id")
        tr = con.execute(f"select * from ml.voc_trend where run_id = '{RUN}'").df()
    raw = truth_tickets(stage).set_index("ticket_id")
    tt["score"] = raw.loc[tt["ticket_id"], "satisfaction_score"].to_numpy()
    for topic_id, g in tt.groupby("topic_id"):
        row = vt.loc[topic_id]
        assert row["topic"] == g["topic"].iloc[0] and g["topic"].nunique() == 1
        assert row["tickets"] == len(g) and row["customers"] == g["contact_id"].nunique()
        assert row["negative_share"] == pytest.approx((g["sentiment"] == "negative").mean())
        assert row["avg_satisfaction"] == pytest.approx(g["score"].mean())
        assert tr[tr["topic_id"] == topic_id]["tickets"].sum() == len(g)
    assert set(tt["sentiment"]) <= {"negative", "neutral", "positive"}
    assert tt["p_negative"].between(0, 1).all()


def test_example_phrases_come_from_enough_customers_and_name_nobody(stage: dict) -> None:
    settings = stage["settings"]
    k = settings.ml.voc.min_customers_per_phrase
    contacts = pq.read_table(stage["crm"] / "contacts.parquet").to_pandas()
    names = {n.lower() for n in pd.concat([contacts["first_name"], contacts["last_name"]]).dropna()}
    with Warehouse.from_settings(settings).read() as con:
        tickets = read_tickets(con)
        tt = con.execute(f"select ticket_id, topic_id from ml.ticket_topics where run_id = '{RUN}'").df()
        vt = con.execute(f"select topic_id, examples from ml.voc_topics where run_id = '{RUN}'").fetchall()
    # each sentence as its words (what phrases are cut from), sentences apart
    tickets["text"] = [
        " | ".join(" ".join(re.findall(r"[a-z']+", s)) for s in sentences(t)) for t in scrubbed_texts(tickets)
    ]
    tickets = tickets.merge(tt, on="ticket_id")
    shown = 0
    for topic_id, examples in vt:
        for example in json.loads(examples):
            phrase = example["phrase"]
            shown += 1
            own = tickets[tickets["topic_id"] == topic_id]
            writers = own[own["text"].str.contains(phrase, regex=False)]["contact_id"].nunique()
            assert writers >= k, phrase
            assert example["customers"] <= writers, phrase  # within sentences <= anywhere in the text
            anywhere = tickets[tickets["text"].str.contains(phrase, regex=False)]["contact_id"].nunique()
            assert writers > anywhere / 2, phrase  # characteristic of its topic
            assert not set(re.findall(r"[a-z']+", phrase)) & names, phrase
            assert not re.search(r"\d|@|\[", phrase)
    assert shown > 0


def test_the_report_section_holds_aggregates_and_no_personal_data(stage: dict) -> None:
    with Warehouse.from_settings(stage["settings"]).read() as con:
        section = voc_from_tables(con)
        listed = topics(con)
    assert section is not None and section["run_id"] == RERUN  # the newest run
    assert section["tickets"] == stage["second"]["tickets"] == sum(t["tickets"] for t in listed)
    assert len(listed) == stage["second"]["k"]
    assert sum(m["tickets"] for m in section["trend"]) == section["tickets"]
    assert [t["tickets"] for t in section["topics"]] == sorted(
        (t["tickets"] for t in section["topics"]), reverse=True
    )
    text = json.dumps(section, default=str).lower()
    contacts = pq.read_table(stage["crm"] / "contacts.parquet").to_pandas()
    for col in ("email", "phone"):
        assert not any(v.lower() in text for v in contacts[col].dropna())
    bodies = truth_tickets(stage)["body"]
    assert not any(b.lower()[:40] in text for b in bodies if len(b) > 40)  # no ticket text, only phrases


@pytest.mark.slow  # a dbt build
def test_too_few_tickets_means_no_topics_and_a_clear_note(tmp_path: Path) -> None:
    crm = tmp_path / "crm"
    generate(GenerateSettings(customers=40, seed=2, defects=0.0, format="parquet"), out=crm)
    settings = make_settings(tmp_path / "project", {"crm": {"kind": "files", "path": str(crm)}})
    run_extract(settings)
    summary = run(settings, RUN)
    assert "k" not in summary and "too few for topics" in summary["note"]
    with duckdb.connect(str(settings.warehouse.path), read_only=True) as con:
        assert con.execute("select count(*) from ml.ticket_topics").fetchone() == (0,)  # the table exists
    # a warehouse where voc never ran (no ml.ticket_topics at all) still builds, without complaints
    with Warehouse.from_settings(settings).connect("drop") as con:
        con.execute("drop table ml.ticket_topics")
    run_dbt(settings, "build", AS_OF)
    with duckdb.connect(str(settings.warehouse.path), read_only=True) as con:
        [(rows, complaints, topics_named)] = con.execute(
            "select count(*), sum(complaints_90d), count(top_complaint_topic_90d) "
            "from staging.customer_features"
        ).fetchall()
    assert rows > 0 and complaints == 0 and topics_named == 0


AS_OF = date(2025, 12, 1)


@pytest.fixture(scope="module")
def features(stage: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The stage's warehouse copied, one negative ticket planted exactly at as_of 00:00 UTC (it must
    not count), and the dbt project built as of AS_OF."""
    root = tmp_path_factory.mktemp("voc_features")
    settings = make_settings(root / "project", {"crm": {"kind": "files", "path": str(stage["crm"])}})
    settings.warehouse.path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(stage["settings"].warehouse.path, settings.warehouse.path)
    with Warehouse.from_settings(settings).connect("plant") as con:
        [(contact_id,)] = con.execute(
            "select min(contact_id) from ml.ticket_topics "
            f"where run_id = '{RERUN}' and sentiment = 'negative'"
        ).fetchall()
        con.execute(
            "insert into ml.ticket_topics select run_id, 999999999, contact_id, ?::timestamptz, topic_id, "
            "topic, 'negative', 0.99, model_version from ml.ticket_topics "
            f"where run_id = '{RERUN}' and contact_id = ? limit 1",
            [f"{AS_OF} 00:00:00+00", contact_id],
        )
        tt = con.execute(f"select * from ml.ticket_topics where run_id = '{RERUN}'").df()
    run_dbt(settings, "build", AS_OF)
    with duckdb.connect(str(settings.warehouse.path), read_only=True) as con:
        cf = con.execute(
            "select contact_id, complaints_90d, top_complaint_topic_90d, top_complaint_topic_count_90d, "
            "top_topic_share_365d from staging.customer_features"
        ).df()
    return {"topics": tt, "features": cf.set_index("contact_id"), "planted": contact_id}


def expected_features(tt: pd.DataFrame, as_of: date) -> pd.DataFrame:
    """The four features recomputed from the ticket topics with pandas, strictly before as_of."""
    cut = pd.Timestamp(as_of, tz="UTC")
    known = tt[pd.to_datetime(tt["created_at"], utc=True) < cut].copy()
    known["created_at"] = pd.to_datetime(known["created_at"], utc=True)
    d90, d365 = cut - pd.Timedelta(days=90), cut - pd.Timedelta(days=365)
    rows = {}
    for contact_id, g in known.groupby("contact_id"):
        neg = g[(g["sentiment"] == "negative") & (g["created_at"] >= d90)]
        year = g[g["created_at"] >= d365]
        top, count = None, 0
        if len(neg):
            per = (
                neg.groupby("topic").agg(n=("ticket_id", "size"), latest=("created_at", "max")).reset_index()
            )
            per = per.sort_values(["n", "latest", "topic"], ascending=[False, False, True])
            top, count = per.iloc[0]["topic"], int(per.iloc[0]["n"])
        share = year["topic"].value_counts().iloc[0] / len(year) if len(year) else None
        rows[contact_id] = (len(neg), top, count, share)
    return pd.DataFrame.from_dict(
        rows,
        orient="index",
        columns=[
            "complaints_90d",
            "top_complaint_topic_90d",
            "top_complaint_topic_count_90d",
            "top_topic_share_365d",
        ],
    )


@pytest.mark.slow  # a dbt build
def test_complaint_features_are_point_in_time_for_every_customer(features: dict) -> None:
    cf, tt = features["features"], features["topics"]
    want = expected_features(tt, AS_OF)
    assert (cf["complaints_90d"] > 0).sum() > 10  # features that say something
    assert (pd.to_datetime(tt["created_at"], utc=True) >= pd.Timestamp(AS_OF, tz="UTC")).sum() > 10
    for contact_id, row in cf.iterrows():
        exp = want.loc[contact_id] if contact_id in want.index else None
        if exp is None:
            assert row["complaints_90d"] == 0 and pd.isna(row["top_complaint_topic_90d"])
            assert row["top_complaint_topic_count_90d"] == 0 and pd.isna(row["top_topic_share_365d"])
            continue
        assert row["complaints_90d"] == exp["complaints_90d"], contact_id
        topic = None if pd.isna(row["top_complaint_topic_90d"]) else row["top_complaint_topic_90d"]
        expected = None if pd.isna(exp["top_complaint_topic_90d"]) else exp["top_complaint_topic_90d"]
        assert topic == expected, contact_id
        assert row["top_complaint_topic_count_90d"] == exp["top_complaint_topic_count_90d"], contact_id
        if pd.isna(exp["top_topic_share_365d"]):
            assert pd.isna(row["top_topic_share_365d"])
        else:
            assert row["top_topic_share_365d"] == pytest.approx(exp["top_topic_share_365d"])
    # the negative ticket planted at as_of 00:00 was there to be counted, and was not (loop above)
    planted = tt[tt["ticket_id"] == 999999999]
    assert len(planted) == 1 and pd.Timestamp(planted["created_at"].iloc[0]) == pd.Timestamp(AS_OF, tz="UTC")


def _with_voc(settings, **update):
    voc = settings.ml.voc.model_copy(update=update)
    return settings.model_copy(update={"ml": settings.ml.model_copy(update={"voc": voc})})


@pytest.fixture
def stage_copy(stage: dict, tmp_path: Path):
    """The stage's project (warehouse, embeddings cache, registry) copied, for runs of its own."""
    settings = stage["settings"]
    shutil.copytree(settings.var_dir, tmp_path / "var")
    warehouse = settings.warehouse.model_copy(update={"path": tmp_path / "var" / "warehouse.duckdb"})
    return settings.model_copy(update={"var_dir": tmp_path / "var", "warehouse": warehouse})


def test_a_daily_run_reuses_k_and_c_and_writes_what_choosing_again_writes(stage: dict, stage_copy) -> None:
    """The runs after the first reuse its k and C (chosen less than reselect_every_days ago, on the
    same tickets); choosing again (reselect_every_days 0) on the same tickets picks the same k and C
    and gives the same topics, sentiments and figures, so the reuse changed nothing but the time."""
    first, second = stage["first"], stage["second"]
    assert "choice_reused" not in first
    reuse = second["choice_reused"]
    assert reuse["version"] == first["model_version"] and reuse["k"] == first["k"] == second["k"]
    assert reuse["C"] == first["sentiment"]["C"] == second["sentiment"]["C"]
    assert list(second["silhouette_curve"]) == [second["k"]]  # only the chosen k was fitted
    assert second["silhouette"] == pytest.approx(first["silhouette"], abs=1e-9)
    fresh_run = "20261203T000000Z-voc00003"
    fresh = run(_with_voc(stage_copy, reselect_every_days=0), fresh_run)
    assert "choice_reused" not in fresh and fresh["k"] == second["k"]
    assert fresh["sentiment"] == second["sentiment"] and fresh["topics"] == second["topics"]
    query = (
        "select ticket_id, topic_id, topic, sentiment, p_negative from ml.ticket_topics "
        "where run_id = ? order by ticket_id"
    )
    with con_of(stage) as con:
        reused_rows = con.execute(query, [RERUN]).fetchall()
    with duckdb.connect(str(stage_copy.warehouse.path), read_only=True) as con:
        fresh_rows = con.execute(query, [fresh_run]).fetchall()
    assert len(reused_rows) == first["tickets"] and reused_rows == fresh_rows
    card = stage["settings"].var_dir / "registry" / "voc" / second["model_version"] / "card.md"
    said = f"chosen by voc {first['model_version']} (0 days ago, on {first['tickets']:,} tickets"
    assert said in card.read_text() and said in summary_markdown(second)
    assert "chosen by voc" not in summary_markdown(fresh)
    from click.testing import CliRunner

    from clarion.cli import cli

    helped = CliRunner().invoke(cli, ["voc", "--help"])
    assert "reuses the promoted" in helped.output and "reselect_every_days" in helped.output


def test_k_and_c_are_chosen_again_when_old_changed_by_settings_or_tickets_or_flagged(stage_copy) -> None:
    from datetime import UTC, datetime, timedelta

    from clarion.voc.card import reusable_choice
    from models.registry import Registry

    settings = stage_copy
    promoted = Registry(settings.var_dir / "registry", model="voc").promoted()
    n = promoted.meta["choice"]["tickets"]
    assert n > 100 and reusable_choice(settings, n) is not None
    assert reusable_choice(settings, int(n * 1.09)) is not None
    assert reusable_choice(settings, int(n * 1.11) + 1) is None  # the tickets grew by more than 10%
    assert reusable_choice(settings, int(n * 0.89)) is None
    assert reusable_choice(_with_voc(settings, reselect_every_days=0), n) is None
    assert reusable_choice(_with_voc(settings, k_max=10), n) is None
    assert reusable_choice(_with_voc(settings, k_min=3), n) is None
    assert reusable_choice(_with_voc(settings, min_customers_per_phrase=9), n) is not None
    every = settings.ml.voc.reselect_every_days
    meta = promoted.meta
    for age, reused in [
        (timedelta(days=every - 1), True),
        (timedelta(days=every, minutes=1), False),  # too old
        (timedelta(minutes=-5), False),  # chosen in the future: a clock moved back
    ]:
        meta["choice"]["at"] = (datetime.now(UTC) - age).isoformat()
        (promoted.path / "meta.json").write_text(json.dumps(meta))
        assert (reusable_choice(settings, n) is not None) is reused, age
    meta["choice"]["at"] = datetime.now(UTC).isoformat()
    meta["retrain_required"] = {"reason": "erasure"}
    (promoted.path / "meta.json").write_text(json.dumps(meta))
    assert reusable_choice(settings, n) is None
