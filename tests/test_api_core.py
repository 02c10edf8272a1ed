"""The API's foundation: the read snapshot, the key store, authentication, problem details, request ids."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import duckdb
import pytest
from api_helpers import LiveServer

from clarion import snapshot
from clarion.api import create_app
from clarion.api.keys import ApiKeyError, KeyStore
from clarion.api.permissions import PERMISSIONS, ROLES, allowed, table_markdown
from clarion.warehouse import Warehouse


def _count(path: Path) -> int:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("select count(*) from audit.t").fetchone()[0]
    finally:
        con.close()


def test_snapshot_is_published_when_the_outermost_writer_session_ends(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "w.duckdb", snapshot=True)
    assert snapshot.current(wh.path) is None
    with wh.connect("one") as con:
        con.execute("create table audit.t (x int)")
        con.execute("insert into audit.t values (1)")
    first = snapshot.current(wh.path)
    assert first is not None and _count(first) == 1

    with wh.writing("run"):
        with wh.connect("stage 1") as con:
            con.execute("insert into audit.t values (2)")
        # a stage finished but the run did not: readers still see the state before the run
        assert snapshot.current(wh.path) == first and _count(first) == 1
        with wh.connect("stage 2") as con:
            con.execute("insert into audit.t values (3)")
    second = snapshot.current(wh.path)
    assert second != first and _count(second) == 3
    assert not first.exists(), "an older snapshot must go (an erasure must not survive in a copy)"
    assert sorted(p.name for p in snapshot.folder(wh.path).iterdir()) == sorted([second.name, "CURRENT"])


def test_a_failed_writer_session_publishes_nothing(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "w.duckdb", snapshot=True)
    with wh.connect() as con:
        con.execute("create table audit.t (x int)")
    before = snapshot.current(wh.path)
    with pytest.raises(RuntimeError), wh.connect() as con:
        con.execute("insert into audit.t values (9)")
        raise RuntimeError("stage failed")
    assert snapshot.current(wh.path) == before and _count(before) == 0


def test_no_snapshot_without_the_setting(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.ensure()
    assert snapshot.current(wh.path) is None and not snapshot.folder(wh.path).exists()


def test_reader_follows_the_current_snapshot(project) -> None:
    from clarion.api.reads import NoSnapshotError, Reader

    settings = project()
    reader = Reader(settings)
    with pytest.raises(NoSnapshotError, match="run the pipeline once"):
        reader.settings()
    wh = Warehouse.from_settings(settings)
    with wh.connect() as con:
        con.execute("create table audit.t (x int)")
    with reader.cursor() as cur:
        assert cur.execute("select count(*) from audit.t").fetchone() == (0,)
    first = reader.path
    assert reader.settings().warehouse.path == first and first != settings.warehouse.path
    with wh.connect() as con:
        con.execute("insert into audit.t values (1)")
    import time

    time.sleep(0.6)  # the reader looks at CURRENT at most twice a second
    with reader.cursor() as cur:
        assert cur.execute("select count(*) from audit.t").fetchone() == (1,)
    assert reader.path != first
    reader.close()


def test_a_snapshot_replaced_within_the_check_interval_is_never_handed_out(project) -> None:
    """A publish deletes the snapshot it replaces at once. Settings handed out right after (before
    the twice-a-second look at CURRENT) must name a file that exists: the views open it by path."""
    from clarion.api.reads import Reader

    settings = project()
    wh = Warehouse.from_settings(settings)
    with wh.connect() as con:
        con.execute("create table audit.t (x int)")
    reader = Reader(settings)
    first = reader.settings().warehouse.path
    with wh.connect() as con:  # another writer publishes: `first` is deleted
        con.execute("insert into audit.t values (1)")
    assert not first.exists()
    now = reader.settings().warehouse.path  # well within the check interval
    assert now != first and now.exists()
    with Warehouse.from_settings(reader.settings()).read() as con:  # what a view function does
        assert con.execute("select count(*) from audit.t").fetchone() == (1,)
    reader.close()


# ----------------------------------------------------------------------------------------------
def test_two_sign_ins_with_one_key_in_one_second_are_two_sessions(tmp_path: Path) -> None:
    """A session (and a bearer token) carries a nonce: without it, two sign-ins with the same key in
    the same second were the same cookie, and one browser's CSRF token was good for the other."""
    from clarion.api.auth import TOKEN_PREFIX, Authenticator

    store = KeyStore(tmp_path / "keys.sqlite")
    record, _ = store.create("lead", "approver", by="os:tester")
    auth = Authenticator(store, token_minutes=5, session_minutes=5)
    first, second = auth.issue_session(record), auth.issue_session(record)
    assert first != second
    assert auth.sessions.verify(first)["k"] == auth.sessions.verify(second)["k"] == record.key_id
    assert auth.issue_token(record) != auth.issue_token(record)
    assert auth.tokens.verify(auth.issue_token(record)[len(TOKEN_PREFIX) :])["k"] == record.key_id


