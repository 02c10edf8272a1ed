"""The synthetic CRM's taste and ticket topics: what a recommender and topic recovery must find.

Customers buy mostly in a favourite category and buy companion products together (so a recommender
can beat popularity); tickets carry planted topics, finer than their category, in many wordings
(so topic recovery is tested on variety, not on 30 fixed sentences). Checked on the exported files
of a clean 2,000-customer CRM against independent computations and the truth files.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from clarion.config import GenerateSettings
from clarion.contract import TICKET_CATEGORIES
from clarion.synth import ticket_topics as tt
from clarion.synth import vocab
from clarion.synth.arrays import Timeline
from clarion.synth.generator import generate
from clarion.synth.orders import FX_PER_EUR, make_catalog

CUSTOMERS = 2000


def _load(folder: Path, name: str) -> pd.DataFrame:
    return pq.read_table(folder / f"{name}.parquet").to_pandas()


@pytest.fixture(scope="module")
def crm(tmp_path_factory) -> dict[str, pd.DataFrame]:
    """A clean 2,000-customer export (about a second): defects would add rows the checks must skip."""
    folder = tmp_path_factory.mktemp("taste") / "crm"
    generate(GenerateSettings(customers=CUSTOMERS, seed=11, defects=0.0, format="parquet"), out=folder)
    names = ["orders", "order_items", "products", "support_tickets", "contacts"]
    names += ["truth/contacts", "truth/tickets", "truth/product_companions"]
    return {name: _load(folder, name) for name in names}


@pytest.fixture(scope="module")
def lines(crm) -> pd.DataFrame:
    """Order lines with the buyer and the product's category."""
    items = crm["order_items"].merge(crm["orders"][["order_id", "contact_id"]], on="order_id")
    return items.merge(crm["products"][["product_id", "category"]], on="product_id")


# -- taste -----------------------------------------------------------------------------------------


def test_customers_buy_mostly_in_their_favourite_category(crm, lines) -> None:
    """The share of a customer's items in their top category is far above what buying by global
    popularity alone gives the same customers (each customer's item count drawn from the shop's
    overall category mix), and the top category is mostly the planted favourite."""
    per = lines.groupby(["contact_id", "category"]).size().unstack(fill_value=0)
    n_items = per.sum(axis=1)
    many = n_items >= 8
    observed = (per.max(axis=1) / n_items)[many]
    mix = per.sum(axis=0) / per.to_numpy().sum()
    rng = np.random.default_rng(0)
    null = np.array([rng.multinomial(k, mix.to_numpy()).max() / k for k in n_items[many]])
    assert many.sum() > 500
    assert observed.mean() > null.mean() + 0.15, (observed.mean(), null.mean())
    # the base share of the most bought category is well below what a customer buys in theirs
    assert observed.mean() > mix.max() + 0.15, (observed.mean(), mix.max())
    favourite = crm["truth/contacts"].set_index("contact_id")["favourite_category"]
    top = per[many].idxmax(axis=1)
    assert (top == favourite.reindex(top.index)).mean() > 0.7


def test_favourites_follow_the_shops_category_mix(crm, lines) -> None:
    """Favourites are drawn by the categories' popularity, so the item mix (and price level) stays
    the shop's: every category's share of favourites is near its share of items."""
    fav = crm["truth/contacts"]["favourite_category"].value_counts(normalize=True)
    items = lines["category"].value_counts(normalize=True)
    both = pd.concat([fav, items], axis=1, keys=["favourite", "items"]).fillna(0)
    assert (both["favourite"] - both["items"]).abs().max() < 0.08, both


