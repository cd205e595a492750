"""Send group events in as few channel-layer round trips as the layer allows.

The change feed publishes every push as its own channel-layer event (the
4.x shape: a consumer reading ``event["message"]`` gets each one). Sent one
``group_send`` at a time, that costs channels_redis's ``RedisChannelLayer``
four Redis round trips per push (prune the group, read it, prune the
channels, add the message), and a round trip through redis-py's asyncio
client costs about 100 µs of CPU: more than a small save's own work.

:func:`agroups_send` sends the events queued for any number of groups, each
still its own event with its own delivery, in order within its group, the
way ``group_send`` would, but:

- ``RedisChannelLayer``: one script call adds every event of the batch to
  the member channels (pruning their expired messages first, within each
  channel's capacity, with strictly increasing scores so they are received
  in order). On one Redis host the script also checks that each group's
  members (pruned as ``group_send`` prunes them) are those this process saw
  last, and adds nothing when they are not: then it answers with the actual
  members and the batch is built again for them. So while the groups do not
  change, a batch costs one round trip, however many pushes and groups it
  holds; a one-push save costs one instead of four. The first send to a
  group, a layer with several hosts and a batch above
  :data:`MESSAGES_PER_CALL` messages read the groups first (one pipeline per
  host), then add. The messages are built and serialized by the layer's own
  ``_map_channel_keys_to_connection``, so encryption, serializers and
  process-specific channels behave as in ``group_send``.
- ``RedisPubSubChannelLayer``: the publishes go out in one pipeline per
  shard.
- Any other layer, or a channels_redis layer whose class overrides
  ``group_send`` (or lacks what this module relies on), gets one
  ``group_send`` per event, as before.

The way is chosen once per layer class (:func:`sender_for`).
"""

from __future__ import annotations

import hashlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

__all__ = ["KNOWN_GROUPS_LIMIT", "MESSAGES_PER_CALL", "agroups_send", "sender_for"]

logger = logging.getLogger("rohrpost")

Events = Mapping[str, Sequence[dict[str, Any]]]
Sender = Callable[[Any, Events], Awaitable[None]]

#: Most messages one script call adds: a call blocks its Redis server while it runs.
MESSAGES_PER_CALL = 2000

#: Groups whose members this process remembers per layer (see :func:`_acore_send`).
KNOWN_GROUPS_LIMIT = 10_000

# KEYS: n group keys, then the channel keys to add to (all on one host).
# ARGV: the channels' expiry in seconds, the prune limit for channel messages
# (scored at or below it: expired), the prune limit for group members, n, then
# for each group the number of members the caller expects and their names,
# then for each channel key its capacity, its message count c, and c pairs of
# score and serialized message.
#
# When a group's members (pruned as group_send prunes them) are not the
# expected ones, nothing is added: the reply is a list of the group's number
# and its actual members, for every such group, so the caller can build the
# messages again. Otherwise it returns how many messages were dropped because
# their channel was full (group_send drops them too, and logs it).
_ADD_SCRIPT = """
local groups = tonumber(ARGV[4])
local at = 5
local stale = {}
for g = 1, groups do
    redis.call('ZREMRANGEBYSCORE', KEYS[g], 0, ARGV[3])
    local members = redis.call('ZRANGE', KEYS[g], 0, -1)
    local count = tonumber(ARGV[at])
    local expected = {}
    for m = 1, count do
        expected[ARGV[at + m]] = true
    end
    at = at + 1 + count
    local same = #members == count
    for m = 1, #members do
        if not expected[members[m]] then
            same = false
        end
    end
    if not same then
        stale[#stale + 1] = g
        stale[#stale + 1] = members
    end
end
if #stale > 0 then
    return stale
end
local expiry = ARGV[1]
local dropped = 0
for i = groups + 1, #KEYS do
    local key = KEYS[i]
    redis.call('ZREMRANGEBYSCORE', key, 0, ARGV[2])
    local room = tonumber(ARGV[at]) - redis.call('ZCOUNT', key, '-inf', '+inf')
    local count = tonumber(ARGV[at + 1])
    at = at + 2
    local added = 0
    for j = 1, count do
        if added < room then
            redis.call('ZADD', key, ARGV[at], ARGV[at + 1])
            added = added + 1
        else
            dropped = dropped + 1
        end
        at = at + 2
    end
    if added > 0 then
        redis.call('EXPIRE', key, expiry)
    end
end
return dropped
"""

_ADD_SCRIPT_SHA1 = hashlib.sha1(_ADD_SCRIPT.encode(), usedforsecurity=False).hexdigest()

_senders: dict[type, Sender] = {}
# The last score this process gave a message: scores only grow, so a batch
# sent within one clock tick of the previous one is still received after it.
_last_score = 0.0


