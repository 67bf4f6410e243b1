"""Concurrency on the order path: cancelled callers, same-id races, partial closes against a
stale view, SL/TP changes in flight together, failover while orders are in doubt."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mtgate.domain.enums import MarginMode, Platform
from mtgate.domain.orders import OrderStatus
from mtgate.execution.requests import InvalidRequest, OrderResult
from mtgate.protocol import messages as m
from mtgate.sessions.session import AccountKey
from mtsim.world import AccountSpec
from tests.integration.conftest import MT4, MT5H, MT5N, Harness, HarnessFactory, eventually

ALL = [MT4, MT5H, MT5N]


async def _status(h: Harness, tid: str, cid: str) -> OrderStatus | None:
    found = await h.bridge.get_order(h.account(tid), client_order_id=cid)
    return None if found is None else found.status


async def _settles(h: Harness, tid: str, cid: str, status: OrderStatus) -> None:
    async def check() -> bool:
        return await _status(h, tid, cid) == status

    await eventually(check, timeout_s=10)


def _positions(h: Harness, tid: str) -> list[m.PositionReport]:
    return h.server(tid).positions(h.terminal(tid).config.login)


async def _market(h: Harness, tid: str, cid: str, **over: object) -> OrderResult:
    fields: dict[str, object] = {
        "account": h.account(tid),
        "symbol": "EURUSD",
        "side": "buy",
        "volume": 0.1,
        "client_order_id": cid,
    }
    fields.update(over)
    return await h.bridge.place_market_order(**fields)


# --- F6: a partial close sends the volume asked for ------------------------------------------


async def test_f6_partial_close_of_a_grown_netting_position_closes_only_what_was_asked(
    harness: Harness,
) -> None:
    """Long 1.0 synced, then 0.5 more (the view still says 1.0): closing 1.0 must close 1.0
    and leave 0.5, not send "all" because 1.0 >= the view's volume."""
    account = harness.account(MT5N)
    assert (await _market(harness, MT5N, "grow-1", volume=1.0)).status == OrderStatus.FILLED
    await eventually(lambda: [p.volume for p in harness.bridge.synced_positions(account)] == [1.0])
    session = harness.bridge.registry.ready_session(MT5N)
    assert session is not None
    await session.request(m.Sync(id=0, interval_ms=0))  # no more snapshots: the view stays old
    assert (await _market(harness, MT5N, "grow-2", volume=0.5)).status == OrderStatus.FILLED
    ticket = harness.bridge.synced_positions(account)[0].ticket
    assert harness.bridge.synced_positions(account)[0].volume == 1.0
    closed = await harness.bridge.close_position(account=account, ticket=ticket, volume=1.0)
    assert closed.status == OrderStatus.FILLED
    assert closed.fill_volume == pytest.approx(1.0)
    assert [p.volume for p in _positions(harness, MT5N)] == [pytest.approx(0.5)]


# --- F8: cancelled callers -------------------------------------------------------------------


@pytest.mark.parametrize("tid", ALL)
async def test_f8_caller_cancelled_while_awaiting_the_answer_leaves_no_submitted_order(
    make_harness: HarnessFactory, tid: str
) -> None:
    """``asyncio.wait_for`` around an order whose broker takes 300 ms: the caller gives up,
    the order does not. Its answer is applied (FILLED), never dropped, never SUBMITTED."""
    h = await make_harness(broker_delay_ms=(300.0, 300.0))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(_market(h, tid, "impatient"), 0.05)
    await _settles(h, tid, "impatient", OrderStatus.FILLED)
    assert h.trades_seen(tid) == 1
    assert len(_positions(h, tid)) == 1


async def test_f8_caller_cancelled_while_awaiting_a_rejection_ends_rejected(
    make_harness: HarnessFactory,
) -> None:
    """A rejection leaves no event behind: a dropped answer would have left it SUBMITTED.
    (US30 is outside its trade session: the server answers 10018 after the broker delay.)"""
    h = await make_harness(broker_delay_ms=(300.0, 300.0))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(_market(h, MT5H, "impatient-r", symbol="US30"), 0.05)
    await _settles(h, MT5H, "impatient-r", OrderStatus.REJECTED)
    stored = await h.bridge.journal.get("impatient-r")
    assert stored is not None and stored.rejection_code == 10018


