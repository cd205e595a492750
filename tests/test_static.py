"""The JavaScript client ships inside the Python package, as the rohrpost app's static file."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders

import rohrpost
from tests.walkthrough import Walk

ROOT = Path(__file__).resolve().parent.parent
CLIENT_SOURCE = ROOT / "clients" / "js" / "src" / "rohrpost.js"
PACKAGED = Path(rohrpost.__file__).parent / "static" / "rohrpost" / "rohrpost.js"


def test_the_packaged_client_is_the_client_source() -> None:
    # In the repository it is a symbolic link; wheels and sdists carry a copy.
    assert PACKAGED.read_bytes() == CLIENT_SOURCE.read_bytes()


def test_django_finds_the_client_through_the_rohrpost_app() -> None:
    found = finders.find("rohrpost/rohrpost.js")
    assert found is not None
    assert Path(str(found)).read_bytes() == CLIENT_SOURCE.read_bytes()


# --- serving it: the way docs/js-client.md documents, under real servers ---------------------

DOCSITE_SETTINGS = """
from tests.settings import *  # noqa: F403

DEBUG = {debug}
INSTALLED_APPS = [*INSTALLED_APPS, "django.contrib.staticfiles"]  # noqa: F405
STATIC_URL = "/static/"
STATIC_ROOT = {static_root!r}
ROOT_URLCONF = "docsite.urls"
"""


def documented_asgi_py() -> str:
    """The ``asgi.py`` of docs/consumers.md (the tutorial's, with the static-files wrapper)."""
    text = (ROOT / "docs" / "consumers.md").read_text()
    code = text.split("```python\n# mysite/asgi.py\n", 1)[1].split("```", 1)[0]
    assert "ASGIStaticFilesHandler(django_asgi_app)" in code
    return code


def docsite(tmp_path: Path, *, debug: bool) -> Walk:
    """A project made of the documented asgi.py, served from ``tmp_path``."""
    package = tmp_path / "docsite"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "urls.py").write_text("urlpatterns = []\n")
    static_root = tmp_path / "collected"
    (package / "settings.py").write_text(
        DOCSITE_SETTINGS.format(debug=debug, static_root=str(static_root))
    )
    (package / "asgi.py").write_text(documented_asgi_py())
    return Walk(
        tmp_path,
        Path(sys.prefix),
        {},
        extra_env={
            "DJANGO_SETTINGS_MODULE": "docsite.settings",
            "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}",
        },
    )


def fetch(url: str) -> tuple[int, str, bytes]:
    # S310: the URL is http://127.0.0.1, built here.
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], b""


SERVERS = {
    "uvicorn": "uvicorn docsite.asgi:application --port {port}",
    "daphne": "daphne -p {port} docsite.asgi:application",
}


@pytest.mark.e2e
@pytest.mark.parametrize("server", SERVERS)
def test_the_documented_asgi_py_serves_the_client_in_development(
    tmp_path: Path, server: str
) -> None:
    walk = docsite(tmp_path, debug=True)
    walk.start_server(SERVERS[server].format(port=walk.port))
    try:
        status, content_type, body = fetch(f"{walk.base_url}/static/rohrpost/rohrpost.js")
    finally:
        walk.stop_server()
    assert status == 200, walk.log()
    assert content_type.startswith("text/javascript")  # what a module script needs
    assert body == CLIENT_SOURCE.read_bytes()


@pytest.mark.e2e
def test_in_production_the_client_comes_from_collectstatic_for_the_proxy(
    tmp_path: Path,
) -> None:
    walk = docsite(tmp_path, debug=False)
    walk.start_server(SERVERS["uvicorn"].format(port=walk.port))
    try:
        status, _, _ = fetch(f"{walk.base_url}/static/rohrpost/rohrpost.js")
    finally:
        walk.stop_server()
    assert status == 404  # the application serves no static files without DEBUG
    result = subprocess.run(
        [sys.executable, "-m", "django", "collectstatic", "--noinput"],
        cwd=tmp_path,
        env=walk.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    collected = tmp_path / "collected" / "rohrpost" / "rohrpost.js"
    assert collected.read_bytes() == CLIENT_SOURCE.read_bytes()