async def agroups_send(layer: Any, events: Events) -> None:
    """Send each group's events to it, in order, as ``layer.group_send`` would.

    Args:
        layer: A channel layer.
        events: The events for each group, in the order each group gets them.

    Raises nothing: what fails is logged, with the groups it was for, and a
    group the layer refuses (a name it does not allow) does not keep the
    others from their events. An event that reached no channel because the
    channel was full is dropped and logged, as ``group_send`` does.
    """
    if not events:
        return
    try:
        await sender_for(layer)(layer, events)
    except Exception:
        _log_failure(events)


def _log_failure(events: Events) -> None:
    frames = sum(len(event.get("messages", "1")) for group in events.values() for event in group)
    where = f"group {next(iter(events))!r}" if len(events) == 1 else f"{len(events)} groups"
    logger.exception("Publishing %d frames to %s failed", frames, where)


def sender_for(layer: Any) -> Sender:
    """The cheapest way to send a batch to a group on ``layer`` (chosen once per class)."""
    cls = type(layer)
    sender = _senders.get(cls)
    if sender is None:
        sender = _senders[cls] = _choose(cls)
    return sender


def _choose(cls: type) -> Sender:
    try:
        from channels_redis.core import RedisChannelLayer
        from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer
    except ImportError:  # channels_redis is an extra (rohrpost[redis])
        return _aone_by_one
    core_relies_on = ("_map_channel_keys_to_connection", "_group_key", "connection")
    if (
        issubclass(cls, RedisChannelLayer)
        and not _overrides(cls, RedisChannelLayer, "group_send")
        and all(hasattr(cls, name) for name in core_relies_on)
    ):
        return _acore_send
    # The pub/sub layer's methods are its per-loop layer's, reached through __getattr__.
    pubsub_relies_on = ("_get_group_channel_name", "_get_shard")
    if (
        issubclass(cls, RedisPubSubChannelLayer)
        and not _overrides(cls, RedisPubSubChannelLayer, "group_send")
        and all(hasattr(RedisPubSubLoopLayer, name) for name in pubsub_relies_on)
    ):
        return _apubsub_send
    return _aone_by_one


def _overrides(cls: type, base: type, name: str) -> bool:
    """Whether a subclass of ``base`` defines ``name`` itself (then its own way is kept)."""
    mro = cls.__mro__
    return any(name in vars(klass) for klass in mro[: mro.index(base)])


async def _aone_by_one(layer: Any, events: Events) -> None:
    for group, group_events in events.items():
        try:
            for event in group_events:
                await layer.group_send(group, event)
        except Exception:
            _log_failure({group: group_events})


def _scores(count: int) -> list[float]:
    global _last_score
    if not count:
        return []
    score = max(time.time(), _last_score + 1e-6)
    scores = [score + index * 1e-6 for index in range(count)]
    _last_score = scores[-1]
    return scores


Members = dict[str, list[bytes]]
# Per layer, the members each group had when this process last sent to it.
_known: weakref.WeakKeyDictionary[Any, Members] = weakref.WeakKeyDictionary()
# What _aadd answers for a checked batch too big for one script call.
_TOO_BIG: Members = {}


async def _acore_send(layer: Any, events: Events) -> None:
    """Send on a ``RedisChannelLayer``: in one round trip when the members are as last seen.

    On one Redis host, the script gets the members this process last saw in
    each group along with the messages built for them, and adds the messages
    only if the members are still those (checked and added atomically): one
    round trip per batch while the groups do not change. When they did, the
    script answers with the actual members and the batch is built again for
    them. The first send to a group, and a layer with several hosts, read the
    groups first (a pipeline per host), then add.
    """
    groups = _valid_groups(layer, events)
    if not groups:
        return
    one_host = layer.ring_size == 1
    known = _known.setdefault(layer, {}) if one_host else {}
    members = {group: known[group] for group in groups if group in known}
    if one_host and len(members) == len(groups):
        try:
            for _ in range(2):  # a change between two sends is rare; twice is not worth a third
                stale = await _aadd(layer, events, members, checked=True)
                if stale is None:
                    return
                if stale is _TOO_BIG:
                    break
                members.update(stale)
                known.update(stale)
        except BaseException:
            # Whatever failed (Redis gone, cancelled), the next batch reads the groups afresh.
            for group in groups:
                known.pop(group, None)
            raise
    members = await _aread_members(layer, groups)
    if one_host:
        if len(known) + len(members) > KNOWN_GROUPS_LIMIT:
            known.clear()
        known.update(members)
    await _aadd(layer, events, members, checked=False)


def _valid_groups(layer: Any, events: Events) -> list[str]:
    """The groups whose names the layer takes; the others' events are logged as lost."""
    groups = []
    for group in events:
        try:
            layer.require_valid_group_name(group)
        except Exception:
            _log_failure({group: events[group]})
        else:
            groups.append(group)
    return groups


