"""fct_campaign_exposures built incrementally equals a full build, load after load.

One 300-customer CRM is extracted and built. Then, one load at a time, come late e-mail events (an
open inside a send's attribution window, a click after it, a first send of a new campaign), order
updates (a converting order cancelled, an order moved to another customer), a holdout of Clarion's
own, an erasure, and a change of attribution_days. After each, the incremental build (`dbt run`
into staging) must equal a full build of the same data (`--full-refresh` into a schema of its own),
row for row, and must have recomputed exactly the customers the load touched: that set is worked
out here from what the test changed, not read back from the build.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest
from exposure_helpers import KEY, REACTIONS, assert_mart_equals, exposures_by_definition
from extract_helpers import generated_project, make_settings, query

from clarion.config import Settings
from clarion.content.store import ensure_tables as content_tables
from clarion.contract import ENTITIES
from clarion.quality.gate import ensure_tables as audit_tables
from clarion.subject.erase import erase
from clarion.transform.dbt import invoke_dbt, run_dbt
from clarion.transform.incremental import exposures_scope, scope_text
from clarion.transform.publish import BY_CUSTOMER, publish
from clarion.warehouse import Warehouse

AS_OF = date(2026, 7, 1)
EXPOSURES = ("--select", "+fct_campaign_exposures")
NO_TESTS = ("--exclude-resource-type", "test", "--exclude-resource-type", "unit_test")  # seeds: yes
COLUMNS = (
    "campaign_id, contact_id, arm, variant_id, exposed_at, delivered, opened, clicked, unsubscribed, "
    "bounced, conversions, round(revenue_eur, 6), converted, contaminated"
)


def incremental_build(settings: Settings) -> set[int]:
    """The incremental build into staging; the customers it recomputed."""
    run_dbt(settings, "run", AS_OF, *EXPOSURES)
    return {r[0] for r in query(settings, "select contact_id from staging.int_exposures_changed")}


def exposures(settings: Settings, schema: str = "staging") -> list[tuple]:
    return query(settings, f"select {COLUMNS} from {schema}.fct_campaign_exposures order by 1, 2")


def full_build(
    settings: Settings, select: tuple[str, ...] = EXPOSURES, read=exposures, as_of: date = AS_OF
) -> list[tuple]:
    """The same data built whole, in a schema of its own (dropped after): `read`'s rows of it."""
    run_dbt(settings, "build", as_of, *select, *NO_TESTS, "--full-refresh", schema="full_build")
    try:
        return read(settings, "full_build")
    finally:
        with Warehouse.from_settings(settings).connect("test") as con:
            con.execute("drop schema full_build cascade")


def published(
    settings: Settings,
    expected_rewritten: set[int] | None,
    key: str = "customers_rewritten",
    tables: tuple[str, ...] = BY_CUSTOMER,
) -> None:
    """Publish the build; the customers it rewrote (the summary's `key`) are the ones expected
    (None: a whole copy), and the published customer-keyed marts hold exactly the build's rows."""
    with Warehouse.from_settings(settings).connect("test") as con:
        audit_tables(con)
        result = publish(con, "test-run", AS_OF, 90)
    assert result.get(key) == (None if expected_rewritten is None else len(expected_rewritten))
    for table in tables:
        both = [f"(select * from {a}.{table} except all select * from {b}.{table})" for a, b in PAIRS]
        assert query(settings, f"select count(*) from {both[0]}") == [(0,)], table
        assert query(settings, f"select count(*) from {both[1]}") == [(0,)], table
        assert query(settings, f"select count(*) from marts.{table}") == query(
            settings, f"select count(*) from staging.{table}"
        )


PAIRS = (("staging", "marts"), ("marts", "staging"))


def write(settings: Settings, *statements: tuple[str, list]) -> None:
    with Warehouse.from_settings(settings).connect("test") as con:
        for sql, params in statements:
            con.execute(sql, params)


