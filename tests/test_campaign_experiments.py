"""Measured campaigns: control enrolments and variants in the CRM contract, a generator that plants a
causal campaign effect, and the mart the results are read from (marts.fct_campaign_exposures).

The planted effect is checked the way a shop would measure it: from the exported files alone
(treated minus control conversion within 7 days), compared with what the truth says was planted.
"""

from __future__ import annotations

import json
from pathlib import Path
from statistics import NormalDist

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from exposure_helpers import (
    WINDOW,
    assert_mart_equals,
    converted_within,
    exposures_by_definition,
    first_exposures,
)
from extract_helpers import by_entity, make_settings, query, run_extract

from clarion.config import GenerateSettings
from clarion.contract import EMAIL_EVENT_TYPES, ENTITIES
from clarion.extract.contract_sql import DUCKDB_TYPES
from clarion.synth.generator import generate
from clarion.warehouse import Warehouse

REACTIONS = ("sent", "open", "click", "unsubscribe", "bounce")


def z_for(alpha: float) -> float:
    return NormalDist().inv_cdf(1 - alpha / 2)


def wilson(x: int, n: int, z: float) -> tuple[float, float]:
    p = x / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def difference_interval(x_t: int, n_t: int, x_c: int, n_c: int, z: float) -> tuple[float, float, float]:
    """Treated minus control rate with Newcombe's hybrid score interval (Wilson for each rate; it
    keeps its level for small groups and rare events, where the normal approximation does not):
    (estimate, low, high)."""
    p_t, p_c = x_t / n_t, x_c / n_c
    (l_t, u_t), (l_c, u_c) = wilson(x_t, n_t, z), wilson(x_c, n_c, z)
    d = p_t - p_c
    return (
        d,
        d - np.sqrt((p_t - l_t) ** 2 + (u_c - p_c) ** 2),
        d + np.sqrt((u_t - p_t) ** 2 + (p_c - l_c) ** 2),
    )


# -- the contract, through extraction ------------------------------------------------------------


def test_variants_and_control_enrolments_load_from_csv_as_the_export_has_them(tmp_path: Path) -> None:
    crm = generate(GenerateSettings(customers=300, seed=31, defects=0.0), out=tmp_path / "crm").out
    settings = make_settings(tmp_path / "project", {"crm": {"kind": "files", "path": str(crm)}})
    results = by_entity(run_extract(settings))
    events = pd.read_csv(crm / "email_events.csv", dtype={"variant_id": object}, keep_default_na=False)
    assert results["email_events"].quarantined == 0
    assert set(events["event_type"]) == set(EMAIL_EVENT_TYPES)  # control enrolments among them
    assert set(events["variant_id"]) == {"", "A", "B", "C"}
    expected = events.groupby(["event_type", "variant_id"]).size().to_dict()
    loaded = query(
        settings, "select event_type, coalesce(variant_id, ''), count(*) from raw.email_events group by 1, 2"
    )
    assert {(t, v): n for t, v, n in loaded} == expected


def test_an_export_and_a_warehouse_older_than_variant_id_still_load(tmp_path: Path) -> None:
    """A CRM export without the optional variant_id column, into a warehouse whose raw.email_events
    was made before the contract had it: every event loads, its variant empty."""
    crm = generate(GenerateSettings(customers=300, seed=32, defects=0.0), out=tmp_path / "crm").out
    old = tmp_path / "old_export"
    old.mkdir()
    (old / "contacts.csv").write_bytes((crm / "contacts.csv").read_bytes())
    events = pd.read_csv(crm / "email_events.csv", dtype=str, keep_default_na=False)
    events = events[events["event_type"] != "control"].drop(columns=["variant_id"])  # as ESPs used to
    events.to_csv(old / "email_events.csv", index=False)
    settings = make_settings(tmp_path / "project", {"crm": {"kind": "files", "path": str(old)}})
    old_columns = [c for c in ENTITIES["email_events"].columns if c.name != "variant_id"]
    with Warehouse.from_settings(settings).connect("an older warehouse") as con:
        cols = ", ".join(f'"{c.name}" {DUCKDB_TYPES[c.type]}' for c in old_columns)
        con.execute(
            f"create table raw.email_events ({cols}, _source varchar, _load_id varchar, "
            "_loaded_at timestamptz, _row_hash ubigint)"
        )
    results = by_entity(run_extract(settings))
    email = results["email_events"]
    assert (email.read, email.loaded, email.quarantined) == (len(events), len(events), 0)
    assert not email.rejected_files
    [(rows, with_variant)] = query(settings, "select count(*), count(variant_id) from raw.email_events")
    assert (rows, with_variant) == (len(events), 0)