async def _aread_members(layer: Any, groups: list[str]) -> Members:
    """Each group's members, pruned of expired ones as group_send does: a pipeline per host."""
    pipes: dict[int, Any] = {}
    order: list[tuple[int, str]] = []
    expired = int(time.time()) - layer.group_expiry
    for group in groups:
        index = layer.consistent_hash(group)
        pipe = pipes.get(index)
        if pipe is None:
            pipe = pipes[index] = layer.connection(index).pipeline(transaction=False)
        group_key = layer._group_key(group)
        pipe.zremrangebyscore(group_key, min=0, max=expired)
        pipe.zrange(group_key, 0, -1)
        order.append((index, group))
    replies = {index: iter(await pipe.execute()) for index, pipe in pipes.items()}
    members: Members = {}
    for index, group in order:
        next(replies[index])  # how many expired members were pruned
        members[group] = next(replies[index])
    return members


async def _aadd(layer: Any, events: Events, members: Members, *, checked: bool) -> Members | None:
    """Add each event's messages for ``members``; ``checked``: only if they are still those.

    Returns:
        The actual members of the groups that changed, when ``checked`` found
        any (nothing was added then); else ``None``.
    """
    # Each event's message per channel key, built and serialized by the layer
    # itself (with the channels it is for), exactly as in group_send.
    per_key: dict[bytes, list[bytes]] = {}
    key_host: dict[bytes, int] = {}
    capacities: dict[bytes, int] = {}
    for group, group_members in members.items():
        if not group_members:
            continue
        channel_names = [member.decode("utf8") for member in group_members]
        for event in events[group]:
            hosts, messages, key_capacities = layer._map_channel_keys_to_connection(
                channel_names, event
            )
            for host, keys in hosts.items():
                for key in keys:
                    if key not in per_key:
                        per_key[key], key_host[key] = [], host
                        capacities[key] = key_capacities[key]
                    per_key[key].append(messages[key])
    total = sum(len(messages) for messages in per_key.values())
    if checked and total > MESSAGES_PER_CALL:
        return _TOO_BIG  # for one call: read the groups, then add in several calls
    if not per_key and not checked:
        return None
    # One score per message, growing in the order the events were given, so a
    # channel receives each group's events in order.
    scores = iter(_scores(total))
    head: list[Any] = [layer.expiry, int(time.time()) - int(layer.expiry)]
    group_keys: list[bytes] = []
    if checked:
        head.append(int(time.time()) - layer.group_expiry)
        head.append(len(members))
        for group, group_members in members.items():
            group_keys.append(layer._group_key(group))
            head += [len(group_members), *group_members]
    else:
        head += [0, 0]
    calls: dict[int, list[tuple[list[bytes], list[Any]]]] = {}
    if checked:  # one host, one call: checked and added in one step
        calls[0] = [(list(group_keys), list(head))]
    for key, messages in per_key.items():
        host_calls = calls.setdefault(key_host[key], [])
        if not host_calls or (not checked and len(host_calls[-1][1]) > 2 * MESSAGES_PER_CALL):
            host_calls.append(([], list(head)))
        keys, args = host_calls[-1]
        keys.append(key)
        args += [capacities[key], len(messages)]
        for message in messages:
            args += [next(scores), message]
    dropped = 0
    for host, host_calls in calls.items():
        connection = layer.connection(host)
        for keys, args in host_calls:
            found = await _arun_script(connection, keys, args)
            if isinstance(found, list):  # the members changed: nothing was added
                groups = list(members)
                return {
                    groups[int(number) - 1]: actual
                    for number, actual in zip(found[::2], found[1::2], strict=True)
                }
            dropped += found
    if dropped:
        logger.info(
            "%s of %s messages to groups %s dropped: channels over capacity",
            dropped,
            total,
            ", ".join(events),
        )
    return None


async def _arun_script(connection: Any, keys: list[bytes], args: list[Any]) -> Any:
    from redis.exceptions import NoScriptError

    try:  # by its digest: the script's text travels once per Redis server
        return await connection.evalsha(_ADD_SCRIPT_SHA1, len(keys), *keys, *args)
    except NoScriptError:
        return await connection.eval(_ADD_SCRIPT, len(keys), *keys, *args)


async def _apubsub_send(layer: Any, events: Events) -> None:
    loop_layer = layer._get_layer()
    serialize = loop_layer.channel_layer.serialize
    by_shard: dict[Any, list[tuple[str, bytes]]] = {}
    for group, group_events in events.items():
        group_channel = loop_layer._get_group_channel_name(group)
        shard = loop_layer._get_shard(group_channel)
        publishes = by_shard.setdefault(shard, [])
        publishes += [(group_channel, serialize(event)) for event in group_events]
    for shard, publishes in by_shard.items():
        async with shard._lock:
            shard._ensure_redis()
            pipe = shard._redis.pipeline(transaction=False)
            for group_channel, payload in publishes:
                pipe.publish(group_channel, payload)
            await pipe.execute()
