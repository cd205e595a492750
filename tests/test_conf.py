"""Tests for rohrpost.conf: the ``ROHRPOST`` settings dict, its defaults and its validation."""

from __future__ import annotations

import math
import sys
from typing import Any

import pytest

from rohrpost import conf
from rohrpost.protocol import MAX_DEPTH_BOUND

VALID_SETTING: dict[str, Any] = {
    "MAX_FRAME_BYTES": 1024,
    "MAX_DEPTH": 8,
    "MAX_CONTAINERS": 500,
    "RATE_LIMIT": {"RATE": 5, "BURST": 10},
    "BYTE_RATE_LIMIT": {"RATE": 4096, "BURST": 65536},
    "FLOOD_CLOSE_AFTER": 3,
    "FLOOD_COOLDOWN": 2.5,
    "BATCH_GROUP_MESSAGES": True,
    "PUBLISH_WINDOW": 0.5,
    "MAX_IN_FLIGHT": 8,
    "SYNC_THREADS": 8,
    "SEND_QUEUE_LIMIT": 65536,
    "AUTHENTICATE": "tests.test_auth.user_for_token",
    "REQUIRE_AUTHENTICATION": True,
    "HISTORY": {"SIZE": 50, "TTL": 60, "REDIS_URL": "redis://127.0.0.1:6379/2"},
    "METRICS": True,
}


def test_defaults_are_the_documented_values() -> None:
    assert conf.DEFAULTS == {
        "MAX_FRAME_BYTES": 262144,
        "MAX_DEPTH": 32,
        "MAX_CONTAINERS": 10000,
        "RATE_LIMIT": {"RATE": 100.0, "BURST": 200},
        "BYTE_RATE_LIMIT": {"RATE": 524288, "BURST": 1048576},
        "FLOOD_CLOSE_AFTER": 100,
        "FLOOD_COOLDOWN": 10.0,
        "BATCH_GROUP_MESSAGES": False,
        "PUBLISH_WINDOW": 0.02,
        "MAX_IN_FLIGHT": 1,
        "SYNC_THREADS": 1,
        "SEND_QUEUE_LIMIT": 1048576,
        "AUTHENTICATE": None,
        "REQUIRE_AUTHENTICATION": False,
        "HISTORY": {"ENABLED": False, "SIZE": 1000, "TTL": 300, "REDIS_URL": None},
        "METRICS": False,
    }


def test_the_defaults_pass_their_own_validation() -> None:
    assert conf.problems(conf.DEFAULTS) == []


def test_a_fully_valid_setting_has_no_problems() -> None:
    assert conf.problems(VALID_SETTING) == []


def test_an_empty_setting_has_no_problems() -> None:
    assert conf.problems({}) == []


# --- options() and get() -----------------------------------------------------------------


def test_options_is_empty_without_the_setting(settings: Any) -> None:
    del settings.ROHRPOST
    assert conf.options() == {}


def test_options_is_empty_when_the_setting_is_not_a_dict(settings: Any) -> None:
    settings.ROHRPOST = [("MAX_DEPTH", 4)]
    assert conf.options() == {}


def test_options_returns_the_setting(settings: Any) -> None:
    settings.ROHRPOST = {"MAX_DEPTH": 4}
    assert conf.options() == {"MAX_DEPTH": 4}


@pytest.mark.parametrize("name", sorted(conf.DEFAULTS))
def test_get_returns_the_default_without_the_setting(settings: Any, name: str) -> None:
    del settings.ROHRPOST
    assert conf.get(name) == conf.DEFAULTS[name]


@pytest.mark.parametrize("name", sorted(conf.DEFAULTS))
def test_get_returns_the_default_for_an_unset_key(settings: Any, name: str) -> None:
    settings.ROHRPOST = {}
    assert conf.get(name) == conf.DEFAULTS[name]


