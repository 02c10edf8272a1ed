"""The web app's pages: login and logout, segments, customer lookup, the draft queue and a draft's
review page, campaign results, and the local static files. Writes are in `actions`.

Every page checks the same permission as its JSON twin under ``/api/v1`` (clarion.api.permissions),
and shows only the links and buttons the signed-in role may use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from clarion.api.auth import SESSION_COOKIE, Authenticator, Principal
from clarion.api.reads import NoSnapshotError
from clarion.api.web import actions, data
from clarion.api.web.pages import (
    LOGIN_COOKIE,
    HtmlRoute,
    WebError,
    check_csrf,
    csrf_token,
    landing,
    login_nonce,
    need,
    principal,
    render,
    safe_next,
    set_cookie,
    signed_in,
)
from clarion.errors import ClarionError, NotFoundError

STATIC = Path(__file__).parent / "static"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}

router = APIRouter(route_class=HtmlRoute, include_in_schema=False)
router.include_router(actions.router)


@router.get("/")
def home(request: Request) -> Response:
    return RedirectResponse(landing(principal(request)), status_code=303)


# -- login / logout ---------------------------------------------------------------------------------
@router.get("/login")
def login_form(request: Request, next: str = "", message: str = "") -> Response:
    nonce, new = login_nonce(request)
    response = render(
        request,
        "login.html",
        None,
        next=safe_next(next) or "",
        message={"out": "You are signed out."}.get(message, ""),
        error="",
        login_csrf=csrf_token(request, nonce),
    )
    if new:
        set_cookie(request, response, LOGIN_COOKIE, nonce, 60)
    return response


@router.post("/login")
def login(
    request: Request,
    api_key: Annotated[str, Form()] = "",
    csrf_token_: Annotated[str, Form(alias="csrf_token")] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf_token_, cookie=LOGIN_COOKIE)
    auth: Authenticator = request.app.state.auth
    key = auth.store.verify(api_key.strip()) if api_key.strip() else None
    if key is None:
        nonce, _ = login_nonce(request)
        return render(
            request,
            "login.html",
            None,
            status=401,
            next=safe_next(next) or "",
            message="",
            error=(
                "That key was not accepted: it is unknown, revoked or mistyped. Paste the whole key "
                "(it starts with clk_), or ask an administrator for one "
                "(clarion api keys create NAME --role ROLE)."
                if api_key.strip()
                else "Paste your API key into the field (it starts with clk_)."
            ),
            login_csrf=csrf_token(request, nonce),
        )
    auth.store.touch(key.key_id)
    target = safe_next(next) or landing(Principal(key.key_id, key.name, key.role, "session"))
    response = RedirectResponse(target, status_code=303)
    set_cookie(request, response, SESSION_COOKIE, auth.issue_session(key), auth.session_minutes)
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response


@router.post("/logout")
def logout(request: Request, csrf_token_: Annotated[str, Form(alias="csrf_token")] = "") -> Response:
    principal(request)
    check_csrf(request, csrf_token_)
    response = RedirectResponse("/login?message=out", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# -- pages ------------------------------------------------------------------------------------------
@router.get("/segments")
def segments(request: Request) -> Response:
    who = signed_in(request, "read:aggregates")
    return render(request, "segments.html", who, d=data.overview(request.app.state.reader))


@router.get("/customers")
def customers(request: Request, pseudonym: str = "", contact_id: str = "") -> Response:
    who = signed_in(request, "read:customer")
    pseudonym, contact_id = pseudonym.strip(), contact_id.strip()
    if contact_id:
        need(who, "read:contact_id")
    found, status, problem = None, 200, ""
    if pseudonym or contact_id:
        try:
            found = data.customer(
                request.app.state.reader,
                request.app.state.settings,
                by_pseudonym=pseudonym,
                by_contact_id=contact_id,
            )
        except NoSnapshotError:
            raise
        except ClarionError as exc:  # shown beside the form, which stays filled in
            status = 404 if isinstance(exc, NotFoundError) else 400
            problem = str(exc)
    return render(
        request,
        "customer.html",
        who,
        status=status,
        c=found,
        problem=problem,
        pseudonym=pseudonym,
        contact_id=contact_id,
        ids=who.may("read:contact_id"),
    )


@router.get("/drafts")
def drafts(request: Request, status: str = "pending") -> Response:
    who = signed_in(request, "read:drafts")
    if status not in (*data.STATUSES, "all"):
        raise WebError(
            400,
            "Unknown status",
            f"There is no draft status {status!r}.",
            f"Choose one of {', '.join(data.STATUSES)} or all.",
            back="/drafts",
        )
    rows = data.queue(request.app.state.reader, status)
    return render(request, "drafts.html", who, rows=rows, showing=status, statuses=data.STATUSES)


@router.get("/drafts/{draft_id}")
def draft(request: Request, draft_id: str, done: str = "") -> Response:
    who = signed_in(request, "read:drafts")
    found = data.draft(request.app.state.reader, draft_id)
    return render(
        request,
        "draft.html",
        who,
        **found,
        brief_rows=data.brief_rows(found["brief"]) if found["brief"] else [],
        provenance=data.provenance_rows(found["draft"]),
        done=actions.DONE.get(done, ""),
        may_decide=who.may("draft:decide"),
        may_edit=who.may("draft:edit"),
    )


@router.get("/results")
def results(request: Request) -> Response:
    who = signed_in(request, "read:aggregates")
    return render(request, "results.html", who, r=data.results(request.app.state.reader))


@router.get("/static/{name}")
def static(name: str) -> Response:
    path = STATIC / name
    if "/" in name or path.suffix not in STATIC_TYPES or not path.is_file():
        raise WebError(404, "Not found", f"There is no static file {name!r}.", "")
    return FileResponse(
        path, media_type=STATIC_TYPES[path.suffix], headers={"Cache-Control": "public, max-age=3600"}
    )
