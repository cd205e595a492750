"""Tests for rohrpost.exceptions: one base class, default codes and texts, optional data."""

from __future__ import annotations

import pytest

from rohrpost import exceptions
from rohrpost.exceptions import Forbidden, InvalidData, ProtocolError, RohrpostError


def test_module_exports_exactly_the_four_exception_classes() -> None:
    assert sorted(exceptions.__all__) == [
        "Forbidden",
        "InvalidData",
        "ProtocolError",
        "RohrpostError",
    ]


def test_rohrpost_error_is_an_exception_and_the_base_of_every_rohrpost_exception() -> None:
    assert issubclass(RohrpostError, Exception)
    assert issubclass(ProtocolError, RohrpostError)
    assert issubclass(Forbidden, RohrpostError)
    assert issubclass(InvalidData, RohrpostError)


@pytest.mark.parametrize(
    ("cls", "code", "message"),
    [
        (RohrpostError, "error", "The request could not be handled."),
        (ProtocolError, "invalid_request", "The frame is not a valid rohrpost request."),
        (Forbidden, "forbidden", "You are not allowed to do this."),
        (InvalidData, "invalid", "The data is invalid."),
    ],
)
def test_exception_without_arguments_uses_its_class_default_code_and_message(
    cls: type[RohrpostError], code: str, message: str
) -> None:
    exc = cls()

    assert exc.code == code
    assert exc.message == message
    assert exc.data is None
    assert str(exc) == message
    assert exc.args == (message,)


@pytest.mark.parametrize("cls", [RohrpostError, ProtocolError, Forbidden])
def test_explicit_message_code_and_data_override_the_defaults(cls: type[RohrpostError]) -> None:
    exc = cls("A name is required.", code="invalid", data={"field": "name"})

    assert exc.message == "A name is required."
    assert exc.code == "invalid"
    assert exc.data == {"field": "name"}
    assert str(exc) == "A name is required."


def test_empty_message_is_kept_rather_than_replaced_by_the_default() -> None:
    exc = Forbidden("", code="")

    assert exc.message == ""
    assert exc.code == ""
    assert str(exc) == ""


def test_falsy_data_is_kept_as_given() -> None:
    assert RohrpostError(data=0).data == 0
    assert RohrpostError(data=[]).data == []


def test_code_and_data_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        RohrpostError("text", "code")  # type: ignore[misc]


def test_subclass_can_set_its_own_defaults() -> None:
    class Conflict(RohrpostError):
        default_code = "conflict"
        default_message = "Somebody else changed it."

    exc = Conflict()

    assert (exc.code, exc.message) == ("conflict", "Somebody else changed it.")


def test_except_rohrpost_error_catches_every_subclass() -> None:
    for cls in (ProtocolError, Forbidden):
        with pytest.raises(RohrpostError) as info:
            raise cls()
        assert type(info.value) is cls