@pytest.mark.parametrize("name", sorted(conf.DEFAULTS))
def test_get_returns_a_set_value(settings: Any, name: str) -> None:
    settings.ROHRPOST = VALID_SETTING
    assert conf.get(name) == VALID_SETTING[name]


def test_get_returns_none_for_a_rate_limit_turned_off(settings: Any) -> None:
    settings.ROHRPOST = {"RATE_LIMIT": None}
    assert conf.get("RATE_LIMIT") is None


@pytest.mark.parametrize(
    ("name", "invalid"),
    [
        ("MAX_FRAME_BYTES", 0),
        ("MAX_DEPTH", MAX_DEPTH_BOUND + 1),
        ("MAX_CONTAINERS", 0),
        ("MAX_CONTAINERS", 10**7 + 1),
        ("MAX_CONTAINERS", True),
        ("SEND_QUEUE_LIMIT", 1000),
        ("SEND_QUEUE_LIMIT", 2 * 1024**3),
        ("SEND_QUEUE_LIMIT", "1MB"),
        ("RATE_LIMIT", {"RATE": 0, "BURST": 10}),
        ("FLOOD_CLOSE_AFTER", True),
        ("FLOOD_COOLDOWN", -1),
        ("BATCH_GROUP_MESSAGES", "yes"),
        ("PUBLISH_WINDOW", -1),
        ("MAX_IN_FLIGHT", 0),
        ("SYNC_THREADS", 0),
        ("AUTHENTICATE", "no.such.module.hook"),
        ("REQUIRE_AUTHENTICATION", 1),
        ("METRICS", "on"),
    ],
)
def test_get_returns_the_default_for_an_invalid_value(
    settings: Any, name: str, invalid: Any
) -> None:
    settings.ROHRPOST = {name: invalid}
    assert conf.get(name) == conf.DEFAULTS[name]


def test_get_reads_the_setting_at_call_time(settings: Any) -> None:
    settings.ROHRPOST = {"MAX_DEPTH": 4}
    assert conf.get("MAX_DEPTH") == 4
    settings.ROHRPOST = {"MAX_DEPTH": 5}
    assert conf.get("MAX_DEPTH") == 5


def test_get_of_an_unknown_name_raises_key_error() -> None:
    with pytest.raises(KeyError):
        conf.get("NO_SUCH_SETTING")


# --- problems(): the shape of the setting ------------------------------------------------


@pytest.mark.parametrize(
    ("value", "type_name"),
    [(None, "NoneType"), ([], "list"), ("MAX_DEPTH=4", "str"), (42, "int")],
)
def test_a_setting_that_is_not_a_dict_is_one_problem(value: Any, type_name: str) -> None:
    assert conf.problems(value) == [f"ROHRPOST must be a dict, not {type_name}."]


def test_an_unknown_key_is_a_problem_that_lists_the_known_keys() -> None:
    assert conf.problems({"MAX_FRAME_SIZE": 10}) == [
        "ROHRPOST has an unknown key 'MAX_FRAME_SIZE'; the keys are: AUTHENTICATE, "
        "BATCH_GROUP_MESSAGES, BYTE_RATE_LIMIT, FLOOD_CLOSE_AFTER, FLOOD_COOLDOWN, "
        "HISTORY, MAX_CONTAINERS, MAX_DEPTH, MAX_FRAME_BYTES, MAX_IN_FLIGHT, METRICS, "
        "PUBLISH_WINDOW, RATE_LIMIT, REQUIRE_AUTHENTICATION, SEND_QUEUE_LIMIT, SYNC_THREADS."
    ]


def test_a_non_string_key_is_an_unknown_key() -> None:
    (problem,) = conf.problems({1: 2})
    assert problem.startswith("ROHRPOST has an unknown key 1; the keys are: ")


