"""The marketer web app over HTTP (a real uvicorn server): pages and buttons per role, sign-in, CSRF,
errors as pages, no customer identity for roles without ids, nothing loaded from another host, and
the review forms on a copy of the project (edit, stale content, a busy warehouse)."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from api_helpers import LiveServer
from web_helpers import copy_project, draft_form, links, sign_in, token, warehouse_rows

from clarion.api import create_app
from clarion.api.keys import KeyStore
from clarion.api.permissions import ROLES, allowed
from clarion.api.web.pages import NAV
from clarion.config import load_settings
from clarion.content.export import held_back
from clarion.content.store import list_drafts
from clarion.oversight.tiers import current_brief
from clarion.privacy import pseudonym
from clarion.report.fmt import label

# page (a template filled per project) -> the permission it needs
PAGES = {
    "/segments": "read:aggregates",
    "/customers": "read:customer",
    "/customers?pseudonym={pseudonym}": "read:customer",
    "/customers?contact_id={contact_id}": "read:contact_id",
    "/drafts": "read:drafts",
    "/drafts?status=all": "read:drafts",
    "/drafts/{draft_id}": "read:drafts",
    "/results": "read:aggregates",
}


@pytest.fixture(scope="module")
def web(api_project, live_api) -> dict[str, Any]:
    """The shared project's facts the pages must show: a pending draft, a scored customer (latest
    score, read from the warehouse file itself), one signed-in client per role."""
    settings = api_project["settings"]
    (pending,) = [d for d in list_drafts(settings, status="pending") if d["campaign"] == "api-test"][:1]
    contact_id, segment, reasons = warehouse_rows(
        settings,
        "select contact_id, segment, to_json(reasons) from ml.customer_scores "
        "order by scored_at desc, contact_id limit 1 offset 7",
    )[0]
    return {
        "settings": settings,
        "draft": pending,
        "contact_id": contact_id,
        "pseudonym": pseudonym.for_settings(settings)(contact_id),
        "segment": segment,
        "reasons": [r["text"] for r in json.loads(reasons)],
        "clients": {role: sign_in(live_api.url, key) for role, key in api_project["keys"].items()},
    }


def _path(template: str, web: dict[str, Any]) -> str:
    return template.format(
        pseudonym=web["pseudonym"], contact_id=web["contact_id"], draft_id=web["draft"]["draft_id"]
    )


def _main(page: str) -> str:
    return page[page.index("<main") : page.index("</main>")]


@pytest.mark.parametrize("role", ROLES)
def test_every_page_opens_for_the_roles_holding_its_permission_and_is_a_403_page_for_the_others(
    web, role: str
) -> None:
    client = web["clients"][role]
    for template, permission in PAGES.items():
        answer = client.get(_path(template, web))
        assert answer.headers["content-type"].startswith("text/html"), template
        if allowed(role, permission):
            assert answer.status_code == 200, (template, answer.text)
            assert "<h1>" in answer.text and "Not allowed" not in answer.text
        else:
            assert answer.status_code == 403, template
            assert "<h1>Not allowed</h1>" in answer.text and permission in html.unescape(answer.text)
            assert "What to do" in answer.text
    nav = links(client.get("/segments").text).urls
    for path, _, permission in NAV:
        assert (path in nav) == allowed(role, permission), (role, path)


@pytest.mark.parametrize("role", [r for r in ROLES if allowed(r, "read:drafts")])
def test_review_buttons_follow_the_role(web, role: str) -> None:
    did = web["draft"]["draft_id"]
    forms = links(web["clients"][role].get(f"/drafts/{did}").text).forms
    assert (f"/drafts/{did}/approve" in forms) == allowed(role, "draft:decide")
    assert (f"/drafts/{did}/reject" in forms) == allowed(role, "draft:decide")
    assert (f"/drafts/{did}/edit" in forms) == allowed(role, "draft:edit")


def _decisions(settings: Any, did: str) -> int:
    return warehouse_rows(settings, "select count(*) from content.decisions where draft_id = ?", [did])[0][0]


def test_a_marketer_who_posts_an_approval_anyway_is_refused(web) -> None:
    did, client = web["draft"]["draft_id"], web["clients"]["marketer"]
    page = client.get(f"/drafts/{did}").text
    answer = client.post(
        f"/drafts/{did}/approve",
        data={"csrf_token": token(page), "content_sha256": web["draft"]["content_sha256"]},
    )
    assert answer.status_code == 403 and "draft:decide" in html.unescape(answer.text)
    assert answer.headers["content-type"].startswith("text/html")
    assert _decisions(web["settings"], did) == 0


def test_a_form_without_its_sessions_csrf_token_changes_nothing(web, live_api, api_project) -> None:
    did, sha = web["draft"]["draft_id"], web["draft"]["content_sha256"]
    approver = web["clients"]["approver"]
    other = sign_in(live_api.url, api_project["keys"]["approver"])  # the same key, another browser
    foreign = token(other.get(f"/drafts/{did}").text)
    for data in ({"content_sha256": sha}, {"content_sha256": sha, "csrf_token": foreign}):
        answer = approver.post(f"/drafts/{did}/approve", data=data)
        assert answer.status_code == 403 and "security token" in answer.text
    assert approver.post("/logout", data={}).status_code == 403
    assert _decisions(web["settings"], did) == 0
    assert approver.get("/drafts").status_code == 200, "a refused logout leaves the session"


def test_signing_in_with_a_wrong_key_says_so_and_sets_no_session(live_api) -> None:
    client = httpx.Client(base_url=live_api.url, follow_redirects=False)
    form = client.get("/login").text
    wrong = client.post("/login", data={"api_key": "clk_00000000_" + "x" * 43, "csrf_token": token(form)})
    assert wrong.status_code == 401 and "was not accepted" in wrong.text
    assert "clarion_session" not in wrong.headers.get("set-cookie", "")
    empty = client.post("/login", data={"api_key": " ", "csrf_token": token(form)})
    assert empty.status_code == 401 and "Paste your API key" in empty.text
    assert client.post("/login", data={"api_key": "clk_x"}).status_code == 403  # no login-form token
    assert client.get("/drafts").status_code == 303


def test_the_session_cookie_is_httponly_and_strict_and_logout_clears_it(live_api, api_project) -> None:
    client = httpx.Client(base_url=live_api.url, follow_redirects=False)
    form = client.get("/login?next=/customers").text
    answer = client.post(
        "/login",
        data={"api_key": api_project["keys"]["marketer"], "csrf_token": token(form), "next": "/customers"},
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/customers"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("clarion_session="))
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Path=/" in cookie
    page = client.get("/customers").text
    out = client.post("/logout", data={"csrf_token": token(page)})
    assert out.status_code == 303 and out.headers["location"].startswith("/login")
    assert client.get("/customers").status_code == 303, "signed out: back to the login page"


def test_signing_in_returns_to_the_page_asked_for_and_never_to_another_site(live_api, api_project) -> None:
    client = httpx.Client(base_url=live_api.url, follow_redirects=False)
    first = client.get("/results")
    assert first.status_code == 303 and first.headers["location"] == "/login?next=/results"
    for given, lands in (("/results", "/results"), ("//elsewhere.example/x", "/drafts")):
        form = client.get("/login").text
        answer = client.post(
            "/login",
            data={"api_key": api_project["keys"]["approver"], "csrf_token": token(form), "next": given},
        )
        assert answer.headers["location"] == lands


def test_errors_are_html_pages_that_say_what_to_do(web) -> None:
    client = web["clients"]["approver"]
    cases = {
        "/drafts/no-such-draft": (404, "No such draft"),
        "/drafts?status=lost": (400, "Choose one of pending"),
        "/customers?pseudonym=p_123": (400, "16 hexadecimal digits"),
        "/customers?pseudonym=p_0000000000000000": (404, "no scored customer has the pseudonym"),
        "/static/nothing.js": (404, "no static file"),
    }
    for path, (status, words) in cases.items():
        answer = client.get(path)
        assert answer.status_code == status, path
        assert answer.headers["content-type"].startswith("text/html") and words in html.unescape(
            answer.text
        ), path


def test_customer_lookup_shows_the_stored_score_segment_and_reasons(web) -> None:
    page = html.unescape(web["clients"]["marketer"].get(f"/customers?pseudonym={web['pseudonym']}").text)
    assert f"Customer {web['pseudonym']}" in page
    assert f"<dt>Segment</dt><dd>{label(web['segment'])}</dd>" in page
    assert web["reasons"] and all(reason in page for reason in web["reasons"])
    assert "<dt>CRM contact id</dt>" not in page
    by_id = html.unescape(web["clients"]["engineer"].get(f"/customers?contact_id={web['contact_id']}").text)
    assert f"<dt>CRM contact id</dt><dd>{web['contact_id']}</dd>" in by_id
    assert f"Customer {web['pseudonym']}" in by_id


def _marketer_pages(web: dict[str, Any]) -> dict[str, str]:
    client = web["clients"]["marketer"]
    paths = [
        "/segments",
        "/customers",
        f"/customers?pseudonym={web['pseudonym']}",
        "/drafts?status=all",
        "/results",
    ]
    paths += [f"/drafts/{d['draft_id']}" for d in list_drafts(web["settings"])]
    pages = {}
    for path in paths:
        answer = client.get(path)
        assert answer.status_code == 200, path
        pages[path] = html.unescape(answer.text)
    return pages


def test_no_page_shows_a_marketer_a_customers_contact_id_name_email_or_phone(web) -> None:
    pages = _marketer_pages(web)
    people = warehouse_rows(
        web["settings"], "select first_name || ' ' || last_name, email, phone from raw.contacts"
    )
    assert len(people) >= 100
    values = {v for row in people for v in row if v}
    for path, page in pages.items():
        leaked = [v for v in values if v in page]
        assert not leaked, f"{path} shows {len(leaked)} personal value(s)"
    # The looked-up customer's id: on the engineer's page exactly where ids are shown, nowhere for a
    # marketer (a customer is picked whose id is no other number on the engineer's page).
    scored = warehouse_rows(web["settings"], "select distinct contact_id from ml.customer_scores order by 1")
    for (contact_id,) in scored[-40:]:
        who = pseudonym.for_settings(web["settings"])(contact_id)
        engineer = web["clients"]["engineer"].get(f"/customers?pseudonym={who}").text
        if len(re.findall(rf"\b{contact_id}\b", _main(engineer))) == 1:
            break
    else:
        pytest.fail("no customer whose id appears once on the engineer's page")
    assert f"<dd>{contact_id}</dd>" in engineer
    marketer = web["clients"]["marketer"].get(f"/customers?pseudonym={who}").text
    assert not re.search(rf"\b{contact_id}\b", _main(marketer))


def test_no_page_or_asset_loads_anything_from_another_host(web, live_api) -> None:
    client = web["clients"]["approver"]
    brief = current_brief(web["settings"], "api-test")
    shown_urls = {brief.offer.url}  # the campaign's landing page, shown as text for the reviewer
    assets: set[str] = set()
    for template in PAGES:
        answer = client.get(_path(template, web))
        assert "default-src 'none'" in answer.headers["content-security-policy"]
        found = links(answer.text)
        for url in found.urls:
            assert url.startswith(("/", "#", "?")) and not url.startswith("//"), (template, url)
            if url.startswith("/static/"):
                assets.add(url)
        text_urls = set(re.findall(r"https?://[^\s\"'<>]+", answer.text))
        assert text_urls <= shown_urls, (template, text_urls - shown_urls)
    assert assets, "the pages use the local stylesheet"
    for url in assets:
        asset = client.get(url)
        assert asset.status_code == 200 and "http://" not in asset.text and "https://" not in asset.text
        assert "@import" not in asset.text


@pytest.mark.parametrize("role", ["approver", "engineer"])
def test_every_field_is_labelled_and_every_page_has_landmarks_and_headings_in_order(web, role: str) -> None:
    client = web["clients"][role]
    login = links(httpx.get(f"{client.base_url}/login").text)
    pages = {"/login": login}
    for template, permission in PAGES.items():
        if allowed(role, permission):
            pages[template] = links(client.get(_path(template, web)).text)
    assert any(p.fields for p in pages.values())
    for template, page in pages.items():
        assert {"main", "header", "footer"} <= page.landmarks, template
        assert page.headings[0] == 1 and page.headings.count(1) == 1, template
        assert all(b - a <= 1 for a, b in zip(page.headings, page.headings[1:], strict=False)), template
        unlabelled = [f for f in page.fields if not f or f not in page.labels]
        assert not unlabelled, (template, unlabelled)


# -- writes, on a copy of the project ----------------------------------------------------------------
@pytest.fixture(scope="module")
def copy(api_project, tmp_path_factory) -> dict[str, Any]:
    """A copy of the API project (writes change it), a key named as the brief's approver, a server
    that waits one second for the writer lock."""
    root = copy_project(
        api_project["root"], tmp_path_factory.mktemp("web_copy") / "p", "api:\n  write_wait_seconds: 1\n"
    )
    settings = load_settings(root / "clarion.yaml", env={})
    lead = KeyStore.for_settings(settings).create("marketing-lead", "approver", by="tests")[1]
    (draft,) = [d for d in list_drafts(settings, status="pending") if d["campaign"] == "api-test"][:1]
    with LiveServer(create_app(settings)) as server:
        yield {
            "settings": settings,
            "server": server,
            "lead": lead,
            "draft": draft,
            "keys": api_project["keys"],
        }


def test_an_edit_is_checked_recorded_with_its_reason_and_voids_nothing_silently(copy) -> None:
    did = copy["draft"]["draft_id"]
    approver = sign_in(copy["server"].url, copy["lead"])
    stale = draft_form(approver.get(f"/drafts/{did}").text, f"/drafts/{did}/approve")

    marketer = sign_in(copy["server"].url, copy["keys"]["marketer"])
    form = draft_form(marketer.get(f"/drafts/{did}").text, f"/drafts/{did}/edit")
    subject = "A little something for your next visit: 15% off"
    answer = marketer.post(
        f"/drafts/{did}/edit",
        data={**form, "part": "email_subject", "text": subject, "reason": "warmer subject line"},
    )
    assert answer.status_code == 303
    page = html.unescape(marketer.get(answer.headers["location"]).text)
    assert "Your edit is saved" in page and subject in page and 'id="draft-status">pending' in page
    ((decision, by, via, principal, note, sha),) = warehouse_rows(
        copy["settings"],
        "select decision, decided_by, via, principal, note, content_sha256 from content.decisions "
        "where draft_id = ?",
        [did],
    )
    assert (decision, by, via, principal) == ("edit", "test-marketer", "web", "api:test-marketer")
    assert "warmer subject line" in note and sha != form["content_sha256"]

    # the approver's page was read before the edit: its approval is refused, nothing recorded
    refused = approver.post(f"/drafts/{did}/approve", data=stale)
    assert refused.status_code == 409 and "changed since you opened it" in refused.text
    assert _decisions(copy["settings"], did) == 1

    fresh = draft_form(approver.get(f"/drafts/{did}").text, f"/drafts/{did}/approve")
    done = approver.post(f"/drafts/{did}/approve", data=fresh)
    assert done.status_code == 303
    page = approver.get(done.headers["location"]).text
    assert 'id="draft-status">approved' in page and 'data-eligible="yes"' in page
    (draft,) = [d for d in list_drafts(copy["settings"]) if d["draft_id"] == did]
    con = duckdb.connect(str(copy["settings"].warehouse.path), read_only=True)
    try:
        assert held_back(con, current_brief(copy["settings"], "api-test"), draft) is None
    finally:
        con.close()


def test_a_rejection_needs_a_reason(copy) -> None:
    did = copy["draft"]["draft_id"]
    approver = sign_in(copy["server"].url, copy["lead"])
    before = _decisions(copy["settings"], did)
    form = draft_form(approver.get(f"/drafts/{did}").text, f"/drafts/{did}/reject")
    answer = approver.post(f"/drafts/{did}/reject", data={**form, "reason": "   "})
    assert answer.status_code == 400 and "Reason missing" in answer.text
    assert _decisions(copy["settings"], did) == before


def test_a_decision_while_a_run_holds_the_warehouse_says_a_run_is_writing(copy) -> None:
    did = copy["draft"]["draft_id"]
    approver = sign_in(copy["server"].url, copy["lead"])
    form = draft_form(approver.get(f"/drafts/{did}").text, f"/drafts/{did}/reject")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from clarion.warehouse import WriterLock\n"
            "with WriterLock(sys.argv[1]).hold('a test run'):\n"
            "    print('LOCKED', flush=True); time.sleep(30)",
            str(copy["settings"].warehouse.path),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    try:
        assert holder.stdout.readline().strip() == "LOCKED"
        before = _decisions(copy["settings"], did)
        answer = approver.post(f"/drafts/{did}/reject", data={**form, "reason": "off brand"})
        assert answer.status_code == 409 and "A run is writing" in answer.text and "Try again" in answer.text
    finally:
        holder.kill()
        holder.wait()
    assert _decisions(copy["settings"], did) == before
