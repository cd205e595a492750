"""The rohrpost wire protocol, without I/O: frames in, validated requests or errors out.

A request is a JSON object with an ``id`` (integer, float or string), a
``type`` (string) and, by convention, a ``data`` field; every other top-level
field is passed to the handler untouched. :func:`parse_request` turns a
WebSocket frame into that object, or into a :class:`FrameError` with a stable
machine :data:`code <ERROR_CODES>` and a human text. The ``encode_*`` functions
build the text frames the server sends. ``docs/protocol.md`` is the normative
description; this module is its implementation.

Nothing here touches a socket, a channel layer or Django: the consumers are
thin shells that feed frames in and send what comes out.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from rohrpost import encoding

__all__ = [
    "BINARY_FRAME",
    "EMPTY_FRAME",
    "ERROR_CODES",
    "HANDLER_ERROR",
    "INVALID",
    "INVALID_ID",
    "INVALID_JSON",
    "INVALID_TYPE",
    "MAX_DEPTH_BOUND",
    "MAX_TYPE_LENGTH",
    "MISSING_ID",
    "MISSING_TYPE",
    "NOT_AN_OBJECT",
    "RATE_LIMITED",
    "TOO_COMPLEX",
    "TOO_DEEP",
    "TOO_LARGE",
    "UNAUTHENTICATED",
    "UNKNOWN_TYPE",
    "FrameError",
    "Limits",
    "RequestId",
    "encode_error",
    "encode_reply",
    "generate_id",
    "parse_request",
]

RequestId: TypeAlias = int | float | str

EMPTY_FRAME: Final = "empty_frame"
BINARY_FRAME: Final = "binary_frame"
TOO_LARGE: Final = "too_large"
INVALID_JSON: Final = "invalid_json"
TOO_DEEP: Final = "too_deep"
TOO_COMPLEX: Final = "too_complex"
NOT_AN_OBJECT: Final = "not_an_object"
MISSING_ID: Final = "missing_id"
INVALID_ID: Final = "invalid_id"
MISSING_TYPE: Final = "missing_type"
INVALID_TYPE: Final = "invalid_type"
UNKNOWN_TYPE: Final = "unknown_type"
HANDLER_ERROR: Final = "handler_error"
RATE_LIMITED: Final = "rate_limited"
UNAUTHENTICATED: Final = "unauthenticated"
INVALID: Final = "invalid"

#: Longest ``type`` string accepted (it is echoed in replies).
MAX_TYPE_LENGTH: Final = 100

#: Highest ``Limits.max_depth`` allowed. Frames nested deeper than the limit are
#: refused before decoding, so a decoder never recurses deeply.
MAX_DEPTH_BOUND: Final = 500

#: Every error code the protocol layer and the dispatcher answer with, and when.
ERROR_CODES: Final[dict[str, str]] = {
    EMPTY_FRAME: "The text frame is empty or only white space.",
    BINARY_FRAME: "A binary frame arrived; rohrpost speaks text frames only.",
    TOO_LARGE: "The frame is larger than the maximum frame size.",
    INVALID_JSON: "The frame is not strict RFC 8259 JSON (NaN, Infinity, lone surrogates, "
    "numbers that overflow and trailing data included).",
    TOO_COMPLEX: "The frame holds more arrays and objects than the maximum.",
    TOO_DEEP: "Arrays and objects are nested deeper than the maximum depth.",
    NOT_AN_OBJECT: "The frame is valid JSON but not an object.",
    MISSING_ID: "The request has no `id`.",
    INVALID_ID: "The `id` is not an integer, a float or a string.",
    MISSING_TYPE: "The request has no `type`.",
    INVALID_TYPE: f"The `type` is not a string, is empty, or is longer than {MAX_TYPE_LENGTH} "
    "characters.",
    UNKNOWN_TYPE: "No handler is registered for the `type`.",
    HANDLER_ERROR: "The handler failed; the server logged the details.",
    RATE_LIMITED: "The connection sent frames faster than its rate limit allows; the frame "
    "was not decoded.",
    UNAUTHENTICATED: "The request needs an authenticated user, or its `auth_jwt` token was not "
    'accepted (see `ROHRPOST["AUTHENTICATE"]`).',
    INVALID: "The request's `data` is not what the handler takes; `data.errors` lists each "
    "problem with its `path`, `message` and `type`.",
}


@dataclass(frozen=True)
class Limits:
    """Bounds on what a single frame may hold.

    Attributes:
        max_frame_bytes: Largest text frame accepted, in UTF-8 bytes.
        max_depth: Deepest nesting of arrays and objects accepted; the request
            object itself is depth 1.
        max_containers: Most arrays and objects one frame may hold, the
            request object included.
    """

    max_frame_bytes: int = 256 * 1024
    max_depth: int = 32
    max_containers: int = 10_000

    def __post_init__(self) -> None:
        if self.max_frame_bytes < 1:
            raise ValueError("max_frame_bytes must be at least 1.")
        if self.max_containers < 1:
            raise ValueError("max_containers must be at least 1.")
        if not 1 <= self.max_depth <= MAX_DEPTH_BOUND:
            raise ValueError(f"max_depth must be between 1 and {MAX_DEPTH_BOUND}.")


DEFAULT_LIMITS: Final = Limits()


@dataclass(frozen=True)
class FrameError:
    """A frame that cannot be dispatched, and what to answer.

    Attributes:
        code: Stable machine code from :data:`ERROR_CODES`.
        message: Human-readable text.
        request_id: The request's ``id`` when it could be read, else ``None``.
        request_type: The request's ``type`` when it could be read, else ``None``.
    """

    code: str
    message: str
    request_id: RequestId | None = None
    request_type: str | None = None

    def encode(self) -> str:
        """Return the error reply frame for this error."""
        return encode_error(self.request_id, self.request_type, self.message, self.code)


# rohrpost 4.x's words for these errors (clients may match on them); the code is ours.
_EMPTY_TEXT: Final = "Received empty message."


def parse_request(
    text: str | None, binary: bytes | None = None, limits: Limits = DEFAULT_LIMITS
) -> dict[str, Any] | FrameError:
    """Validate one WebSocket frame as a rohrpost request.

    Args:
        text: The text frame's content, or ``None`` for a binary frame.
        binary: The binary frame's content, if the frame was binary.
        limits: The size and depth bounds to enforce.

    Returns:
        The request object (a ``dict`` with a valid ``id`` and ``type``), or a
        :class:`FrameError` describing why the frame is refused.
    """
    if text is None:
        if binary is not None:
            return FrameError(BINARY_FRAME, "Binary frames are not supported; send text.")
        return FrameError(EMPTY_FRAME, _EMPTY_TEXT)
    if not text or text.isspace():
        return FrameError(EMPTY_FRAME, _EMPTY_TEXT)
    size_limit = limits.max_frame_bytes
    # A str of n characters is n to 4n bytes of UTF-8: encode only when it matters.
    if len(text) > size_limit or (
        len(text) * 4 > size_limit and len(text.encode("utf-8", "surrogatepass")) > size_limit
    ):
        return FrameError(TOO_LARGE, f"The frame is larger than {size_limit} bytes.")
    # Counting brackets is cheap; the structure is measured only when it could
    # matter, and a frame with too many containers, or nested too deep, is
    # refused without being decoded: decoding is what such a frame would cost.
    if text.count("[") + text.count("{") > min(limits.max_depth, limits.max_containers) and (
        error := _structure_error(text, limits)
    ):
        return error
    try:
        request = encoding.loads(text)
    except RecursionError:  # only under a recursion limit lowered far below Python's default
        return _too_deep(limits)
    except encoding.JSONDecodeError as exc:
        return FrameError(INVALID_JSON, f"Could not decode JSON message. Error: {exc}")
    if type(request) is not dict:
        return FrameError(NOT_AN_OBJECT, "Expected a JSON object as message.")
    # The common case, a valid request, without a call: this runs for every frame.
    request_type = request.get("type")
    if (
        type(request.get("id")) in _ID_TYPES
        and type(request_type) is str
        and 0 < len(request_type) <= MAX_TYPE_LENGTH
    ):
        return request
    return _validate(request)


_ID_TYPES: Final = frozenset({int, float, str})


def _validate(request: dict[str, Any]) -> FrameError:
    """The error that refuses a request whose ``id`` or ``type`` is wrong."""
    request_id = request.get("id")
    request_type = request.get("type")
    id_ok = request_id is not None and type(request_id) in _ID_TYPES
    type_ok = type(request_type) is str and 0 < len(request_type) <= MAX_TYPE_LENGTH
    known_id = request_id if id_ok else None
    known_type = request_type if type_ok else None
    # 4.x's texts, and its order: `type` is looked for before `id`.
    if "type" not in request:
        return FrameError(MISSING_TYPE, "Missing required field 'type'.", known_id)
    if "id" not in request:
        return FrameError(MISSING_ID, "Missing required field 'id'.", None, known_type)
    if not type_ok:
        return FrameError(
            INVALID_TYPE,
            f"The `type` must be a non-empty string of at most {MAX_TYPE_LENGTH} characters.",
            known_id,
        )
    return FrameError(
        INVALID_ID, "The `id` must be an integer, a float or a string.", None, known_type
    )


def _too_deep(
    limits: Limits, request_id: RequestId | None = None, request_type: str | None = None
) -> FrameError:
    message = f"The frame nests arrays and objects deeper than {limits.max_depth} levels."
    return FrameError(TOO_DEEP, message, request_id, request_type)


# A JSON string, escapes included; an unterminated one runs to the end of the text.
# Written "unrolled" (runs of plain characters, then an escape): the plainer
# '"(?:[^"\\]|\\.)*"?' takes one regex step and ~100 bytes of backtracking
# state per character, so a 250 KB string held the event loop for 24 ms.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
# bytes.translate arguments that keep only the brackets, both kinds as "[" and "]":
# nesting does not depend on the kind (mismatched kinds are invalid JSON anyway).
_AS_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_A_BRACKET = bytes(set(range(256)).difference(b"[]{}"))


def _structure_error(text: str, limits: Limits) -> FrameError | None:
    """The error for a frame with too many arrays and objects, or nested too deep; else None.

    Read without decoding, at C speed: strings are cut out; a frame opening
    with more than ``max_depth`` brackets is too deep; then the brackets are
    counted (for valid JSON, exactly the arrays and objects a decoder would
    build) and, when there are more than ``max_depth`` of them, their nesting
    measured (:func:`_nests_deeper`). Capping the containers bounds both the
    decode and the depth measure of any frame under the size limit.
    """
    structure = _JSON_STRING.sub("", text) if '"' in text else text
    brackets = structure.encode("utf-8", "surrogatepass").translate(_AS_SQUARE, _NOT_A_BRACKET)
    # The classic bomb opens with a run of brackets: too deep, whatever else it holds.
    if len(brackets) - len(brackets.lstrip(b"[")) > limits.max_depth:
        return _too_deep(limits, *_leading_id_and_type(text))
    containers = brackets.count(b"[")
    if containers > limits.max_containers:
        message = f"The frame holds more than {limits.max_containers} arrays and objects."
        return FrameError(TOO_COMPLEX, message, *_leading_id_and_type(text))
    if containers > limits.max_depth and _nests_deeper(brackets, limits.max_depth):
        return _too_deep(limits, *_leading_id_and_type(text))
    return None


def _nests_deeper(brackets: bytes, max_depth: int) -> bool:
    """Whether ``brackets`` nest deeper than ``max_depth``.

    ``brackets`` is a frame's text with its strings cut out and only its
    brackets kept, both kinds as ``[`` and ``]``. Exact for valid JSON; for
    invalid JSON true whenever a decoder would get deeper than ``max_depth``
    before it fails. At most ``max_depth`` passes of one ``bytes.replace``
    each, over at most twice the containers allowed: well under a millisecond
    (a bracket-by-bracket walk in Python took 30 ms for 256 KiB).
    """
    # Each pass takes away the innermost containers: one level of every branch.
    for passes in range(max_depth):
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):
            # No pair is left: what remains cannot be closed ("]]][[["), so it is
            # invalid JSON; a decoder still opens its trailing "[" before failing.
            return passes + brackets.count(b"[") > max_depth
        brackets = shorter
    return b"[" in brackets


# A request's id and type, when they lead its object (rohrpost.js and our
# clients send them first): read without decoding the rest of the frame.
_SCALAR = r'(?:"[^"\\]*(?:\\.[^"\\]*)*"|-?\d[\d.eE+-]*|true|false|null)'
_LEADING_MEMBER = re.compile(r'\s*[{,]\s*"(id|type)"\s*:\s*(' + _SCALAR + ")")


def _leading_id_and_type(text: str) -> tuple[RequestId | None, str | None]:
    """Return the ``id`` and ``type`` a frame opens with, each ``None`` when not read.

    Used to echo them in the answer to a frame refused before decoding.
    """
    found: dict[str, Any] = {}
    position = 0
    while len(found) < 2 and (match := _LEADING_MEMBER.match(text, position)):
        try:
            found.setdefault(match[1], encoding.loads(match[2]))
        except encoding.JSONDecodeError:
            break
        position = match.end()
    request_id, request_type = found.get("id"), found.get("type")
    if request_id is None or type(request_id) not in (int, float, str):
        request_id = None
    if not (type(request_type) is str and 0 < len(request_type) <= MAX_TYPE_LENGTH):
        request_type = None
    return request_id, request_type


def encode_reply(request_id: RequestId, request_type: str, data: Any) -> str:
    """Return the reply frame ``{"id", "type", "data"}``."""
    return encoding.dumps({"id": request_id, "type": request_type, "data": data})


def encode_error(
    request_id: RequestId | None,
    request_type: str | None,
    message: str,
    code: str,
    data: Any = None,
) -> str:
    """Return an error frame; ``id`` and ``type`` appear only when known."""
    frame: dict[str, Any] = {}
    if request_id is not None:
        frame["id"] = request_id
    if request_type is not None:
        frame["type"] = request_type
    frame["error"] = message
    frame["code"] = code
    if data is not None:
        frame["data"] = data
    return encoding.dumps(frame)


def generate_id() -> int:
    """Return a random positive message id that JavaScript represents exactly."""
    return random.getrandbits(53) or 1
