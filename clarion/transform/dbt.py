"""How Clarion runs its dbt project: where the warehouse is, which day the features describe.

The profile (dbt/profiles.yml) reads ``DBT_CLARION_*`` environment variables, set here from the
settings; dbt's own files (target/, logs/) go under var/dbt. The Prefect flow invokes dbt through
prefect-dbt (each node a task); tests and benchmarks use dbt's own runner with the same arguments.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb

from clarion.config import Settings
from clarion.errors import ClarionError
from clarion.warehouse import Warehouse

log = logging.getLogger(__name__)

MART_TABLES = (
    "dim_customers",
    "fct_orders",
    "fct_email_events",
    "fct_campaign_exposures",
    "fct_support_tickets",
    "customer_features",
    "customer_labels",
)


class DbtBuildError(ClarionError):
    """dbt could not build the staging models, or one of its tests failed."""

    exit_code = 4


def resolve_as_of(settings: Settings, con: duckdb.DuckDBPyConnection, explicit: date | None = None) -> date:
    """The day features describe: as asked, else the day after the latest order in raw (the data's
    'today'), else today."""
    if explicit is not None:
        return explicit
    if settings.transform.as_of is not None:
        return settings.transform.as_of
    (latest,) = con.execute("select max(ordered_at) from raw.orders").fetchone()
    if latest is None:
        return date.today()
    return latest.date() + timedelta(days=1)


def dbt_vars(as_of: date, horizon_days: int, attribution_days: int = 7) -> dict[str, Any]:
    return {"as_of": as_of.isoformat(), "horizon_days": horizon_days, "attribution_days": attribution_days}


def dbt_args(
    settings: Settings,
    command: str,
    as_of: date,
    *extra: str,
    target: str = "duckdb",
    extra_vars: dict[str, Any] | None = None,
) -> list[str]:
    """dbt's arguments. The pipeline always builds in the warehouse (target duckdb); the project's
    `postgres` target serves teams whose raw tables live in PostgreSQL (tested, run by hand).
    `extra_vars`: training snapshots add `as_of_days` and `sample_per_mille`."""
    files = settings.var_dir / "dbt"
    return [
        *command.split(),  # "build", or "docs generate"
        "--project-dir",
        str(settings.transform.dbt_project_dir),
        "--profiles-dir",
        str(settings.transform.dbt_project_dir),
        "--target",
        target,
        "--target-path",
        str(files / "target"),
        "--log-path",
        str(files / "logs"),
        "--vars",
        json.dumps(
            {
                **dbt_vars(as_of, settings.transform.horizon_days, settings.experiments.attribution_days),
                **(extra_vars or {}),
            }
        ),
        *extra,
    ]


def forget_stale_parse(settings: Settings) -> bool:
    """Remove dbt's partial-parse state unless it was written by a dbt call of ours on this very
    project: dbt's partial parsing can keep a graph that misses a new model after the project's
    files changed (seen here: a unit test's new input "not found" after an upgrade, until the
    state was removed). ``var/dbt/target/.project-hash`` holds the project's hash and the state
    file's size and time as our last call left them (:func:`remember_parse`); any difference costs
    one full parse. True when the state was removed."""
    stamp, state = _parse_files(settings)
    if stamp.exists() and stamp.read_text() == _parse_stamp(settings):
        return False
    removed = state.exists()
    state.unlink(missing_ok=True)
    stamp.unlink(missing_ok=True)
    return removed


def remember_parse(settings: Settings) -> None:
    """After a dbt call: the project and the partial-parse state it left, for the next call."""
    stamp, _ = _parse_files(settings)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(_parse_stamp(settings))


def _parse_files(settings: Settings) -> tuple[Path, Path]:
    target = settings.var_dir / "dbt" / "target"
    return target / ".project-hash", target / "partial_parse.msgpack"


def _parse_stamp(settings: Settings) -> str:
    _, state = _parse_files(settings)
    written = f"{state.stat().st_size}/{state.stat().st_mtime_ns}" if state.exists() else "none"
    return f"{project_digest(settings)} {written}"


def project_digest(settings: Settings) -> str:
    """The sha256 of the dbt project's own files (models, macros, seeds, tests, settings), not of
    what dbt generates in it."""
    project = settings.transform.dbt_project_dir
    digest = hashlib.sha256()
    for path in sorted(p for p in project.rglob("*") if p.is_file() and not _generated(p, project)):
        digest.update(str(path.relative_to(project)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _generated(path: Path, project: Path) -> bool:
    parts = path.relative_to(project).parts
    return parts[0] in {"target", "logs", "dbt_packages"} or "__pycache__" in parts


@contextmanager
def dbt_environment(
    settings: Settings, schema: str = "staging", raw_schema: str = "raw", target: str = "duckdb"
) -> Iterator[None]:
    """The DBT_CLARION_* variables the profile reads, for the duration of a dbt call (and dbt's
    partial-parse state forgotten if the project changed since it was written). A build into
    ``staging`` first forgets what the last one was built from (clarion/transform/reuse.py): only
    the transform records it again, after a build that succeeded."""
    forget_stale_parse(settings)
    if schema == "staging":
        from clarion.transform import reuse  # it reads this module's project digest

        reuse.forget(settings)
    duckdb_config = Warehouse.from_settings(settings).duckdb_config()
    values = {
        "DBT_CLARION_TARGET": target,
        "DBT_CLARION_DUCKDB": str(settings.warehouse.path),
        "DBT_CLARION_SCHEMA": schema,
        "DBT_CLARION_RAW_SCHEMA": raw_schema,
        "DBT_CLARION_DUCKDB_THREADS": duckdb_config["threads"],
        "DBT_CLARION_DUCKDB_MEMORY": duckdb_config["memory_limit"],
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        remember_parse(settings)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def invoke_dbt(
    settings: Settings,
    command: str,
    as_of: date,
    *extra: str,
    schema: str = "staging",
    extra_vars: dict[str, Any] | None = None,
) -> Any:
    """Run dbt with its own runner (no Prefect, quiet) and return its result, failed or not."""
    from dbt.cli.main import dbtRunner

    with dbt_environment(settings, schema=schema):
        try:
            args = dbt_args(settings, command, as_of, *extra, extra_vars=extra_vars)
            return dbtRunner().invoke(["--quiet", *args])
        finally:
            release_duckdb()


def run_dbt(
    settings: Settings,
    command: str,
    as_of: date,
    *extra: str,
    schema: str = "staging",
    extra_vars: dict[str, Any] | None = None,
) -> Any:
    """`invoke_dbt` that raises on failure: segment snapshots, tests, benchmarks."""
    result = invoke_dbt(settings, command, as_of, *extra, schema=schema, extra_vars=extra_vars)
    if not result.success:
        raise DbtBuildError(f"dbt {command} failed: {describe_failure(result)}")
    return result


def release_duckdb() -> None:
    """dbt-duckdb keeps its connection to the warehouse for the life of the process; close it so
    the file is free for the next step (and for other processes once the run ends)."""
    import gc

    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # another adapter
        return
    env = DuckDBConnectionManager._ENV
    if env is not None:
        env.close()
    DuckDBConnectionManager.close_all_connections()
    gc.collect()


def describe_failure(result: Any) -> str:
    """The failing nodes of a dbt result, or the exception, in one line each."""
    if result.exception is not None:
        return str(result.exception).strip().splitlines()[0]
    failed = []
    for node in getattr(result.result, "results", None) or []:
        status = str(getattr(node, "status", "")).lower()
        if status in {"error", "fail", "runtime error"}:
            name = getattr(getattr(node, "node", None), "name", "?")
            failed.append(f"{name}: {str(getattr(node, 'message', '') or status).strip()[:300]}")
    return "; ".join(failed) or "see var/dbt/logs/dbt.log"
