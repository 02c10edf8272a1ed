"""Next best action re-derived, customer by customer, from the warehouse's own tables and the briefs'
YAML, without Clarion's code: the tests compare ``ml.next_best_action`` with this.

Written plainly (a loop per customer and pair) from the rules in docs/nba.md and i18.md, so that a
mistake in the vectorised engine does not repeat itself here.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import yaml

CHECK_ORDER = (  # the first that holds is the reason
    "erased",
    "marketing objection",
    "consent",
    "address",
    "global control",
    "holdout",
    "frequency cap",
    "cool-down",
)


def erased_ids(con: duckdb.DuckDBPyConnection, contact_ids: list[int]) -> set[int]:
    """The contacts on the suppression list, as docs/privacy.md defines it: sha256(salt ||
    "contact_id:" || id) is among privacy.suppressions' hashes (salt: privacy.keys "suppression")."""
    tables = {
        f"{r[0]}.{r[1]}"
        for r in con.execute("select schema_name, table_name from duckdb_tables()").fetchall()
    }
    if "privacy.suppressions" not in tables:
        return set()
    salt = bytes(con.execute("select key from privacy.keys where name = 'suppression'").fetchone()[0])
    hashes = {
        r[0]
        for r in con.execute("select hash from privacy.suppressions where kind = 'contact_id'").fetchall()
    }
    return {c for c in contact_ids if hashlib.sha256(salt + f"contact_id:{c}".encode()).hexdigest() in hashes}


def position(seed: str, key: str, contact_id: int) -> float:
    return int(hashlib.sha256(f"{seed}:{key}:{contact_id}".encode()).hexdigest()[:16], 16) / 2**64


def offer_per_buyer(discount: str, order_value: float) -> float:
    text = discount.strip()
    if text.endswith("%"):
        return float(text[:-1]) / 100 * order_value
    return float(text.replace("EUR", "").strip())