# -- the generator's planted effect ---------------------------------------------------------------


@pytest.fixture(scope="module")
def measured(crm_truth) -> dict[str, pd.DataFrame]:
    """The 20,000-customer export (seed 3) read from its files, with each experiment exposure's
    7-day conversion; the truth's persona and planted uplift beside it."""
    folder, manifest = crm_truth

    def load(name: str) -> pd.DataFrame:
        return pq.read_table(folder / f"{name}.parquet").to_pandas()

    events, orders = load("email_events"), load("orders")
    fx = manifest["fx_per_eur"]
    orders["total_eur"] = orders["total_amount"].astype(float) / orders["currency"].map(fx)
    effects = load("truth/campaign_effects")
    exposures = first_exposures(events[events["campaign_id"].isin(effects["campaign_id"])])
    exposures = converted_within(exposures, orders)
    persona = load("truth/contacts").set_index("contact_id")["persona"]
    exposures["persona"] = exposures["contact_id"].map(persona)
    treated = exposures[exposures["arm"] == "treatment"].merge(
        effects, on=["campaign_id", "variant_id", "persona"], how="left", validate="many_to_one"
    )
    return {
        "events": events,
        "effects": effects,
        "assignment": load("truth/campaign_assignment"),
        "orders": orders,
        "exposures": exposures,
        "treated": treated,
        "control": exposures[exposures["arm"] == "control"],
    }


def test_experiments_have_a_dud_variant_and_lapsing_customers_respond_more(measured) -> None:
    effects = measured["effects"]
    per_campaign = effects.groupby("campaign_id")["variant_id"].nunique()
    assert len(per_campaign) >= 20 and set(per_campaign) == {2, 3}
    strongest = effects.groupby(["campaign_id", "variant_id"])["planted_uplift"].max()
    assert (strongest.groupby("campaign_id").apply(lambda s: (s == 0).sum()) == 1).all()  # one dud each
    best = effects.groupby("persona")["planted_uplift"].max()
    assert best["declining"] >= 0.05 and best["loyal_high_value"] <= 0.02


def test_control_customers_are_enrolled_but_never_sent_opened_or_clicked(measured) -> None:
    events, effects = measured["events"], measured["effects"]
    control = events[events["event_type"] == "control"]
    assert len(control) > 5_000 and control["variant_id"].isna().all()
    assert set(control["campaign_id"]) == set(effects["campaign_id"])  # experiments only
    enrolled = control.set_index(["campaign_id", "contact_id"]).index
    others = events[events["event_type"].isin(REACTIONS)].set_index(["campaign_id", "contact_id"]).index
    assert not others.isin(enrolled).any()
    sends = events[events["event_type"] == "sent"]
    measured_send = sends["campaign_id"].isin(effects["campaign_id"])
    assert sends.loc[measured_send, "variant_id"].notna().all()
    assert sends.loc[~measured_send, "variant_id"].isna().all()
    # about 10% of each experiment's audience is held out
    exposures = measured["exposures"]
    share = exposures.groupby("campaign_id")["arm"].apply(lambda a: (a == "control").mean())
    audience = exposures.groupby("campaign_id").size()
    assert (abs(share - 0.10) < 5 * np.sqrt(0.09 / audience)).all()


def test_the_truth_records_every_assignment_the_files_show(measured) -> None:
    truth = measured["assignment"].sort_values(["campaign_id", "contact_id"]).reset_index(drop=True)
    files = measured["exposures"].sort_values(["campaign_id", "contact_id"]).reset_index(drop=True)
    assert len(truth) == len(files)
    for column in ("campaign_id", "contact_id", "arm", "variant_id", "exposed_at"):
        assert (truth[column].fillna("-") == files[column].fillna("-")).all(), column
    planted = truth.dropna(subset=["extra_order_id"]).merge(
        measured["orders"], left_on="extra_order_id", right_on="order_id", suffixes=("", "_order")
    )
    assert len(planted) == truth["extra_order_id"].notna().sum() > 1_000  # each is a real order
    assert (planted["arm"] == "treatment").all() and (
        planted["contact_id"] == planted["contact_id_order"]
    ).all()
    assert (planted["status"] != "cancelled").all()
    assert (
        (planted["ordered_at"] >= planted["exposed_at"])
        & (planted["ordered_at"] < planted["exposed_at"] + WINDOW)
    ).all()


