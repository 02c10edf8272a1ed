"""The synthetic CRM: deterministic, every defect listed exactly, planted truth visible in the data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from crm_oracle import malformed_lines, outcomes, read_text, violations

from clarion.config import GenerateSettings
from clarion.contract import ENTITIES
from clarion.errors import GenerateError
from clarion.synth import defects as dfx
from clarion.synth.generator import DEFECTS_FILE, generate
from clarion.synth.vocab import PROMPT_INJECTIONS


def manifest_defects(folder: Path) -> list[dict]:
    with (folder / DEFECTS_FILE).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# -- determinism ---------------------------------------------------------------------------------


def test_the_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    g = GenerateSettings(customers=800, seed=5, defects=0.03)
    first = generate(g, out=tmp_path / "a").manifest
    second = generate(g, out=tmp_path / "b").manifest
    assert first["files"] == second["files"]  # names, row counts and sha256 of every file
    assert (tmp_path / "a" / DEFECTS_FILE).read_bytes() == (tmp_path / "b" / DEFECTS_FILE).read_bytes()
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()


def test_another_seed_gives_other_data(tmp_path: Path) -> None:
    a = generate(GenerateSettings(customers=300, seed=1), out=tmp_path / "a").manifest
    b = generate(GenerateSettings(customers=300, seed=2), out=tmp_path / "b").manifest
    assert a["files"]["orders.csv"]["sha256"] != b["files"]["orders.csv"]["sha256"]


def test_csv_and_parquet_hold_the_same_clean_data(tmp_path: Path) -> None:
    as_csv = generate(GenerateSettings(customers=400, seed=9, format="csv"), out=tmp_path / "c")
    as_parquet = generate(GenerateSettings(customers=400, seed=9, format="parquet"), out=tmp_path / "p")
    for entity in ("contacts", "orders", "email_events", "support_tickets"):
        left = read_text(as_csv.out / f"{entity}.csv")
        right = read_text(as_parquet.out / f"{entity}.parquet")
        pd.testing.assert_frame_equal(left, right, check_dtype=False)


# -- defects: listed exactly ----------------------------------------------------------------------


@pytest.mark.parametrize("export", ["crm_csv", "crm_parquet"])
def test_every_row_that_breaks_the_contract_is_listed_with_its_reason_and_nothing_else(
    export, request
) -> None:
    folder, manifest = request.getfixturevalue(export)
    listed = {(d["file"], int(d["row"])): d["reason"] for d in manifest_defects(folder)}
    found = violations(folder, manifest)
    assert len(found) > 500  # 2% of ~100k rows, so the comparison below is not vacuous
    missing_from_manifest = {k: v for k, v in found.items() if k not in listed}
    not_really_defective = {k: v for k, v in listed.items() if k not in found}
    wrong_reason = {k: (listed[k], found[k]) for k in listed.keys() & found.keys() if listed[k] != found[k]}
    assert not missing_from_manifest, f"unlisted defects: {list(missing_from_manifest.items())[:5]}"
    assert not not_really_defective, f"listed rows that are fine: {list(not_really_defective.items())[:5]}"
    assert not wrong_reason, f"listed vs found: {list(wrong_reason.items())[:5]}"


@pytest.mark.parametrize("export", ["crm_csv", "crm_parquet"])
def test_every_defect_kind_of_the_format_appears(export, request) -> None:
    folder, manifest = request.getfixturevalue(export)
    fmt = manifest["format"]
    present = {(d["entity"], d["kind"]) for d in manifest_defects(folder)}
    applicable = {(k.entity, k.name) for k in dfx.KINDS if fmt in k.formats}
    assert applicable <= present
    kinds = {name for _, name in present}
    assert len(kinds) >= (15 if fmt == "parquet" else 20)


@pytest.mark.parametrize("export", ["crm_csv", "crm_parquet"])
def test_defect_rows_say_what_extraction_must_do(export, request) -> None:
    """The manifest's expected outcome (quarantine, finding, load, clean) is what the oracle, reading
    the files on its own, says the row must get: a bad optional field is a finding, not a rejection."""
    folder, manifest = request.getfixturevalue(export)
    judged = outcomes(folder, manifest)
    listed = {(d["file"], int(d["row"])): (d["expected"], d["reason"]) for d in manifest_defects(folder)}
    assert {k: (v, judged.get(k)) for k, v in listed.items() if judged.get(k) != v} == {}
    assert {e for e, _ in listed.values()} >= {"quarantine", "finding", "load", "clean"}


def test_row_counts_account_for_clean_plus_defective_rows(crm_csv) -> None:
    folder, manifest = crm_csv
    listed = manifest_defects(folder)
    for entity, info in manifest["entities"].items():
        # records that parse, plus the lines that do not (the malformed_line kind)
        read = sum(len(read_text(folder / f)) + len(malformed_lines(folder / f)) for f in info["files"])
        added = sum(1 for d in listed if d["entity"] == entity)
        assert read == info["rows"] == info["clean_rows"] + added, entity


def test_csv_carries_real_invalid_utf8_where_encoding_is_broken(crm_csv) -> None:
    folder, _ = crm_csv
    raw = (folder / "contacts.csv").read_bytes()
    assert b"Jos\xe9" in raw
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    # every other file is valid UTF-8
    (folder / "orders.csv").read_bytes().decode("utf-8")


def test_no_defects_means_no_defect_rows_and_no_part_files(tmp_path: Path) -> None:
    result = generate(GenerateSettings(customers=300, defects=0.0), out=tmp_path / "crm")
    assert manifest_defects(result.out) == []
    assert not list(result.out.glob("*.part*"))
    assert violations(result.out, result.manifest) == {}


# -- planted truth ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(crm_truth):
    folder, manifest = crm_truth

    def load(name: str) -> pd.DataFrame:
        return pq.read_table(folder / f"{name}.parquet").to_pandas()

    return {
        "manifest": manifest,
        "truth": load("truth/contacts"),
        "tickets_truth": load("truth/tickets"),
        "future_orders": load("truth/future_orders"),
        **{e: load(e) for e in ENTITIES},
    }


def _has(truth: pd.DataFrame, driver: str) -> pd.Series:
    return truth["drivers"].str.split(";").apply(lambda ds: driver in ds)


def test_personas_and_drivers_are_all_present_in_plausible_shares(world) -> None:
    truth = world["truth"]
    shares = truth["persona"].value_counts(normalize=True)
    for persona in ("loyal_high_value", "regular", "discount_seeker", "declining", "churned", "new"):
        assert 0.05 < shares[persona] < 0.40, (persona, shares[persona])
    churny = truth["persona"].isin(["declining", "churned"])
    assert (truth.loc[churny, "drivers"] != "").all()
    assert (truth.loc[~churny, "drivers"] == "").all()
    assert world["manifest"]["truth"]["personas"] == truth["persona"].value_counts().to_dict()


def test_engagement_drop_contacts_really_stop_opening_emails(world) -> None:
    truth, events = world["truth"], world["email_events"]
    cutoff = pd.Timestamp(world["manifest"]["cutoff"], tz="UTC") + pd.Timedelta(days=1)
    onset = pd.to_datetime(truth.set_index("contact_id")["onset_date"]).dt.tz_localize("UTC")
    ev = events.join(onset.rename("onset"), on="contact_id")
    ev["recent"] = ev["occurred_at"] >= ev["onset"].fillna(cutoff) - pd.Timedelta(days=20)
    dropped = set(truth.loc[_has(truth, "engagement_drop") & (truth["persona"] == "declining"), "contact_id"])

    def open_rate(frame: pd.DataFrame) -> float:
        return (frame["event_type"] == "open").sum() / max((frame["event_type"] == "sent").sum(), 1)

    mine = ev[ev["contact_id"].isin(dropped)]
    before, after = open_rate(mine[~mine["recent"]]), open_rate(mine[mine["recent"]])
    others = ev[~ev["contact_id"].isin(dropped)]
    assert after < 0.35 * before, (before, after)
    assert open_rate(others) > 2 * after


def test_delivery_problem_contacts_really_had_late_or_lost_parcels(world) -> None:
    truth, orders = world["truth"], world["orders"]
    onset = pd.to_datetime(truth.set_index("contact_id")["onset_date"]).dt.tz_localize("UTC")
    o = orders.join(onset.rename("onset"), on="contact_id")
    window = (o["ordered_at"] < o["onset"]) & (o["ordered_at"] >= o["onset"] - pd.Timedelta(days=180))
    bad = o["delivery_status"].isin(["late", "lost"])
    hit = set(truth.loc[_has(truth, "delivery_problems"), "contact_id"])
    mine = o[o["contact_id"].isin(hit) & window]
    base = o[~o["contact_id"].isin(hit)]
    assert bad[mine.index].mean() > 4 * bad[base.index].mean()


def test_support_driven_decline_follows_negative_tickets(world) -> None:
    truth, tickets, sentiment = world["truth"], world["support_tickets"], world["tickets_truth"]
    t = tickets.merge(sentiment, on="ticket_id")
    onset = pd.to_datetime(truth.set_index("contact_id")["onset_date"]).dt.tz_localize("UTC")
    t = t.join(onset.rename("onset"), on="contact_id")
    before_onset = (t["created_at"] <= t["onset"]) & (t["created_at"] >= t["onset"] - pd.Timedelta(days=61))
    negative = t[before_onset & (t["sentiment"] == "negative")]
    cutoff = pd.Timestamp(world["manifest"]["cutoff"], tz="UTC")
    seen = truth["contact_id"].map(onset) < cutoff  # onsets after the export left no ticket in it yet
    hit = set(truth.loc[_has(truth, "negative_support") & seen, "contact_id"])
    covered = len(hit & set(negative["contact_id"])) / len(hit)
    assert len(hit) > 100 and covered > 0.9


def test_price_sensitive_contacts_turn_to_discounts_before_their_onset(world) -> None:
    """A price-driven decline shows as a change: discounts take over in the months before the onset,
    unlike a discount seeker's steady habit, which is what makes the driver visible to a model."""
    truth, orders = world["truth"], world["orders"]
    onset = pd.to_datetime(truth.set_index("contact_id")["onset_date"]).dt.tz_localize("UTC")
    o = orders.join(onset.rename("onset"), on="contact_id").assign(d=orders["discount_amount"] > 0)
    sensitive = o["contact_id"].isin(set(truth.loc[_has(truth, "price_sensitivity"), "contact_id"]))
    late = (
        sensitive & (o["ordered_at"] < o["onset"]) & (o["ordered_at"] >= o["onset"] - pd.Timedelta(days=60))
    )
    early = sensitive & (o["ordered_at"] < o["onset"] - pd.Timedelta(days=180))
    assert late.sum() > 100 and early.sum() > 100
    assert o.loc[late, "d"].mean() > 0.75 and o.loc[early, "d"].mean() < 0.3
    plain = o["contact_id"].isin(
        set(truth.loc[truth["persona"].isin(["regular", "loyal_high_value"]), "contact_id"])
    )
    assert o.loc[plain, "d"].mean() < 0.2


