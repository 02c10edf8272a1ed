"""The web app in a real headless Chromium (Debian's chromium + chromedriver, driven by Selenium):
sign in, open the queue, open a draft, approve it with the keyboard alone, see it approved and
export-eligible, and a marketer who sees no approve button. Screenshots of every page go to
var/test-artifacts/web/ (git-ignored)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_helpers import LiveServer
from web_helpers import copy_project, warehouse_rows

from clarion.api import create_app
from clarion.api.keys import KeyStore
from clarion.config import load_settings
from clarion.content.export import export
from clarion.content.store import list_drafts
from clarion.privacy import pseudonym

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parent.parent / "var" / "test-artifacts" / "web"
MAX_TABS = 80


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (CHROMIUM.exists() and DRIVER.exists()):
        if os.environ.get("CI"):
            raise AssertionError(f"{CHROMIUM} and {DRIVER} must be installed under CI (apt install chromium)")
        pytest.skip(f"no {CHROMIUM} / {DRIVER} and CI is unset")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def site(api_project, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """A copy of the API project (the approval changes it) with a key named as the brief's approver."""
    root = copy_project(api_project["root"], tmp_path_factory.mktemp("web_browser") / "p")
    settings = load_settings(root / "clarion.yaml", env={})
    lead = KeyStore.for_settings(settings).create("marketing-lead", "approver", by="tests")[1]
    (draft,) = [d for d in list_drafts(settings, status="pending") if d["campaign"] == "api-test"][:1]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with LiveServer(create_app(settings)) as server:
        yield {
            "settings": settings,
            "url": server.url,
            "lead": lead,
            "draft": draft,
            "keys": api_project["keys"],
        }


ERROR_TITLES = ("Could not do that", "Not found", "Nothing to show yet", "A run is writing")


def _shot(driver: Any, name: str, height: int = 1000) -> Path:
    driver.set_window_size(1280, height)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 5_000, f"{path} looks empty"
    return path


def _arrive(driver: Any, url: str) -> None:
    """Wait for the browser to land on ``url`` (a form's answer takes a write and a redirect)."""
    from selenium.webdriver.support.ui import WebDriverWait

    def there(d: Any) -> bool:
        return d.current_url.startswith(url) and d.execute_script("return document.readyState") == "complete"

    WebDriverWait(driver, 60).until(there)


def _sign_in(driver: Any, url: str, key: str, then: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.delete_all_cookies()
    driver.get(f"{url}{then}")
    assert "/login" in driver.current_url, "not signed in: the page sends the browser to the login form"
    field = driver.find_element(By.ID, "api_key")
    assert driver.find_element(By.CSS_SELECTOR, "label[for=api_key]").text == "API key"
    field.send_keys(key)
    field.send_keys(Keys.ENTER)
    _arrive(driver, f"{url}{then}")


def test_an_approver_approves_a_draft_with_the_keyboard_and_a_marketer_cannot(browser, site) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    url, did = site["url"], site["draft"]["draft_id"]

    # a marketer reads the pending draft but has no approve button
    _sign_in(browser, url, site["keys"]["marketer"], f"/drafts/{did}")
    assert browser.find_element(By.ID, "draft-status").text == "pending"
    assert not browser.find_elements(By.ID, "approve") and not browser.find_elements(By.ID, "reject")
    assert browser.find_elements(By.CSS_SELECTOR, f"form[action='/drafts/{did}/edit']"), "a marketer may edit"
    _shot(browser, "draft-as-marketer", 1800)

    # a wrong key: a message on the login page
    browser.delete_all_cookies()
    browser.get(f"{url}/login")
    browser.find_element(By.ID, "api_key").send_keys("clk_00000000_" + "x" * 43 + Keys.ENTER)
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.ID, "login-error"))
    assert "was not accepted" in browser.find_element(By.ID, "login-error").text
    _shot(browser, "login-refused")

    # the approver: queue, draft, approve with Tab and Enter only
    _sign_in(browser, url, site["lead"], "/drafts")
    row = browser.find_element(By.LINK_TEXT, did)
    _shot(browser, "queue")
    row.click()
    _arrive(browser, f"{url}/drafts/{did}")
    assert browser.find_element(By.ID, "ai-label").text.startswith(("AI-generated", "not AI-generated"))
    _shot(browser, "draft-as-approver", 1800)
    browser.set_window_size(1280, 1000)
    for _ in range(MAX_TABS):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        if browser.switch_to.active_element.get_attribute("id") == "approve":
            break
    else:
        pytest.fail(f"the approve button was not reached in {MAX_TABS} presses of Tab")
    outline = browser.switch_to.active_element.value_of_css_property("outline-style")
    assert outline not in ("none", ""), "the focused button shows where the focus is"
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    _arrive(browser, f"{url}/drafts/{did}?done=")
    assert f"/drafts/{did}?done=approved" in browser.current_url
    assert browser.find_element(By.ID, "draft-status").text == "approved"
    assert browser.find_element(By.ID, "export-eligibility").get_attribute("data-eligible") == "yes"
    _shot(browser, "approved", 1400)

    # independent of the page: the export sends this draft
    (sent,) = export(site["settings"], campaign="api-test")["exports"]
    assert did in sent["drafts_exported"] and sent["recipients"] > 0

    # the other pages, for the record
    for name, path in (("segments", "/segments"), ("results", "/results")):
        browser.get(f"{url}{path}")
        title = browser.find_element(By.TAG_NAME, "h1").text
        assert title and title not in ERROR_TITLES, browser.find_element(By.TAG_NAME, "main").text
        _shot(browser, name, 2200)
    ((contact_id,),) = warehouse_rows(site["settings"], "select min(contact_id) from ml.customer_scores")
    who = pseudonym.for_settings(site["settings"])(contact_id)
    browser.get(f"{url}/customers?pseudonym={who}")
    found = browser.find_elements(By.ID, "customer-h")
    assert found, browser.find_element(By.TAG_NAME, "main").text  # the page says what went wrong
    assert who in found[0].text
    _shot(browser, "customer", 1200)
