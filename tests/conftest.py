"""Shared fixtures: isolated projects, one Prefect test server per session, generated CRMs, PostgreSQL,
MariaDB."""

from __future__ import annotations

import atexit
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from clarion.runtime import quiet_shutdown

REPO = Path(__file__).resolve().parents[1]

atexit.register(quiet_shutdown)  # registered first, it runs last, after pytest has printed everything
# Where the real PostgreSQL is; read before the clean-up below (it is not a settings override).
PG_DSN = os.environ.pop("CLARION_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
MARIADB_DSN = os.environ.pop("CLARION_TEST_MARIADB", "mysql://root@127.0.0.1:3306/test")

# A developer's own CLARION_* settings must not leak into the suite.
for _name in [n for n in os.environ if n.startswith("CLARION_")]:
    del os.environ[_name]

# Ctrl-C reaches a process in a terminal's foreground, where SIGINT has its default action (Python
# raises KeyboardInterrupt). A suite started in the background (`make test-slow &`, nohup) runs with
# SIGINT ignored, and an ignored signal stays ignored across fork and exec: the `clarion serve`,
# `clarion worker` and `prefect server` the tests interrupt would never see it and keep serving
# (seen: "did not stop on Ctrl-C", the process idle in its event loop, SIGINT in its SigIgn mask).
# So the suite gives SIGINT its default action back (each xdist worker imports this module in its
# main thread); a handled signal is reset to the default in every child it starts.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _prefect_home_kept() -> Iterator[None]:
    """An in-process CLI call (prepare_prefect) points PREFECT_HOME at the test's project. A passing
    test's tmp_path is removed as it ends (tmp_path_retention_policy), so a later test's `clarion`
    subprocess would inherit a folder that is gone; each test leaves the variable as it found it."""
    kept = os.environ.get("PREFECT_HOME")
    yield
    if kept is None:
        os.environ.pop("PREFECT_HOME", None)
    else:
        os.environ["PREFECT_HOME"] = kept


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One temporary Prefect server for the whole session (each costs 10-20 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A real OpenAI-compatible model server for the session: `transformers serve` on the embedded
    weights (converted as LocalLM.load converts them), offline. ``url`` is its API (…/v1), ``model``
    the name it serves the model under. Starting it costs the conversion (~20 s) and ~10 s."""
    from model_server import served_copy, transformers_serve

    root = tmp_path_factory.mktemp("model_server")
    folder = served_copy(root)
    with transformers_serve(folder, root / "serve.log") as url:
        yield {"url": url, "model": str(folder), "log": root / "serve.log"}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh project folder with its own clarion.yaml, as the working directory."""
    from clarion.config import load_settings

    def make(extra: str = "") -> object:
        (tmp_path / "clarion.yaml").write_text(
            "warehouse:\n  path: var/warehouse.duckdb\ngenerate:\n  customers: 300\n  out: var/crm\n" + extra
        )
        return load_settings(tmp_path / "clarion.yaml")

    monkeypatch.chdir(tmp_path)
    return make


def _generate(root: Path, **kw) -> tuple[Path, dict]:
    from clarion.config import GenerateSettings
    from clarion.synth.generator import generate

    out = root / "crm"
    result = generate(GenerateSettings(**kw), out=out)
    return out, result.manifest


@pytest.fixture(scope="session")
def crm_csv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """2,000 contacts with 2% defects, CSV: the suite's shared export (about a second to make)."""
    return _generate(tmp_path_factory.mktemp("crm_csv"), customers=2000, seed=11, defects=0.02, format="csv")


@pytest.fixture(scope="session")
def crm_parquet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    return _generate(
        tmp_path_factory.mktemp("crm_parquet"), customers=2000, seed=11, defects=0.02, format="parquet"
    )


@pytest.fixture(scope="session")
def crm_truth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A clean, larger export for statistical checks of the planted behaviour."""
    return _generate(
        tmp_path_factory.mktemp("crm_truth"), customers=20000, seed=3, defects=0.0, format="parquet"
    )


def postgres_or_skip(dsn: str = PG_DSN):
    """A connection to the machine's PostgreSQL. Skips only when none is reachable and CI is unset."""
    import psycopg

    try:
        return psycopg.connect(dsn, connect_timeout=5, autocommit=True)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            raise AssertionError(f"PostgreSQL at {dsn} must be reachable under CI: {exc}") from exc
        pytest.skip(f"no PostgreSQL reachable at {dsn} and CI is unset: {exc}")


@pytest.fixture
def pg_schema() -> Iterator[tuple[str, str]]:
    """A throwaway schema in the real PostgreSQL, dropped afterwards."""
    con = postgres_or_skip()
    schema = f"clarion_test_{uuid.uuid4().hex[:8]}"
    try:
        yield PG_DSN, schema
    finally:
        con.execute(f'drop schema if exists "{schema}" cascade')
        con.close()


def mariadb_or_skip(dsn: str = MARIADB_DSN):
    """A connection to the machine's MariaDB. Skips only when none is reachable and CI is unset."""
    from urllib.parse import urlsplit

    import pymysql

    parts = urlsplit(dsn)
    try:
        return pymysql.connect(
            host=parts.hostname,
            port=parts.port or 3306,
            user=parts.username or "root",
            password=parts.password or "",
            connect_timeout=5,
            autocommit=True,
        )
    except pymysql.Error as exc:
        if os.environ.get("CI"):
            raise AssertionError(f"MariaDB at {dsn} must be reachable under CI: {exc}") from exc
        pytest.skip(f"no MariaDB reachable at {dsn} and CI is unset: {exc}")


@pytest.fixture
def mariadb_database() -> Iterator[tuple[str, str]]:
    """A throwaway database in the real MariaDB, dropped afterwards: yields (dsn, database name)."""
    con = mariadb_or_skip()
    database = f"clarion_test_{uuid.uuid4().hex[:8]}"
    try:
        yield MARIADB_DSN, database
    finally:
        con.close()
        con = mariadb_or_skip()  # a fresh connection: the first may have timed out during the test
        with con.cursor() as cur:
            cur.execute(f"drop database if exists `{database}`")
        con.close()


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory, prefect_server) -> dict:
    """One uninterrupted `clarion run` of the 300-contact project (tests/project_helpers.small_project),
    shared by the lineage and resume tests. ``outputs`` is read at once, before any test changes a file."""
    from project_helpers import run_outputs, run_pipeline_in, small_project

    from clarion.config import load_settings

    root = small_project(tmp_path_factory.mktemp("small_run"))
    result = run_pipeline_in(root)
    assert result["status"] == "completed"
    return {
        "root": root,
        "settings": load_settings(root / "clarion.yaml", env={}),
        "result": result,
        "outputs": run_outputs(root, result["run_id"]),
    }


@pytest.fixture(scope="session")
def api_project(tmp_path_factory: pytest.TempPathFactory, small_run) -> dict:
    """The small run's project copied, drafted for its largest segment (the tiny brief `api-test`,
    the real model), with one API key per role: ``keys[role]``. Tests that write copy it further."""
    from api_helpers import make_api_project

    return make_api_project(tmp_path_factory.mktemp("api_project"), small_run["root"])


@pytest.fixture(scope="session")
def live_api(api_project) -> Iterator:
    """A real uvicorn server (a thread of this process) serving the API project."""
    from api_helpers import serve

    yield from serve(api_project["settings"])