async def test_f8_one_cancelled_caller_does_not_cancel_the_others_group_commit(
    harness: Harness,
) -> None:
    """Two orders journalled in one group commit; one caller is cancelled during it. The
    other fills; the cancelled one is not sent and ends NOT_FOUND (its intent was durable)."""
    first = asyncio.create_task(_market(harness, MT5H, "batch-a"))
    second = asyncio.create_task(_market(harness, MT5H, "batch-b"))
    await asyncio.sleep(0)  # both are now awaiting the same intent commit
    first.cancel()
    result = await second
    assert result.status == OrderStatus.FILLED
    with pytest.raises(asyncio.CancelledError):
        await first
    await _settles(harness, MT5H, "batch-a", OrderStatus.NOT_FOUND)
    assert harness.trades_seen(MT5H) == 1


# --- F9: same client id twice in one turn ----------------------------------------------------


async def test_f9_refusal_with_the_id_of_an_order_being_journalled_is_a_duplicate(
    harness: Harness,
) -> None:
    """A is valid and goes out; B (same id, refused by pre-validation) arrives in the same
    loop turn: B is refused as a reused id, and A's journal row is A's, FILLED."""
    bid, _, _ = harness.server(MT5H).feed.quote("EURUSD")
    good = asyncio.create_task(_market(harness, MT5H, "twice"))
    bad = asyncio.create_task(_market(harness, MT5H, "twice", sl=round(bid + 0.01, 5)))
    result = await good
    assert result.status == OrderStatus.FILLED
    with pytest.raises(InvalidRequest) as raised:
        await bad
    assert raised.value.field == "client_order_id"
    stored = await harness.bridge.journal.get("twice")
    assert stored is not None and stored.status == OrderStatus.FILLED
    assert harness.trades_seen(MT5H) == 1


# --- F16: SL/TP changes of one position are serialised ---------------------------------------


@pytest.mark.parametrize("tid", ALL)
async def test_f16_sl_and_tp_changes_in_flight_together_both_stick(
    make_harness: HarnessFactory, tid: str
) -> None:
    """A move of the SL (as a trailing stop makes) and a change of the TP, sent together:
    each modify carries the position's full state; built from the same old view, the second
    put the SL back."""
    h = await make_harness(broker_delay_ms=(40.0, 40.0))
    account = h.account(tid)
    assert (await _market(h, tid, "both", volume=0.2)).status == OrderStatus.FILLED
    await eventually(lambda: h.bridge.synced_positions(account) != [])
    ticket = h.bridge.synced_positions(account)[0].ticket
    bid, ask, _ = h.server(tid).feed.quote("EURUSD")
    sl, tp = round(bid - 0.0040, 5), round(ask + 0.0040, 5)
    moved, target = await asyncio.gather(
        h.bridge.modify_position(account=account, ticket=ticket, sl=sl),
        h.bridge.modify_position(account=account, ticket=ticket, tp=tp),
    )
    assert (moved.status, target.status) == ("done", "done")
    position = next(p for p in _positions(h, tid) if p.ticket == ticket)
    assert (position.sl, position.tp) == (sl, tp)


async def test_f16_a_cancelled_modify_still_updates_what_the_next_one_builds_on(
    make_harness: HarnessFactory,
) -> None:
    h = await make_harness(broker_delay_ms=(100.0, 100.0))
    account = h.account(MT5H)
    assert (await _market(h, MT5H, "cancel-mod", volume=0.2)).status == OrderStatus.FILLED
    await eventually(lambda: h.bridge.synced_positions(account) != [])
    ticket = h.bridge.synced_positions(account)[0].ticket
    bid, ask, _ = h.server(MT5H).feed.quote("EURUSD")
    sl, tp = round(bid - 0.0040, 5), round(ask + 0.0040, 5)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(
            h.bridge.modify_position(account=account, ticket=ticket, sl=sl), 0.02
        )
    done = await h.bridge.modify_position(account=account, ticket=ticket, tp=tp)
    assert done.status == "done"
    position = next(p for p in _positions(h, MT5H) if p.ticket == ticket)
    assert (position.sl, position.tp) == (sl, tp)


@contextlib.asynccontextmanager
async def _primary_and_standby(
    make_harness: HarnessFactory, *, standby_positions: bool = True, **options: Any
) -> AsyncIterator[Harness]:
    """Two terminals on account 4001: the primary ready first (so routed to), then a standby."""
    accounts = [
        AccountSpec("primary", 4001, "Sim-MT5", Platform.MT5, MarginMode.HEDGING),
        AccountSpec(
            "standby",
            4001,
            "Sim-MT5",
            Platform.MT5,
            MarginMode.HEDGING,
            positions=standby_positions,
        ),
    ]
    h = await make_harness(accounts, start=False, **options)
    host, port = await h.bridge.start()
    tasks = [asyncio.create_task(h.terminal("primary").run(host, port))]
    await h.ready("primary")
    tasks.append(asyncio.create_task(h.terminal("standby").run(host, port)))
    await h.ready("standby")
    try:
        yield h
    finally:
        for t in ("primary", "standby"):
            h.terminal(t).stop()
        await asyncio.gather(*tasks, return_exceptions=True)


