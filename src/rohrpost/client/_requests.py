"""The requests a client waits on, and the matching of answers to them by ``id``."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final, NamedTuple, TypeAlias

__all__ = ["OnAnswer", "PendingRequests"]

logger = logging.getLogger("rohrpost.client")  # the whole client logs under one name

#: How many ids of given-up requests are remembered, so late answers are dropped.
_ABANDONED_KEPT: Final = 256

OnAnswer: TypeAlias = Callable[[Any], None]


class _Waiting(NamedTuple):
    """A request waiting for its answer."""

    future: asyncio.Future[dict[str, Any]]
    #: Called with the answer's data the moment it is read, before any later frame.
    on_answer: OnAnswer | None


class PendingRequests:
    """The requests sent and not yet answered, by ``id``; ``len()`` counts them.

    It also remembers the ids of the last requests given up (timed out or
    cancelled), so that their answers, should they still come, are dropped
    rather than taken for pushes.
    """

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._waiting: dict[str, _Waiting] = {}
        self._abandoned: deque[str] = deque(maxlen=_ABANDONED_KEPT)

    def __len__(self) -> int:
        return len(self._waiting)

    def new_id(self) -> str:
        """A fresh request id."""
        # String ids never collide with the integer ids the server generates for pushes.
        return f"c{next(self._ids)}"

    @contextmanager
    def expect(
        self, request_id: str, on_answer: OnAnswer | None = None
    ) -> Iterator[asyncio.Future[dict[str, Any]]]:
        """Wait for the answer to ``request_id`` within the block: the future gets it.

        Args:
            request_id: The id the request is sent with.
            on_answer: Called with the answer's ``data`` as soon as it is read
                (not for an error answer).
        """
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = _Waiting(future, on_answer)
        try:
            yield future
        finally:
            del self._waiting[request_id]
            if not future.done():
                future.cancel()
            if future.cancelled():  # given up (timeout, cancellation): its answer may still come
                self._abandoned.append(request_id)
            else:
                future.exception()  # retrieved: asyncio must not report it as lost

    def settle(self, message: dict[str, Any]) -> bool:
        """Hand ``message`` to the request it answers.

        Returns:
            Whether ``message`` answers a request, waiting or given up; when
            not, it is a push (or an error that answers nothing).
        """
        message_id = message.get("id")
        if not isinstance(message_id, str):
            return False
        waiting = self._waiting.get(message_id)
        if waiting is not None:
            if not waiting.future.done():
                if waiting.on_answer is not None and "error" not in message:
                    waiting.on_answer(message.get("data"))
                waiting.future.set_result(message)
            return True
        if message_id in self._abandoned:
            logger.debug("Dropped the late answer to request %s.", message_id)
            return True
        return False

    def fail_all(self, error: Callable[[], Exception]) -> None:
        """Fail every waiting request with a fresh ``error()``."""
        for future, _ in self._waiting.values():
            if not future.done():
                future.set_exception(error())