def test_churned_contacts_stopped_buying_and_truth_ranks_personas(world) -> None:
    truth, orders = world["truth"], world["orders"]
    cutoff = pd.Timestamp(world["manifest"]["cutoff"], tz="UTC")
    recent = set(orders.loc[orders["ordered_at"] > cutoff - pd.Timedelta(days=90), "contact_id"])
    onset = pd.to_datetime(truth["onset_date"]).dt.tz_localize("UTC")
    churned = truth[(truth["persona"] == "churned") & (onset < cutoff - pd.Timedelta(days=120))]
    assert len(churned) > 100 and churned["contact_id"].isin(recent).mean() < 0.1
    # a churn comes at a steady hazard, not at a fixed distance from the export: some churners are
    # still buying at the cutoff and stop later (truth knows), as in a real shop
    assert ((truth["persona"] == "churned") & (onset > cutoff)).sum() > 100
    rate = truth.groupby("persona")["will_purchase_90d"].mean()
    assert rate["loyal_high_value"] > rate["regular"] > rate["declining"] > rate["churned"]


def test_truth_future_columns_are_the_future_orders(world) -> None:
    truth, future = world["truth"], world["future_orders"]
    cutoff = pd.Timestamp(world["manifest"]["cutoff"], tz="UTC") + pd.Timedelta(days=1)
    assert (future["ordered_at"] >= cutoff).all()
    assert future["order_id"].min() > world["orders"]["order_id"].max()
    bought = future[future["status"] != "cancelled"]
    in90 = bought[bought["ordered_at"] < cutoff + pd.Timedelta(days=90)]
    counts = in90.groupby("contact_id").size().reindex(truth["contact_id"], fill_value=0)
    assert (counts.to_numpy() == truth["future_orders_90d"].to_numpy()).all()
    assert (truth["will_purchase_90d"] == (truth["future_orders_90d"] > 0)).all()


