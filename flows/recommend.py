"""Recommend stage: the products to put in front of each customer (skeleton; built in issue 19)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from clarion.config import Settings


@flow(name="recommend", log_prints=False)
def recommend(settings: Settings, run_id: str) -> dict[str, Any]:
    return {"note": "not built yet"}
