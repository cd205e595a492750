"""Tests for rohrpost.protocol: every frame gets a request or an error with a stable code.

Every test runs once with each JSON codec (the standard library's and orjson's), because
the protocol must answer the same whichever one is installed.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rohrpost import encoding, protocol
from rohrpost.protocol import FrameError, Limits, parse_request

assert encoding.ORJSON is not None, "the test environment installs orjson"
CODECS = [encoding.STDLIB, encoding.ORJSON]


@pytest.fixture(autouse=True, params=CODECS, ids=lambda codec: codec.name)
def codec(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run the protocol with one codec; the test id names it."""
    monkeypatch.setattr(encoding, "loads", request.param.loads)
    monkeypatch.setattr(encoding, "dumps", request.param.dumps)
    return request.param


def error_for(text: str | None, binary: bytes | None = None, limits: Limits | None = None) -> Any:
    """Parse a frame that must be refused; return its FrameError."""
    result = parse_request(text, binary, limits or protocol.DEFAULT_LIMITS)
    assert isinstance(result, FrameError), f"frame was accepted: {result!r}"
    return result


def error_reply(
    text: str | None, binary: bytes | None = None, limits: Limits | None = None
) -> dict[str, Any]:
    """Parse a frame that must be refused; return its decoded error reply."""
    decoded = json.loads(error_for(text, binary, limits).encode())
    assert isinstance(decoded, dict)
    return decoded


def assert_same_id(actual: Any, expected: Any) -> None:
    assert actual == expected
    assert type(actual) is type(expected)


# --- the module's surface -------------------------------------------------------------


def test_every_error_code_constant_is_documented_in_error_codes() -> None:
    constants = {
        protocol.EMPTY_FRAME,
        protocol.BINARY_FRAME,
        protocol.TOO_LARGE,
        protocol.INVALID_JSON,
        protocol.TOO_COMPLEX,
        protocol.TOO_DEEP,
        protocol.NOT_AN_OBJECT,
        protocol.MISSING_ID,
        protocol.INVALID_ID,
        protocol.MISSING_TYPE,
        protocol.INVALID_TYPE,
        protocol.UNKNOWN_TYPE,
        protocol.HANDLER_ERROR,
        protocol.RATE_LIMITED,
        protocol.UNAUTHENTICATED,
        protocol.INVALID,
    }

    assert set(protocol.ERROR_CODES) == constants
    assert len(constants) == 16
    assert all(text.strip() for text in protocol.ERROR_CODES.values())


def test_error_codes_have_their_stable_wire_spelling() -> None:
    assert [
        protocol.EMPTY_FRAME,
        protocol.BINARY_FRAME,
        protocol.TOO_LARGE,
        protocol.INVALID_JSON,
        protocol.TOO_COMPLEX,
        protocol.TOO_DEEP,
        protocol.NOT_AN_OBJECT,
        protocol.MISSING_ID,
        protocol.INVALID_ID,
        protocol.MISSING_TYPE,
        protocol.INVALID_TYPE,
        protocol.UNKNOWN_TYPE,
        protocol.HANDLER_ERROR,
        protocol.RATE_LIMITED,
    ] == [
        "empty_frame",
        "binary_frame",
        "too_large",
        "invalid_json",
        "too_complex",
        "too_deep",
        "not_an_object",
        "missing_id",
        "invalid_id",
        "missing_type",
        "invalid_type",
        "unknown_type",
        "handler_error",
        "rate_limited",
    ]


def test_every_name_in_all_exists() -> None:
    for name in protocol.__all__:
        assert hasattr(protocol, name), name


def test_default_limits_are_256_kib_depth_32_and_10000_containers() -> None:
    assert Limits() == Limits(max_frame_bytes=262144, max_depth=32, max_containers=10_000)
    assert Limits() == protocol.DEFAULT_LIMITS
    assert protocol.MAX_TYPE_LENGTH == 100


