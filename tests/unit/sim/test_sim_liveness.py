"""The simulated EA checks that its session is alive before starting each trade
(docs/protocol.md §4.3 rule 4: "no bye has arrived, the socket is open, and a frame arrived
within the last 3 heartbeat intervals"; §8: a side silent for 3 heartbeat intervals (``heartbeat_ms``) is dead,
``bye`` ``heartbeat_timeout``). A trade whose turn comes after the bridge went silent is
discarded, unexecuted and unanswered; a trade already at the trade server completes.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from mtgate.domain.enums import Platform
from mtgate.protocol import ea
from mtgate.protocol import messages as m
from tests.unit.sim.simdesk import MakeDesk
from tests.unit.sim.simwire import WireBridge, wire_session

HEARTBEAT_MS = 100
"""The smallest interval an EA must accept (§8): dead after 300 ms of silence."""
BROKER_DELAY_MS = 500.0
"""Longer than 3 heartbeat intervals: the second trade's turn comes after the deadline."""


def _order(req_id: int) -> m.MarketOrder:
    return m.MarketOrder(
        id=req_id, symbol="EURUSD", order_type=0, volume=0.1, magic=7, comment=f"mg:LIVE{req_id}"
    )


@pytest.mark.parametrize(
    ("silent_s", "expired"),
    [(0.0, False), (1.499, False), (1.5, False), (1.501, True), (60.0, True)],
)
def test_heartbeat_deadline_is_three_intervals(silent_s: float, expired: bool) -> None:
    """§8: dead after *more than* 3 intervals (here 3 of 500 ms) without a frame; a frame
    exactly 3 intervals old arrived within them. (Times chosen exact in binary.)"""
    assert ea.heartbeat_expired(8.0 + silent_s, 8.0, 500) is expired


async def test_a_queued_trade_is_discarded_when_the_bridge_went_silent(
    make_desk: MakeDesk,
) -> None:
    """Two trades arrive together; the first waits 500 ms at the broker while the bridge
    sends nothing. The first completes and is answered (it was started in time); before the
    second starts, the EA sees 500 ms of silence (more than 3 intervals of 100 ms), says ``bye``
    ``heartbeat_timeout`` and closes; the second is never executed nor answered."""
    desk = make_desk(Platform.MT5)
    async with wire_session(
        desk, heartbeat_ms=HEARTBEAT_MS, broker_delay_ms=(BROKER_DELAY_MS, BROKER_DELAY_MS)
    ) as (bridge, terminal):
        bridge.send(_order(1), _order(2))
        frames = await bridge.until_closed()
        answers = [f for f in frames if isinstance(f, m.Response)]
        byes = [f for f in frames if isinstance(f, m.Bye)]
    assert [(a.id, a.ok) for a in answers] == [(1, True)]
    assert [b.code for b in byes] == ["heartbeat_timeout"]
    assert frames[-1] is byes[0]  # bye is the last frame the EA sends (§2.3)
    assert frames.index(answers[0]) < frames.index(byes[0])
    trades = [e.request for e in desk.server.executed if isinstance(e.request, m.MarketOrder)]
    assert [t.id for t in trades] == [1]  # ground truth: the second never reached the server
    assert [p.comment for p in desk.server.positions(desk.login)] == ["mg:LIVE1"]
    assert terminal.sessions == 1


async def _ping_every(bridge: WireBridge, interval_s: float) -> None:
    t_ms = 0
    while True:
        await asyncio.sleep(interval_s)
        t_ms += 1
        bridge.send(m.Ping(t_ms=t_ms))


async def test_a_queued_trade_runs_while_the_bridge_keeps_pinging(make_desk: MakeDesk) -> None:
    """The control case: the same two slow trades, with the bridge's pings arriving every
    30 ms (any frame counts, §8): both are executed and answered, and the session lives."""
    desk = make_desk(Platform.MT5)
    async with wire_session(
        desk, heartbeat_ms=HEARTBEAT_MS, broker_delay_ms=(BROKER_DELAY_MS, BROKER_DELAY_MS)
    ) as (bridge, _terminal):
        pinger = asyncio.get_running_loop().create_task(_ping_every(bridge, 0.03))
        try:
            bridge.send(_order(1), _order(2))
            answers: list[m.Response] = []
            while len(answers) < 2:
                frame = await bridge.receive(timeout_s=3.0)
                assert not isinstance(frame, m.Bye), frame
                if isinstance(frame, m.Response):
                    answers.append(frame)
        finally:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger
    assert [(a.id, a.ok) for a in answers] == [(1, True), (2, True)]
    assert len(desk.server.positions(desk.login)) == 2


async def test_an_idle_ea_times_a_silent_bridge_out(make_desk: MakeDesk) -> None:
    """§8 binds the EA too: with no trade in flight and nothing from the bridge for 3
    intervals, the EA says ``bye heartbeat_timeout`` and closes (and dials again, with
    backoff: a session that lived under a second does not reset it)."""
    desk = make_desk(Platform.MT4)
    async with wire_session(desk, heartbeat_ms=HEARTBEAT_MS) as (bridge, _terminal):
        started = asyncio.get_running_loop().time()
        frames = await bridge.until_closed(3.0)
        waited = asyncio.get_running_loop().time() - started
    pings = [f for f in frames if isinstance(f, m.Ping)]
    [bye] = [f for f in frames if isinstance(f, m.Bye)]
    assert bye.code == "heartbeat_timeout" and frames[-1] is bye
    assert 3 * HEARTBEAT_MS / 1000 <= waited < 2.0
    assert pings  # it pinged while it waited


async def test_a_bridge_that_answers_pings_is_kept(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5)
    async with wire_session(desk, heartbeat_ms=HEARTBEAT_MS) as (bridge, _terminal):
        pinger = asyncio.get_running_loop().create_task(_ping_every(bridge, 0.05))
        try:
            with pytest.raises(TimeoutError):
                await bridge.until_closed(1.0)  # still open after 10 intervals
        finally:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger
