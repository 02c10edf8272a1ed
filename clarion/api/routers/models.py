"""The model registry: versions with their validation, and each version's model card."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field

from clarion.api.auth import require
from clarion.api.problems import Problem
from clarion.api.routers.common import ERRORS, ERRORS_404, plain, reader
from clarion.segment.views import models_listing
from models.registry import Registry

router = APIRouter(
    prefix="/api/v1/models", tags=["models"], dependencies=[Depends(require("read:aggregates"))]
)


class ModelVersion(BaseModel):
    version: str
    promoted: bool
    registered_at: str
    scoring_as_of: str
    horizon_days: int
    roc_auc: float | None = None
    baseline_roc_auc: float | None = None
    bgnbd_roc_auc: float | None = None
    brier: float | None = None
    ece: float | None = None
    calibration: str | None = None


class Models(BaseModel):
    promoted: str | None = Field(description="the version that scores customers")
    versions: list[ModelVersion]
    events: list[dict[str, Any]] = Field(description="promotions and rollbacks")


class ModelCard(BaseModel):
    version: str
    promoted: bool
    card: dict[str, Any] = Field(description="intended use, data, metrics, calibration, drivers, fairness")


@router.get("", response_model=Models, summary="Every model version", responses=ERRORS)
def models(request: Request) -> dict[str, Any]:
    listing = models_listing(reader(request).settings())
    return plain({k: v for k, v in listing.items() if k != "registry"})


@router.get(
    "/{version}",
    response_model=ModelCard,
    summary="The model card of one version",
    responses=ERRORS_404,
)
def model(request: Request, version: Annotated[str, Path(max_length=64)]) -> dict[str, Any]:
    reg = Registry(reader(request).settings().var_dir / "registry")
    chosen = next((v for v in reg.versions() if v.name == version), None)  # never a path built from input
    if chosen is None or not (chosen.path / "card.json").is_file():
        known = ", ".join(v.name for v in reg.versions()) or "none yet"
        raise Problem(404, f"no model version {version!r}; versions: {known}")
    return {
        "version": chosen.name,
        "promoted": chosen.name == reg.index()["promoted"],
        "card": plain(json.loads((chosen.path / "card.json").read_text())),
    }
