"""The task board's rohrpost API: handlers and the ``board`` subscription.

Requests (every ``data`` is an object; ids are integers)::

    boards                                   -> [{"id", "name", "private"}, ...]
    tasks        {"board": 1}                -> [{"id", "board", "title", "done"}, ...]
    task.add     {"board": 1, "title": "x"}  -> the new task
    task.rename  {"id": 7, "title": "y"}     -> the task
    task.toggle  {"id": 7}                   -> the task (``"done": true/false`` sets it)
    task.delete  {"id": 7}                   -> {"id": 7}

Subscribing to ``{"type": "board", "id": 1}`` joins ``board-1``, whose
members receive a ``subscription-update`` push for every change of the
board's tasks (``data.type`` is create, update or delete; ``data.object`` is
the task). Anonymous clients see the public boards only; a logged-in user
(session or token) also sees their own private board. A board one may not
see is refused with ``forbidden``, whether it exists or not; a task on such a
board gets ``not_found``, word for word as a task that does not exist, so no
answer tells which private boards or tasks exist. Bad input gets ``invalid``.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from demo.models import MAX_TITLE, Board, Task, board_group
from rohrpost import Forbidden, RohrpostError, rohrpost_handler
from rohrpost.subscriptions import Subscriptions

INVALID = "invalid"
NOT_FOUND = "not_found"

subscriptions = Subscriptions()


def _user(consumer: Any) -> Any:
    return consumer.scope.get("user")


def _data(request: dict[str, Any]) -> dict[str, Any]:
    data = request.get("data")
    if not isinstance(data, dict):
        raise RohrpostError("`data` must be an object.", code=INVALID)
    return data


def _id(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise RohrpostError(f"`{key}` must be a positive integer.", code=INVALID)
    return value


def _title(data: dict[str, Any]) -> str:
    title = data.get("title")
    if not isinstance(title, str) or not title.strip():
        raise RohrpostError("`title` must be a non-empty string.", code=INVALID)
    title = title.strip()
    if len(title) > MAX_TITLE:
        raise RohrpostError(f"`title` may have at most {MAX_TITLE} characters.", code=INVALID)
    return title


def _board(user: Any, board_id: int) -> Board:
    board = Board.visible_to(user).filter(pk=board_id).first()
    if board is None:
        raise Forbidden("You may not see this board.")
    return board


def _task(user: Any, task_id: int) -> Task:
    # One query for "missing" and "not yours": both answer alike, so the reply
    # does not tell whether a private task exists.
    visible = Task.objects.filter(pk=task_id, board__in=Board.visible_to(user))
    task = visible.select_for_update().first()
    if task is None:
        raise RohrpostError("There is no such task.", code=NOT_FOUND)
    return task


def private_board(user: Any) -> Board | None:
    """The user's private board, made on first use (``None`` for anonymous users)."""
    if not getattr(user, "is_authenticated", False):
        return None
    board, _ = Board.objects.get_or_create(
        owner=user, defaults={"name": f"{user.get_username()}'s board"}
    )
    return board


@rohrpost_handler("boards")
def handle_boards(consumer: Any, request: dict[str, Any]) -> list[dict[str, Any]]:
    user = _user(consumer)
    private_board(user)
    return [board.as_dict() for board in Board.visible_to(user)]


@rohrpost_handler("tasks")
def handle_tasks(consumer: Any, request: dict[str, Any]) -> list[dict[str, Any]]:
    board = _board(_user(consumer), _id(_data(request), "board"))
    return [task.as_dict() for task in board.tasks.all()]


@rohrpost_handler("task.add")
def handle_task_add(consumer: Any, request: dict[str, Any]) -> dict[str, Any]:
    data = _data(request)
    board = _board(_user(consumer), _id(data, "board"))
    return Task.objects.create(board=board, title=_title(data)).as_dict()


@rohrpost_handler("task.rename")
def handle_task_rename(consumer: Any, request: dict[str, Any]) -> dict[str, Any]:
    data = _data(request)
    title = _title(data)
    with transaction.atomic():
        task = _task(_user(consumer), _id(data, "id"))
        task.title = title
        task.save(update_fields=["title"])
    return task.as_dict()


@rohrpost_handler("task.toggle")
def handle_task_toggle(consumer: Any, request: dict[str, Any]) -> dict[str, Any]:
    data = _data(request)
    done = data.get("done")
    if done is not None and not isinstance(done, bool):
        raise RohrpostError("`done` must be true or false when given.", code=INVALID)
    with transaction.atomic():
        task = _task(_user(consumer), _id(data, "id"))
        task.done = (not task.done) if done is None else done
        task.save(update_fields=["done"])
    return task.as_dict()


@rohrpost_handler("task.delete")
def handle_task_delete(consumer: Any, request: dict[str, Any]) -> dict[str, Any]:
    data = _data(request)
    with transaction.atomic():
        task = _task(_user(consumer), _id(data, "id"))
        task_id = task.pk
        task.delete()
    return {"id": task_id}


def _board_group(data: dict[str, Any]) -> str:
    board_id = data["id"]
    if not isinstance(board_id, int) or isinstance(board_id, bool):
        raise TypeError("a board id is an integer")
    return board_group(board_id)


@subscriptions.declare("board", group=_board_group)
def may_see_board(user: Any, scope: Any, data: dict[str, Any]) -> bool:
    return Board.visible_to(user).filter(pk=data["id"]).exists()


subscriptions.install()