def add_event(settings: Settings, contact_id: int, campaign: str, kind: str, at, variant=None) -> None:
    columns = ENTITIES["email_events"].column_names
    (next_id,) = query(settings, "select max(event_id) + 1 from raw.email_events")[0]
    row = {
        "event_id": next_id,
        "contact_id": contact_id,
        "campaign_id": campaign,
        "event_type": kind,
        "variant_id": variant,
        "occurred_at": at,
    }
    assert set(row) <= set(columns)
    write(
        settings,
        (
            f"insert into raw.email_events ({', '.join(columns)}, _source, _load_id, _loaded_at, _row_hash) "
            f"values ({', '.join('?' for _ in columns)}, 'crm', 'late', now(), 0)",
            [row.get(c) for c in columns],
        ),
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = generated_project(tmp_path_factory.mktemp("incremental"), customers=300, seed=31)
    run_dbt(settings, "build", AS_OF)  # the first build: whole, every model and test
    return settings


def pick(settings: Settings, sql: str) -> tuple:
    rows = query(settings, sql)
    assert rows, f"the generated CRM has no row for: {sql}"
    return rows[0]


@pytest.mark.slow  # seven loads, each built incrementally and whole (72 s on 2 cores)
def test_incremental_builds_equal_full_builds_after_late_events_updates_holdouts_and_an_erasure(
    project: Settings,
) -> None:
    settings = project
    first = exposures(settings)
    assert first == full_build(settings) and len(first) > 1000
    everyone = {r[0] for r in query(settings, "select contact_id from staging.int_exposure_inputs")}
    published(settings, None)  # nothing published before: copied whole

    # nothing new: nobody is recomputed, nothing moves
    assert incremental_build(settings) == set()
    assert exposures(settings) == first
    published(settings, set())

    # late e-mail events: an open inside a send's window (the row changes), a click after the window
    # (a new input, the same row), and a first send of a new campaign to someone never exposed
    opener, campaign, sent_at = pick(
        settings,
        "select contact_id, campaign_id, exposed_at from staging.fct_campaign_exposures "
        "where arm = 'treatment' and delivered and not opened order by 1, 2",
    )
    late_clicker, late_campaign, late_sent = pick(
        settings,
        "select contact_id, campaign_id, exposed_at from staging.fct_campaign_exposures "
        f"where arm = 'treatment' and not clicked and contact_id <> {opener} order by 1, 2",
    )
    newcomer = pick(
        settings,
        "select contact_id from staging.stg_contacts where contact_id not in "
        "(select contact_id from staging.fct_campaign_exposures) order by 1",
    )[0]
    add_event(settings, opener, campaign, "open", sent_at + timedelta(hours=2))
    add_event(settings, late_clicker, late_campaign, "click", late_sent + timedelta(days=8))
    add_event(settings, newcomer, "late-campaign", "sent", sent_at, variant="A")
    assert incremental_build(settings) == {opener, late_clicker, newcomer}
    after = exposures(settings)
    assert after == full_build(settings)
    assert next(r for r in after if r[:2] == (campaign, opener))[6] is True  # opened now
    assert any(r[:2] == ("late-campaign", newcomer) for r in after)
    published(settings, {opener, late_clicker, newcomer})

    # order updates: a converting order cancelled; another customer's order moved to a third one
    converter, order_id = pick(
        settings,
        "select e.contact_id, o.order_id from staging.fct_campaign_exposures e "
        "join staging.int_orders o on o.contact_id = e.contact_id and not o.is_cancelled "
        "and o.ordered_at >= e.exposed_at and o.ordered_at < e.exposed_at + interval 7 day "
        "where e.converted order by 1, 2",
    )
    giver, moved = pick(
        settings,
        f"select contact_id, order_id from raw.orders where contact_id not in ({converter}) order by 2",
    )
    taker = pick(
        settings,
        "select contact_id from staging.fct_campaign_exposures "
        f"where contact_id not in ({converter}, {giver}) order by 1",
    )[0]
    write(
        settings,
        ("update raw.orders set status = 'cancelled', _load_id = 'update' where order_id = ?", [order_id]),
        ("update raw.orders set contact_id = ?, _load_id = 'update' where order_id = ?", [taker, moved]),
    )
    assert incremental_build(settings) == {converter, giver, taker}
    assert exposures(settings) == full_build(settings)
    published(settings, {converter, giver, taker})

    # Clarion's own holdout: a control enrolment of a customer the CRM never sent the campaign
    held = pick(
        settings,
        "select contact_id from staging.stg_contacts where contact_id not in "
        f"(select contact_id from staging.fct_campaign_exposures) and contact_id <> {newcomer} order by 1",
    )[0]
    with Warehouse.from_settings(settings).connect("test") as con:
        content_tables(con)
        con.execute(
            "insert into content.assignments values ('e-1', 'late-campaign', ?, 'holdout', null, ?)",
            [held, sent_at],
        )
    assert incremental_build(settings) == {held}
    after = exposures(settings)
    assert after == full_build(settings)
    assert any(r[:3] == ("late-campaign", held, "control") for r in after)
    published(settings, {held})

    # an erasure: the person's rows go from raw and from the build (its kept fingerprints too), so
    # the next build has nothing of them to recompute and none of their exposures
    erased = opener
    erase(settings, str(erased), "REQ-1", compact=False)
    assert incremental_build(settings) == set()
    after = exposures(settings)
    assert after == full_build(settings)
    assert erased not in {r[1] for r in after}
    published(settings, set())  # the erasure took their rows from marts too
    assert query(settings, f"select count(*) from marts.fct_email_events where contact_id = {erased}") == [
        (0,)
    ]

    # the exposures' own logic changes (attribution_days): every customer is recomputed
    wider = settings.model_copy(
        update={"experiments": settings.experiments.model_copy(update={"attribution_days": 3})}
    )
    assert incremental_build(wider) == everyone - {erased}
    assert exposures(wider) == full_build(wider) != after
    published(wider, None)  # everyone changed: copied whole


def test_only_the_changed_customers_are_rewritten_until_a_full_refresh(project: Settings) -> None:
    """A value written into the build by hand for a customer whose inputs did not change survives
    an incremental build (it is not recomputed) and is gone after `--full-refresh`; the build's
    summary says how many customers it recomputed."""
    settings = project
    run_dbt(settings, "run", AS_OF, *EXPOSURES)
    (contact_id,) = pick(settings, "select min(contact_id) from staging.fct_campaign_exposures")
    tampered = "select sum(revenue_eur), count(*) from staging.fct_campaign_exposures where contact_id = ?"
    (before, rows) = query(settings, tampered, [contact_id])[0]
    write(
        settings,
        (
            "update staging.fct_campaign_exposures set revenue_eur = revenue_eur + 1 where contact_id = ?",
            [contact_id],
        ),
    )
    assert incremental_build(settings) == set()
    assert query(settings, tampered, [contact_id])[0][0] == pytest.approx(before + rows)  # one per row
    run_dbt(settings, "run", AS_OF, *EXPOSURES, "--full-refresh")
    assert query(settings, tampered, [contact_id])[0][0] == pytest.approx(before)

    # the publication likewise rewrites only the changed customers' rows of the customer-keyed marts
    with Warehouse.from_settings(settings).connect("test") as con:
        audit_tables(con)
        publish(con, "test-run", AS_OF, 90)
        con.execute(
            "update marts.fct_email_events set variant_id = 'by hand' where contact_id = ?", [contact_id]
        )
        assert publish(con, "test-run", AS_OF, 90)["customers_rewritten"] == 0
    by_hand = "select count(*) from marts.fct_email_events where variant_id = 'by hand'"
    assert query(settings, by_hand)[0][0] > 0

    con = duckdb.connect(str(settings.warehouse.path), read_only=True)
    try:
        customers = con.execute(
            "select count(distinct contact_id) from (select contact_id from raw.email_events "
            "union all select contact_id from raw.orders)"
        ).fetchone()[0]
        scope = exposures_scope(con, full_refresh=False)
        assert scope == {"recomputed": 0, "customers": customers, "full_refresh": False}
        assert exposures_scope(con, full_refresh=True)["recomputed"] == customers
    finally:
        con.close()
    assert scope_text(scope) == (
        f"campaign exposures recomputed for 0 of {customers:,} customers "
        "(incremental: the others' inputs did not change)"
    )


def test_where_nothing_was_kept_the_first_incremental_build_recomputes_everyone(
    tmp_path: Path, project: Settings
) -> None:
    """A build whose fingerprints are gone (a table built before this scheme) forgets every row and
    computes every customer again, so no row of a customer who has since vanished stays."""
    settings = project
    write(
        settings,
        ("drop table staging.fct_campaign_exposures__inputs", []),
        (
            "insert into staging.fct_campaign_exposures select * replace (-1 as contact_id) "
            "from staging.fct_campaign_exposures limit 1",
            [],
        ),
    )
    everyone = {r[0] for r in query(settings, "select contact_id from staging.int_exposure_inputs")}
    assert incremental_build(settings) == everyone
    assert exposures(settings) == full_build(settings)


UNIQUE_TEST = ("--select", "test_name:unique_combination,fct_campaign_exposures")


def duplicate_keys(settings: Settings, *extra: str, command: str = "test") -> int:
    """The keys the exposures' uniqueness test reports as duplicated."""
    result = invoke_dbt(settings, command, AS_OF, *UNIQUE_TEST, *extra)
    (node,) = result.result.results
    return int(node.failures or 0)


def test_the_uniqueness_test_reads_the_customers_whose_inputs_differ_from_the_published_ones(
    project: Settings,
) -> None:
    """The (campaign, customer) key holds the customer, so a duplicate can only be within one
    customer's rows: the test reads the customers whose fingerprint differs from the published one
    (their rows were not published, so not tested), and everyone when nothing is published or under
    --full-refresh. Two customers get a duplicated row; one of them has changed since the
    publication."""
    settings = project
    run_dbt(settings, "run", AS_OF, *EXPOSURES)
    with Warehouse.from_settings(settings).connect("test") as con:
        audit_tables(con)
        publish(con, "test-run", AS_OF, 90)
    assert duplicate_keys(settings) == 0
    unchanged, changed = (
        r[0]
        for r in query(
            settings, "select distinct contact_id from staging.fct_campaign_exposures order by 1 limit 2"
        )
    )
    duplicate = (
        "insert into staging.fct_campaign_exposures "
        "select * from staging.fct_campaign_exposures where contact_id = ? limit 1"
    )
    write(
        settings,
        (duplicate, [unchanged]),
        (duplicate, [changed]),
        ("delete from marts.fct_campaign_exposures__inputs where contact_id = ?", [changed]),
    )
    assert duplicate_keys(settings) == 1  # the changed customer's key only
    assert duplicate_keys(settings, "--full-refresh", command="build") == 2
    write(settings, ("drop table marts.fct_campaign_exposures__inputs", []))
    assert duplicate_keys(settings) == 2

    # a full build puts the rows back as they were; published again, nothing is duplicated
    run_dbt(settings, "run", AS_OF, *EXPOSURES, "--full-refresh")
    with Warehouse.from_settings(settings).connect("test") as con:
        publish(con, "test-run", AS_OF, 90)
    assert duplicate_keys(settings) == 0


def test_a_changed_dbt_project_forgets_the_partial_parse_state(tmp_path: Path) -> None:
    """dbt's partial-parse state is kept while the project's files and the state are as our last
    dbt call left them, and removed once a project file changed or another program rewrote the
    state (an upgrade added models: a kept state once lost one, and the build failed)."""
    import shutil

    from clarion.transform.dbt import forget_stale_parse, remember_parse

    shipped = make_settings(tmp_path / "shipped", {}).transform.dbt_project_dir
    project = tmp_path / "dbt"
    shutil.copytree(shipped, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    base = make_settings(tmp_path / "project", {})
    settings = base.model_copy(
        update={"transform": base.transform.model_copy(update={"dbt_project_dir": project})}
    )
    state = settings.var_dir / "dbt" / "target" / "partial_parse.msgpack"
    state.parent.mkdir(parents=True)
    state.write_bytes(b"an older version's state")
    assert forget_stale_parse(settings) is True and not state.exists()  # never stamped: forgotten

    def dbt_call(content: bytes) -> None:  # what dbt_environment does around a call
        forget_stale_parse(settings)
        state.write_bytes(content)
        remember_parse(settings)

    dbt_call(b"dbt's state")
    assert forget_stale_parse(settings) is False and state.exists()
    (project / "target").mkdir()
    (project / "target" / "manifest.json").write_text("{}")  # dbt's own output is not the project
    assert forget_stale_parse(settings) is False and state.exists()
    model = project / "models" / "marts" / "fct_email_events.sql"
    model.write_text(model.read_text() + "\n-- edited\n")
    assert forget_stale_parse(settings) is True and not state.exists()
    dbt_call(b"dbt's state, parsed again")
    state.write_bytes(b"written by another version of Clarion, longer")
    assert forget_stale_parse(settings) is True and not state.exists()


# ---------------------------------------------------------------------------------------------------
# customer_features: built incrementally for the published day, equal to a full build load after load

FEATURES = ("--select", "+customer_features")
PUBLISHED_FEATURES = ("features_rewritten", ("customer_features", "fct_orders", "dim_customers"))


def features_build(settings: Settings, as_of: date = AS_OF) -> set[int]:
    """The incremental build of customer_features into staging; the customers it recomputed."""
    run_dbt(settings, "run", as_of, *FEATURES)
    return {r[0] for r in query(settings, "select contact_id from staging.int_features_changed")}


def features(settings: Settings, schema: str = "staging") -> list[tuple]:
    """Every customer's features, floats to 9 significant digits (a sum's last bits depend on the
    order DuckDB's threads add its parts)."""
    rows = query(settings, f"select * from {schema}.customer_features order by contact_id")
    return [tuple(float(f"{v:.9g}") if isinstance(v, float) else v for v in row) for row in rows]


def features_full_build(settings: Settings, as_of: date = AS_OF) -> list[tuple]:
    return full_build(settings, FEATURES, features, as_of)


@pytest.mark.slow  # eight loads and a new day, each built incrementally and whole (97 s on 2 cores)
def test_incremental_features_equal_full_builds_after_late_rows_updates_an_erasure_and_a_new_day(
    project: Settings,
) -> None:
    """customer_features built incrementally equals a full build after each load, and recomputes
    exactly the customers the load touched (worked out here from what the test changed): a late
    order, a late open, a survey score recorded, a consent, an order moved and one cancelled, a
    product's category changed (its buyers), an erasure. An order in last year's season window moves
    the shop-wide season figure, and a new day moves every window: both recompute everyone."""
    settings = project
    caught_up = features_build(settings)  # catch up with the loads of the tests above
    (fingerprinted,) = query(settings, "select count(*) from staging.int_feature_inputs")[0]
    # they last published the first build's features; past half the customers, a whole copy
    published(settings, caught_up if 2 * len(caught_up) <= fingerprinted else None, *PUBLISHED_FEATURES)
    assert features_build(settings) == set()
    before = features(settings)
    assert before == features_full_build(settings) and len(before) > 250
    published(settings, set(), *PUBLISHED_FEATURES)
    everyone = {r[0] for r in before}

    def add_order(contact_id: int, at: str, like: int) -> None:
        """A late order of `contact_id` placed at `at`, a copy of order `like` with its first line."""
        (order_id, item_id) = pick(
            settings,
            "select (select max(order_id) + 1 from raw.orders), "
            "(select max(order_item_id) + 1 from raw.order_items)",
        )
        write(
            settings,
            (
                "insert into raw.orders select * replace (? as order_id, ? as contact_id, "
                "cast(? as timestamptz) as ordered_at, cast(? as timestamptz) as updated_at, "
                "'late' as _load_id) from raw.orders where order_id = ?",
                [order_id, contact_id, at, at, like],
            ),
            (
                "insert into raw.order_items select * replace (? as order_item_id, ? as order_id, "
                "'late' as _load_id) from raw.order_items where order_id = ? limit 1",
                [item_id, order_id, like],
            ),
        )

    # late rows: an order, an open, a survey score, a consent, each of another customer
    buyer, like = pick(
        settings, "select contact_id, order_id from raw.orders where status = 'completed' order by 2"
    )
    opener, campaign, sent_at = pick(
        settings,
        "select contact_id, campaign_id, occurred_at from raw.email_events where event_type = 'sent' "
        f"and occurred_at >= timestamp '2026-05-15' and contact_id <> {buyer} order by 1, 2",
    )
    surveyed, ticket = pick(
        settings,
        "select contact_id, ticket_id from staging.stg_support_tickets where satisfaction_score is null "
        "and text_sentiment <> 'negative' "
        "and created_at between timestamp '2025-08-01' and timestamp '2026-06-01' "
        f"and contact_id not in ({buyer}, {opener}) order by 2",
    )
    consenting = pick(
        settings,
        f"select contact_id from raw.contacts where contact_id not in ({buyer}, {opener}, {surveyed}) "
        "and signup_date < date '2026-06-01' order by 1",
    )[0]
    add_order(buyer, "2026-06-25 10:00:00+00", like)
    add_event(settings, opener, campaign, "open", sent_at + timedelta(hours=3))
    write(
        settings,
        (
            "update raw.support_tickets set satisfaction_score = 1, updated_at = timestamp '2026-06-20', "
            "_load_id = 'update' where ticket_id = ?",
            [ticket],
        ),
        (
            "insert into raw.consents select * replace (? as contact_id, "
            "(select max(consent_id) + 1 from raw.consents) as consent_id, 'email' as channel, "
            "'opt_out' as event, cast('2026-06-28 09:00:00+00' as timestamptz) as recorded_at, "
            "'late' as _load_id) from raw.consents limit 1",
            [consenting],
        ),
    )
    assert features_build(settings) == {buyer, opener, surveyed, consenting}
    after = features(settings)
    assert after == features_full_build(settings) != before
    columns = [r[0] for r in query(settings, "describe staging.customer_features")]
    row = {r[0]: dict(zip(columns, r, strict=True)) for r in after}
    was = {r[0]: dict(zip(columns, r, strict=True)) for r in before}
    assert row[buyer]["orders_lifetime"] == was[buyer]["orders_lifetime"] + 1
    assert row[surveyed]["negative_tickets_365d"] == was[surveyed]["negative_tickets_365d"] + 1
    assert row[consenting]["email_consent"] is False
    published(settings, {buyer, opener, surveyed, consenting}, *PUBLISHED_FEATURES)

    # order updates: one cancelled, one moved to another customer
    canceller, cancelled = pick(
        settings,
        f"select contact_id, order_id from raw.orders where status = 'completed' and contact_id <> {buyer} "
        "and ordered_at >= timestamp '2026-01-01' order by 2",
    )
    giver, moved = pick(
        settings,
        f"select contact_id, order_id from raw.orders where contact_id not in ({canceller}) order by 2 desc",
    )
    taker = pick(
        settings,
        f"select contact_id from raw.contacts where contact_id not in ({canceller}, {giver}) "
        "and signup_date < date '2026-01-01' order by 1 desc",
    )[0]
    write(
        settings,
        (
            "update raw.orders set status = 'cancelled', updated_at = timestamp '2026-06-29', "
            "_load_id = 'update' where order_id = ?",
            [cancelled],
        ),
        ("update raw.orders set contact_id = ?, _load_id = 'update' where order_id = ?", [taker, moved]),
    )
    assert features_build(settings) == {canceller, giver, taker}
    assert features(settings) == features_full_build(settings)
    published(settings, {canceller, giver, taker}, *PUBLISHED_FEATURES)

    # a product's category: every customer who bought it is recomputed, nobody else
    product, category = pick(
        settings,
        "select product_id, category from raw.products where product_id in "
        "(select product_id from raw.order_items) order by 1",
    )
    other = next(c for c in ("apparel", "home") if c != category)
    buyers = {
        r[0]
        for r in query(
            settings,
            "select distinct o.contact_id from raw.order_items i "
            "join raw.orders o on i.order_id = o.order_id where i.product_id = ?",
            [product],
        )
    }
    write(settings, ("update raw.products set category = ? where product_id = ?", [other, product]))
    assert features_build(settings) == buyers
    assert features(settings) == features_full_build(settings)
    published(settings, buyers, *PUBLISHED_FEATURES)

    # an erasure: the person's rows go from raw, from the build and from its kept fingerprints. Their
    # orders are all newer than last year's season window (2025-02-14 to 2026-02-13 for this day),
    # so the shop's season figure stays and nobody else is recomputed
    erased = pick(
        settings,
        "select contact_id from raw.orders group by 1 "
        "having min(ordered_at) >= timestamp '2026-02-14' and count(*) > 1 order by 1",
    )[0]
    assert erased in {r[0] for r in features(settings)}
    erase(settings, str(erased), "REQ-2", compact=False)
    assert features_build(settings) == set()
    after = features(settings)
    assert after == features_full_build(settings)
    assert erased not in {r[0] for r in after}
    published(settings, set(), *PUBLISHED_FEATURES)  # the erasure took their row from marts too

    # an order in last year's season window moves the shop-wide season figure: everyone
    add_order(opener, "2025-08-01 12:00:00+00", like)
    assert features_build(settings) == everyone - {erased}
    assert features(settings) == features_full_build(settings)
    published(settings, None, *PUBLISHED_FEATURES)  # everyone changed: copied whole

    # a new day moves every window: everyone, and the result is that day's full build
    next_day = AS_OF + timedelta(days=1)
    recomputed = features_build(settings, next_day)
    assert recomputed >= everyone - {erased}
    published(settings, None, *PUBLISHED_FEATURES)
    assert features(settings) == features_full_build(settings, next_day) != features_full_build(settings)


def test_exposures_with_reactions_around_the_exposure_ties_and_period_edges_equal_their_definition(
    project: Settings,
) -> None:
    """The pairs the model's one pass over the events cannot settle alone (a reaction kind with
    events before the exposure and after it, settled by its post-hook), variants tied at the first
    send, a control enrolment tied with a send, and exposures whose window crosses into the next
    attribution period, planted on one customer: after the incremental build (with the data tests)
    every row of the mart equals the definition computed with pandas from the staging events and
    orders, and a full build equals it too."""
    settings = project
    week = 7 * 86400
    contact, ordered_at = pick(
        settings,
        f"select contact_id, ordered_at from staging.int_orders where not is_cancelled "
        f"and epoch(ordered_at) - floor(epoch(ordered_at) / {week}) * {week} between 7200 and 5 * 86400 "
        "order by ordered_at, order_id limit 1",
    )
    period_start = ordered_at - timedelta(seconds=ordered_at.timestamp() % week)
    hour, day = timedelta(hours=1), timedelta(days=1)
    exposed = ordered_at - day
    planted = [
        ("edge-period", "sent", period_start - hour, None),  # the order is in the next period
        ("edge-at", "sent", ordered_at, None),  # an order at the exposure counts
        ("edge-end", "sent", ordered_at - 7 * day, None),  # ... one at its window's end does not
        ("edge-both", "open", exposed - hour, None),
        ("edge-both", "click", exposed - 2 * day, None),
        ("edge-both", "sent", exposed, None),
        ("edge-both", "open", exposed + hour, None),
        ("edge-outside", "open", exposed - hour, None),
        ("edge-outside", "bounce", exposed - hour, None),
        ("edge-outside", "sent", exposed, None),
        ("edge-outside", "open", exposed + 8 * day, None),
        ("edge-outside", "bounce", exposed + 10 * day, None),
        ("edge-tie", "sent", exposed, "B"),  # the lower event id: its variant
        ("edge-tie", "sent", exposed, "A"),
        ("edge-tie", "sent", exposed + day, "C"),
        ("edge-control", "bounce", exposed - hour, None),
        ("edge-control", "sent", exposed, None),
        ("edge-control", "control", exposed, None),
        ("edge-control", "bounce", exposed + hour, None),
    ]
    for campaign, kind, at, variant in planted:
        add_event(settings, contact, campaign, kind, at, variant)

    run_dbt(settings, "build", AS_OF, *EXPOSURES)  # incremental, with the mart's data tests
    with Warehouse.from_settings(settings).connect("test") as con:
        events = con.execute(
            "select event_id, campaign_id, contact_id, event_type, variant_id, occurred_at "
            "from staging.stg_email_events union all "
            "select null, campaign_id, contact_id, 'control', null, occurred_at "
            "from staging.stg_clarion_holdouts"
        ).df()
        orders = con.execute(
            "select contact_id, ordered_at, cast(total_eur as double) as total_eur, "
            "case when is_cancelled then 'cancelled' else 'placed' end as status from staging.int_orders"
        ).df()
        got = con.execute("select * from staging.fct_campaign_exposures").df()
    want = exposures_by_definition(events, orders)
    assert_mart_equals(got, want)

    # what was planted is what the definition sees: the pairs the post-hook had to settle, the tie,
    # the control and the conversions across the period edge
    mine = want[want["campaign_id"].str.startswith("edge-")].set_index("campaign_id")
    firsts = events.merge(want[[*KEY, "exposed_at"]], on=KEY)
    reactions = firsts[firsts["event_type"].isin([kind for kind, _ in REACTIONS])]
    both_sides = reactions.groupby([*KEY, "event_type"]).apply(
        lambda g: (g["occurred_at"] < g["exposed_at"]).any() and (g["occurred_at"] >= g["exposed_at"]).any(),
        include_groups=False,
    )
    assert set(both_sides[both_sides].index.get_level_values("campaign_id")) == {
        "edge-both",
        "edge-outside",
        "edge-control",
    }
    assert mine.loc["edge-both", "opened"] and not mine.loc["edge-outside", "opened"]
    assert mine.loc["edge-tie", "variant_id"] == "B" and mine.loc["edge-control", "arm"] == "control"
    assert mine.loc["edge-period", "converted"] and mine.loc["edge-at", "converted"]
    assert full_build(settings) == exposures(settings)
