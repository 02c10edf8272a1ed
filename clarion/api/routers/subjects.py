"""Data-subject requests through the API (compliance role): access, correct, object, erase.

The same functions `clarion subject ...` calls (clarion.subject), audited the same way (by pseudonym,
counts only) but under the API principal (``api:<key name>``) instead of the operating-system user.
A person is named by contact id or by pseudonym, never by e-mail: a URL ends up in proxies' logs.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from clarion.api import writes
from clarion.api.auth import Principal, require
from clarion.api.problems import Problem, responses

router = APIRouter(prefix="/api/v1/subjects", tags=["data subjects"])

Who = Annotated[
    str,
    Path(
        pattern=r"^([0-9]{1,18}|p_[0-9a-f]{16})$",
        description="the person: their CRM contact id (digits) or their pseudonym (p_ and 16 hex digits)",
    ),
]
Compliance = Annotated[Principal, Depends(require("subject:request"))]
Reference = Field(None, max_length=200, description="the request's reference (ticket or letter number)")
ERRORS = responses(400, 401, 403, 404, 409, 422)
FieldName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]


class RequestBody(BaseModel):
    reference: str | None = Reference


class CorrectionBody(BaseModel):
    fields: dict[FieldName, str | None] = Field(
        min_length=1,
        description="contact field -> corrected value (null or empty clears an optional field)",
        examples=[{"country": "DE", "age_band": "35-44"}],
    )
    reference: str | None = Reference


class ErasureBody(BaseModel):
    confirm: str = Field(description="the person again, exactly as in the path: erasure cannot be undone")
    reference: str = Field(min_length=1, max_length=200, description="the request's ticket or case number")
    dry_run: bool = Field(False, description="only count what would be removed; change nothing")


class AccessReport(BaseModel):
    model_config = ConfigDict(extra="allow")
    person: dict[str, Any]
    generated_at: str
    parts: dict[str, Any]
    runs: list[dict[str, Any]]
    counts: dict[str, int]


class Recorded(BaseModel):
    contact_id: int
    pseudonym: str
    looked_up: str
    reference: str | None
    takes_effect: str


class CorrectionOut(Recorded):
    fields: list[str]


class ObjectionOut(Recorded):
    already_recorded: bool


class ErasureOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    reference: str
    rows: dict[str, int]
    rows_removed: int
    exports_rewritten: int
    working_files_deleted: int
    model_versions_flagged: list[str]
    runs: list[str]
    dry_run: bool = False


@router.post(
    "/{who}/access",
    summary="Everything held about a person (GDPR Art. 15), as JSON",
    response_model=AccessReport,
    responses=ERRORS,
)
def access(who: Who, request: Request, principal: Compliance) -> Response:
    from clarion.subject.access import produce

    with writes.session(request, "subject access") as settings:
        text, _ = produce(settings, _contact(settings, who), "json", actor=principal.audit_name)
    return Response(text, media_type="application/json")


@router.post(
    "/{who}/correct",
    summary="Correct a person's contact record (Art. 16); takes effect on the next run",
    response_model=CorrectionOut,
    responses=ERRORS,
)
def correct(who: Who, body: CorrectionBody, request: Request, principal: Compliance) -> dict[str, Any]:
    from clarion.subject.correct import record

    pairs = [f"{field}={value or ''}" for field, value in body.fields.items()]
    with writes.session(request, "subject correct") as settings:
        return record(settings, _contact(settings, who), pairs, body.reference, actor=principal.audit_name)


@router.post(
    "/{who}/object",
    summary="Record an objection to profiling for direct marketing (Art. 21)",
    response_model=ObjectionOut,
    responses=ERRORS,
)
def object_(
    who: Who, request: Request, principal: Compliance, body: RequestBody | None = None
) -> dict[str, Any]:
    from clarion.subject.objection import record

    reference = body.reference if body else None
    with writes.session(request, "subject object") as settings:
        return record(settings, _contact(settings, who), reference, actor=principal.audit_name)


@router.post(
    "/{who}/erase",
    summary="Erase a person everywhere and keep them out (Art. 17); cannot be undone",
    response_model=ErasureOut,
    responses=ERRORS,
)
def erase(who: Who, body: ErasureBody, request: Request, principal: Compliance) -> dict[str, Any]:
    from clarion.subject.erase import erase as erase_subject

    if body.confirm != who:
        raise Problem(
            422,
            "confirm must repeat the person of the path exactly: erasure cannot be undone",
            errors=[{"field": "confirm", "message": f"send {who!r} to confirm the erasure of {who!r}"}],
        )
    with writes.session(request, "subject erase") as settings:
        return erase_subject(
            settings,
            _contact(settings, who),
            body.reference,
            dry_run=body.dry_run,
            actor=principal.audit_name,
        )


def _contact(settings: Any, who: str) -> str:
    """The contact id the path names (a pseudonym is looked up among the known contacts)."""
    if not who.startswith("p_"):
        return who
    from clarion.privacy.pseudonym import for_settings
    from clarion.subject.find import by_pseudonym
    from clarion.warehouse import Warehouse

    with Warehouse.from_settings(settings).read() as con:
        contact_id = by_pseudonym(con, for_settings(settings, con), who)
    if contact_id is None:
        raise Problem(404, f"no contact has the pseudonym {who}: check it (erased people have none)")
    return str(contact_id)
