"""What `clarion explain` and `clarion models` show: read-only views of ml.* and the registry."""

from __future__ import annotations

import json
from typing import Any

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
        columns = {r[0] for r in con.execute("describe ml.customer_scores").fetchall()}
        standing = [c for c in STANDING if c in columns]  # older runs did not record these
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
        raise ClarionError(
            f"customer {contact_id} was not scored in any run: is the id right, and had they signed up "
            "before the scoring day? (`clarion status` shows the last runs)"
        )
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
    out["expected_value"] = out["expected_value_eur"] * rates(settings).get(out["currency"], 1.0)
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
