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
the task). Boards keep history: the reply carries the board's tasks as
``snapshot: {"tasks": [...]}`` and its ``position``, and a client that
subscribes again ``since`` its last position gets the pushes it missed.
Anonymous clients see the public boards only; a logged-in user (session or
token) also sees their own private board. A board one may not
see is refused with ``forbidden``, whether it exists or not; a task on such a
board gets ``not_found``, word for word as a task that does not exist, so no
answer tells which private boards or tasks exist. Bad input gets ``invalid``,
with the path of every bad field: each handler types its ``data`` and its
reply with the pydantic models below, and rohrpost checks and encodes them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from django.db import transaction
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from demo.models import MAX_TITLE, Board, Task, board_group
from rohrpost import Forbidden, RohrpostError, rohrpost_handler
from rohrpost.subscriptions import Subscriptions

NOT_FOUND = "not_found"

subscriptions = Subscriptions()

#: A row's id: a positive integer (strict: true, 1.0 and "1" are not ids).
Id = Annotated[int, Field(gt=0)]
#: A task title: surrounding white space is dropped; then 1 to MAX_TITLE characters.
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TITLE)]


class Strict(BaseModel):
    """Request data as JSON has it: no "1" for 1, no true for 1."""

    model_config = ConfigDict(strict=True)


class BoardOut(BaseModel):
    id: int
    name: str
    private: bool


class TaskOut(BaseModel):
    id: int
    board: int
    title: str
    done: bool

    @classmethod
    def of(cls, task: Task) -> TaskOut:
        return cls(id=task.pk, board=task.board_id, title=task.title, done=task.done)


class BoardTasks(Strict):
    board: Id


class NewTask(Strict):
    board: Id
    title: Title


class Rename(Strict):
    id: Id
    title: Title


class Toggle(Strict):
    id: Id
    #: Sets the task done or not; without it the task flips.
    done: bool | None = None


class TaskRef(Strict):
    id: Id


class BoardRef(Strict):
    """The group object of a board's subscription."""

    type: Literal["board"]
    id: int


def _user(consumer: Any) -> Any:
    return consumer.scope.get("user")


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
def handle_boards(consumer: Any, request: dict[str, Any], data: None = None) -> list[BoardOut]:
    user = _user(consumer)
    private_board(user)
    return [BoardOut(**board.as_dict()) for board in Board.visible_to(user)]


@rohrpost_handler("tasks")
def handle_tasks(consumer: Any, request: dict[str, Any], data: BoardTasks) -> list[TaskOut]:
    board = _board(_user(consumer), data.board)
    return [TaskOut.of(task) for task in board.tasks.all()]


@rohrpost_handler("task.add")
def handle_task_add(consumer: Any, request: dict[str, Any], data: NewTask) -> TaskOut:
    board = _board(_user(consumer), data.board)
    return TaskOut.of(Task.objects.create(board=board, title=data.title))


@rohrpost_handler("task.rename")
def handle_task_rename(consumer: Any, request: dict[str, Any], data: Rename) -> TaskOut:
    with transaction.atomic():
        task = _task(_user(consumer), data.id)
        task.title = data.title
        task.save(update_fields=["title"])
    return TaskOut.of(task)


@rohrpost_handler("task.toggle")
def handle_task_toggle(consumer: Any, request: dict[str, Any], data: Toggle) -> TaskOut:
    with transaction.atomic():
        task = _task(_user(consumer), data.id)
        task.done = (not task.done) if data.done is None else data.done
        task.save(update_fields=["done"])
    return TaskOut.of(task)


@rohrpost_handler("task.delete")
def handle_task_delete(consumer: Any, request: dict[str, Any], data: TaskRef) -> TaskRef:
    with transaction.atomic():
        task = _task(_user(consumer), data.id)
        task_id = task.pk
        task.delete()
    return TaskRef(id=task_id)


def board_snapshot(user: Any, scope: Any, ref: BoardRef) -> dict[str, Any]:
    """What a subscriber starts from: the board's tasks (its permission was checked first)."""
    return {"tasks": [task.as_dict() for task in Task.objects.filter(board_id=ref.id)]}


@subscriptions.declare(
    "board",
    group=lambda ref: board_group(ref.id),
    data=BoardRef,
    push=TaskOut,
    history=True,
    snapshot=board_snapshot,
)
def may_see_board(user: Any, scope: Any, ref: BoardRef) -> bool:
    return Board.visible_to(user).filter(pk=ref.id).exists()


subscriptions.install()