def test_key_store_keeps_only_a_hash(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    record, key = store.create("crm-sync", "service", by="os:tester")
    assert key.startswith(f"clk_{record.key_id}_") and record.role == "service"
    secret = key.rsplit("_", 1)[1]
    assert secret.encode() not in (tmp_path / "keys.sqlite").read_bytes()
    assert store.verify(key).name == "crm-sync"
    assert store.verify(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert store.verify("clk_nothing") is None
    revoked = store.revoke("crm-sync", by="os:tester")
    assert revoked.revoked_by == "os:tester" and store.verify(key) is None
    with pytest.raises(ApiKeyError, match="revoked already"):
        store.revoke(record.key_id, by="os:tester")
    with pytest.raises(ApiKeyError, match="unknown role 'admin'"):
        store.create("x", "admin", by="t")
    with pytest.raises(ApiKeyError, match="not usable"):
        store.create("Jane.Doe@example.com", "marketer", by="t")
    rows = sqlite3.connect(tmp_path / "keys.sqlite").execute("select name, role from keys").fetchall()
    assert rows == [("crm-sync", "service")]


def test_permission_table_is_the_one_in_the_readme_and_docs() -> None:
    table = table_markdown()
    for doc in ("README.md", "docs/api.md"):
        text = (Path(__file__).resolve().parents[1] / doc).read_text()
        assert table in text, f"{doc} must print the permission table of clarion/api/permissions.py"
    assert allowed("approver", "draft:decide") and not allowed("marketer", "draft:decide")
    assert not allowed("engineer", "no:such") and set(ROLES) == PERMISSIONS["read:aggregates"][1]


# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_api(tmp_path_factory):
    from clarion.config import load_settings

    root = tmp_path_factory.mktemp("tiny_api")
    (root / "clarion.yaml").write_text("warehouse:\n  path: var/warehouse.duckdb\n")
    settings = load_settings(root / "clarion.yaml", env={})
    Warehouse.from_settings(settings).ensure()
    store = KeyStore.for_settings(settings)
    keys = {role: store.create(f"k-{role}", role, by="tests")[1] for role in ROLES}
    with LiveServer(create_app(settings)) as server:
        yield server, keys, store


def test_every_way_to_authenticate_and_revocation_ends_them_all(tiny_api) -> None:
    server, _, store = tiny_api
    _, key = store.create("short-lived", "marketer", by="tests")
    with server.client() as c:
        assert c.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"}).json()["role"] == "marketer"
        assert c.get("/api/v1/me", headers={"X-API-Key": key}).json()["name"] == "short-lived"
        key_id = key.split("_")[1]
        tok = c.post(
            "/api/v1/token",
            data={"grant_type": "client_credentials", "client_id": key_id, "client_secret": key},
        )
        assert tok.status_code == 200 and tok.json()["token_type"] == "bearer"
        token = tok.json()["access_token"]
        me = c.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()
        assert (
            me["via"] == "token"
            and "draft:edit" in me["permissions"]
            and "draft:decide" not in me["permissions"]
        )
        store.revoke("short-lived", by="tests")
        for headers in ({"Authorization": f"Bearer {key}"}, {"Authorization": f"Bearer {token}"}):
            r = c.get("/api/v1/me", headers=headers)
            assert r.status_code == 401 and "revoked" in r.json()["detail"]
        bad = c.post(
            "/api/v1/token",
            data={"grant_type": "client_credentials", "client_id": key_id, "client_secret": key},
        )
        assert bad.status_code == 401
        wrong_grant = c.post(
            "/api/v1/token", data={"grant_type": "password", "client_id": "a", "client_secret": "b"}
        )
        assert wrong_grant.status_code == 400 and "client_credentials" in wrong_grant.json()["detail"]


def test_errors_are_problem_details_with_the_request_id(tiny_api) -> None:
    server, _, _ = tiny_api
    with server.client() as c:
        r = c.get("/api/v1/me")
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
        assert r.headers["www-authenticate"].startswith("Bearer")
        body = r.json()
        assert body["status"] == 401 and "clarion api keys create" in body["detail"]
        assert body["request_id"] == r.headers["x-request-id"]
        r = c.get("/api/v1/nowhere", headers={"X-Request-ID": "trace-abc-123"})
        assert r.status_code == 404 and r.json()["request_id"] == "trace-abc-123"
        r = c.get("/api/v1/me", headers={"X-Request-ID": "bad id with spaces"})
        assert r.headers["x-request-id"] != "bad id with spaces" and len(r.headers["x-request-id"]) == 32
        r = c.post("/api/v1/token", data={"grant_type": "client_credentials"})
        assert r.status_code == 422 and {e["field"] for e in r.json()["errors"]} == {
            "client_id",
            "client_secret",
        }


def test_access_log_names_the_route_never_the_path(tiny_api, caplog) -> None:
    server, keys, _ = tiny_api
    with caplog.at_level(logging.INFO, logger="clarion.api.access"), server.client(keys["engineer"]) as c:
        c.get("/api/v1/customers/by-contact-id/424242?email=jane@example.com")
        c.get("/api/v1/me")
    lines = [r.getMessage() for r in caplog.records if r.name == "clarion.api.access"]
    assert len(lines) == 2 and any("/api/v1/me 200" in line and "api:k-engineer" in line for line in lines)
    assert not any("424242" in line or "jane" in line for line in lines)


def test_health_says_when_nothing_is_published(tmp_path: Path) -> None:
    from clarion.config import load_settings

    (tmp_path / "clarion.yaml").write_text("warehouse:\n  path: var/warehouse.duckdb\n")
    settings = load_settings(tmp_path / "clarion.yaml", env={})
    with LiveServer(create_app(settings)) as server, server.client() as c:
        r = c.get("/api/v1/health")
        assert r.status_code == 503 and r.json()["status"] == "no snapshot yet"
        Warehouse.from_settings(settings).ensure()
        assert c.get("/api/v1/health").json()["status"] == "ok"
