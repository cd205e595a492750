"""The groups a client is in, kept to join them again after a reconnect."""

from __future__ import annotations

import json
from typing import Any

from rohrpost.client._requests import OnAnswer

__all__ = ["Subscriptions", "group_of"]


def _canonical(group_object: Any) -> str:
    return json.dumps(group_object, sort_keys=True, separators=(",", ":"))


def group_of(data: Any) -> str:
    """The group name in a ``subscribe`` or ``unsubscribe`` answer's ``data``.

    Raises:
        ValueError: The answer carries no group name.
    """
    group = data.get("group") if isinstance(data, dict) else None
    if not isinstance(group, str):
        raise ValueError(f"The answer carries no group name: {data!r}")
    return group


class Subscriptions:
    """The subscribed group objects and the group each joined, one entry per object.

    Entries are keyed by the object's canonical JSON, so equal objects are one
    subscription however their keys are ordered.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[Any, str]] = {}  # key -> (object, group)

    def by_group(self) -> dict[str, Any]:
        """Group name -> group object."""
        return {group: group_object for group_object, group in self._entries.values()}

    def entries(self) -> list[tuple[str, Any, str]]:
        """A snapshot of the entries as ``(key, group object, group)``."""
        return [(key, group_object, group) for key, (group_object, group) in self._entries.items()]

    def remembering(self, group_object: Any, *, again: bool) -> OnAnswer:
        """What records a subscription to ``group_object`` once its answer is read.

        It runs as the answer is read, not when the caller resumes: an
        ``unsubscribed`` push right behind the answer must find it recorded.

        Args:
            group_object: The object subscribed to.
            again: A resubscription after a reconnect: it records nothing when
                the subscription was dropped in the meantime.

        Raises:
            TypeError: JSON cannot encode ``group_object`` (raised here, early).
        """
        key = _canonical(group_object)

        def remember(data: Any) -> None:
            group = data.get("group") if isinstance(data, dict) else None
            if isinstance(group, str) and (not again or key in self._entries):
                self._entries[key] = (group_object, group)

        return remember

    def forget(self, group_object: Any) -> None:
        """Drop the subscription to ``group_object``, if there is one."""
        self._entries.pop(_canonical(group_object), None)

    def discard(self, key: str) -> None:
        """Drop the entry under ``key`` (from :meth:`entries`), if it is still there."""
        self._entries.pop(key, None)

    def forget_group(self, group: str | None) -> None:
        """Drop every subscription that joined ``group`` (the server took us out of it)."""
        self._entries = {key: entry for key, entry in self._entries.items() if entry[1] != group}
