"""A shop with nothing but a transactions file still gets scored, explained and segmented.

The file has German column names and dates, and only customer, day and amount. Contacts and orders
are derived from it; e-mail, support, delivery and consent tables stay empty. The whole pipeline
(extract, gates, dbt, segment) must run, every customer must be scored, and reasons can only come
from what purchases show: a model cannot explain with data it never saw.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from clarion.cli import cli
from clarion.config import GenerateSettings
from clarion.synth.generator import generate
from flows.pipeline import pipeline

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]

PURCHASE_FAMILIES = {"recency", "frequency", "monetary", "rhythm", "tenure", "returns", "price"}


def transactions_file(crm: Path, out: Path) -> int:
    """Completed orders of a generated CRM as `kunde,datum,betrag` with dd.mm.yyyy dates."""
    con = duckdb.connect()
    con.execute(
        f"""
        copy (
            select contact_id as kunde, strftime(ordered_at::timestamp, '%d.%m.%Y') as datum,
                   total_amount as betrag
            from read_csv('{crm}/orders*.csv', union_by_name = true, all_varchar = true)
            where status = 'completed'
        ) to '{out}' (header)
        """
    )
    (rows,) = con.execute(f"select count(*) from read_csv('{out}')").fetchone()
    con.close()
    return rows


def test_a_transactions_only_shop_is_scored_and_explained_from_purchases_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate(GenerateSettings(customers=1200, seed=21, defects=0.0), out=tmp_path / "crm")
    (tmp_path / "data").mkdir()
    rows = transactions_file(tmp_path / "crm", tmp_path / "data" / "sales.csv")
    assert rows > 5000
    (tmp_path / "clarion.yaml").write_text(
        "warehouse:\n  path: var/warehouse.duckdb\n"
        "sources:\n  shop:\n    kind: files\n    path: data\n    transactions:\n"
        '      files: ["sales.csv"]\n'
        "      columns: {kunde: contact_id, datum: ordered_at, betrag: total_amount}\n"
        '      date_format: "%d.%m.%Y"\n      currency: EUR\n'
    )
    monkeypatch.chdir(tmp_path)

    result = pipeline(config_path="clarion.yaml")

    published = result["stages"]["transform"]["published"]
    assert published["fct_email_events"] == 0 and published["fct_support_tickets"] == 0
    segment = result["stages"]["segment"]
    assert segment["customers"] == published["customer_features"] > 1000
    assert segment["trained"]["decision"].startswith("promoted v0001")
    con = duckdb.connect(str(tmp_path / "var" / "warehouse.duckdb"), read_only=True)
    try:
        families = {
            f
            for (f,) in con.execute(
                "select distinct unnest(reasons).family from ml.customer_scores"
            ).fetchall()
        }
        (scored, distinct, someone) = con.execute(
            "select count(*), count(distinct contact_id), min(contact_id) from ml.customer_scores"
        ).fetchone()
    finally:
        con.close()
    assert scored == distinct == segment["customers"]
    assert families and families <= PURCHASE_FAMILIES, families - PURCHASE_FAMILIES
    card = json.loads(
        (tmp_path / "var" / "registry" / "purchase_propensity" / "v0001" / "card.json").read_text()
    )
    assert not {"engagement", "support", "delivery"} & {
        d["family"] for d in card["global_drivers"] if d["mean_abs_shap"] > 0
    }
    shown = CliRunner().invoke(cli, ["explain", str(someone), "--json"], catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["contact_id"] == someone
