"""The HubSpot stand-in itself: if it pages, filters or fails wrongly, the source tests prove nothing."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import requests
from hubspot_mock import HubSpotMock, read_entity

from clarion.contract import ENTITIES

AUTH = {"Authorization": "Bearer test-token"}
CONTACTS = "/crm/v3/objects/contacts"
DEALS_SEARCH = "/crm/v3/objects/deals/search"


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small clean CSV export, made once for the module."""
    from clarion.config import GenerateSettings
    from clarion.synth.generator import generate

    result = generate(
        GenerateSettings(customers=300, seed=1, format="csv"), out=tmp_path_factory.mktemp("hs") / "crm"
    )
    return Path(result.out)


@pytest.fixture(scope="module")
def api(export: Path) -> Iterator[HubSpotMock]:
    """One well-behaved server shared by the read-only tests."""
    with HubSpotMock(export) as server:
        yield server


def _ms(timestamp: str) -> int:
    return int(datetime.fromisoformat(timestamp).timestamp() * 1000)


def _search_all(url: str, body: dict[str, Any], session: requests.Session) -> tuple[list[dict], list[int]]:
    """Every result of a search, following paging; also each page's size and the totals reported."""
    results: list[dict] = []
    sizes: list[int] = []
    after: str | None = None
    while True:
        r = session.post(url, json=body | ({"after": after} if after else {}), timeout=10)
        assert r.status_code == 200, r.text
        page = r.json()
        results += page["results"]
        sizes.append(len(page["results"]))
        if "paging" not in page:
            return results, sizes
        after = page["paging"]["next"]["after"]


def test_paging_contacts_returns_each_key_once(api: HubSpotMock, export: Path) -> None:
    expected = read_entity(export / "contacts.csv").column("contact_id").to_pylist()
    seen: list[str] = []
    url: str | None = f"{api.url}{CONTACTS}?limit=100"
    pages = 0
    with requests.Session() as session:
        session.headers.update(AUTH)
        while url:
            r = session.get(url, timeout=10)
            assert r.status_code == 200, r.text
            body = r.json()
            pages += 1
            seen += [rec["id"] for rec in body["results"]]
            # the next-page link is followed as given, as a HubSpot client does
            url = body["paging"]["next"]["link"] if "paging" in body else None
            assert pages <= 10, "paging never ended"
    assert pages == 3
    assert len(seen) == len(set(seen)) == 300
    assert sorted(seen, key=int) == seen
    assert set(seen) == set(expected)
    assert "paging" not in body


def test_record_shape(api: HubSpotMock, export: Path) -> None:
    row = read_entity(export / "orders.csv").slice(0, 1).to_pylist()[0]
    r = requests.get(f"{api.url}/crm/v3/objects/deals", params={"limit": 1}, headers=AUTH, timeout=10)
    record = r.json()["results"][0]
    iso = row["updated_at"].replace("Z", ".000Z")
    assert record["id"] == row["order_id"]
    assert record["archived"] is False
    assert record["createdAt"] == record["updatedAt"] == iso
    assert record["properties"] == row | {"hs_object_id": row["order_id"], "hs_lastmodifieddate": iso}
    # a column the export leaves empty comes back as null, not ""
    contact = requests.get(f"{api.url}{CONTACTS}", params={"limit": 1}, headers=AUTH, timeout=10).json()
    assert contact["results"][0]["properties"]["phone"] is None


def test_limit_above_100_is_capped(api: HubSpotMock) -> None:
    r = requests.get(f"{api.url}{CONTACTS}", params={"limit": 250}, headers=AUTH, timeout=10)
    body = r.json()
    assert len(body["results"]) == 100
    assert "paging" in body
    default = requests.get(f"{api.url}{CONTACTS}", headers=AUTH, timeout=10).json()
    assert len(default["results"]) == 10


def test_properties_filter(api: HubSpotMock) -> None:
    r = requests.get(
        f"{api.url}{CONTACTS}", params={"limit": 5, "properties": "email,country"}, headers=AUTH, timeout=10
    )
    for record in r.json()["results"]:
        assert set(record["properties"]) == {"email", "country", "hs_object_id", "lastmodifieddate"}
        assert record["properties"]["hs_object_id"] == record["id"]
    # the next-page link keeps the selection
    link = r.json()["paging"]["next"]["link"]
    second = requests.get(link, headers=AUTH, timeout=10).json()["results"][0]
    assert set(second["properties"]) == {"email", "country", "hs_object_id", "lastmodifieddate"}


