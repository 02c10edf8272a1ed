"""`clarion api serve` and `clarion api keys create|list|revoke` (docs/api.md)."""

from __future__ import annotations

from typing import Any

import click

from clarion.cli.app import AppContext, _emit, cli


@cli.group()
def api() -> None:
    """The REST API and the marketer web app, in one process (docs/api.md).

    \b
      clarion api keys create ci-bot --role service    # a key; shown once, stored hashed
      clarion api serve                                # http://127.0.0.1:8000 (/docs: OpenAPI)

    Reads come from the last published read snapshot of the warehouse (every run publishes one),
    so a run in progress neither blocks the API nor half-shows in it."""


@api.command("serve")
@click.option("--host", help="Address to listen on [api.host: 127.0.0.1].")
@click.option("--port", type=click.IntRange(1, 65535), help="Port to listen on [api.port: 8000].")
@click.pass_obj
def api_serve(app: AppContext, host: str | None, port: int | None) -> None:
    """Serve the REST API (/api/v1, OpenAPI at /docs) and the web app (/) until Ctrl-C."""
    import os

    # torch's OpenMP threads spin while they wait: on busy cores that made on-demand drafts 5-10x
    # slower (bench/RESULTS.md, On-demand drafts). Set before torch is imported; a user's value wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import uvicorn

    from clarion.api import create_app
    from clarion.privacy import scrub

    settings = app.settings()
    host = host or settings.api.host
    port = port or settings.api.port
    application = create_app(settings)
    scrub.install((*scrub.LOGGERS, "uvicorn"))  # no personal value in any server log line
    click.echo(f"Clarion API on http://{host}:{port}  (web app /, OpenAPI /docs; Ctrl-C stops)")
    uvicorn.run(application, host=host, port=port, log_level="warning", access_log=False)


@api.group("keys")
def keys() -> None:
    """API keys: one per caller (a person, a CRM integration, a CI job), each with one role.

    Roles: engineer, marketer, approver, compliance, service (the permission table: docs/api.md)."""


@keys.command("create")
@click.argument("name")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["engineer", "marketer", "approver", "compliance", "service"]),
    help="What the key may do (docs/api.md#roles).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the key and its record as JSON.")
@click.pass_obj
def keys_create(app: AppContext, name: str, role: str, as_json: bool) -> None:
    """Create a key called NAME (it names the caller in the audit trail: use a role or system name,
    never a person's e-mail). The key is printed once; only its hash is kept."""
    from clarion.api.keys import KeyStore
    from clarion.oversight.tiers import os_principal

    record, key = KeyStore.for_settings(app.settings()).create(name, role, by=os_principal())
    data = {**record.as_dict(), "key": key}
    _emit(
        data,
        as_json,
        f"created key {record.name!r} (id {record.key_id}, role {record.role}). Copy it now; it is not "
        f"shown again:\n\n  {key}\n\nUse it as `Authorization: Bearer {key[:16]}...` or `X-API-Key`.",
    )


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the keys as JSON.")
@click.pass_obj
def keys_list(app: AppContext, as_json: bool) -> None:
    """Every key: id, name, role, who created it, when it was last used, whether it is revoked."""
    from clarion.api.keys import KeyStore

    rows = [k.as_dict() for k in KeyStore.for_settings(app.settings()).list()]
    _emit(rows, as_json, _keys_text(rows))


@keys.command("revoke")
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="Print the revoked key's record as JSON.")
@click.pass_obj
def keys_revoke(app: AppContext, key: str, as_json: bool) -> None:
    """Revoke KEY (its id or name) at once: the key, its bearer tokens and web sessions stop working
    on the next request, even while a pipeline run holds the warehouse."""
    from clarion.api.keys import KeyStore
    from clarion.oversight.tiers import os_principal

    record = KeyStore.for_settings(app.settings()).revoke(key, by=os_principal())
    _emit(
        record.as_dict(), as_json, f"revoked key {record.name!r} (id {record.key_id}) at {record.revoked_at}"
    )


def _keys_text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no API keys yet: clarion api keys create NAME --role ROLE"
    lines = [f"{'id':<9} {'name':<24} {'role':<11} {'created':<20} {'last used':<20} revoked"]
    for r in rows:
        lines.append(
            f"{r['key_id']:<9} {r['name']:<24} {r['role']:<11} {r['created_at'][:19]:<20} "
            f"{(r['last_used_at'] or '-')[:19]:<20} {(r['revoked_at'] or '-')[:19]}"
        )
    return "\n".join(lines)