# --- valid requests -------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_id", [0, "0", 1.5, "", -1, 7, "abc", 0.0, 12345678901234567890123456]
)
def test_valid_request_keeps_its_id_exactly(request_id: Any) -> None:
    frame = json.dumps({"id": request_id, "type": "ping"})

    request = parse_request(frame)

    assert request == {"id": request_id, "type": "ping"}
    assert isinstance(request, dict)
    assert_same_id(request["id"], request_id)


def test_extra_top_level_fields_pass_through_untouched() -> None:
    frame = (
        '{"id": 1, "type": "echo", "data": {"a": [1, 2.5, null]}, "auth_jwt": "token",'
        ' "meta": {"nested": [true, false]}, "count": 0}'
    )

    assert parse_request(frame) == {
        "id": 1,
        "type": "echo",
        "data": {"a": [1, 2.5, None]},
        "auth_jwt": "token",
        "meta": {"nested": [True, False]},
        "count": 0,
    }


def test_request_without_data_is_valid() -> None:
    assert parse_request('{"type": "ping", "id": 1}') == {"type": "ping", "id": 1}


def test_surrounding_json_whitespace_is_accepted() -> None:
    assert parse_request(' \r\n\t{"id": 1, "type": "ping"} \n') == {"id": 1, "type": "ping"}


def test_type_of_exactly_max_type_length_is_accepted() -> None:
    type_name = "t" * protocol.MAX_TYPE_LENGTH

    assert parse_request(json.dumps({"id": 1, "type": type_name})) == {"id": 1, "type": type_name}


def test_paired_surrogate_escapes_decode_to_one_character() -> None:
    request = parse_request(r'{"id": 1, "type": "\ud83d\ude00"}')

    assert request == {"id": 1, "type": "\U0001f600"}


def test_non_ascii_text_is_accepted() -> None:
    assert parse_request('{"id": "ü", "type": "grüße"}') == {"id": "ü", "type": "grüße"}


def test_25_digit_integers_are_decoded_exactly() -> None:
    number = 1234567890123456789012345

    request = parse_request(f'{{"id": {number}, "type": "x", "data": [-{number}]}}')

    assert isinstance(request, dict)
    assert_same_id(request["id"], number)
    assert request["data"] == [-number]
    assert type(request["data"][0]) is int


def test_integers_that_fit_in_64_bits_are_decoded_as_ints() -> None:
    request = parse_request(
        '{"id": 9223372036854775807, "type": "x", "data": [-9223372036854775808,'
        " 18446744073709551615]}"
    )

    assert request == {
        "id": 9223372036854775807,
        "type": "x",
        "data": [-9223372036854775808, 18446744073709551615],
    }


@pytest.mark.parametrize(
    "codec",
    [
        pytest.param(encoding.STDLIB, id="json"),
        pytest.param(encoding.ORJSON, id="orjson"),
    ],
    indirect=True,
)
@pytest.mark.parametrize("number", [-9223372036854775809, -9999999999999999999])
def test_negative_19_digit_integers_below_int64_are_decoded_exactly(number: int) -> None:
    request = parse_request(f'{{"id": {number}, "type": "x"}}')

    assert isinstance(request, dict)
    assert_same_id(request["id"], number)


def test_float_ids_are_decoded_as_floats() -> None:
    request = parse_request('{"id": 1E2, "type": "x"}')

    assert isinstance(request, dict)
    assert_same_id(request["id"], 100.0)


# --- empty and binary frames ----------------------------------------------------------


@pytest.mark.parametrize("text", ["", " ", "\t\r\n ", "\u3000"])
def test_empty_or_whitespace_only_frame_is_empty_frame(text: str) -> None:
    assert error_reply(text) == {"error": "Received empty message.", "code": "empty_frame"}


def test_missing_text_without_binary_is_empty_frame() -> None:
    assert error_reply(None) == {"error": "Received empty message.", "code": "empty_frame"}