def test_consent_state_agrees_with_the_consent_log_and_the_mail_log(world) -> None:
    contacts, consents, events = world["contacts"], world["consents"], world["email_events"]
    email_log = consents[consents["channel"] == "email"].sort_values(["contact_id", "recorded_at"])
    last = email_log.groupby("contact_id")["event"].last()
    c = contacts.set_index("contact_id")
    assert (c.loc[last.index, "email_consent"] == (last == "opt_in")).all()
    assert not c.loc[~c.index.isin(last.index), "email_consent"].any()
    # nobody is mailed before opting in, after unsubscribing, or after objecting
    sends = events[events["event_type"] == "sent"].join(
        c[["email_consent_at", "email_consent"]], on="contact_id"
    )
    opt_in = email_log[email_log["event"] == "opt_in"].groupby("contact_id")["recorded_at"].min()
    sends = sends.join(opt_in.rename("opt_in_at"), on="contact_id")
    assert (sends["occurred_at"] >= sends["opt_in_at"]).all()
    unsub = events[events["event_type"] == "unsubscribe"].groupby("contact_id")["occurred_at"].min()
    after = sends.join(unsub.rename("unsub_at"), on="contact_id")
    assert not (after["occurred_at"] > after["unsub_at"]).any()
    assert not c.loc[unsub.index, "email_consent"].any()
    objected = consents[consents["event"] == "objection"].set_index("contact_id")["recorded_at"]
    after = sends.join(objected.rename("objected_at"), on="contact_id")
    assert not (after["occurred_at"] > after["objected_at"]).any()
    assert (c.loc[objected.index, "marketing_objection"]).all()


