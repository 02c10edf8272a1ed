"""Extraction from a HubSpot-CRM-v3-like API: the same rows as the files, paging, rate limits, transient
errors, incremental searches on lastmodifieddate, quarantine by key, tokens and property mappings.

Every API here is `HubSpotMock`, a real HTTP server on 127.0.0.1 serving a generated export."""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from extract_helpers import (
    accounting,
    by_entity,
    defects,
    make_settings,
    quarantined_keys,
    query,
    raw_fingerprint,
    run_extract,
)
from hubspot_mock import OBJECTS, HubSpotMock, read_entity

from clarion.config import GenerateSettings, Settings
from clarion.contract import ENTITIES, ORDER_STATUSES
from clarion.extract.accounting import AccountingError
from clarion.extract.publish import PublishResult
from clarion.extract.readers import ExtractError
from clarion.synth.generator import generate

TOKEN_ENV = "HUBSPOT_MOCK_TEST_TOKEN"
TOKEN = "test-token"
PAGE = 100  # the source's default page size, the list endpoint's maximum
# Defect kinds a CRM cannot hold, so the API never serves them: the mock drops rows without a key and
# keeps the first of a duplicated key (the drift part files are not served at all).
UNSERVABLE = {"duplicate_row", "conflicting_duplicate", "missing_id"}


def hubspot(api: HubSpotMock, **extra: Any) -> dict[str, Any]:
    return {"kind": "hubspot", "base_url": api.url, "token_env": TOKEN_ENV, **extra}


def fingerprints(settings: Settings) -> dict[str, tuple[int, int]]:
    return {entity: raw_fingerprint(settings, entity) for entity in ENTITIES}


def text_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def copy_project(done: Settings, root: Path, sources: dict[str, Any]) -> Settings:
    """A new project whose warehouse is a copy of one an extraction already filled."""
    settings = make_settings(root, sources)
    settings.warehouse.path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(done.warehouse.path, settings.warehouse.path)
    return settings


class Mock(HubSpotMock):
    """The mock, remembering the query of every list request that reached the list route, and with
    Nagle's algorithm off: the mock writes headers and body in two sends, and without TCP_NODELAY each
    answer waits ~40 ms for the client's delayed ACK (tenfold the time of a whole extraction here)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.list_queries: list[tuple[str, dict[str, str]]] = []
        self.arrivals: list[float] = []  # monotonic time of each request, in request order

    def start(self) -> Mock:
        super().start()
        assert self._server is not None

        class Handler(self._server.RequestHandlerClass):  # type: ignore[name-defined]
            disable_nagle_algorithm = True

        self._server.RequestHandlerClass = Handler
        return self

    def _admit(self, authorization: str | None) -> None:
        with self._lock:
            self.arrivals.append(time.monotonic())
        super()._admit(authorization)

    def _list(self, obj: str, query: dict[str, list[str]]) -> dict[str, Any]:
        with self._lock:
            self.list_queries.append((obj, {k: v[-1] for k, v in query.items()}))
        return super()._list(obj, query)


@pytest.fixture(scope="module")
def token_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(TOKEN_ENV, TOKEN)
        yield


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 customers, no defects, CSV."""
    out = tmp_path_factory.mktemp("api") / "crm"
    generate(GenerateSettings(customers=200, seed=7, defects=0.0, format="csv"), out=out)
    return out


@pytest.fixture(scope="module")
def from_files(export: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, int]]:
    """raw's fingerprints after extracting the export as files: what every API extraction must equal."""
    settings = make_settings(
        tmp_path_factory.mktemp("files"), {"crm": {"kind": "files", "path": str(export)}}
    )
    results = run_extract(settings)
    assert {r.entity for r in results} == set(ENTITIES)
    assert all(r.quarantined == 0 for r in results)
    return fingerprints(settings)


@dataclass
class ApiRun:
    settings: Settings
    results: list[PublishResult]
    log: list[tuple[str, str, int]]


@pytest.fixture(scope="module")
def api_run(export: Path, token_env: None, tmp_path_factory: pytest.TempPathFactory) -> ApiRun:
    """One full extraction of the export through a well-behaved API (source "hs")."""
    with Mock(export) as api:
        settings = make_settings(tmp_path_factory.mktemp("api_run"), {"hs": hubspot(api)})
        results = run_extract(settings)
        return ApiRun(settings, results, list(api.log))


def test_full_api_extraction_loads_the_same_raw_rows_as_the_files(
    api_run: ApiRun, from_files: dict[str, tuple[int, int]]
) -> None:
    assert {r.entity for r in api_run.results} == set(ENTITIES)
    for r in api_run.results:
        assert (r.status, r.quarantined, r.read) == ("loaded", 0, r.inserted), r
    assert fingerprints(api_run.settings) == from_files
    assert all(rows > 0 for rows, _ in from_files.values())
    # a first extraction lists every object, after asking its search once how many records there are
    searches = [path for method, path, _ in api_run.log if method == "POST"]
    assert sorted(searches) == sorted(f"/crm/v3/objects/{obj}/search" for obj in OBJECTS)
    assert {(method, status) for method, _, status in api_run.log} == {("GET", 200), ("POST", 200)}
    assert {path.rsplit("/", 1)[-1] for method, path, _ in api_run.log if method == "GET"} == set(OBJECTS)


def test_paging_rate_limits_and_a_transient_error_lose_no_row(
    export: Path, token_env: None, from_files: dict[str, tuple[int, int]], tmp_path: Path
) -> None:
    with Mock(export, rate_limit_every=30, retry_after=1, fail_requests={4}) as api:
        settings = make_settings(tmp_path, {"hs": hubspot(api)})
        results = by_entity(run_extract(settings))
        served = {obj: len(api.records(obj)) for obj in OBJECTS}
    assert fingerprints(settings) == from_files
    for obj, entity in OBJECTS.items():
        assert results[entity].read == served[obj], (obj, results[entity])  # no page read twice or lost

    statuses = [status for _, _, status in api.log]
    assert statuses.count(429) >= 1
    assert statuses.count(500) == 1 and api.log[3][2] == 500  # request 4, then retried
    assert set(statuses) == {200, 429, 500}
    # one search per object for its total, then the list
    assert {(method, path.endswith("/search")) for method, path, _ in api.log} == {
        ("GET", False),
        ("POST", True),
    }
    assert len(api.arrivals) == len(api.log)
    for i, (method, path, status) in enumerate(api.log):
        if status in (429, 500):  # the same request again, after Retry-After (429) or a back-off (500)
            assert api.log[i + 1][:2] == (method, path)
            assert api.arrivals[i + 1] - api.arrivals[i] >= 0.9, (i, status)
    # every answered list request was paged with the `after` cursor of the page before
    assert sum(1 for method, _, s in api.log if (method, s) == ("GET", 200)) == len(api.list_queries)
    for obj, rows in served.items():
        queries = [q for o, q in api.list_queries if o == obj]
        assert len(queries) == math.ceil(rows / PAGE), obj
        assert all(q.get("limit") == str(PAGE) for q in queries)
        assert "after" not in queries[0]
        afters = [q.get("after") for q in queries[1:]]
        assert None not in afters and len(set(afters)) == len(afters), obj
        if rows > PAGE:
            assert len(queries) > 1, obj


def test_second_extraction_searches_only_rows_modified_since_the_last_and_merges_them(
    export: Path, token_env: None, api_run: ApiRun, tmp_path: Path
) -> None:
    with Mock(export) as api:
        settings = copy_project(api_run.settings, tmp_path, {"hs": hubspot(api)})
        [(orders_max, max_id, orders_before)] = query(
            settings, "select max(updated_at), max(order_id), count(*) from raw.orders"
        )
        [(contacts_max,)] = query(settings, "select max(updated_at) from raw.contacts")
        now = datetime.now(UTC)
        assert orders_max < now and contacts_max < now

        def later(previous: datetime, i: int) -> str:
            """A cursor value after the latest one in raw, and not in the future."""
            moment = (previous + (now - previous) / 2).replace(microsecond=0) + timedelta(seconds=i)
            assert previous < moment < now
            return text_time(moment)

        deals = read_entity(export / "orders.csv").to_pylist()
        changed = []
        for i, row in enumerate(deals[10:13]):
            status = next(s for s in ORDER_STATUSES if s != row["status"])
            changed.append(row | {"status": status, "updated_at": later(orders_max, i)})
        new = [
            deals[20] | {"order_id": str(max_id + 1), "updated_at": later(orders_max, 3)},
            deals[21] | {"order_id": str(max_id + 2), "updated_at": later(orders_max, 4)},
        ]
        contact = read_entity(export / "contacts.csv").to_pylist()[5]
        contact |= {"last_name": "Changed-Since", "updated_at": later(contacts_max, 0)}
        api.upsert("deals", changed + new)
        api.upsert("contacts", [contact])
        api.clear_log()
        results = by_entity(run_extract(settings))
        log = list(api.log)

    assert log and {(method, path.endswith("/search"), status) for method, path, status in log} == {
        ("POST", True, 200)
    }
    assert {path.split("/")[-2] for _, path, _ in log} == set(OBJECTS)
    assert (results["orders"].inserted, results["orders"].updated, results["orders"].quarantined) == (2, 3, 0)
    assert (results["contacts"].inserted, results["contacts"].updated) == (0, 1)
    for entity, r in results.items():
        assert r.read == r.loaded + r.quarantined
        if entity not in ("orders", "contacts"):
            assert (r.inserted, r.updated) == (0, 0), r
            assert r.read >= 1  # the rows at the latest cursor come back, unchanged
    assert results["orders"].read < len(deals)  # a search, not the whole list again

    ids = [int(row["order_id"]) for row in changed + new]
    got = {
        order_id: (status, updated)
        for order_id, status, updated in query(
            settings,
            "select order_id, status, updated_at from raw.orders where list_contains(?, order_id)",
            [ids],
        )
    }
    want = {int(row["order_id"]): (row["status"], row["updated_at"]) for row in changed + new}
    assert {k: (s, text_time(u)) for k, (s, u) in got.items()} == want
    [(orders_after,)] = query(settings, "select count(*) from raw.orders")
    assert orders_after == orders_before + 2
    assert query(
        settings, "select last_name from raw.contacts where contact_id = ?", [int(contact["contact_id"])]
    ) == [("Changed-Since",)]