@pytest.mark.parametrize("binary", [b'{"id": 1, "type": "ping"}', b""])
def test_binary_frame_is_binary_frame(binary: bytes) -> None:
    assert error_reply(None, binary) == {
        "error": "Binary frames are not supported; send text.",
        "code": "binary_frame",
    }


# --- invalid JSON ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ('{"id": 1, "type": "x", "data": NaN}', "NaN is not valid JSON."),
        ('{"id": 1, "type": "x", "data": Infinity}', "Infinity is not valid JSON."),
        ('{"id": 1, "type": "x", "data": -Infinity}', "-Infinity is not valid JSON."),
        ('{"id": 1, "type": "x", "data": "\\ud800"}', "A string holds a lone UTF-16 surrogate."),
        ('{"id": 1, "type": "x", "data": "\\udc00"}', "A string holds a lone UTF-16 surrogate."),
        ('{"id": 1, "type": "\\uDBFF"}', "A string holds a lone UTF-16 surrogate."),
        ('{"id": "\\ud800\\u0041", "type": "x"}', "A string holds a lone UTF-16 surrogate."),
        ('{"id": 1, "type": "x", "data": 1e400}', "The number 1e400 is too large."),
        ('{"id": 1, "type": "x", "data": -1e400}', "The number -1e400 is too large."),
        ('{"id": 1e400, "type": "x"}', "The number 1e400 is too large."),
        ('{"id": 1, "type": "x"} x', "Extra data: line 1 column 24 (char 23)"),
        ('{"id": 1, "type": "x"}{}', "Extra data: line 1 column 23 (char 22)"),
        ('\ufeff{"id": 1, "type": "x"}', "Expecting value: line 1 column 1 (char 0)"),
        (
            "{'id': 1, 'type': 'x'}",
            "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        ('{"id": 1, "type": "a\x01b"}', "Invalid control character at: line 1 column 21 (char 20)"),
        ('{"id": 1, "type": "a\nb"}', "Invalid control character at: line 1 column 21 (char 20)"),
        (
            '{"id": 1, "type": "x",}',
            "Expecting property name enclosed in double quotes: line 1 column 23 (char 22)",
        ),
        ('{"id": 01, "type": "x"}', "Expecting ',' delimiter: line 1 column 9 (char 8)"),
        ('{"id": 1, "type": "x"', "Expecting ',' delimiter: line 1 column 22 (char 21)"),
    ],
)
def test_invalid_json_is_invalid_json_with_the_decoder_message(frame: str, message: str) -> None:
    assert error_reply(frame) == {
        "error": f"Could not decode JSON message. Error: {message}",
        "code": "invalid_json",
    }


def test_5000_digit_integer_is_invalid_json_not_a_crash() -> None:
    frame = '{"id": 1, "type": "x", "data": ' + "9" * 5000 + "}"

    assert error_reply(frame) == {
        "error": "Could not decode JSON message. Error: An integer has more than 4300 digits.",
        "code": "invalid_json",
    }


def test_5000_digit_negative_integer_id_is_invalid_json() -> None:
    reply = error_reply('{"id": -' + "1" * 5000 + ', "type": "x"}')

    assert reply["code"] == "invalid_json"
    assert "id" not in reply


def test_integer_of_exactly_4300_digits_is_accepted() -> None:
    number = int("7" * 4300)

    request = parse_request(f'{{"id": 1, "type": "x", "data": {number}}}')

    assert request == {"id": 1, "type": "x", "data": number}


def test_5000_digit_float_overflows_and_is_invalid_json() -> None:
    reply = error_reply('{"id": 1, "type": "x", "data": ' + "9" * 5000 + ".5}")

    assert reply["code"] == "invalid_json"
    assert (
        reply["error"]
        == "Could not decode JSON message. Error: The number " + "9" * 40 + " is too large."
    )


