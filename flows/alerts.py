"""The alert flow: what the late-run automation runs to send its e-mail (clarion.ops.alerts_prefect).

The Prefect server calls the webhooks of a late run itself; e-mail needs the report's SMTP code,
which runs here, in a Clarion process (`clarion serve` or a worker serves the ``alert`` deployment).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from clarion.config import load_settings
from clarion.ops import alerts
from clarion.ops.alerts_send import deliver
from clarion.privacy import scrub


@flow(name="clarion-alert", log_prints=False)
def alert(
    event: str = "late_run",
    deployment: str | None = None,
    flow_run_id: str | None = None,
    config_path: str | None = None,
) -> dict[str, Any]:
    """Send a late-run alert by e-mail (the webhooks were called by the Prefect server)."""
    scrub.install()
    settings = load_settings(config_path)
    a = settings.alerts
    if event != "late_run":
        raise ValueError(f"event {event!r}: the alert flow sends late_run alerts only")
    late = alerts.late_run(deployment or a.late_deployment, a.late_after_minutes, flow_run_id)
    by_mail = settings.model_copy(update={"alerts": a.model_copy(update={"webhooks": []})})
    records = deliver(by_mail, [late])
    get_run_logger().info(
        "late_run alert: %s",
        ", ".join(f"{r['channel']} {r['status']}" for r in records) or "nothing configured",
    )
    return {"event": event, "deliveries": records}
