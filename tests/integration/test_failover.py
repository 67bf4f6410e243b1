"""Terminals of one account: priorities, failover with an order in doubt, failback, drain."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from mtgate.domain.enums import Platform
from mtgate.domain.orders import OrderStatus
from mtgate.execution.requests import InvalidRequest, OrderResult
from mtgate.sessions.routing import RoutingPolicy
from mtgate.sessions.session import AccountKey, SessionSettings
from mtsim.world import AccountSpec
from tests.integration.conftest import Harness, HarnessFactory, eventually

FAILBACK_S = 0.6
PairFactory = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make_pool(make_harness: HarnessFactory) -> AsyncIterator[PairFactory]:
    """One MT5 account on ``primary`` (priority 1) and ``standby`` (2); the standby connects
    first, so the primary taking over shows that priority, not arrival, decides."""
    made: list[tuple[Harness, list[asyncio.Task[None]]]] = []

    async def make(**options: object) -> Harness:
        accounts = [
            AccountSpec("primary", 4001, "Sim-MT5", Platform.MT5),
            AccountSpec("standby", 4001, "Sim-MT5", Platform.MT5),
        ]
        h = await make_harness(
            accounts,
            start=False,
            priorities={"primary": 1, "standby": 2},
            routing=RoutingPolicy(failback_after_s=FAILBACK_S),
            **options,
        )
        host, port = await h.bridge.start()
        tasks = [asyncio.create_task(h.terminal("standby").run(host, port))]
        made.append((h, tasks))
        await h.ready("standby")
        tasks.append(asyncio.create_task(h.terminal("primary").run(host, port)))
        await h.ready("primary")
        return h

    yield make
    for h, tasks in made:
        for tid in ("primary", "standby"):
            h.terminal(tid).stop()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _buy(h: Harness, cid: str | None = None, **fields: object) -> OrderResult:
    return await h.bridge.place_market_order(
        account=h.account("primary"),
        symbol="EURUSD",
        side="buy",
        volume=0.1,
        client_order_id=cid,
        **fields,
    )


async def test_orders_go_to_the_best_priority_and_fail_over_and_back(
    make_pool: PairFactory,
) -> None:
    h = await make_pool()
    assert (await _buy(h)).terminal_id == "primary"
    faults = h.terminal("primary").faults
    faults.stay_down = True
    h.terminal("primary").drop()
    await eventually(lambda: h.bridge.registry.ready_session("primary") is None)
    moved = await _buy(h)
    assert (moved.terminal_id, moved.status) == ("standby", OrderStatus.FILLED)

    faults.stay_down = False
    await h.ready("primary")
    # Back and reconciled, but not yet ready for FAILBACK_S: the standby keeps the orders.
    assert (await _buy(h)).terminal_id == "standby"
    await asyncio.sleep(FAILBACK_S + 0.1)
    assert (await _buy(h)).terminal_id == "primary"
    assert h.bridge.registry.router.switches == 2  # one failover, one failback
    assert h.trades_seen("primary") == 4  # one account: every order executed once


async def test_a_new_order_waits_until_the_dead_carriers_order_is_resolved_by_deadline(
    make_pool: PairFactory,
) -> None:
    """The primary dies with an order unanswered and never returns. The next order of the
    account waits (failover gate) until the standby has proven the first absent by its
    deadline (docs/protocol.md §4.4); only then is it sent, to the standby. Exactly one
    execution in all."""
    h = await make_pool(
        settings=SessionSettings(heartbeat_ms=200, request_timeout_s=0.4, max_trade_call_s=0.5),
        failover_wait_s=5.0,
    )
    faults = h.terminal("primary").faults
    faults.stay_down = True
    faults.drop_before_next_trade = True
    first = await _buy(h, "in-flight", retry={"enabled": False})  # its caller gives up on it
    assert (first.terminal_id, first.status) == ("primary", OrderStatus.UNKNOWN)
    second = await _buy(h, "after")
    assert (second.terminal_id, second.status) == ("standby", OrderStatus.FILLED)
    settled = await h.bridge.journal.get("in-flight")
    assert settled is not None and settled.status == OrderStatus.NOT_FOUND
    first_events = await h.bridge.journal.events("in-flight")
    second_events = await h.bridge.journal.events("after")
    proven_at = next(e.at_ms for e in first_events if e.to_status == OrderStatus.NOT_FOUND)
    sent_at = next(e.at_ms for e in second_events if e.to_status == OrderStatus.SUBMITTED)
    assert proven_at <= sent_at
    assert settled.deadline_at_ms is not None
    assert proven_at >= settled.deadline_at_ms + 500  # by time: the carrier never came back
    assert h.trades_seen("primary") == 1  # both terminals' login: the one execution in all
    assert h.bridge.registry.ready_session("primary") is None


async def test_a_drained_terminal_finishes_its_trade_and_gets_no_new_ones(
    make_pool: PairFactory,
) -> None:
    h = await make_pool(broker_delay_ms=(200.0, 200.0))
    in_flight = asyncio.create_task(_buy(h, "started"))
    await eventually(lambda: h.bridge.service.book.get("started") is not None)
    h.bridge.drain_terminal("primary")
    after = await _buy(h, "after-drain")
    finished = await in_flight
    assert (finished.terminal_id, finished.status) == ("primary", OrderStatus.FILLED)
    assert (after.terminal_id, after.status) == ("standby", OrderStatus.FILLED)
    status = {t.terminal_id: t for t in h.bridge.terminals()}
    assert status["primary"].drained and status["primary"].state == "ready"
    assert status["standby"].active_for == [h.account("primary")]

    h.bridge.enable_terminal("primary")
    assert (await _buy(h)).terminal_id == "primary"
    with pytest.raises(InvalidRequest) as raised:
        h.bridge.drain_terminal("no-such-terminal")
    assert raised.value.field == "terminal_id"


async def test_with_every_terminal_drained_an_order_is_refused_naming_them(
    make_pool: PairFactory,
) -> None:
    h = await make_pool()
    h.bridge.drain_terminal("primary")
    h.bridge.drain_terminal("standby")
    refused = await _buy(h, "nowhere")
    assert refused.status == OrderStatus.REJECTED
    assert refused.error is not None and "primary: drained" in refused.error.message
    assert h.trades_seen("primary") == 0  # the account's trade server saw nothing


async def test_a_terminal_refusing_by_itself_is_replaced_by_the_standby_for_the_retry(
    make_pool: PairFactory,
) -> None:
    """10027: the primary's Algo Trading button is off (a setting of that terminal only).
    The retry goes through the standby, which trades the same account: one execution."""
    h = await make_pool()
    h.terminal("primary").faults.algo_trading_off = True
    r = await _buy(h, "alt-1")
    assert (r.status, r.terminal_id) == (OrderStatus.FILLED, "standby")
    assert [(a.terminal_id, a.code, a.next) for a in r.attempts] == [
        ("primary", 10027, "alternative"),
        ("standby", None, None),
    ]
    assert h.trades_seen("primary") == 1  # one account: the standby's execution
    stored = await h.bridge.journal.get("alt-1")
    assert stored is not None and (stored.terminal_id, stored.comment) == ("standby", "mg:alt-1.2")
    # The route itself stays: the primary keeps the account's orders.
    assert h.bridge.registry.router.active(AccountKey.parse(h.account("primary"))) == "primary"