def test_ticket_text_carries_the_pii_and_injections_the_truth_says(world) -> None:
    tickets = world["support_tickets"].merge(world["tickets_truth"], on="ticket_id")
    contacts = world["contacts"].set_index("contact_id")
    injected = tickets[tickets["is_prompt_injection"]]
    assert len(injected) > 20
    assert injected["body"].apply(lambda b: any(p in b for p in PROMPT_INJECTIONS)).all()
    assert (
        not tickets.loc[~tickets["is_prompt_injection"], "body"]
        .apply(lambda b: any(p in b for p in PROMPT_INJECTIONS))
        .any()
    )
    with_pii = tickets[tickets["contains_pii"]].sample(300, random_state=0)
    for _, t in with_pii.iterrows():
        person = contacts.loc[t["contact_id"]]
        assert person["first_name"] in t["body"]


def test_generated_sizes_match_what_benchmarks_assume(world) -> None:
    n = len(world["contacts"])
    assert 7 <= len(world["orders"]) / n <= 13  # "about 10 orders per customer"
    assert 35 <= len(world["email_events"]) / n <= 55  # "about 45 events" (two years of e-mail)
    amounts = world["orders"]["total_amount"].astype(float)
    assert (amounts >= 0).all() and np.isclose(
        (world["orders"]["subtotal_amount"].astype(float) - world["orders"]["discount_amount"].astype(float)),
        amounts,
    ).all()


