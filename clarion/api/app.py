"""The FastAPI application: routers, authentication, problem details, request ids, access log.

One process serves the JSON API (``/api/v1``, OpenAPI at ``/docs`` and ``/openapi.json``) and the
marketer web app (``/``). Every module in ``clarion.api.routers`` that defines ``router`` is
included, and ``clarion.api.web`` when present.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import re
import time
import uuid
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Form, Request
from fastapi.responses import JSONResponse

import clarion
from clarion.api import problems
from clarion.api.auth import Authenticator, Principal, current_principal
from clarion.api.keys import KeyStore
from clarion.api.problems import Problem, responses
from clarion.api.reads import Reader

log = logging.getLogger("clarion.api")
access_log = logging.getLogger("clarion.api.access")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def create_app(settings: Any) -> FastAPI:
    app = FastAPI(
        title="Clarion API",
        version=clarion.__version__,
        description="Scores, segments, reasons, drafts and runs of a Clarion warehouse, read from its "
        "last published snapshot; writes audited under the authenticated key. Errors are "
        "application/problem+json.",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.reader = Reader(settings)
    app.state.keys = KeyStore.for_settings(settings)
    app.state.auth = Authenticator(app.state.keys, settings.api.token_minutes, settings.api.session_minutes)
    problems.install(app)
    _middleware(app)
    _core_routes(app)
    for module in _router_modules():
        app.include_router(module.router)
    return app


def _router_modules() -> list[Any]:
    from clarion.api import routers

    found = []
    for info in sorted(pkgutil.iter_modules(routers.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"clarion.api.routers.{info.name}")
        if hasattr(module, "router"):
            found.append(module)
    try:
        found.append(importlib.import_module("clarion.api.web.routes"))
    except ModuleNotFoundError as exc:
        if exc.name not in ("clarion.api.web", "clarion.api.web.routes"):
            raise
    return found


def _middleware(app: FastAPI) -> None:
    @app.middleware("http")
    async def request_id(request: Request, call_next):
        given = request.headers.get("x-request-id", "")
        rid = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        request.state.request_id = rid
        started = time.perf_counter()
        response = await call_next(request)
        response.headers["X-Request-ID"] = rid
        route = request.scope.get("route")
        principal = getattr(request.state, "principal", None)
        # The route template, never the raw path or query: a path may hold a contact id.
        access_log.info(
            "%s %s %s %d %.1fms %s",
            rid,
            request.method,
            route.path if route is not None else "(no route)",
            response.status_code,
            (time.perf_counter() - started) * 1000,
            principal.audit_name if principal else "-",
        )
        return response


def _core_routes(app: FastAPI) -> None:
    @app.post(
        "/api/v1/token",
        tags=["auth"],
        summary="OAuth2 client credentials: exchange an API key for a bearer token",
        responses=responses(400, 401),
    )
    def token(
        request: Request,
        grant_type: Annotated[str, Form()],
        client_id: Annotated[str, Form()],
        client_secret: Annotated[str, Form()],
    ) -> dict[str, Any]:
        if grant_type != "client_credentials":
            raise Problem(400, f"grant_type {grant_type!r} is not supported: use client_credentials")
        auth: Authenticator = request.app.state.auth
        key = auth.store.verify(client_secret)
        if key is None or key.key_id != client_id:
            raise Problem(
                401,
                "client_id and client_secret do not name an active API key (client_id is the key id, "
                "client_secret the whole key)",
                headers={"WWW-Authenticate": 'Bearer realm="clarion"'},
            )
        return {
            "access_token": auth.issue_token(key),
            "token_type": "bearer",
            "expires_in": auth.token_minutes * 60,
        }

    @app.get("/api/v1/health", tags=["meta"], summary="Liveness and the age of the read snapshot")
    def health(request: Request) -> JSONResponse:
        reader: Reader = request.app.state.reader
        published = reader.published_at()
        body = {
            "status": "ok" if published else "no snapshot yet",
            "version": clarion.__version__,
            "snapshot_age_seconds": round(time.time() - published, 1) if published else None,
        }
        return JSONResponse(body, status_code=200 if published else 503)

    @app.get(
        "/api/v1/me",
        tags=["auth"],
        summary="The caller's key name, role and permissions",
        responses=responses(401),
    )
    def me(principal: Annotated[Principal, Depends(current_principal)]) -> dict[str, Any]:
        from clarion.api.permissions import PERMISSIONS

        return {
            "name": principal.name,
            "key_id": principal.key_id,
            "role": principal.role,
            "via": principal.via,
            "permissions": [p for p in PERMISSIONS if principal.may(p)],
        }
