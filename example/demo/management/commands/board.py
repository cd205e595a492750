"""``manage.py board``: edit the task board from the command line, live in every browser.

::

    manage.py board list [--board ID]
    manage.py board add TITLE [--board ID]
    manage.py board rename TASK_ID TITLE
    manage.py board toggle TASK_ID
    manage.py board delete TASK_ID

The command writes through the ORM like any Django code; the change feed
publishes each change after commit. Pushes travel through the channel layer,
so they reach the browsers of a server in another process only over a layer
that crosses processes: run the server and the command with the same
``REDIS_URL``. With the default in-memory layer, which lives inside the
server process, the command asks the running server to make the edit
instead, over rohrpost itself (``--url``, default
``ws://127.0.0.1:$PORT/ws/rohrpost/``), so the board updates live either way.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from demo.models import Board, Task


def _in_memory_layer() -> bool:
    backend = settings.CHANNEL_LAYERS["default"]["BACKEND"]
    return bool(backend == "channels.layers.InMemoryChannelLayer")


class Command(BaseCommand):
    help = "List and edit the demo's tasks; browsers showing the board see every change live."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["list", "add", "rename", "toggle", "delete"])
        parser.add_argument("values", nargs="*", help="TITLE for add; TASK_ID [TITLE] otherwise")
        parser.add_argument("--board", type=int, help="board id (default: the first public board)")
        parser.add_argument(
            "--url",
            default=f"ws://127.0.0.1:{os.environ.get('PORT', '8000')}/ws/rohrpost/",
            help="the running demo server (used with the in-memory channel layer)",
        )
        parser.add_argument(
            "--direct",
            action="store_true",
            help="write through the ORM even with the in-memory layer (no live push)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        action: str = options["action"]
        values: list[str] = options["values"]
        if action == "list":
            self._list(options["board"])
            return
        if _in_memory_layer() and not options["direct"]:
            result = self._through_server(options["url"], action, values, options["board"])
        else:
            result = self._direct(action, values, options["board"])
        self.stdout.write(self._describe(action, result))

    # --- the two ways to make an edit ---------------------------------------------------

    def _request(self, action: str, values: list[str], board: int | None) -> dict[str, Any]:
        """The board request (as :mod:`demo.board` takes it) for a command line."""
        if action == "add":
            if len(values) != 1:
                raise CommandError("add takes one TITLE (quote it).")
            return {"board": board or self._default_board().pk, "title": values[0]}
        expected = 2 if action == "rename" else 1
        if len(values) != expected:
            raise CommandError(f"{action} takes {'TASK_ID TITLE' if expected == 2 else 'TASK_ID'}.")
        try:
            data: dict[str, Any] = {"id": int(values[0])}
        except ValueError:
            raise CommandError(f"{values[0]!r} is not a task id.") from None
        if action == "rename":
            data["title"] = values[1]
        return data

    def _through_server(
        self, url: str, action: str, values: list[str], board: int | None
    ) -> dict[str, Any]:
        request = self._request(action, values, board)
        from rohrpost.client import RohrpostCallError, call_once

        try:
            reply: dict[str, Any] = call_once(url, f"task.{action}", request, timeout=5)
        except RohrpostCallError as exc:
            raise CommandError(f"The server refused: {exc}") from None
        except OSError as exc:
            raise CommandError(
                f"Could not reach the demo server at {url} ({exc}). Start it with `make demo`; "
                "if it runs on another port, give the same PORT=... here or --url; "
                "or pass --direct to write without a live push."
            ) from None
        return reply

    def _direct(self, action: str, values: list[str], board: int | None) -> dict[str, Any]:
        data = self._request(action, values, board)
        if action == "add":
            target = Board.objects.filter(pk=data["board"]).first()
            if target is None:
                raise CommandError(f"No board {data['board']}.")
            return Task.objects.create(board=target, title=data["title"]).as_dict()
        with transaction.atomic():
            task = Task.objects.select_for_update().filter(pk=data["id"]).first()
            if task is None:
                raise CommandError(f"No task {data['id']}.")
            if action == "delete":
                task.delete()
                return {"id": data["id"]}
            if action == "rename":
                task.title = data["title"]
                task.save(update_fields=["title"])
            else:
                task.done = not task.done
                task.save(update_fields=["done"])
            return task.as_dict()

    # --- output ------------------------------------------------------------------------

    def _default_board(self) -> Board:
        board = Board.objects.filter(owner__isnull=True).first()
        if board is None:
            raise CommandError("There is no public board: run `manage.py migrate`.")
        return board

    def _list(self, board_id: int | None) -> None:
        board = Board.objects.filter(pk=board_id).first() if board_id else self._default_board()
        if board is None:
            raise CommandError(f"No board {board_id}.")
        self.stdout.write(f"{board.name} (board {board.pk})")
        for task in board.tasks.all():
            self.stdout.write(f"  [{'x' if task.done else ' '}] {task.pk}: {task.title}")

    def _describe(self, action: str, result: dict[str, Any]) -> str:
        if action == "delete":
            return f"Deleted task {result['id']}."
        mark = "x" if result["done"] else " "
        return f"[{mark}] {result['id']}: {result['title']} (board {result['board']})"