def test_every_problem_is_reported_unknown_keys_first() -> None:
    found = conf.problems(
        {"MAX_DEPTH": 0, "typo": 1, "PUBLISH_WINDOW": "soon", "BATCH_GROUP_MESSAGES": 1}
    )
    assert [problem.split(" ", 1)[0] for problem in found] == [
        "ROHRPOST",
        "ROHRPOST['MAX_DEPTH']",
        "ROHRPOST['BATCH_GROUP_MESSAGES']",
        "ROHRPOST['PUBLISH_WINDOW']",
    ]
    assert "unknown key 'typo'" in found[0]


# --- problems(): each key --------------------------------------------------------------


def only_problem(name: str, value: Any) -> str | None:
    """The one problem ``{name: value}`` has, or ``None`` when it is valid."""
    found = conf.problems({name: value})
    assert len(found) <= 1, found
    return found[0] if found else None


@pytest.mark.parametrize("value", [1, 1024, 256 * 1024, 2**40])
def test_max_frame_bytes_accepts_positive_integers(value: int) -> None:
    assert only_problem("MAX_FRAME_BYTES", value) is None


@pytest.mark.parametrize("value", [0, -1, True, False, 1024.0, "1024", None])
def test_max_frame_bytes_rejects_what_is_not_a_positive_integer(value: Any) -> None:
    assert only_problem("MAX_FRAME_BYTES", value) == (
        f"ROHRPOST['MAX_FRAME_BYTES'] must be a positive integer (bytes), not {value!r}."
    )


@pytest.mark.parametrize("value", [1, 32, MAX_DEPTH_BOUND])
def test_max_depth_accepts_integers_from_1_to_the_bound(value: int) -> None:
    assert only_problem("MAX_DEPTH", value) is None


@pytest.mark.parametrize("value", [0, -3, 501, True, 8.0, "8", None])
def test_max_depth_rejects_what_is_not_an_integer_in_range(value: Any) -> None:
    assert only_problem("MAX_DEPTH", value) == (
        f"ROHRPOST['MAX_DEPTH'] must be an integer from 1 to 500, not {value!r}."
    )


@pytest.mark.parametrize(
    "value",
    [
        None,
        {"RATE": 100, "BURST": 200},
        {"RATE": 0.5, "BURST": 1},
        {"RATE": 1e-9, "BURST": 1.5},
    ],
)
@pytest.mark.parametrize("name", ["RATE_LIMIT", "BYTE_RATE_LIMIT"])
def test_rate_limits_accept_none_and_positive_rate_and_burst(value: Any, name: str) -> None:
    assert only_problem(name, value) is None


@pytest.mark.parametrize(
    "value",
    [
        False,
        0,
        "100/s",
        [100, 200],
        {},
        {"RATE": 100},
        {"BURST": 200},
        {"rate": 100, "burst": 200},
        {"RATE": 100, "BURST": 200, "WINDOW": 1},
        {"RATE": 0, "BURST": 200},
        {"RATE": -1, "BURST": 200},
        {"RATE": 100, "BURST": 0},
        {"RATE": 100, "BURST": 0.5},
        {"RATE": 100, "BURST": -5},
        {"RATE": True, "BURST": 200},
        {"RATE": 100, "BURST": True},
        {"RATE": "100", "BURST": 200},
        {"RATE": 100, "BURST": None},
    ],
)
@pytest.mark.parametrize(("name", "unit"), [("RATE_LIMIT", "frames"), ("BYTE_RATE_LIMIT", "bytes")])
def test_rate_limits_reject_anything_else(value: Any, name: str, unit: str) -> None:
    assert only_problem(name, value) == (
        f"ROHRPOST[{name!r}] must be None or {{'RATE': <{unit} per second, > 0>, "
        f"'BURST': <{unit}, >= 1>}}, not {value!r}."
    )


@pytest.mark.parametrize(
    "value",
    [{"RATE": math.nan, "BURST": 200}, {"RATE": 100, "BURST": math.nan}],
    ids=["rate-nan", "burst-nan"],
)
@pytest.mark.parametrize("name", ["RATE_LIMIT", "BYTE_RATE_LIMIT"])
def test_rate_limits_reject_nan(value: Any, name: str) -> None:
    assert only_problem(name, value) is not None


