"""Each fault of mtsim.faults, armed on a terminal, seen on the wire and in the trade server.

Codes: reference §2 (MT4) and §3.7 (MT5); partial fills §3.3; market closed §8.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mtgate.domain.enums import Platform
from mtgate.protocol import codec
from mtgate.protocol import messages as m
from mtgate.protocol.auth import bridge_proof, new_key, new_nonce
from mtsim.faults import Fault, FaultKind, RandomFaults
from mtsim.server import TradeServer
from mtsim.terminal import SimTerminal, TerminalConfig
from tests.unit.sim.simdesk import ASK, BID, MakeDesk
from tests.unit.sim.simwire import BridgeEnd, WireBridge, wire_session

PLATFORMS = pytest.mark.parametrize("platform", [Platform.MT4, Platform.MT5], ids=["mt4", "mt5"])


def _order(req_id: int, volume: float = 0.1, **kw: Any) -> m.MarketOrder:
    kw.setdefault("comment", f"mg:F{req_id}")
    kw.setdefault("symbol", "EURUSD")
    return m.MarketOrder(id=req_id, order_type=0, volume=volume, magic=7, **kw)


def _trades(server: TradeServer, login: int) -> int:
    """Trade requests that reached the trade server (ground truth)."""
    return sum(
        1 for e in server.executed if e.login == login and isinstance(e.request, m.TRADE_OPS)
    )


def _result(response: m.Response) -> m.TradeResult:
    assert response.ok, response.error
    result = codec.decode_result(m.MarketOrder, response.result)
    assert isinstance(result, m.TradeResult)
    return result


def _code(response: m.Response) -> int:
    assert not response.ok and response.error is not None
    return response.error.code


async def _response(bridge: WireBridge, req_id: int, timeout_s: float = 5.0) -> m.Response:
    while True:
        frame = await bridge.receive(timeout_s)
        if isinstance(frame, m.Response) and frame.id == req_id:
            return frame


REFUSALS = [
    (Fault(FaultKind.REQUOTE), 138, 10004, True),
    (Fault(FaultKind.PRICE_CHANGED), 135, 10020, True),
    (Fault(FaultKind.OFF_QUOTES), 136, 10021, True),
    (Fault(FaultKind.CONTEXT_BUSY), 146, 10024, False),
    (Fault(FaultKind.TOO_MANY_REQUESTS), 141, 10024, False),
    (Fault(FaultKind.NO_CONNECTION), 6, 10031, False),
]


@PLATFORMS
@pytest.mark.parametrize(
    ("fault", "mt4", "mt5", "priced"), REFUSALS, ids=[f[0].kind.value for f in REFUSALS]
)
async def test_a_refusing_fault_answers_its_code_and_executes_nothing(
    make_desk: MakeDesk, platform: Platform, fault: Fault, mt4: int, mt5: int, priced: bool
) -> None:
    desk = make_desk(platform)
    async with wire_session(desk) as (bridge, terminal):
        terminal.plan.script(fault)
        refused = await bridge.request(_order(1))
        assert _code(refused) == (mt4 if platform == Platform.MT4 else mt5)
        assert refused.error is not None
        assert (refused.error.bid, refused.error.ask) == ((BID, ASK) if priced else (0.0, 0.0))
        assert _trades(desk.server, desk.login) == 0
        assert desk.server.positions(desk.login) == []
        assert terminal.plan.faults_by_kind() == {fault.kind.value: 1}
        _result(await bridge.request(_order(2)))  # one-shot: the next trade executes
        assert len(desk.server.positions(desk.login)) == 1


@PLATFORMS
async def test_a_requote_of_a_close_carries_the_prices_and_keeps_the_position(
    make_desk: MakeDesk, platform: Platform
) -> None:
    desk = make_desk(platform)
    async with wire_session(desk) as (bridge, terminal):
        ticket = _result(await bridge.request(_order(1))).order
        terminal.plan.script(Fault(FaultKind.REQUOTE))
        refused = await bridge.request(m.ClosePosition(id=2, ticket=ticket))
        assert _code(refused) == (138 if platform == Platform.MT4 else 10004)
        assert [p.ticket for p in desk.server.positions(desk.login)] == [ticket]


async def _until_ok(bridge: WireBridge, first_id: int, timeout_s: float = 5.0) -> int:
    """Send orders until one executes (an eventually-helper); returns how many were refused."""
    refused = 0
    async with asyncio.timeout(timeout_s):
        for req_id in range(first_id, first_id + 10_000):
            if (await bridge.request(_order(req_id))).ok:
                return refused
            refused += 1
            await asyncio.sleep(0.02)
    raise AssertionError("never executed")


@PLATFORMS
async def test_no_connection_lasts_its_window(make_desk: MakeDesk, platform: Platform) -> None:
    desk = make_desk(platform)
    async with wire_session(desk) as (bridge, terminal):
        terminal.plan.script(Fault(FaultKind.NO_CONNECTION, duration_ms=300))
        expected = 6 if platform == Platform.MT4 else 10031
        assert _code(await bridge.request(_order(1))) == expected
        assert _code(await bridge.request(_order(2))) == expected
        refused = await _until_ok(bridge, 3)
        assert _trades(desk.server, desk.login) == 1
        assert terminal.plan.faults_by_kind() == {"no_connection": 2 + refused}


@PLATFORMS
async def test_an_injected_market_closure_refuses_every_trade_on_the_symbol_until_it_ends(
    make_desk: MakeDesk, platform: Platform
) -> None:
    desk = make_desk(platform)
    async with wire_session(desk) as (bridge, terminal):
        terminal.plan.script(Fault(FaultKind.MARKET_CLOSED, duration_ms=60_000))
        closed = 132 if platform == Platform.MT4 else 10018
        assert _code(await bridge.request(_order(1))) == closed
        pending = m.PendingOrder(
            id=2, symbol="EURUSD", order_type=2, volume=0.1, price=1.09, magic=7, comment=""
        )
        assert _code(await bridge.request(pending)) == closed  # the server's own step 4
        _result(await bridge.request(_order(3, symbol="GBPUSD")))  # other symbols trade
        assert desk.server.closure_refusals == 2
        assert terminal.plan.faults_by_kind() == {"market_closed": 2}
        desk.clock.advance(60_000)
        _result(await bridge.request(_order(4)))
        assert {p.symbol for p in desk.server.positions(desk.login)} == {"EURUSD", "GBPUSD"}


async def test_a_closed_market_triggers_no_stop_loss(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5)
    desk.market(sl=1.09)
    desk.server.close_market("EURUSD", desk.clock.now_ms() + 1_000)
    desk.quote("EURUSD", 1.08, 1.08012)
    assert len(desk.server.positions(desk.login)) == 1
    desk.clock.advance(1_000)
    desk.quote("EURUSD", 1.0801, 1.08022)
    assert desk.server.positions(desk.login) == []


@PLATFORMS
async def test_a_slow_answer_comes_late_and_executes(
    make_desk: MakeDesk, platform: Platform
) -> None:
    desk = make_desk(platform)
    async with wire_session(desk) as (bridge, terminal):
        terminal.plan.script(Fault(FaultKind.SLOW, delay_ms=200))
        loop = asyncio.get_running_loop()
        start = loop.time()
        _result(await bridge.request(_order(1)))
        assert loop.time() - start >= 0.19
        assert _trades(desk.server, desk.login) == 1
        assert terminal.plan.faults_by_kind() == {"slow": 1}


@PLATFORMS
async def test_a_late_answer_follows_the_execution_and_its_events(
    make_desk: MakeDesk, platform: Platform
) -> None:
    desk = make_desk(platform)
    async with wire_session(desk) as (bridge, terminal):
        terminal.plan.script(Fault(FaultKind.LATE_ANSWER, delay_ms=300))
        loop = asyncio.get_running_loop()
        start = loop.time()
        bridge.send(_order(1))
        event = await bridge.receive()
        assert isinstance(event, m.Event)  # executed: its events are out before the answer
        assert len(desk.server.positions(desk.login)) == 1
        result = _result(await _response(bridge, 1))
        assert loop.time() - start >= 0.29
        assert result.order == desk.server.positions(desk.login)[0].ticket
        assert terminal.plan.faults_by_kind() == {"late_answer": 1}


async def _no_response_for(bridge: WireBridge, req_id: int, seconds: float) -> None:
    """Read for ``seconds``; fail on an answer to ``req_id``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while (left := end - loop.time()) > 0:
        try:
            frame = await bridge.receive(left)
        except TimeoutError:
            return
        assert not (isinstance(frame, m.Response) and frame.id == req_id)


