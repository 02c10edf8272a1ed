"""The authorization matrix: every route of the API x every role x no credentials, allowed or refused
exactly as the permission table (clarion/api/permissions.py) says.

Each route's permission is read from its dependencies (``require("<perm>")`` names its dependency
``require_<perm>``) and must be the one DESIGN-23 fixes for it (``EXPECTED``); then every role's key
is sent live. A route added later without an entry here fails the test. The probes pass the
permission check and are then refused for content reasons (an unknown draft, contact or run, a body
that does not validate), so nothing is written and the shared project stays as it was.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from clarion.api.permissions import PERMISSIONS, ROLES

PUBLIC = "(no credentials needed)"
AUTHENTICATED = "(any valid key)"

# (method, route template) -> the permission DESIGN-23 gives it.
EXPECTED: dict[tuple[str, str], str] = {
    ("POST", "/api/v1/token"): PUBLIC,
    ("GET", "/api/v1/health"): PUBLIC,
    ("GET", "/api/v1/me"): AUTHENTICATED,
    ("GET", "/api/v1/customers/{pseudonym}"): "read:customer",
    ("GET", "/api/v1/customers/by-contact-id/{contact_id}"): "read:contact_id",
    ("GET", "/api/v1/segments"): "read:aggregates",
    ("GET", "/api/v1/segments/{name}"): "read:aggregates",
    ("GET", "/api/v1/runs"): "read:aggregates",
    ("GET", "/api/v1/runs/{run_id}"): "read:aggregates",
    ("GET", "/api/v1/runs/{run_id}/lineage"): "read:aggregates",
    ("GET", "/api/v1/models"): "read:aggregates",
    ("GET", "/api/v1/models/{version}"): "read:aggregates",
    ("GET", "/api/v1/quality"): "read:aggregates",
    ("GET", "/api/v1/results"): "read:aggregates",
    ("GET", "/api/v1/deployments"): "read:aggregates",
    ("GET", "/api/v1/drafts"): "read:drafts",
    ("GET", "/api/v1/drafts/{draft_id}"): "read:drafts",
    ("POST", "/api/v1/drafts/{draft_id}/approve"): "draft:decide",
    ("POST", "/api/v1/drafts/{draft_id}/reject"): "draft:decide",
    ("POST", "/api/v1/drafts/{draft_id}/edit"): "draft:edit",
    ("POST", "/api/v1/drafts/on-demand"): "draft:generate",
    ("POST", "/api/v1/deployments/{name}/runs"): "run:trigger",
    ("POST", "/api/v1/subjects/{who}/access"): "subject:request",
    ("POST", "/api/v1/subjects/{who}/correct"): "subject:request",
    ("POST", "/api/v1/subjects/{who}/object"): "subject:request",
    ("POST", "/api/v1/subjects/{who}/erase"): "subject:request",
}

# Path parameters: values that name nothing, so an allowed caller gets 404 (or 422), never a write.
NOWHERE = {
    "pseudonym": "p_0000000000000000",
    "contact_id": "999999999",
    "who": "999999999",
    "name": "no-such-name",
    "run_id": "no-such-run",
    "version": "no-such-version",
    "draft_id": "no-such-draft",
}
# Bodies of the routes that take one: valid, so the refusal after the permission check is about content.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/v1/token"): {},  # a form with a real key's credentials: see _probe
    ("POST", "/api/v1/drafts/{draft_id}/approve"): {"content_sha256": "0" * 64},
    ("POST", "/api/v1/drafts/{draft_id}/reject"): {"content_sha256": "0" * 64, "reason": "probe"},
    ("POST", "/api/v1/drafts/{draft_id}/edit"): {"part": "email_subject", "text": "probe", "reason": "probe"},
    ("POST", "/api/v1/drafts/on-demand"): {},  # incomplete: 422 after the permission check, no drafting
    ("POST", "/api/v1/deployments/{name}/runs"): {},
    ("POST", "/api/v1/subjects/{who}/access"): {},
    ("POST", "/api/v1/subjects/{who}/correct"): {"fields": {"country": "DE"}},
    ("POST", "/api/v1/subjects/{who}/object"): {},
    ("POST", "/api/v1/subjects/{who}/erase"): {"confirm": NOWHERE["who"], "reference": "probe"},
}
_BY_DEPENDENCY = {f"require_{p.replace(':', '_')}": p for p in PERMISSIONS}


def _routes(app) -> list[tuple[str, str, APIRoute]]:
    """(method, path, route) of every API route, those of included routers too (FastAPI 0.150
    includes a router lazily: ``app.routes`` holds the router, not its routes)."""
    found = [
        (method, re.sub(r"\{(\w+):\w+\}", r"{\1}", ctx.path), ctx.original_route)
        for ctx in iter_route_contexts(app.routes)
        if isinstance(ctx.original_route, APIRoute) and (ctx.path or "").startswith("/api/v1/")
        for method in ctx.methods or ()
    ]
    return sorted(found, key=lambda t: (t[1], t[0]))


def declared(route: APIRoute) -> str:
    """The permission a route's dependencies demand (PUBLIC / AUTHENTICATED when none)."""
    names, stack = set(), list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        names.add(getattr(dep.call, "__name__", ""))
        stack.extend(dep.dependencies)
    permissions = {_BY_DEPENDENCY[n] for n in names if n in _BY_DEPENDENCY}
    assert len(permissions) <= 1, f"{route.path} demands several permissions: {sorted(permissions)}"
    if permissions:
        return permissions.pop()
    return AUTHENTICATED if "current_principal" in names else PUBLIC


