"""Tests for rohrpost.encoding: both codecs decode strictly and encode to the same text."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import math
import os
import subprocess
import sys
import types
import uuid
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.utils.functional import lazy
from django.utils.translation import gettext_lazy
from hypothesis import given, settings
from hypothesis import strategies as st

from rohrpost import encoding, protocol
from rohrpost.encoding import JSONDecodeError

assert encoding.ORJSON is not None, "the test environment installs orjson"
STDLIB = encoding.STDLIB
ORJSON = encoding.ORJSON
CODECS = [pytest.param(STDLIB, id="json"), pytest.param(ORJSON, id="orjson")]
ROOT = Path(__file__).resolve().parent.parent


def outcome(function: Any, argument: Any) -> tuple[str, Any]:
    """Return what a codec function does with ``argument``, in a comparable form."""
    try:
        value = function(argument)
    except RecursionError:
        return ("RecursionError", None)
    except JSONDecodeError as exc:
        return ("JSONDecodeError", str(exc))
    except (TypeError, ValueError) as exc:
        return (type(exc).__name__, str(exc))
    return ("ok", canonical(value))


def canonical(value: Any) -> Any:
    """Spell a decoded value so that equal means same types, same floats, same key order."""
    if type(value) is float:
        return ("float", repr(value))
    if type(value) is list:
        return ("list", [canonical(item) for item in value])
    if type(value) is dict:
        return ("dict", [(key, canonical(item)) for key, item in value.items()])
    return (type(value).__name__, value)


def both_loads(text: str) -> tuple[str, Any]:
    """Decode ``text`` with both codecs, check they agree, and return the outcome."""
    stdlib = outcome(STDLIB.loads, text)
    assert outcome(ORJSON.loads, text) == stdlib
    return stdlib


def both_dumps(value: Any) -> str:
    """Encode ``value`` with both codecs, check they agree, and return the text."""
    text = STDLIB.dumps(value)
    assert ORJSON.dumps(value) == text
    return text


# --- the module's surface -------------------------------------------------------------


def test_codecs_are_named_json_and_orjson() -> None:
    assert (STDLIB.name, ORJSON.name) == ("json", "orjson")


def test_default_codec_is_orjson_when_installed_and_module_functions_are_its() -> None:
    if os.environ.get("ROHRPOST_JSON") == "json":
        pytest.skip("ROHRPOST_JSON=json forces the standard library in this run")
    assert encoding.DEFAULT is ORJSON
    assert encoding.loads is ORJSON.loads
    assert encoding.dumps is ORJSON.dumps


def test_json_decode_error_is_a_value_error() -> None:
    assert issubclass(JSONDecodeError, ValueError)


def test_max_integer_digits_is_pythons_own_default_limit() -> None:
    assert encoding.MAX_INTEGER_DIGITS == 4300


def test_every_name_in_all_exists() -> None:
    for name in encoding.__all__:
        assert hasattr(encoding, name), name


def run_python(code: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, **env},
        timeout=60,
    )
    return result.stdout.strip()


def test_environment_variable_rohrpost_json_forces_the_standard_library() -> None:
    code = "from rohrpost import encoding; print(encoding.DEFAULT.name, encoding.dumps([1]))"

    assert run_python(code, ROHRPOST_JSON="json") == "json [1]"


def test_without_orjson_the_standard_library_is_the_default() -> None:
    code = (
        "import sys; sys.modules['orjson'] = None\n"
        "from rohrpost import encoding\n"
        "print(encoding.ORJSON, encoding.DEFAULT.name)"
    )

    assert run_python(code, ROHRPOST_JSON="") == "None json"


def test_make_orjson_codec_returns_none_when_orjson_cannot_be_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "orjson", None)

    assert encoding._make_orjson_codec() is None


# --- decoding: strict and equal -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("NaN", "NaN is not valid JSON."),
        ("[Infinity]", "Infinity is not valid JSON."),
        ('{"a": -Infinity}', "-Infinity is not valid JSON."),
        ("1e400", "The number 1e400 is too large."),
        ("[-1E+400]", "The number -1E+400 is too large."),
        ("9" * 5000, "An integer has more than 4300 digits."),
        ("-" + "9" * 4301, "An integer has more than 4300 digits."),
        ("9" * 400 + ".0", "The number " + "9" * 40 + " is too large."),
        ('"\\ud800"', "A string holds a lone UTF-16 surrogate."),
        ('["\\udc00"]', "A string holds a lone UTF-16 surrogate."),
        ('{"k": "a\\uDBFFb"}', "A string holds a lone UTF-16 surrogate."),
        ('{"\\ud800": 1}', "A string holds a lone UTF-16 surrogate."),
        ('"\\ude00\\ud83d"', "A string holds a lone UTF-16 surrogate."),
        ("", "Expecting value: line 1 column 1 (char 0)"),
        ("[1] x", "Extra data: line 1 column 5 (char 4)"),
        ('\ufeff{"a": 1}', "Expecting value: line 1 column 1 (char 0)"),
        ("{'a': 1}", "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        ('"a\x01"', "Invalid control character at: line 1 column 3 (char 2)"),
        ('"a\x1fb"', "Invalid control character at: line 1 column 3 (char 2)"),
        ("[1,]", "Expecting value: line 1 column 4 (char 3)"),
        ("01", "Extra data: line 1 column 2 (char 1)"),
        (".5", "Expecting value: line 1 column 1 (char 0)"),
        ("tru", "Expecting value: line 1 column 1 (char 0)"),
        ('"\\x"', "Invalid \\escape: line 1 column 2 (char 1)"),
        ('{"a" 1}', "Expecting ':' delimiter: line 1 column 6 (char 5)"),
    ],
)
@pytest.mark.parametrize("codec", CODECS)
def test_loads_refuses_non_strict_json_with_the_same_message(
    codec: encoding.Codec, text: str, message: str
) -> None:
    with pytest.raises(JSONDecodeError) as info:
        codec.loads(text)

    assert str(info.value) == message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"\\ud83d\\ude00"', "\U0001f600"),
        ('"\\uD800\\uDC00"', "\U00010000"),
        ('"\\u0041\\u00e9"', "Aé"),
        ('"\\u0000"', "\x00"),
        ('"\x7f"', "\x7f"),
        ("[1e-400]", [0.0]),
        ("-0", 0),
        ("1E5", 100000.0),
        ('{"a": 1, "a": 2}', {"a": 2}),
        (" \t\r\n[] \n", []),
        ("1234567890123456789012345", 1234567890123456789012345),
        ("-1234567890123456789012345", -1234567890123456789012345),
        ("18446744073709551616", 2**64),
        ("9999999999999999999", 9999999999999999999),
        ("-9223372036854775808", -(2**63)),
        ("7" * 4300, int("7" * 4300)),
        ("0." + "1" * 30, float("0." + "1" * 30)),
    ],
)
def test_both_codecs_decode_valid_json_to_the_same_exact_value(text: str, expected: Any) -> None:
    assert both_loads(text) == ("ok", canonical(expected))


def test_negative_zero_float_keeps_its_sign() -> None:
    kind, value = both_loads("-0.0")

    assert (kind, value) == ("ok", ("float", "-0.0"))


def test_integers_beyond_64_bits_inside_structures_are_decoded_exactly() -> None:
    text = '{"big": [123456789012345678901234567890, -98765432109876543210], "small": 1.5}'

    assert both_loads(text) == (
        "ok",
        canonical({"big": [123456789012345678901234567890, -98765432109876543210], "small": 1.5}),
    )


def test_digit_runs_inside_strings_do_not_change_the_result() -> None:
    text = '{"phone": "00000000000000000000001", "n": 3, "f": 2.5}'

    assert both_loads(text) == (
        "ok",
        canonical({"phone": "00000000000000000000001", "n": 3, "f": 2.5}),
    )


@pytest.mark.parametrize("depth", [5000, 100_000])
def test_nesting_beyond_both_decoders_limits_raises_recursion_error_in_both(depth: int) -> None:
    assert both_loads("[" * depth + "]" * depth) == ("RecursionError", None)


def test_nesting_between_the_two_decoders_limits_gives_the_same_frame_error() -> None:
    # The codecs differ here (the standard library recurses out near 1000 levels,
    # orjson at 1024); the protocol refuses such frames before either decodes them.
    text = '{"id": 1, "type": "t", "data": ' + "[" * 1010 + "]" * 1010 + "}"
    results = []
    for codec in (STDLIB, ORJSON):
        with mock.patch.object(encoding, "loads", codec.loads):
            results.append(protocol.parse_request(text))
    assert results[0] == results[1]
    assert results[0] == protocol.FrameError(
        protocol.TOO_DEEP, "The frame nests arrays and objects deeper than 32 levels.", 1, "t"
    )


@pytest.mark.parametrize(
    "text", ["-9223372036854775809", "-9999999999999999999", "[-1e0, -9300000000000000000]"]
)
def test_negative_integers_just_below_int64_decode_the_same_in_both_codecs(text: str) -> None:
    both_loads(text)


def test_raw_lone_surrogate_in_the_text_gives_the_same_outcome_in_both_codecs() -> None:
    both_loads('{"type": "\ud800"}')


@pytest.mark.parametrize("codec", CODECS)
def test_both_codecs_refuse_a_raw_lone_surrogate_in_the_text(codec: encoding.Codec) -> None:
    # A WebSocket text frame cannot hold one, but a str handed over directly can.
    with pytest.raises(JSONDecodeError, match=r"^The text holds a lone UTF-16 surrogate\.$"):
        codec.loads('"\ud800"')


# --- encoding: tolerant, compact, equal -----------------------------------------------


class Color(enum.Enum):
    RED = "red"


class Number(enum.IntEnum):
    ONE = 1


@dataclasses.dataclass
class Point:
    x: int
    y: Any = None


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (
            uuid.UUID("12345678-1234-5678-1234-567812345678"),
            '"12345678-1234-5678-1234-567812345678"',
        ),
        # Decimal is a JSON number, as in 4.x: integral values exactly, others as floats.
        (decimal.Decimal("9.99"), "9.99"),
        (decimal.Decimal("1.10"), "1.1"),
        (decimal.Decimal(3), "3"),
        (decimal.Decimal("3.000"), "3"),
        (decimal.Decimal("-0"), "0"),
        (decimal.Decimal("1E+2"), "100"),
        (decimal.Decimal("-1E-7"), "-1e-07"),
        (decimal.Decimal("0.00001"), "1e-05"),
        (decimal.Decimal("12345678901234567890.5"), "1.2345678901234567e+19"),
        (decimal.Decimal("123456789012345678901234567890"), "123456789012345678901234567890"),
        (decimal.Decimal("NaN"), "null"),
        (decimal.Decimal("-Infinity"), "null"),
        ({"price": decimal.Decimal("9.99"), "n": [decimal.Decimal(2)]}, '{"price":9.99,"n":[2]}'),
        (datetime.datetime(2024, 1, 2, 3, 4, 5, 6), '"2024-01-02T03:04:05.000006"'),
        (
            datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
            '"2024-01-02T03:04:05+00:00"',
        ),
        (
            datetime.datetime(
                2024, 1, 2, 3, 4, tzinfo=datetime.timezone(datetime.timedelta(hours=5, minutes=30))
            ),
            '"2024-01-02T03:04:00+05:30"',
        ),
        (datetime.date(2024, 2, 29), '"2024-02-29"'),
        (datetime.time(3, 4, 5, 123), '"03:04:05.000123"'),
        (datetime.time(23, 59, tzinfo=datetime.timezone.utc), '"23:59:00+00:00"'),
        (Color.RED, '"red"'),
        (Number.ONE, "1"),
        ([Color.RED, Number.ONE], '["red",1]'),
        (Point(1, Point(2)), '{"x":1,"y":{"x":2,"y":null}}'),
        (Point(1, {"when": datetime.date(2024, 1, 1)}), '{"x":1,"y":{"when":"2024-01-01"}}'),
        (types.MappingProxyType({"a": 1, "b": [2]}), '{"a":1,"b":[2]}'),
        ({3, 1, 2}, "[1,2,3]"),
        (frozenset({"only"}), '["only"]'),
        ((1, "two", (3,)), '[1,"two",[3]]'),
        (range(3), "[0,1,2]"),
        ({"nested": {"set": {5}}}, '{"nested":{"set":[5]}}'),
        (lazy(lambda: 5, int)(), '"5"'),
    ],
)
def test_both_codecs_encode_extra_types_to_the_same_text(value: Any, text: str) -> None:
    assert both_dumps(value) == text


@pytest.mark.parametrize("codec", CODECS)
def test_lazy_translation_string_is_encoded_as_a_string(codec: encoding.Codec) -> None:
    assert codec.dumps({"greeting": gettext_lazy("hello")}) == '{"greeting":"hello"}'


@pytest.mark.parametrize("value", [b"x", bytearray(b"x"), memoryview(b"x")])
@pytest.mark.parametrize("codec", CODECS)
def test_byte_strings_are_refused_with_type_error(codec: encoding.Codec, value: Any) -> None:
    with pytest.raises(TypeError, match=r"^Object of type \w+ is not JSON serializable$"):
        codec.dumps({"data": value})


@pytest.mark.parametrize(
    "value", [object(), datetime.timedelta(days=1), Point, complex(1, 2)], ids=repr
)
@pytest.mark.parametrize("codec", CODECS)
def test_arbitrary_objects_are_refused_with_type_error(codec: encoding.Codec, value: Any) -> None:
    with pytest.raises(TypeError) as info:
        codec.dumps([value])

    assert str(info.value) == f"Object of type {type(value).__name__} is not JSON serializable"


def test_stdlib_codec_refuses_a_lone_surrogate_with_value_error() -> None:
    with pytest.raises(ValueError, match=r"^A string holds a lone UTF-16 surrogate\.$"):
        STDLIB.dumps({"text": "a\ud800"})


@pytest.mark.parametrize("value", ["\ud800", {"k": "\udc00"}, ["ok", "a\udfffb"]])
def test_orjson_codec_refuses_a_lone_surrogate_with_value_error(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^A string holds a lone UTF-16 surrogate\.$"):
        ORJSON.dumps(value)


@pytest.mark.parametrize("codec", CODECS)
def test_a_lone_surrogate_is_refused_by_both_codecs(codec: encoding.Codec) -> None:
    # Both refuse (the exception classes differ today; see the xfail above).
    with pytest.raises((TypeError, ValueError)):
        codec.dumps("\ud800")


@pytest.mark.parametrize(
    "value",
    [2**64, -(2**64) - 1, 2**63, -(2**63) - 1, 10**30, [1, 2**100, {"n": -(10**40)}]],
    ids=repr,
)
def test_integers_beyond_64_bits_are_encoded_exactly_by_both_codecs(value: Any) -> None:
    assert json.loads(both_dumps(value)) == value


def test_integers_beyond_64_bits_mixed_with_extra_types_are_encoded_by_both_codecs() -> None:
    value = {"n": 2**70, "when": datetime.date(2024, 1, 1), "tags": {"a"}}

    assert both_dumps(value) == '{"n":1180591620717411303424,"when":"2024-01-01","tags":["a"]}'


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1e-05, "1e-05"),
        (2.5e-05, "2.5e-05"),
        (1e-07, "1e-07"),
        (1.5e-10, "1.5e-10"),
        (5e-324, "5e-324"),
        (1e16, "1e+16"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (-0.0, "-0.0"),
        (0.1, "0.1"),
        (1e15, "1000000000000000.0"),
        ({1e-05: 1}, '{"1e-05":1}'),
    ],
)
def test_floats_are_spelled_like_python_repr_by_both_codecs(value: Any, text: str) -> None:
    assert both_dumps(value) == text


def test_output_is_compact_and_keeps_non_ascii_and_escapes_control_characters() -> None:
    value = {"a": [1, 2], "ü": "grüße \u2028\x00\x1f\x7f"}

    assert both_dumps(value) == '{"a":[1,2],"ü":"grüße \u2028\\u0000\\u001f\x7f"}'


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({1: "a"}, '{"1":"a"}'),
        ({1.5: "a"}, '{"1.5":"a"}'),
        ({True: 1, None: 2}, '{"true":1,"null":2}'),
        ({2**70: 0}, '{"1180591620717411303424":0}'),
    ],
)
def test_scalar_dict_keys_become_strings_in_both_codecs(value: Any, text: str) -> None:
    assert both_dumps(value) == text


def test_str_int_and_dict_subclasses_are_encoded_like_their_base_by_both_codecs() -> None:
    class Text(str):
        pass

    class Count(int):
        pass

    class Mapping(dict[str, Any]):
        pass

    assert both_dumps(Mapping(a=Text("s"), b=Count(3))) == '{"a":"s","b":3}'


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (math.nan, "null"),
        (math.inf, "null"),
        (-math.inf, "null"),
        ({"a": [math.nan, 1.5]}, '{"a":[null,1.5]}'),
        ((math.inf, "x"), '[null,"x"]'),
        ({"when": datetime.date(2024, 1, 2), "n": [math.nan]}, '{"when":"2024-01-02","n":[null]}'),
    ],
)
def test_non_finite_floats_are_written_as_null_by_both_codecs(value: Any, text: str) -> None:
    assert both_dumps(value) == text


def test_non_finite_floats_inside_extra_types_are_written_as_null() -> None:
    @dataclasses.dataclass
    class Sample:
        value: float

    assert both_dumps([Sample(math.nan)]) == '[{"value":null}]'


def test_a_non_finite_float_beside_an_unencodable_object_still_refuses_the_object() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        STDLIB.dumps([math.nan, object()])


@pytest.mark.parametrize(
    "value",
    [{uuid.UUID(int=1): 1}, {datetime.date(2024, 1, 1): 1}, {Color.RED: 1}],
    ids=["uuid", "date", "enum"],
)
def test_non_scalar_dict_keys_give_the_same_outcome_in_both_codecs(value: Any) -> None:
    assert outcome(ORJSON.dumps, value) == outcome(STDLIB.dumps, value)


def test_float_subclass_is_encoded_by_both_codecs() -> None:
    class Ratio(float):
        pass

    assert both_dumps(Ratio(0.5)) == "0.5"


# --- properties -----------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.sampled_from([2**63, 2**64, -(2**63), -(2**63) - 1, -(10**19) + 1, 2**53 + 1, 10**25])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0.0, -0.0, 5e-324, 1e-7, 1e-5, 1.7976931348623157e308, -1e-300, 1e22])
    | st.text()
    | st.text(alphabet=st.characters(codec="utf-8", categories=["Cc", "Zl", "Zp", "Co", "So"]))
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)


def strictly_equal(left: Any, right: Any) -> bool:
    return canonical(left) == canonical(right)


@settings(max_examples=400, database=None, deadline=None)
@given(json_values)
def test_property_both_codecs_encode_any_json_value_to_the_same_text(value: Any) -> None:
    text = STDLIB.dumps(value)

    assert ORJSON.dumps(value) == text
    assert strictly_equal(json.loads(text), value)
    assert strictly_equal(STDLIB.loads(text), value)
    assert strictly_equal(ORJSON.loads(text), value)


JSON_TOKENS = [
    *'{}[]",:. -+0123456789eEtrufalsn\\/ubdDF8\x00\x1f\ufeff\u00e9',
    "\\u",
    "\\ud800",
    "\\udc00",
    "NaN",
    "Infinity",
    "1e400",
    "9" * 20,
    "null",
    "true",
    "   ",
]


@st.composite
def mutated_json(draw: st.DrawFn) -> str:
    value = draw(json_values)
    text = STDLIB.dumps(value)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        position = draw(st.integers(min_value=0, max_value=len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        token = draw(st.sampled_from(JSON_TOKENS))
        if action == "insert":
            text = text[:position] + token + text[position:]
        elif action == "delete":
            text = text[:position] + text[position + 1 :]
        else:
            text = text[:position] + token + text[position + 1 :]
    return text


@settings(max_examples=500, database=None, deadline=None)
@given(st.text() | mutated_json())
def test_property_both_codecs_decode_any_text_to_the_same_outcome(text: str) -> None:
    assert outcome(ORJSON.loads, text) == outcome(STDLIB.loads, text)


@settings(max_examples=200, database=None, deadline=None)
@given(json_values)
def test_property_encoded_text_decodes_back_to_the_value_in_both_codecs(value: Any) -> None:
    text = ORJSON.dumps(value)

    assert strictly_equal(STDLIB.loads(text), value)
    assert strictly_equal(ORJSON.loads(text), value)


@pytest.mark.parametrize("codec", CODECS)
def test_a_circular_structure_is_refused_with_value_error_by_both_codecs(
    codec: encoding.Codec,
) -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match=r"^Circular reference detected$"):
        codec.dumps(loop)


def test_tolerant_json_encoder_is_a_json_encoder_that_encodes_like_the_codecs() -> None:
    value = {
        "price": decimal.Decimal("9.99"),
        "count": decimal.Decimal(3),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "tags": frozenset({"a"}),
        "on": datetime.date(2024, 2, 29),
    }
    assert issubclass(encoding.TolerantJSONEncoder, json.JSONEncoder)
    text = json.dumps(value, cls=encoding.TolerantJSONEncoder, separators=(",", ":"))
    assert text == both_dumps(value)
    assert json.loads(text)["price"] == 9.99
    assert json.loads(text)["count"] == 3


def test_tolerant_json_encoder_refuses_what_it_cannot_encode() -> None:
    with pytest.raises(TypeError, match="Object of type object is not JSON serializable"):
        json.dumps({"x": object()}, cls=encoding.TolerantJSONEncoder)
