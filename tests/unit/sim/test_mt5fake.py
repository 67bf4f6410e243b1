"""The fake MetaTrader5 package is as strict as the documented one (reference terminal-side.md
§5.6): named tuples with the documented fields, None plus last_error() on failure, requests
checked against the MqlTradeRequest table before anything reaches the trade server."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from mtgate.domain.clock import ManualClock
from mtgate.domain.enums import MarginMode, Platform
from mtsim import mt5fake as mt5
from mtsim.world import AccountSpec, SimWorld

START_MS = 1_767_780_000_000
LOGIN = 2001


@pytest.fixture
def fake() -> mt5.FakeMetaTrader5:
    world = SimWorld(
        [AccountSpec("t", LOGIN, "Sim-MT5", Platform.MT5, MarginMode.HEDGING)],
        clock=ManualClock(START_MS),
        mt5_terminals="agent-fake",
    )
    f = world.fakes["t"]
    assert f.initialize() is True
    return f


def _buy(f: mt5.FakeMetaTrader5, **extra: Any) -> dict[str, Any]:
    _, ask, _ = f.server.feed.quote("EURUSD")
    request: dict[str, Any] = {
        "action": mt5.TRADE_ACTION_DEAL,
        "symbol": "EURUSD",
        "type": mt5.ORDER_TYPE_BUY,
        "volume": 0.1,
        "price": ask,
        "deviation": 10,
        "magic": 7,
        "comment": "mg:T1",
        "type_filling": mt5.ORDER_FILLING_FOK,
    }
    request.update(extra)
    return request


def test_nothing_answers_before_initialize() -> None:
    world = SimWorld(
        [AccountSpec("t", LOGIN, "Sim-MT5", Platform.MT5)],
        clock=ManualClock(START_MS),
        mt5_terminals="agent-fake",
    )
    f = world.fakes["t"]
    assert f.account_info() is None
    assert f.last_error()[0] == mt5.RES_E_INTERNAL_FAIL_INIT
    assert f.order_send(_buy(f)) is None
    assert f.server.positions(LOGIN) == []


def test_a_fill_is_an_order_send_result_with_the_documented_fields(
    fake: mt5.FakeMetaTrader5,
) -> None:
    result = fake.order_send(_buy(fake))
    assert result is not None and fake.last_error() == (mt5.RES_S_OK, "Success")
    assert mt5.OrderSendResult._fields == (
        "retcode", "deal", "order", "volume", "price", "bid", "ask", "comment", "request_id",
        "retcode_external", "request",
    )  # fmt: skip
    assert result.retcode == mt5.TRADE_RETCODE_DONE and result.deal > 0 and result.order > 0
    assert result.request.symbol == "EURUSD" and result.request.position == 0
    assert not hasattr(result, "position")  # the real result has no position id and no time
    deals = fake.history_deals_get(ticket=result.order)
    assert deals is not None and [d.order for d in deals] == [result.order]
    (pos,) = fake.positions_get() or ()
    assert pos.identifier == deals[0].position_id and pos.time == pos.time_msc // 1000
    assert pos._asdict()["comment"] == "mg:T1"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"volume": 1}, "volume"),  # an int where the package wants a float
        ({"magic": True}, "magic"),
        ({"colour": 3}, "colour"),  # not an MqlTradeRequest member
        ({"action": 99}, "action"),
    ],
)
def test_a_malformed_request_is_refused_before_the_server(
    fake: mt5.FakeMetaTrader5, change: dict[str, Any], why: str
) -> None:
    assert fake.order_send(_buy(fake, **change)) is None
    code, description = fake.last_error()
    assert code == mt5.RES_E_INVALID_PARAMS and why in description
    assert fake.server.executed == []


@pytest.mark.parametrize(
    ("request_", "missing"),
    [
        ({"action": mt5.TRADE_ACTION_DEAL, "symbol": "EURUSD", "type": 0}, "volume"),
        (
            {"action": mt5.TRADE_ACTION_PENDING, "symbol": "EURUSD", "type": 2, "volume": 0.1},
            "price",
        ),
        ({"action": mt5.TRADE_ACTION_SLTP, "sl": 0.0, "tp": 0.0}, "position"),
        ({"action": mt5.TRADE_ACTION_MODIFY, "order": 5}, "price"),
        ({"action": mt5.TRADE_ACTION_REMOVE}, "order"),
        ({"action": mt5.TRADE_ACTION_CLOSE_BY, "position": 1}, "position_by"),
    ],
)
def test_each_action_needs_its_fields(
    fake: mt5.FakeMetaTrader5, request_: dict[str, Any], missing: str
) -> None:
    assert fake.order_send(request_) is None
    code, description = fake.last_error()
    assert code == mt5.RES_E_INVALID_PARAMS and missing in description


def test_a_trade_server_refusal_is_a_result_not_none(fake: mt5.FakeMetaTrader5) -> None:
    result = fake.order_send(_buy(fake, volume=0.123))  # off the volume step
    assert result is not None and result.retcode == 10014 and result.order == 0
    assert fake.last_error()[0] == mt5.RES_S_OK


def test_terminal_conditions(fake: mt5.FakeMetaTrader5) -> None:
    fake.algo_trading = False
    result = fake.order_send(_buy(fake))
    assert result is not None and result.retcode == mt5.TRADE_RETCODE_CLIENT_DISABLES_AT
    fake.algo_trading, fake.connected = True, False
    result = fake.order_send(_buy(fake))
    assert result is not None and result.retcode == mt5.TRADE_RETCODE_CONNECTION
    info = fake.terminal_info()
    assert info is not None and info.connected is False
    assert fake.server.positions(LOGIN) == []


def test_an_ipc_timeout_after_the_request_executed(fake: mt5.FakeMetaTrader5) -> None:
    fake.ipc_timeout_after_next_send = True
    assert fake.order_send(_buy(fake)) is None
    assert fake.last_error()[0] == mt5.RES_E_INTERNAL_FAIL_TIMEOUT
    assert len(fake.server.positions(LOGIN)) == 1  # it executed all the same


def test_a_deal_reaches_the_history_a_few_calls_late(fake: mt5.FakeMetaTrader5) -> None:
    fake.deal_delay_calls = 2
    result = fake.order_send(_buy(fake))
    assert result is not None
    assert fake.history_deals_get(ticket=result.order) == ()
    assert fake.history_deals_get(ticket=result.order) == ()
    assert len(fake.history_deals_get(ticket=result.order) or ()) == 1


def test_two_calls_at_once_are_caught(fake: mt5.FakeMetaTrader5) -> None:
    fake.call_delay_s = 0.2
    errors: list[BaseException] = []

    def read() -> None:
        try:
            fake.positions_get()
        except mt5.ConcurrentCallError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 1


def test_history_takes_datetimes_or_seconds(fake: mt5.FakeMetaTrader5) -> None:
    import datetime as dt

    result = fake.order_send(_buy(fake))
    assert result is not None
    start = dt.datetime.fromtimestamp(START_MS / 1000 - 1, tz=dt.UTC)
    by_datetime = fake.history_deals_get(start, dt.datetime(3000, 1, 1, tzinfo=dt.UTC))
    by_seconds = fake.history_deals_get(START_MS // 1000 - 1, START_MS // 1000 + 1)
    assert by_datetime == by_seconds and by_seconds is not None and len(by_seconds) == 1
    assert fake.history_deals_get(START_MS // 1000 + 10, START_MS // 1000 + 20) == ()
    with pytest.raises(TypeError):
        fake.history_deals_get(1.5, 2)  # type: ignore[arg-type]


def test_instant_execution_needs_the_price_spelled_out(fake: mt5.FakeMetaTrader5) -> None:
    """Review H2: under Request or Instant execution a deal names its price; 0 is refused
    (10015) where the simulator's own protocol path would fill it at market."""
    import msgspec

    from mtgate.domain.enums import ExecutionMode

    spec = fake.server.symbols["EURUSD"]
    fake.server.symbols["EURUSD"] = msgspec.structs.replace(
        spec, exe_mode=int(ExecutionMode.INSTANT)
    )
    result = fake.order_send(_buy(fake, price=0.0))
    assert result is not None and result.retcode == mt5.TRADE_RETCODE_INVALID_PRICE
    assert fake.server.positions(LOGIN) == []
    result = fake.order_send(_buy(fake))  # the current Ask
    assert result is not None and result.retcode == mt5.TRADE_RETCODE_DONE
