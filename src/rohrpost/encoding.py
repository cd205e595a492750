"""JSON for the wire: strict RFC 8259 decoding and tolerant, compact encoding.

Two codecs produce the same results: :data:`STDLIB` (the standard library's
``json``, always there) and :data:`ORJSON` (``orjson``, installed by the
``rohrpost[fast]`` extra). :data:`DEFAULT` is orjson when it can be imported,
else the standard library; set the environment variable ``ROHRPOST_JSON=json``
to force the standard library.

Decoding is strict: ``NaN`` and ``Infinity``, numbers that overflow a double,
integers longer than :data:`MAX_INTEGER_DIGITS` digits, lone UTF-16 surrogate
escapes and trailing garbage are all errors (:class:`JSONDecodeError`), with
the same message from both codecs. Integers are decoded exactly.

Encoding is compact (no spaces), keeps non-ASCII text as is, and accepts more
than plain JSON types: ``UUID`` and lazy translation strings become strings,
``Decimal`` a JSON number as in rohrpost 4.x (an integral value an integer,
``Decimal("3")`` -> ``3``; any other the nearest float, ``Decimal("9.99")`` ->
``9.99``; NaN and infinities ``null``), ``datetime`` / ``date`` / ``time`` their ISO 8601
form, enums their value, dataclasses an object, any ``Mapping`` an object and
any other ``Collection`` (a set, say) an array. JSON has no NaN or infinity:
they are written as ``null``, as JavaScript's ``JSON.stringify`` does. Both
codecs give identical text.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import math
import os
import re
import uuid
from collections.abc import Callable, Collection, Mapping
from typing import Any

__all__ = [
    "DEFAULT",
    "MAX_INTEGER_DIGITS",
    "ORJSON",
    "STDLIB",
    "Codec",
    "JSONDecodeError",
    "TolerantJSONEncoder",
    "dumps",
    "loads",
]

#: Longest integer literal accepted in a frame, in digits (Python's own default
#: limit for converting text to ``int``).
MAX_INTEGER_DIGITS = 4300


class JSONDecodeError(ValueError):
    """The text is not strict RFC 8259 JSON."""


def encode_extra(value: Any) -> Any:
    """Turn a value JSON has no type for into one it has, or raise ``TypeError``."""
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return _decimal_number(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    if _is_lazy_string(value):
        # Before the collection checks: a lazy string proxies str, a Collection.
        return str(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Collection) and not isinstance(value, bytes | bytearray | memoryview):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _decimal_number(value: decimal.Decimal) -> int | float | None:
    # rohrpost 4.x's rule; JSON has no NaN or infinity (null, as for floats).
    if not value.is_finite():
        return None
    integral = int(value)
    return integral if integral == value else float(value)


class TolerantJSONEncoder(json.JSONEncoder):
    """A ``json.JSONEncoder`` that accepts every type the wire codecs accept (4.x's name).

    Give it as ``cls`` to ``json.dumps``, or subclass it to encode more
    types: the mixins' ``encoder`` attribute and
    ``SyncRohrpostConsumer.json_encoder`` take such a class. Its
    :meth:`default` is the wire codecs' rule for non-JSON types (see the
    module docstring), so ``Decimal("9.99")`` becomes ``9.99``.
    """

    def default(self, o: Any) -> Any:
        """Return a JSON-encodable stand-in for ``o``, or raise ``TypeError``."""
        return encode_extra(o)


def _is_lazy_string(value: Any) -> bool:
    try:
        from django.utils.functional import Promise
    except (
        ImportError
    ):  # pragma: no cover - Django is a dependency; this keeps the codec standalone
        return False
    return isinstance(value, Promise)


def _reject_constant(name: str) -> Any:
    raise JSONDecodeError(f"{name} is not valid JSON.")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise JSONDecodeError(f"The number {text[:40]} is too large.")
    return value


def _bounded_int(text: str) -> int:
    digits = len(text) - (text[0] == "-")
    if digits > MAX_INTEGER_DIGITS:
        raise JSONDecodeError(f"An integer has more than {MAX_INTEGER_DIGITS} digits.")
    return int(text)


# A `\uD800`-`\uDFFF` escape: the only way a lone surrogate can enter a decoded str.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_STRICT_DECODER = json.JSONDecoder(
    parse_float=_finite_float, parse_int=_bounded_int, parse_constant=_reject_constant
)
# The standard library's fast path: integers stay in C; their length is checked
# only when the text could hold a long one.
_FAST_DECODER = json.JSONDecoder(parse_float=_finite_float, parse_constant=_reject_constant)
# 19 digits reach beyond 64 bits (-9223372036854775809); orjson would make a float of them.
_LONG_DIGIT_RUN = b"0" * 19
# A bytes.translate table: every ASCII digit becomes "0", every other byte a space.
_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))


def _has_long_digit_run(text: str) -> bool:
    """Whether ``text`` holds 19 ASCII digits in a row.

    Two C-speed passes (the regex ``[0-9]{19}`` took longer than decoding
    a small frame, and 3 ms for 256 KiB).
    """
    return _LONG_DIGIT_RUN in text.encode("utf-8", "surrogatepass").translate(_DIGITS_AS_ZEROS)


def _stdlib_loads(text: str) -> Any:
    if not text.isascii():
        # A WebSocket text frame is valid UTF-8; a str from elsewhere may not be.
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise JSONDecodeError("The text holds a lone UTF-16 surrogate.") from None
    decoder = _STRICT_DECODER if _has_long_digit_run(text) else _FAST_DECODER
    try:
        value = decoder.decode(text)
    except JSONDecodeError:
        raise
    except ValueError as exc:
        raise JSONDecodeError(str(exc)) from None
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        _check_no_lone_surrogates(value)
    return value


def _check_no_lone_surrogates(value: Any) -> None:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise JSONDecodeError("A string holds a lone UTF-16 surrogate.") from None


_stdlib_encoder = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=encode_extra
)


def _stdlib_dumps(value: Any) -> str:
    try:
        text = _stdlib_encoder.encode(value)
    except ValueError as exc:
        if not str(exc).startswith("Out of range float"):
            raise
        text = _stdlib_encoder.encode(_finite_only(value))
    if not text.isascii():
        # orjson refuses lone surrogates; so must we, or the socket fails later.
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("A string holds a lone UTF-16 surrogate.") from None
    return text


def _finite_only(value: Any) -> Any:
    """Return ``value`` with NaN and infinities replaced by ``None``, as orjson writes them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str | int) or value is None:
        return value
    if isinstance(value, dict):
        return {key: _finite_only(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_only(item) for item in value]
    try:
        return _finite_only(encode_extra(value))
    except TypeError:
        return value  # the encoder raises its own error for it


@dataclasses.dataclass(frozen=True)
class Codec:
    """A pair of functions that decode and encode wire JSON.

    Attributes:
        name: ``"json"`` or ``"orjson"``.
        loads: Decode a text frame; raises :class:`JSONDecodeError` or ``RecursionError``.
        dumps: Encode a value as compact JSON text; raises ``TypeError`` or ``ValueError``.
    """

    name: str
    loads: Callable[[str], Any]
    dumps: Callable[[Any], str]


STDLIB = Codec("json", _stdlib_loads, _stdlib_dumps)


def _make_orjson_codec() -> Codec | None:
    try:
        import orjson
    except ImportError:
        return None

    orjson_loads = orjson.loads
    orjson_dumps = orjson.dumps
    # Without OPT_NON_STR_KEYS, non-string keys take the standard library's path,
    # which accepts exactly the key types it accepts.
    options = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
    # orjson spells small floats differently from Python's repr ("0.00001", "1e-7"
    # against "1e-05", "1e-07"); where its output may hold such a float, the
    # standard library's text is used so both codecs agree to the byte.
    float_spelling = re.compile(rb"0\.0000|e-[0-9](?![0-9])")

    def loads(text: str) -> Any:
        if _has_long_digit_run(text):
            # orjson turns integers beyond 64 bits into floats; keep them exact.
            return _stdlib_loads(text)
        try:
            return orjson_loads(text)
        except orjson.JSONDecodeError:
            # Classify the error the way the standard library codec does, so
            # both codecs answer a bad frame with the same text.
            _stdlib_loads(text)
            raise JSONDecodeError("Invalid JSON.") from None  # pragma: no cover - defensive

    def dumps(value: Any) -> str:
        try:
            encoded = orjson_dumps(value, default=encode_extra, option=options)
        except orjson.JSONEncodeError:
            # Whatever orjson refuses (integers beyond 64 bits, float subclasses,
            # non-string keys, lone surrogates, cycles), the standard library
            # either writes the same text it would or raises its own error.
            return _stdlib_dumps(value)
        if (b"e-" in encoded or b"0.0000" in encoded) and float_spelling.search(encoded):
            return _stdlib_dumps(value)
        return encoded.decode("utf-8")

    return Codec("orjson", loads, dumps)


ORJSON = _make_orjson_codec()
DEFAULT = STDLIB if ORJSON is None or os.environ.get("ROHRPOST_JSON") == "json" else ORJSON

loads = DEFAULT.loads
dumps = DEFAULT.dumps
