"""What the last staging build recomputed of its incremental model, fct_campaign_exposures.

The dbt side is dbt/macros/incremental.sql: every customer's inputs to the exposures are
fingerprinted (``int_exposure_inputs``), and only the customers whose fingerprint changed since the
last build (``int_exposures_changed``) are computed again.
"""

from __future__ import annotations

from typing import Any

import duckdb

from clarion.warehouse import relation_exists


def exposures_scope(
    con: duckdb.DuckDBPyConnection, full_refresh: bool, schema: str = "staging"
) -> dict[str, Any]:
    """``{"recomputed": n, "customers": m, "full_refresh": bool}``: the customers whose exposures
    the build computed, of the customers with any e-mail event, holdout or order. Empty when the
    build has no fingerprints (not DuckDB's incremental build)."""
    if not (
        relation_exists(con, schema, "int_exposures_changed")
        and relation_exists(con, schema, "int_exposure_inputs")
    ):
        return {}
    (customers,) = con.execute(f'select count(*) from "{schema}".int_exposure_inputs').fetchone()
    (changed,) = con.execute(f'select count(*) from "{schema}".int_exposures_changed').fetchone()
    recomputed = customers if full_refresh else changed
    return {"recomputed": recomputed, "customers": customers, "full_refresh": full_refresh}


def scope_text(scope: dict[str, Any]) -> str:
    done, of = scope["recomputed"], scope["customers"]
    if scope["full_refresh"]:
        how = "full refresh"
    elif done == of:
        how = "every customer: no earlier build, or the exposures' logic changed"
    else:
        how = "incremental: the others' inputs did not change"
    return f"campaign exposures recomputed for {done:,} of {of:,} customers ({how})"
