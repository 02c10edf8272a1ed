"""The marketer web app: server-rendered pages on the API's own reads, writes and permissions.

Plain HTML forms (no script, no build step, no external resource): every page works with a keyboard
and a screen reader, and without a network beyond the server. ``routes.router`` is included by
``clarion.api.app``; pages read the read snapshot (``app.state.reader``), forms write through the same
core functions as the CLI (``clarion.content.review``), under the authenticated key's name.
"""
