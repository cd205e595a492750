"""Tests for rohrpost.registry: registering handlers and telling how to call them."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from rohrpost import registry as registry_module
from rohrpost.registry import HANDLERS, HandlerRegistry, handler_mode, rohrpost_handler


def sync_handler(consumer: Any, request: Any) -> Any:
    return request


async def async_handler(consumer: Any, request: Any) -> Any:
    return request


def test_default_registry_is_a_handler_registry_and_a_dict() -> None:
    assert isinstance(HANDLERS, HandlerRegistry)
    assert isinstance(HANDLERS, dict)


def test_module_exports_its_public_names() -> None:
    assert sorted(registry_module.__all__) == [
        "HANDLERS",
        "Handler",
        "HandlerMode",
        "HandlerRegistry",
        "handler_mode",
        "rohrpost_handler",
    ]


def test_rohrpost_handler_with_a_string_registers_in_the_default_registry(
    registry: HandlerRegistry,
) -> None:
    @rohrpost_handler("test-registry-one")
    def handle(consumer: Any, request: Any) -> None:
        return None

    assert registry is HANDLERS
    assert HANDLERS["test-registry-one"] is handle


def test_rohrpost_handler_with_a_list_registers_every_name(registry: HandlerRegistry) -> None:
    @rohrpost_handler(["test-registry-a", "test-registry-b"])
    async def handle(consumer: Any, request: Any) -> None:
        return None

    assert HANDLERS["test-registry-a"] is handle
    assert HANDLERS["test-registry-b"] is handle


def test_rohrpost_handler_without_a_name_registers_the_function_under_its_own_name(
    registry: HandlerRegistry,
) -> None:
    @rohrpost_handler()
    def test_registry_own_name(consumer: Any, request: Any) -> None:
        return None

    assert HANDLERS["test_registry_own_name"] is test_registry_own_name


@pytest.mark.parametrize("empty", ["", []])
def test_rohrpost_handler_with_an_empty_name_uses_the_function_name_as_4x_did(
    registry: HandlerRegistry, empty: Any
) -> None:
    @rohrpost_handler(empty)
    def test_registry_empty_name(consumer: Any, request: Any) -> None:
        return None

    assert HANDLERS["test_registry_empty_name"] is test_registry_empty_name
    assert "" not in HANDLERS


def test_rohrpost_handler_takes_the_name_by_keyword(registry: HandlerRegistry) -> None:
    @rohrpost_handler(name="test-registry-keyword")
    def handle(consumer: Any, request: Any) -> None:
        return None

    @rohrpost_handler(name=["test-registry-k1", "test-registry-k2"])
    def handle_both(consumer: Any, request: Any) -> None:
        return None

    assert HANDLERS["test-registry-keyword"] is handle
    assert HANDLERS["test-registry-k1"] is HANDLERS["test-registry-k2"] is handle_both


def test_a_nameless_callable_needs_a_name() -> None:
    registry = HandlerRegistry()
    with pytest.raises(ValueError, match="has no __name__"):
        registry.register(None, functools.partial(print))
    assert registry == {}


def test_decorator_returns_the_function_unchanged(registry: HandlerRegistry) -> None:
    def handle(consumer: Any, request: Any) -> str:
        return "result"

    decorated = rohrpost_handler("test-registry-unchanged")(handle)

    assert decorated is handle
    assert decorated(consumer=None, request={}) == "result"


def test_duplicate_name_raises_value_error_naming_the_type(registry: HandlerRegistry) -> None:
    rohrpost_handler("x")(sync_handler)

    with pytest.raises(ValueError, match=r'^Handler for "x" is already defined') as info:
        rohrpost_handler("x")(async_handler)

    assert str(info.value) == 'Handler for "x" is already defined.'
    assert HANDLERS["x"] is sync_handler


def test_duplicate_name_in_a_list_registers_none_of_the_names() -> None:
    handlers = HandlerRegistry()
    handlers.register("taken", sync_handler)

    with pytest.raises(ValueError, match=r'^Handler for "taken" is already defined'):
        handlers.register(["fresh", "taken"], async_handler)

    assert dict(handlers) == {"taken": sync_handler}


def test_separate_registries_are_independent() -> None:
    first = HandlerRegistry()
    second = HandlerRegistry()

    first.handler("shared")(sync_handler)
    second.handler("shared")(async_handler)

    assert first == {"shared": sync_handler}
    assert second == {"shared": async_handler}


def test_rohrpost_handler_with_registry_leaves_the_default_registry_alone() -> None:
    own = HandlerRegistry()
    before = dict(HANDLERS)

    @rohrpost_handler("test-registry-own", registry=own)
    def handle(consumer: Any, request: Any) -> None:
        return None

    assert own == {"test-registry-own": handle}
    assert dict(HANDLERS) == before


def test_register_accepts_any_iterable_of_names() -> None:
    handlers = HandlerRegistry()

    handlers.register((name for name in ("a", "b")), sync_handler)

    assert handlers == {"a": sync_handler, "b": sync_handler}


def test_repr_lists_the_registered_names_sorted() -> None:
    handlers = HandlerRegistry()
    handlers.register(["b", "a"], sync_handler)

    assert repr(handlers) == "HandlerRegistry(['a', 'b'])"


def test_inline_on_an_async_handler_raises_value_error() -> None:
    handlers = HandlerRegistry()

    with pytest.raises(ValueError, match=r"^inline=True is for sync handlers"):
        handlers.register("a", async_handler, inline=True)

    assert "a" not in handlers


def test_inline_on_a_partial_of_an_async_handler_raises_value_error() -> None:
    with pytest.raises(ValueError, match=r"^inline=True is for sync handlers"):
        HandlerRegistry().register("a", functools.partial(async_handler), inline=True)


def test_inline_via_rohrpost_handler_marks_a_sync_handler_inline() -> None:
    own = HandlerRegistry()

    @rohrpost_handler("fast", inline=True, registry=own)
    def handle(consumer: Any, request: Any) -> None:
        return None

    assert own["fast"] is handle
    assert handler_mode(handle) == "inline"


def test_handler_mode_of_a_plain_function_is_sync() -> None:
    assert handler_mode(sync_handler) == "sync"


def test_handler_mode_of_an_async_function_is_async() -> None:
    assert handler_mode(async_handler) == "async"


def test_handler_mode_of_a_partial_of_an_async_function_is_async() -> None:
    assert handler_mode(functools.partial(async_handler, consumer=None)) == "async"


def test_handler_mode_of_a_partial_of_a_sync_function_is_sync() -> None:
    assert handler_mode(functools.partial(sync_handler, consumer=None)) == "sync"


def test_handler_mode_of_an_object_with_async_call_is_async() -> None:
    class AsyncCallable:
        async def __call__(self, consumer: Any, request: Any) -> None:
            return None

    assert handler_mode(AsyncCallable()) == "async"


def test_handler_mode_of_an_object_with_sync_call_is_sync() -> None:
    class SyncCallable:
        def __call__(self, consumer: Any, request: Any) -> None:
            return None

    assert handler_mode(SyncCallable()) == "sync"


def test_handler_mode_of_a_bound_async_method_is_async() -> None:
    class Handlers:
        async def handle(self, consumer: Any, request: Any) -> None:
            return None

    assert handler_mode(Handlers().handle) == "async"


def test_inline_on_a_sync_callable_object_makes_its_mode_inline() -> None:
    class SyncCallable:
        def __call__(self, consumer: Any, request: Any) -> None:
            return None

    handler = SyncCallable()
    HandlerRegistry().register("a", handler, inline=True)

    assert handler_mode(handler) == "inline"


def test_registering_without_inline_leaves_a_sync_handler_sync() -> None:
    def handle(consumer: Any, request: Any) -> None:
        return None

    HandlerRegistry().register("a", handle)

    assert handler_mode(handle) == "sync"
