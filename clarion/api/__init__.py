"""The REST API and the marketer web app (`clarion api serve`), over the read snapshot.

Layout: `app` (factory, middleware, core routes), `auth` (keys, tokens, sessions -> Principal,
`require`), `keys` (the hashed key store), `permissions` (roles and the permission table),
`problems` (problem+json errors), `reads` (the read snapshot), `routers/` (one module per area),
`web/` (the server-rendered pages). Everything here calls the same clarion functions the CLI calls.
"""

from clarion.api.app import create_app

__all__ = ["create_app"]
