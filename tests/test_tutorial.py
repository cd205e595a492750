"""docs/tutorial.md and the README's tour, followed step by step as a reader would.

Each page's files are written into a fresh directory and its commands run
there, in a virtual environment that holds only what the pages'
``pip install`` lines name (see :mod:`tests.walkthrough`: rohrpost comes from
this checkout, everything else from the package index; the test asserts that
packages only the development environment has, such as daphne, are absent).
The server runs under uvicorn; the command line is the page's own; Chromium
(through Playwright) logs in, adds a task, and watches pushes arrive.

The environment is kept in ``test-artifacts/page-venv`` and rebuilt when the
pages' ``pip install`` lines or ``pyproject.toml`` change.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.services import require_redis
from tests.test_browser import CHROMIUM_ARGS, chromium_path
from tests.walkthrough import (
    ROOT,
    Step,
    Walk,
    output_matches,
    page_venv,
    pip_requirements,
    steps,
    untitled_code,
)

pytestmark = pytest.mark.e2e

TUTORIAL = (ROOT / "docs" / "tutorial.md").read_text()
#: The README's tour: its section, up to the next one.
README_TOUR = (ROOT / "README.md").read_text().split("## Five-minute tour")[1].split("\n## ")[0]
ARTIFACTS = Path(os.environ.get("ROHRPOST_ARTIFACTS", ROOT / "test-artifacts"))
#: How soon a change must show in a page.
LIVE_MS = 2000
#: How long pages stay quiet over Redis without losing their connection (channels_redis
#: blocks 5 s per read).
REDIS_QUIET_MS = 7000


def test_the_tutorial_has_no_code_the_walk_would_skip() -> None:
    assert untitled_code(TUTORIAL) == []
    page = steps(TUTORIAL)
    assert len([step for step in page if step.kind == "write"]) >= 6
    checks = [step.target for step in page if step.kind == "check"]
    assert checks == ["server", "browser", "cli", "server", "redis"]


def _extras(requirements: list[str]) -> set[str]:
    """The rohrpost extras a page installs (``rohrpost[a,b]`` names two)."""
    return {
        extra
        for requirement in requirements
        for extra in requirement.removeprefix("rohrpost[").removesuffix("]").split(",")
    }


def test_the_readme_tour_names_nothing_to_install_the_tutorial_does_not() -> None:
    assert all(r.startswith("rohrpost[") for r in pip_requirements(README_TOUR))
    assert all(r.startswith("rohrpost[") for r in pip_requirements(TUTORIAL))
    assert _extras(pip_requirements(README_TOUR)) <= _extras(pip_requirements(TUTORIAL))


def test_the_readme_tour_has_no_python_the_walk_would_skip() -> None:
    assert untitled_code(README_TOUR) == []
    assert [step.target for step in steps(README_TOUR) if step.kind == "check"] == ["server"]


@pytest.fixture(scope="module")
def venv() -> Path:
    where = page_venv(pip_requirements(TUTORIAL), ARTIFACTS / "page-venv")
    listing = subprocess.run(
        [str(where / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installed = {line.split("==")[0].lower().replace("_", "-") for line in listing.splitlines()}
    # What only the development environment has is not there: the pages name all they use.
    assert installed.isdisjoint({"daphne", "djangorestframework", "pytest", "playwright"})
    named = {"rohrpost", "django", "channels", "uvicorn", "websockets", "channels-redis"}
    assert named <= installed
    return where


@contextmanager
def chromium() -> Iterator[Any]:
    executable = chromium_path()
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Reader:
    """What the reader sees in the browser while following the tutorial."""

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.pages: list[Any] = []
        self.errors: list[str] = []
        self.server_log = ""
        self.sockets_opened = 0

    def open_logged_in(self, walk: Walk) -> Any:
        context = self.browser.new_context()
        page = context.new_page()
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("websocket", lambda socket: self._count_socket())
        page.goto(walk.base_url + "/")  # login_required sends the reader to the admin's login
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", "tutorial")
        page.click("input[type=submit]")
        page.wait_for_url(walk.base_url + "/")
        page.wait_for_selector("#status:text-is('Live.')", timeout=10_000)
        self.pages.append(page)
        return page

    def _count_socket(self) -> None:
        self.sockets_opened += 1

    def check_server(self, walk: Walk) -> None:
        # start_server waited until it answered HTTP; it must still be running,
        # and pages open before a restart are live again (the reader's next step needs them).
        assert walk.server is not None
        assert walk.server.poll() is None
        for page in self.pages:
            page.wait_for_selector("#status:text-is('Live.')", timeout=35_000)

    def check_browser(self, walk: Walk) -> None:
        first = self.open_logged_in(walk)
        second = self.open_logged_in(walk)
        first.fill("#add input[name=title]", "Water the plants")
        first.click("#add button")
        # The other window learns of it from the change feed, not from a reload.
        item = second.locator("#tasks li", has_text="Water the plants")
        item.wait_for(timeout=LIVE_MS)
        assert first.input_value("#add input[name=title]") == ""

        # A change made in the admin, a plain Django view, reaches both pages too.
        admin = second.context.new_page()
        admin.goto(walk.base_url + "/admin/tasks/task/")
        admin.click("text=Task object")
        admin.check("input[name=done]")
        admin.click("input[name=_save]")
        for page in (first, second):
            page.wait_for_selector("#tasks li:text-is('Water the plants (done)')", timeout=LIVE_MS)
        admin.close()

        # The sync handler refuses a blank title with the page's error.
        first.evaluate("document.querySelector('#add input').removeAttribute('required')")
        first.fill("#add input[name=title]", "   ")
        first.click("#add button")
        first.wait_for_selector("#status:text-is('A task needs a title.')", timeout=LIVE_MS)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        second.screenshot(path=str(ARTIFACTS / "tutorial-page.png"))

    def check_cli(self, walk: Walk) -> None:
        pass  # the console block's commands and their outputs were checked as they ran

    def check_redis(self, walk: Walk) -> None:
        # The pages open since before the restart reconnected, subscribed again,
        # and see a task saved by another process.
        for page in self.pages:
            page.wait_for_selector("#tasks li:text-is('From the shell')", timeout=LIVE_MS)
        # Quiet connections stay open over Redis: longer than the blocking read of
        # channels_redis (5 s), which redis-py 8's default read timeout would cut.
        sockets = self.sockets_opened
        self.pages[0].wait_for_timeout(REDIS_QUIET_MS)
        assert self.sockets_opened == sockets, walk.log()
        self.server_log = walk.log()  # up to the last step; not what stopping the server prints


def test_the_tutorial_runs_as_written(venv: Path, tmp_path: Path) -> None:
    redis_url = require_redis()
    project = tmp_path / "tasks-tutorial"
    project.mkdir()
    with chromium() as browser:
        reader = Reader(browser)
        walk = Walk(
            project,
            venv,
            {
                "server": reader.check_server,
                "browser": reader.check_browser,
                "cli": reader.check_cli,
                "redis": reader.check_redis,
            },
            redis_url=redis_url,
        )
        try:
            walk.run(steps(TUTORIAL))
        except BaseException:
            print(walk.log())
            raise
    assert reader.errors == []
    # Nothing the start-up checks or the guard rails complain about.
    assert reader.server_log != ""  # the walk reached its last check
    for trouble in ("(rohrpost.", "Traceback", "Warning:"):
        assert trouble not in reader.server_log, reader.server_log


def test_the_readme_tour_runs_as_written(venv: Path, tmp_path: Path) -> None:
    project = tmp_path / "readme-tour"
    project.mkdir()
    walk = Walk(project, venv, {"server": lambda walk: None})
    try:
        walk.run(steps(README_TOUR))
    except BaseException:
        print(walk.log())
        raise
    assert any(step.kind == "run" and "python -m rohrpost" in step.target for step in walk.done)
    assert "Traceback" not in walk.log(), walk.log()


def test_an_expected_output_matches_exactly_or_through_ellipses() -> None:
    assert output_matches("6", "6\n")
    assert not output_matches("61", "6")
    assert output_matches(
        "Found 3 test(s).\nx\nRan 3 tests in 0.1s\n\nOK",
        "Found 3 test(s).\n...\nRan 3 tests in ...\nOK",
    )
    assert not output_matches("Found 2 test(s).\nRan 2 tests in 0.1s\nOK", "Found 3 test(s).\n...")


def test_a_page_is_read_as_files_commands_and_checks_in_order() -> None:
    page = """Text.

```python title="a/b.py"
x = 1
```

<!-- check: here -->

```console
$ echo hi
hi
$ true
```

```python title="a/b.py (add at the end)"
y = 2
```
"""
    assert steps(page) == [
        Step("write", "a/b.py", "x = 1\n"),
        Step("check", "here"),
        Step("run", "echo hi", "hi"),
        Step("run", "true", None),
        Step("append", "a/b.py", "y = 2\n"),
    ]
