"""Writes through the API: decisions on drafts and data-subject requests, on a copy of the API project,
served by a real uvicorn, checked in the warehouse, the audit log, the export and the read snapshot."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from api_helpers import LiveServer, copy_api_project
from fastapi.routing import iter_route_contexts
from project_helpers import query

from clarion import snapshot
from clarion.api import create_app
from clarion.api.keys import KeyStore

LEAD = "marketing-lead"  # the approver the tiny brief `api-test` names


@pytest.fixture
def api_copy(api_project, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A fresh copy of the API project with a key named after the brief's approver, served live."""
    project = copy_api_project(api_project, tmp_path / "project", write_wait_seconds=1.0)
    _, project["keys"]["lead"] = KeyStore.for_settings(project["settings"]).create(
        LEAD, "approver", by="tests"
    )
    with LiveServer(create_app(project["settings"])) as server:
        project["server"] = server
        yield project


def _draft(project: dict[str, Any]) -> tuple[str, str]:
    ((did, sha),) = query(
        project["settings"],
        "select draft_id, content_sha256 from content.drafts "
        "where campaign = 'api-test' and status = 'pending'",
    )
    return did, sha


def _post(project: dict[str, Any], role: str, path: str, body: dict[str, Any] | None = None):
    with project["server"].client(project["keys"][role]) as c:
        return c.post(f"/api/v1{path}", json=body)


def _events(project: dict[str, Any], action: str) -> list[dict[str, Any]]:
    rows = query(
        project["settings"],
        "select actor, subject, details from audit.events where action = ? order by seq",
        [action],
    )
    return [{"actor": a, "subject": s, "details": json.loads(d) if d else {}} for a, s, d in rows]


def _snapshot_rows(project: dict[str, Any], sql: str, params: list | None = None) -> list[tuple]:
    published = snapshot.current(project["settings"].warehouse.path)
    assert published is not None
    con = duckdb.connect(str(published), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def _export_of(project: dict[str, Any]) -> dict[str, Any]:
    from clarion.content.runner import export

    [result] = export(project["settings"], "api-test")["exports"]
    return result


# ----------------------------------------------------------------------------------------------
def test_an_approval_binds_the_content_read_and_makes_the_draft_export_eligible(api_copy) -> None:
    did, sha = _draft(api_copy)
    assert did in _export_of(api_copy)["drafts_held"], "a pending draft is held back"

    r = _post(api_copy, "lead", f"/drafts/{did}/approve", {"content_sha256": sha, "note": "fine for July"})

    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["decision"], body["content_sha256"]) == ("approved", "approve", sha)
    assert (body["by"], body["principal"], body["via"], body["waiting_for"]) == (
        LEAD,
        f"api:{LEAD}",
        "api",
        None,
    )
    decisions = query(
        api_copy["settings"],
        "select decision, decided_by, principal, via, content_sha256, note from content.decisions "
        "where draft_id = ?",
        [did],
    )
    assert decisions == [("approve", LEAD, f"api:{LEAD}", "api", sha, "fine for July")]
    [event] = [e for e in _events(api_copy, "draft.approved") if e["subject"] == did]
    assert event["actor"] == LEAD and event["details"]["principal"] == f"api:{LEAD}"
    assert event["details"]["via"] == "api" and event["details"]["content_sha256"] == sha
    # the write published a new read snapshot: readers see the approval at once
    assert _snapshot_rows(api_copy, "select status from content.drafts where draft_id = ?", [did]) == [
        ("approved",)
    ]
    exported = _export_of(api_copy)
    assert exported["drafts_exported"] == [did] and did not in exported["drafts_held"]
    assert exported["recipients"] > 0


def test_a_high_risk_draft_needs_a_second_principal(api_copy) -> None:
    from clarion.content.review import decide

    brief = api_copy["root"] / "campaigns" / "api-test.yaml"
    brief.write_text(brief.read_text() + "risk_tier: high\n")  # not part of the copy's sha256
    did, sha = _draft(api_copy)

    first = _post(api_copy, "lead", f"/drafts/{did}/approve", {"content_sha256": sha})
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "pending" and "2 distinct" in first.json()["waiting_for"]
    assert _export_of(api_copy)["drafts_held"][did].startswith("status pending")
    again = _post(api_copy, "lead", f"/drafts/{did}/approve", {"content_sha256": sha})
    assert again.status_code == 400 and f"already approved by api:{LEAD}" in again.json()["detail"]

    second = decide(api_copy["settings"], did, "approve", LEAD, None)  # the CLI: the OS account
    assert second["status"] == "approved" and second["principal"].startswith("os:")
    assert _export_of(api_copy)["drafts_exported"] == [did]


def test_only_an_approver_the_brief_names_may_approve(api_copy) -> None:
    did, sha = _draft(api_copy)
    r = _post(api_copy, "approver", f"/drafts/{did}/approve", {"content_sha256": sha})
    assert (
        r.status_code == 403
        and "'test-approver' is not an approver of campaign api-test" in r.json()["detail"]
    )
    assert query(
        api_copy["settings"], "select count(*) from content.decisions where draft_id = ?", [did]
    ) == [(0,)]