def test_search_gte_returns_exactly_the_later_rows_sorted_and_paged(api: HubSpotMock, export: Path) -> None:
    orders = read_entity(export / "orders.csv").to_pylist()
    stamps = sorted(_ms(o["updated_at"]) for o in orders)
    threshold = stamps[len(stamps) - 250]  # about 250 rows qualify: three pages of 100
    expected = sorted(
        (_ms(o["updated_at"]), int(o["order_id"])) for o in orders if _ms(o["updated_at"]) >= threshold
    )
    body = {
        "filterGroups": [
            {"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": str(threshold)}]}
        ],
        "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
        "limit": 100,
        "properties": ["order_id", "updated_at"],
    }
    with requests.Session() as session:
        session.headers.update(AUTH)
        first = session.post(f"{api.url}{DEALS_SEARCH}", json=body, timeout=10).json()
        results, sizes = _search_all(f"{api.url}{DEALS_SEARCH}", body, session)
        # a number works as well as a string, and GT excludes the boundary
        body["filterGroups"][0]["filters"][0] |= {"operator": "GT", "value": threshold}
        gt = session.post(f"{api.url}{DEALS_SEARCH}", json=body, timeout=10).json()
    assert first["total"] == len(expected)
    assert sizes == [100, 100, len(expected) - 200]
    got = [(_ms(r["properties"]["updated_at"]), int(r["id"])) for r in results]
    assert got == expected
    assert all(_ms(r["properties"]["hs_lastmodifieddate"]) >= threshold for r in results)
    assert gt["total"] == sum(1 for s in stamps if s > threshold)


def test_search_without_filters_returns_everything(api: HubSpotMock, export: Path) -> None:
    r = requests.post(f"{api.url}/crm/v3/objects/tickets/search", json={"limit": 1}, headers=AUTH, timeout=10)
    assert r.status_code == 200
    with (export / "support_tickets.csv").open(newline="", encoding="utf-8") as fh:
        tickets = sum(1 for _ in csv.DictReader(fh))  # counted from the export the server serves
    assert tickets > 100 and r.json()["total"] == tickets


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "test-token"}])
def test_401_without_the_right_token(api: HubSpotMock, headers: dict[str, str]) -> None:
    r = requests.get(f"{api.url}{CONTACTS}", headers=headers, timeout=10)
    assert r.status_code == 401
    assert r.json()["category"] == "INVALID_AUTHENTICATION"
    assert r.json()["status"] == "error"
    assert requests.post(f"{api.url}{DEALS_SEARCH}", json={}, headers=headers, timeout=10).status_code == 401


def test_404_for_an_unknown_object(api: HubSpotMock) -> None:
    for r in (
        requests.get(f"{api.url}/crm/v3/objects/widgets", headers=AUTH, timeout=10),
        requests.post(f"{api.url}/crm/v3/objects/widgets/search", json={}, headers=AUTH, timeout=10),
    ):
        assert r.status_code == 404
        assert r.json()["status"] == "error"


def test_400_for_a_bad_json_body(api: HubSpotMock) -> None:
    r = requests.post(f"{api.url}{DEALS_SEARCH}", data=b'{"limit": ', headers=AUTH, timeout=10)
    assert r.status_code == 400
    assert r.json()["status"] == "error"


def test_429_at_the_configured_cadence(export: Path) -> None:
    with HubSpotMock(export, rate_limit_every=3, retry_after=2) as api, requests.Session() as session:
        session.headers.update(AUTH)
        responses = [session.get(f"{api.url}{CONTACTS}", params={"limit": 1}, timeout=10) for _ in range(9)]
        statuses = [r.status_code for r in responses]
        assert statuses == [200, 200, 429] * 3
        limited = responses[2]
        assert limited.headers["Retry-After"] == "2"
        assert limited.json()["category"] == "RATE_LIMITS"
        assert [s for _, _, s in api.log] == statuses


def test_configured_500_happens_once_then_the_request_succeeds(export: Path) -> None:
    with HubSpotMock(export, fail_requests={2}) as api:
        url = f"{api.url}{CONTACTS}"
        first = requests.get(url, params={"limit": 3}, headers=AUTH, timeout=10)
        failed = requests.get(url, params={"limit": 3}, headers=AUTH, timeout=10)
        retried = requests.get(url, params={"limit": 3}, headers=AUTH, timeout=10)
        assert (first.status_code, failed.status_code, retried.status_code) == (200, 500, 200)
        assert retried.json() == first.json()
        assert api.log == [("GET", CONTACTS, 200), ("GET", CONTACTS, 500), ("GET", CONTACTS, 200)]


