"""Results stage: what each campaign did against its control group, and which variant leads.

The logic lives in ``clarion.results`` (counting) and ``models.experiments`` (statistics); this flow
makes it a task and publishes one row per campaign and arm as a Prefect table artifact.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from clarion import results as campaign_results
from clarion.config import Settings


@task(name="measure-campaigns", cache_policy=NO_CACHE)
def measure(settings: Settings, run_id: str) -> dict[str, Any]:
    return campaign_results.run(settings, run_id)


def artifact_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for c in summary["campaigns"]:
        for a in c["arms"]:
            u = a.get("uplift") or {}
            rows.append(
                {
                    "campaign": c["campaign"],
                    "variant": a["variant"],
                    "customers": a["customers"],
                    "conversion rate": round(a["conversion_rate"], 4),
                    "uplift (pts)": round(100 * u["absolute"], 2) if u else None,
                    "uplift interval (pts)": f"[{100 * u['low']:.2f}, {100 * u['high']:.2f}]" if u else None,
                    "incremental revenue EUR": (
                        round(a["incremental_revenue_eur"], 2)
                        if a.get("incremental_revenue_eur") is not None
                        else None
                    ),
                    "verdict": a["verdict"],
                }
            )
    return rows


@flow(name="results", log_prints=False)
def results(settings: Settings, run_id: str) -> dict[str, Any]:
    logger = get_run_logger()
    summary = measure(settings, run_id)
    campaigns = summary["campaigns"]
    winners = sum(1 for c in campaigns for a in c["arms"] if a["verdict"] == "winner")
    logger.info("measured %d campaign(s); %d variant experiment(s) decided", len(campaigns), winners)
    measured = [c for c in campaigns if any(a["arm"] == "control" for a in c["arms"])]
    if measured:
        create_table_artifact(
            key="campaign-results",
            table=artifact_rows({**summary, "campaigns": measured}),
            description=f"Campaign results at {int(100 * (1 - summary['alpha']))}% intervals, run {run_id}",
        )
    return stage_summary(summary)


def stage_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """What `clarion run` shows and audit.runs keeps of the stage: counts, the latest measured
    campaign, and the uplift model's status (`clarion results` has every figure)."""
    campaigns = summary["campaigns"]
    measured = [c for c in campaigns if any(a["arm"] == "control" for a in c["arms"])]
    verdicts = [a["verdict"] for c in campaigns for a in c["arms"]]
    latest = None
    if measured:
        c = max(measured, key=lambda c: (c["first_exposure"], c["campaign"]))
        pooled = next(a for a in reversed(c["arms"]) if a["arm"] == "treatment")
        latest = {
            "campaign": c["campaign"],
            "uplift": pooled["uplift"],
            "leader": (c.get("experiment") or {}).get("leader"),
            "prob_best": (c.get("experiment") or {}).get("prob_best"),
        }
    model = summary.get("uplift_model") or {}
    return {
        "results_run_id": summary["results_run_id"],
        "campaigns": len(campaigns),
        "with_control": len(measured),
        "experiments": sum(1 for c in campaigns if c.get("experiment")),
        "decided": verdicts.count("winner"),
        "retired": verdicts.count("retired"),
        "latest": latest,
        "uplift_model": {
            "status": model.get("status"),
            "reason": model.get("reason"),
            "version": model.get("model_version"),
            "reused_from": (model.get("reused") or {}).get("version"),
        },
    }
