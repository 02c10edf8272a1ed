"""`clarion generate --profile transactions`: a transactions-only shop whose repeat buying is realistic.

The statistics are read back from the written files with the csv module (not with the generator's own
code), and the truth is checked against the data by counting both sides independently.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from extract_helpers import query, run_extract

from clarion.cli import cli
from clarion.config import GenerateSettings, load_settings
from clarion.errors import GenerateError
from clarion.synth.generator import generate

CUTOFF_END = date(2026, 7, 1)  # the default cutoff is 2026-06-30: history is every day before this


def shop(customers: int, seed: int, **kw) -> GenerateSettings:
    return GenerateSettings(customers=customers, seed=seed, profile="transactions", **kw)


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def shop20k(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """20,000 customers (seed 3): about 50,000 purchases, enough for the statistical checks."""
    out = generate(shop(20_000, 3), out=tmp_path_factory.mktemp("shop") / "shop").out
    rows = [
        (int(r["customer_id"]), date.fromisoformat(r["order_date"]), r["amount"])
        for r in read_rows(out / "transactions.csv")
    ]
    truth = {int(r["customer_id"]): r for r in read_rows(out / "truth" / "customers.csv")}
    future = [
        (int(r["customer_id"]), date.fromisoformat(r["order_date"]))
        for r in read_rows(out / "truth" / "future_transactions.csv")
    ]
    return {"out": out, "rows": rows, "truth": truth, "future": future}


def repeat_purchases(rows: list[tuple[int, date, str]]) -> list[tuple[int, date]]:
    """Every purchase but each customer's first (the first is when they arrived, not a repeat)."""
    seen: set[int] = set()
    repeats = []
    for customer, day, _ in rows:  # the file is in date order
        if customer in seen:
            repeats.append((customer, day))
        seen.add(customer)
    return repeats


# -- determinism -----------------------------------------------------------------------------------


def test_the_same_seed_gives_byte_identical_files_and_another_seed_other_data(tmp_path: Path) -> None:
    first = generate(shop(3000, 5), out=tmp_path / "a")
    second = generate(shop(3000, 5), out=tmp_path / "b")
    other = generate(shop(3000, 6), out=tmp_path / "c")
    for name in ("transactions.csv", "truth/customers.csv", "truth/future_transactions.csv", "manifest.json"):
        assert (first.out / name).read_bytes() == (second.out / name).read_bytes(), name
    assert (first.out / "transactions.csv").read_bytes() != (other.out / "transactions.csv").read_bytes()
    assert first.manifest["files"] != other.manifest["files"]


# -- the file --------------------------------------------------------------------------------------


