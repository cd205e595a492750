"""Tests for rohrpost.checks: the ``ROHRPOST`` setting is validated by ``manage.py check``."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.checks import Error
from django.core.checks.registry import registry
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from rohrpost import conf
from rohrpost.checks import (
    check_settings,
    check_sync_threads,
    in_memory_sqlite,
    rohrpost_problems,
)


def run_check(*args: str) -> str:
    """Run ``manage.py check`` and return what it printed."""
    out = StringIO()
    call_command("check", *args, stdout=out, stderr=out)
    return out.getvalue()


def test_the_check_is_registered_under_the_rohrpost_tag() -> None:
    assert check_settings in registry.get_checks()
    assert "rohrpost" in registry.tags_available()
    assert check_settings.tags == ("rohrpost",)  # type: ignore[attr-defined]


def test_an_invalid_setting_fails_manage_py_check(settings: Any) -> None:
    settings.ROHRPOST = {"MAX_DEPTH": 0}
    with pytest.raises(SystemCheckError) as raised:
        run_check()
    report = str(raised.value)
    assert "rohrpost.E001" in report
    assert "ROHRPOST['MAX_DEPTH'] must be an integer from 1 to 500, not 0." in report
    assert "See rohrpost.conf for every key and its meaning." in report


def test_an_invalid_setting_fails_the_rohrpost_tag_alone(settings: Any) -> None:
    settings.ROHRPOST = "not a dict"
    with pytest.raises(SystemCheckError, match=r"rohrpost\.E001.*ROHRPOST must be a dict, not str"):
        run_check("--tag", "rohrpost")


def test_a_valid_setting_passes_manage_py_check(settings: Any) -> None:
    settings.ROHRPOST = {"RATE_LIMIT": None, "MAX_DEPTH": 8}
    assert "no issues" in run_check("--tag", "rohrpost")


def test_every_problem_is_one_error(settings: Any) -> None:
    settings.ROHRPOST = {"MAX_DEPTH": 0, "typo": 1}
    errors = check_settings()
    assert errors == [
        Error(
            problem,
            hint="See rohrpost.conf for every key and its meaning.",
            id="rohrpost.E001",
        )
        for problem in conf.problems(settings.ROHRPOST)
    ]
    assert len(errors) == 2


def test_a_valid_setting_has_no_errors(settings: Any) -> None:
    settings.ROHRPOST = {"RATE_LIMIT": {"RATE": 1, "BURST": 1}, "PUBLISH_WINDOW": 0}
    assert check_settings() == []


def test_an_empty_setting_has_no_errors(settings: Any) -> None:
    settings.ROHRPOST = {}
    assert check_settings() == []


def test_an_absent_setting_has_no_errors(settings: Any) -> None:
    del settings.ROHRPOST
    assert check_settings() == []


def test_a_setting_of_none_is_an_error(settings: Any) -> None:
    """``ROHRPOST = None`` is set (not absent), so it must be a dict."""
    settings.ROHRPOST = None
    assert [error.msg for error in check_settings()] == ["ROHRPOST must be a dict, not NoneType."]


# --- rohrpost.W005: a pool of threads on an in-memory SQLite database ----------------------


def sqlite(name: str) -> dict[str, Any]:
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": name}


@pytest.fixture
def scratch_in_memory(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Add an in-memory SQLite alias. (The test runner has made ``default`` a shared one;
    the dict is changed in place: replacing DATABASES makes Django warn.)"""
    monkeypatch.setitem(settings.DATABASES, "scratch", sqlite(":memory:"))


@pytest.mark.usefixtures("scratch_in_memory")
def test_one_thread_on_in_memory_sqlite_is_fine(settings: Any) -> None:
    settings.ROHRPOST = {"SYNC_THREADS": 1}
    assert check_sync_threads() == []


@pytest.mark.usefixtures("scratch_in_memory")
def test_a_pool_on_in_memory_sqlite_is_a_warning(settings: Any) -> None:
    settings.ROHRPOST = {"SYNC_THREADS": 4}
    (warning,) = [w for w in check_sync_threads() if "'scratch'" in w.msg]
    assert warning.id == "rohrpost.W005"
    assert "'scratch' is an in-memory SQLite database" in warning.msg
    assert warning in rohrpost_problems()


@pytest.mark.parametrize("database", [sqlite(":memory:"), sqlite("file:db?mode=memory")])
def test_in_memory_sqlite_is_one_database_per_connection(database: Any) -> None:
    assert in_memory_sqlite(database)


@pytest.mark.parametrize(
    "database",
    [
        sqlite("db.sqlite3"),
        sqlite("file:db?mode=memory&cache=shared"),
        {"ENGINE": "django.db.backends.postgresql", "NAME": ":memory:"},
        "not a dict",
    ],
)
def test_a_file_a_shared_cache_or_another_engine_is_one_database(database: Any) -> None:
    assert not in_memory_sqlite(database)
