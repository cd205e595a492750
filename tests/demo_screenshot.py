"""Take the README's picture of the demo: ``python -m tests.demo_screenshot [docs/demo.png]``.

A fresh demo server (as ``make demo`` serves it), alice signed in in one
headless Chromium context and a second, anonymous one adding a task that the
first sees arrive. Run it after any change to how the page looks, so the README
shows the page as it is.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.demo_server import run_demo
from tests.test_browser import CHROMIUM_ARGS, chromium_path

VIEWPORT = {"width": 1000, "height": 560}
#: How long the row of a task that arrived flashes (demo.css, ``arrive``), and a little more.
FLASH_MS = 1000
ARRIVING = "Added in another browser, seen here at once"


def take_screenshot(path: Path) -> None:
    """Write a PNG of the demo's board, as alice, to ``path``."""
    with (
        tempfile.TemporaryDirectory() as directory,
        run_demo(Path(directory)) as demo,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        alice = browser.new_context(viewport=VIEWPORT).new_page()
        alice.goto(demo.base_url + "/login/")
        alice.fill("input[name=username]", "alice")
        alice.fill("input[name=password]", "rohrpost")
        alice.click("button[type=submit]")
        alice.wait_for_selector("#status[data-state='open']")
        alice.wait_for_selector("#tasks li")
        alice.locator("#tasks li").nth(1).locator(".task-toggle").check()

        other = browser.new_context().new_page()
        other.goto(demo.base_url + "/")
        other.wait_for_selector("#status[data-state='open']")
        other.fill("#task-form input[name=title]", ARRIVING)
        other.press("#task-form input[name=title]", "Enter")

        alice.wait_for_selector(
            "#tasks .task-title:text-is('Added in another browser, seen here at once')"
        )
        alice.wait_for_timeout(FLASH_MS)
        done = alice.locator("#tasks li").nth(1)
        done.hover()  # shows the row's delete button, which the pointer then rests on
        done.locator(".task-delete").hover()
        alice.screenshot(path=str(path))
        browser.close()


if __name__ == "__main__":
    take_screenshot(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/demo.png"))
