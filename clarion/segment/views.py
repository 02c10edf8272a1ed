"""What `clarion explain` and `clarion models` show: read-only views of ml.* and the registry."""

from __future__ import annotations

import json
from typing import Any

import duckdb

from clarion.config import Settings
from clarion.currency import rates
from clarion.errors import ClarionError
from clarion.warehouse import Warehouse, relation_exists
from models.registry import Registry


def explanation(settings: Settings, contact_id: int) -> dict[str, Any]:
    """The latest score of one customer: probabilities, segment, reasons, model version, and where
    the customer stands against the average customer."""
    with Warehouse.from_settings(settings).read() as con:
        if not relation_exists(con, "ml", "customer_scores"):
            raise ClarionError("no customer has been scored yet: run `clarion segment` (or `clarion run`)")
        out = latest_score(con, contact_id, rates(settings))
    if out is None:
        raise ClarionError(
            f"customer {contact_id} was not scored in any run: is the id right, and had they signed up "
            "before the scoring day? (`clarion status` shows the last runs)"
        )
    return out


def score_columns(con: duckdb.DuckDBPyConnection) -> tuple[str, ...]:
    """The STANDING columns ml.customer_scores has (older runs did not record them)."""
    columns = {r[0] for r in con.execute("describe ml.customer_scores").fetchall()}
    return tuple(c for c in STANDING if c in columns)


def latest_score(
    con: duckdb.DuckDBPyConnection,
    contact_id: int,
    units_per_eur: dict[str, float],
    standing: tuple[str, ...] | None = None,
) -> dict[str, Any] | None:
    """`explanation` on an open connection (the API's cursor on the read snapshot): the customer's
    latest score, or None when they were never scored. ``standing``: `score_columns(con)`, when known."""
    standing = score_columns(con) if standing is None else standing
    row = con.execute(
        f"""
        select run_id, contact_id, as_of, horizon_days, model_version, purchase_probability,
               churn_risk, expected_value_eur, segment, to_json(reasons), scored_at
               {"".join(", " + c for c in standing)}
        from ml.customer_scores where contact_id = ? order by scored_at desc limit 1
        """,
        [contact_id],
    ).fetchone()
    if row is None:
        return None
    keys = (
        "run_id",
        "contact_id",
        "as_of",
        "horizon_days",
        "model_version",
        "purchase_probability",
        "churn_risk",
        "expected_value_eur",
        "segment",
        "reasons",
        "scored_at",
        *standing,
    )
    out = dict(zip(keys, row, strict=True))
    out["reasons"] = json.loads(out["reasons"]) if out["reasons"] else []
    out["as_of"] = str(out["as_of"])
    out["scored_at"] = str(out["scored_at"])
    out["currency"] = out.get("currency") or "EUR"  # runs before currencies were recorded wrote EUR
    out["expected_value"] = out["expected_value_eur"] * units_per_eur.get(out["currency"], 1.0)
    return out


STANDING = ("margin", "base_margin", "vs_average", "average_probability", "currency")


def explanation_text(e: dict[str, Any]) -> str:
    lines = [
        f"Customer {e['contact_id']}  segment {e['segment']}  "
        f"(as of {e['as_of']}, model {e['model_version']}, run {e['run_id']})",
        f"  buys in the next {e['horizon_days']} days: {e['purchase_probability']:.0%}   churn risk "
        f"{e['churn_risk']:.0%}   expected spend {e['currency']} {e['expected_value']:,.0f}",
    ]
    where = e.get("vs_average")
    if where:
        average = f"the average customer ({e['average_probability']:.0%})"
        lines.append(
            "  "
            + {
                "below": f"less likely to buy than {average}: why at risk",
                "above": f"more likely to buy than {average}: why they stay",
                "close": f"close to {average}: what pushes either way nearly cancels",
            }[where]
        )
    lines.append("  why:")
    for i, r in enumerate(e["reasons"], 1):
        arrow = "raises risk" if r["direction"] == "raises_risk" else "lowers risk"
        lines.append(f"    {i}. {r['text']}  [{r['feature']}, {arrow} by {abs(r['effect']):.2f} log-odds]")
    if not e["reasons"]:
        lines.append(
            "    no family of features moves this score by much on its own"
            + (": it is close to the average customer's" if where == "close" else "")
        )
    return "\n".join(lines)


