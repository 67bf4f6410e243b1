"""Admission control: a terminal runs one trade at a time, so the bridge holds the rest and
knows what each will wait (docs/protocol.md §4.3; docs/operations.md, "Overload").

A trade that cannot finish before its deadline behind those queued is refused at once
(``terminal_busy``, nothing journalled as sent); a queued trade is never written late, and
a session that ends with trades still queued proves them absent. None of these is UNKNOWN,
and the ids on the wire still only increase (the simulated EA closes the session otherwise).
These run on the real clock: the service time the bridge measures is the thing tested."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mtgate.bridge import Bridge
from mtgate.domain.enums import Platform
from mtgate.domain.orders import OrderStatus
from mtgate.execution.requests import OrderResult
from mtgate.protocol import messages as m
from mtgate.sessions.session import SessionSettings, grants_for
from mtgate.store.journal import open_journal
from mtsim.clock import ServerClock
from mtsim.faults import Fault, FaultKind
from mtsim.world import AccountSpec, SimWorld

TID = "queue-1"
ACCOUNT = "4101@Sim-MT5"
TIMEOUT_S = 1.0
BROKER_MS = 100.0


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Bridge, SimWorld]]:
    world = SimWorld(
        [AccountSpec(TID, 4101, "Sim-MT5", Platform.MT5, balance=10_000_000.0)],
        clock=ServerClock(1_767_780_000_000),
        broker_delay_ms=(BROKER_MS, BROKER_MS),
    )
    bridge = Bridge(
        terminals=grants_for(world.bindings()),
        journal=open_journal(f"sqlite:///{tmp_path / 'q.db'}"),
        settings=SessionSettings(heartbeat_ms=5000, request_timeout_s=TIMEOUT_S),
    )
    host, port = await bridge.start()
    world.start(host, port)
    await bridge.wait_ready({TID}, timeout_s=10)
    yield bridge, world
    await world.stop()
    await bridge.stop()


def _executed(world: SimWorld) -> int:
    return sum(
        1
        for e in world.servers["Sim-MT5"].executed
        if isinstance(e.request, m.MarketOrder) and isinstance(e.outcome, m.TradeResult)
    )


async def _timed(bridge: Bridge, cid: str) -> tuple[OrderResult, float]:
    """One market order, without retries: each result is the queue's own doing."""
    t0 = time.perf_counter()
    result = await bridge.place_market_order(
        account=ACCOUNT,
        symbol="EURUSD",
        side="buy",
        volume=0.01,
        client_order_id=cid,
        retry={"enabled": False},
    )
    return result, time.perf_counter() - t0


async def test_a_burst_beyond_the_deadline_is_refused_at_once_and_nothing_is_unknown(
    pair: tuple[Bridge, SimWorld],
) -> None:
    bridge, world = pair
    first, _ = await _timed(bridge, "warm")  # the bridge learns the service time (~100 ms)
    assert first.status == OrderStatus.FILLED
    session = bridge.registry.session(TID)
    assert session is not None and session.trade_service_ns > 50e6
    runs = await asyncio.gather(*(_timed(bridge, f"b-{i}") for i in range(30)))
    by_status: dict[OrderStatus, int] = {}
    for result, _ in runs:
        by_status[result.status] = by_status.get(result.status, 0) + 1
    assert OrderStatus.UNKNOWN not in by_status
    filled = [r for r, _ in runs if r.status == OrderStatus.FILLED]
    # Refused by admission: before the journal (REJECTED) or, for trades admitted in the same
    # instant, when handed to the queue (NOT_FOUND: journalled, proven never written).
    refused = [(r, t) for r, t in runs if r.status in (OrderStatus.REJECTED, OrderStatus.NOT_FOUND)]
    assert 4 <= len(filled) <= 11  # what fits in 1 s at ~100 ms each
    assert len(filled) + len(refused) == 30
    assert len(refused) >= 15
    for r, took in refused:
        assert r.error is not None and r.error.rule == "terminal_busy", r.error
        assert r.error.source == "bridge" and r.error.classification == "retryable"
        assert took < 0.05  # at once, not at the deadline
    assert bridge.registry.session(TID) is session  # overload closed nothing
    assert _executed(world) == 1 + len(filled)
    stored = await bridge.journal.get("b-29")
    assert stored is not None and stored.status in (OrderStatus.REJECTED, OrderStatus.NOT_FOUND)


