"""One customer: latest score, segment, the stored reason sentences, next best action.

`GET /api/v1/customers/{pseudonym}` (read:customer) and `GET /api/v1/customers/by-contact-id/{id}`
(read:contact_id) answer the same body, read from the read snapshot with the functions
`clarion explain` uses (`latest_score`, `latest_decision`) on one cursor: a point lookup, no scan.
Only a caller holding read:contact_id gets the `contact_id` field; for anyone else it is absent.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field

from clarion.api.auth import Principal, require
from clarion.api.customer_index import CustomerIndex
from clarion.api.problems import Problem
from clarion.api.reads import Reader
from clarion.api.routers.common import ERRORS_404
from clarion.currency import rates
from clarion.nba.views import latest_decision
from clarion.recommend.views import latest_for, latest_run
from clarion.segment.views import latest_score, score_columns
from clarion.subject.objection import objectors_sql
from clarion.warehouse import relation_exists

router = APIRouter(prefix="/api/v1/customers", tags=["customers"])


class Reason(BaseModel):
    feature: str
    family: str | None = None
    direction: str = Field(description="raises_risk or lowers_risk")
    effect: float = Field(description="SHAP value of the feature family, log-odds")
    value: float | None = None
    text: str = Field(description="the stored sentence, as `clarion explain` prints it")


class Score(BaseModel):
    run_id: str
    as_of: str
    horizon_days: int
    model_version: str
    purchase_probability: float
    churn_risk: float
    expected_value_eur: float
    expected_value: float = Field(description="expected spend in the shop's currency")
    currency: str
    segment: str
    scored_at: str
    vs_average: str | None = None
    average_probability: float | None = None
    margin: float | None = None
    base_margin: float | None = None


class NextBestAction(BaseModel):
    nba_run_id: str
    run_id: str | None = None
    as_of: str | None = None
    action: str
    channel: str | None = None
    status: str | None = None
    reason: str | None = None
    value_eur: float | None = None
    runner_up: str | None = None
    runner_up_channel: str | None = None
    runner_up_value_eur: float | None = None
    uplift: float | None = None
    uplift_source: str | None = None
    uplift_scope: str | None = None
    purchase_probability: float | None = None
    expected_order_value_eur: float | None = None
    order_value_source: str | None = None
    offer_discount: str | None = None
    offer_cost_eur: float | None = None
    contact_cost_eur: float | None = None
    ineligible: Any = None
    sends_in_window: int | None = None
    decided_at: str | None = None
    explanation: str = Field(description="the decision in words, from its stored figures")


class Customer(BaseModel):
    pseudonym: str
    contact_id: int | None = Field(None, description="only for roles holding read:contact_id")
    profiled: bool = Field(description="false: not scored (objected to profiling, or not scored yet)")
    not_profiled_reason: str | None = None
    score: Score | None = None
    segment: str | None = None
    reasons: list[Reason]
    next_best_action: NextBestAction | None = None
    recommendations: list[dict[str, Any]] = Field(
        default_factory=list,
        description="the products recommended to them in the newest settled recommend run, best first, "
        "each with its reason (a fact about their own purchases)",
    )
    recommendations_available: bool = Field(
        False, description="false: no recommend run has a list for them (stage not run, or off)"
    )


def _index(request: Request) -> CustomerIndex:
    state = request.app.state
    if not hasattr(state, "customer_index"):
        state.customer_index = CustomerIndex()
    return state.customer_index


def _rates(request: Request, settings: Any) -> dict[str, float]:
    state = request.app.state
    if not hasattr(state, "fx_rates"):
        state.fx_rates = rates(settings)  # the seed file of the dbt project: read once
    return state.fx_rates


def customer_body(request: Request, contact_id: int, principal: Principal, pseudo: str | None) -> dict:
    """The response for one contact id of the snapshot (404 when the snapshot does not know them)."""
    reader: Reader = request.app.state.reader
    with reader.pinned() as (settings, cur):
        has, standing = _catalog(request, settings, cur)
        score = None
        if has["customer_scores"]:
            score = latest_score(cur, contact_id, _rates(request, settings), standing)
        known = score is not None or (
            has["dim_customers"]
            and cur.execute(
                "select 1 from marts.dim_customers where contact_id = ? limit 1", [contact_id]
            ).fetchone()
        )
        if not known:
            raise Problem(404, _UNKNOWN)
        nba = latest_decision(cur, contact_id) if has["next_best_action"] and score is not None else None
        recs = latest_for(cur, contact_id, _recommend_run(request, settings, cur)) if score else None
        reason = None
        if score is None:
            objector = cur.execute(
                f"select 1 from ({objectors_sql(cur)}) where contact_id = ? limit 1", [contact_id]
            ).fetchone()
            reason = (
                "objected to profiling (Art. 21): not scored, segmented or targeted"
                if objector
                else "not scored in any run yet (signed up after the scoring day, or no run has scored)"
            )
        if pseudo is None:
            pseudo = _index(request).pseudonymizer(request.app.state.settings, settings, cur)(contact_id)
    body: dict[str, Any] = {
        "pseudonym": pseudo,
        "profiled": score is not None,
        "not_profiled_reason": reason,
        "score": {k: v for k, v in score.items() if k not in ("contact_id", "reasons")} if score else None,
        "segment": score["segment"] if score else None,
        "reasons": score["reasons"] if score else [],
        "next_best_action": {k: v for k, v in nba.items() if k != "contact_id"} if nba else None,
        "recommendations": recs["recommendations"] if recs else [],
        "recommendations_available": recs is not None,
    }
    if nba:
        for key in ("as_of", "decided_at"):
            body["next_best_action"][key] = None if nba.get(key) is None else str(nba[key])
    if principal.may("read:contact_id"):
        body["contact_id"] = contact_id
    return body


def _recommend_run(request: Request, settings: Any, cur: Any) -> str | None:
    """The newest settled recommend run of the snapshot, looked up once per snapshot."""
    state = request.app.state
    cached = getattr(state, "recommend_run", None)
    if cached is None or cached[0] != settings.warehouse.path:
        cached = (settings.warehouse.path, latest_run(cur))
        state.recommend_run = cached
    return cached[1]


_TABLES = (("ml", "customer_scores"), ("marts", "dim_customers"), ("ml", "next_best_action"))


def _catalog(request: Request, settings: Any, cur: Any) -> tuple[dict[str, bool], tuple[str, ...]]:
    """Which of the tables exist and the score columns, looked up once per snapshot (a catalog
    query costs as much as the lookup itself)."""
    state = request.app.state
    cached = getattr(state, "customer_catalog", None)
    if cached is None or cached[0] != settings.warehouse.path:
        has = {t: relation_exists(cur, s, t) for s, t in _TABLES}
        cached = (settings.warehouse.path, has, score_columns(cur) if has["customer_scores"] else ())
        state.customer_catalog = cached
    return cached[1], cached[2]


_UNKNOWN = (
    "no customer with this id in the published snapshot (unknown, erased, or not yet extracted); "
    "pseudonyms are the `p_` ids in reports, packs and GET /api/v1/segments"
)


@router.get(
    "/by-contact-id/{contact_id}",
    response_model=Customer,
    response_model_exclude_unset=True,
    summary="One customer by CRM contact id (read:contact_id)",
    responses=ERRORS_404,
)
def by_contact_id(
    request: Request,
    contact_id: Annotated[int, Path(ge=0, le=10**18, description="the CRM contact id")],
    principal: Annotated[Principal, Depends(require("read:contact_id"))],
) -> dict[str, Any]:
    return customer_body(request, contact_id, principal, None)


@router.get(
    "/{pseudonym}",
    response_model=Customer,
    response_model_exclude_unset=True,
    summary="One customer by pseudonym: score, segment, reasons, next best action",
    responses=ERRORS_404,
)
def by_pseudonym(
    request: Request,
    pseudonym: Annotated[str, Path(max_length=64, description="the keyed pseudonym, p_ + 16 hex digits")],
    principal: Annotated[Principal, Depends(require("read:customer"))],
) -> dict[str, Any]:
    contact_id = _index(request).contact_id(request.app.state.reader, pseudonym, request.app.state.settings)
    if contact_id is None:
        raise Problem(404, _UNKNOWN)
    return customer_body(request, contact_id, principal, pseudonym)