def test_companion_products_are_bought_together_far_above_chance(crm, lines) -> None:
    """Orders holding a product hold its companion far more often than chance (the product's share
    of orders), and more than other products of the companion's category."""
    baskets = lines[["order_id", "product_id"]].drop_duplicates()
    n_orders = baskets["order_id"].nunique()
    pairs = baskets.merge(baskets, on="order_id", suffixes=("", "_other"))
    pairs = pairs[pairs["product_id"] != pairs["product_id_other"]]
    together = pairs.groupby(["product_id", "product_id_other"]).size().rename("together").reset_index()
    orders_of = baskets.groupby("product_id").size()
    companions = crm["truth/product_companions"]
    assert companions.groupby("product_id").size().between(2, 3).all()
    assert len(companions) >= 2 * len(crm["products"])
    planted = companions.rename(columns={"companion_product_id": "product_id_other"})
    planted = planted.merge(together, on=["product_id", "product_id_other"], how="left").fillna(0)
    expected = orders_of.reindex(planted["product_id"]).to_numpy() * (
        orders_of.reindex(planted["product_id_other"]).fillna(0).to_numpy() / n_orders
    )
    lift = planted["together"].sum() / expected.sum()
    assert lift > 3, lift
    # other pairs: everything bought together that is not a planted companion pair (either way)
    key = set(zip(companions["product_id"], companions["companion_product_id"], strict=True))
    key |= {(b, a) for a, b in key}
    other = together[
        [(a, b) not in key for a, b in zip(together["product_id"], together["product_id_other"], strict=True)]
    ]
    other_expected = (
        orders_of.reindex(other["product_id"]).to_numpy()
        * orders_of.reindex(other["product_id_other"]).to_numpy()
        / n_orders
    )
    other_lift = other["together"].sum() / other_expected.sum()
    assert lift > 3 * other_lift, (lift, other_lift)


def test_items_keep_the_price_level_of_buying_by_popularity(crm) -> None:
    """Taste changes what is bought, not what it costs on average (the churn model's monetary
    features): the mean unit price paid (EUR) is within 8% of the mean a purely popularity-driven
    draw from the same catalogue gives (the catalogue rebuilt from the generator's seed)."""
    g = GenerateSettings(customers=CUSTOMERS, seed=11, defects=0.0, format="parquet")
    catalog = make_catalog(
        np.random.default_rng(np.random.SeedSequence([g.seed, 0])), g.products, Timeline.from_settings(g)
    )
    popularity = np.diff(np.concatenate([[0.0], catalog.popularity_cdf]))
    price = crm["products"].set_index("product_id")["price"].astype(float)
    by_popularity = float(popularity @ price.reindex(np.arange(1, len(popularity) + 1)).to_numpy())
    items = crm["order_items"].merge(crm["orders"][["order_id", "currency"]], on="order_id")
    paid = (items["unit_price"].astype(float) / items["currency"].map(FX_PER_EUR)).mean()
    assert abs(paid / by_popularity - 1) < 0.08, (paid, by_popularity)


# -- ticket topics -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tickets(crm) -> pd.DataFrame:
    return crm["support_tickets"].merge(crm["truth/tickets"], on="ticket_id", validate="one_to_one")


def _message(body: str) -> str:
    """The line that says what the ticket is about: after the greeting, if any; order numbers as N."""
    lines = body.split("\n")
    line = lines[1] if lines[0] in vocab.GREETINGS and len(lines) > 1 else lines[0]
    return re.sub(r"\d+", "N", line)


def test_every_ticket_has_a_planted_topic_consistent_with_its_category(tickets) -> None:
    assert tickets["topic"].notna().all()
    assert set(tickets["topic"]) == set(tt.TOPICS), set(tt.TOPICS) - set(tickets["topic"])
    category_of = {topic: category for topic, (category, _) in tt.TOPICS.items()}
    assert (tickets["topic"].map(category_of) == tickets["category"]).all()
    assert set(category_of.values()) == set(TICKET_CATEGORIES)
    # each topic's subject is one of its own
    assert all(s in tt.SUBJECTS[t] for s, t in zip(tickets["subject"], tickets["topic"], strict=True))


def test_topics_are_said_in_many_wordings(tickets) -> None:
    """At least 20 distinct messages per topic (greeting, contact lines and sign-off aside, order
    numbers masked), hundreds in all."""
    messages = tickets.assign(message=tickets["body"].map(_message))
    distinct = messages.groupby("topic")["message"].nunique()
    assert (distinct >= 20).all(), distinct.to_dict()
    assert messages["message"].nunique() >= 300, messages["message"].nunique()


