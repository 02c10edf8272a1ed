"""`clarion deploy`, `clarion worker`, `clarion deployments`: prefect.yaml's deployments on a Prefect
server, run by a process worker (docs/operations.md)."""

from __future__ import annotations

import json
from typing import Any

import click

from clarion.cli.app import AppContext, _emit, cli

POOL_OPTION = click.option(
    "--pool", default="clarion", show_default=True, metavar="NAME", help="The Prefect work pool."
)


def _prepared(app: AppContext):
    """Settings loaded and Prefect pointed at its server before it is imported."""
    from clarion.runtime import configure_logging, prepare_prefect

    settings = app.settings()
    prepare_prefect(settings)
    import prefect  # noqa: F401  (its import configures logging; ours goes on top)

    configure_logging("DEBUG" if app.verbose else settings.logging.level)
    return settings


@cli.command()
@POOL_OPTION
@click.option("--paused", is_flag=True, help="Register the schedules paused: runs start only on demand.")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
@click.pass_obj
def deploy(app: AppContext, pool: str, paused: bool, as_json: bool) -> None:
    """Register prefect.yaml's deployments on a Prefect server, for a worker to run.

    Creates the process work pool (default `clarion`) and the global concurrency limit
    `clarion-warehouse` if they are missing, registers every deployment (their runs use this project's
    settings file and folder), and links the deployments tagged `clarion-warehouse` to that limit: of
    those, one runs at a time, the others wait in Prefect (state AwaitingConcurrencySlot). Run it
    again after changing prefect.yaml, and after `prefect deploy` or `clarion serve` (they unlink it).

    Needs PREFECT_API_URL pointing at a running server.

    \b
    Examples:
      PREFECT_HOME=var/prefect prefect server start          # in another terminal
      export PREFECT_API_URL=http://127.0.0.1:4200/api
      clarion deploy
      clarion worker                                         # runs them; Ctrl-C to stop
    """
    settings = _prepared(app)
    from clarion.ops.deploy import deploy as register

    result = register(settings, app.config_file(), pool=pool, paused=paused)
    _emit(result, as_json, _deploy_text(result))


@cli.command()
@POOL_OPTION
@click.option(
    "--limit", type=click.IntRange(1), metavar="N", help="At most N flow runs at a time [no limit]."
)
@click.option("--name", metavar="NAME", help="The worker's name in the Prefect UI [a generated one].")
@click.pass_obj
def worker(app: AppContext, pool: str, limit: int | None, name: str | None) -> None:
    """Start a Prefect process worker on the work pool `clarion deploy` made; Ctrl-C stops it.

    It is `prefect worker start --pool clarion --type process` with the library's log lines sent to
    each flow run's logs. Each run is a child process in the project folder its deployment was
    registered from. Start as many workers as you like (on this machine or others that share the
    folder): the concurrency limit, not the worker, keeps two writers apart.
    """
    _prepared(app)
    from clarion.ops import worker as workers

    workers.check_pool(pool)
    click.echo("starting: " + " ".join(workers.command(pool, limit, name)[1:]), err=True)
    workers.start(pool, limit, name)


@cli.group()
def deployments() -> None:
    """The deployments registered on the Prefect server: list them, start a run."""


@deployments.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print them as JSON.")
@click.pass_obj
def deployments_list(app: AppContext, as_json: bool) -> None:
    """Every deployment on the server with its schedule, pool, limit and latest run."""
    settings = _prepared(app)
    from clarion.ops.deployments import listing

    found = listing(settings)
    _emit(found, as_json, _listing_text(found))


@deployments.command("run")
@click.argument("name")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A flow parameter; VALUE is read as JSON when it parses (stages='[\"prepare\"]'), else text.",
)
@click.option("--by", "principal", default="cli", show_default=True, help="Recorded as who started it.")
@click.option("--json", "as_json", is_flag=True, help="Print the flow run as JSON.")
@click.pass_obj
def deployments_run(
    app: AppContext, name: str, params: tuple[str, ...], principal: str, as_json: bool
) -> None:
    """Start a run of deployment NAME (`daily`, or `clarion-pipeline/daily`); a worker runs it.

    \b
    Examples:
      clarion deployments run daily
      clarion deployments run daily --param 'stages=["prepare","extract"]'
    """
    settings = _prepared(app)
    from clarion.ops.deployments import trigger

    result = trigger(settings, name, _parameters(params), principal)
    _emit(result, as_json, f"{result['deployment']}: flow run {result['flow_run_id']} ({result['state']})")


def _parameters(pairs: tuple[str, ...]) -> dict[str, Any]:
    parameters: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--param")
        try:
            parameters[key] = json.loads(raw)
        except json.JSONDecodeError:
            parameters[key] = raw
    return parameters


def _deploy_text(r: dict[str, Any]) -> str:
    made = lambda created: "created" if created else "exists"  # noqa: E731
    lines = [
        f"Prefect server  {r['server']}",
        f"work pool       {r['pool']['name']} ({r['pool']['type']}, {made(r['pool']['created'])})",
        f"limit           {r['limit']['name']} ({r['limit']['slots']} slot, {made(r['limit']['created'])})",
        f"{len(r['deployments'])} deployments from {r['source']}, run in {r['folder']}"
        + (" (schedules paused)" if r["paused"] else ""),
    ]
    for d in r["deployments"]:
        lines.append(f"  {d['full_name']:<40} {'limited: ' + r['limit']['name'] if d['limited'] else ''}")
    lines += ["", f"Start a worker: {r['worker']}   (or: prefect worker start --pool {r['pool']['name']})"]
    return "\n".join(lines)


def _listing_text(found: list[dict[str, Any]]) -> str:
    if not found:
        return "no deployments on the server: register them with `clarion deploy`"
    lines = []
    for d in found:
        when = (
            ", ".join(f"{s.get('cron')} ({s.get('timezone') or 'UTC'})" for s in d["schedules"])
            or "on demand"
        )
        last = d["last_run"]
        lines += [
            d["full_name"],
            f"  schedule   {when}" + (" (paused)" if d["paused"] else ""),
            f"  pool       {d['work_pool'] or '-'}   limit {d['concurrency_limit'] or '-'}",
            f"  last run   {last['state'] + ' ' + last['name'] if last else '-'}",
        ]
    return "\n".join(lines)


@cli.group("prefect")
def prefect_group() -> None:
    """Keep one Prefect server running for this project, so commands skip Prefect's temporary server.

    Without PREFECT_API_URL, each command that runs a flow starts a temporary Prefect server first
    (19-40 s on 2 busy cores). After `clarion prefect start`, every command of this project uses the
    kept server while it answers, and its UI shows the runs. A PREFECT_API_URL you set always wins.

    \b
      clarion prefect start      # in the background, on var/prefect (prefect.home); port 4200 if free
      clarion run                # uses it: no temporary server
      clarion prefect status
      clarion prefect stop
    """


@prefect_group.command("start")
@click.option(
    "--port", type=click.IntRange(1, 65535), metavar="N", help="Port on 127.0.0.1 [4200 if free, else any]."
)
@click.option("--json", "as_json", is_flag=True, help="Print the server's state as JSON.")
@click.pass_obj
def prefect_start(app: AppContext, port: int | None, as_json: bool) -> None:
    """Start the kept Prefect server (nothing to do when one answers already)."""
    from clarion.ops import local_server

    state = local_server.start(app.settings(), port=port)
    verb = "already running" if state["already"] else f"started in {state['start_seconds']} s"
    _emit(
        state,
        as_json,
        f"Prefect server {verb}: {state['ui']} (UI), API {state['url']}, pid {state['pid']}, log "
        f"{state['log']}\nCommands of this project use it while it runs; `clarion prefect stop` ends it.",
    )


@prefect_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the server's state as JSON.")
@click.pass_obj
def prefect_status(app: AppContext, as_json: bool) -> None:
    """Whether the kept Prefect server runs and answers (exit code 1 when not)."""
    from clarion.ops import local_server

    state = local_server.running(app.settings())
    if state is None:
        _emit({"running": False}, as_json, "No kept Prefect server runs: commands start a temporary one.")
        raise SystemExit(1)
    _emit({**state, "running": True}, as_json, f"Prefect server runs: {state['ui']} (UI), pid {state['pid']}")


@prefect_group.command("stop")
@click.option("--json", "as_json", is_flag=True, help="Print what was stopped as JSON.")
@click.pass_obj
def prefect_stop(app: AppContext, as_json: bool) -> None:
    """Stop the kept Prefect server."""
    from clarion.ops import local_server

    state = local_server.stop(app.settings())
    _emit(
        {"stopped": state is not None, **(state or {})},
        as_json,
        f"Prefect server stopped (pid {state['pid']})." if state else "No kept Prefect server was running.",
    )
