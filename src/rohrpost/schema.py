"""The running project's API as a document: AsyncAPI 3.0, or TypeScript declarations.

Every registered type becomes an operation with its request and reply
messages, their ``data`` described by JSON Schema from the handler's types
(:mod:`rohrpost.typed`; an untyped handler's data is "any"). Every
subscription kind becomes a push operation with its group object and the
``object`` its pushes carry. The error codes and close codes are listed too::

    python -m rohrpost schema                       # AsyncAPI 3.0 as JSON, to stdout
    python -m rohrpost schema --typescript -o src/api.d.ts

or from Python, :func:`asyncapi` and :func:`typescript`. Both need
``rohrpost[pydantic]`` and Django set up (``DJANGO_SETTINGS_MODULE``): the
handlers are those the project registers at start-up.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any, Final

from rohrpost import protocol
from rohrpost.changefeed import PUSH_TYPE
from rohrpost.registry import HANDLERS, Handler, HandlerRegistry
from rohrpost.subscriptions import LIMIT, Subscriptions
from rohrpost.typed import HandlerTypes, handler_types, type_adapter

__all__ = ["CLOSE_CODES", "ERROR_CODES", "asyncapi", "typescript"]

#: Every error code rohrpost itself answers with, and when (handlers add their own).
ERROR_CODES: Final[dict[str, str]] = {
    **protocol.ERROR_CODES,
    "forbidden": "The connection may not do what it asked (subscriptions, `Forbidden`).",
    LIMIT: "The connection holds as many subscriptions as it may.",
}

#: Every WebSocket close code the server uses, and when (``docs/protocol.md``).
CLOSE_CODES: Final[dict[int, str]] = {
    1000: "Normal close: the application closed the connection.",
    1009: "The ASGI server refused a message larger than its maximum.",
    1011: "The server failed unexpectedly.",
    4001: "Not authenticated, where authentication is required.",
    4003: "The server ended the connection (logout, revoked access).",
    4008: "The client fell behind: too much waited to be sent to it.",
    4029: "The client went on flooding after its rate limit.",
}

_CHANNEL = "rohrpost"
_ANY: Final[dict[str, Any]] = {}
# Component names AsyncAPI accepts.
_NOT_A_KEY_CHARACTER = re.compile(r"[^a-zA-Z0-9.\-_]")


def _key(name: str) -> str:
    return _NOT_A_KEY_CHARACTER.sub("_", name)


def _subscriptions(registry: HandlerRegistry) -> Subscriptions | None:
    """The :class:`Subscriptions` whose ``subscribe`` handler the registry holds."""
    owner = getattr(registry.get("subscribe"), "__self__", None)
    return owner if isinstance(owner, Subscriptions) else None


class _Schemas:
    """JSON Schemas of types, their shared definitions under ``components.schemas``."""

    def __init__(self) -> None:
        self.inputs: list[tuple[Any, Any, Any]] = []

    def add(self, key: Any, annotation: Any, mode: str) -> None:
        if annotation is not Any:  # "any" has no schema to build
            self.inputs.append((key, mode, type_adapter(annotation)))

    def build(self) -> tuple[dict[Any, dict[str, Any]], dict[str, Any]]:
        import pydantic

        if not self.inputs:
            return {}, {}
        mapping, definitions = pydantic.TypeAdapter.json_schemas(
            self.inputs, ref_template="#/components/schemas/{model}"
        )
        return {key: schema for (key, _mode), schema in mapping.items()}, definitions.get(
            "$defs", {}
        )


#: A position in a group's history (rohrpost.history, docs/protocol.md).
_POSITION: dict[str, Any] = {
    "type": "object",
    "properties": {"epoch": {"type": "string"}, "offset": {"type": "integer", "minimum": 0}},
    "required": ["epoch", "offset"],
}


def _with(frame: dict[str, Any], **fields: dict[str, Any]) -> dict[str, Any]:
    """``frame`` with more optional top-level fields."""
    frame["properties"].update(fields)
    return frame


def _frame(request_type: Any, data: dict[str, Any], *, data_required: bool) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "id": {"type": ["integer", "number", "string"]},
            "type": request_type,
            "data": data,
        },
        "required": ["id", "type", "data"] if data_required else ["id", "type"],
    }
    return schema


def asyncapi(
    registry: HandlerRegistry | None = None,
    *,
    title: str = "rohrpost API",
    version: str = "1.0.0",
    address: str | None = "/ws/rohrpost/",
) -> dict[str, Any]:
    """Return the AsyncAPI 3.0 document of the handlers in ``registry`` (default: HANDLERS).

    Args:
        registry: The registry an endpoint serves.
        title: The document's ``info.title``.
        version: The API's version (``info.version``).
        address: The endpoint's path, or ``None`` when it is not fixed.
    """
    registry = HANDLERS if registry is None else registry
    subscriptions = _subscriptions(registry)
    handlers: dict[str, Handler] = {
        name: handler
        for name, handler in sorted(registry.items())
        if subscriptions is None or name not in ("subscribe", "unsubscribe")
    }
    kinds = {} if subscriptions is None else subscriptions.kinds
    schemas = _Schemas()
    for name, handler in handlers.items():
        types = handler_types(handler) or HandlerTypes()
        schemas.add(("request", name), types.data, "validation")
        schemas.add(("reply", name), types.reply, "serialization")
    snapshots = {} if subscriptions is None else subscriptions.snapshots()
    for kind, (group_object, push) in kinds.items():
        # None: not declared.
        schemas.add(("group", kind), Any if group_object is None else group_object, "validation")
        schemas.add(("push", kind), Any if push is None else push, "serialization")
        if snapshots.get(kind) is not None:
            schemas.add(("snapshot", kind), snapshots[kind], "serialization")
    described, definitions = schemas.build()

    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    channel_messages: dict[str, Any] = {}

    def message(key: str, body: dict[str, Any]) -> dict[str, str]:
        messages[key] = body
        channel_messages[key] = {"$ref": f"#/components/messages/{key}"}
        return {"$ref": f"#/channels/{_CHANNEL}/messages/{key}"}

    error = message(
        "error",
        {
            "name": "error",
            "title": "An error answer",
            "payload": {
                "type": "object",
                "properties": {
                    "id": {"type": ["integer", "number", "string"]},
                    "type": {"type": "string"},
                    "error": {"type": "string"},
                    "code": {"type": "string", "examples": sorted(ERROR_CODES)},
                    "data": _ANY,
                },
                "required": ["error", "code"],
            },
        },
    )
    channel = {"$ref": f"#/channels/{_CHANNEL}"}
    for name, handler in handlers.items():
        key = _key(name)
        summary = (handler.__doc__ or "").strip().split("\n", 1)[0]
        request = message(
            f"{key}.request",
            {
                "name": name,
                "title": f"{name} request",
                "payload": _frame(
                    {"const": name}, described.get(("request", name), _ANY), data_required=False
                ),
            },
        )
        reply = message(
            f"{key}.reply",
            {
                "name": name,
                "title": f"{name} reply",
                "payload": _frame(
                    {"type": "string"}, described.get(("reply", name), _ANY), data_required=False
                ),
            },
        )
        operations[key] = {
            "action": "receive",
            "channel": channel,
            "messages": [request],
            "reply": {"channel": channel, "messages": [reply, error]},
            **({"summary": summary} if summary else {}),
        }
    for kind, _types in kinds.items():
        key = _key(kind)
        group_object = described.get(("group", kind), {"type": "object"})
        subscribe = message(
            f"subscribe.{key}",
            {
                "name": "subscribe",
                "title": f"subscribe to a {kind}",
                "payload": _with(
                    _frame(
                        {"enum": ["subscribe", "unsubscribe"]}, group_object, data_required=True
                    ),
                    since=_POSITION,  # kinds with history: resume after this position
                ),
            },
        )
        joined = message(
            f"subscribe.{key}.reply",
            {
                "name": "subscribe",
                "payload": _frame(
                    {"enum": ["subscribe", "unsubscribe"]},
                    {
                        "type": "object",
                        "properties": {
                            "group": {"type": "string"},
                            # Kinds with history (docs/protocol.md):
                            "position": _POSITION,
                            "resumed": {"type": "integer", "minimum": 0},
                            "reset": {"const": True},
                            "snapshot": described.get(("snapshot", kind), _ANY),
                        },
                    },
                    data_required=True,
                ),
            },
        )
        push = message(
            f"push.{key}",
            {
                "name": PUSH_TYPE,
                "title": f"a change pushed to {kind} subscribers",
                "payload": _with(
                    _frame(
                        {"const": PUSH_TYPE},
                        {
                            "type": "object",
                            "properties": {
                                "type": {"enum": ["create", "update", "delete"]},
                                "group": {"type": "string"},
                                "object": described.get(("push", kind), _ANY),
                            },
                            "required": ["type", "group", "object"],
                        },
                        data_required=True,
                    ),
                    position={  # kinds with history
                        **_POSITION,
                        "properties": {
                            "group": {"type": "string"},
                            **_POSITION["properties"],
                        },
                    },
                ),
            },
        )
        operations[f"subscribe.{key}"] = {
            "action": "receive",
            "channel": channel,
            "messages": [subscribe],
            "reply": {"channel": channel, "messages": [joined, error]},
        }
        operations[f"push.{key}"] = {"action": "send", "channel": channel, "messages": [push]}

    channel_object: dict[str, Any] = {
        "title": "The rohrpost WebSocket endpoint",
        "messages": channel_messages,
        "x-rohrpost-close-codes": {str(code): text for code, text in CLOSE_CODES.items()},
    }
    if address is not None:
        channel_object["address"] = address
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": title,
            "version": version,
            "description": "Requests, replies and pushes of a rohrpost endpoint "
            "(JSON text frames; see rohrpost's docs/protocol.md).",
            "x-rohrpost-error-codes": ERROR_CODES,
        },
        "defaultContentType": "application/json",
        "channels": {_CHANNEL: channel_object},
        "operations": operations,
        "components": {"messages": messages, "schemas": definitions},
    }


def typescript(registry: HandlerRegistry | None = None) -> str:
    """Return TypeScript declarations of the handlers in ``registry`` (default: HANDLERS).

    The module declares ``Requests`` and ``Replies`` (the data of each type),
    ``GroupObjects`` and ``Pushes`` (per subscription kind), one interface per
    model, and ``Api``, which types the JavaScript client:
    ``new RohrpostClient<Api>(url)`` checks ``client.call("task.add", data)``'s
    ``data`` and types its reply.
    """
    document = asyncapi(registry)
    definitions: dict[str, Any] = document["components"]["schemas"]
    messages: dict[str, Any] = document["components"]["messages"]
    out = [
        "// Generated by `python -m rohrpost schema --typescript`: do not edit.",
        "",
    ]
    for name, schema in definitions.items():
        out.append(_declaration(name, schema))
    requests, replies, groups, pushes = [], [], [], []
    for operation_key, operation in document["operations"].items():
        if operation_key.startswith(("subscribe.", "push.")):
            continue
        request = messages[_message_key(operation["messages"][0])]
        reply = messages[_message_key(operation["reply"]["messages"][0])]
        name = json.dumps(request["name"])
        requests.append(f"  {name}: {_ts(request['payload']['properties']['data'])};")
        replies.append(f"  {name}: {_ts(reply['payload']['properties']['data'])};")
    for key, body in messages.items():
        if key.startswith("subscribe.") and not key.endswith(".reply"):
            kind = json.dumps(key.removeprefix("subscribe."))
            groups.append(f"  {kind}: {_ts(body['payload']['properties']['data'])};")
        elif key.startswith("push."):
            kind = json.dumps(key.removeprefix("push."))
            payload = body["payload"]["properties"]["data"]["properties"]["object"]
            pushes.append(f"  {kind}: {_ts(payload)};")
    for title, rows in (
        ("Requests", requests),
        ("Replies", replies),
        ("GroupObjects", groups),
        ("Pushes", pushes),
    ):
        out.append(f"export interface {title} {{")
        out.extend(rows)
        out.append("}\n")
    out.append(
        "export type ErrorCode =\n  | "
        + "\n  | ".join(json.dumps(code) for code in sorted(ERROR_CODES))
        + "\n  | (string & {});\n"
    )
    out.append(
        "export interface Api {\n"
        "  requests: Requests;\n"
        "  replies: Replies;\n"
        "  groupObjects: GroupObjects;\n"
        "  pushes: Pushes;\n"
        "}\n"
    )
    return "\n".join(out)


def _message_key(reference: dict[str, str]) -> str:
    return reference["$ref"].rsplit("/", 1)[1]


def _declaration(name: str, schema: dict[str, Any]) -> str:
    if schema.get("type") == "object" and "properties" in schema:
        required = set(schema.get("required", ()))
        lines = [f"export interface {name} {{"]
        for field, field_schema in schema["properties"].items():
            optional = "" if field in required else "?"
            lines.append(f"  {json.dumps(field)}{optional}: {_ts(field_schema)};")
        lines.append("}\n")
        return "\n".join(lines)
    return f"export type {name} = {_ts(schema)};\n"


_SCALARS: Final = {
    "string": "string",
    "integer": "number",
    "number": "number",
    "boolean": "boolean",
    "null": "null",
}


def _ts(schema: dict[str, Any]) -> str:
    """The TypeScript type for a JSON Schema (the subset pydantic writes)."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[1]
    if "const" in schema:
        return json.dumps(schema["const"])
    if "enum" in schema:
        return " | ".join(json.dumps(value) for value in schema["enum"])
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            return _union(_ts(option) for option in schema[combinator])
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return _ts(schema["allOf"][0])
    kind = schema.get("type")
    if isinstance(kind, list):
        return _union(_ts({**schema, "type": one}) for one in kind)
    if kind in _SCALARS:
        return _SCALARS[kind]
    if kind == "array":
        if "prefixItems" in schema:
            return "[" + ", ".join(_ts(item) for item in schema["prefixItems"]) + "]"
        return f"Array<{_ts(schema.get('items', {}))}>"
    if kind == "object":
        if "properties" in schema:
            required = set(schema.get("required", ()))
            fields = "; ".join(
                f"{json.dumps(field)}{'' if field in required else '?'}: {_ts(value)}"
                for field, value in schema["properties"].items()
            )
            return f"{{ {fields} }}"
        values = schema.get("additionalProperties")
        return f"Record<string, {_ts(values) if isinstance(values, dict) else 'unknown'}>"
    return "unknown"


def _union(members: Iterable[str]) -> str:
    return " | ".join(dict.fromkeys(members))  # each member once, in order
