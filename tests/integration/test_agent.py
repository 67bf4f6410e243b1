"""The MetaTrader5 agent against the bridge, over the strict fake package: the terminal
conditions only the agent meets (IPC failures, Algo Trading, a history that lags, the
package's single channel). The shared suites (order path, positions, sync, trailing) run
against the agent too, through ``any_harness``."""

from __future__ import annotations

import asyncio

import pytest

from mtgate.domain.orders import OrderStatus
from mtgate.protocol import messages as m
from mtgate.sessions.errors import TerminalRejected
from mtgate.sessions.session import AccountKey
from mtsim import mt5fake
from tests.integration.conftest import MT5H, MT5N, Harness, HarnessFactory, eventually


@pytest.fixture
async def agents(make_harness: HarnessFactory) -> Harness:
    return await make_harness(mt5_terminals="agent-fake")


def _fake(h: Harness, tid: str) -> mt5fake.FakeMetaTrader5:
    return h.world.fakes[tid]


async def test_an_ipc_timeout_after_execution_is_resolved_filled_once(agents: Harness) -> None:
    """``order_send`` returned None (-10005) though the order executed: the agent answers an
    outcome-unknown code, the bridge looks the order up and finds the fill; nothing is sent
    twice (reference terminal-side.md §5.4)."""
    _fake(agents, MT5H).ipc_timeout_after_next_send = True
    seen = agents.trades_seen(MT5H)
    result = await agents.bridge.place_market_order(
        account=agents.account(MT5H), symbol="EURUSD", side="buy", volume=0.1,
        client_order_id="ipc-1",
    )  # fmt: skip
    assert result.status in (OrderStatus.UNKNOWN, OrderStatus.FILLED)

    async def filled() -> bool:
        found = await agents.bridge.get_order(agents.account(MT5H), client_order_id="ipc-1")
        return found is not None and found.status == OrderStatus.FILLED

    await eventually(filled, timeout_s=10)
    assert agents.trades_seen(MT5H) == seen + 1
    assert len(agents.server(MT5H).positions(agents.login(MT5H))) == 1


async def test_algo_trading_off_is_refused_with_10027_and_nothing_runs(agents: Harness) -> None:
    _fake(agents, MT5N).algo_trading = False
    result = await agents.bridge.place_market_order(
        account=agents.account(MT5N), symbol="EURUSD", side="buy", volume=0.1
    )
    assert result.status == OrderStatus.REJECTED
    assert result.error is not None and result.error.code == 10027
    assert agents.server(MT5N).positions(agents.login(MT5N)) == []


async def test_a_fill_whose_deal_is_booked_late_still_names_its_position(
    agents: Harness,
) -> None:
    """``OrderSendResult`` carries no position id; the agent reads the deal again until the
    terminal has booked it."""
    _fake(agents, MT5H).deal_delay_calls = 3
    result = await agents.bridge.place_market_order(
        account=agents.account(MT5H), symbol="EURUSD", side="buy", volume=0.1
    )
    assert result.status == OrderStatus.FILLED
    (pos,) = agents.server(MT5H).positions(agents.login(MT5H))
    assert result.position_id == pos.identifier


async def test_a_deal_booked_a_quarter_second_late_still_names_its_position(
    agents: Harness,
) -> None:
    """Review M5: the terminal's history lags in time, not in calls; the agent waits for the
    deal (about 1.3 s at most) instead of answering position 0."""
    _fake(agents, MT5H).deal_delay_s = 0.25
    result = await agents.bridge.place_market_order(
        account=agents.account(MT5H), symbol="EURUSD", side="buy", volume=0.1
    )
    assert result.status == OrderStatus.FILLED
    (pos,) = agents.server(MT5H).positions(agents.login(MT5H))
    assert result.position_id == pos.identifier


async def test_reads_and_trades_at_once_reach_the_package_one_at_a_time(
    agents: Harness,
) -> None:
    """The fake raises if two calls overlap; a busy terminal (1 ms a call) and eight orders
    with reads between them all succeed, so every call went through the one worker."""
    fake = _fake(agents, MT5H)
    fake.call_delay_s = 0.001
    acct = agents.account(MT5H)
    orders = [
        agents.bridge.place_market_order(account=acct, symbol="EURUSD", side="buy", volume=0.1)
        for _ in range(8)
    ]
    reads = [agents.bridge.list_positions(acct) for _ in range(8)]
    results = await asyncio.gather(*orders, *reads)
    assert [r.status for r in results[:8]] == [OrderStatus.FILLED] * 8
    assert len(agents.server(MT5H).positions(agents.login(MT5H))) == 8
    assert "order_send" in fake.calls and "positions_get" in fake.calls


async def test_a_disconnected_terminal_answers_10031(agents: Harness) -> None:
    _fake(agents, MT5H).connected = False
    result = await agents.bridge.place_market_order(
        account=agents.account(MT5H), symbol="EURUSD", side="buy", volume=0.1
    )
    assert result.status != OrderStatus.FILLED
    assert result.error is not None and result.error.code == 10031
    assert agents.server(MT5H).positions(agents.login(MT5H)) == []


async def test_a_manual_trade_reaches_the_bridge(agents: Harness) -> None:
    """No events in the package: the agent's poll (its ``deal`` and ``account`` events) or
    its next snapshot carries a trade made at the terminal to the bridge."""
    server, login = agents.server(MT5H), agents.login(MT5H)
    session = agents.bridge.registry.route(AccountKey.parse(agents.account(MT5H)))
    server.manual_market_order(login, "EURUSD", 0, 0.2)
    truth = server.handle(login, m.AccountInfo(id=0))
    assert isinstance(truth, m.AccountReport)

    def account_followed() -> bool:
        cached = session.view.account
        return cached is not None and abs(cached.margin - truth.margin) < 0.01

    await eventually(account_followed)