async def test_trades_queued_behind_a_hung_one_are_proven_absent_not_unknown(
    pair: tuple[Bridge, SimWorld],
) -> None:
    bridge, world = pair
    # The first trade hangs at the trade server (nothing executed, no answer: mtsim.faults).
    world.terminals[TID].plan.script(Fault(FaultKind.HANG))
    runs = await asyncio.gather(*(_timed(bridge, f"h-{i}") for i in range(5)))
    first, *rest = [r for r, _ in runs]
    # It was written and never answered: the one honest unknown (proven absent later).
    assert first.status == OrderStatus.UNKNOWN
    for r in rest:
        assert r.status == OrderStatus.NOT_FOUND, r
        assert r.error is not None and r.error.source == "bridge", r.error
    journalled = [await bridge.journal.get(f"h-{i}") for i in range(1, 5)]
    assert all(j is not None and j.status == OrderStatus.NOT_FOUND for j in journalled)
    assert _executed(world) == 0  # the hung one did nothing; none queued behind it ran
    executed = [getattr(e.request, "comment", "") for e in world.servers["Sim-MT5"].executed]
    assert not any(f"h-{i}" in c for c in executed for i in range(1, 5))


async def _burst(tmp_path: Path, platform: Platform, pipeline: bool) -> float:
    """Four market orders at once to one terminal 200 ms from its trade server: how long
    the last took."""
    server = "Sim-MT5" if platform == Platform.MT5 else "Sim-MT4"
    world = SimWorld(
        [AccountSpec("p-1", 4201, server, platform, balance=10_000_000.0, pipeline=pipeline)],
        clock=ServerClock(1_767_780_000_000),
        broker_delay_ms=(200.0, 200.0),
    )
    bridge = Bridge(
        terminals=grants_for(world.bindings()),
        journal=open_journal(f"sqlite:///{tmp_path / f'{platform}-{pipeline}.db'}"),
        settings=SessionSettings(heartbeat_ms=5000, request_timeout_s=5.0),
    )
    host, port = await bridge.start()
    world.start(host, port)
    try:
        await bridge.wait_ready({"p-1"}, timeout_s=10)
        session = bridge.registry.session("p-1")
        assert session is not None and session.identity is not None
        features = session.identity.features
        t0 = time.perf_counter()
        results = await asyncio.gather(
            *(
                bridge.place_market_order(
                    account=f"4201@{server}", symbol="EURUSD", side="buy", volume=0.01
                )
                for _ in range(4)
            )
        )
        took = time.perf_counter() - t0
        assert all(r.status == OrderStatus.FILLED for r in results), results
        executed = sum(
            1 for e in world.servers[server].executed if isinstance(e.request, m.MarketOrder)
        )
        assert executed == 4
    finally:
        await world.stop()
        await bridge.stop()
    assert (m.PIPELINE_FEATURE in features) == (pipeline and platform == Platform.MT5)
    return took


async def test_mt5_pipelining_runs_trades_at_once_and_mt4_never_does(tmp_path: Path) -> None:
    together = await _burst(tmp_path, Platform.MT5, pipeline=True)
    in_turn = await _burst(tmp_path, Platform.MT5, pipeline=False)
    mt4 = await _burst(tmp_path, Platform.MT4, pipeline=True)  # MT4: one trade context
    assert together < 0.6  # four at once: ~200 ms
    assert in_turn >= 0.8 and mt4 >= 0.8  # one after another: ~800 ms
