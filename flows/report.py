"""Report stage: the marketer report of the run (HTML + PDF), e-mailed when recipients are configured.

The logic lives in ``clarion.report``; this flow makes it a task, publishes the headline table as a
markdown artifact with the report's location, and keeps a failed delivery from failing the run:
the report stays on disk, and the stage's summary says what went wrong.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from clarion.config import Settings
from clarion.report import make_report, report_dir
from clarion.report.mail import MailError


@task(name="build-report", cache_policy=NO_CACHE)
def build(settings: Settings, run_id: str | None, send: bool) -> dict[str, Any]:
    try:
        return make_report(settings, run_id, send=send)
    except MailError as exc:  # the files are written before sending
        written = make_report(settings, run_id, send=False)
        return {**written, "sent": False, "note": f"e-mail failed: {exc}"}


@flow(name="report", log_prints=False)
def report(settings: Settings, run_id: str | None = None, send: bool = True) -> dict[str, Any]:
    logger = get_run_logger()
    result = build(settings, run_id, send)
    logger.info("report %s: %s", result["paths"]["html"], "sent" if result["sent"] else result["note"])
    folder = report_dir(settings, result["run_id"])
    create_markdown_artifact(
        key="segment-report",
        markdown="\n".join(
            [
                f"# Segment report, run {result['run_id']}",
                "",
                "| as of | model | customers | sent |",
                "|---|---|---:|---|",
                f"| {result['as_of']} | {result['model_version']} | {result['customers']:,} "
                f"| {'yes' if result['sent'] else 'no: ' + str(result['note'])} |",
                "",
                f"HTML: [{result['paths']['html']}](file://{result['paths']['html']}), "
                f"PDF: [{result['paths']['pdf']}](file://{result['paths']['pdf']}) (folder {folder})",
            ]
        ),
        description=f"Marketer report of run {result['run_id']}",
    )
    return result