# --- not an object --------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame", ["[]", '[{"id": 1, "type": "x"}]', '"text"', "1", "1.5", "null", "true"]
)
def test_json_that_is_not_an_object_is_not_an_object(frame: str) -> None:
    assert error_reply(frame) == {
        "error": "Expected a JSON object as message.",
        "code": "not_an_object",
    }


# --- id -------------------------------------------------------------------------------


def test_missing_id_is_missing_id_and_echoes_the_type() -> None:
    assert error_reply('{"type": "ping", "data": 1}') == {
        "type": "ping",
        "error": "Missing required field 'id'.",
        "code": "missing_id",
    }


def test_missing_id_with_an_invalid_type_echoes_neither() -> None:
    assert error_reply('{"type": 5}') == {
        "error": "Missing required field 'id'.",
        "code": "missing_id",
    }


def test_empty_object_is_missing_type_because_type_is_checked_before_id_as_in_4x() -> None:
    assert error_reply("{}") == {"error": "Missing required field 'type'.", "code": "missing_type"}


@pytest.mark.parametrize("bad_id", ["true", "false", "null", "[]", "[1]", "{}", '{"a": 1}'])
def test_id_that_is_not_int_float_or_string_is_invalid_id_and_echoes_the_type(
    bad_id: str,
) -> None:
    assert error_reply(f'{{"id": {bad_id}, "type": "ping"}}') == {
        "type": "ping",
        "error": "The `id` must be an integer, a float or a string.",
        "code": "invalid_id",
    }


def test_invalid_id_without_type_reports_the_missing_type_first() -> None:
    assert error_reply('{"id": true}') == {
        "error": "Missing required field 'type'.",
        "code": "missing_type",
    }


def test_invalid_id_with_an_invalid_type_reports_the_type_first() -> None:
    assert error_reply('{"id": true, "type": 5}') == {
        "error": "The `type` must be a non-empty string of at most 100 characters.",
        "code": "invalid_type",
    }


# --- type -----------------------------------------------------------------------------


@pytest.mark.parametrize("request_id", [0, "0", 1.5, "", -2, "ä"])
def test_missing_type_is_missing_type_and_echoes_the_id_exactly(request_id: Any) -> None:
    reply = error_reply(json.dumps({"id": request_id}))

    assert reply == {
        "id": request_id,
        "error": "Missing required field 'type'.",
        "code": "missing_type",
    }
    assert_same_id(reply["id"], request_id)


@pytest.mark.parametrize(
    "bad_type",
    ["5", "1.5", "true", "null", "[]", '["ping"]', '{"name": "ping"}', '""', '"' + "t" * 101 + '"'],
)
@pytest.mark.parametrize("request_id", [0, "0", 1.5, ""])
def test_type_that_is_not_a_short_non_empty_string_is_invalid_type_and_echoes_the_id(
    bad_type: str, request_id: Any
) -> None:
    reply = error_reply(f'{{"id": {json.dumps(request_id)}, "type": {bad_type}}}')

    assert reply == {
        "id": request_id,
        "error": "The `type` must be a non-empty string of at most 100 characters.",
        "code": "invalid_type",
    }
    assert_same_id(reply["id"], request_id)


# --- depth ----------------------------------------------------------------------------


def nested(depth: int) -> str:
    """Return JSON text nesting ``depth`` arrays (0: a plain number)."""
    return "[" * depth + "1" + "]" * depth


def test_nesting_at_the_default_depth_limit_is_accepted() -> None:
    # The request object is level 1, so `data` may nest 31 more levels.
    request = parse_request('{"id": 1, "type": "x", "data": ' + nested(31) + "}")

    assert isinstance(request, dict)
    assert request["type"] == "x"


