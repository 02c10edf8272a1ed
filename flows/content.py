"""Content stage: drafts per campaign x segment x channel x variant, and the approval that follows.

`content` drafts (logic in ``clarion.content.runner`` and ``models.content``) and publishes the
drafts with their check results as a markdown artifact. `content_approval` is a flow of its own
(deployment ``content-approval`` in prefect.yaml): it lists the pending drafts, pauses, and takes
the decision as run input from the Prefect UI (approve/reject, by whom, why), recorded exactly as
`clarion approve` / `clarion reject` record it. It holds no warehouse lock while it waits.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, pause_flow_run, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.input import RunInput
from pydantic import Field

from clarion.config import Settings, load_settings
from clarion.content import runner
from clarion.runtime import flow_run_logging


@task(name="draft-campaigns", cache_policy=NO_CACHE)
def draft(settings: Settings, run_id: str, campaigns: tuple[str, ...]) -> dict[str, Any]:
    return runner.generate(settings, run_id, campaigns)


@flow(name="content", log_prints=False)
def content(settings: Settings, run_id: str, campaigns: list[str] | None = None) -> dict[str, Any]:
    logger = get_run_logger()
    summary = draft(settings, run_id, tuple(campaigns or ()))
    for c in summary["campaigns"]:
        logger.info(
            "%s: %d drafts (%d pending approval, %d blocked, %d on fallback copy)",
            c["campaign"],
            c["drafts"],
            c.get("pending", 0),
            c.get("blocked", 0),
            c.get("fallback_drafts", 0),
        )
    drafts = runner.list_drafts(settings, run_id=run_id)
    create_markdown_artifact(
        key="drafts", markdown=drafts_markdown(drafts), description=f"Drafts of run {run_id}"
    )
    return summary


def drafts_markdown(drafts: list[dict[str, Any]]) -> str:
    lines = [
        "# Drafts",
        "",
        "| draft | campaign | segment | channel | variant | status | source | failed checks |",
    ]
    lines.append("|---|---|---|---|---|---|---|---|")
    for d in drafts:
        failed = ", ".join(f"{c['name']} ({c['severity']})" for c in d["checks"] if not c["passed"]) or "-"
        source = "fallback copy" if d["fallback"] else "model"
        lines.append(
            f"| `{d['draft_id']}` | {d['campaign']} | {d['segment']} | {d['channel']} | {d['variant']} "
            f"| {d['status']} | {source} | {failed} |"
        )
    withheld = [d for d in drafts if not shows_copy(d)]
    for d in drafts:
        if d in withheld:
            continue
        lines += [
            "",
            f"## `{d['draft_id']}` {d['campaign']} / {d['segment']} / {d['channel']} {d['variant']}",
            "",
        ]
        for part, text in d["content"].items():
            lines += [f"**{part}**", "", "> " + text.replace("\n", "\n> "), ""]
    if withheld:
        lines += [
            "",
            f"The copy of {len(withheld)} blocked draft(s) is not shown here: a blocked draft may quote "
            "personal data (the pii check) and is never offered for approval. `clarion drafts show` shows it "
            "to whoever may read the warehouse.",
        ]
    return "\n".join(lines)


def shows_copy(draft: dict[str, Any]) -> bool:
    """Whether an artifact may quote a draft's text: not when it is blocked. Why all blocked drafts
    and not only those the pii check failed: a check can miss what another caught, and nobody
    reviews blocked copy in Prefect anyway (Prefect's database is outside the warehouse)."""
    return draft["status"] != "blocked" and all(c["passed"] for c in draft["checks"] if c["name"] == "pii")


class ApprovalInput(RunInput):
    """The decision a person gives a paused approval run (a form in the Prefect UI)."""

    by: str = Field(description="who decides (an approver named in the campaign's brief)")
    approve: list[str] = Field(default_factory=list, description="draft ids to approve")
    reject: list[str] = Field(default_factory=list, description="draft ids to reject")
    reason: str = Field("", description="a note on the approval; required to reject")


@flow(name="content-approval", log_prints=False)
def content_approval(
    config_path: str | None = None,
    campaign: str | None = None,
    timeout_seconds: int = 86_400,
    poll_seconds: int = 10,
) -> dict[str, Any]:
    """Wait for a person's decision on the pending drafts; record it as `clarion approve/reject` do."""
    logger = get_run_logger()
    settings = load_settings(config_path)
    flow_run_logging(settings)  # under a worker: clarion.* lines at their level, in the run's logs
    pending = runner.list_drafts(settings, status="pending", campaign=campaign)
    if not pending:
        logger.info("no drafts are waiting for approval")
        return {"pending": 0, "decisions": []}
    create_markdown_artifact(
        key="drafts-awaiting-approval",
        markdown=drafts_markdown(pending),
        description="Approve or reject these drafts: resume this run with the draft ids",
    )
    logger.info("%d drafts wait for approval; resume this run with a decision", len(pending))
    decision = pause_flow_run(
        wait_for_input=ApprovalInput, timeout=timeout_seconds, poll_interval=poll_seconds
    )
    out = []
    for did in decision.approve:
        out.append(
            runner.decide(settings, did, "approve", decision.by, decision.reason or None, via="prefect")
        )
    for did in decision.reject:
        out.append(runner.decide(settings, did, "reject", decision.by, decision.reason, via="prefect"))
    return {"pending": len(pending), "decisions": out}