def test_every_earlier_sentence_and_subject_is_still_used_by_a_topic_in_its_category() -> None:
    for (category, sentiment), sentences in vocab.TICKET_BODIES.items():
        for sentence in sentences:
            homes = [t for (t, s), cores in tt.CORES.items() if s == sentiment and sentence in cores]
            assert len(homes) == 1 and tt.TOPICS[homes[0]][0] == category, (sentence, homes)
    for category, subjects in vocab.TICKET_SUBJECTS.items():
        for subject in subjects:
            assert any(subject in tt.SUBJECTS[t] for t, (c, _) in tt.TOPICS.items() if c == category), subject
    for topic in tt.TOPICS:
        for sentiment in ("negative", "neutral", "positive"):
            assert tt.CORES[(topic, sentiment)], (topic, sentiment)


def test_order_references_come_in_the_forms_a_scrubber_must_catch(crm, tickets) -> None:
    """ "#123", "order no. 123", "order 123" and "order number 123" all occur, and every number so
    written is an order of the ticket's own contact (never a made-up or another person's order)."""
    body = tickets["body"]
    for pattern in (r"#\d+", r"order no\. \d+", r"order \d+", r"order number \d+"):
        assert body.str.contains(pattern, case=False, regex=True).sum() > 10, pattern
    refs = body.str.extractall(r"(?i)(?:#|order no\. |order number |order )(\d+)")[0]
    named = pd.DataFrame(
        {
            "contact_id": tickets["contact_id"].to_numpy()[refs.index.get_level_values(0)],
            "order_id": refs.astype(int),
        }
    )
    owner = named.merge(
        crm["orders"][["order_id", "contact_id"]], on="order_id", how="left", suffixes=("", "_of")
    )
    assert len(owner) > 500
    assert (owner["contact_id_of"] == owner["contact_id"]).all()


def test_late_and_lost_parcel_complaints_are_about_that_order(crm, tickets) -> None:
    """A ticket naming a lost (late) parcel's order as "#id" in a lost_parcel (late_delivery)
    ticket: the topic agrees with the order's delivery status more often than not."""
    ref = tickets["body"].str.extract(r"(?:#|order no\. |order number |order )(\d+)")[0]
    t = tickets.assign(order_id=pd.to_numeric(ref, errors="coerce"))
    t = t.merge(crm["orders"][["order_id", "delivery_status"]], on="order_id", how="inner")
    lost = t[t["topic"] == "lost_parcel"]
    late = t[t["topic"] == "late_delivery"]
    assert len(lost) > 30 and len(late) > 30
    assert (lost["delivery_status"] == "lost").mean() > 0.5
    assert (late["delivery_status"] == "late").mean() > 0.5


def test_negative_tickets_are_read_as_negative_by_the_staging_lexicon_mostly(tickets) -> None:
    """The lexicon (dbt stg_support_tickets) stays a baseline, imperfect, but still finds most truly
    negative tickets: the churn model's support driver counts them."""
    sql = (Path(__file__).resolve().parents[1] / "dbt/models/staging/stg_support_tickets.sql").read_text()

    def words(name: str) -> list[str]:
        return re.findall(r'"([^"]+)"', re.search(rf"set {name} = \[(.*?)\]", sql, re.S).group(1))

    text = (tickets["subject"].fillna("") + " " + tickets["body"].fillna("")).str.lower()
    neg = sum(text.str.contains(w, regex=False).astype(int) for w in words("negative"))
    pos = sum(text.str.contains(w, regex=False).astype(int) for w in words("positive"))
    lexicon = np.where(neg > pos, "negative", np.where(pos > neg, "positive", "neutral"))
    truly = tickets["sentiment"] == "negative"
    assert (lexicon[truly] == "negative").mean() > 0.9
    assert (lexicon == tickets["sentiment"]).mean() < 0.95  # a baseline, not the truth
