"""The groups a client is in, kept to join them again after a reconnect.

For groups with history it also keeps the last position applied, so that a
resubscribe asks for what was missed (``since``) and a push seen twice is
dropped, and the offsets applied beyond a gap, so that a gap that stays open
(a push lost on its way) is asked for too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from rohrpost.client._requests import OnAnswer

__all__ = ["GAP_FILL_DELAY", "MAX_AHEAD", "Advance", "Position", "Subscriptions", "group_of"]


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


@dataclass(frozen=True)
class Position:
    """Where a group's stream of pushes stands: ``offset`` pushes into ``epoch``."""

    epoch: str
    offset: int

    @classmethod
    def from_wire(cls, value: Any) -> Position | None:
        """The position in a push's or an answer's ``position``; ``None`` when there is none."""
        if not isinstance(value, dict):
            return None
        epoch, offset = value.get("epoch"), value.get("offset")
        if not isinstance(epoch, str) or not isinstance(offset, int) or isinstance(offset, bool):
            return None
        return cls(epoch, offset)

    def wire(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "offset": self.offset}


class Advance(Enum):
    """What a push's position means for its group."""

    NEW = "new"  #: not seen before: apply it
    DUPLICATE = "duplicate"  #: seen before: drop it
    NEW_EPOCH = "new_epoch"  #: the group's history was lost meanwhile: apply it, then reset
    UNRECORDED = "unrecorded"  #: no position in a group that had one: apply it, then reset
    AHEAD = "ahead"  #: not seen before, but an earlier one is missing: apply it, mind the gap
    GAP = "gap"  #: ahead of a gap that MAX_AHEAD pushes have passed: apply it, fill the gap now


#: Seconds a gap in a group's offsets may stay open before the client asks the
#: server for what is missing (a ``subscribe`` ``since`` its position). Pushes
#: from several publishers may arrive a little out of order and close a gap by
#: themselves within milliseconds; one that stays open this long is a push lost
#: on its way (the channel layer dropped it), which the history still has.
GAP_FILL_DELAY = 1.0

#: Pushes applied beyond a gap after which the client asks for what is missing
#: at once, without waiting for GAP_FILL_DELAY (a busy group).
MAX_AHEAD = 100


#: Called as ``on_reset(group, snapshot, position)`` when an answer says the group reset.
OnReset = Callable[[str, Any, Position], None]