# The two tests below make eight interval claims about one export (six personas, the best variant
# against the dud, the dud against control): each interval is at 0.05 / 8 (Bonferroni), so all eight
# hold together with 95% probability when the generator plants what its truth says. Over 12 other
# seeds (50,000 customers each) measured minus planted averaged within half a standard error of 0
# for every persona, its z-scores spread about 1: no bias. At this seed the regular customers'
# estimate lies 2.5 standard errors below the planted uplift: inside the simultaneous interval,
# outside a lone 95% one.
SIMULTANEOUS_Z = z_for(0.05 / 8)


def test_measured_uplift_recovers_the_planted_uplift_for_every_persona(measured) -> None:
    """Treated minus control 7-day conversion, pooled over experiments and variants, per persona:
    the planted uplift (its average over the treated) lies in the interval."""
    treated, control = measured["treated"], measured["control"]
    for persona, t in treated.groupby("persona"):
        c = control[control["persona"] == persona]
        estimate, low, high = difference_interval(
            t["converted"].sum(), len(t), c["converted"].sum(), len(c), SIMULTANEOUS_Z
        )
        planted = t["planted_uplift"].mean()
        assert low <= planted <= high, (persona, estimate, low, high, planted)
        if persona == "declining":  # the lapsing customers' effect is clearly there
            assert low > 0.01, (estimate, low)


def test_the_dud_variant_is_measured_worse_than_the_best(measured) -> None:
    treated, control = measured["treated"], measured["control"]
    planted = treated.groupby(["campaign_id", "variant_id"])["planted_uplift"].transform("max")
    best = planted == treated.groupby("campaign_id")["planted_uplift"].transform("max")
    dud, top = treated[planted == 0], treated[best]
    z = SIMULTANEOUS_Z
    _, low, _ = difference_interval(top["converted"].sum(), len(top), dud["converted"].sum(), len(dud), z)
    assert low > 0.01  # the best variant beats the dud by more than a point
    _, low, high = difference_interval(
        dud["converted"].sum(), len(dud), control["converted"].sum(), len(control), z
    )
    assert low <= 0 <= high  # the dud does nothing, and is measured so


# -- the mart -----------------------------------------------------------------------------------------


def test_campaign_exposures_mart_equals_its_definition_computed_from_the_export(small_run) -> None:
    """Every row of marts.fct_campaign_exposures of the session's small run, re-derived with pandas
    from the CSV files it was extracted from (a clean export, so raw holds every row)."""
    root = small_run["root"]
    crm = root / "var" / "crm"
    events = pd.read_csv(crm / "email_events.csv", dtype={"variant_id": object})
    events["occurred_at"] = pd.to_datetime(events["occurred_at"], utc=True, format="ISO8601")
    orders = pd.read_csv(crm / "orders.csv")
    orders["ordered_at"] = pd.to_datetime(orders["ordered_at"], utc=True, format="ISO8601")
    fx = json.loads((crm / "manifest.json").read_text())["fx_per_eur"]
    orders["total_eur"] = orders["total_amount"] / orders["currency"].map(fx)

    want = exposures_by_definition(events, orders)
    con = duckdb.connect(str(root / "var" / "warehouse.duckdb"), read_only=True)
    try:
        got = con.execute("select * from marts.fct_campaign_exposures").df()
    finally:
        con.close()
    assert set(got["arm"]) == {"treatment", "control"} and got["converted"].any()
    assert_mart_equals(got, want)


def test_uplift_features_of_the_small_run_equal_their_definition(small_run) -> None:
    """The uplift model's features of every exposure of the session's small run, and of every
    customer as of the scoring day (what `clarion results` fits and scores on), against their
    row-by-row definition (tests/uplift_oracle.py)."""
    from uplift_oracle import features_by_definition

    from clarion.results import uplift

    con = duckdb.connect(str(small_run["root"] / "var" / "warehouse.duckdb"), read_only=True)
    try:
        exposures = uplift.exposures_frame(con)
        want = features_by_definition(
            con,
            "select contact_id, exposed_at as anchor from marts.fct_campaign_exposures "
            "where not contaminated",
        )
        current = (
            "select contact_id, (select max(ordered_at) from marts.fct_orders) as anchor "
            "from marts.dim_customers"
        )
        now = con.execute(uplift._features_sql("anchor", current)).df()
        want_now = features_by_definition(con, current)
    finally:
        con.close()
    assert len(exposures) > 1_000 and exposures["opens_180d"].sum() > 0 and exposures["orders_365d"].sum() > 0
    pd.testing.assert_frame_equal(exposures[["contact_id", *uplift.FEATURES]], want, rtol=1e-9)
    assert len(now) == len(want_now) > 100
    pd.testing.assert_frame_equal(now[["contact_id", *uplift.FEATURES]], want_now, rtol=1e-9)