# -- outputs and safety ------------------------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_output_holds_the_same_rows_with_primary_keys(tmp_path: Path, pg_schema) -> None:
    dsn, schema = pg_schema
    g = GenerateSettings(customers=500, seed=4, defects=0.02)
    result = generate(g, out=tmp_path / "manifests", postgres_dsn=dsn, pg_schema=schema)
    import psycopg

    with psycopg.connect(dsn) as con:
        for entity, info in result.manifest["entities"].items():
            (count,) = con.execute(f'select count(*) from "{schema}"."{entity}"').fetchone()
            assert count == info["rows"], entity
        (pk_count,) = con.execute(
            "select count(*) from information_schema.table_constraints "
            "where table_schema = %s and constraint_type = 'PRIMARY KEY'",
            [schema],
        ).fetchone()
        assert pk_count == len(ENTITIES)
        listed = manifest_defects(result.out)
        assert listed and all(d["file"].startswith(f"postgres:{schema}.") for d in listed)
        assert {d["kind"] for d in listed}.isdisjoint({"duplicate_row", "wrong_type", "unparsable_date"})
        orphan = next(d for d in listed if d["kind"] == "orphan" and d["entity"] == "orders")
        (contact_id,) = con.execute(
            f'select contact_id from "{schema}".orders where order_id = %s', [int(orphan["key"])]
        ).fetchone()
        (parents,) = con.execute(
            f'select count(*) from "{schema}".contacts where contact_id = %s', [contact_id]
        ).fetchone()
        assert parents == 0
    assert (result.out / "truth" / "contacts.csv").is_file()
    assert "postgres:" in json.loads((result.out / "manifest.json").read_text())["destination"]


@pytest.mark.postgres
def test_postgres_generation_replaces_the_schema_instead_of_duplicating(tmp_path: Path, pg_schema) -> None:
    dsn, schema = pg_schema
    g = GenerateSettings(customers=200, seed=4)
    generate(g, out=tmp_path / "m1", postgres_dsn=dsn, pg_schema=schema)
    again = generate(g, out=tmp_path / "m2", postgres_dsn=dsn, pg_schema=schema)
    import psycopg

    with psycopg.connect(dsn) as con:
        (count,) = con.execute(f'select count(*) from "{schema}".orders').fetchone()
    assert count == again.manifest["entities"]["orders"]["rows"]


def test_an_unreachable_postgres_is_a_clear_error_and_leaves_no_files(tmp_path: Path) -> None:
    with pytest.raises(
        GenerateError, match=r"cannot connect to PostgreSQL at postgresql://bob:\*\*\*@127\.0\.0\.1:1/x"
    ):
        generate(
            GenerateSettings(customers=50),
            out=tmp_path / "crm",
            postgres_dsn="postgresql://bob:secret@127.0.0.1:1/x",
        )
    assert not (tmp_path / "crm").exists()
    assert not list(tmp_path.iterdir())


def test_refuses_to_replace_a_folder_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(GenerateError, match="not written by `clarion generate`"):
        generate(GenerateSettings(customers=50), out=tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_an_interrupted_generation_keeps_the_previous_export(tmp_path: Path) -> None:
    out = tmp_path / "crm"
    before = generate(GenerateSettings(customers=100, seed=1), out=out).manifest

    def boom(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate(GenerateSettings(customers=100, seed=2), out=out, progress=boom)
    assert json.loads((out / "manifest.json").read_text()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["crm"]  # no half-written staging folder left


def test_regenerating_replaces_its_own_previous_export(tmp_path: Path) -> None:
    out = tmp_path / "crm"
    generate(GenerateSettings(customers=100, defects=0.05), out=out)
    generate(GenerateSettings(customers=100, defects=0.0), out=out)
    assert not list(out.glob("*.part*"))
