"""The relay's wait for the head to move: a cancellation always ends the waiter.

A sink's task waits for new events and is cancelled at the bridge's stop. When the head moved
in the same turn as the cancellation, a wait built on ``asyncio.wait_for`` (Python 3.11)
returned normally, the task ran on, and the stop waited for it forever."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from mtgate.events.relay import Relay
from mtgate.store.outbox import OutboxReader


def _relay() -> Relay:
    # ``wait`` reads nothing: the reader is never called.
    return Relay(cast(OutboxReader, object()), now_ms=lambda: 0)


async def _blocked(relay: Relay, after: int, timeout_s: float | None) -> asyncio.Task[bool]:
    task = asyncio.get_running_loop().create_task(relay.wait(after, timeout_s))
    for _ in range(3):
        await asyncio.sleep(0)
    assert not task.done()
    return task


async def test_a_cancellation_that_meets_the_wake_up_still_cancels() -> None:
    relay = _relay()
    waiter = await _blocked(relay, 0, 5.0)
    relay.head = 1
    relay._wake_waiters()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter


async def test_the_head_moving_wakes_every_waiter() -> None:
    relay = _relay()
    waiters = [await _blocked(relay, 0, 5.0) for _ in range(3)]
    relay.head = 1
    relay._wake_waiters()
    assert await asyncio.gather(*waiters) == [True, True, True]


async def test_one_waiter_cancelled_leaves_the_others_waiting() -> None:
    relay = _relay()
    gone, kept = await _blocked(relay, 0, 5.0), await _blocked(relay, 0, 5.0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    relay.head = 1
    relay._wake_waiters()
    assert await kept is True


async def test_a_move_short_of_after_keeps_waiting_until_the_timeout() -> None:
    relay = _relay()
    waiter = await _blocked(relay, 5, 0.05)
    relay.head = 3
    relay._wake_waiters()
    assert await waiter is False


async def test_a_head_already_past_after_returns_at_once() -> None:
    relay = _relay()
    relay.head = 2
    assert await relay.wait(1, 0.0) is True