def test_defective_rows_served_by_the_api_are_quarantined_by_key_with_their_reason(
    token_env: None, tmp_path: Path
) -> None:
    folder = tmp_path / "crm"
    generate(GenerateSettings(customers=150, seed=5, defects=0.02, format="csv"), out=folder)
    listed = defects(folder)
    servable = [
        d
        for d in listed
        if d["file"] == f"{d['entity']}.csv" and d["kind"] not in UNSERVABLE  # main files only
    ]
    expected = {(d["entity"], d["key"]): d["reason"] for d in servable if d["expected"] == "quarantine"}
    clean = [d for d in servable if d["expected"] != "quarantine"]
    assert len(expected) > 20 and {reason for reason in expected.values()} >= {"orphan", "invalid_enum"}

    with Mock(folder) as api:
        settings = make_settings(tmp_path / "project", {"hs": hubspot(api)})
        results = run_extract(settings)

    assert quarantined_keys(settings) == expected
    for r in results:
        assert r.read == r.loaded + r.quarantined
        assert r.quarantined == sum(1 for entity, _ in expected if entity == r.entity), r
    for row in accounting(settings):
        assert row["read"] == row["loaded"] + row["quarantined"]
    for entity, key in expected:
        pk = ENTITIES[entity].primary_key
        assert query(settings, f'select count(*) from raw."{entity}" where "{pk}" = ?', [int(key)]) == [(0,)]
    assert clean, "the export should plant a row that loads once normalised"
    for d in clean:
        pk = ENTITIES[d["entity"]].primary_key
        assert query(
            settings, f'select count(*) from raw."{d["entity"]}" where "{pk}" = ?', [int(d["key"])]
        ) == [(1,)]


