"""Logging out ends the user's live connections too (rohrpost.control).

A WebSocket keeps the user its handshake had: without this, a tab opened
before logging out would go on seeing the private board. The closed
connections get code 4003; the page then reconnects as the anonymous user.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver

from rohrpost.control import close_user_connections


@receiver(user_logged_out)
def close_live_connections(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        close_user_connections(user)
