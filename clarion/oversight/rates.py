"""Override rates: how often people change or refuse what Clarion generated or decided on its own.

Read from ``content.drafts`` and ``content.decisions`` (drafts of content runs that finished
drafting; decisions by people are those not given ``via = 'policy'``):

* **drafts**: a draft is *reviewed* once a person decided anything on it (approve, reject, edit);
  it is *overridden* when a person edited or rejected it. The override rate is overridden /
  reviewed, per campaign, per brief version (the brief's sha256 the draft was written from), per
  content model (the language model and its weights), per scoring model version (the model whose
  segments the draft was written for), and per content run (the trend, oldest first).
* **automated decisions**: a draft approved by the low-tier policy is overridden when a person
  later rejected or edited it. Next-best-action decisions have no way for a person to reject or
  change one yet (only `clarion nba approve` of a high-risk campaign, which confirms): they are
  reported as not measurable rather than as never overridden.

Counts only: no draft copy, no customer, no free text (a rejection's reason stays in the table).
"""

from __future__ import annotations

from typing import Any

import duckdb

from clarion.config import Settings
from clarion.oversight.tiers import POLICY
from clarion.runs import CONTENT_UNFINISHED
from clarion.warehouse import Warehouse, relation_exists

NBA_NOTE = (
    "next-best-action decisions cannot be rejected or changed by a person yet (only a high-risk "
    "campaign's audience approved): not measurable"
)
GROUPS = {  # output key -> the per-draft fields it groups by
    "by_campaign": ("campaign",),
    "by_brief": ("campaign", "brief_sha256"),
    "by_content_model": ("content_model", "weights_sha256"),
    "by_scoring_model": ("model_version",),
    "trend": ("run_id",),
}


def _drafts(con: duckdb.DuckDBPyConnection, campaign: str | None) -> list[dict[str, Any]]:
    """One row per draft with what people did to it (booleans) and its versions."""
    versions = (
        "select run_id, any_value(model_version) model_version from ml.segments group by run_id"
        if relation_exists(con, "ml", "segments")
        else "select null::varchar run_id, null::varchar model_version where false"
    )
    rows = con.execute(
        f"""
        with x as (
            select draft_id, decision, decided_at, coalesce(via, '') = '{POLICY}' as by_policy
            from content.decisions
        ),
        per as (
            select draft_id,
                   count(*) filter (where not by_policy) as human,
                   count(*) filter (where not by_policy and decision = 'edit') > 0 as edited,
                   count(*) filter (where not by_policy and decision = 'reject') > 0 as rejected,
                   min(decided_at) filter (where by_policy and decision = 'approve') as policy_at
            from x group by draft_id
        ),
        reversed as (
            select distinct x.draft_id from x join per using (draft_id)
            where not x.by_policy and x.decision in ('edit', 'reject') and x.decided_at > per.policy_at
        )
        select d.draft_id, d.run_id, d.campaign,
               coalesce(json_extract_string(d.provenance, '$.brief.sha256'), '?') as brief_sha256,
               coalesce(json_extract_string(d.provenance, '$.model.name'), '?') as content_model,
               coalesce(json_extract_string(d.provenance, '$.model.weights_sha256'), '?') as weights_sha256,
               coalesce(v.model_version, '?') as model_version,
               coalesce(per.human, 0) > 0 as reviewed,
               coalesce(per.edited, false) as edited,
               coalesce(per.rejected, false) as rejected,
               per.policy_at is not null as by_policy,
               r.draft_id is not null as policy_overridden,
               min(d.created_at) over (partition by d.run_id) as run_started
        from content.drafts d
        left join per using (draft_id)
        left join reversed r using (draft_id)
        left join ({versions}) v on v.run_id = d.scoring_run_id
        where d.run_id not in ({CONTENT_UNFINISHED}) and (? is null or d.campaign = ?)
        order by run_started, d.run_id, d.draft_id
        """,
        [campaign, campaign],
    )
    names = [c[0] for c in rows.description]
    return [dict(zip(names, r, strict=True)) for r in rows.fetchall()]


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    reviewed = [r for r in rows if r["reviewed"]]
    overridden = sum(r["edited"] or r["rejected"] for r in reviewed)
    policy = [r for r in rows if r["by_policy"]]
    reversed_ = sum(r["policy_overridden"] for r in policy)
    return {
        "drafts": len(rows),
        "reviewed": len(reviewed),
        "edited": sum(r["edited"] for r in reviewed),
        "rejected": sum(r["rejected"] for r in reviewed),
        "overridden": overridden,
        "override_rate": _rate(overridden, len(reviewed)),
        "policy_approved": len(policy),
        "policy_overridden": reversed_,
        "policy_override_rate": _rate(reversed_, len(policy)),
    }


def _grouped(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:  # rows come oldest run first: the groups keep that order
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    order = sorted(groups) if keys[0] == "campaign" else list(groups)  # campaigns by name, versions by age
    for key in order:
        members = groups[key]
        head = dict(zip(keys, key, strict=True))
        if keys == ("run_id",):
            head["started"] = str(members[0]["run_started"])
        out.append({**head, **_figures(members)})
    return out


def _direction(trend: list[dict[str, Any]]) -> str | None:
    """The latest reviewed run's override rate against the one before: up, down or flat."""
    rated = [t["override_rate"] for t in trend if t["override_rate"] is not None]
    if len(rated) < 2:
        return None
    return "up" if rated[-1] > rated[-2] else "down" if rated[-1] < rated[-2] else "flat"


def summary(con: duckdb.DuckDBPyConnection, campaign: str | None = None) -> dict[str, Any]:
    """Override rates of drafts and of automated decisions, grouped and over runs."""
    if not relation_exists(con, "content", "drafts") or not relation_exists(con, "content", "decisions"):
        rows: list[dict[str, Any]] = []
    else:
        rows = _drafts(con, campaign)
    out: dict[str, Any] = {"campaign": campaign, "totals": _figures(rows)}
    for name, keys in GROUPS.items():
        out[name] = _grouped(rows, keys)
    out["direction"] = _direction(out["trend"])
    totals = out["totals"]
    out["automated"] = {
        "policy_approvals": totals["policy_approved"],
        "overridden": totals["policy_overridden"],
        "override_rate": totals["policy_override_rate"],
        "nba": NBA_NOTE,
    }
    return out


def read_summary(settings: Settings, campaign: str | None = None) -> dict[str, Any]:
    """`summary` on a read-only snapshot of the warehouse (the CLI's entry point)."""
    with Warehouse.from_settings(settings).read() as con:
        return summary(con, campaign)


def card_figures(settings: Settings) -> dict[str, Any]:
    """What a new model card says about human oversight so far: totals, per scoring model version,
    and the last runs' trend (the new version's own figures come once its segments are drafted for)."""
    with Warehouse.from_settings(settings).connect("oversight figures") as con:
        if not relation_exists(con, "content", "drafts"):
            return {}
        s = summary(con)
    return {
        "totals": s["totals"],
        "by_scoring_model": s["by_scoring_model"],
        "trend": s["trend"][-5:],
        "direction": s["direction"],
        "automated": s["automated"],
    }
