"""What every web page shares: who is signed in, CSRF tokens, rendering, and errors as HTML pages.

The session is the signed cookie `auth.Authenticator.issue_session` makes (HttpOnly, SameSite=Strict),
checked against the key store on every request, so revoking a key signs its browser sessions out.
Each form carries a CSRF token signed with the server secret and bound to the session cookie (or, on
the login form, to a random pre-login cookie); a post without the matching token is refused.

Errors never reach the JSON problem handlers: `HtmlRoute` turns a `WebError`, a `ClarionError` (its
message already says what to do), a busy warehouse or an invalid form into an HTML page with the
status, what happened and what to do next.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute

from clarion.api.auth import SESSION_COOKIE, Authenticator, Principal
from clarion.api.permissions import PERMISSIONS
from clarion.api.problems import Problem
from clarion.api.reads import NoSnapshotError
from clarion.errors import ClarionError, NotFoundError, WarehouseBusyError
from clarion.privacy.scrub import scrub
from clarion.report import fmt

log = logging.getLogger("clarion.api.web")

LOGIN_COOKIE = "clarion_login"  # a random nonce the login form's CSRF token is bound to
CSRF_FIELD = "csrf_token"

# (path, label, permission): the navigation, shown only where the role may go
NAV: tuple[tuple[str, str, str], ...] = (
    ("/segments", "Segments", "read:aggregates"),
    ("/customers", "Customer lookup", "read:customer"),
    ("/drafts", "Draft review", "read:drafts"),
    ("/results", "Campaign results", "read:aggregates"),
)

# No script, no inline style, nothing from another origin; SVG charts are inline markup.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters.update(
    n=fmt.n,
    pct=fmt.pct,
    eur=fmt.eur,
    num=fmt.num,
    label=fmt.label,
    signed=fmt.signed,
    points=lambda x: "-" if x is None or x != x else f"{100 * x:+.1f}",
)


class WebError(Exception):
    """A page that cannot be shown: its status, a title, what happened and what to do."""

    def __init__(self, status: int, title: str, detail: str, todo: str = "", back: str | None = None):
        super().__init__(detail)
        self.status, self.title, self.detail, self.todo, self.back = status, title, detail, todo, back


class SignIn(Exception):  # noqa: N818  (a redirect, not a failure)
    """Nobody is signed in: go to the login page and come back."""


# -- who is signed in -------------------------------------------------------------------------------
def principal(request: Request) -> Principal:
    """The signed-in key, or `SignIn` (the route class redirects to the login page)."""
    auth: Authenticator = request.app.state.auth
    who = auth.from_request(request)
    if who is None:
        raise SignIn()
    request.state.principal = who  # the access log names it
    return who


def signed_in(request: Request, permission: str) -> Principal:
    """The signed-in key, which must hold ``permission`` (else the login page, or a 403 page)."""
    who = principal(request)
    need(who, permission)
    return who


def need(who: Principal, permission: str) -> None:
    """Refuse (403 page) a role that lacks ``permission``, naming both."""
    if not who.may(permission):
        raise WebError(
            403,
            "Not allowed",
            f"Your key {who.name!r} has the role {who.role!r}, which does not hold {permission!r} "
            f"({PERMISSIONS[permission][0]}).",
            "Ask an administrator for a key with a role that does (the permission table is in "
            "docs/api.md), or go back to a page your role can open.",
        )


def landing(who: Principal) -> str:
    return "/drafts" if who.may("read:drafts") else "/segments"


def safe_next(value: str | None) -> str | None:
    """A local path to return to after login (never another site: no scheme, no '//')."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return None