@pytest.mark.parametrize("value", [1, 100, 10**6])
def test_flood_close_after_accepts_positive_integers(value: int) -> None:
    assert only_problem("FLOOD_CLOSE_AFTER", value) is None


@pytest.mark.parametrize("value", [0, -1, True, 10.0, "10", None])
def test_flood_close_after_rejects_what_is_not_a_positive_integer(value: Any) -> None:
    assert only_problem("FLOOD_CLOSE_AFTER", value) == (
        "ROHRPOST['FLOOD_CLOSE_AFTER'] must be a positive integer (refused frames per second), "
        f"not {value!r}."
    )


@pytest.mark.parametrize("value", [True, False])
def test_batch_group_messages_accepts_bools(value: bool) -> None:
    assert only_problem("BATCH_GROUP_MESSAGES", value) is None


@pytest.mark.parametrize("value", [0, 1, "True", None])
def test_batch_group_messages_rejects_non_bools(value: Any) -> None:
    assert only_problem("BATCH_GROUP_MESSAGES", value) == (
        f"ROHRPOST['BATCH_GROUP_MESSAGES'] must be True or False, not {value!r}."
    )


@pytest.mark.parametrize("value", [0, 0.0, 0.02, 1, 10, 10.0])
def test_publish_window_accepts_seconds_from_0_to_10(value: float) -> None:
    assert only_problem("PUBLISH_WINDOW", value) is None


@pytest.mark.parametrize("value", [-0.01, -1, 10.001, 11, math.inf, math.nan, "0.02", True, None])
def test_publish_window_rejects_what_is_not_0_to_10_seconds(value: Any) -> None:
    assert only_problem("PUBLISH_WINDOW", value) == (
        f"ROHRPOST['PUBLISH_WINDOW'] must be a number of seconds from 0 to 10, not {value!r}."
    )


@pytest.mark.parametrize("value", [{"RATE": math.inf, "BURST": 1}, {"RATE": 1, "BURST": math.inf}])
def test_rate_limit_rejects_infinity_none_turns_it_off_instead(value: Any) -> None:
    assert only_problem("RATE_LIMIT", value) is not None


@pytest.mark.parametrize("value", [1, 8, conf.MAX_IN_FLIGHT_BOUND])
def test_max_in_flight_accepts_integers_from_1_to_the_bound(value: int) -> None:
    assert only_problem("MAX_IN_FLIGHT", value) is None


@pytest.mark.parametrize("value", [0, -1, 1001, True, 2.0, "4", None])
def test_max_in_flight_rejects_what_is_not_an_integer_in_range(value: Any) -> None:
    assert only_problem("MAX_IN_FLIGHT", value) == (
        f"ROHRPOST['MAX_IN_FLIGHT'] must be an integer from 1 to 1000, not {value!r}."
    )


@pytest.mark.parametrize("value", [1, 2, conf.SYNC_THREADS_BOUND])
def test_sync_threads_accepts_integers_from_1_to_the_bound(value: int) -> None:
    assert only_problem("SYNC_THREADS", value) is None


@pytest.mark.parametrize("value", [0, -1, 257, True, 4.0, "4", None])
def test_sync_threads_rejects_what_is_not_an_integer_in_range(value: Any) -> None:
    assert only_problem("SYNC_THREADS", value) == (
        f"ROHRPOST['SYNC_THREADS'] must be an integer from 1 to 256 (threads), not {value!r}."
    )


async def _async_hook(token: str, scope: Any) -> None:
    return None


