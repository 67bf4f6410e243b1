"""Trade deadlines (docs/protocol.md §4.4): absence proven through any terminal of the account.

The deadlines and the longest trade call are set short (under a second), so that the tests
wait for the real thing instead of moving a clock the bridge would not see.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from mtgate.domain.enums import Platform
from mtgate.domain.orders import OrderStatus
from mtgate.sessions.session import SessionSettings
from mtsim.world import AccountSpec
from tests.integration.conftest import Harness, HarnessFactory, eventually

TRADE_TIMEOUT_S = 0.4
MAX_CALL_S = 0.5


async def _status(h: Harness, cid: str) -> OrderStatus | None:
    found = await h.bridge.get_order(h.account("primary"), client_order_id=cid)
    return None if found is None else found.status


PairFactory = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make_pair(make_harness: HarnessFactory) -> AsyncIterator[PairFactory]:
    """One MT5 account on two terminals: ``primary`` connects first and carries orders."""
    made: list[tuple[Harness, list[asyncio.Task[None]]]] = []

    async def make(*, deadlines: bool = True, max_call_s: float = MAX_CALL_S) -> Harness:
        accounts = [
            AccountSpec("primary", 4001, "Sim-MT5", Platform.MT5, deadlines=deadlines),
            AccountSpec("standby", 4001, "Sim-MT5", Platform.MT5, deadlines=deadlines),
        ]
        settings = SessionSettings(
            heartbeat_ms=200, request_timeout_s=TRADE_TIMEOUT_S, max_trade_call_s=max_call_s
        )
        h = await make_harness(accounts, start=False, settings=settings)
        host, port = await h.bridge.start()
        tasks = [asyncio.create_task(h.terminal("primary").run(host, port))]
        made.append((h, tasks))
        await h.ready("primary")
        tasks.append(asyncio.create_task(h.terminal("standby").run(host, port)))
        await h.ready("standby")
        return h

    yield make
    for h, tasks in made:
        for tid in ("primary", "standby"):
            h.terminal(tid).stop()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
async def pair(make_pair: PairFactory) -> Harness:
    return await make_pair()


async def _carrier_dies_with(h: Harness, cid: str, *, executed: bool) -> None:
    faults = h.terminal("primary").faults
    faults.stay_down = True
    if executed:
        faults.drop_after_next_trade = True
    else:
        faults.drop_before_next_trade = True
    r = await h.bridge.place_market_order(
        account=h.account("primary"),
        symbol="EURUSD",
        side="buy",
        volume=0.1,
        client_order_id=cid,
        retry={"enabled": False},  # the proof itself is watched here; retries after it:
    )  # tests/integration/test_retries.py
    # Executed, the standby's events may prove the fill before the caller hears of the loss.
    expected = (OrderStatus.UNKNOWN, OrderStatus.FILLED) if executed else (OrderStatus.UNKNOWN,)
    assert r.terminal_id == "primary" and r.status in expected


async def test_carrier_never_returning_is_resolved_by_deadline_through_the_standby(
    pair: Harness,
) -> None:
    h = pair
    await _carrier_dies_with(h, "gone-1", executed=False)
    stored = await h.bridge.journal.get("gone-1")
    assert stored is not None and stored.deadline_at_ms is not None
    settle_at_ms = stored.deadline_at_ms + MAX_CALL_S * 1000

    async def settled() -> bool:
        return await _status(h, "gone-1") == OrderStatus.NOT_FOUND

    await eventually(settled)
    assert time.time() * 1000 >= settle_at_ms  # not proven before the time allowed
    assert h.trades_seen("primary") == 0
    assert h.bridge.registry.ready_session("primary") is None  # the carrier is still away


async def test_an_order_the_dead_carrier_executed_is_found_through_the_standby(
    pair: Harness,
) -> None:
    h = pair
    await _carrier_dies_with(h, "done-1", executed=True)

    async def filled() -> bool:
        return await _status(h, "done-1") == OrderStatus.FILLED

    await eventually(filled)  # found before any deadline: finding needs no proof
    assert h.trades_seen("primary") == 1


async def test_no_proof_by_time_before_the_longest_trade_call_has_passed(
    make_pair: PairFactory,
) -> None:
    h = await make_pair(max_call_s=60.0)
    await _carrier_dies_with(h, "early-1", executed=False)
    await asyncio.sleep(1.5)  # several lookups on the standby, all before deadline + 60 s
    assert await _status(h, "early-1") == OrderStatus.UNKNOWN


async def test_without_the_feature_a_standby_never_proves_absence(
    make_pair: PairFactory,
) -> None:
    h = await make_pair(deadlines=False)
    assert "deadline" not in h.terminal("primary").bridge_features
    await _carrier_dies_with(h, "old-ea-1", executed=False)
    stored = await h.bridge.journal.get("old-ea-1")
    assert stored is not None and stored.deadline_at_ms is None  # no deadline was given
    await asyncio.sleep(1.5)  # well past what a deadline would have been, plus MAX_CALL_S
    assert await _status(h, "old-ea-1") == OrderStatus.UNKNOWN


async def test_the_deadline_is_journalled_with_the_intent(pair: Harness) -> None:
    h = pair
    before = time.time() * 1000
    r = await h.bridge.place_market_order(
        account=h.account("primary"), symbol="EURUSD", side="buy", volume=0.1
    )
    assert r.status == OrderStatus.FILLED
    stored = await h.bridge.journal.get(r.client_order_id)
    assert stored is not None and stored.deadline_at_ms is not None
    assert stored.deadline_at_ms >= before + TRADE_TIMEOUT_S * 1000