class Subscriptions:
    """The subscribed group objects and the group each joined, one entry per object.

    Entries are keyed by the object's canonical JSON, so equal objects are one
    subscription however their keys are ordered.

    Args:
        on_reset: Told when an answer to a subscribe says the pushes after
            the group's position are gone.
    """

    def __init__(self, on_reset: OnReset | None = None) -> None:
        self._entries: dict[str, tuple[Any, str]] = {}  # key -> (object, group)
        # group -> where every push up to it was applied (what a resume asks for)
        self._positions: dict[str, Position] = {}
        # group -> offsets applied beyond a gap (arrived before an earlier one)
        self._ahead: dict[str, set[int]] = {}
        # Groups whose reset a lost connection interrupted: the next answer is a reset.
        self._unfinished_resets: set[str] = set()
        self._on_reset = on_reset

    def by_group(self) -> dict[str, Any]:
        """Group name -> group object."""
        return {group: group_object for group_object, group in self._entries.values()}

    def entries(self) -> list[tuple[str, Any, str]]:
        """A snapshot of the entries as ``(key, group object, group)``."""
        return [(key, group_object, group) for key, (group_object, group) in self._entries.items()]

    def position(self, group: str) -> Position | None:
        """The position up to which every push of ``group`` was applied (groups with history).

        A push that arrived ahead of an earlier one (pushes from several
        publishers may cross) does not move it until the gap closes, so a
        resume asks for what is missing and the replay's repeats are dropped.
        """
        return self._positions.get(group)

    def gap_open(self, group: str) -> bool:
        """Whether pushes of ``group`` were applied beyond one that has not come yet."""
        return bool(self._ahead.get(group))

    def remembering(self, group_object: Any, *, again: bool, reset: bool = False) -> OnAnswer:
        """What records a subscription to ``group_object`` once its answer is read.

        It runs as the answer is read, not when the caller resumes: an
        ``unsubscribed`` push right behind the answer must find it recorded.

        Args:
            group_object: The object subscribed to.
            again: A resubscription after a reconnect: it records nothing when
                the subscription was dropped in the meantime.
            reset: The answer resets the group (a fresh subscribe after a new
                epoch was seen), whatever it says.

        Raises:
            TypeError: JSON cannot encode ``group_object`` (raised here, early).
        """
        key = _canonical(group_object)

        def remember(data: Any) -> None:
            group = data.get("group") if isinstance(data, dict) else None
            if not isinstance(group, str) or (again and key not in self._entries):
                return
            self._entries[key] = (group_object, group)
            position = Position.from_wire(data.get("position"))
            if position is None:
                return
            last = self._positions.get(group)
            # Pushes replayed before this answer are at or below its position.
            if last is None or last.epoch != position.epoch or last.offset <= position.offset:
                self._set_position(group, position)
            unfinished = group in self._unfinished_resets
            self._unfinished_resets.discard(group)
            if (reset or unfinished or data.get("reset") is True) and self._on_reset is not None:
                self._on_reset(group, data.get("snapshot"), position)

        return remember

    def advance(self, group: str, position: Position | None) -> Advance:
        """Record a push at ``position`` in ``group``, and say what it is.

        A push without a position in a group that has one was not recorded in
        the group's history (Redis restarted empty, the history expired): a
        resume could not replay what is missing.
        """
        last = self._positions.get(group)
        if position is None:
            return Advance.NEW if last is None else Advance.UNRECORDED
        if last is None or last.epoch != position.epoch:
            self._set_position(group, position)
            return Advance.NEW if last is None else Advance.NEW_EPOCH
        ahead = self._ahead.setdefault(group, set())
        if position.offset <= last.offset or position.offset in ahead:
            return Advance.DUPLICATE
        if position.offset != last.offset + 1:
            ahead.add(position.offset)  # an earlier one is still on its way, or lost
            return Advance.GAP if len(ahead) > MAX_AHEAD else Advance.AHEAD
        self._set_position(group, position)
        return Advance.NEW

    def _set_position(self, group: str, position: Position) -> None:
        """Move ``group``'s position to ``position``, and past the pushes already ahead of it."""
        ahead = self._ahead.get(group, set())
        if self._positions.get(group, position).epoch != position.epoch:
            ahead = set()
        offset = position.offset
        while offset + 1 in ahead:
            offset += 1
        self._ahead[group] = {seen for seen in ahead if seen > offset}
        self._positions[group] = Position(position.epoch, offset)

    def reset_interrupted(self, group: str) -> None:
        """A reset of ``group`` did not get its answer: the next subscribe starts afresh."""
        self._positions.pop(group, None)
        self._ahead.pop(group, None)
        self._unfinished_resets.add(group)

    def forget(self, group_object: Any) -> None:
        """Drop the subscription to ``group_object``, if there is one."""
        entry = self._entries.pop(_canonical(group_object), None)
        if entry is not None:
            self._drop_state(entry[1])

    def discard(self, key: str) -> None:
        """Drop the entry under ``key`` (from :meth:`entries`), if it is still there."""
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._drop_state(entry[1])

    def forget_group(self, group: str | None) -> None:
        """Drop every subscription that joined ``group`` (the server took us out of it)."""
        self._entries = {key: entry for key, entry in self._entries.items() if entry[1] != group}
        if group is not None:
            self._drop_state(group)

    def _drop_state(self, group: str) -> None:
        if group not in self.by_group():
            self._positions.pop(group, None)
            self._ahead.pop(group, None)
            self._unfinished_resets.discard(group)
