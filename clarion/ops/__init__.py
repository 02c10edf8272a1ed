"""Operations: Prefect work pool, worker and deployments (`clarion deploy`, `clarion worker`), the
deployment trigger the API uses, and alerts.

`server` finds the configured Prefect server; `deploy` registers the deployments of prefect.yaml on a
process work pool behind one concurrency limit; `worker` starts a process worker on that pool;
`deployments` lists them and starts a run. Importing these modules imports Prefect: call
`clarion.runtime.prepare_prefect` first when the process has not yet.
"""
