"""Campaign triggers: detection after scoring, one Prefect event per campaign fired, and the flow
those events start.

`campaign_triggers` runs inside the segment stage, right after the run is scored: it stores who
fires each brief's trigger (``clarion.triggers.detect``) and emits ``clarion.trigger.fired`` for each
campaign with customers (counts and the rule only; the customers stay in ``ml.trigger_hits``).
`triggered_campaign` is the flow behind the ``triggered-campaign`` deployment of prefect.yaml, whose
deployment trigger matches that event and passes ``{{ event.payload.trigger_id }}``: it exports the
campaign's approved copy to those customers only, or records that it waits for approval.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from clarion import triggers
from clarion.config import Settings, load_settings
from clarion.runtime import flow_run_logging


@task(name="detect-triggers", cache_policy=NO_CACHE)
def detect(settings: Settings, scoring_run: str) -> triggers.Detection:
    return triggers.detect(settings, scoring_run)


@flow(name="campaign-triggers", log_prints=False)
def campaign_triggers(settings: Settings, scoring_run: str) -> dict[str, Any]:
    """Who fires each brief's trigger in this scoring run; one event per campaign that fired."""
    logger = get_run_logger()
    found = detect(settings, scoring_run)
    if found.note:
        logger.info("triggers: %s", found.note)
    for fired in found.fired:
        if emit_event(**fired.event()) is None:  # Prefect logs why; the customers are stored all the same
            logger.warning(
                "the event for trigger %s could not be sent, so nothing starts its campaign: run it by hand "
                "with prefect deployment run 'triggered-campaign/triggered-campaign' -p trigger_id=%s",
                fired.trigger_id,
                fired.trigger_id,
            )
            continue
        logger.info(
            "trigger %s fired for %d customers of %s (%s): event %s sent",
            fired.trigger_id,
            fired.customers,
            fired.campaign,
            fired.rule,
            triggers.EVENT,
        )
    return found.summary()


@flow(name="triggered-campaign", log_prints=False)
def triggered_campaign(
    trigger_id: str, config_path: str | None = None, wait_seconds: float = 3600
) -> dict[str, Any]:
    """Run a campaign for the customers its trigger found, and only them (the deployment trigger in
    prefect.yaml starts it with the event's trigger id). Waits up to ``wait_seconds`` for the
    pipeline run that emitted the event to release the warehouse."""
    logger = get_run_logger()
    settings = load_settings(config_path)
    flow_run_logging(settings)  # under a worker: clarion.* lines at their level, in the run's logs
    result = triggers.run(settings, trigger_id, wait_seconds)
    logger.info("trigger %s (%s): %s", trigger_id, result["campaign"], result["status"])
    create_markdown_artifact(
        key="triggered-campaign",
        markdown=_markdown(result),
        description=f"Campaign {result['campaign']} for trigger {trigger_id}",
    )
    return result


def _markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Trigger `{result['trigger_id']}`: {result['campaign']}",
        "",
        f"{result['customers']} customers fired the trigger in scoring run `{result['scoring_run_id']}`; "
        f"status: **{result['status']}**.",
        "",
    ]
    if result["exports"]:
        lines += ["| channel | recipients | excluded | without approved copy |", "|---|---|---|---|"]
        for e in result["exports"]:
            excluded = ", ".join(f"{k}: {v}" for k, v in e["excluded"].items()) or "-"
            lines.append(
                f"| {e['channel']} | {e['recipients']} | {excluded} | {e['without_approved_copy']} |"
            )
    if "next" in result:
        lines += ["", result["next"]]
    return "\n".join(lines)
