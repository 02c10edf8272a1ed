"""`clarion init` (issue 24): profile the four foreign export shapes, propose a mapping, write a YAML
that loads; the proposed SQL, run over the files as the extract runs it, gives the hand-computed truth."""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from byo_shapes import SHAPES, Truth
from click.testing import CliRunner

from clarion.cli import cli
from clarion.config import load_settings
from clarion.onboard.check import check_proposal, file_views, run_mapping
from clarion.onboard.profile import profile_folder
from clarion.onboard.propose import propose_files


def _init(folder: Path, out: Path, *args: str, input: str | None = None):
    return CliRunner().invoke(
        cli, ["--config", str(out), "init", "--from", str(folder), *args], input=input, catch_exceptions=False
    )


@pytest.fixture(scope="module", params=list(SHAPES))
def shape(request, tmp_path_factory) -> tuple[str, Path, Truth]:
    folder = tmp_path_factory.mktemp(request.param) / "exports"
    return request.param, folder, SHAPES[request.param](folder)


def _cols(folder: Path) -> dict[str, dict]:
    return {p.path: {c.name: c for c in p.columns} | {"": p} for p in profile_folder(folder)}


def test_profile_finds_types_formats_and_patterns(shape):
    name, folder, truth = shape
    prof = _cols(folder)
    if name == "shopify":
        cols = prof["orders_export.csv"]
        assert cols[""].delimiter == "," and cols[""].encoding == "utf-8"
        assert (
            cols["Created at"].type == "timestamp"
            and cols["Created at"].date_format == "%Y-%m-%d %H:%M:%S %z"
        )
        assert cols["Email"].has("email", 1.0) and cols["Email"].values is None  # never listed
        assert set(cols["Financial Status"].values) <= {"paid", "refunded", "voided", "pending"}
        assert cols["Total"].type == "decimal" and cols["Total"].null_rate > 0  # blank on later line items
        assert cols["Total"].distinct == len(truth.orders) and cols["Name"].has("hash_number")
        assert cols["Billing Country"].has("iso2")
    elif name == "woocommerce":
        cols = prof["woocommerce_orders.csv"]
        assert cols[""].delimiter == ";" and cols[""].rows == len(truth.orders)
        assert cols["Order Date"].date_format == "%d/%m/%Y %H:%M"
        assert all(v.startswith("wc-") for v in cols["Order Status"].values)
        assert cols["Order Currency"].has("currency_code") and cols["Order Number"].has("id_like")
        assert cols["Customer ID"].distinct == len(truth.customers)
    elif name == "payments_cents":
        assert prof["customers.csv"][""].rows == len(truth.customers)
        assert prof["orders.csv"][""].rows == len(truth.orders)
        cid = prof["customers.csv"]["id"]
        assert cid.type == "int" and 0 < cid.patterns["float_written"] < 1 and cid.has("id_like")
        assert prof["payments.csv"]["amount_cents"].has("cents")
        assert prof["orders.csv"]["created"].date_format == "%Y-%m-%dT%H:%M:%SZ"
        assert set(prof["payments.csv"]["status"].values) <= {"succeeded", "refunded", "failed"}
    else:
        cols = prof["invoices.csv"]
        assert cols["InvoiceDate"].date_format == "%m/%d/%Y %H:%M"
        assert cols["CustomerID"].type == "int" and cols["CustomerID"].patterns["float_written"] == 1.0
        assert cols["CustomerID"].null_rate == pytest.approx(len(truth.quarantined) / cols[""].rows, abs=1e-3)
        assert cols["Quantity"].negative and cols["InvoiceNo"].has("letter_prefixed", 0.01)
        assert cols["Country"].has("country_name")
        assert cols["InvoiceNo"].distinct == len(truth.orders) + len(truth.quarantined)


EXPECTED_ROLES = {
    "shopify": {"orders_export.csv": "order_lines"},
    "woocommerce": {"woocommerce_orders.csv": "orders"},
    "payments_cents": {"customers.csv": "contacts", "orders.csv": "orders", "payments.csv": "payments"},
    "invoices": {"invoices.csv": "invoice_lines"},
}