async def test_a_failed_read_is_never_taken_for_nothing_there(agents: Harness) -> None:
    """Review C1: an order that executed behind an IPC timeout, then the terminal's history
    reads failing for a while: the agent answers the lookups -3, the bridge asks again, and
    the order is resolved FILLED once, never NOT_FOUND (which a resend would double)."""
    fake = _fake(agents, MT5H)
    fake.ipc_timeout_after_next_send = True
    fake.failing = {"history_orders_get": 3, "history_deals_get": 3, "positions_get": 3}
    result = await agents.bridge.place_market_order(
        account=agents.account(MT5H), symbol="EURUSD", side="buy", volume=0.1,
        client_order_id="c1-read",
    )  # fmt: skip
    assert result.status in (OrderStatus.UNKNOWN, OrderStatus.FILLED)

    async def settled() -> bool:
        found = await agents.bridge.get_order(agents.account(MT5H), client_order_id="c1-read")
        assert found is None or found.status != OrderStatus.NOT_FOUND, "executed order lost"
        return found is not None and found.status == OrderStatus.FILLED

    await eventually(settled, timeout_s=15)
    assert len(agents.server(MT5H).positions(agents.login(MT5H))) == 1


async def test_a_close_while_the_position_cannot_be_read_executes_nothing(
    agents: Harness,
) -> None:
    """Review C1: the position's read fails: the close is answered -3 (nothing sent), never
    10036 "already closed" for a position that is open."""
    acct = agents.account(MT5H)
    opened = await agents.bridge.place_market_order(
        account=acct, symbol="EURUSD", side="buy", volume=0.1
    )
    assert opened.status == OrderStatus.FILLED
    session = agents.bridge.registry.route(AccountKey.parse(acct))
    (pos,) = agents.server(MT5H).positions(agents.login(MT5H))
    _fake(agents, MT5H).failing = {"positions_get": 1}
    with pytest.raises(TerminalRejected) as refused:
        await session.request(m.ClosePosition(id=0, ticket=pos.ticket))
    assert refused.value.code == -3
    assert [p.ticket for p in agents.server(MT5H).positions(agents.login(MT5H))] == [pos.ticket]


async def test_closing_the_old_ticket_of_a_reversed_netting_position_is_refused(
    agents: Harness,
) -> None:
    """Review C2: after a netting reversal the position keeps its identifier and changes its
    ticket; a close of the old ticket is an unknown ticket (10013), not 10036."""
    acct = agents.account(MT5N)
    first = await agents.bridge.place_market_order(
        account=acct, symbol="EURUSD", side="buy", volume=0.1
    )
    assert first.status == OrderStatus.FILLED
    (before,) = agents.server(MT5N).positions(agents.login(MT5N))
    flipped = await agents.bridge.place_market_order(
        account=acct, symbol="EURUSD", side="sell", volume=0.3
    )
    assert flipped.status == OrderStatus.FILLED
    (after,) = agents.server(MT5N).positions(agents.login(MT5N))
    assert after.identifier == before.identifier and after.ticket != before.ticket
    session = agents.bridge.registry.route(AccountKey.parse(acct))
    with pytest.raises(TerminalRejected) as refused:
        await session.request(m.ClosePosition(id=0, ticket=before.ticket))
    assert refused.value.code == 10013
    assert [p.ticket for p in agents.server(MT5N).positions(agents.login(MT5N))] == [after.ticket]


async def test_a_trade_whose_deadline_passes_behind_slow_reads_never_starts(
    agents: Harness,
) -> None:
    """Review H1: the deadline is checked on the worker right before order_send, not when
    the trade was queued: a trade held behind a slow read past its deadline is answered -6
    and never executed."""
    acct = agents.account(MT5H)
    session = agents.bridge.registry.route(AccountKey.parse(acct))
    fake = _fake(agents, MT5H)
    fake.call_delay_s = 0.3  # each call takes 0.3 s: a read holds the worker
    read = asyncio.ensure_future(session.request(m.AccountInfo(id=0)))
    await asyncio.sleep(0.05)
    trade = session.request(
        m.MarketOrder(id=0, symbol="EURUSD", order_type=0, volume=0.1, magic=7, comment="mg:H1"),
        timeout_s=0.15,
    )
    with pytest.raises(Exception):  # noqa: B017, PT011 - -6 or the bridge's own timeout
        await trade
    await read
    fake.call_delay_s = 0.0
    await asyncio.sleep(0.5)  # whatever the worker still had queued has run
    assert agents.server(MT5H).positions(agents.login(MT5H)) == []


async def test_under_instant_execution_the_agent_prices_opens_and_closes(
    agents: Harness,
) -> None:
    """Review H2: protocol price 0 is "at market"; under Instant execution the agent sends
    the current Ask/Bid, so the order and its close both fill."""
    import msgspec

    from mtgate.domain.enums import ExecutionMode

    server = agents.server(MT5H)
    spec = server.symbols["EURUSD"]
    server.symbols["EURUSD"] = msgspec.structs.replace(spec, exe_mode=int(ExecutionMode.INSTANT))
    acct = agents.account(MT5H)
    session = agents.bridge.registry.route(AccountKey.parse(acct))
    _, ask, _ = server.feed.quote("EURUSD")
    opened = await session.request(
        m.MarketOrder(id=0, symbol="EURUSD", order_type=0, volume=0.1, magic=7, comment="mg:I1")
    )
    assert opened.code == 10009 and opened.price == ask
    (pos,) = server.positions(agents.login(MT5H))
    closed = await session.request(m.ClosePosition(id=0, ticket=pos.ticket))
    assert closed.code == 10009 and closed.remainder == 0
    assert server.positions(agents.login(MT5H)) == []