@pytest.fixture(scope="module")
def app(live_api):
    return live_api.server.config.app


def test_every_route_declares_the_permission_the_design_gives_it(app) -> None:
    routes = _routes(app)
    assert routes, "no routes under /api/v1"
    missing = [f"{m} {p}" for m, p, _ in routes if (m, p) not in EXPECTED]
    assert not missing, f"routes without an entry in tests/test_api_authz.py EXPECTED: {missing}"
    wrong = {
        f"{m} {p}": (declared(r), EXPECTED[(m, p)]) for m, p, r in routes if declared(r) != EXPECTED[(m, p)]
    }
    assert not wrong, f"declared vs designed permission: {wrong}"
    no_body = [f"{m} {p}" for m, p, r in routes if r.body_field is not None and (m, p) not in BODIES]
    assert not no_body, f"routes with a body but no probe body in BODIES: {no_body}"


def _probe(client, method: str, path: str, route: APIRoute, keys: dict[str, str]):
    url = path.format(**{name: NOWHERE[name] for name in route.param_convertors})
    if path == "/api/v1/token":  # its credentials are in the form, whoever sends it
        key = keys["engineer"]
        form = {"grant_type": "client_credentials", "client_id": key.split("_")[1], "client_secret": key}
        return client.post(url, data=form)
    return client.request(method, url, json=BODIES.get((method, path)))


def test_every_route_x_every_role_is_allowed_or_refused_as_the_table_says(live_api, api_project, app) -> None:
    outcomes: dict[str, dict[str, int]] = {}
    wrong = []
    for method, path, route in _routes(app):
        permission = declared(route)
        label = f"{method} {path}"
        outcomes[label] = {}
        with live_api.client() as anonymous:
            r = _probe(anonymous, method, path, route, api_project["keys"])
        outcomes[label]["anonymous"] = r.status_code
        if permission == PUBLIC:
            if r.status_code in (401, 403):
                wrong.append(f"{label} anonymous: {r.status_code}, but the route is public")
        elif r.status_code != 401 or "WWW-Authenticate" not in r.headers:
            wrong.append(f"{label} anonymous: {r.status_code}, want 401 with WWW-Authenticate")
        for role in ROLES:
            with live_api.client(api_project["keys"][role]) as client:
                r = _probe(client, method, path, route, api_project["keys"])
            outcomes[label][role] = r.status_code
            may = permission in (PUBLIC, AUTHENTICATED) or role in PERMISSIONS[permission][1]
            if may and r.status_code in (401, 403):
                wrong.append(
                    f"{label} {role}: {r.status_code} {r.text[:160]}, but the role holds {permission}"
                )
            if not may:
                body = r.json() if r.headers.get("content-type") == "application/problem+json" else {}
                if (
                    r.status_code != 403
                    or f"role {role!r}" not in body.get("detail", "")
                    or (permission not in body.get("detail", ""))
                ):
                    wrong.append(
                        f"{label} {role}: {r.status_code} {r.text[:160]}, want a 403 naming {permission}"
                    )
    assert not wrong, "\n".join(wrong)
    # the matrix really exercised both answers: some role was refused, some allowed, on a write
    approve = outcomes["POST /api/v1/drafts/{draft_id}/approve"]
    assert approve["approver"] == 404 and approve["marketer"] == 403 and approve["anonymous"] == 401
