"""Tests for rohrpost.schema and ``python -m rohrpost schema``: AsyncAPI 3.0 and TypeScript."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel

from rohrpost import schema
from rohrpost.__main__ import main
from rohrpost.handlers import handle_ping
from rohrpost.registry import HandlerRegistry
from rohrpost.subscriptions import Subscriptions
from tests.walkthrough import ROOT

#: The AsyncAPI 3.0.0 JSON Schema, from the npm package @asyncapi/specs 6.11.1
#: (schemas/3.0.0.json; Apache-2.0, see tests/asyncapi/LICENSE and NOTICE).
ASYNCAPI_SCHEMA = json.loads((ROOT / "tests" / "asyncapi" / "asyncapi-3.0.0.json").read_text())
DEMO_TYPES = ROOT / "example" / "demo" / "static" / "demo" / "api.d.ts"


class Point(BaseModel):
    x: int
    y: int = 0


class Shape(BaseModel):
    name: str
    points: list[Point]


class Room(BaseModel):
    type: str
    name: str


def make_registry() -> HandlerRegistry:
    registry = HandlerRegistry()
    registry.register("ping", handle_ping, inline=True)

    def move(consumer: Any, request: Any, data: Point) -> Shape:
        return Shape(name="moved", points=[data])

    def untyped(consumer: Any, request: Any) -> Any:
        """Answers anything."""
        return request.get("data")

    registry.register("shape.move", move, data=Point, reply=Shape)
    registry.register("untyped", untyped)
    subscriptions = Subscriptions()
    subscriptions.declare("room", group=lambda room: f"room-{room.name}", data=Room, push=Shape)(
        lambda user, scope, room: True
    )
    subscriptions.declare("plain", group=lambda data: "plain")(lambda user, scope, data: True)
    subscriptions.install(registry)
    return registry


def payload_validator(document: dict[str, Any], message: str) -> jsonschema.Validator:
    """A validator of one message's payload, its references resolved in ``document``."""
    wrapper = {
        "$ref": f"#/components/messages/{message}/payload",
        "components": document["components"],
    }
    return jsonschema.Draft202012Validator(wrapper)


def test_the_document_is_valid_asyncapi_3() -> None:
    document = schema.asyncapi(make_registry(), title="Shapes", version="2.1.0")
    jsonschema.Draft7Validator(ASYNCAPI_SCHEMA).validate(document)
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"] == "Shapes"
    assert document["info"]["version"] == "2.1.0"
    assert sorted(document["operations"]) == [
        "ping",
        "push.plain",
        "push.room",
        "shape.move",
        "subscribe.plain",
        "subscribe.room",
        "untyped",
    ]


def test_the_validator_refuses_a_broken_document() -> None:
    """The vendored schema really checks: an operation without a channel is refused."""
    document = schema.asyncapi(make_registry())
    del document["operations"]["ping"]["channel"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(ASYNCAPI_SCHEMA).validate(document)


def test_request_and_reply_schemas_come_from_the_types_and_untyped_is_any() -> None:
    document = schema.asyncapi(make_registry())
    request = payload_validator(document, "shape.move.request")
    assert request.is_valid({"id": 1, "type": "shape.move", "data": {"x": 1}})
    assert not request.is_valid({"id": 1, "type": "shape.move", "data": {"y": 1}})
    assert not request.is_valid({"id": 1, "type": "other", "data": {"x": 1}})
    reply = payload_validator(document, "shape.move.reply")
    assert reply.is_valid({"id": 1, "type": "shape.move", "data": {"name": "a", "points": []}})
    assert not reply.is_valid({"id": 1, "type": "shape.move", "data": {"points": []}})
    untyped = document["components"]["messages"]["untyped.request"]["payload"]
    assert untyped["properties"]["data"] == {}
    assert document["operations"]["untyped"]["summary"] == "Answers anything."
    assert set(document["components"]["schemas"]) == {"Point", "Shape", "Room"}


def test_subscription_kinds_have_their_group_object_and_push() -> None:
    document = schema.asyncapi(make_registry())
    subscribe = payload_validator(document, "subscribe.room")
    assert subscribe.is_valid({"id": 1, "type": "subscribe", "data": {"type": "room", "name": "a"}})
    assert not subscribe.is_valid({"id": 1, "type": "subscribe", "data": {"type": "room"}})
    push = payload_validator(document, "push.room")
    update = {"type": "update", "group": "room-a", "object": {"name": "s", "points": [{"x": 1}]}}
    assert push.is_valid({"id": 5, "type": "subscription-update", "data": update})
    assert not push.is_valid(
        {"id": 5, "type": "subscription-update", "data": {**update, "type": "x"}}
    )
    plain = document["components"]["messages"]["push.plain"]["payload"]["properties"]["data"]
    assert plain["properties"]["object"] == {}


def test_error_and_close_codes_are_listed_as_the_protocol_page_has_them() -> None:
    document = schema.asyncapi(make_registry())
    codes = document["info"]["x-rohrpost-error-codes"]
    assert {"invalid", "forbidden", "limit", "unknown_type", "handler_error"} <= set(codes)
    close = document["channels"]["rohrpost"]["x-rohrpost-close-codes"]
    page = (ROOT / "docs" / "protocol.md").read_text().split("## Close codes", 1)[1]
    assert set(close) == set(re.findall(r"^\| (\d{4}) \|", page, flags=re.MULTILINE))


def test_typescript_declares_every_type_with_its_data_and_reply() -> None:
    text = schema.typescript(make_registry())
    assert 'export interface Point {\n  "x": number;\n  "y"?: number;\n}' in text
    assert '  "shape.move": Point;' in text
    assert '  "shape.move": Shape;' in text
    assert '  "untyped": unknown;' in text
    assert '  "room": Room;' in text
    assert "export interface Api {" in text


@pytest.mark.parametrize(
    ("json_schema", "typescript"),
    [
        ({"type": "string"}, "string"),
        ({"type": ["integer", "number", "null"]}, "number | null"),
        ({"enum": ["a", 1]}, '"a" | 1'),
        ({"const": "x"}, '"x"'),
        ({"anyOf": [{"type": "integer"}, {"type": "number"}]}, "number"),
        ({"allOf": [{"$ref": "#/components/schemas/Point"}]}, "Point"),
        (
            {"type": "array", "prefixItems": [{"type": "string"}, {"type": "boolean"}]},
            "[string, boolean]",
        ),
        ({"type": "array"}, "Array<unknown>"),
        ({"type": "object", "additionalProperties": {"type": "integer"}}, "Record<string, number>"),
        ({"type": "object"}, "Record<string, unknown>"),
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            '{ "a": string }',
        ),
        ({}, "unknown"),
    ],
)
def test_json_schema_to_typescript(json_schema: dict[str, Any], typescript: str) -> None:
    assert schema._ts(json_schema) == typescript