@pytest.mark.parametrize("request_id", [0, "0", 1.5, ""])
def test_nesting_one_level_over_the_default_limit_is_too_deep_and_echoes_id_and_type(
    request_id: Any,
) -> None:
    reply = error_reply(f'{{"id": {json.dumps(request_id)}, "type": "x", "data": {nested(32)}}}')

    assert reply == {
        "id": request_id,
        "type": "x",
        "error": "The frame nests arrays and objects deeper than 32 levels.",
        "code": "too_deep",
    }
    assert_same_id(reply["id"], request_id)


@pytest.mark.parametrize(("depth", "accepted"), [(2, True), (3, False)])
def test_custom_max_depth_counts_the_request_object_as_level_one(
    depth: int, accepted: bool
) -> None:
    frame = '{"id": "a", "type": "x", "data": ' + nested(depth) + "}"

    result = parse_request(frame, limits=Limits(max_depth=3))

    if accepted:
        assert isinstance(result, dict)
    else:
        assert result == FrameError(
            "too_deep", "The frame nests arrays and objects deeper than 3 levels.", "a", "x"
        )


def test_nested_objects_count_towards_depth_like_arrays() -> None:
    frame = '{"id": 1, "type": "x", "data": {"a": {"b": {"c": 1}}}}'

    assert isinstance(parse_request(frame, limits=Limits(max_depth=4)), dict)
    assert error_for(frame, limits=Limits(max_depth=3)).code == "too_deep"


def test_many_shallow_containers_are_not_too_deep() -> None:
    # More brackets than the limit, but only two levels: the exact walk must accept it.
    frame = '{"id": 1, "type": "x", "data": [' + ",".join(["[]", "{}"] * 50) + "]}"

    assert isinstance(parse_request(frame, limits=Limits(max_depth=3)), dict)


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    frame = json.dumps({"id": 1, "type": "x", "data": "[{" * 100})

    assert parse_request(frame) == {"id": 1, "type": "x", "data": "[{" * 100}


@given(st.text(alphabet='"\\[]{}ab\n', max_size=60))
def test_the_string_pattern_matches_what_the_plain_json_string_pattern_matches(
    text: str,
) -> None:
    # _JSON_STRING is written unrolled for speed; it must strip the same strings.
    plain = re.compile(r'"(?:[^"\\]|\\.)*"?', re.DOTALL)
    assert protocol._JSON_STRING.sub("", text) == plain.sub("", text)


def test_a_quarter_megabyte_string_of_brackets_is_plain_data() -> None:
    frame = json.dumps({"id": 1, "type": "x", "data": "[" * 250_000 + '\\"{'})

    assert parse_request(frame) == {"id": 1, "type": "x", "data": "[" * 250_000 + '\\"{'}


def test_deep_nesting_is_refused_before_the_missing_id_is_seen() -> None:
    # Depth is judged before decoding: the type that leads the object is still echoed.
    assert error_reply('{"type": "x", "data": ' + nested(40) + "}") == {
        "type": "x",
        "error": "The frame nests arrays and objects deeper than 32 levels.",
        "code": "too_deep",
    }


@pytest.mark.parametrize(
    ("frame", "echoed"),
    [
        ('{"type": "x", "id": 7, "data": DEEP}', {"id": 7, "type": "x"}),
        ('{ "id" : "a\\"b" , "type":"t", "data": DEEP}', {"id": 'a"b', "type": "t"}),
        ('{"id": 1.5e3, "data": DEEP, "type": "x"}', {"id": 1500.0}),
        ('{"data": DEEP, "id": 1, "type": "x"}', {}),
        ('{"id": [1], "type": "x", "data": DEEP}', {}),
        ('{"id": true, "type": "x", "data": DEEP}', {"type": "x"}),
        ('{"id": 1, "type": "", "data": DEEP}', {"id": 1}),
        ('{"id": 1, "type": 2, "data": DEEP}', {"id": 1}),
        ('{"id": 01, "type": "x", "data": DEEP}', {}),
        ('[{"id": 1, "type": "x", "data": DEEP}]', {}),
    ],
)
def test_a_too_deep_frame_echoes_only_the_valid_id_and_type_that_lead_it(
    frame: str, echoed: dict[str, Any]
) -> None:
    reply = error_reply(frame.replace("DEEP", nested(40)))

    assert reply == {
        **echoed,
        "error": "The frame nests arrays and objects deeper than 32 levels.",
        "code": "too_deep",
    }