def test_upsert_changes_what_search_returns(export: Path) -> None:
    """The incremental case: after a change, a search from the last cursor finds only the change."""
    with HubSpotMock(export) as api, requests.Session() as session:
        session.headers.update(AUTH)
        url = f"{api.url}{DEALS_SEARCH}"
        orders = api.records("deals")
        latest = max(_ms(o["properties"]["updated_at"]) for o in orders)
        since = {
            "filterGroups": [
                {"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "GT", "value": str(latest)}]}
            ],
            "limit": 100,
        }
        assert session.post(url, json=since, timeout=10).json()["total"] == 0

        changed = orders[0]["properties"] | {"status": "returned", "updated_at": "2026-07-01T10:00:00Z"}
        changed = {k: v for k, v in changed.items() if k not in ("hs_object_id", "hs_lastmodifieddate")}
        new = changed | {"order_id": "999999", "updated_at": "2026-07-01T11:00:00Z"}
        api.upsert("deals", [changed, new])

        found = session.post(url, json=since, timeout=10).json()
        assert found["total"] == 2
        assert [r["id"] for r in found["results"]] == [changed["order_id"], "999999"]
        assert found["results"][0]["properties"]["status"] == "returned"
        assert found["results"][0]["properties"]["hs_lastmodifieddate"] == "2026-07-01T10:00:00.000Z"
        assert len(api.records("deals")) == len(orders) + 1  # replaced by key, not duplicated


def test_from_tables_and_set_table() -> None:
    spec = ENTITIES["products"]
    rows = [{c: None for c in spec.column_names} for _ in range(3)]
    for i, row in enumerate(rows, start=1):
        row |= {"product_id": str(i), "name": f"p{i}", "updated_at": f"2025-01-0{i}T00:00:00Z"}
    with HubSpotMock.from_tables({"products": pa.Table.from_pylist(rows)}, token="s3cret") as api:
        headers = {"Authorization": "Bearer s3cret"}
        r = requests.get(f"{api.url}/crm/v3/objects/products", headers=headers, timeout=10)
        assert [x["id"] for x in r.json()["results"]] == ["1", "2", "3"]
        # objects the tables leave out are not served
        assert requests.get(f"{api.url}{CONTACTS}", headers=headers, timeout=10).status_code == 404
        api.set_table("products", pa.Table.from_pylist(rows[:1]))
        r = requests.get(f"{api.url}/crm/v3/objects/products", headers=headers, timeout=10)
        assert [x["id"] for x in r.json()["results"]] == ["1"]


def test_stop_closes_the_port(export: Path) -> None:
    api = HubSpotMock(export).start()
    url = f"{api.url}{CONTACTS}"
    assert requests.get(url, headers=AUTH, timeout=10).status_code == 200
    api.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(url, headers=AUTH, timeout=2)


def test_searching_an_object_on_a_property_it_lacks_is_refused_as_hubspot_does(api: HubSpotMock) -> None:
    """Deals have hs_lastmodifieddate, contacts lastmodifieddate: the other one is a 400."""
    body = {
        "filterGroups": [{"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": "0"}]}]
    }
    with requests.Session() as session:
        session.headers.update(AUTH)
        assert session.post(f"{api.url}{DEALS_SEARCH}", json=body, timeout=10).status_code == 400
        contacts = session.post(f"{api.url}/crm/v3/objects/contacts/search", json=body, timeout=10)
    assert contacts.status_code == 200 and contacts.json()["total"] > 0


def test_stop_paging_after_ends_a_list_and_a_search_early_though_records_remain(export: Path) -> None:
    """The misbehaviour a client cannot see from the page: no ``paging.next`` while more records match
    (the search's ``total`` still counts them all)."""
    with HubSpotMock(export, stop_paging_after=150) as api, requests.Session() as session:
        session.headers.update(AUTH)
        listed, pages = [], 0
        url: str | None = f"{api.url}{CONTACTS}?limit=100"
        while url:
            body = session.get(url, timeout=10).json()
            listed += body["results"]
            pages += 1
            url = body["paging"]["next"]["link"] if "paging" in body else None
        _, sizes = _search_all(f"{api.url}{DEALS_SEARCH}", {"limit": 100}, session)
        total = session.post(f"{api.url}{DEALS_SEARCH}", json={"limit": 1}, timeout=10).json()["total"]
        served = {"contacts": len(api.records("contacts")), "deals": len(api.records("deals"))}
    assert served["contacts"] == 300 and served["deals"] > 200
    assert (pages, len(listed)) == (2, 200)  # the page reaching record 150 says nothing more
    assert sizes == [100, 100] and total == served["deals"]
