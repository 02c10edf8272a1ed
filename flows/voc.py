"""Voice-of-the-customer stage: support tickets into topics and sentiment (skeleton; built in issue 19)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from clarion.config import Settings


@flow(name="voc", log_prints=False)
def voc(settings: Settings, run_id: str) -> dict[str, Any]:
    return {"note": "not built yet"}