# --- F14: failover waits for the carrier's unknown orders ------------------------------------


async def test_f14_new_orders_wait_while_the_dead_carriers_orders_are_unknown(
    make_harness: HarnessFactory,
) -> None:
    """The primary died with an order unanswered: a new order of the account does not go to
    the standby (where the first might be doubled) until the first is resolved; it waits
    ``failover_wait_s``, then is refused with rule ``failover_pending``."""
    async with _primary_and_standby(make_harness, failover_wait_s=0.3) as h:
        faults = h.terminal("primary").faults
        faults.drop_before_next_trade = True
        faults.stay_down = True
        lost = await _market(h, "primary", "on-primary")
        assert (lost.terminal_id, lost.status) == ("primary", OrderStatus.UNKNOWN)
        t0 = asyncio.get_running_loop().time()
        refused = await _market(h, "primary", "meanwhile")
        waited = asyncio.get_running_loop().time() - t0
        assert refused.status == OrderStatus.REJECTED
        assert refused.error is not None and refused.error.rule == "failover_pending"
        assert waited >= 0.3
        assert h.trades_seen("standby") == 0 and h.trades_seen("primary") == 0
        faults.stay_down = False  # the carrier returns and proves the first order absent
        await _settles(h, "primary", "on-primary", OrderStatus.NOT_FOUND)
        after = await _market(h, "primary", "after")
        assert after.status == OrderStatus.FILLED


async def test_f14_an_order_proven_through_the_standby_does_not_hold_the_next(
    make_harness: HarnessFactory,
) -> None:
    """The dead carrier's order had executed, and the standby (logged into the same account)
    reported its deal: it is FILLED, so the next order goes out on the standby at once."""
    async with _primary_and_standby(make_harness, failover_wait_s=5.0) as h:
        faults = h.terminal("primary").faults
        faults.drop_after_next_trade = True
        faults.stay_down = True
        lost = await _market(h, "primary", "executed")
        assert lost.status in (OrderStatus.UNKNOWN, OrderStatus.FILLED)
        await _settles(h, "primary", "executed", OrderStatus.FILLED)
        waiting = await _market(h, "primary", "next")
        assert (waiting.status, waiting.terminal_id) == (OrderStatus.FILLED, "standby")
        assert await _status(h, "primary", "executed") == OrderStatus.FILLED


# --- F13: a failing tick listener is contained -----------------------------------------------


async def test_f13_a_tick_listener_that_raises_does_not_end_the_session(harness: Harness) -> None:
    seen: list[str] = []

    def broken(session: object, tick: m.Tick) -> None:
        raise ZeroDivisionError("a spec with tick size 0")

    def counting(session: object, tick: m.Tick) -> None:
        seen.append(tick.symbol)

    listeners = harness.bridge.service.tracker.tick_listeners
    listeners[:0] = [broken]
    listeners.append(counting)
    server = harness.server(MT5H)
    for step in range(3):
        bid, ask, _ = server.feed.quote("EURUSD")
        server.set_quote("EURUSD", round(bid + 0.0001, 5), round(ask + 0.0001, 5))
        await eventually(lambda n=step: len(seen) > n)
    session = harness.bridge.registry.ready_session(MT5H)
    assert session is not None and harness.terminal(MT5H).sessions == 1
    assert (await _market(harness, MT5H, "after-ticks")).status == OrderStatus.FILLED
    key = AccountKey.parse(harness.account(MT5H))
    assert harness.bridge.registry.route(key) is session


# --- F22: the feature check holds for the session the close goes to --------------------------


async def test_f22_a_close_never_goes_to_a_terminal_without_the_positions_feature(
    make_harness: HarnessFactory,
) -> None:
    """The primary (with "positions") answers the close's live lookup and stops at once; the
    close must not then be sent to the standby, whose EA has no position operations."""
    async with _primary_and_standby(make_harness, standby_positions=False) as h:
        session = h.bridge.registry.ready_session("primary")
        assert session is not None
        await session.request(m.Sync(id=0, interval_ms=0))  # the view will not learn of it
        (ticket,) = h.server("primary").open_positions(4001, "EURUSD", 1, 0.1)
        faults = h.terminal("primary").faults
        faults.bye_after_next_read = True
        faults.stay_down = True
        closed = await h.bridge.close_position(account=h.account("primary"), ticket=ticket)
        assert closed.status == OrderStatus.REJECTED
        assert closed.error is not None and closed.error.source == "bridge", closed.error
        assert [p.ticket for p in _positions(h, "primary")] == [ticket]