@pytest.mark.parametrize(
    ("brackets", "deeper_than_3"),
    [
        ("[[[1]]]", False),
        ("[[[[1]]]]", True),
        ('[{}, [[]], {"a": [1]}]', False),
        ('[{"a": [{}]}]', True),
        ("[[[", False),
        ("[[[[", True),
        ("]]][[[", False),
        ("][[[[", True),
        ("[[[}}}", False),
        ('["[[[[[[", {"]]]": "{{{{"}]', False),
    ],
)
def test_nesting_is_measured_without_decoding_valid_or_not(
    brackets: str, deeper_than_3: bool
) -> None:
    error = protocol._structure_error(brackets, Limits(max_depth=3))
    assert (error is not None and error.code == "too_deep") is deeper_than_3


@given(st.recursive(st.just(1), lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner)))
def test_the_undecoded_depth_check_agrees_with_the_decoded_depth(value: Any) -> None:
    def depth(node: Any) -> int:
        children = node.values() if isinstance(node, dict) else node
        if not isinstance(node, dict | list):
            return 0
        return 1 + max(map(depth, children), default=0)

    text = json.dumps(value)
    for limit in range(1, 8):
        error = protocol._structure_error(text, Limits(max_depth=limit))
        assert (error is not None) is (depth(value) > limit)


def test_many_shallow_arrays_within_the_container_limit_are_accepted() -> None:
    frame = '{"id": 1, "type": "x", "data": [' + ",".join(["[]"] * 9_998) + "]}"

    request = parse_request(frame)

    assert isinstance(request, dict)
    assert len(request["data"]) == 9_998