@PLATFORMS
async def test_an_answer_that_never_comes_after_an_execution(
    make_desk: MakeDesk, platform: Platform
) -> None:
    desk = make_desk(platform)
    async with wire_session(desk) as (bridge, terminal):
        terminal.plan.script(Fault(FaultKind.LATE_ANSWER))
        bridge.send(_order(1))
        await _no_response_for(bridge, 1, 0.3)
        assert _trades(desk.server, desk.login) == 1
        assert len(desk.server.positions(desk.login)) == 1
        bridge.writer.close()  # the bridge gives up: the held trade ends with the connection
        await asyncio.wait_for(terminal.connection.closed.wait(), 5)  # type: ignore[union-attr]


@PLATFORMS
async def test_a_hang_executes_nothing_and_answers_a_timeout_late(
    make_desk: MakeDesk, platform: Platform
) -> None:
    desk = make_desk(platform)
    async with wire_session(desk) as (bridge, terminal):
        terminal.plan.script(Fault(FaultKind.HANG, delay_ms=200), Fault(FaultKind.HANG))
        loop = asyncio.get_running_loop()
        start = loop.time()
        late = await bridge.request(_order(1))
        assert loop.time() - start >= 0.19
        assert _code(late) == (128 if platform == Platform.MT4 else 10012)
        bridge.send(_order(2))
        await _no_response_for(bridge, 2, 0.3)
        assert _trades(desk.server, desk.login) == 0
        assert terminal.plan.faults_by_kind() == {"hang": 2}


