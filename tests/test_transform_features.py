"""Customer features and labels on a tiny CRM computed by hand, around the as_of boundary.

as_of = 2026-07-01: features see only what happened before 2026-07-01 00:00 UTC; labels count
non-cancelled purchases in [as_of, as_of + 90 days). Every expected number below is worked out
in the comment beside it.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from extract_helpers import make_settings, query

from clarion.content.store import ensure_tables as content_tables
from clarion.contract import ENTITIES
from clarion.extract.publish import ensure_tables
from clarion.transform.dbt import MART_TABLES, run_dbt
from clarion.warehouse import Warehouse

AS_OF = date(2026, 7, 1)


def insert(con, entity: str, rows: list[dict[str, Any]]) -> None:
    columns = ENTITIES[entity].column_names
    for row in rows:
        unknown = set(row) - set(columns)
        assert not unknown, unknown
        values = [row.get(c) for c in columns]
        con.execute(
            f'insert into raw."{entity}" ({", ".join(columns)}, _source, _load_id, _loaded_at, _row_hash) '
            f"values ({', '.join('?' for _ in columns)}, 'hand', 'test', now(), 0)",
            values,
        )


def contact(contact_id: int, signup: str, **kw: Any) -> dict[str, Any]:
    return {
        "contact_id": contact_id,
        "country": "DE",
        "signup_date": signup,
        "email_consent": True,
        "sms_consent": False,
        "marketing_objection": False,
        "updated_at": f"{signup} 00:00:00+00",
        **kw,
    }


def order(order_id: int, contact_id: int, at: str, total: float, **kw: Any) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "contact_id": contact_id,
        "ordered_at": at,
        "status": "completed",
        "currency": "EUR",
        "total_amount": total,
        "subtotal_amount": total,
        "discount_amount": 0,
        "delivery_status": "on_time",
        "updated_at": at,
        **kw,
    }


def event(event_id: int, contact_id: int, kind: str, at: str, campaign: str = "c") -> dict[str, Any]:
    return {
        "event_id": event_id,
        "contact_id": contact_id,
        "campaign_id": campaign,
        "event_type": kind,
        "occurred_at": at,
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[dict[int, dict], dict[int, dict], Any]:
    settings = make_settings(tmp_path_factory.mktemp("features"), {})
    with Warehouse.from_settings(settings).connect("hand-made raw") as con:
        ensure_tables(con)
        insert(
            con,
            "contacts",
            [
                contact(1, "2025-01-01"),
                contact(2, "2026-06-30"),  # signed up the day before as_of: a customer with no history
                contact(3, "2026-07-01"),  # signed up on as_of: not a customer yet
                contact(4, "2025-01-01"),  # purchase days, categories and e-mail edge cases
            ],
        )
        insert(
            con,
            "orders",
            [
                order(11, 1, "2026-01-01 10:00:00+00", 100.0),
                order(12, 1, "2026-03-01 10:00:00+00", 50.0, discount_amount=5.0, subtotal_amount=55.0),
                order(13, 1, "2026-05-01 10:00:00+00", 30.0, status="returned"),
                order(14, 1, "2026-06-30 23:59:59+00", 20.0, status="cancelled"),
                order(15, 1, "2026-07-01 00:00:00+00", 999.0),  # at as_of: a label, never a feature
                order(16, 1, "2026-09-29 00:00:00+00", 7.0),  # as_of + 90 days: outside the horizon
                order(21, 2, "2026-06-30 12:00:00+00", 85.0, currency="GBP"),  # 85 GBP = 100 EUR (0.85/EUR)
                # contact 4 bought on three UTC days: two orders on Feb 10, one just after midnight
                order(41, 4, "2026-02-10 08:00:00+00", 15.0),
                order(42, 4, "2026-02-10 23:00:00+00", 20.0),
                order(43, 4, "2026-02-11 00:30:00+00", 5.0),
                order(44, 4, "2026-03-01 10:00:00+00", 50.0, status="cancelled"),  # no day, no category
                order(45, 4, "2026-04-01 10:00:00+00", 10.0),
            ],
        )
        insert(
            con,
            "products",
            [
                {
                    "product_id": pid,
                    "sku": f"sku-{pid}",
                    "name": f"product {pid}",
                    "category": category,
                    "price": 10.0,
                    "currency": "EUR",
                    "active": True,
                    "updated_at": "2025-01-01 00:00:00+00",
                }
                for pid, category in ((1, "apparel"), (2, "footwear"), (3, "home"))
            ],
        )
        insert(
            con,
            "order_items",
            [
                {
                    "order_item_id": item_id,
                    "order_id": order_id,
                    "product_id": pid,
                    "quantity": 1,
                    "unit_price": amount,
                    "line_amount": amount,
                    "updated_at": "2026-01-01 00:00:00+00",
                }
                for item_id, order_id, pid, amount in (
                    (1, 41, 1, 10.0),
                    (2, 41, 1, 5.0),  # apparel twice in one order: one category
                    (3, 42, 2, 20.0),
                    (4, 43, 1, 5.0),
                    (5, 44, 3, 50.0),  # home, on the cancelled order only
                    (6, 45, 2, 10.0),
                )
            ],
        )
        insert(
            con,
            "email_events",
            [
                # sent in the last 60 days (from 2026-05-02): 4 sends, 2 of them opened, 1 clicked
                *[event(100 + i, 1, "sent", f"2026-06-{10 + i:02d} 09:00:00+00", f"m{i}") for i in range(4)],
                event(110, 1, "open", "2026-06-10 12:00:00+00", "m0"),
                event(111, 1, "open", "2026-06-12 12:00:00+00", "m2"),
                event(112, 1, "click", "2026-06-12 12:05:00+00", "m2"),
                event(113, 1, "open", "2026-07-01 00:00:00+00", "m1"),  # at as_of: not seen
                # sent in the 120 days before (2026-01-02 .. 2026-05-01): 5 sends, all opened
                *[event(120 + i, 1, "sent", f"2026-0{1 + i}-15 09:00:00+00", f"p{i}") for i in range(4)],
                *[event(130 + i, 1, "open", f"2026-0{1 + i}-15 10:00:00+00", f"p{i}") for i in range(4)],
                # sent the day before the recent window, opened inside it: the older window's open
                event(124, 1, "sent", "2026-05-01 09:00:00+00", "p4"),
                event(134, 1, "open", "2026-05-03 10:00:00+00", "p4"),
                # enrolled in a campaign's control group: nothing was sent, so not a send
                event(140, 1, "control", "2026-06-20 09:00:00+00", "x0"),
                # contact 4 (the windows start 2026-01-02 and 2026-05-02):
                # "r" was first sent before the 180 days, so its resend and open in them are an
                # older send's; "q" has an open recorded before its send, which still counts; "s"
                # was clicked, not opened; an unsubscribe long before the windows still counts
                event(400, 4, "sent", "2025-12-20 09:00:00+00", "r"),
                event(401, 4, "sent", "2026-02-01 09:00:00+00", "r"),
                event(402, 4, "open", "2026-02-02 10:00:00+00", "r"),
                event(403, 4, "open", "2025-12-30 10:00:00+00", "q"),
                event(404, 4, "sent", "2026-06-20 09:00:00+00", "q"),
                event(405, 4, "sent", "2026-03-01 09:00:00+00", "s"),
                event(406, 4, "click", "2026-03-02 09:00:00+00", "s"),
                event(407, 4, "unsubscribe", "2025-06-01 09:00:00+00", "u"),
            ],
        )
        insert(
            con,
            "support_tickets",
            [
                {
                    "ticket_id": 1,
                    "contact_id": 1,
                    "created_at": "2026-06-01 08:00:00+00",
                    "channel": "email",
                    "category": "delivery",
                    "status": "closed",
                    "subject": "Late",
                    "body": "Terrible service.",
                    "updated_at": "2026-06-02 08:00:00+00",
                },
                {
                    "ticket_id": 2,
                    "contact_id": 1,
                    "created_at": "2025-12-13 08:00:00+00",
                    "channel": "chat",
                    "category": "product",
                    "status": "closed",
                    "subject": "Hi",
                    "body": "A question",
                    "satisfaction_score": 5,
                    "updated_at": "2025-12-13 09:00:00+00",
                },
                {
                    "ticket_id": 3,
                    "contact_id": 1,
                    "created_at": "2026-07-01 00:00:00+00",
                    "channel": "chat",
                    "category": "product",
                    "status": "open",
                    "subject": "x",
                    "body": "terrible, unhappy",
                    "updated_at": "2026-07-01 00:00:00+00",
                },  # at as_of: not seen
            ],
        )
        insert(
            con,
            "consents",
            [
                {
                    "consent_id": 1,
                    "contact_id": 1,
                    "channel": "email",
                    "event": "opt_in",
                    "recorded_at": "2025-01-01 00:00:00+00",
                    "source": "checkout",
                    "lawful_basis": "consent",
                },
                {
                    "consent_id": 2,
                    "contact_id": 1,
                    "channel": "email",
                    "event": "opt_out",
                    "recorded_at": "2026-06-15 00:00:00+00",
                    "source": "unsubscribe_link",
                },
                {
                    "consent_id": 3,
                    "contact_id": 1,
                    "channel": "email",
                    "event": "opt_in",
                    "recorded_at": "2026-07-01 00:00:00+00",
                    "source": "web_form",
                    "lawful_basis": "consent",
                },
                {
                    "consent_id": 4,
                    "contact_id": 2,
                    "channel": "email",
                    "event": "opt_in",
                    "recorded_at": "2026-06-30 00:00:00+00",
                    "source": "checkout",
                    "lawful_basis": "consent",
                },
            ],
        )
        # Clarion's own export of "spring" held contact 2 out (and assigned contact 1 to treatment,
        # which the CRM never confirmed with a send): see test_clarions_own_holdouts_...
        content_tables(con)
        con.executemany(
            "insert into content.assignments values (?, 'spring', ?, ?, ?, ?)",
            [
                ("e-email", 2, "holdout", None, "2026-06-29 10:00:00+00"),
                ("e-sms", 2, "holdout", None, "2026-06-29 11:00:00+00"),  # the same customer, 2nd channel
                ("e-email", 1, "treatment", "A", "2026-06-29 10:00:00+00"),
            ],
        )
    run_dbt(settings, "build", AS_OF)

    def rows(table: str) -> dict[int, dict]:
        cols = [c for c, *_ in query(settings, f"describe staging.{table}")]
        return {
            r[0]: dict(zip(cols, r, strict=True)) for r in query(settings, f"select * from staging.{table}")
        }

    return rows("customer_features"), rows("customer_labels"), settings


def test_clarions_own_holdouts_are_control_enrolments_from_their_first_assignment(built) -> None:
    settings = built[2]
    exposures = query(
        settings,
        "select contact_id, arm, variant_id, strftime(exposed_at at time zone 'UTC', '%Y-%m-%d %H:%M'), "
        "conversions, revenue_eur, delivered, contaminated "
        "from staging.fct_campaign_exposures where campaign_id = 'spring' order by contact_id",
    )
    # contact 2: held out by both channel exports, followed from the first assignment; its order of
    # 2026-06-30 (85 GBP = 100 EUR) falls in the 7-day window. Contact 1 was assigned to treatment,
    # but exposure to a campaign is the CRM's `sent`: none, so no row.
    assert exposures == [(2, "control", None, "2026-06-29 10:00", 1, 100.0, False, False)]


def test_two_exposures_of_one_customer_to_one_campaign_fail_the_key_test(built) -> None:
    """The exposures' key test (unique_combination on campaign and customer) fails on a repeated
    pair and names it; the build itself groups events by that pair, so this puts one in by hand."""
    from clarion.transform.dbt import DbtBuildError

    settings = built[2]
    select = ("--select", "fct_campaign_exposures,test_name:unique_combination")
    run_dbt(settings, "test", AS_OF, *select)  # the build's rows pass
    with Warehouse.from_settings(settings).connect("test") as con:
        con.execute(
            "insert into staging.fct_campaign_exposures "
            "select * from staging.fct_campaign_exposures where campaign_id = 'spring'"
        )
    try:
        with pytest.raises(DbtBuildError, match=r"unique_combination_fct_campaign_exposures"):
            run_dbt(settings, "test", AS_OF, *select)
    finally:  # the module's other tests read this build; a hand-made row needs a full refresh
        run_dbt(settings, "run", AS_OF, "--select", "fct_campaign_exposures", "--full-refresh")
    spring = "select count(*) from staging.fct_campaign_exposures where campaign_id = 'spring'"
    assert query(settings, spring) == [(1,)]


def test_only_customers_who_signed_up_before_as_of_are_described(built) -> None:
    features, labels, _ = built
    assert set(features) == {1, 2, 4} and set(labels) == {1, 2, 4}
    assert all(f["as_of"] == AS_OF for f in features.values())


def test_recency_frequency_and_monetary_see_only_the_past(built) -> None:
    f = built[0][1]
    assert f["orders_lifetime"] == 3  # 11, 12, 13; 14 is cancelled; 15 and 16 are not yet
    assert f["orders_90d"] == 1  # from 2026-04-02: only 13
    assert f["orders_365d"] == 3
    assert f["spend_lifetime_eur"] == pytest.approx(150.0)  # 100 + 50; 13 was returned
    assert f["spend_90d_eur"] == pytest.approx(0.0)
    assert f["avg_order_value_eur"] == pytest.approx(60.0)  # (100 + 50 + 30) / 3
    assert f["recency_days"] == pytest.approx(60 + 14 / 24)  # 2026-05-01 10:00 -> 2026-07-01 00:00
    assert f["tenure_days"] == pytest.approx(546)  # 2025-01-01 -> 2026-07-01
    assert f["has_ordered"] is True


def test_purchase_rhythm_discounts_and_returns(built) -> None:
    f = built[0][1]
    assert f["mean_gap_days"] == pytest.approx(60.0)  # Jan 1 -> Mar 1 is 59 days, Mar 1 -> May 1 is 61
    assert f["recent_gap_days"] == pytest.approx(60.0)
    assert f["gap_trend_ratio"] == pytest.approx(1.0)
    assert f["recency_vs_usual"] == pytest.approx((60 + 14 / 24) / 60)
    assert f["discount_share"] == pytest.approx(1 / 3)
    assert f["return_rate"] == pytest.approx(1 / 3)


def test_purchase_days_count_utc_days_and_categories_count_what_was_bought(built) -> None:
    f = built[0][4]
    assert f["orders_lifetime"] == 4  # 41, 42, 43, 45; 44 is cancelled
    assert f["purchase_days"] == 3  # Feb 10 (41 and 42), Feb 11 (43 at 00:30 UTC), Apr 1
    assert f["n_categories"] == 2  # apparel and footwear; home was only on the cancelled order
    assert f["share_apparel"] == pytest.approx(20 / 50)  # 10 + 5 + 5 of 50
    assert f["share_footwear"] == pytest.approx(30 / 50)
    assert f["share_home"] == 0 and f["top_category_share"] == pytest.approx(0.6)
    f1 = built[0][1]
    assert f1["purchase_days"] == 3 and f1["n_categories"] == 0  # three days; no order lines
    assert built[0][2]["purchase_days"] == 1


def test_a_send_belongs_to_its_first_sent_event_and_keeps_every_reaction_before_the_day(built) -> None:
    f = built[0][4]
    # 60 days: "q" sent Jun 20, opened (its open was recorded before the send, on Dec 30)
    assert (f["email_sends_60d"], f["email_opens_60d"], f["email_clicks_60d"]) == (1, 1, 0)
    # the 120 before: "s" (clicked, not opened); "r" was first sent on Dec 20, before both windows
    assert f["email_sends_prior_120d"] == 1
    assert f["open_rate_prior_120d"] == 0 and f["click_rate_prior_120d"] == 1
    assert f["days_since_last_open"] == pytest.approx(149 - 10 / 24)  # "r" opened Feb 2 10:00
    assert f["unsubscribed"] is True  # on 2025-06-01, long before the windows


def test_email_engagement_compares_the_last_60_days_with_the_120_before(built) -> None:
    f = built[0][1]
    assert (f["email_sends_60d"], f["email_opens_60d"], f["email_clicks_60d"]) == (4, 2, 1)
    assert f["open_rate_60d"] == pytest.approx(0.5)
    assert f["open_rate_prior_120d"] == pytest.approx(1.0)
    assert f["open_rate_change"] == pytest.approx(-0.5)
    assert f["click_rate_change"] == pytest.approx(0.25)  # 1/4 now, 0/5 before
    assert f["days_since_last_open"] == pytest.approx(18.5)  # 2026-06-12 12:00 -> 2026-07-01 00:00


def test_support_sentiment_and_consent_as_of_the_day(built) -> None:
    f1, f2 = built[0][1], built[0][2]
    assert f1["tickets_365d"] == 2 and f1["tickets_90d"] == 1  # the ticket at as_of is not seen
    assert f1["negative_tickets_90d"] == 1  # "terrible" in the text
    assert f1["avg_satisfaction_365d"] == pytest.approx(5.0)
    assert f1["email_consent"] is False  # opted out on 2026-06-15; the new opt-in is at as_of
    assert f2["email_consent"] is True


def test_a_customer_without_history_has_zeros_not_gaps(built) -> None:
    f2 = built[0][2]
    assert f2["orders_lifetime"] == 1 and f2["spend_lifetime_eur"] == pytest.approx(100.0)  # 85 GBP
    assert f2["email_sends_60d"] == 0 and f2["open_rate_60d"] is None  # no sends: no rate, not 0%
    assert f2["tickets_90d"] == 0 and f2["n_categories"] == 0


def test_labels_count_the_horizon_and_nothing_after_it(built) -> None:
    labels = built[1]
    assert labels[1]["purchased_in_horizon"] is True
    assert labels[1]["orders_in_horizon"] == 1  # 15 at as_of; 16 at as_of + 90 days is outside
    assert labels[1]["spend_in_horizon_eur"] == pytest.approx(999.0)
    assert labels[2]["purchased_in_horizon"] is False


def test_personal_data_and_ticket_text_never_reach_the_marts(built) -> None:
    settings = built[2]
    pii = {"first_name", "last_name", "email", "phone", "subject", "body"}
    for table in MART_TABLES:
        columns = {c for c, *_ in query(settings, f"describe staging.{table}")}
        assert not columns & pii, table


def test_features_as_of_an_earlier_day_forget_what_came_later(built, tmp_path: Path) -> None:
    settings = built[2]
    run_dbt(settings, "build", date(2026, 3, 1))
    [(orders, spend, recency)] = query(
        settings,
        "select orders_lifetime, spend_lifetime_eur, recency_days from staging.customer_features "
        "where contact_id = 1",
    )
    assert (orders, spend) == (1, 100.0)  # only order 11 happened before 2026-03-01
    assert recency == pytest.approx(58 + 14 / 24)  # 2026-01-01 10:00 -> 2026-03-01 00:00
    [(label_orders,)] = query(
        settings, "select orders_in_horizon from staging.customer_labels where contact_id = 1"
    )
    assert label_orders == 2  # 12 (Mar 1) and 13 (May 1, returned but not cancelled)
    # 1 and 4; 2 signed up later
    assert query(settings, "select count(*) from staging.customer_features")[0][0] == 2


# -- point in time: a status counts from when it was recorded ------------------------------------
def _features(settings, day: date, schema: str = "staging") -> dict[int, dict]:
    run_dbt(settings, "build", day, "--select", "+customer_features", "--exclude-resource-type", "test")
    cols = [c for c, *_ in query(settings, f"describe {schema}.customer_features")]
    return {
        r[0]: dict(zip(cols, r, strict=True))
        for r in query(settings, f"select * from {schema}.customer_features")
    }


def test_a_return_or_a_survey_recorded_after_the_day_changes_nothing_in_that_days_features(tmp_path) -> None:
    """Training snapshots lie in the past: an order returned (or a survey answered) after the day
    must not count on that day, as it could not have been known. Computed with the order as it was
    on the day, with it as it is now (returned, the earlier version in the extract's history), and
    with it as it is now and no history (the row changed on or after the day counts as placed)."""
    settings = make_settings(tmp_path / "pit", {})
    day, later = date(2026, 7, 1), date(2026, 8, 1)
    placed = order(31, 7, "2026-04-10 10:00:00+00", 80.0, updated_at="2026-04-15 10:00:00+00")
    returned = order(
        31, 7, "2026-04-10 10:00:00+00", 80.0, status="returned", delivery_status="late",
        updated_at="2026-07-15 10:00:00+00",
    )  # fmt: skip
    ticket = {
        "ticket_id": 9,
        "contact_id": 7,
        "created_at": "2026-06-01 08:00:00+00",
        "channel": "email",
        "category": "delivery",
        "status": "closed",
        "subject": "Parcel",
        "body": "Where is it?",
        "updated_at": "2026-06-01 09:00:00+00",
    }
    answered = {**ticket, "satisfaction_score": 1, "updated_at": "2026-07-05 12:00:00+00"}
    with Warehouse.from_settings(settings).connect("pit") as con:
        ensure_tables(con)
        insert(con, "contacts", [contact(7, "2025-06-01")])
        insert(con, "orders", [placed, order(32, 7, "2026-02-01 10:00:00+00", 20.0)])
        insert(con, "support_tickets", [ticket])
    as_it_was = _features(settings, day)[7]

    with Warehouse.from_settings(settings).connect("pit") as con:  # what the extract does on an update
        con.execute(
            "insert into raw.orders_history select *, now(), 'test' from raw.orders where order_id = 31"
        )
        con.execute("delete from raw.orders where order_id = 31")
        insert(con, "orders", [returned])
        con.execute(
            "insert into raw.support_tickets_history select *, now(), 'test' from raw.support_tickets"
        )
        con.execute("delete from raw.support_tickets")
        insert(con, "support_tickets", [answered])
    with_history = _features(settings, day)[7]
    with Warehouse.from_settings(settings).connect("pit") as con:
        con.execute("delete from raw.orders_history")
        con.execute("delete from raw.support_tickets_history")
    without_history = _features(settings, day)[7]

    assert as_it_was["return_rate"] == 0 and as_it_was["spend_lifetime_eur"] == pytest.approx(100.0)
    assert as_it_was["avg_satisfaction_365d"] is None and as_it_was["negative_tickets_90d"] == 0
    assert with_history == as_it_was
    assert without_history == as_it_was
    # a day after the return and the survey: both count
    after = _features(settings, later)[7]
    assert after["return_rate"] == pytest.approx(0.5) and after["spend_lifetime_eur"] == pytest.approx(20.0)
    assert after["delivery_problems_180d"] == 1
    assert after["avg_satisfaction_365d"] == pytest.approx(1.0) and after["negative_tickets_90d"] == 1


def test_labels_are_null_until_their_horizon_has_ended(built) -> None:
    """As of 2026-08-01 the 90-day horizon ends 2026-10-30, after the latest order (2026-09-29):
    nobody can know yet who buys, so the labels are NULL, not "did not buy"."""
    settings = built[2]
    models = ("--select", "customer_features", "customer_labels", "--exclude-resource-type", "test")
    run_dbt(settings, "build", date(2026, 8, 1), *models)
    rows = query(
        settings,
        "select horizon_complete, purchased_in_horizon, orders_in_horizon, spend_in_horizon_eur "
        "from staging.customer_labels",
    )
    assert rows and all(r == (False, None, None, None) for r in rows)
    run_dbt(settings, "build", AS_OF, *models)
    assert {r[0] for r in query(settings, "select horizon_complete from staging.customer_labels")} == {True}


def test_several_days_in_one_build_equal_each_day_built_alone(built) -> None:
    """Training builds every snapshot day at once (var as_of_days): each day's rows must be exactly
    the rows that day's own build gives, features and labels."""
    from clarion.transform.dbt import run_dbt as build

    settings = built[2]
    days = [date(2026, 3, 1), AS_OF]
    alone = {}
    for day in days:
        build(
            settings,
            "build",
            day,
            "--select",
            "customer_features",
            "customer_labels",
            "--exclude-resource-type",
            "test",
        )
        alone[day] = query(
            settings,
            "select f.*, l.* exclude (contact_id, as_of) from staging.customer_features f "
            "join staging.customer_labels l using (contact_id, as_of) order by contact_id",
        )
    models = ("--select", "+customer_features", "+customer_labels", "--exclude-resource-type", "test")
    build(
        settings,
        "build",
        AS_OF,
        *models,
        schema="multi",
        extra_vars={"as_of_days": [d.isoformat() for d in days]},
    )
    for day in days:
        together = query(
            settings,
            "select f.*, l.* exclude (contact_id, as_of) from multi.customer_features f "
            "join multi.customer_labels l using (contact_id, as_of) where f.as_of = ? order by contact_id",
            [day],
        )
        assert together == alone[day], day
