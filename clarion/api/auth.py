"""Who is calling: an API key, an OAuth2 bearer token or a web-app session, turned into a Principal.

- ``Authorization: Bearer clk_...`` or ``X-API-Key: clk_...``: the key itself.
- ``Authorization: Bearer <token>``: a token from ``POST /api/v1/token`` (OAuth2 client credentials:
  client_id = key id, client_secret = the key), signed with the store's server secret, naming the key
  and its expiry. The key is looked up on every request, so revoking it ends its tokens at once.
- A session cookie set by the web app's login form: the same signed form, for the same key.

``require(permission)`` is the FastAPI dependency every route uses: 401 without valid credentials,
403 when the role lacks the permission (both say which).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request

from clarion.api.keys import ApiKey, KeyStore
from clarion.api.permissions import PERMISSIONS, allowed
from clarion.api.problems import Problem

TOKEN_PREFIX = "cla_"
SESSION_COOKIE = "clarion_session"


@dataclass(frozen=True)
class Principal:
    key_id: str
    name: str
    role: str
    via: str  # key | token | session

    @property
    def audit_name(self) -> str:
        """How the audit trail and approvals name this caller."""
        return f"api:{self.name}"

    def may(self, permission: str) -> bool:
        return allowed(self.role, permission)


class Signer:
    """HMAC-SHA256 signed, expiring payloads (bearer tokens, sessions, CSRF tokens)."""

    def __init__(self, secret: bytes, purpose: str) -> None:
        self._key = hmac.new(secret, purpose.encode(), hashlib.sha256).digest()

    def sign(self, payload: dict[str, Any], minutes: float) -> str:
        body = dict(payload, exp=int(time.time() + minutes * 60))
        raw = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
        return f"{raw}.{_b64(hmac.new(self._key, raw.encode(), hashlib.sha256).digest())}"

    def verify(self, token: str) -> dict[str, Any] | None:
        raw, _, sig = (token or "").partition(".")
        if not raw or not sig:
            return None
        want = _b64(hmac.new(self._key, raw.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(want, sig):
            return None
        try:
            body = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        except ValueError:
            return None
        return body if isinstance(body, dict) and body.get("exp", 0) > time.time() else None


def _nonce() -> str:
    return secrets.token_urlsafe(12)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Authenticator:
    """Turns request credentials into a Principal (one per app)."""

    def __init__(self, store: KeyStore, token_minutes: int, session_minutes: int) -> None:
        self.store = store
        self.token_minutes = token_minutes
        self.session_minutes = session_minutes
        secret = store.server_secret("signing")
        self.tokens = Signer(secret, "bearer-token")
        self.sessions = Signer(secret, "web-session")
        self.csrf = Signer(secret, "csrf")

    def issue_token(self, key: ApiKey) -> str:
        return TOKEN_PREFIX + self.tokens.sign({"k": key.key_id, "n": _nonce()}, self.token_minutes)

    def issue_session(self, key: ApiKey) -> str:
        """A session of its own: two sign-ins with one key in the same second are two sessions, so
        one's CSRF tokens (bound to its session) are refused by the other."""
        return self.sessions.sign({"k": key.key_id, "n": _nonce()}, self.session_minutes)

    def from_request(self, request: Request) -> Principal | None:
        header = request.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        credential = credential.strip()
        if scheme.lower() == "bearer" and credential:
            if credential.startswith(TOKEN_PREFIX):
                return self._signed(self.tokens, credential[len(TOKEN_PREFIX) :], "token")
            return self._key(credential)
        if request.headers.get("x-api-key"):
            return self._key(request.headers["x-api-key"].strip())
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            return self._signed(self.sessions, cookie, "session")
        return None

    def _key(self, presented: str) -> Principal | None:
        key = self.store.verify(presented)
        if key is None:
            return None
        self.store.touch(key.key_id)
        return Principal(key.key_id, key.name, key.role, "key")

    def _signed(self, signer: Signer, value: str, via: str) -> Principal | None:
        body = signer.verify(value)
        key = self.store.active(str(body.get("k"))) if body else None
        return Principal(key.key_id, key.name, key.role, via) if key else None


def authenticator(request: Request) -> Authenticator:
    return request.app.state.auth


def current_principal(request: Request) -> Principal:
    """The caller, or a 401 problem naming the ways to authenticate."""
    principal = authenticator(request).from_request(request)
    if principal is None:
        given = bool(request.headers.get("authorization") or request.headers.get("x-api-key"))
        raise Problem(
            401,
            (
                "the credentials are not valid (unknown, revoked or expired key or token)"
                if given
                else "no credentials"
            )
            + ": send `Authorization: Bearer <API key or token>` or `X-API-Key: <API key>` "
            "(`clarion api keys create NAME --role ROLE` makes a key)",
            headers={"WWW-Authenticate": 'Bearer realm="clarion"'},
        )
    request.state.principal = principal
    return principal


def require(permission: str) -> Callable[..., Principal]:
    """Dependency: the caller, who must hold ``permission`` (else 401/403)."""
    if permission not in PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")

    def dependency(principal: Principal = Depends(current_principal)) -> Principal:  # noqa: B008
        if not principal.may(permission):
            raise Problem(
                403,
                f"the role {principal.role!r} of key {principal.name!r} does not hold {permission!r} "
                f"({PERMISSIONS[permission][0]}); ask an administrator for a key with a role that does",
            )
        return principal

    dependency.__name__ = f"require_{permission.replace(':', '_')}"
    return dependency
