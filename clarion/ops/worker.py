"""`clarion worker`: a Prefect process worker on the pool `clarion deploy` made.

It is `prefect worker start --pool clarion --type process` with what Clarion's runs need in their
environment (the library's log lines sent to the flow run's logs); the command replaces this process,
so Ctrl-C stops the worker as it would stop Prefect's own. Each flow run is a child process that runs
in the project folder the deployment was registered from (see `clarion.ops.deploy`).
"""

from __future__ import annotations

import os
import sys

from clarion.ops.deploy import POOL, POOL_TYPE, RUN_ENV
from clarion.ops.server import OpsError, require_server


def command(pool: str = POOL, limit: int | None = None, name: str | None = None) -> list[str]:
    """The `prefect worker start` command line for ``pool``."""
    argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", POOL_TYPE]
    # no prompt to install anything; the pool is `clarion deploy`'s (with the runs' environment)
    argv += ["--install-policy", "never", "--no-create-pool-if-not-found"]
    if limit is not None:
        argv += ["--limit", str(limit)]
    if name:
        argv += ["--name", name]
    return argv


def environment() -> dict[str, str]:
    return {**os.environ, **RUN_ENV}


def check_pool(pool: str = POOL) -> None:
    """The server answers and has the pool, as a process pool; else what to run first."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    url = require_server()
    with get_client(sync_client=True) as client:
        try:
            found = client.read_work_pool(pool)
        except ObjectNotFound:
            raise OpsError(
                f"the Prefect server at {url} has no work pool {pool!r}; run `clarion deploy` first "
                "(it creates the pool and registers the deployments)"
            ) from None
    if found.type != POOL_TYPE:
        raise OpsError(
            f"the work pool {pool!r} has type {found.type!r}; a Clarion worker needs a process pool"
        )


def start(pool: str = POOL, limit: int | None = None, name: str | None = None) -> None:
    """Check the server and the pool, then become the worker (never returns)."""
    check_pool(pool)
    argv = command(pool, limit, name)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, environment())
