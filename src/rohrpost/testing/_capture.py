"""Capture what the change feed publishes, in a test, without waiting on a socket."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db import connections

from rohrpost import changefeed

__all__ = ["CapturedPush", "PushCapture", "capture_pushes"]

logger = logging.getLogger("rohrpost")


@dataclass(frozen=True)
class CapturedPush:
    """One push the change feed handed to the publisher.

    Attributes:
        group: The group it went to.
        frame: The push frame, decoded (``{"id", "type", "data": {...}}``).
        layer: The channel-layer alias.
    """

    group: str
    frame: dict[str, Any]
    layer: str

    @property
    def kind(self) -> str:
        """``create``, ``update`` or ``delete`` (the frame's ``data.type``)."""
        kind: str = self.frame["data"]["type"]
        return kind

    @property
    def object(self) -> Any:
        """The pushed object (the frame's ``data.object``)."""
        return self.frame["data"]["object"]


class PushCapture:
    """The pushes published while a :func:`capture_pushes` block runs, oldest first.

    Reading it (:attr:`pushes`, :attr:`changes`, ``len()``, ...) first runs
    the commit hooks a commit would run, where the only open transactions
    are the test case's own (see :func:`capture_pushes`), so a test sees
    what its changes publish at the moment it looks. Safe to read while
    other threads publish; :meth:`wait` blocks until enough have come.
    """

    def __init__(self, commit: bool | None = None) -> None:
        self.commit = commit
        self._pushes: list[CapturedPush] = []
        self._changed = threading.Condition()
        # Per database alias: the first commit hook registered after the capture began.
        self._hooks_from = {alias: len(connections[alias].run_on_commit) for alias in connections}

    def _record(self, items: list[tuple[str, str, str]]) -> None:
        captured = [CapturedPush(group, json.loads(text), layer) for layer, group, text in items]
        with self._changed:
            self._pushes.extend(captured)
            self._changed.notify_all()

    def settle(self) -> None:
        """Run the commit hooks registered since the capture began, where a commit would.

        Called by every read; hooks that ran are not run again.
        """
        for alias, start in self._hooks_from.items():
            connection = connections[alias]
            if self.commit or (self.commit is None and _only_test_case_transactions(connection)):
                self._hooks_from[alias] = _run_commit_hooks(connection, start)

    @property
    def pushes(self) -> list[CapturedPush]:
        """Every push captured so far."""
        self.settle()
        with self._changed:
            return list(self._pushes)

    @property
    def changes(self) -> list[tuple[str, str, Any]]:
        """Every push as ``(group, kind, object)``: what most assertions compare."""
        return [(push.group, push.kind, push.object) for push in self.pushes]

    @property
    def groups(self) -> list[str]:
        """The group of every push, in order."""
        return [push.group for push in self.pushes]

    def to(self, group: str) -> list[CapturedPush]:
        """The pushes to ``group``."""
        return [push for push in self.pushes if push.group == group]

    def wait(self, count: int, timeout: float = 5.0) -> list[CapturedPush]:
        """Block until at least ``count`` pushes were captured, for code in other threads.

        Raises:
            AssertionError: Fewer came within ``timeout`` seconds.
        """
        self.settle()
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._pushes) >= count, timeout):
                changes = [(push.group, push.kind, push.object) for push in self._pushes]
                raise AssertionError(
                    f"{len(self._pushes)} of {count} pushes within {timeout:g} s: {changes!r}"
                )
            return list(self._pushes)

    def __len__(self) -> int:
        return len(self.pushes)


@contextmanager
def capture_pushes(*, commit: bool | None = None) -> Iterator[PushCapture]:
    """Record every push the change feed publishes while the block runs, in any thread.

    The pushes still reach the channel layer as usual. A test that saves a
    model compares what was published without a socket and without waiting::

        with capture_pushes() as pushes:
            Task.objects.create(board=board, title="Write tests")
        assert pushes.changes == [("board-1", "create", {...})]

    Args:
        commit: Whether to run the commit hooks registered inside the block
            when the capture is read and when the block ends, as a commit
            would. Inside Django's ``TestCase`` (and pytest-django's
            ``django_db`` tests without ``transaction=True``) the test's own
            transaction never commits, so nothing would be published; by
            default (``None``) the hooks run exactly when every transaction
            open on a connection is the test case's own. Changes made in
            autocommit mode or in a transaction that commits are published
            at once either way; a rolled-back savepoint publishes nothing.
    """
    capture = PushCapture(commit)
    changefeed.observers.append(capture._record)
    try:
        yield capture
        capture.settle()
    finally:
        changefeed.observers.remove(capture._record)


def _only_test_case_transactions(connection: Any) -> bool:
    blocks = getattr(connection, "atomic_blocks", [])
    return bool(connection.in_atomic_block and blocks) and all(
        getattr(block, "_from_testcase", False) for block in blocks
    )


def _run_commit_hooks(connection: Any, start: int) -> int:
    """Run the commit hooks from ``start`` on, and those they add; return where they end."""
    hooks: list[tuple[Any, Callable[[], None], bool]] = connection.run_on_commit
    while start < len(hooks):
        end = len(hooks)
        for _savepoints, hook, robust in hooks[start:end]:
            if robust:
                try:
                    hook()
                except Exception:
                    logger.exception("A commit hook failed in capture_pushes")
            else:
                hook()
        start = end
    return start
