"""Authentication of connections and requests: token hook and anonymous refusal.

Two settings in ``ROHRPOST`` (both optional):

``"AUTHENTICATE"``
    A token hook: a callable (or its dotted path) ``authenticate(token,
    scope)`` that returns the user a token stands for, or ``None`` when the
    token is not valid. It may be sync (it runs in a worker thread, so it can
    use the ORM) or ``async def``. rohrpost.js sends its ``token`` option as the
    top-level ``auth_jwt`` field of a request; when a request carries one, the
    hook checks it before the handler runs. An empty ``auth_jwt`` is no token
    (rohrpost.js 0.6 sends ``""`` when its ``token`` option is not set). A
    valid token makes the hook's user the connection's user (``scope["user"]``)
    from then on, and puts the connection in that user's private group (:mod:`rohrpost.control`); an
    invalid one is answered with the error ``unauthenticated`` and the handler
    is not called. The hook may raise :class:`rohrpost.RohrpostError` (for
    example ``Forbidden("Token expired.")``) to answer with its own message.

``"REQUIRE_AUTHENTICATION"``
    ``True`` refuses anonymous clients. Without a token hook, a connection
    whose ``scope["user"]`` is not authenticated is accepted and closed at
    once with :data:`CLOSE_UNAUTHENTICATED` (4001), so that a browser sees
    the code. With a token hook, a client may authenticate by token: until it
    does, every request except ``ping`` is answered with ``unauthenticated``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from channels.db import database_sync_to_async
from django.utils.module_loading import import_string

from rohrpost import conf, metrics, protocol, startup
from rohrpost.exceptions import RohrpostError

__all__ = ["CLOSE_UNAUTHENTICATED", "TOKEN_FIELD", "Authenticator", "resolve_hook"]

logger = logging.getLogger("rohrpost")

#: Close code for a connection refused because its user is not authenticated.
CLOSE_UNAUTHENTICATED: Final = 4001
#: The top-level request field that carries a token (rohrpost.js's name).
TOKEN_FIELD: Final = "auth_jwt"  # noqa: S105 - a field name, not a secret
#: Requests answered even before a client authenticates (keepalives must work).
OPEN_TYPES: Final = frozenset({"ping"})

TokenHook = Callable[[str, Any], Any]


def resolve_hook(value: Any) -> TokenHook | None:
    """Return the token hook a setting value names: a callable, a dotted path, or ``None``.

    Raises:
        ImportError: When a dotted path does not import.
        TypeError: When the value is neither, or names something not callable.
    """
    if value is None:
        return None
    hook = import_string(value) if isinstance(value, str) else value
    if not callable(hook):
        raise TypeError(f"{value!r} is not callable.")
    return hook  # type: ignore[no-any-return]


def is_authenticated(user: Any) -> bool:
    """Whether ``user`` (anything in ``scope["user"]``, ``None`` included) is logged in."""
    return getattr(user, "is_authenticated", False) is True


class Authenticator:
    """One connection's authentication step, run for each request before its handler.

    Built by :meth:`from_settings`, which returns ``None`` when neither
    setting is on, so that the consumers skip the step altogether.
    """

    __slots__ = ("_ahook", "require")

    def __init__(self, hook: TokenHook | None, *, require: bool) -> None:
        self.require = require
        self._ahook: Callable[[str, Any], Awaitable[Any]] | None
        if hook is None:
            self._ahook = None
        elif inspect.iscoroutinefunction(hook) or inspect.iscoroutinefunction(
            getattr(hook, "__call__", None)  # noqa: B004 - an async callable object
        ):
            self._ahook = hook
        else:
            self._ahook = database_sync_to_async(hook)

    @classmethod
    def from_settings(cls) -> Authenticator | None:
        """Return the step the settings ask for, or ``None`` when there is nothing to do."""
        require = conf.options().get("REQUIRE_AUTHENTICATION", False)
        if not isinstance(require, bool):
            # The system check reports it; a security switch fails closed.
            startup.log_once(
                "require-not-bool",
                logging.ERROR,
                "ROHRPOST['REQUIRE_AUTHENTICATION'] is not a bool: taken as True",
            )
            require = True
        try:
            # Read as given: an unusable hook must not fall back to "no hook" (every token ignored).
            hook = resolve_hook(conf.options().get("AUTHENTICATE"))
        except (ImportError, TypeError):
            # The system check reports it; refusing every token is the safe fallback.
            startup.log_once(
                "hook-unusable",
                logging.ERROR,
                "ROHRPOST['AUTHENTICATE'] is unusable: no token is accepted (%s)",
                conf.problems({"AUTHENTICATE": conf.options().get("AUTHENTICATE")})[0],
            )
            hook = _refuse_every_token
        if hook is None and not require:
            return None
        return cls(hook, require=require)

    def refuses_connection(self, scope: Any) -> bool:
        """Whether a new connection must be closed with :data:`CLOSE_UNAUTHENTICATED`."""
        return self.require and self._ahook is None and not is_authenticated(scope.get("user"))

    async def acheck(self, request: dict[str, Any], scope: Any) -> tuple[Any, str | None]:
        """Authenticate one request.

        Returns:
            ``(user, None)`` when a token authenticated ``user``; ``(None, None)``
            when the request may go on as the connection's current user;
            ``(None, frame)`` with the error frame to answer instead.
        """
        token = request.get(TOKEN_FIELD) if self._ahook is not None else None
        if token is None or token == "":  # rohrpost.js 0.6 sends "" for "no token"
            if (
                self.require
                and request["type"] not in OPEN_TYPES
                and not is_authenticated(scope.get("user"))
            ):
                return None, _refusal(request, "Authentication required.")
            return None, None
        if not isinstance(token, str):
            return None, _refusal(request, f"'{TOKEN_FIELD}' must be a string.")
        assert self._ahook is not None
        try:
            user = await self._ahook(token, scope)
        except RohrpostError as exc:
            _log_refusal(request, f"the token hook raised {exc.code!r}: {exc.message}")
            try:
                refusal = protocol.encode_error(
                    request["id"], request["type"], exc.message, exc.code, exc.data
                )
            except (TypeError, ValueError):
                logger.exception("The token hook's error on request id %r", request["id"])
                return None, _refusal(request, "The token is not valid.")
            metrics.replied(request["type"], exc.code)
            return None, refusal
        except Exception:
            logger.exception("The token hook failed on request id %r", request["id"])
            return None, _refusal(request, "The token could not be checked.")
        if not is_authenticated(user):
            _log_refusal(request, f"the token hook returned {type(user).__name__}")
            return None, _refusal(request, "The token is not valid.")
        return user, None


def _log_refusal(request: dict[str, Any], why: str) -> None:
    # INFO, and never the token itself: a refused token may be a real one, mistyped.
    # A hook that knows more (an expired signature, a malformed claim) logs it itself.
    logger.info("Token refused on request id %r: %s", request["id"], why)


def _refusal(request: dict[str, Any], message: str) -> str:
    metrics.replied(request["type"], protocol.UNAUTHENTICATED)
    return protocol.encode_error(request["id"], request["type"], message, protocol.UNAUTHENTICATED)


async def _refuse_every_token(token: str, scope: Any) -> None:
    return None