# -- CSRF -------------------------------------------------------------------------------------------
def _binding(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def csrf_token(request: Request, bound_to: str) -> str:
    auth: Authenticator = request.app.state.auth
    return auth.csrf.sign({"b": _binding(bound_to)}, auth.session_minutes)


def check_csrf(request: Request, token: str, cookie: str = SESSION_COOKIE) -> None:
    """The form's token must be ours, unexpired, and bound to this browser's cookie."""
    auth: Authenticator = request.app.state.auth
    bound = request.cookies.get(cookie, "")
    body = auth.csrf.verify(token) if token else None
    if not bound or body is None or body.get("b") != _binding(bound):
        raise WebError(
            403,
            "Form expired or not from this app",
            "The form's security token is missing, out of date, or belongs to another session, so "
            "nothing was changed.",
            "Reload the page and submit the form again.",
        )


def login_nonce(request: Request) -> tuple[str, bool]:
    """The pre-login cookie's nonce, and whether it is new (then the response sets it)."""
    given = request.cookies.get(LOGIN_COOKIE, "")
    return (given, False) if len(given) >= 32 else (secrets.token_urlsafe(32), True)


def set_cookie(request: Request, response: Response, name: str, value: str, minutes: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=minutes * 60,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


# -- rendering --------------------------------------------------------------------------------------
def render(
    request: Request, template: str, who: Principal | None, status: int = 200, **context: Any
) -> HTMLResponse:
    nav = [(path, text) for path, text, perm in NAV if who is not None and who.may(perm)]
    token = csrf_token(request, request.cookies.get(SESSION_COOKIE, "")) if who is not None else ""
    html = _env.get_template(template).render(
        who=who,
        nav=nav,
        here=request.url.path,
        csrf=token,
        csrf_field=CSRF_FIELD,
        **context,
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def error_page(request: Request, exc: WebError) -> HTMLResponse:
    who = getattr(request.state, "principal", None)
    response = render(request, "error.html", who, status=exc.status, error=exc)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Cookie realm="clarion web app"'
    return response


def _as_web_error(exc: Exception) -> WebError:
    if isinstance(exc, WebError):
        return exc
    if isinstance(exc, WarehouseBusyError):
        return WebError(
            409,
            "A run is writing",
            "A pipeline run (or another change) holds the warehouse for writing, so nothing was changed.",
            "Try again in a minute; the pages still show the last published state meanwhile.",
        )
    if isinstance(exc, NoSnapshotError):
        return WebError(503, "Nothing to show yet", str(exc), "Run the pipeline once, then reload.")
    if isinstance(exc, ClarionError):
        status = getattr(exc, "http_status", 400)
        title = "Not found" if isinstance(exc, NotFoundError) or status == 404 else "Could not do that"
        return WebError(status, title, scrub(str(exc)), "")
    if isinstance(exc, Problem):
        return WebError(exc.status, exc.title, exc.detail, "")
    if isinstance(exc, RequestValidationError):
        fields = ", ".join(
            ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path")) or "form"
            for e in exc.errors()
        )
        return WebError(
            400, "Invalid form", f"These fields are not valid: {fields}.", "Correct them, then send again."
        )
    raise exc


class HtmlRoute(APIRoute):
    """A web route: sign-in redirects and errors as HTML pages, never problem+json."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        inner = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await inner(request)
            except SignIn:
                if request.method == "GET":
                    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)
                return error_page(
                    request,
                    WebError(
                        401,
                        "Signed out",
                        "Your session has ended (or the key was revoked), so nothing was changed.",
                        "Sign in again and repeat the change.",
                        back="/login",
                    ),
                )
            except Exception as exc:  # a known kind becomes a page; anything else a 500 page
                try:
                    web = _as_web_error(exc)
                except Exception:
                    log.error(
                        "web request %s failed: %s",
                        getattr(request.state, "request_id", "?"),
                        type(exc).__name__,
                        exc_info=exc,
                    )
                    web = WebError(
                        500,
                        "Something went wrong",
                        "The server met an unexpected error; nothing more is shown here.",
                        f"Try again; if it persists, give the request id "
                        f"{getattr(request.state, 'request_id', '')} to an engineer (it finds the "
                        "error in the server log).",
                    )
                return error_page(request, web)

        return handler
