"""What rohrpost checks once per process, and the warnings it gives only once.

Django runs its system checks in ``manage.py check``, ``runserver`` and
``migrate``, but an ASGI server (uvicorn, daphne, hypercorn) runs none. So the
first rohrpost connection of a process runs rohrpost's checks
(:func:`rohrpost.checks.rohrpost_problems`) and logs each problem once on the
``rohrpost`` logger: a mistyped ``ROHRPOST`` key, a missing ``CHANNEL_LAYERS``
or ``"rohrpost"`` missing from ``INSTALLED_APPS`` show up in the server's log
without anybody running ``manage.py check``.

:func:`log_once` is how the rest of rohrpost reports a misconfiguration that
every connection or request would otherwise report again.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.core.checks import ERROR

from rohrpost import protocol
from rohrpost.exceptions import RohrpostError

__all__ = ["check_once", "log_once", "no_channel_layer"]

logger = logging.getLogger("rohrpost")

_lock = threading.Lock()
_reported: set[str] = set()


def log_once(key: str, level: int, message: str, *args: Any) -> bool:
    """Log ``message % args`` on the ``rohrpost`` logger, the first time ``key`` is seen.

    Returns:
        Whether it was logged now (``False``: it was logged before).
    """
    if not _first_time(key):
        return False
    logger.log(level, message, *args)
    return True


def _first_time(key: str) -> bool:
    with _lock:
        if key in _reported:
            return False
        _reported.add(key)
        return True


def check_once() -> None:
    """Run rohrpost's checks the first time it is called in a process; log what they find.

    Each problem is logged once: an error as ``ERROR``, a warning as
    ``WARNING``, with its check id and hint.
    """
    if not _first_time("startup-checks"):
        return
    from rohrpost.checks import rohrpost_problems

    for problem in rohrpost_problems():
        level = logging.ERROR if problem.level >= ERROR else logging.WARNING
        logger.log(level, "%s (%s) %s", problem.msg, problem.id, problem.hint or "")


def no_channel_layer(action: str) -> RohrpostError:
    """The error a handler gets when it needs the channel layer and none is configured.

    Logs the cause (once) for the server's operator; the returned error,
    raised in the handler, answers the request with ``handler_error``.

    Args:
        action: What was asked, for the messages (``"join the group 'lobby'"``).
    """
    log_once(
        "no-channel-layer",
        logging.ERROR,
        "A handler tried to %s, but no channel layer is configured: set CHANNEL_LAYERS "
        "in the settings (see rohrpost's settings documentation). Groups, subscriptions "
        "and the change feed need one.",
        action,
    )
    return RohrpostError(
        "The server has no channel layer configured, so it cannot join or leave groups.",
        code=protocol.HANDLER_ERROR,
    )
