"""Outcome unknown is never resent: lost answers are resolved against the account."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from mtgate.bridge import Bridge
from mtgate.domain.enums import MarginMode, OrderType, Platform
from mtgate.domain.orders import OrderStatus, Trigger, comment_for
from mtgate.domain.records import OrderRecord
from mtgate.protocol import messages as m
from mtgate.sessions.session import SessionSettings, grants_for
from mtgate.store.journal import open_journal
from mtsim.world import AccountSpec
from tests.integration.conftest import MT4, MT5H, Harness, HarnessFactory, eventually


async def _status(h: Harness, tid: str, cid: str) -> OrderStatus | None:
    found = await h.bridge.get_order(h.account(tid), client_order_id=cid)
    return None if found is None else found.status


def _positions_with(h: Harness, tid: str, cid: str) -> int:
    login = h.terminal(tid).config.login
    report = h.server(tid).handle(login, m.Positions(id=0))
    assert isinstance(report, list)
    return sum(1 for p in report if p.comment.startswith(comment_for(cid)))


@pytest.mark.parametrize("tid", [MT4, MT5H])
async def test_answer_lost_after_execution_resolves_to_filled(harness: Harness, tid: str) -> None:
    """The caller waits for the resolution (``retry.absence_wait_s``) and hears FILLED: the
    order executed, so no second attempt is made."""
    harness.terminal(tid).faults.drop_after_next_trade = True
    r = await harness.bridge.place_market_order(
        account=harness.account(tid),
        symbol="EURUSD",
        side="buy",
        volume=0.1,
        client_order_id="lost-after",
    )
    assert (r.status, r.error, r.attempts) == (OrderStatus.FILLED, None, ())
    assert harness.trades_seen(tid) == 1  # never resent
    assert _positions_with(harness, tid, "lost-after") == 1
    found = await harness.bridge.get_order(harness.account(tid), client_order_id="lost-after")
    assert found is not None and found.fill_price is not None and found.ticket is not None


@pytest.mark.parametrize("tid", [MT4, MT5H])
async def test_answer_lost_without_retries_is_resolved_in_the_background(
    harness: Harness, tid: str
) -> None:
    harness.terminal(tid).faults.drop_after_next_trade = True
    r = await harness.bridge.place_market_order(
        account=harness.account(tid),
        symbol="EURUSD",
        side="buy",
        volume=0.1,
        client_order_id="lost-bg",
        retry={"enabled": False},
    )
    assert r.status == OrderStatus.UNKNOWN
    assert r.error is not None and r.error.source == "link"

    async def settled() -> bool:
        return await _status(harness, tid, "lost-bg") == OrderStatus.FILLED

    await eventually(settled)
    assert harness.trades_seen(tid) == 1


@pytest.mark.parametrize("tid", [MT4, MT5H])
async def test_answer_lost_but_trade_event_arrived_fills_at_once(
    harness: Harness, tid: str
) -> None:
    """The deal event proves the fill even though the answer never came."""
    harness.terminal(tid).faults.answer_lost_next_trade = True
    r = await harness.bridge.place_market_order(
        account=harness.account(tid),
        symbol="EURUSD",
        side="buy",
        volume=0.1,
        client_order_id="evt-proof",
    )
    assert r.status == OrderStatus.FILLED and r.error is None
    trail = await harness.bridge.journal.events("evt-proof")
    assert [e.to_status for e in trail][-2:] == [OrderStatus.UNKNOWN, OrderStatus.FILLED]
    assert trail[-1].detail.startswith("deal #")
    assert harness.trades_seen(tid) == 1
    assert _positions_with(harness, tid, "evt-proof") == 1


@pytest.mark.parametrize("tid", [MT4, MT5H])
async def test_request_lost_before_execution_is_retried_once_proven_absent(
    harness: Harness, tid: str
) -> None:
    """The first attempt never executed; once the reconnected carrier proves it absent, a
    second attempt (``mg:<id>.2``) is sent: exactly one execution."""
    harness.terminal(tid).faults.drop_before_next_trade = True
    r = await harness.bridge.place_market_order(
        account=harness.account(tid),
        symbol="EURUSD",
        side="sell",
        volume=0.1,
        client_order_id="lost-before",
    )
    assert r.status == OrderStatus.FILLED
    assert [(a.attempt, a.comment, a.outcome, a.next) for a in r.attempts] == [
        (1, "mg:lost-before", "absent", "backoff"),
        (2, "mg:lost-before.2", "filled", None),
    ]
    assert harness.trades_seen(tid) == 1
    assert _positions_with(harness, tid, "lost-before") == 1
    stored = await harness.bridge.journal.get("lost-before")
    assert stored is not None and (stored.retry_count, stored.comment) == (1, "mg:lost-before.2")
    trail = await harness.bridge.journal.events("lost-before")
    retried = [e for e in trail if e.trigger == Trigger.RETRY]
    assert [(e.from_status, e.to_status) for e in retried] == [
        (OrderStatus.UNKNOWN, OrderStatus.SUBMITTED)
    ]
    assert '"attempt": 2' in retried[0].detail


@pytest.mark.parametrize("tid", [MT4, MT5H])
async def test_request_lost_before_execution_without_retries_resolves_to_not_found(
    harness: Harness, tid: str
) -> None:
    harness.terminal(tid).faults.drop_before_next_trade = True
    r = await harness.bridge.place_market_order(
        account=harness.account(tid),
        symbol="EURUSD",
        side="sell",
        volume=0.1,
        client_order_id="lost-nf",
        retry={"enabled": False},
    )
    assert r.status == OrderStatus.UNKNOWN

    async def settled() -> bool:
        return await _status(harness, tid, "lost-nf") == OrderStatus.NOT_FOUND

    await eventually(settled)
    assert harness.trades_seen(tid) == 0
    assert _positions_with(harness, tid, "lost-nf") == 0


async def test_trade_timeout_that_executed_ends_filled_with_no_second_order(
    make_harness: HarnessFactory,
) -> None:
    """The broker takes longer than the bridge waits: the order is UNKNOWN, the session is
    closed, and the reconnected terminal shows the fill: FILLED, one execution."""
    h = await make_harness(
        broker_delay_ms=(600.0, 600.0),
        settings=SessionSettings(heartbeat_ms=200, request_timeout_s=0.2),
    )
    r = await h.bridge.place_market_order(
        account=h.account(MT5H), symbol="EURUSD", side="buy", volume=0.1, client_order_id="slow-1"
    )
    assert (r.status, r.attempts) == (OrderStatus.FILLED, ())
    assert h.trades_seen(MT5H) == 1
    assert _positions_with(h, MT5H, "slow-1") == 1


def _record(h: Harness, tid: str, cid: str, status: OrderStatus) -> OrderRecord:
    login = h.terminal(tid).config.login
    return OrderRecord(
        order_id=str(uuid.uuid4()),
        client_order_id=cid,
        account_login=login,
        account_server=h.server(tid).name,
        terminal_id=tid,
        platform=Platform.MT5,
        symbol="EURUSD",
        order_type=OrderType.BUY,
        volume=0.1,
        magic=0,
        comment=comment_for(cid),
        placed_at_ms=h.clock.now_ms(),
        status=status,
    )


async def test_restart_reconciles_orders_journalled_by_the_previous_run(
    make_harness: HarnessFactory,
) -> None:
    """Crash between "journalled" and "answered": the next run settles both cases on connect."""
    h = await make_harness(start=False)
    journal = open_journal(f"sqlite:///{h.db}")
    await journal.open()
    await journal.record_submitted(_record(h, MT5H, "crash-sent", OrderStatus.SUBMITTED))
    await journal.record_submitted(_record(h, MT5H, "crash-unsent", OrderStatus.SUBMITTED))
    await journal.close()
    # The first one reached the trade server before the crash.
    login = h.terminal(MT5H).config.login
    h.server(MT5H).handle(
        login,
        m.MarketOrder(
            id=0,
            symbol="EURUSD",
            order_type=0,
            volume=0.1,
            magic=0,
            comment=comment_for("crash-sent"),
        ),
    )

    bridge = Bridge(
        terminals=grants_for(h.world.bindings()),
        journal=open_journal(f"sqlite:///{h.db}"),
        settings=SessionSettings(heartbeat_ms=200),
    )
    h.bridge = bridge
    host, port = await bridge.start()
    h.world.start(host, port)
    await h.ready()
    assert await _status(h, MT5H, "crash-sent") == OrderStatus.FILLED
    assert await _status(h, MT5H, "crash-unsent") == OrderStatus.NOT_FOUND
    assert h.trades_seen(MT5H) == 1


async def test_a_standby_cannot_prove_absence_while_the_carrier_is_away(
    make_harness: HarnessFactory,
) -> None:
    """Two terminals on one account: the one that carried the order is the only witness."""
    accounts = [
        AccountSpec("primary", 4001, "Sim-MT5", Platform.MT5, MarginMode.HEDGING),
        AccountSpec("standby", 4001, "Sim-MT5", Platform.MT5, MarginMode.HEDGING),
    ]
    h = await make_harness(accounts, start=False)
    host, port = await h.bridge.start()
    primary = asyncio.create_task(h.terminal("primary").run(host, port))
    await h.ready("primary")
    standby = asyncio.create_task(h.terminal("standby").run(host, port))
    await h.ready("standby")
    try:
        faults = h.terminal("primary").faults
        faults.drop_before_next_trade = True
        faults.stay_down = True
        r = await h.bridge.place_market_order(
            account=h.account("primary"),
            symbol="EURUSD",
            side="buy",
            volume=0.1,
            client_order_id="witness",
            retry={"enabled": False},  # the caller does not wait for the proof
        )
        assert (r.terminal_id, r.status) == ("primary", OrderStatus.UNKNOWN)
        await asyncio.sleep(0.5)  # lookups run on the standby meanwhile, and find nothing
        assert await _status(h, "primary", "witness") == OrderStatus.UNKNOWN

        faults.stay_down = False  # the carrier comes back: now its absence is proven

        async def settled() -> bool:
            return await _status(h, "primary", "witness") == OrderStatus.NOT_FOUND

        await eventually(settled)
        assert h.trades_seen("primary") == 0
    finally:
        h.terminal("primary").stop()
        h.terminal("standby").stop()
        await asyncio.gather(primary, standby, return_exceptions=True)