@PLATFORMS
@pytest.mark.parametrize(
    ("kind", "executed", "events"),
    [
        (FaultKind.DROP_BEFORE, 0, False),
        (FaultKind.DROP_AFTER, 1, False),
        (FaultKind.ANSWER_LOST, 1, True),
    ],
    ids=["drop_before", "drop_after", "answer_lost"],
)
async def test_dropped_connections_before_and_after_execution(
    make_desk: MakeDesk, platform: Platform, kind: FaultKind, executed: int, events: bool
) -> None:
    desk = make_desk(platform)
    async with wire_session(desk) as (bridge, terminal):
        terminal.plan.script(Fault(kind))
        bridge.send(_order(1))
        frames = await bridge.until_closed()
        assert not [f for f in frames if isinstance(f, m.Response)]
        assert not [f for f in frames if isinstance(f, m.Bye)]
        assert bool([f for f in frames if isinstance(f, m.Event)]) == events
        assert _trades(desk.server, desk.login) == executed
        assert len(desk.server.positions(desk.login)) == executed
        assert terminal.plan.faults_by_kind() == {kind.value: 1}


async def test_a_partial_ioc_fill_answers_10010_with_the_filled_volume(
    make_desk: MakeDesk,
) -> None:
    desk = make_desk(Platform.MT5)
    async with wire_session(desk) as (bridge, terminal):
        terminal.plan.script(Fault(FaultKind.PARTIAL_FILL, ratio=0.333))
        result = _result(await bridge.request(_order(1, volume=1.0, filling=1)))
        assert (result.code, result.volume) == (10010, 0.33)
        [position] = desk.server.positions(desk.login)
        assert position.volume == 0.33
        [deal] = desk.server.deals(desk.login)
        assert (deal.volume, deal.ticket) == (0.33, result.deal)
        [order] = desk.server.history_orders(desk.login)
        assert (order.volume_initial, order.volume_current) == (1.0, 0.67)
        assert desk.server.pending_orders(desk.login) == []  # IOC: the rest is cancelled
        assert terminal.plan.faults_by_kind() == {"partial_fill": 1}


async def test_a_partial_fault_on_fok_fills_nothing(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5)
    async with wire_session(desk) as (bridge, terminal):
        terminal.plan.script(Fault(FaultKind.PARTIAL_FILL, ratio=0.5))
        refused = await bridge.request(_order(1, volume=1.0, filling=0))
        assert _code(refused) == 10006
        assert desk.server.positions(desk.login) == []
        assert desk.server.deals(desk.login) == []
        assert terminal.plan.faults_by_kind() == {"partial_fill": 1}


async def test_one_step_fills_in_full_and_mt4_never_fills_in_part(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5)
    async with wire_session(desk) as (bridge, terminal):
        terminal.plan.script(Fault(FaultKind.PARTIAL_FILL, ratio=0.1))
        result = _result(await bridge.request(_order(1, volume=0.01, filling=1)))
        assert (result.code, result.volume) == (10009, 0.01)
        assert terminal.plan.faults_by_kind() == {}
    desk4 = make_desk(Platform.MT4)
    async with wire_session(desk4) as (bridge, terminal):
        terminal.plan.script(Fault(FaultKind.PARTIAL_FILL, ratio=0.5))
        result = _result(await bridge.request(_order(1, volume=1.0)))
        assert (result.code, result.volume) == (0, 1.0)
        assert terminal.plan.scripted == 1  # still waiting: it applies to no MT4 trade


