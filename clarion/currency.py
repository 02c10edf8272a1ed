"""The currency people read amounts in.

Features and models keep money in EUR (dbt converts each order with the `fx_rates` seed). What a
person reads (reason sentences, `clarion explain`, the report) is in the shop's currency: the
`currency` setting, else the most common currency of the loaded orders, converted back with the
same seed's rate, so a USD shop reads USD and the figure is the one its own orders add up to.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import duckdb

from clarion.config import Settings
from clarion.errors import ConfigError
from clarion.warehouse import relation_exists


@dataclass(frozen=True)
class Currency:
    code: str
    units_per_eur: float

    def amount(self, eur: float | None) -> str:
        return "-" if eur is None else f"{self.code} {eur * self.units_per_eur:,.0f}"


def rates(settings: Settings) -> dict[str, float]:
    path = Path(settings.transform.dbt_project_dir) / "seeds" / "fx_rates.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        return {row["currency"]: float(row["units_per_eur"]) for row in csv.DictReader(fh)}


def shop_currency(settings: Settings, con: duckdb.DuckDBPyConnection) -> Currency:
    code = settings.currency
    if code is None:
        row = None
        if relation_exists(con, "raw", "orders"):
            row = con.execute(
                "select currency from raw.orders where currency is not null "
                "group by 1 order by count(*) desc, currency limit 1"
            ).fetchone()
        code = row[0] if row else "EUR"
    known = rates(settings)
    if code not in known:
        raise ConfigError(
            [
                f"currency {code} has no rate in the dbt project's seeds/fx_rates.csv "
                f"(known: {', '.join(sorted(known))}); add a line `{code},<units per EUR>` there"
            ]
        )
    return Currency(code, known[code])
