"""The JavaScript client ships inside the Python package, as the rohrpost app's static file."""

from __future__ import annotations

from pathlib import Path

from django.contrib.staticfiles import finders

import rohrpost

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