def test_the_file_has_one_purchase_per_row_sorted_by_date_then_customer(shop20k) -> None:
    out = shop20k["out"]
    assert (out / "transactions.csv").read_text().splitlines()[0].replace('"', "") == (
        "customer_id,order_date,amount"
    )
    keys = [(day, customer) for customer, day, _ in shop20k["rows"]]
    assert keys == sorted(keys)
    assert date(2023, 1, 1) <= keys[0][0] and keys[-1][0] < CUTOFF_END
    amounts = [amount for _, _, amount in shop20k["rows"]]
    assert all(len(a.split(".")[1]) == 2 and float(a) > 0 for a in amounts)
    spend = sorted(float(a) for a in amounts)
    assert 45 <= spend[len(spend) // 2] <= 70  # the median order, in USD
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["profile"] == "transactions" and manifest["currency"] == "USD"
    assert manifest["entities"]["transactions"]["rows"] == len(amounts)


# -- repeat-purchase behaviour ---------------------------------------------------------------------


def test_most_customers_buy_once_and_a_few_make_much_of_the_orders(shop20k) -> None:
    orders = Counter(customer for customer, _, _ in shop20k["rows"])
    assert len(orders) == 20_000
    one_time = sum(1 for n in orders.values() if n == 1) / len(orders)
    assert 0.50 <= one_time <= 0.65  # measured: 0.58
    counts = sorted(orders.values(), reverse=True)
    top_tenth = sum(counts[: len(counts) // 10]) / sum(counts)
    assert top_tenth > 0.37  # measured: 0.39


def test_the_holiday_season_has_more_orders_per_day_than_summer(shop20k) -> None:
    def per_day(first: date, last: date) -> float:
        orders = sum(1 for _, day, _ in shop20k["rows"] if first <= day <= last)
        return orders / ((last - first).days + 1)

    # Nov-Dec on both sides of one Jun-Jul, so the shop's growth cancels out
    holidays = (
        per_day(date(2024, 11, 1), date(2024, 12, 31)) + per_day(date(2025, 11, 1), date(2025, 12, 31))
    ) / 2
    summer = per_day(date(2025, 6, 1), date(2025, 7, 31))
    assert holidays / summer > 1.5  # measured: 2.0


def test_seasonal_buyers_buy_in_their_own_window_each_year(shop20k) -> None:
    truth = shop20k["truth"]
    seasonal = {c for c, t in truth.items() if t["seasonal_buyer"] == "true"}
    assert 0.20 <= len(seasonal) / len(truth) <= 0.26

    def in_window(customer: int, day: date) -> bool:
        peak = int(truth[customer]["window_peak_day"])
        return abs((day.timetuple().tm_yday - peak + 182) % 365 - 182) <= 30

    theirs = [in_window(c, d) for c, d in repeat_purchases(shop20k["rows"]) if c in seasonal]
    # 61 days are a sixth of the year; seasonal buyers place most repeat purchases in them
    assert len(theirs) > 1000
    assert sum(theirs) / len(theirs) > 0.6  # measured: 0.73


def test_customers_slowing_down_at_the_cutoff_bought_less_in_the_last_180_days(shop20k) -> None:
    truth, rows = shop20k["truth"], shop20k["rows"]
    split = CUTOFF_END - timedelta(days=180)
    established = {
        c
        for c, t in truth.items()
        if date.fromisoformat(t["first_purchase_date"]) < split - timedelta(days=365)
    }

    def recent_vs_earlier(customers: set[int]) -> float:
        """Purchases per customer-day in the last 180 days over the same before them (repeats only)."""
        repeats = [(c, d) for c, d in repeat_purchases(rows) if c in customers]
        late = sum(1 for _, d in repeats if d >= split)
        early = len(repeats) - late
        early_days = sum(
            (split - date.fromisoformat(truth[c]["first_purchase_date"])).days for c in customers
        )
        return (late / (180 * len(customers))) / (early / early_days)

    slowing = {c for c in established if truth[c]["slowing_down"] == "true"}
    steady = {
        c
        for c in established
        if truth[c]["alive_at_cutoff"] == "true" and truth[c]["slowing_down"] == "false"
    }
    assert len(slowing) > 300 and len(steady) > 1000
    assert recent_vs_earlier(slowing) < 0.8  # measured: 0.71
    assert recent_vs_earlier(slowing) < recent_vs_earlier(steady) - 0.1  # steady measured: 0.91


def test_replenishment_buyers_buy_at_more_regular_intervals_than_the_others(shop20k) -> None:
    truth = shop20k["truth"]
    days: dict[int, list[int]] = {}
    for customer, day, _ in shop20k["rows"]:
        days.setdefault(customer, []).append(day.toordinal())

    def median_gap_variation(kind: str) -> float:
        """Median over customers with 5+ purchases of (std / mean) of the days between purchases."""
        ratios = []
        for c, t in truth.items():
            if t["replenishment_buyer"] != kind or t["seasonal_buyer"] == "true" or len(days.get(c, [])) < 5:
                continue
            gaps = [b - a for a, b in zip(days[c], days[c][1:], strict=False)]
            mean = sum(gaps) / len(gaps)
            if mean > 0:
                ratios.append((sum((g - mean) ** 2 for g in gaps) / len(gaps)) ** 0.5 / mean)
        assert len(ratios) > 300
        return sorted(ratios)[len(ratios) // 2]

    assert median_gap_variation("true") < 0.6  # measured: 0.48
    assert median_gap_variation("false") > 0.7  # Poisson buyers, measured: 0.79


def test_new_customers_stop_more_often_than_the_per_purchase_dropout_alone_says(shop20k) -> None:
    truth = shop20k["truth"].values()
    stopped_at_first = sum(
        1 for t in truth if t["dropout_kind"] == "abrupt" and t["inactive_from"] == t["first_purchase_date"]
    )
    base = sum(float(t["dropout_probability"]) for t in truth)  # expected without the early boost
    assert stopped_at_first / base > 1.8  # measured: 2.2


# -- truth -----------------------------------------------------------------------------------------


def test_the_truth_agrees_with_the_data(shop20k) -> None:
    truth, rows, future = shop20k["truth"], shop20k["rows"], shop20k["future"]
    in_file = Counter(customer for customer, _, _ in rows)
    assert {c: int(t["purchases_before_cutoff"]) for c, t in truth.items()} == dict(in_file)
    first_day: dict[int, date] = {}
    for customer, day, _ in rows:
        first_day.setdefault(customer, day)
    assert {c: date.fromisoformat(t["first_purchase_date"]) for c, t in truth.items()} == first_day

    after = Counter(c for c, _ in future)
    within_90 = Counter(c for c, d in future if d < CUTOFF_END + timedelta(days=90))
    assert all(d >= CUTOFF_END for _, d in future)
    assert {c: int(t["future_orders"]) for c, t in truth.items() if int(t["future_orders"])} == dict(after)
    assert {c: int(t["future_orders_90d"]) for c, t in truth.items() if int(t["future_orders_90d"])} == dict(
        within_90
    )
    assert all((t["will_purchase_90d"] == "true") == (c in within_90) for c, t in truth.items())
    # only customers still active at the cutoff buy afterwards; those who stopped have no rate
    assert all(truth[c]["alive_at_cutoff"] == "true" for c in after)
    gone = [t for t in truth.values() if t["alive_at_cutoff"] == "false"]
    assert gone and all(float(t["rate_at_cutoff_per_year"]) == 0 for t in gone)
    assert all(date.fromisoformat(t["inactive_from"]) < CUTOFF_END for t in gone)
    assert all(t["alive_at_cutoff"] == "true" for t in truth.values() if t["slowing_down"] == "true")
    assert 0.05 < sum(1 for t in truth.values() if t["will_purchase_90d"] == "true") / len(truth) < 0.2


# -- options ---------------------------------------------------------------------------------------


def test_database_destinations_refuse_the_transactions_profile(tmp_path: Path) -> None:
    with pytest.raises(GenerateError, match="writes files only"):
        generate(shop(100, 1), out=tmp_path / "x", postgres_dsn="postgresql://nobody@127.0.0.1:1/none")
    assert not (tmp_path / "x").exists()


def test_defects_are_ignored_and_recorded_as_such(tmp_path: Path) -> None:
    clean = generate(shop(500, 2), out=tmp_path / "clean").manifest
    asked = generate(shop(500, 2, defects=0.05), out=tmp_path / "asked").manifest
    assert asked["files"] == clean["files"]
    assert asked["defects"]["rows"] == 0 and asked["defects"]["ignored_setting"] == 0.05


def test_a_folder_clarion_did_not_write_is_never_replaced(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(GenerateError, match="not written by `clarion generate`"):
        generate(shop(100, 1), out=tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


# -- command line and extract ----------------------------------------------------------------------


def test_the_command_reports_rows_truth_and_the_sources_block_as_json(project, tmp_path: Path) -> None:
    project()
    result = CliRunner().invoke(
        cli,
        ["generate", "--profile", "transactions", "--customers", "2000", "--out", "shop", "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["profile"] == "transactions" and summary["customers"] == 2000
    assert Path(summary["out"]) == tmp_path / "shop"
    rows = len(read_rows(tmp_path / "shop" / "transactions.csv"))
    assert summary["rows"] == {"transactions": rows}
    assert Path(summary["truth"]) == tmp_path / "shop" / "truth" / "customers.csv"
    assert summary["sources"]["shop"]["path"] == "shop"  # relative to the project's clarion.yaml
    assert yaml.safe_load(summary["sources_yaml"]) == {"sources": summary["sources"]}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_the_printed_sources_block_loads_every_row_through_the_real_extract(
    fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "clarion.yaml").write_text("warehouse:\n  path: var/warehouse.duckdb\n")
    args = ["generate", "--profile", "transactions", "--customers", "1500", "--seed", "4", "--format", fmt]
    result = CliRunner().invoke(cli, [*args, "--out", "var/shop"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    block = result.stdout[result.stdout.index("sources:") :]
    (tmp_path / "clarion.yaml").write_text("warehouse:\n  path: var/warehouse.duckdb\n" + block)
    settings = load_settings(tmp_path / "clarion.yaml", env={}, overrides={"extract": {"retries": 0}})
    manifest = json.loads((tmp_path / "var" / "shop" / "manifest.json").read_text())
    rows = manifest["entities"]["transactions"]["rows"]

    results = {r.entity: r for r in run_extract(settings)}

    assert (results["transactions"].read, results["transactions"].loaded) == (rows, rows)
    assert results["transactions"].quarantined == 0
    assert results["contacts"].loaded == 1500 and results["orders"].loaded == rows
    [(orders, customers, currencies, first, last)] = query(
        settings,
        "select count(*), count(distinct contact_id), string_agg(distinct currency), "
        "min(ordered_at)::date, max(ordered_at)::date from raw.orders",
    )
    assert (orders, customers, currencies) == (rows, 1500, "USD")
    assert date(2023, 1, 1) <= first and last <= date(2026, 6, 30)
    assert query(settings, "select count(*) from quarantine.transactions") == [(0,)]
