"""Tests for rohrpost's public surface: ``__all__`` everywhere, and the 4.x import paths."""

from __future__ import annotations

import importlib
import pkgutil
import types
from importlib.metadata import version

import pytest

import rohrpost

PUBLIC_MODULES = [
    "rohrpost",
    "rohrpost.apps",
    "rohrpost.async_consumer",
    "rohrpost.changefeed",
    "rohrpost.consumers",
    "rohrpost.dispatch",
    "rohrpost.encoding",
    "rohrpost.exceptions",
    "rohrpost.handlers",
    "rohrpost.main",
    "rohrpost.message",
    "rohrpost.messages",
    "rohrpost.mixins",
    "rohrpost.protocol",
    "rohrpost.publisher",
    "rohrpost.registry",
    "rohrpost.sync_consumer",
    "rohrpost.tests",
]


def _discovered_public_modules() -> list[str]:
    return sorted(
        f"rohrpost.{info.name}"
        for info in pkgutil.iter_modules(rohrpost.__path__)
        if not info.name.startswith("_")
    )


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_known_public_module_defines_all_and_every_name_exists(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert isinstance(module.__all__, list)
    assert len(module.__all__) == len(set(module.__all__)), "duplicate names in __all__"
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []


@pytest.mark.parametrize("module_name", _discovered_public_modules())
def test_every_public_module_in_the_package_defines_a_valid_all(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert hasattr(module, "__all__"), f"{module_name} has no __all__"
    assert [name for name in module.__all__ if not hasattr(module, name)] == []


def test_package_reexports_exactly_its_all() -> None:
    public = {
        name
        for name, value in vars(rohrpost).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"  # `from __future__ import annotations`
    }
    assert public | {"__version__"} == set(rohrpost.__all__)


def test_version_is_also_importable_by_its_4x_name() -> None:
    assert rohrpost.__version__ == rohrpost.VERSION
    assert isinstance(rohrpost.VERSION, str)


@pytest.mark.parametrize(
    ("name", "home"),
    [
        ("AsyncRohrpostConsumer", "rohrpost.consumers"),
        ("SyncRohrpostConsumer", "rohrpost.consumers"),
        ("Forbidden", "rohrpost.exceptions"),
        ("ProtocolError", "rohrpost.exceptions"),
        ("RohrpostError", "rohrpost.exceptions"),
        ("asend_message", "rohrpost.message"),
        ("asend_to_group", "rohrpost.message"),
        ("send_error", "rohrpost.message"),
        ("send_message", "rohrpost.message"),
        ("send_success", "rohrpost.message"),
        ("send_to_group", "rohrpost.message"),
        ("HANDLERS", "rohrpost.registry"),
        ("HandlerRegistry", "rohrpost.registry"),
        ("rohrpost_handler", "rohrpost.registry"),
    ],
)
def test_package_export_is_the_object_from_its_home_module(name: str, home: str) -> None:
    assert name in rohrpost.__all__
    assert getattr(rohrpost, name) is getattr(importlib.import_module(home), name)


def test_identity_table_above_lists_every_package_export() -> None:
    assert set(rohrpost.__all__) - {"__version__", "VERSION"} == {
        "AsyncRohrpostConsumer",
        "SyncRohrpostConsumer",
        "Forbidden",
        "ProtocolError",
        "RohrpostError",
        "asend_message",
        "asend_to_group",
        "send_error",
        "send_message",
        "send_success",
        "send_to_group",
        "HANDLERS",
        "HandlerRegistry",
        "rohrpost_handler",
    }


def test_version_matches_the_installed_distribution() -> None:
    assert rohrpost.__version__ == version("rohrpost")


@pytest.mark.parametrize(
    ("module_name", "name"),
    [
        ("rohrpost.sync_consumer", "SyncRohrpostConsumer"),
        ("rohrpost.async_consumer", "AsyncRohrpostConsumer"),
        ("rohrpost.registry", "rohrpost_handler"),
        ("rohrpost.registry", "HANDLERS"),
        ("rohrpost.handlers", "handle_ping"),
        ("rohrpost.message", "send_message"),
        ("rohrpost.message", "send_error"),
        ("rohrpost.message", "send_success"),
        ("rohrpost.message", "send_to_group"),
        ("rohrpost.message", "build_message"),
        ("rohrpost.message", "MessageID"),
        ("rohrpost.message", "TolerantJSONEncoder"),
        ("rohrpost.messages", "send_message"),
        ("rohrpost.messages", "send_error"),
        ("rohrpost.messages", "send_success"),
        ("rohrpost.messages", "send_to_group"),
        ("rohrpost.messages", "build_message"),
        ("rohrpost.main", "handle_rohrpost_message"),
        ("rohrpost.tests", "Consumer"),
    ],
)
def test_design_compatibility_name_imports(module_name: str, name: str) -> None:
    module = importlib.import_module(module_name)
    assert name in module.__all__
    assert getattr(module, name) is not None


def test_compat_modules_export_the_same_objects_as_their_homes() -> None:
    from rohrpost import async_consumer, consumers, message, messages, sync_consumer

    assert sync_consumer.SyncRohrpostConsumer is consumers.SyncRohrpostConsumer
    assert async_consumer.AsyncRohrpostConsumer is consumers.AsyncRohrpostConsumer
    for name in messages.__all__:
        assert getattr(messages, name) is getattr(message, name)


def test_sync_consumer_keeps_its_4x_methods() -> None:
    from rohrpost.sync_consumer import SyncRohrpostConsumer

    for method in ("add_to_group", "remove_from_group", "rohrpost_message"):
        assert callable(getattr(SyncRohrpostConsumer, method))


def test_importing_the_consumer_registers_ping() -> None:
    from rohrpost.consumers import SyncRohrpostConsumer  # noqa: F401
    from rohrpost.handlers import handle_ping
    from rohrpost.registry import HANDLERS

    assert HANDLERS["ping"] is handle_ping


@pytest.mark.parametrize(
    "name", ["NotifyOnCreate", "NotifyOnUpdate", "NotifyOnDelete", "NotifyOnChange"]
)
def test_design_compatibility_mixin_names_import(name: str) -> None:
    from rohrpost import mixins

    assert name in mixins.__all__
    assert isinstance(getattr(mixins, name), type)
