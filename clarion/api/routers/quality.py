"""The latest data-quality gate results: per suite counts, every check that did not pass, and its
failing rows by pseudonym (never a contact id; a personal column's value withheld)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from clarion.api.auth import require
from clarion.api.customer_index import pseudonymizer
from clarion.api.routers.common import ERRORS, plain, reader
from clarion.privacy.scrub import PII_FIELDS
from clarion.report.activity import quality as gate_summary
from clarion.warehouse import relation_exists

router = APIRouter(
    prefix="/api/v1/quality", tags=["quality"], dependencies=[Depends(require("read:aggregates"))]
)

WITHHELD = "[withheld]"


class Suite(BaseModel):
    suite: str
    version: int | None = None
    passed: int
    warned: int
    failed: int
    skipped: int


class QualityProblem(BaseModel):
    check_id: str
    suite: str
    table: str | None = None
    column: str | None = None
    severity: str
    status: str
    observed: dict[str, Any]
    failing_rows: list[Any] = Field(description="a sample; customers by pseudonym, personal values withheld")


class Quality(BaseModel):
    run_id: str | None = Field(description="the latest run the gates checked; null before the first")
    verdict: str = Field(description="passed, passed with warnings, failed, or no quality results")
    suites: list[Suite]
    problems: list[QualityProblem]


def shown(sample: list[Any], column: str | None, name: Any) -> list[Any]:
    """Failing rows as the API may show them: ``contact_id`` -> ``customer`` (pseudonym)."""
    out = []
    for row in sample:
        if isinstance(row, dict):
            row = {
                ("customer" if k == "contact_id" else k): (
                    name(v)
                    if k == "contact_id" and v is not None
                    else WITHHELD
                    if (k in PII_FIELDS or column in PII_FIELDS) and v is not None
                    else v
                )
                for k, v in row.items()
            }
        elif column in PII_FIELDS and row is not None:
            row = WITHHELD
        out.append(row)
    return out


@router.get("", response_model=Quality, summary="The latest quality gate results", responses=ERRORS)
def quality(request: Request) -> dict[str, Any]:
    with reader(request).pinned() as (settings, cur):
        if not relation_exists(cur, "audit", "quality_results"):
            return {"run_id": None, "verdict": "no quality results", "suites": [], "problems": []}
        latest = cur.execute(
            "select run_id from audit.quality_results group by run_id order by max(evaluated_at) desc limit 1"
        ).fetchone()
        if latest is None:
            return {"run_id": None, "verdict": "no quality results", "suites": [], "problems": []}
        summary = gate_summary(cur, {"run_id": latest[0], "scored_at": "9999-12-31T00:00:00Z"})
        samples = {
            (c, s): json.loads(x) if x else []
            for c, s, x in cur.execute(
                "select check_id, suite, sample from audit.quality_results where run_id = ? "
                "and status not in ('passed', 'skipped')",
                [latest[0]],
            ).fetchall()
        }
        names: Any = None

        def name(contact_id: Any) -> str:
            nonlocal names
            names = names or pseudonymizer(request.app.state.settings, settings, cur)
            return names(contact_id)

        problems = [
            {**p, "failing_rows": shown(samples.get((p["check_id"], p["suite"])) or [], p["column"], name)}
            for p in summary["problems"]
        ]
    return plain(
        {
            "run_id": summary["run_id"],
            "verdict": summary["verdict"],
            "suites": summary["suites"],
            "problems": problems,
        }
    )
