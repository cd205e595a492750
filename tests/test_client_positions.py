"""The Python client's bookkeeping of positions: duplicates, pushes that cross, gaps."""

from __future__ import annotations

from rohrpost.client._subscriptions import MAX_AHEAD, Advance, Position, Subscriptions


def tracked(offset: int = 0) -> Subscriptions:
    subscriptions = Subscriptions()
    remember = subscriptions.remembering({"type": "feed"}, again=False)
    remember({"group": "g", "position": {"epoch": "e", "offset": offset}})
    return subscriptions


def at(offset: int, epoch: str = "e") -> Position:
    return Position(epoch, offset)


def test_pushes_in_order_move_the_position_and_repeats_are_dropped() -> None:
    subscriptions = tracked()
    assert subscriptions.advance("g", at(1)) is Advance.NEW
    assert subscriptions.advance("g", at(2)) is Advance.NEW
    assert subscriptions.advance("g", at(2)) is Advance.DUPLICATE
    assert subscriptions.advance("g", at(1)) is Advance.DUPLICATE
    assert subscriptions.position("g") == at(2)


def test_pushes_that_cross_are_both_applied_and_the_position_waits_for_the_gap() -> None:
    """Two publishers: offset 2 arrives before offset 1; neither is dropped."""
    subscriptions = tracked()
    assert not subscriptions.gap_open("g")
    assert subscriptions.advance("g", at(2)) is Advance.AHEAD
    assert subscriptions.gap_open("g")
    assert subscriptions.position("g") == at(0)  # a resume asks for 1 and on
    assert subscriptions.advance("g", at(2)) is Advance.DUPLICATE
    assert subscriptions.advance("g", at(1)) is Advance.NEW
    assert not subscriptions.gap_open("g")
    assert subscriptions.position("g") == at(2)
    # A replay after a reconnect repeats what was ahead: dropped.
    assert subscriptions.advance("g", at(3)) is Advance.NEW
    assert subscriptions.advance("g", at(3)) is Advance.DUPLICATE


def test_a_gap_that_many_pushes_passed_is_to_be_filled_at_once() -> None:
    subscriptions = tracked()
    for offset in range(2, 2 + MAX_AHEAD):
        assert subscriptions.advance("g", at(offset)) is Advance.AHEAD
    assert subscriptions.advance("g", at(2 + MAX_AHEAD)) is Advance.GAP
    # What a gap-fill's replay brings: the missing one, then repeats, dropped.
    assert subscriptions.advance("g", at(1)) is Advance.NEW
    assert subscriptions.advance("g", at(2)) is Advance.DUPLICATE
    assert subscriptions.position("g") == at(2 + MAX_AHEAD)
    assert not subscriptions.gap_open("g")


def test_a_reply_position_moves_past_what_was_ahead_and_a_new_epoch_starts_over() -> None:
    subscriptions = tracked()
    subscriptions.advance("g", at(3))
    remember = subscriptions.remembering({"type": "feed"}, again=True)
    remember({"group": "g", "position": {"epoch": "e", "offset": 2}})
    assert subscriptions.position("g") == at(3)
    assert subscriptions.advance("g", at(1, "f")) is Advance.NEW_EPOCH
    assert subscriptions.position("g") == at(1, "f")
    subscriptions.forget({"type": "feed"})
    assert subscriptions.position("g") is None