def test_more_arrays_and_objects_than_the_limit_are_refused_undecoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A quarter megabyte of ``[[],[],...]``: 80,000 arrays a decoder would build."""
    decode = encoding.loads

    def small_only(text: str) -> object:
        assert len(text) < 100, "the frame was decoded"
        return decode(text)

    monkeypatch.setattr(encoding, "loads", small_only)
    frame = '{"id": 1, "type": "x", "data": [' + ",".join(["[]", "{}"] * 40_000) + "]}"

    assert parse_request(frame) == FrameError(
        "too_complex", "The frame holds more than 10000 arrays and objects.", 1, "x"
    )


@pytest.mark.parametrize(
    ("frame", "accepted"),
    [
        ('{"id": 1, "type": "x", "data": [[], {}, [[]]]}', True),  # 6 with the request
        ('{"id": 1, "type": "x", "data": [[], {}, [[]], []]}', False),
        # Brackets inside strings are not containers.
        ('{"id": 1, "type": "x", "data": ["[[[[", "{{{{", "]]"]}', True),
    ],
)
def test_the_container_limit_counts_the_request_object_and_not_strings(
    frame: str, accepted: bool
) -> None:
    result = parse_request(frame, limits=Limits(max_containers=6))

    assert isinstance(result, dict) is accepted
    if not accepted:
        assert isinstance(result, FrameError)
        assert result.code == "too_complex"


def test_a_deep_frame_with_many_containers_is_too_deep_when_it_opens_deep() -> None:
    frame = "[" * 20_000 + "]" * 20_000

    assert error_for(frame).code == "too_deep"


def test_containers_are_counted_before_depth_is_measured() -> None:
    """3,500 branches each 33 deep: refused by their count, never walked level by level."""
    branch = "[" * 33 + "]" * 33
    frame = '{"id": 1, "type": "x", "data": [[]' + ("," + branch) * 3_500 + "]}"

    assert error_for(frame).code == "too_complex"


@pytest.mark.parametrize(
    "frame", ["[" * 100_000, "[" * 100_000 + "]" * 100_000, '{"a": ' * 100_000, '{"a":' * 50_000]
)
def test_100000_open_brackets_are_too_deep_or_too_large_never_recursion_error(
    frame: str,
) -> None:
    reply = error_reply(frame)

    assert reply["code"] in {"too_deep", "too_large"}
    assert "id" not in reply


def test_100000_nested_arrays_inside_a_request_are_refused() -> None:
    frame = '{"id": 1, "type": "x", "data": ' + nested(100_000) + "}"

    assert error_for(frame).code == "too_deep"


def test_nesting_deeper_than_the_decoder_recursion_limit_is_too_deep_and_echoes() -> None:
    frame = '{"id": 1, "type": "x", "data": ' + nested(5000) + "}"

    assert error_reply(frame) == {
        "id": 1,
        "type": "x",
        "error": "The frame nests arrays and objects deeper than 32 levels.",
        "code": "too_deep",
    }


# --- size -----------------------------------------------------------------------------


def frame_of_length(length: int, filler: str = "a") -> str:
    """Return a valid request whose text is exactly ``length`` characters long."""
    head = '{"id": 1, "type": "x", "data": "'
    frame = head + filler * (length - len(head) - 2) + '"}'
    assert len(frame) == length
    return frame


def test_ascii_frame_at_the_size_limit_is_accepted() -> None:
    assert isinstance(parse_request(frame_of_length(100), limits=Limits(max_frame_bytes=100)), dict)


def test_ascii_frame_one_byte_over_the_size_limit_is_too_large() -> None:
    reply = error_reply(frame_of_length(101), limits=Limits(max_frame_bytes=100))

    assert reply == {"error": "The frame is larger than 100 bytes.", "code": "too_large"}


def test_short_ascii_frame_under_a_quarter_of_the_limit_is_accepted() -> None:
    assert isinstance(parse_request(frame_of_length(40), limits=Limits(max_frame_bytes=200)), dict)


def test_ascii_frame_over_a_quarter_of_the_limit_but_under_it_is_accepted() -> None:
    assert isinstance(parse_request(frame_of_length(90), limits=Limits(max_frame_bytes=100)), dict)


def test_multi_byte_frame_under_the_limit_in_characters_but_over_in_bytes_is_too_large() -> None:
    frame = frame_of_length(80, "é")

    assert len(frame) == 80
    assert len(frame.encode("utf-8")) == 126
    assert error_for(frame, limits=Limits(max_frame_bytes=100)).code == "too_large"


def test_multi_byte_frame_within_the_limit_in_bytes_is_accepted() -> None:
    frame = frame_of_length(60, "€")

    assert len(frame.encode("utf-8")) == 112
    assert isinstance(parse_request(frame, limits=Limits(max_frame_bytes=112)), dict)
    assert error_for(frame, limits=Limits(max_frame_bytes=111)).code == "too_large"


def test_four_byte_characters_count_four_bytes() -> None:
    frame = frame_of_length(50, "\U0001f600")

    assert len(frame.encode("utf-8")) == 34 + 16 * 4
    assert isinstance(parse_request(frame, limits=Limits(max_frame_bytes=98)), dict)
    assert error_for(frame, limits=Limits(max_frame_bytes=97)).code == "too_large"


def test_default_limit_refuses_multi_byte_text_over_256_kib_in_bytes() -> None:
    frame = frame_of_length(140_000, "ü")

    assert len(frame) < 262144 < len(frame.encode("utf-8"))
    assert error_reply(frame) == {
        "error": "The frame is larger than 262144 bytes.",
        "code": "too_large",
    }


def test_size_check_counts_a_raw_lone_surrogate_without_crashing() -> None:
    frame = frame_of_length(40, "\ud800")  # 34 + 6 * 3 = 52 bytes with surrogatepass

    assert error_for(frame, limits=Limits(max_frame_bytes=51)).code == "too_large"


def test_size_is_checked_before_the_json_is_decoded() -> None:
    assert error_for("[" * 101, limits=Limits(max_frame_bytes=100)).code == "too_large"


# --- error frames and replies ---------------------------------------------------------


def test_frame_error_encode_includes_id_and_type_when_known() -> None:
    error = FrameError("too_deep", "Too deep.", 0, "x")

    assert error.encode() == '{"id":0,"type":"x","error":"Too deep.","code":"too_deep"}'


def test_frame_error_encode_omits_unknown_id_and_type() -> None:
    assert FrameError("empty_frame", "Empty.").encode() == '{"error":"Empty.","code":"empty_frame"}'


def test_encode_reply_is_compact_ordered_and_keeps_non_ascii() -> None:
    assert protocol.encode_reply("0", "grüße", {"ä": [1, None]}) == (
        '{"id":"0","type":"grüße","data":{"ä":[1,null]}}'
    )


def test_encode_reply_includes_null_data() -> None:
    assert protocol.encode_reply(0, "x", None) == '{"id":0,"type":"x","data":null}'


def test_encode_error_includes_data_when_given() -> None:
    assert protocol.encode_error(1.5, "x", "Nope.", "forbidden", {"group": "g"}) == (
        '{"id":1.5,"type":"x","error":"Nope.","code":"forbidden","data":{"group":"g"}}'
    )


def test_encode_error_keeps_falsy_id_type_and_data() -> None:
    assert protocol.encode_error("", "", "", "c", 0) == (
        '{"id":"","type":"","error":"","code":"c","data":0}'
    )


def test_encode_error_omits_none_id_type_and_data() -> None:
    assert protocol.encode_error(None, None, "Bad.", "invalid_json") == (
        '{"error":"Bad.","code":"invalid_json"}'
    )


def test_generate_id_is_a_positive_integer_that_javascript_represents_exactly() -> None:
    ids = {protocol.generate_id() for _ in range(200)}

    assert all(type(value) is int and 1 <= value < 2**53 for value in ids)
    assert len(ids) > 190


def test_generate_id_never_returns_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol.random, "getrandbits", lambda bits: 0)

    assert protocol.generate_id() == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_frame_bytes": 0}, "max_frame_bytes must be at least 1."),
        ({"max_depth": 0}, "max_depth must be between 1 and 500."),
        ({"max_depth": 501}, "max_depth must be between 1 and 500."),
        ({"max_containers": 0}, "max_containers must be at least 1."),
    ],
)
def test_limits_refuse_values_that_cannot_work(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        protocol.Limits(**kwargs)


def test_frame_nested_beyond_the_highest_limit_is_refused_undecoded_with_its_id() -> None:
    text = '{"id": 1, "type": "t", "data": ' + "[" * 501 + "]" * 501 + "}"
    assert protocol.parse_request(text, limits=protocol.Limits(max_depth=500)) == (
        protocol.FrameError(
            protocol.TOO_DEEP, "The frame nests arrays and objects deeper than 500 levels.", 1, "t"
        )
    )


def test_decoder_recursion_error_under_a_lowered_recursion_limit_is_too_deep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # orjson has its own fixed limit; the standard library's decoder recurses in C.
    monkeypatch.setattr(encoding, "loads", encoding.STDLIB.loads)
    text = '{"id": 1, "type": "t", "data": ' + "[" * 400 + "]" * 400 + "}"
    limits = protocol.Limits(max_depth=500)
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(150)
    try:
        result = protocol.parse_request(text, limits=limits)
    finally:
        sys.setrecursionlimit(old_limit)
    assert result == protocol.FrameError(
        protocol.TOO_DEEP, "The frame nests arrays and objects deeper than 500 levels."
    )
