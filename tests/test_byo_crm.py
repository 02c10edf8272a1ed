"""Bring your own CRM end to end (issue 24): for each of the four export shapes, `clarion init --from
DIR --yes` writes clarion.yaml, the extract loads it, and raw.contacts / raw.orders match the
hand-computed truth (tests/byo_shapes.py): counts, each order's status and total, each customer's sum.
Plus `clarion init --from-dsn-env` over a small PostgreSQL schema."""

from __future__ import annotations

import os
import time
from decimal import Decimal
from pathlib import Path

import pytest
from byo_shapes import SHAPES
from click.testing import CliRunner

from clarion.cli import cli
from clarion.config import load_settings
from tests.extract_helpers import query

pytestmark = pytest.mark.slow


def _project(tmp_path: Path, shape: str, customers: int = 150):
    """The shape's files (150 customers: enough history for the model to train and validate) and
    clarion.yaml as `clarion init --yes` writes it."""
    folder = tmp_path / "exports"
    truth = SHAPES[shape](folder, customers=customers)
    config = tmp_path / "clarion.yaml"
    res = CliRunner().invoke(cli, ["--config", str(config), "init", "--from", str(folder), "--yes"])
    assert res.exit_code == 0, res.output
    settings = load_settings(
        config,
        env={},
        overrides={
            "var_dir": str(tmp_path / "var"),
            "warehouse": {"path": str(tmp_path / "var" / "warehouse.duckdb")},
            "extract": {"retries": 0, "retry_delay_seconds": 0},
        },
    )
    return truth, settings


@pytest.mark.parametrize("shape", list(SHAPES))
def test_init_then_run_gives_the_truth(tmp_path: Path, shape: str, prefect_server) -> None:
    """`clarion init --yes` then `clarion run` end to end (a real Prefect flow run), and raw holds the
    hand-computed truth. Each run's time is printed for the closing note."""
    truth, _ = _project(tmp_path, shape)
    config = tmp_path / "clarion.yaml"
    config.write_text(config.read_text() + "var_dir: var\nwarehouse:\n  path: var/warehouse.duckdb\n")
    start = time.monotonic()
    res = CliRunner().invoke(cli, ["--config", str(config), "run"])
    print(f"clarion run on the {shape} shape: {time.monotonic() - start:.0f}s, exit {res.exit_code}")
    assert res.exit_code == 0, res.output[-3000:]
    assert "Traceback" not in res.output
    settings = load_settings(config, env={})
    # contacts: one per truth customer, signup = first order date
    by = "email" if shape == "shopify" else "cast(contact_id as varchar)"
    contacts = dict(query(settings, f"select contact_id, {by} from raw.contacts"))
    signups = dict(query(settings, f"select {by}, signup_date from raw.contacts"))
    assert signups == truth.customers
    # orders: the export's own order number is kept (source_order_id) where it has letters
    cols = {r[0] for r in query(settings, "describe raw.orders")}
    key = "source_order_id" if "source_order_id" in cols else "cast(order_id as varchar)"
    rows = query(settings, f"select {key}, contact_id, status, total_amount from raw.orders")
    got = {k: (contacts[c], s, t) for k, c, s, t in rows}
    assert got == truth.orders
    per_customer: dict[str, Decimal] = {}
    for c, _s, t in got.values():
        per_customer[c] = per_customer.get(c, Decimal(0)) + t
    assert per_customer == truth.per_customer()
    # rows without a customer are quarantined, never dropped
    quarantined = query(settings, "select reason, field from quarantine.orders")
    assert len(quarantined) == len(truth.quarantined)
    assert all(f == "contact_id" for _, f in quarantined)
    # the run scored the customers it was given: every scored one is a truth customer
    ((scored, unknown),) = query(
        settings,
        "select count(distinct contact_id), count(distinct contact_id) filter (where contact_id not in "
        "(select contact_id from raw.contacts)) from ml.customer_scores",
    )
    assert scored > 0 and unknown == 0
    # consent unknown: no content goes to them, and the extract said how many
    assert query(settings, "select count(*) from raw.contacts where email_consent") == [(0,)]
    ((message,),) = query(
        settings,
        "select message from audit.extract_loads where entity = 'contacts' and read > 0 "
        "order by started_at limit 1",
    )
    assert f"{len(truth.customers)} contacts load with consent unknown" in message


def test_init_from_a_postgres_schema(tmp_path: Path, pg_schema, monkeypatch) -> None:
    import psycopg

    dsn, schema = pg_schema
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(f'create schema "{schema}"')
        con.execute(
            f'create table "{schema}".customers (id bigint primary key, email text, country text, '
            "created_at timestamptz, updated_at timestamptz)"
        )
        con.execute(
            f'create table "{schema}".sales (order_no bigint primary key, customer_id bigint, '
            "order_date timestamptz, status text, total numeric(10,2), currency text, updated_at timestamptz)"
        )
        for i in range(20):
            con.execute(
                f'insert into "{schema}".customers values (%s, %s, %s, now(), now())',
                (i, f"pg{i}@db.example", "DE"),
            )
        for i in range(60):
            con.execute(
                f'insert into "{schema}".sales values (%s, %s, now(), %s, 10.5, %s, now())',
                (1000 + i, i % 20, ("paid", "refunded", "voided")[i % 3], "EUR"),
            )
    monkeypatch.setenv("SHOP_DSN", dsn)
    out = tmp_path / "clarion.yaml"
    res = CliRunner().invoke(
        cli, ["--config", str(out), "init", "--from-dsn-env", "SHOP_DSN", "--schema", schema, "--yes"]
    )
    assert res.exit_code == 0, res.output
    assert dsn not in res.output and dsn not in out.read_text() and "pg3@db.example" not in out.read_text()
    settings = load_settings(out, env={"SHOP_DSN": dsn})
    source = settings.sources["shop"]
    assert source.kind == "postgres" and source.dsn_env == "SHOP_DSN" and source.schema_name == schema
    assert "orders" in source.entities, res.output
    assert source.entities["orders"].table == "sales"
    assert source.entities["orders"].columns["order_no"] == "order_id"
    assert source.entities["orders"].columns["total"] == "total_amount"
    assert source.entities["contacts"].table == "customers"
    assert os.environ["SHOP_DSN"] == dsn