def test_a_rejection_needs_a_reason(api_copy) -> None:
    did, sha = _draft(api_copy)
    for body in ({"content_sha256": sha}, {"content_sha256": sha, "reason": "   "}):
        r = _post(api_copy, "lead", f"/drafts/{did}/reject", body)
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
        assert [e["field"] for e in r.json()["errors"]] == ["reason"], r.json()
    bad_sha = _post(api_copy, "lead", f"/drafts/{did}/reject", {"content_sha256": "abc", "reason": "no"})
    assert bad_sha.status_code == 422 and [e["field"] for e in bad_sha.json()["errors"]] == ["content_sha256"]

    r = _post(api_copy, "lead", f"/drafts/{did}/reject", {"content_sha256": sha, "reason": "tone is off"})

    assert r.status_code == 200 and r.json()["status"] == "rejected"
    assert query(
        api_copy["settings"],
        "select decision, note, principal from content.decisions where draft_id = ?",
        [did],
    ) == [("reject", "tone is off", f"api:{LEAD}")]
    [event] = [e for e in _events(api_copy, "draft.rejected") if e["subject"] == did]
    assert event["details"]["principal"] == f"api:{LEAD}" and "tone is off" not in json.dumps(event)
    again = _post(api_copy, "lead", f"/drafts/{did}/approve", {"content_sha256": sha})
    assert again.status_code == 409 and "already rejected" in again.json()["detail"]


def test_an_edit_reopens_the_draft_keeps_the_old_approval_and_voids_the_old_sha(api_copy) -> None:
    did, sha = _draft(api_copy)
    assert _post(api_copy, "lead", f"/drafts/{did}/approve", {"content_sha256": sha}).status_code == 200

    r = _post(
        api_copy,
        "marketer",
        f"/drafts/{did}/edit",
        {"part": "email_subject", "text": "We kept something for you: 15% off", "reason": "warmer subject"},
    )

    assert r.status_code == 200, r.text
    edited = r.json()
    assert edited["status"] == "pending" and edited["previous_sha256"] == sha
    new_sha = edited["content_sha256"]
    assert new_sha != sha and {c["name"] for c in edited["checks"]}
    rows = query(
        api_copy["settings"],
        "select decision, content_sha256, principal, via, note from content.decisions where draft_id = ? "
        "order by decided_at",
        [did],
    )
    assert rows == [
        ("approve", sha, f"api:{LEAD}", "api", None),
        ("edit", new_sha, "api:test-marketer", "api", "edited email_subject: warmer subject"),
    ]
    [event] = [e for e in _events(api_copy, "draft.edited") if e["subject"] == did]
    assert event["actor"] == "test-marketer" and event["details"]["principal"] == "api:test-marketer"
    assert _export_of(api_copy)["drafts_held"][did].startswith("status pending")

    stale = _post(api_copy, "lead", f"/drafts/{did}/approve", {"content_sha256": sha})
    assert stale.status_code == 409 and stale.headers["content-type"] == "application/problem+json"
    assert "edited since" in stale.json()["detail"] and new_sha[:12] in stale.json()["detail"]
    fresh = _post(api_copy, "lead", f"/drafts/{did}/approve", {"content_sha256": new_sha})
    assert fresh.status_code == 200 and fresh.json()["status"] == "approved"
    assert _export_of(api_copy)["drafts_exported"] == [did]

    wrong_part = _post(
        api_copy, "marketer", f"/drafts/{did}/edit", {"part": "sms", "text": "x", "reason": "y"}
    )
    assert wrong_part.status_code == 400 and "not 'sms'" in wrong_part.json()["detail"]
    unknown = _post(api_copy, "lead", "/drafts/no-such-draft/approve", {"content_sha256": sha})
    assert unknown.status_code == 404 and "no draft 'no-such-draft'" in unknown.json()["detail"]