def load_briefs(folder: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(folder.glob("*.yaml")):
        b = yaml.safe_load(path.read_text())
        if b.get("active", True):
            out.append(b)
    return sorted(out, key=lambda b: b["name"])


def rederive(warehouse: Path, briefs_folder: Path, cfg: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """contact_id -> the decision the rules give: action, channel, value, runner-up, status,
    ineligible (campaign -> reasons), reason. ``cfg``: the nba and experiments settings used."""
    briefs = load_briefs(briefs_folder)
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        run_id, as_of = con.execute(
            "select run_id, any_value(as_of) from ml.customer_scores group by run_id "
            "order by max(scored_at) desc limit 1"
        ).fetchone()
        scores = {
            r[0]: {"p": r[1], "segment": r[2]}
            for r in con.execute(
                "select contact_id, purchase_probability, segment from ml.customer_scores where run_id = ?",
                [run_id],
            ).fetchall()
        }
        members = {}
        for b in briefs:
            cond = b["audience"].get("rule") or "segment in ({})".format(
                ", ".join(f"'{s}'" for s in b["audience"]["segments"])
            )
            members[b["name"]] = {
                r[0]
                for r in con.execute(
                    f"select contact_id from ml.customer_scores where run_id = ? and ({cond})", [run_id]
                ).fetchall()
            }
        consent = {
            r[0]: r[1:]
            for r in con.execute(
                "select contact_id, email_consent, sms_consent, marketing_objection from marts.dim_customers"
            ).fetchall()
        }
        address = {}
        for cid, email, phone in con.execute("select contact_id, email, phone from raw.contacts").fetchall():
            e, p = address.get(cid, (False, False))
            address[cid] = (e or bool((email or "").strip()), p or bool((phone or "").strip()))
        tables = {
            f"{r[0]}.{r[1]}"
            for r in con.execute("select schema_name, table_name from duckdb_tables()").fetchall()
        }
        erased = erased_ids(
            con, [r[0] for r in con.execute("select contact_id from raw.contacts").fetchall()]
        )
        now = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC)
        sends: dict[int, list[datetime]] = {}
        for cid, at in con.execute(
            "select contact_id, occurred_at from marts.fct_email_events where event_type = 'sent'"
        ).fetchall():
            if at < now:
                sends.setdefault(cid, []).append(at)
        aov = dict(
            con.execute(
                "select contact_id, avg_order_value_eur from marts.customer_features where as_of = ? "
                "and avg_order_value_eur > 0",
                [as_of],
            ).fetchall()
        )
        approved = (
            {r[0] for r in con.execute("select distinct campaign from ml.nba_approvals").fetchall()}
            if "ml.nba_approvals" in tables
            else set()
        )
    finally:
        con.close()
    run_aov = [v for c, v in aov.items() if c in scores]  # the run's customers (objectors not scored)
    shop = sum(run_aov) / len(run_aov)
    seed, holdout_share, gc_share = cfg["seed"], cfg["holdout_share"], cfg["global_control_share"]

    def reason(cid: int, campaign: str, channel: str) -> str | None:
        email_ok, sms_ok, objection = consent.get(cid, (False, False, False))
        has_email, has_phone = address.get(cid, (False, False))
        mine = sends.get(cid, [])
        checks = {
            "erased": (cid in erased, "erased"),
            "marketing objection": (bool(objection), "marketing objection"),
            "consent": (
                (True, "no push permission recorded in the CRM")
                if channel == "push"
                else (not (email_ok if channel == "email" else sms_ok), f"no {channel} consent")
            ),
            "address": (
                (False, "")
                if channel == "push"
                else (
                    not (has_email if channel == "email" else has_phone),
                    "no email on record" if channel == "email" else "no phone on record",
                )
            ),
            "global control": (position(seed, "global", cid) < gc_share, "global control"),
            "holdout": (position(seed, campaign, cid) < holdout_share, "holdout"),
            "frequency cap": (
                sum(at >= now - timedelta(days=cfg["cap_days"]) for at in mine) >= cfg["frequency_cap"],
                "frequency cap",
            ),
            "cool-down": (any(at >= now - timedelta(days=cfg["cooldown_days"]) for at in mine), "cool-down"),
        }
        for name in CHECK_ORDER:
            holds, why = checks[name]
            if holds:
                return why
        return None

    pairs = []  # (cid, campaign, channel, value, eligible, reason)
    for cid, s in scores.items():
        order_value = aov.get(cid, shop)
        for b in briefs:
            if cid not in members[b["name"]]:
                continue
            p = s["p"]
            uplift = min(max(cfg["prior_relative_uplift"] * p, -p), 1 - p)
            offer = (p + uplift) * offer_per_buyer(str(b["offer"]["discount"]), order_value)
            value = uplift * order_value - offer - cfg["contact_cost"]
            for ch in sorted(b.get("channels", ["email"])):
                why = reason(cid, b["name"], ch)
                pairs.append((cid, b["name"], ch, value, why is None, why))

    # greedy: best value first (ties: campaign, channel, customer); a customer takes the first that fits
    budgets = {b["name"]: b.get("budget") for b in briefs}
    used = dict.fromkeys(budgets, 0)
    chosen: dict[int, tuple] = {}
    refused: set[tuple[int, str]] = set()
    for pair in sorted((x for x in pairs if x[4] and x[3] > 0), key=lambda x: (-x[3], x[1], x[2], x[0])):
        cid, campaign = pair[0], pair[1]
        if cid in chosen:
            continue
        if budgets[campaign] is not None and used[campaign] >= budgets[campaign]:
            refused.add((cid, campaign))
            continue
        chosen[cid] = pair
        used[campaign] += 1

    out = {}
    tiers = {b["name"]: b.get("risk_tier", "standard") for b in briefs}
    for cid in scores:
        mine = [x for x in pairs if x[0] == cid]
        pick = chosen.get(cid)
        rest = sorted(
            (x for x in mine if x[4] and (cid, x[1]) not in refused and (pick is None or x[1] != pick[1])),
            key=lambda x: (-x[3], x[1], x[2]),
        )
        ineligible = {}
        for campaign in sorted({x[1] for x in mine}):
            of = [x for x in mine if x[1] == campaign]
            if (cid, campaign) in refused:
                ineligible[campaign] = "budget reached"
            elif not any(x[4] for x in of):
                ineligible[campaign] = "; ".join(dict.fromkeys(x[5] for x in of))
        status = "no action"
        if pick is not None:
            status = "ready" if tiers[pick[1]] != "high" or pick[1] in approved else "needs approval"
        out[cid] = {
            "action": pick[1] if pick else "none",
            "channel": pick[2] if pick else None,
            "value_eur": pick[3] if pick else 0.0,
            "runner_up": rest[0][1] if rest else None,
            "runner_up_channel": rest[0][2] if rest else None,
            "runner_up_value_eur": rest[0][3] if rest else None,
            "status": status,
            "ineligible": ineligible,
            "expected_order_value_eur": aov.get(cid, shop),
            "in_audience": bool(mine),
            "eligible_any": any(x[4] for x in mine),
            "refused_any": any((cid, x[1]) in refused for x in mine),
        }
    return out
