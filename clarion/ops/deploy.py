"""`clarion deploy`: the deployments of prefect.yaml on a process work pool, for `prefect worker`.

What it does, each step idempotent (run it again after changing prefect.yaml or clarion.yaml):

1. the work pool ``clarion`` (type ``process``) is created if missing;
2. the global concurrency limit ``clarion-warehouse`` (one slot) is created if missing;
3. every deployment of prefect.yaml (the one `clarion serve` reads: beside clarion.yaml, else the
   repository's) is registered on the pool, running in the project folder with its settings file;
4. the deployments tagged ``clarion-warehouse`` (those that write the warehouse) are linked to that
   limit with the collision strategy ENQUEUE.

Why that limit and not another of Prefect's: a deployment linked to a global concurrency limit has a
slot taken by the *server* when its run is about to start (Scheduled -> Pending). With no slot free,
the server puts the run back in the state Scheduled named ``AwaitingConcurrencySlot`` and proposes it
again a little later: the run waits in Prefect, visibly, before any worker starts a process for it,
and never on the warehouse's file lock. The limit is shared by every linked deployment, so the daily
pipeline, the weekly report, the retention job and a triggered campaign never write at the same time,
whichever worker (or `clarion serve`) picks them up. The slot is a lease the run keeps alive: a run
whose process dies gives its slot back when the lease expires. The other candidates fall short: a
deployment's own ``concurrency_limit`` limits runs of that deployment only; a work pool limit also
holds back deployments that only read (content-approval waits days for a person); a work queue limit
leaves waiting runs "Late", indistinguishable from a worker that is down; and ``concurrency()`` inside
the flow waits in a running process, in a worker slot, as the file lock did.

Prefect's own tools cannot link a deployment to a shared limit yet (PrefectHQ/prefect#18715): it is
the REST field ``global_concurrency_limit_id``, patched here. Registering a linked deployment again
with `prefect deploy` or `clarion serve` sends ``concurrency_limit: null``, and the server then
*deletes* the linked limit itself, for every deployment: run `clarion deploy` again after those.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from clarion.config import Settings
from clarion.ops.server import OpsError, require_server

log = logging.getLogger("clarion.ops.deploy")

POOL = "clarion"
POOL_TYPE = "process"
LIMIT = "clarion-warehouse"  # the global concurrency limit, and the tag that links a deployment to it
LIMIT_SLOTS = 1
ENQUEUE = {"collision_strategy": "ENQUEUE"}
# a worker's flow-run process: the library's log lines (clarion.*) go to the flow run's logs too
RUN_ENV = {"PREFECT_LOGGING_EXTRA_LOGGERS": "clarion"}


def deploy(
    settings: Settings,
    config_path: Path | None,
    *,
    pool: str = POOL,
    paused: bool = False,
    path: Path | None = None,
) -> dict[str, Any]:
    """Create the pool and the limit if missing, register every deployment of prefect.yaml on the
    pool, link the writers to the limit. Returns what it did (see the module's docstring)."""
    from prefect.client.orchestration import get_client

    from clarion import serve

    url = require_server()
    source = Path(path) if path is not None else serve.find_prefect_yaml(config_path)
    specs = serve.specs(config_path, source)  # checked before anything is created
    folder = Path(config_path).resolve().parent if config_path is not None else Path.cwd()
    with get_client(sync_client=True) as client:
        pool_created = _ensure_pool(client, pool)
        limit, limit_created = _ensure_limit(client)
        registered = []
        for spec in specs:
            deployment_id = _register(spec, pool, folder, paused)
            limited = LIMIT in spec.tags
            client.request(
                "PATCH",
                "/deployments/{id}",
                path_params={"id": deployment_id},
                json={
                    # run in the project folder, from the installed code: no copy of the folder
                    "pull_steps": [
                        {"prefect.deployments.steps.set_working_directory": {"directory": str(folder)}}
                    ],
                    "global_concurrency_limit_id": str(limit.id) if limited else None,
                    "concurrency_options": ENQUEUE if limited else None,
                },
            )
            registered.append(
                {"name": spec.name, "full_name": spec.full_name, "id": str(deployment_id), "limited": limited}
            )
    log.info("registered %d deployments on work pool %s at %s", len(registered), pool, url)
    return {
        "server": url,
        "source": str(source),
        "folder": str(folder),
        "pool": {"name": pool, "type": POOL_TYPE, "created": pool_created},
        "limit": {"name": LIMIT, "slots": limit.limit, "created": limit_created},
        "deployments": registered,
        "paused": paused,
        "worker": f"clarion worker --pool {pool}" if pool != POOL else "clarion worker",
    }


def _ensure_pool(client: Any, name: str) -> bool:
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    try:
        existing = client.read_work_pool(name)
    except ObjectNotFound:
        template = ProcessWorker.get_default_base_job_template()
        template["variables"]["properties"]["env"]["default"] = dict(RUN_ENV)
        client.create_work_pool(WorkPoolCreate(name=name, type=POOL_TYPE, base_job_template=template))
        return True
    if existing.type != POOL_TYPE:
        raise OpsError(
            f"the work pool {name!r} exists with type {existing.type!r}, not {POOL_TYPE!r}; Clarion's "
            f"deployments run as local processes: give another pool with --pool, or delete this one "
            f"(`prefect work-pool delete {name}`)"
        )
    return False


def _ensure_limit(client: Any) -> tuple[Any, bool]:
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectNotFound

    try:
        return client.read_global_concurrency_limit_by_name(LIMIT), False
    except ObjectNotFound:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=LIMIT, limit=LIMIT_SLOTS))
        return client.read_global_concurrency_limit_by_name(LIMIT), True


def _register(spec: Any, pool: str, folder: Path, paused: bool) -> Any:
    """Register one deployment on the pool (created, or updated in place) and return its id."""
    deployment = spec.to_deployment(paused=paused)
    # Left out of the update, not sent as null: a null concurrency_limit makes the server delete the
    # limit the deployment is linked to (shared by every writer).
    deployment.model_fields_set.discard("concurrency_limit")
    deployment.job_variables = {"working_dir": str(folder), "env": dict(RUN_ENV)}
    return deployment.apply(work_pool_name=pool)