@pytest.mark.parametrize(
    "value", [None, "tests.test_auth.user_for_token", _async_hook, lambda token, scope: None]
)
def test_authenticate_accepts_none_a_callable_and_a_dotted_path(value: Any) -> None:
    assert only_problem("AUTHENTICATE", value) is None


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("tests.test_auth.no_such_hook", "does not"),
        ("nodots", "does not"),
        ("tests.test_auth.TOKENS", "must be None, a callable"),
        (42, "must be None, a callable"),
        (b"tests.test_auth.user_for_token", "must be None, a callable"),
    ],
)
def test_authenticate_rejects_what_does_not_name_a_callable(value: Any, says: str) -> None:
    problem = only_problem("AUTHENTICATE", value)
    assert problem is not None
    assert problem.startswith("ROHRPOST['AUTHENTICATE'] must ")
    assert says in problem


@pytest.mark.parametrize("value", [1, 0, "yes", None])
def test_require_authentication_rejects_what_is_not_a_bool(value: Any) -> None:
    assert only_problem("REQUIRE_AUTHENTICATION", value) == (
        f"ROHRPOST['REQUIRE_AUTHENTICATION'] must be True or False, not {value!r}."
    )


@pytest.mark.parametrize("value", [0, 0.5, 10, 3600])
def test_flood_cooldown_accepts_seconds_from_0_to_an_hour(value: float) -> None:
    assert only_problem("FLOOD_COOLDOWN", value) is None


@pytest.mark.parametrize("value", [-1, 3601, math.inf, math.nan, True, "10", None])
def test_flood_cooldown_rejects_anything_else(value: Any) -> None:
    assert only_problem("FLOOD_COOLDOWN", value) == (
        f"ROHRPOST['FLOOD_COOLDOWN'] must be a number of seconds from 0 to 3600, not {value!r}."
    )


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"ENABLED": True},
        {"SIZE": 1},
        {"TTL": 0.5 + 1},
        {"REDIS_URL": "rediss://h/0"},
        {"REDIS_URL": None},
    ],
)
def test_a_valid_history_setting_is_no_problem(value: Any) -> None:
    assert conf.problems({"HISTORY": value}) == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "must be a dict like"),
        ({"SIZE": 10, "KEEP": 1}, "must be a dict like"),
        ({"ENABLED": 1}, "['ENABLED'] must be True or False"),
        ({"SIZE": 0}, "['SIZE'] must be an integer from 1 to 1000000"),
        ({"SIZE": True}, "['SIZE'] must be an integer"),
        ({"TTL": 0}, "['TTL'] must be a number of seconds from 1 to 604800"),
        ({"TTL": float("nan")}, "['TTL'] must be a number"),
        ({"REDIS_URL": "http://h"}, "['REDIS_URL'] must be None or a redis:// URL"),
        ({"REDIS_URL": 5}, "['REDIS_URL'] must be None or a redis:// URL"),
    ],
)
def test_an_invalid_history_setting_is_a_problem(value: Any, message: str) -> None:
    (problem,) = conf.problems({"HISTORY": value})
    assert problem.startswith("ROHRPOST['HISTORY'] ")
    assert message in problem


@pytest.mark.parametrize("value", [True, False])
def test_metrics_accepts_bools_when_prometheus_client_imports(value: bool) -> None:
    assert only_problem("METRICS", value) is None


@pytest.mark.parametrize("value", [1, 0, "yes", None])
def test_metrics_rejects_what_is_not_a_bool(value: Any) -> None:
    assert only_problem("METRICS", value) == (
        f"ROHRPOST['METRICS'] must be True or False, not {value!r}."
    )


def test_metrics_on_without_prometheus_client_is_a_problem_and_falls_back_to_off(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The dev group installs prometheus_client: a None entry makes its import fail.
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    assert only_problem("METRICS", True) == (
        "ROHRPOST['METRICS'] is True, but prometheus_client is not installed: "
        'pip install "rohrpost[metrics]".'
    )
    assert only_problem("METRICS", False) is None
    settings.ROHRPOST = {"METRICS": True}
    assert conf.get("METRICS") is False
