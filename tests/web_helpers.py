"""Driving the web app over HTTP as a browser would: sign in with a key, read the forms' tokens."""

from __future__ import annotations

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import duckdb
import httpx

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def token(html: str) -> str:
    """The CSRF token of the first form on the page."""
    found = TOKEN.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def sign_in(base_url: str, key: str) -> httpx.Client:
    """A client holding the session cookie of ``key`` (raises if the login is refused)."""
    client = httpx.Client(base_url=base_url, timeout=60, follow_redirects=False)
    form = client.get("/login")
    answer = client.post("/login", data={"api_key": key, "csrf_token": token(form.text)})
    assert answer.status_code == 303, answer.text
    return client


class Links(HTMLParser):
    """Every URL a page refers to (links, forms, images, styles, scripts) and its visible ids."""

    ATTRS = ("href", "src", "action", "formaction", "srcset", "poster", "data", "xlink:href")

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.ids: set[str] = set()
        self.forms: list[str] = []
        self.fields: list[str] = []  # ids of the visible form fields
        self.labels: set[str] = set()  # the ids labels name
        self.headings: list[int] = []
        self.landmarks: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in self.ATTRS and value is not None:
                self.urls.append(value)
            if name == "style" and value and "url(" in value:
                self.urls.append(value)
            if name == "id" and value:
                self.ids.add(value)
        if tag == "form":
            self.forms.append(dict(attrs).get("action") or "")
        a = dict(attrs)
        if tag in ("input", "select", "textarea") and a.get("type") != "hidden":
            self.fields.append(a.get("id") or "")
        if tag == "label" and a.get("for"):
            self.labels.add(a["for"] or "")
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self.headings.append(int(tag[1]))
        if tag in ("main", "nav", "header", "footer"):
            self.landmarks.add(tag)


def links(html: str) -> Links:
    parser = Links()
    parser.feed(html)
    return parser


def draft_form(html: str, action: str) -> dict[str, str]:
    """The hidden fields (CSRF token, content sha256, part) of the form posting to ``action``."""
    start = html.find(f'action="{action}"')
    assert start >= 0, f"the page has no form posting to {action}"
    form = html[start : html.find("</form>", start)]
    return dict(re.findall(r'<input type="hidden" name="([a-z_0-9]+)" value="([^"]*)"', form))


def copy_project(source: Path, target: Path, extra_yaml: str = "") -> Path:
    """A copy of an API project to write to (the session's is shared; the language model is the
    machine's converted copy, not the project's)."""
    shutil.copytree(source, target, symlinks=True)
    if extra_yaml:
        with (target / "clarion.yaml").open("a") as fh:
            fh.write("\n" + extra_yaml)
    return target


def warehouse_rows(settings: Any, sql: str, params: list[Any] | None = None) -> list[tuple]:
    """Rows of the writer's warehouse file, read-only (the test looking, never the app's snapshot)."""
    con = duckdb.connect(str(settings.warehouse.path), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()
