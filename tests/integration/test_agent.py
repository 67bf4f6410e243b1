"""The MetaTrader5 agent against the bridge, over the strict fake package: the terminal
conditions only the agent meets (IPC failures, Algo Trading, a history that lags, the
package's single channel). The shared suites (order path, positions, sync, trailing) run
against the agent too, through ``any_harness``."""

from __future__ import annotations

import asyncio

import pytest

from mtgate.domain.orders import OrderStatus
from mtgate.protocol import messages as m
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
