"""The Prefect server that operations talk to: the one PREFECT_API_URL names, reachable."""

from __future__ import annotations

from clarion.errors import ClarionError

START_SERVER = (
    "start one with `clarion prefect start` (kept in the background; this project's commands find it), "
    "or with `PREFECT_HOME=var/prefect prefect server start` in another terminal and set "
    "PREFECT_API_URL=http://127.0.0.1:4200/api"
)


class OpsError(ClarionError):
    """Base of the operations errors (deploy, worker, deployment runs)."""

    http_status = 400


class PrefectUnavailableError(OpsError):
    """No Prefect server is configured, or the configured one does not answer."""

    http_status = 503


def api_url() -> str:
    """The configured Prefect API, or a PrefectUnavailableError saying how to start one.

    Without PREFECT_API_URL Prefect would start a temporary server for this process alone: a work
    pool, deployments or a run registered there vanish with the process, and no worker sees them.
    """
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        raise PrefectUnavailableError(
            f"PREFECT_API_URL is not set, so there is no Prefect server to use: {START_SERVER}"
        )
    return str(url)


def require_server() -> str:
    """The API URL of a Prefect server that answers its health check."""
    from prefect.client.orchestration import get_client

    url = api_url()
    with get_client(sync_client=True) as client:
        failure = client.api_healthcheck()
    if failure is not None:
        raise PrefectUnavailableError(
            f"no Prefect server answers at {url} ({type(failure).__name__}); {START_SERVER}"
        )
    return url
