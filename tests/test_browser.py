"""The demo in a real browser: two pages of headless Chromium see each other's changes live.

Playwright drives the system's Chromium (Debian's ``chromium`` package at
``/usr/bin/chromium``, or ``ROHRPOST_CHROMIUM``); no browser is downloaded.
Without Chromium the tests skip with the reason, or fail when
``ROHRPOST_REQUIRE_SERVICES=1`` (CI, whose ``.ci/run`` installs it). A
screenshot of each page is kept in ``test-artifacts/`` (or ``ROHRPOST_ARTIFACTS``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.demo_server import DemoServer, run_demo
from tests.services import services_required

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("ROHRPOST_ARTIFACTS", ROOT / "test-artifacts"))
#: How soon a change made in one page must show in the other.
LIVE_MS = 1000
#: Flags for a sandbox without a network beyond loopback (and running as root).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """The Chromium to drive; skip (or fail in CI) when there is none."""
    candidates = [os.environ.get("ROHRPOST_CHROMIUM"), "/usr/bin/chromium"]
    candidates.append(shutil.which("chromium") or shutil.which("chromium-browser"))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    reason = "no Chromium found (apt-get install chromium, or set ROHRPOST_CHROMIUM)"
    if services_required():
        pytest.fail(f"{reason}, and ROHRPOST_REQUIRE_SERVICES is set", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    with run_demo(tmp_path_factory.mktemp("browser")) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page_pair(browser: Any, demo: DemoServer) -> Iterator[tuple[Any, Any]]:
    """Two pages in separate browser contexts (like two people), both live on board 1."""
    contexts = [browser.new_context(viewport={"width": 1100, "height": 800}) for _ in range(2)]
    pages = [context.new_page() for context in contexts]
    errors: list[str] = []
    for page in pages:
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(demo.base_url + "/")
        page.wait_for_selector("#status[data-state='open']", timeout=10_000)
        page.wait_for_selector("#tasks li", timeout=10_000)
    try:
        yield pages[0], pages[1]
    finally:
        for context in contexts:
            context.close()
    assert errors == [], errors


def task_item(page: Any, title: str) -> Any:
    return page.locator("#tasks li", has=page.locator(".task-title", has_text=title))


def test_a_task_added_and_toggled_in_one_page_shows_in_the_other(
    page_pair: tuple[Any, Any],
) -> None:
    first, second = page_pair
    first.fill("#task-form input[name=title]", "Water the plants")
    first.press("#task-form input[name=title]", "Enter")
    # The other page learns of it from the change feed, not from a reload.
    task_item(second, "Water the plants").wait_for(timeout=LIVE_MS)

    task_item(first, "Water the plants").locator(".task-toggle").check()
    second.wait_for_selector(
        "#tasks li.done:has(.task-title:text-is('Water the plants'))", timeout=LIVE_MS
    )
    assert task_item(second, "Water the plants").locator(".task-toggle").is_checked()

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    first.screenshot(path=str(ARTIFACTS / "demo-first-page.png"), full_page=True)
    second.screenshot(path=str(ARTIFACTS / "demo-second-page.png"), full_page=True)


def test_a_rename_and_a_delete_travel_the_other_way(page_pair: tuple[Any, Any]) -> None:
    first, second = page_pair
    second.fill("#task-form input[name=title]", "Call the plumber")
    second.click("#task-form button")
    task_item(first, "Call the plumber").wait_for(timeout=LIVE_MS)

    first.click("#tasks .task-title:text-is('Call the plumber')")
    first.fill("#tasks .task-rename", "Call the plumber again")
    first.press("#tasks .task-rename", "Enter")
    task_item(second, "Call the plumber again").wait_for(timeout=LIVE_MS)

    item = task_item(second, "Call the plumber again")
    item.hover()
    item.locator(".task-delete").click()
    task_item(first, "Call the plumber again").wait_for(state="detached", timeout=LIVE_MS)


def test_a_private_board_is_not_offered_to_others(browser: Any, demo: DemoServer) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(demo.base_url + "/login/")
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", "rohrpost")
        page.click("button[type=submit]")
        page.wait_for_selector("#status[data-state='open']", timeout=10_000)
        page.wait_for_selector('#boards a:has-text("alice\'s board")', timeout=10_000)
        names = page.locator("#boards a").all_inner_texts()
        assert not any("bob" in name for name in names), names
    finally:
        context.close()


# --- the page at a phone's width ---------------------------------------------------------


def test_the_page_fits_a_phone(browser: Any, demo: DemoServer) -> None:
    """At 390 px the title and the badges keep to one line each, nothing scrolls sideways."""
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        page.goto(demo.base_url + "/login/")
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", "rohrpost")
        page.click("button[type=submit]")
        page.wait_for_selector("#status[data-state='open']", timeout=10_000)
        page.wait_for_selector("#boards .badge", timeout=10_000)
        lines = page.evaluate(
            """() => {
                const lines = (node) => {
                    const height = parseFloat(getComputedStyle(node).lineHeight);
                    return Math.round(node.getBoundingClientRect().height / height);
                };
                return {
                    title: lines(document.querySelector("h1")),
                    who: lines(document.querySelector(".who")),
                    badge: lines(document.querySelector("#boards .badge")),
                    link: lines(document.querySelector("#boards a:has(.badge)")),
                    sideways: document.documentElement.scrollWidth > innerWidth,
                };
            }"""
        )
        assert lines == {"title": 1, "who": 1, "badge": 1, "link": 1, "sideways": False}
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "demo-phone.png"), full_page=True)
    finally:
        context.close()


def test_the_page_and_the_admin_have_an_icon(browser: Any, demo: DemoServer) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(demo.base_url + "/")
        icon = page.locator("link[rel=icon]").get_attribute("href")
        assert icon
        assert page.request.get(demo.base_url + icon).ok
        # Pages without a <link rel=icon>, such as the admin's, get /favicon.ico.
        response = page.request.get(demo.base_url + "/favicon.ico")
        assert response.ok
        assert response.headers["content-type"] == "image/svg+xml"
    finally:
        context.close()