HOLD_LOCK = """
import sys, time
from clarion.warehouse import Warehouse
with Warehouse(sys.argv[1]).writing("run"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_write_while_a_run_holds_the_warehouse_is_a_409_after_the_wait(api_copy) -> None:
    did, sha = _draft(api_copy)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(api_copy["settings"].warehouse.path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        r = _post(api_copy, "lead", f"/drafts/{did}/approve", {"content_sha256": sha})
        waited = time.monotonic() - started
        assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"
        detail = r.json()["detail"]
        assert "'run'" in detail and "waited 1 s" in detail and "changed nothing" in detail, detail
        assert 1.0 <= waited < 10, "it waits api.write_wait_seconds, not the warehouse's own wait"
    finally:
        holder.kill()
        holder.wait()
    assert query(api_copy["settings"], "select status from content.drafts where draft_id = ?", [did]) == [
        ("pending",)
    ]
    after = _post(api_copy, "lead", f"/drafts/{did}/approve", {"content_sha256": sha})
    assert after.status_code == 200 and after.json()["status"] == "approved"


# ----------------------------------------------------------------------------------------------
def _a_scored_customer(project: dict[str, Any]) -> int:
    ((cid,),) = query(
        project["settings"],
        "select min(contact_id) from ml.customer_scores join raw.contacts using (contact_id)",
    )
    return int(cid)


def test_data_subject_requests_end_to_end_under_the_api_principal(api_copy) -> None:
    cid = _a_scored_customer(api_copy)
    who = "api:test-compliance"

    by_id = _post(api_copy, "compliance", f"/subjects/{cid}/access")
    assert by_id.status_code == 200, by_id.text
    pseudonym = by_id.json()["person"]["pseudonym"]
    access = _post(api_copy, "compliance", f"/subjects/{pseudonym}/access")
    assert access.status_code == 200, access.text
    report = access.json()
    assert report["person"] == {"contact_id": cid, "pseudonym": pseudonym, "looked_up_by": "contact id"}
    assert report["counts"]["raw.contacts"] >= 1 and report["counts"]["ml.customer_scores"] >= 1

    corrected = _post(
        api_copy,
        "compliance",
        f"/subjects/{cid}/correct",
        {"fields": {"country": "DE"}, "reference": "DSR-1"},
    )
    assert corrected.status_code == 200 and corrected.json()["fields"] == ["country"]
    refused = _post(api_copy, "compliance", f"/subjects/{cid}/correct", {"fields": {"contact_id": "7"}})
    assert refused.status_code == 422 and "contact_id cannot be corrected" in refused.json()["detail"]
    bad_mail = _post(
        api_copy, "compliance", f"/subjects/{cid}/correct", {"fields": {"email": "not-an-address"}}
    )
    assert bad_mail.status_code == 422 and "email" in bad_mail.json()["detail"]

    first = _post(api_copy, "compliance", f"/subjects/{cid}/object", {"reference": "DSR-2"})
    repeat = _post(api_copy, "compliance", f"/subjects/{pseudonym}/object")
    assert first.status_code == repeat.status_code == 200
    assert (first.json()["already_recorded"], repeat.json()["already_recorded"]) == (False, True)

    assert query(api_copy["settings"], "select requested_by from privacy.corrections") == [(who,)]
    assert query(api_copy["settings"], "select requested_by, reference from privacy.objections") == [
        (who, "DSR-2")
    ]
    for action in ("subject.accessed", "subject.corrected", "subject.objected"):
        events = _events(api_copy, action)
        assert events and all((e["actor"], e["subject"]) == (who, pseudonym) for e in events), action
    assert len(_events(api_copy, "subject.accessed")) == 2

    unconfirmed = _post(
        api_copy, "compliance", f"/subjects/{cid}/erase", {"confirm": str(cid + 1), "reference": "E-1"}
    )
    assert unconfirmed.status_code == 422 and [e["field"] for e in unconfirmed.json()["errors"]] == [
        "confirm"
    ]
    by_approver = _post(
        api_copy, "approver", f"/subjects/{cid}/erase", {"confirm": str(cid), "reference": "E-1"}
    )
    assert by_approver.status_code == 403 and "subject:request" in by_approver.json()["detail"]

    erased = _post(
        api_copy, "compliance", f"/subjects/{cid}/erase", {"confirm": str(cid), "reference": "E-1"}
    )

    assert erased.status_code == 200, erased.text
    assert erased.json()["rows_removed"] > 0 and erased.json()["rows"]["raw.contacts"] >= 1
    [event] = _events(api_copy, "subject.erased")
    assert (event["actor"], event["subject"]) == (who, "E-1")
    assert query(api_copy["settings"], "select requested_by, reference from audit.erasures") == [(who, "E-1")]
    for table in ("raw.contacts", "marts.dim_customers", "ml.customer_scores"):
        assert _snapshot_rows(api_copy, f"select count(*) from {table} where contact_id = ?", [cid]) == [(0,)]
    gone = _post(api_copy, "compliance", f"/subjects/{pseudonym}/access")
    assert gone.status_code == 404 and "no contact has the pseudonym" in gone.json()["detail"]
    again = _post(api_copy, "compliance", f"/subjects/{cid}/erase", {"confirm": str(cid), "reference": "E-2"})
    assert again.status_code == 404 and "erased already" in again.json()["detail"]
    routes = {ctx.path for ctx in iter_route_contexts(api_copy["server"].server.config.app.routes)}
    if "/api/v1/customers/{pseudonym}" in routes:  # the read routes, once merged
        with api_copy["server"].client(api_copy["keys"]["compliance"]) as c:
            assert c.get(f"/api/v1/customers/{pseudonym}").status_code == 404
    everything = json.dumps(query(api_copy["settings"], "select details from audit.events"))
    assert "@" not in everything


def test_a_person_is_named_by_contact_id_or_pseudonym_never_by_email(api_copy) -> None:
    r = _post(api_copy, "compliance", "/subjects/jane@example.com/access")
    assert r.status_code == 422 and "who" in r.json()["errors"][0]["field"]
    unknown = _post(api_copy, "compliance", "/subjects/999999999/object")
    assert unknown.status_code == 404 and "no contact with id 999999999" in unknown.json()["detail"]