def models_listing(settings: Settings) -> dict[str, Any]:
    reg = Registry(settings.var_dir / "registry")
    index = reg.index()
    rows = []
    for v in reg.versions():
        m = v.meta["metrics"]["propensity"]
        rows.append(
            {
                "version": v.name,
                "promoted": v.name == index["promoted"],
                "registered_at": v.meta["registered_at"],
                "scoring_as_of": v.meta["data"]["scoring_as_of"],
                "horizon_days": v.meta["horizon_days"],
                "roc_auc": m["roc_auc"],
                "baseline_roc_auc": v.meta["metrics"]["baseline"]["roc_auc"],
                "bgnbd_roc_auc": (v.meta["metrics"].get("customer_base") or {}).get("roc_auc"),
                "brier": m["brier"],
                "ece": m["ece"],
                "calibration": v.meta["metrics"]["calibration"]["method"],
            }
        )
    return {
        "registry": str(reg.root),
        "promoted": index["promoted"],
        "versions": rows,
        "events": index["events"],
    }


def models_text(listing: dict[str, Any]) -> str:
    if not listing["versions"]:
        return f"No model versions in {listing['registry']} yet: `clarion segment` trains the first."
    lines = [
        f"Registry {listing['registry']}  (promoted: {listing['promoted'] or 'none'})",
        f"  {'version':<8} {'':1} {'registered':<21} {'as of':<11} {'horizon':>7} {'ROC AUC':>8} "
        f"{'baseline':>8} {'BG/NBD':>7} {'Brier':>7} {'ECE':>7}  calibration",
    ]
    for r in listing["versions"]:
        star = "*" if r["promoted"] else " "
        lines.append(
            f"  {r['version']:<8} {star:1} {r['registered_at']:<21} {r['scoring_as_of']:<11} "
            f"{r['horizon_days']:>7} {r['roc_auc']:>8.4f} {r['baseline_roc_auc']:>8.4f} "
            f"{'-' if r['bgnbd_roc_auc'] is None else format(r['bgnbd_roc_auc'], '.4f'):>7} "
            f"{r['brier']:>7.4f} "
            f"{r['ece']:>7.4f}  {r['calibration']}"
        )
    lines.append("  * promoted: scores customers. Cards: clarion models show VERSION")
    return "\n".join(lines)


def segments_listing(con: duckdb.DuckDBPyConnection, name: str | None = None) -> dict[str, Any]:
    """The segments of the latest scoring run that finished (as the report picks it): size, share,
    mean churn risk and value, profile, drivers; ``name``: that segment only (empty list if absent)."""
    from clarion.runs import NOT_SETTLED

    if not relation_exists(con, "ml", "segments"):
        return {"run_id": None, "as_of": None, "model_version": None, "segments": []}
    latest = con.execute(
        "select run_id, any_value(as_of)::varchar, any_value(model_version) from ml.segments "
        f"where run_id not in ({NOT_SETTLED}) group by run_id order by max(scored_at) desc limit 1"
    ).fetchone()
    if latest is None:
        return {"run_id": None, "as_of": None, "model_version": None, "segments": []}
    cur = con.execute(
        "select segment, customers, share, mean_churn_risk, mean_expected_value_eur, profile, top_drivers, "
        "high_value_from_eur from ml.segments where run_id = ? and (? is null or segment = ?) "
        "order by customers desc, segment",
        [latest[0], name, name],
    )
    keys = [d[0] for d in cur.description]
    segments = []
    for row in cur.fetchall():
        seg = dict(zip(keys, row, strict=True))
        seg["profile"] = json.loads(seg["profile"]) if seg["profile"] else {}
        seg["top_drivers"] = json.loads(seg["top_drivers"]) if seg["top_drivers"] else []
        segments.append(seg)
    return {"run_id": latest[0], "as_of": latest[1], "model_version": latest[2], "segments": segments}