def run_schema(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rohrpost", "schema", "--settings", "demo.settings", *arguments],
        cwd=ROOT / "example",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_the_demos_document_is_valid_and_typed_end_to_end() -> None:
    document = json.loads(run_schema().stdout)
    jsonschema.Draft7Validator(ASYNCAPI_SCHEMA).validate(document)
    untyped = [
        name
        for name, message in document["components"]["messages"].items()
        if name.endswith(".request") and message["payload"]["properties"]["data"] == {}
    ]
    assert untyped == ["echo.request", "ping.request"]  # echo takes any data on purpose


def test_the_demos_typescript_declarations_are_up_to_date(tmp_path: Path) -> None:
    """clients/js/test/types.ts compiles against them (tsc, in the JS tests)."""
    run_schema("--typescript", "--output", str(tmp_path / "api.d.ts"))
    assert (tmp_path / "api.d.ts").read_text() == DEMO_TYPES.read_text(), (
        "regenerate: cd example && python -m rohrpost schema --settings demo.settings "
        "--typescript -o demo/static/demo/api.d.ts"
    )


def test_schema_without_settings_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    assert main(["schema"]) == 2
    assert "--settings" in capsys.readouterr().err


def test_schema_writes_to_stdout_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--settings", "tests.settings", "--title", "Tests"]) == 0
    assert json.loads(capsys.readouterr().out)["info"]["title"] == "Tests"
    assert main(["schema", "--settings", "tests.settings", "--typescript"]) == 0
    assert "export interface Api" in capsys.readouterr().out


def test_a_kind_with_history_has_positions_and_its_typed_snapshot(settings: Any) -> None:
    settings.ROHRPOST = {"HISTORY": {"ENABLED": True}}

    def shapes(user: Any, scope: Any, room: Room) -> list[Shape]:
        return []

    registry = HandlerRegistry()
    subscriptions = Subscriptions()
    subscriptions.declare(
        "room",
        group=lambda room: f"room-{room.name}",
        data=Room,
        push=Shape,
        history=True,
        snapshot=shapes,
    )(lambda user, scope, room: True)
    subscriptions.install(registry)
    document = schema.asyncapi(registry)
    jsonschema.validate(document, ASYNCAPI_SCHEMA)
    subscribe = payload_validator(document, "subscribe.room")
    request = {"id": 1, "type": "subscribe", "data": {"type": "room", "name": "a"}}
    assert subscribe.is_valid({**request, "since": {"epoch": "e", "offset": 3}})
    assert not subscribe.is_valid({**request, "since": {"epoch": "e", "offset": -1}})
    reply = payload_validator(document, "subscribe.room.reply")
    answer = {"group": "room-a", "position": {"epoch": "e", "offset": 3}, "reset": True}
    shape = {"name": "s", "points": [{"x": 1}]}
    assert reply.is_valid({"id": 1, "type": "subscribe", "data": {**answer, "snapshot": [shape]}})
    assert not reply.is_valid(
        {"id": 1, "type": "subscribe", "data": {**answer, "snapshot": [{"name": 5}]}}
    )
    push = payload_validator(document, "push.room")
    update = {"type": "update", "group": "room-a", "object": shape}
    position = {"group": "room-a", "epoch": "e", "offset": 4}
    frame = {"id": 5, "type": "subscription-update", "data": update}
    assert push.is_valid({**frame, "position": position})
    assert not push.is_valid({**frame, "position": {**position, "offset": "4"}})
