"""The demo's handlers, tested with rohrpost's test kit (rohrpost.testing and its fixtures).

``rohrpost_client`` is connected to the demo's whole ASGI application
(``settings.ASGI_APPLICATION``: origin check, session middleware, routing);
``rohrpost_pushes`` holds what the change feed published during the test.
"""

from __future__ import annotations

from typing import Any

import pytest

from demo.models import Board, Task
from rohrpost.testing import CallError, PushCapture, TestClient

# Sync handlers use the database from a worker thread: it must see committed rows.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def public() -> Board:
    """A public board (a transactional test starts with empty tables)."""
    return Board.objects.create(name="Everyone's board")


# --8<-- [start:call]
async def test_the_small_handlers(rohrpost_client: TestClient) -> None:
    assert await rohrpost_client.call("echo", {"hello": [1, 2]}) == {"hello": [1, 2]}
    assert await rohrpost_client.call("add", [1, 2, 3.5]) == 6.5
    assert await rohrpost_client.call("add", [1, 2, 3]) == 6
    assert await rohrpost_client.call("whoami") == {"authenticated": False, "username": None}
    assert set(await rohrpost_client.call("time")) == {"iso", "unix", "time_zone"}


async def test_add_names_each_item_that_is_not_a_number(rohrpost_client: TestClient) -> None:
    with pytest.raises(CallError) as caught:
        await rohrpost_client.call("add", [1, "two", True])
    assert caught.value.code == "invalid"
    assert [error["path"] for error in caught.value.data["errors"]] == [[1], [2]]


# --8<-- [end:call]


@pytest.mark.parametrize(
    ("request_type", "data", "paths"),
    [
        ("tasks", None, [[]]),
        ("tasks", {"board": True}, [["board"]]),
        ("task.add", {"board": 1, "title": "   "}, [["title"]]),
        ("task.add", {"board": 1, "title": "x" * 201}, [["title"]]),
        ("task.add", {"board": "1", "title": 5}, [["board"], ["title"]]),
        ("task.toggle", {"id": 1, "done": "yes"}, [["done"]]),
        ("task.delete", {"id": 0}, [["id"]]),
    ],
)
async def test_bad_data_is_answered_invalid_with_the_bad_fields(
    rohrpost_client: TestClient, request_type: str, data: Any, paths: list[list[Any]]
) -> None:
    with pytest.raises(CallError) as caught:
        await rohrpost_client.call(request_type, data)
    assert caught.value.code == "invalid"
    assert [error["path"] for error in caught.value.data["errors"]] == paths


# --8<-- [start:pushes]
async def test_a_new_task_is_answered_and_published_to_its_board(
    rohrpost_client: TestClient, rohrpost_pushes: PushCapture, public: Board
) -> None:
    task = await rohrpost_client.call("task.add", {"board": public.pk, "title": "  Write tests  "})
    assert task == {"id": task["id"], "board": public.pk, "title": "Write tests", "done": False}
    assert rohrpost_pushes.changes == [(f"board-{public.pk}", "create", task)]


async def test_subscribers_get_the_changes_of_their_board(
    rohrpost_connect: Any, public: Board
) -> None:
    group_object = {"type": "board", "id": public.pk}
    async with rohrpost_connect() as watcher, rohrpost_connect() as editor:
        assert await watcher.subscribe(group_object) == f"board-{public.pk}"
        task = await editor.call("task.add", {"board": public.pk, "title": "Shared"})
        push = await watcher.receive_push()
        assert push["data"] == {"type": "create", "group": f"board-{public.pk}", "object": task}
        done = await editor.call("task.toggle", {"id": task["id"], "done": True})
        update = (await watcher.receive_push())["data"]
        assert update["object"] == {**done, "updated_fields": ["done"]}
        await watcher.unsubscribe(group_object)
        await editor.call("task.delete", {"id": task["id"]})
        await watcher.assert_no_push()


# --8<-- [end:pushes]


@pytest.mark.usefixtures("public")
async def test_a_private_board_is_its_owners_only(
    rohrpost_connect: Any, django_user_model: Any
) -> None:
    alice = await django_user_model.objects.acreate(username="alice")
    async with rohrpost_connect(user=alice) as owner, rohrpost_connect() as stranger:
        boards = await owner.call("boards")
        assert [board["private"] for board in boards] == [False, True]
        private = {"type": "board", "id": boards[1]["id"]}
        assert await owner.subscribe(private) == f"board-{private['id']}"
        with pytest.raises(CallError, match="forbidden"):
            await stranger.subscribe(private)
        with pytest.raises(CallError, match="forbidden"):
            await stranger.call("task.add", {"board": private["id"], "title": "Mine now"})


async def test_a_bad_group_object_is_answered_invalid(rohrpost_client: TestClient) -> None:
    with pytest.raises(CallError) as caught:
        await rohrpost_client.subscribe({"type": "board", "id": "1"})
    assert caught.value.data["errors"][0]["path"] == ["id"]


# --8<-- [start:capture]
@pytest.mark.django_db
def test_a_change_made_outside_rohrpost_is_published(rohrpost_pushes: PushCapture) -> None:
    """A save in a view, the admin or the shell: no client, no server, no commit."""
    board = Board.objects.get(pk=1)  # made by the demo's data migration
    task = Task.objects.create(board=board, title="From the admin")
    assert rohrpost_pushes.changes == [("board-1", "create", task.as_dict())]


# --8<-- [end:capture]
