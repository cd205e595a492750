"""Where sync handlers run: Channels' one shared thread, or a bounded pool of threads.

By default (``ROHRPOST["SYNC_THREADS"] = 1``) every sync handler of a process
runs in Channels' one shared worker thread, as in 4.x: handlers of all
connections take turns, so one slow handler holds up every other client.
``SYNC_THREADS = n`` (2 or more) runs them in a pool of ``n`` threads instead,
so up to ``n`` connections' handlers run at once::

    ROHRPOST = {"SYNC_THREADS": 8}

What stays the same either way:

- **Order per connection.** A connection's frames are still handled one after
  the other (unless ``MAX_IN_FLIGHT`` allows more): a consumer waits for its
  handler before it takes the next frame.
- **Database connections.** Django keeps one database connection per thread,
  so each pool thread has its own. Stale ones are closed before and after
  every call, as Channels' ``database_sync_to_async`` does (with the default
  ``CONN_MAX_AGE = 0``: after every call). A process holds at most ``n`` of
  them for its handlers.
- **Helpers.** ``consumer.send``, ``send_message``, ``add_to_group`` and
  other ``async_to_sync`` code work from a pool thread: they run on the
  event loop while the thread waits.

What changes: handlers of different connections run at the same time, so
code they share must be thread-safe (as in any threaded Django server). An
in-memory SQLite database is one database per thread, so each pool thread
would see its own empty one: the system check ``rohrpost.W005`` warns of it.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from channels.db import DatabaseSyncToAsync

from rohrpost import conf

__all__ = ["executor", "in_thread"]

#: One pool per size; a process normally has only the one its setting names.
_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def executor() -> ThreadPoolExecutor | None:
    """Return the pool ``SYNC_THREADS`` asks for, or ``None`` for Channels' shared thread.

    The pool is made on first use and lives as long as the process.
    """
    threads: int = conf.get("SYNC_THREADS")
    if threads == 1:
        return None
    with _pools_lock:
        pool = _pools.get(threads)
        if pool is None:
            pool = ThreadPoolExecutor(threads, thread_name_prefix="rohrpost-sync")
            _pools[threads] = pool
    return pool


def in_thread(
    func: Callable[..., Any], pool: ThreadPoolExecutor | None
) -> Callable[..., Coroutine[Any, Any, Any]]:
    """Return an async version of ``func`` that runs it in a worker thread.

    Args:
        func: The sync callable (a handler, or a function that runs one).
        pool: What :func:`executor` returned: ``None`` runs ``func`` in
            Channels' one shared thread, a pool runs it in any of its threads.
            Either way the thread's stale database connections are closed
            before and after, as Channels' ``database_sync_to_async`` does.
    """
    try:
        return _adapted(func, pool)
    except TypeError:  # a callable object that cannot be hashed: adapted each time
        return _adapt(func, pool)


def _adapt(
    func: Callable[..., Any], pool: ThreadPoolExecutor | None
) -> Callable[..., Coroutine[Any, Any, Any]]:
    if pool is None:
        return DatabaseSyncToAsync(func)  # type: ignore[no-any-return]
    return DatabaseSyncToAsync(func, thread_sensitive=False, executor=pool)  # type: ignore[no-any-return]


# Handlers are few and live as long as the process: each one's adapter is made once.
_adapted = functools.lru_cache(maxsize=1024)(_adapt)
