"""`POST /api/v1/drafts/on-demand` on a real uvicorn server: the roles the permission table allows
get a checked draft stored pending (201), the others 403, bad requests a problem naming the field."""

from __future__ import annotations

import pytest
from api_helpers import copy_api_project, serve
from project_helpers import query

from clarion.content import runner
from clarion.content.ondemand import COMMAND

pytestmark = pytest.mark.usefixtures("prefect_server")

ROUTE = "/api/v1/drafts/on-demand"


@pytest.fixture(scope="module")
def own(api_project: dict, tmp_path_factory):
    """A copy of the API project and its own server: a stored draft must not change the shared one."""
    project = copy_api_project(api_project, tmp_path_factory.mktemp("ondemand_api"))
    for server in serve(project["settings"]):
        yield project, server


def test_a_marketer_gets_a_checked_draft_stored_pending_under_their_key(own) -> None:
    api_project, live_api = own
    body = {"brief": api_project["campaign"], "segment": api_project["segment"], "channel": "email"}
    with live_api.client(api_project["keys"]["marketer"]) as client:
        r = client.post(ROUTE, json=body)

    assert r.status_code == 201, r.text
    draft = r.json()
    assert draft["status"] == "pending" and draft["campaign"] == api_project["campaign"]
    assert draft["provenance"]["on_demand"]["requested_by"] == "api:test-marketer"
    stored = runner.show_draft(api_project["settings"], draft["draft_id"])
    assert stored["content_sha256"] == draft["content_sha256"] and stored["status"] == "pending"
    assert stored["run_id"] == draft["run_id"]
    (row,) = [
        r
        for r in runner.list_drafts(api_project["settings"], status="pending")
        if r["draft_id"] == draft["draft_id"]
    ]
    assert row["channel"] == "email"
    assert query(
        api_project["settings"], "select command from audit.runs where run_id = ?", [draft["run_id"]]
    ) == [(COMMAND,)]


@pytest.mark.parametrize("role", ["engineer", "compliance"])
def test_roles_without_draft_generate_are_refused(api_project: dict, live_api, role: str) -> None:
    body = {"brief": api_project["campaign"], "segment": api_project["segment"], "channel": "email"}
    with live_api.client(api_project["keys"][role]) as client:
        r = client.post(ROUTE, json=body)
    assert r.status_code == 403 and "draft:generate" in r.json()["detail"]


def test_a_bad_request_is_a_problem_naming_the_field(api_project: dict, live_api) -> None:
    with live_api.client(api_project["keys"]["service"]) as client:
        wrong_channel = client.post(
            ROUTE,
            json={"brief": api_project["campaign"], "segment": api_project["segment"], "channel": "sms"},
        )
        nobody = client.post(
            ROUTE, json={"brief": api_project["campaign"], "pseudonym": "p_" + "0" * 16, "channel": "email"}
        )
        inline = client.post(
            ROUTE, json={"brief": {"name": "x"}, "segment": api_project["segment"], "channel": "email"}
        )
    assert wrong_channel.status_code == 400
    assert wrong_channel.headers["content-type"].startswith("application/problem+json")
    assert wrong_channel.json()["errors"][0]["field"] == "channel"
    assert nobody.status_code == 400 and nobody.json()["errors"][0]["field"] == "pseudonym"
    fields = {e["field"] for e in inline.json()["errors"]}
    assert inline.status_code == 400 and {"brief.goal", "brief.offer", "brief.seeds"} <= fields, fields