def _mapped(folder: Path, plan) -> tuple[list[str], list[tuple]]:
    """The rows an entity's proposal gives: its sql:, or its files/columns/values/format done here."""
    if "sql" in plan.keys:
        return run_mapping(folder, plan.keys["sql"].value)
    keys = plan.keys
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    path = folder / keys["files"].value[0]
    delim = keys["delimiter"].value if "delimiter" in keys else ","
    con.execute(f"create view src as select * from read_csv('{path}', all_varchar=true, delim='{delim}')")
    renames = {src: k.value for src, k in keys["columns"].value.items()}
    status_map = (
        {k: v.value for k, v in keys["values"].value["status"].value.items()} if "values" in keys else {}
    )
    fmt = keys["timestamp_format"].value
    cols = []
    for src, out in renames.items():
        e = f'"{src}"'
        if out == "ordered_at":
            e = f"strptime({e}, '{fmt}')"
        elif out == "status":
            e = (
                "CASE "
                + e
                + " "
                + " ".join(f"WHEN '{a}' THEN '{b}'" for a, b in status_map.items())
                + f" ELSE {e} END"
            )
        elif out in ("order_id", "contact_id"):
            e = f"cast({e} as bigint)"
        elif out.endswith("_amount"):
            e = f"cast({e} as decimal(14,2))"
        cols.append(f"{e} as {out}")
    cur = con.execute(f"select {', '.join(cols)} from src")
    return [d[0] for d in cur.description], cur.fetchall()


def test_proposal_maps_files_to_entities_and_gives_the_truth(shape):
    name, folder, truth = shape
    prop = propose_files(profile_folder(folder), str(folder), "shop")
    check_proposal(prop, folder)
    assert {f.path: f.role for f in prop.files} == EXPECTED_ROLES[name]
    assert all(f.confidence >= 0.8 for f in prop.files)
    plans = {p.entity: p for p in prop.entities}
    assert set(plans) == {"contacts", "orders"} and all(p.confidence >= 0.8 for p in plans.values())
    assert not [q for q in prop.questions if q.startswith("sources.") or "does not run" in q]
    cols, rows = _mapped(folder, plans["orders"])
    got = [dict(zip(cols, r, strict=True)) for r in rows]
    key = "source_order_id" if "source_order_id" in cols else "order_id"
    guests = [g for g in got if g["contact_id"] is None]
    assert len(guests) == len(truth.quarantined)  # no customer: quarantined by the extract, not dropped
    orders = {str(g[key]): g for g in got if g["contact_id"] is not None}
    assert set(orders) == set(truth.orders)
    for k, (_customer, status, total) in truth.orders.items():
        assert (orders[k]["status"], Decimal(orders[k]["total_amount"])) == (status, total), k
    assert all(g["ordered_at"] is not None and g["currency"] == "EUR" for g in got)
    ccols, crows = _mapped(folder, plans["contacts"])
    contacts = [dict(zip(ccols, r, strict=True)) for r in crows]
    by = "email" if name == "shopify" else "contact_id"
    assert {str(c[by]): c["signup_date"] for c in contacts} == truth.customers
    # per customer: the orders point at the contacts' ids, and the sums agree
    ids = {c["contact_id"]: str(c[by]) for c in contacts}
    sums: dict[str, Decimal] = {}
    for g in orders.values():
        sums[ids[g["contact_id"]]] = sums.get(ids[g["contact_id"]], Decimal(0)) + Decimal(g["total_amount"])
    assert sums == truth.per_customer()


def test_init_writes_a_commented_yaml_that_loads(shape, tmp_path):
    name, folder, truth = shape
    out = tmp_path / "clarion.yaml"
    res = _init(folder, out, "--yes", "--source-name", "myshop")
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert text.startswith("# Written by `clarion init`") and "# 0.9" in text
    settings = load_settings(out, env={})
    source = settings.sources["myshop"]
    assert source.kind == "files" and source.path == folder
    assert set(source.entities) == {"contacts", "orders"}
    assert all(e.defaults.get("updated_at") == "load_time" for e in source.entities.values())
    if name == "woocommerce":
        orders = source.entities["orders"]
        assert orders.delimiter == ";" and orders.timestamp_format == "%d/%m/%Y %H:%M"
        assert orders.values["status"]["wc-refunded"] == "returned" and orders.sql is None
        assert "# QUESTION: woocommerce_orders.csv Order Status: wc-processing" in text
    else:
        assert source.entities["orders"].sql
    # no person's data in what init prints or writes
    for email in truth.emails:
        assert email not in res.output and email not in text
        assert email.split("@")[0] not in res.output + text
    assert "Name17" not in res.output + text  # first names (payments shape)


def test_without_yes_it_asks_and_writes_nothing_on_no(tmp_path):
    folder = tmp_path / "exports"
    SHAPES["woocommerce"](folder)
    out = tmp_path / "clarion.yaml"
    res = _init(folder, out, input="n\n")
    assert "Write this proposal" in res.output and "Nothing written" in res.output and not out.exists()
    res = _init(folder, out, input="y\n")
    assert res.exit_code == 0 and out.exists()