async def _random_outcomes(make_desk: MakeDesk, seed: int) -> tuple[list[int], dict[str, int]]:
    desk = make_desk(Platform.MT5)
    rates = {FaultKind.REQUOTE: 0.3, FaultKind.CONTEXT_BUSY: 0.2, FaultKind.PARTIAL_FILL: 0.2}
    random_faults = RandomFaults(rates=rates, ratio=(0.2, 0.8))
    async with wire_session(desk, seed=seed, random_faults=random_faults) as (bridge, term):
        codes = []
        for i in range(1, 41):
            response = await bridge.request(_order(i, volume=1.0, filling=1))
            codes.append(_result(response).code if response.ok else _code(response))
        return codes, term.plan.faults_by_kind()


async def test_random_faults_on_the_wire_are_reproducible_under_a_seed(
    make_desk: MakeDesk,
) -> None:
    first, again, other = (
        await _random_outcomes(make_desk, 11),
        await _random_outcomes(make_desk, 11),
        await _random_outcomes(make_desk, 12),
    )
    assert first == again
    assert first[0] != other[0]
    assert set(first[0]) == {10004, 10024, 10010, 10009}
    counted = first[1]
    assert counted["requote"] == first[0].count(10004)
    assert counted["partial_fill"] == first[0].count(10010)


async def test_restart_reconnects_with_the_clock_running_on_after_an_sl_and_a_manual_trade(
    make_desk: MakeDesk,
) -> None:
    desk = make_desk(Platform.MT5)
    async with wire_session(desk) as (bridge, terminal):
        _result(await bridge.request(_order(1, sl=1.09)))
        before = terminal.ea_clock_ms()

        def meanwhile(server: TradeServer) -> None:
            server.set_quote("EURUSD", 1.085, 1.08512)  # hits the SL while the EA is away
            server.manual_market_order(desk.login, "EURUSD", 1, 0.2)

        await terminal.restart(0.05, while_down=meanwhile)
        deals = desk.server.deals(desk.login)
        assert [d.reason for d in deals] == [3, 4, 0]  # EXPERT in, SL out, CLIENT in
        [manual] = desk.server.positions(desk.login)
        assert (manual.type, manual.volume, manual.magic) == (1, 0.2, 0)
        assert terminal.ea_clock_ms() - before >= 50  # uptime runs on
        assert terminal.plan.faults_by_kind() == {"restart": 1}
        await terminal.restart(0.0, reboot=True)
        assert terminal.ea_clock_ms() < 120_000 + 1_000  # a reboot restarts the uptime


async def test_restart_redials_through_run(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT4)
    sessions = await _sessions_across_restart(desk.server, desk.login)
    assert sessions == 2


async def _sessions_across_restart(server: TradeServer, login: int) -> int:
    """A terminal dialing through :meth:`SimTerminal.run`: restarted once, it dials again
    and completes a second handshake."""
    key = new_key()
    async with BridgeEnd() as end:
        terminal = SimTerminal(server, TerminalConfig(terminal_id="t1", key=key, login=login))
        runner = asyncio.create_task(terminal.run("127.0.0.1", end.port))
        try:
            for round_ in range(2):
                bridge = await end.accepted()
                hello = await bridge.receive()
                assert isinstance(hello, m.Hello)
                nonce = new_nonce()
                proof = bridge_proof(key, "t1", hello.nonce, nonce)
                bridge.send(
                    m.Welcome(
                        v=m.PROTOCOL_VERSION,
                        nonce=nonce,
                        proof=proof,
                        session=f"s{round_}",
                        heartbeat_ms=60_000,
                    )
                )
                assert isinstance(await bridge.receive(), m.Auth)
                bridge.seal(key, hello.nonce, nonce)
                bridge.send(m.Ready())
                await asyncio.wait_for(terminal.connected.wait(), 5)
                if round_ == 0:
                    restart = asyncio.create_task(terminal.restart(0.05))
                    frames = await bridge.until_closed()
                    assert not [f for f in frames if isinstance(f, m.Bye)]  # died without bye
                    await restart
            return terminal.sessions
        finally:
            terminal.stop()
            await asyncio.wait_for(runner, 5)