def test_a_refused_token_fails_naming_the_source_without_the_token_and_leaves_raw_alone(
    export: Path, api_run: ApiRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "wrong-token-5f1c9a7e"
    monkeypatch.setenv(TOKEN_ENV, wrong)
    with Mock(export) as api:
        settings = copy_project(api_run.settings, tmp_path, {"hs": hubspot(api)})
        before = fingerprints(settings), accounting(settings), quarantined_keys(settings)
        with pytest.raises(ExtractError) as caught:
            run_extract(settings)
        log = list(api.log)
    message = str(caught.value)
    assert "source hs" in message
    assert "401" in message and "Unauthorized" in message
    assert wrong not in message
    assert log == [("POST", "/crm/v3/objects/contacts/search", 401)]  # refused, not retried
    assert (fingerprints(settings), accounting(settings), quarantined_keys(settings)) == before
    assert before[0] == fingerprints(api_run.settings)


@pytest.mark.usefixtures("prefect_server")
def test_the_token_can_come_from_a_prefect_secret_block(
    export: Path, from_files: dict[str, tuple[int, int]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.blocks.system import Secret

    monkeypatch.delenv(TOKEN_ENV, raising=False)
    Secret(value="block-token-3d8e").save("hubspot-token-test", overwrite=True)
    with Mock(export, token="block-token-3d8e") as api:
        source = {
            "kind": "hubspot",
            "base_url": api.url,
            "token_secret": "hubspot-token-test",
            "objects": {"contacts": "contacts"},
        }
        settings = make_settings(tmp_path, {"hs": source})
        [result] = run_extract(settings)
        log = list(api.log)
    assert (result.entity, result.inserted, result.quarantined) == ("contacts", 200, 0)
    assert raw_fingerprint(settings, "contacts") == from_files["contacts"]
    assert log and all(status == 200 for _, _, status in log)

    missing = make_settings(tmp_path / "missing", {"hs": source | {"token_secret": "no-such-hubspot-token"}})
    with pytest.raises(
        ExtractError, match=r"source hs: no Prefect Secret block named 'no-such-hubspot-token'"
    ):
        run_extract(missing)


def test_a_property_mapping_renames_an_api_property_to_the_contract_column(
    export: Path, token_env: None, tmp_path: Path
) -> None:
    csv_contacts = read_entity(export / "contacts.csv")
    served = csv_contacts.rename_columns(
        ["email_address" if c == "email" else c for c in csv_contacts.column_names]
    )
    assert "email" not in served.column_names
    with Mock(tables={"contacts": served}) as api:
        source = hubspot(
            api, objects={"contacts": "contacts"}, columns={"contacts": {"email_address": "email"}}
        )
        settings = make_settings(tmp_path, {"hs": source})
        [result] = run_extract(settings)
    assert (result.entity, result.inserted, result.quarantined) == ("contacts", csv_contacts.num_rows, 0)
    want = {
        int(i): e
        for i, e in zip(
            csv_contacts.column("contact_id").to_pylist(),
            csv_contacts.column("email").to_pylist(),
            strict=True,
        )
    }
    assert sum(1 for e in want.values() if e) > 100
    assert dict(query(settings, "select contact_id, email from raw.contacts")) == want


# -- the API's own counts against the rows that landed ---------------------------------------------------


def test_a_list_whose_paging_stops_early_fails_the_load_naming_both_counts_and_publishes_nothing(
    export: Path, token_env: None, tmp_path: Path
) -> None:
    with Mock(export, stop_paging_after=PAGE) as api:
        settings = make_settings(tmp_path, {"hs": hubspot(api, objects={"contacts": "contacts"})})
        served = len(api.records("contacts"))
        with pytest.raises(AccountingError) as failed:
            run_extract(settings)
    assert served > PAGE  # the first page already says there is nothing more
    message = str(failed.value)
    assert "source hs, entity contacts:" in message
    assert f"said {served:,} records match but served {PAGE:,} distinct ones" in message
    assert "Its paging stopped early" in message and "Run `clarion extract` again" in message
    assert "nothing was published" in message
    assert query(settings, "select count(*) from raw.contacts") == [(0,)]
    assert accounting(settings) == []


def test_a_search_whose_paging_stops_early_fails_the_load_and_leaves_raw_as_it_was(
    export: Path, token_env: None, api_run: ApiRun, tmp_path: Path
) -> None:
    with Mock(export) as api:
        source = hubspot(api, objects={"deals": "orders"}, page_size=2)
        settings = copy_project(api_run.settings, tmp_path, {"hs": source})
        [(latest,)] = query(settings, "select max(updated_at) from raw.orders")
        deals = read_entity(export / "orders.csv").to_pylist()[:5]
        moment = text_time(latest + (datetime.now(UTC) - latest) / 2)
        api.upsert("deals", [row | {"status": "returned", "updated_at": moment} for row in deals])
        matching = sum(  # what the search for modified >= latest finds, counted from the served records
            1
            for record in api.records("deals")
            if datetime.fromisoformat(record["properties"]["hs_lastmodifieddate"]) >= latest
        )
        before = fingerprints(settings), accounting(settings), quarantined_keys(settings)
        api.stop_paging_after = 2  # the first page of the search is the last
        with pytest.raises(AccountingError) as failed:
            run_extract(settings)
    assert matching >= 5
    message = str(failed.value)
    assert "source hs, entity orders:" in message
    assert f"said {matching:,} records match but served 2 distinct ones" in message
    assert (fingerprints(settings), accounting(settings), quarantined_keys(settings)) == before


def test_records_lost_between_the_api_pages_and_the_landing_fail_the_load(
    export: Path, token_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deliberately lossy reader (the last record of each page dropped before landing): the records
    the raw pages held tell."""
    import clarion.extract.sources as sources

    keep = sources.with_position

    def lossy(table: Any, counter: dict[str, int], file: str | None = None) -> Any:
        return keep(table.slice(0, table.num_rows - 1), counter, file)

    monkeypatch.setattr(sources, "with_position", lossy)
    with Mock(export) as api:
        settings = make_settings(tmp_path, {"hs": hubspot(api, objects={"products": "products"})})
        served = len(api.records("products"))
        with pytest.raises(AccountingError) as failed:
            run_extract(settings)
    pages = math.ceil(served / PAGE)
    assert served > 0
    assert (
        f"source hs, entity products: the API served {served:,} records of products in {pages} "
        f"page(s) but the reader produced {served - pages:,} rows" in str(failed.value)
    )
    assert query(settings, "select count(*) from raw.products") == [(0,)]