def test_refuses_to_overwrite_without_force(tmp_path):
    folder = tmp_path / "exports"
    SHAPES["invoices"](folder)
    out = tmp_path / "clarion.yaml"
    out.write_text("warehouse:\n  path: mine.duckdb\n")
    res = _init(folder, out, "--yes")
    assert res.exit_code != 0 and "exists" in res.output and "--force" in res.output
    assert out.read_text() == "warehouse:\n  path: mine.duckdb\n"
    res = _init(folder, out, "--yes", "--force")
    assert res.exit_code == 0 and "sources:" in out.read_text()


def _csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def test_ambiguous_files_become_questions(tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    # every day is 12 or less: 03/04/2026 may be 3 April or 4 March
    rows = [[100 + i, 7 + i % 5, f"{1 + i % 12:02d}/{1 + i % 11:02d}/2026 10:00", "shipped", "12.50", "EUR"]
            for i in range(30)]  # fmt: skip
    _csv(
        folder / "orders.csv", ["order_id", "customer_id", "order_date", "status", "total", "currency"], rows
    )
    _csv(folder / "notes.csv", ["a", "b"], [[i, f"x{i}"] for i in range(10)])
    out = tmp_path / "clarion.yaml"
    res = _init(folder, out, "--yes")
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert "notes.csv: not used" in res.output and "notes.csv: not used" in text
    day_month = "dates may be day/month or month/day"
    assert day_month in res.output
    assert any(day_month in ln and ln.strip().startswith("# QUESTION:") for ln in text.splitlines())
    load_settings(out, env={})


def test_views_are_named_like_the_extract_names_tables(tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    _csv(folder / "Orders Export.csv", ["x"], [[1], [2]])
    _csv(folder / "Orders Export.part2.csv", ["x"], [[3]])
    con = duckdb.connect()
    assert {k: len(v) for k, v in file_views(con, folder).items()} == {"orders_export": 2}
    assert con.execute("select sum(x) from orders_export").fetchall() == [(6,)]


def test_profile_reads_compressed_cp1252_tab_files_and_parquet(tmp_path):
    import gzip

    folder = tmp_path / "exports"
    folder.mkdir()
    lines = ["id\tcity\tprice\tstatus"] + [
        f"{i}\tMünchen Straße {i % 2}\t{i},50\t{('open', 'done')[i % 2]}" for i in range(20)
    ]
    (folder / "stores.tsv.gz").write_bytes(gzip.compress("\n".join(lines).encode("cp1252")))
    duckdb.execute(f"copy (select range as id, 'x' as s from range(7)) to '{folder / 'extra.parquet'}'")
    prof = {p.path: p for p in profile_folder(folder)}
    stores = prof["stores.tsv.gz"]
    assert (stores.delimiter, stores.encoding, stores.compression, stores.rows) == (
        "\t",
        "cp1252",
        "gzip",
        20,
    )
    cols = {c.name: c for c in stores.columns}
    assert cols["id"].type == "int" and cols["id"].has("id_like")
    assert (
        cols["status"].values == ["done", "open"] and cols["city"].values is None
    )  # an address: never shown
    assert prof["extra.parquet"].rows == 7 and prof["extra.parquet"].table == "extra"


def test_user_errors_are_one_line_without_a_traceback(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("not data\n")
    out = tmp_path / "clarion.yaml"
    res = CliRunner().invoke(cli, ["--config", str(out), "init", "--from", str(empty), "--yes"])
    assert res.exit_code != 0 and "holds no data files" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(cli, ["--config", str(out), "init", "--yes"])
    assert res.exit_code != 0 and "--from DIR or --from-dsn-env VAR" in res.output
    res = CliRunner().invoke(cli, ["--config", str(out), "init", "--from-dsn-env", "NO_SUCH_VAR_24", "--yes"])
    assert res.exit_code != 0 and "NO_SUCH_VAR_24 is not set" in res.output and not out.exists()


def test_a_file_longer_than_the_profiles_sample_is_judged_on_the_sample(tmp_path):
    """Distinct values are counted on the first 50,000 rows: an orders file of 60,000 unique ids must
    still read as one row per order (compared with the rows sampled, not the whole file)."""
    from clarion.onboard.profile import SAMPLE_ROWS

    folder = tmp_path / "exports"
    truth = SHAPES["payments_cents"](folder, customers=24_000)
    assert len(truth.orders) > SAMPLE_ROWS
    prop = propose_files(profile_folder(folder), "exports", "shop")
    assert [p.entity for p in prop.entities] == ["contacts", "orders"], prop.questions
    assert not prop.questions
