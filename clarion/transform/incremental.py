"""What the last staging build recomputed of its incremental models: fct_campaign_exposures and
(for the published day) customer_features.

The dbt side is dbt/macros/incremental.sql: every customer's inputs to a model are fingerprinted
(``int_exposure_inputs``, ``int_feature_inputs``), and only the customers whose fingerprint changed
since the last build (``int_exposures_changed``, ``int_features_changed``) are computed again.
"""

from __future__ import annotations

from typing import Any

import duckdb

from clarion.warehouse import relation_exists

# model -> (its fingerprints, its changed customers, what the summary calls its rows, what
# besides a first build makes every customer's fingerprint move)
INCREMENTAL = {
    "exposures": (
        "int_exposure_inputs",
        "int_exposures_changed",
        "campaign exposures",
        "the exposures' logic changed",
    ),
    "features": (
        "int_feature_inputs",
        "int_features_changed",
        "customer features",
        "a new day, season or logic",
    ),
}


def exposures_scope(
    con: duckdb.DuckDBPyConnection, full_refresh: bool, schema: str = "staging"
) -> dict[str, Any]:
    """``{"recomputed": n, "customers": m, "full_refresh": bool}``: the customers whose exposures
    the build computed, of the customers with any e-mail event, holdout or order. Empty when the
    build has no fingerprints (not DuckDB's incremental build)."""
    return scope(con, "exposures", full_refresh, schema)


def scope(
    con: duckdb.DuckDBPyConnection, model: str, full_refresh: bool, schema: str = "staging"
) -> dict[str, Any]:
    """``{"recomputed": n, "customers": m, "full_refresh": bool}`` for one incremental model
    (INCREMENTAL): the customers it computed, of the customers it fingerprinted. Empty when the
    build has no fingerprints (not DuckDB's incremental build)."""
    inputs, changed_model = INCREMENTAL[model][:2]
    if not (relation_exists(con, schema, changed_model) and relation_exists(con, schema, inputs)):
        return {}
    (customers,) = con.execute(f'select count(*) from "{schema}".{inputs}').fetchone()
    if not customers:  # built whole (a training snapshot's schema, another engine)
        return {}
    (changed,) = con.execute(f'select count(*) from "{schema}".{changed_model}').fetchone()
    recomputed = customers if full_refresh else changed
    return {"recomputed": recomputed, "customers": customers, "full_refresh": full_refresh}


def scope_text(scope: dict[str, Any], model: str = "exposures") -> str:
    done, of = scope["recomputed"], scope["customers"]
    if scope["full_refresh"]:
        how = "full refresh"
    elif done == of:
        how = f"every customer: no earlier build, or {INCREMENTAL[model][3]}"
    else:
        how = "incremental: the others' inputs did not change"
    return f"{INCREMENTAL[model][2]} recomputed for {done:,} of {of:,} customers ({how})"
