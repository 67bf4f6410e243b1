"""Every code the position operations produce (``modify_position``, ``close_position``,
``close_by``), each with the rule that causes it, on MT4, MT5 hedging and MT5 netting
(reference §2, §3.6, §3.7, §4.3, §4.4, §4.6; choices in :mod:`mtsim.errors`).

Each scenario opens a buy of 0.5 lots (``_buy``) or a buy and a sell (``_pair``), breaks one
rule, and names the code per account kind (None: the rule does not apply to that kind).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from mtgate.domain.codes import lookup
from mtgate.domain.enums import MarginMode, OrderModeFlag, OrderType, Platform, TradeMode
from mtgate.protocol.messages import Request
from mtsim.config import ServerConfig, Session
from mtsim.symbols import DEFAULT_SYMBOLS, EURUSD, instant_execution, instant_symbols
from tests.unit.sim.simdesk import ASK, BID, Desk, MakeDesk, px

T = OrderType
KINDS = {
    "mt4": (Platform.MT4, MarginMode.HEDGING),
    "mt5-hedging": (Platform.MT5, MarginMode.HEDGING),
    "mt5-netting": (Platform.MT5, MarginMode.NETTING),
}


def _eurusd(**changes: Any) -> dict[str, Any]:
    return {**DEFAULT_SYMBOLS, "EURUSD": msgspec.structs.replace(EURUSD, **changes)}


def _closed() -> ServerConfig:
    # ManualClock starts on Thursday 2026-01-01 00:00 server time: a Monday-only session is shut
    return ServerConfig(sessions={"EURUSD": (Session(0, 0, 1440),)})


@dataclass(frozen=True)
class Case:
    rule: str
    mt4: int | None
    mt5h: int | None
    mt5n: int | None
    request: Callable[[Desk], Request]
    setup: Callable[[Desk], None]
    desk: dict[str, Any] | None = None

    def code(self, kind: str) -> int | None:
        return {"mt4": self.mt4, "mt5-hedging": self.mt5h, "mt5-netting": self.mt5n}[kind]


def _first(desk: Desk) -> int:
    return int(desk.server.positions(desk.login)[0].ticket)


def _buy(desk: Desk) -> None:
    desk.market(T.BUY, volume=0.5, sl=px(BID, -100), tp=px(BID, 100))


def _then(*steps: Callable[[Desk], Any]) -> Callable[[Desk], None]:
    def setup(desk: Desk) -> None:
        for step in steps:
            step(desk)

    return setup


def _buy_then(change: Callable[[Desk], None]) -> Callable[[Desk], None]:
    return _then(_buy, change)


def _swap_symbol(**changes: Any) -> Callable[[Desk], None]:
    """Change EURUSD's spec after the position is open (the broker changed it)."""

    def change(desk: Desk) -> None:
        desk.server.symbols["EURUSD"] = msgspec.structs.replace(EURUSD, **changes)

    return change


def _close_session(desk: Desk) -> None:
    desk.server.config = _closed()


def _near_tp(desk: Desk) -> None:
    """Bid 96 points up: the TP (100 points up) is 4 points away, inside the freeze level 5."""
    desk.quote("EURUSD", px(BID, 96), px(ASK, 96))


def _two_buys(desk: Desk) -> None:
    desk.market(T.BUY, volume=0.1)
    desk.clock.advance(1_000)
    desk.market(T.BUY, volume=0.1)


def _closed_position(desk: Desk) -> None:
    _buy(desk)
    desk.close(_first(desk))


def _pending(desk: Desk) -> None:
    desk.pending(T.BUY_LIMIT, px(ASK, -100))


def _pair(desk: Desk) -> None:
    desk.market(T.BUY, volume=0.3, tp=px(BID, 100))
    desk.market(T.SELL, volume=0.2)


def _pair_req(desk: Desk) -> Request:
    buy, sell = desk.server.positions(desk.login)
    return desk.close_by_req(buy.ticket, sell.ticket)


def _disconnect(desk: Desk) -> None:
    desk.server.config = ServerConfig(connected=False)


def _algo_off(desk: Desk) -> None:
    desk.server.config = ServerConfig(trade_allowed=False)


def _dip_and_back(desk: Desk) -> None:
    _buy(desk)
    desk.quote("EURUSD", px(BID, -10), px(ASK, -10))
    desk.quote("EURUSD", BID, ASK)


INSTANT = {"symbols": instant_symbols()}

CLOSE_CASES = [
    Case("negative volume", 3, 10013, 10013, lambda d: d.close_req(_first(d), -0.1), _buy),
    Case(
        "negative deviation", 3, 10013, 10013, lambda d: d.close_req(_first(d), deviation=-1), _buy
    ),
    Case(
        "not connected", 6, 10031, 10031, lambda d: d.close_req(_first(d)), _buy_then(_disconnect)
    ),
    Case(
        "algo trading off",
        4109,
        10027,
        10027,
        lambda d: d.close_req(_first(d)),
        _buy_then(_algo_off),
    ),
    Case("unknown ticket", 4108, 10013, 10013, lambda d: d.close_req(99), _buy),
    Case(
        "pending order ticket",
        3,
        10013,
        10013,
        lambda d: d.close_req(d.server.pending_orders(d.login)[0].ticket),
        _pending,
    ),
    Case(
        "already closed",
        4108,
        10036,
        10036,
        lambda d: d.close_req(d.server.deals(d.login)[0].position_id),
        _closed_position,
    ),
    Case(
        "market closed",
        132,
        10018,
        10018,
        lambda d: d.close_req(_first(d)),
        _buy_then(_close_session),
    ),
    Case(
        "trade disabled",
        133,
        10017,
        10017,
        lambda d: d.close_req(_first(d)),
        _buy_then(_swap_symbol(trade_mode=TradeMode.DISABLED)),
    ),
    Case(
        "no filling policy under market execution",
        None,
        10030,
        10030,
        lambda d: d.close_req(_first(d)),
        _buy_then(_swap_symbol(filling_mode=0)),
    ),
    Case("volume below min", 131, 10014, 10014, lambda d: d.close_req(_first(d), 0.001), _buy),
    Case("volume off the step", 131, 10014, 10014, lambda d: d.close_req(_first(d), 0.015), _buy),
    Case(
        "volume above the position", 131, 10038, 10038, lambda d: d.close_req(_first(d), 0.6), _buy
    ),
    Case(
        "remainder below min",
        131,
        10014,
        10014,
        lambda d: d.close_req(_first(d), 0.45),
        _buy_then(_swap_symbol(volume_min=0.1)),
    ),
    Case(
        "unnormalized price (instant)",
        129,
        10015,
        10015,
        lambda d: d.close_req(_first(d), price=1.099995, deviation=50),
        _buy,
        INSTANT,
    ),
    Case(
        "never quoted price (MT4 instant)",
        129,
        None,
        None,
        lambda d: d.close_req(_first(d), price=px(BID, -7), deviation=50),
        _buy,
        INSTANT,
    ),
    Case(
        "frozen: TP within the freeze level",
        145,
        10029,
        10029,
        lambda d: d.close_req(_first(d)),
        _buy_then(_near_tp),
    ),
    Case(
        "FIFO: not the oldest",
        150,
        10045,
        None,
        lambda d: d.close_req(d.server.positions(d.login)[1].ticket),
        _two_buys,
        {"config": ServerConfig(fifo=True)},
    ),
    Case(
        "requote: beyond the deviation",
        138,
        10004,
        10004,
        lambda d: d.close_req(_first(d), price=px(BID, -10), deviation=5),
        _dip_and_back,
        INSTANT,
    ),
]

MODIFY_CASES = [
    Case(
        "not connected",
        6,
        10031,
        10031,
        lambda d: d.modify_position_req(_first(d)),
        _buy_then(_disconnect),
    ),
    Case(
        "algo trading off",
        4109,
        10027,
        10027,
        lambda d: d.modify_position_req(_first(d)),
        _buy_then(_algo_off),
    ),
    Case("unknown ticket", 4108, 10013, 10013, lambda d: d.modify_position_req(99), _buy),
    Case(
        "pending order ticket",
        3,
        10013,
        10013,
        lambda d: d.modify_position_req(d.server.pending_orders(d.login)[0].ticket, px(BID, -100)),
        _pending,
    ),
    Case(
        "already closed",
        4108,
        10036,
        10036,
        lambda d: d.modify_position_req(d.server.deals(d.login)[0].position_id),
        _closed_position,
    ),
    Case(
        "unchanged values",
        1,
        10025,
        10025,
        lambda d: d.modify_position_req(_first(d), px(BID, -100), px(BID, 100)),
        _buy,
    ),
    Case(
        "market closed",
        132,
        10018,
        10018,
        lambda d: d.modify_position_req(_first(d)),
        _buy_then(_close_session),
    ),
    Case(
        "trade disabled",
        133,
        10017,
        10017,
        lambda d: d.modify_position_req(_first(d)),
        _buy_then(_swap_symbol(trade_mode=TradeMode.DISABLED)),
    ),
    Case(
        "buy SL closer to Bid than the stops level",
        130,
        10016,
        10016,
        lambda d: d.modify_position_req(_first(d), px(BID, -9)),
        _buy,
    ),
    Case(
        "buy TP closer to Bid than the stops level",
        130,
        10016,
        10016,
        lambda d: d.modify_position_req(_first(d), 0.0, px(BID, 9)),
        _buy,
    ),
    Case(
        "buy SL above Bid",
        130,
        10016,
        10016,
        lambda d: d.modify_position_req(_first(d), px(BID, 20)),
        _buy,
    ),
    Case(
        "unnormalized SL",
        130,
        10016,
        10016,
        lambda d: d.modify_position_req(_first(d), 1.0990005),
        _buy,
    ),
    Case(
        "SL not allowed by order_mode",
        None,
        10016,
        10016,
        lambda d: d.modify_position_req(_first(d), px(BID, -50)),
        _buy_then(_swap_symbol(order_mode=int(OrderModeFlag.MARKET | OrderModeFlag.TP))),
    ),
    Case(
        "frozen: TP within the freeze level",
        145,
        10029,
        10029,
        lambda d: d.modify_position_req(_first(d), px(BID, -100), px(BID, 200)),
        _buy_then(_near_tp),
    ),
]

CLOSE_BY_CASES = [
    Case(
        "netting account",
        None,
        None,
        10013,
        lambda d: d.close_by_req(_first(d), _first(d) + 1),
        _buy,
    ),
    Case("not connected", 6, 10031, None, _pair_req, _then(_pair, _disconnect)),
    Case(
        "same ticket twice", 3, 10013, None, lambda d: d.close_by_req(_first(d), _first(d)), _pair
    ),
    Case("unknown opposite", 4108, 10013, None, lambda d: d.close_by_req(_first(d), 99), _pair),
    Case(
        "different symbols",
        3,
        10013,
        None,
        lambda d: d.close_by_req(_first(d), d.server.positions(d.login)[-1].ticket),
        _then(_buy, lambda d: d.market(T.SELL, symbol="GBPUSD")),
    ),
    Case(
        "same direction",
        3,
        10013,
        None,
        lambda d: d.close_by_req(*(p.ticket for p in d.server.positions(d.login))),
        _two_buys,
    ),
    Case(
        "market closed",
        132,
        10018,
        None,
        _pair_req,
        _then(_pair, _close_session),
    ),
    Case(
        "trade disabled",
        133,
        10017,
        None,
        _pair_req,
        _then(_pair, _swap_symbol(trade_mode=TradeMode.DISABLED)),
    ),
    Case(
        "order_mode without CLOSE_BY",
        None,
        10035,
        None,
        _pair_req,
        _then(_pair, _swap_symbol(order_mode=int(OrderModeFlag.MARKET))),
    ),
    Case(
        "frozen: the buy's TP within the freeze level",
        145,
        10029,
        None,
        _pair_req,
        _then(_pair, _near_tp),
    ),
]

PARAMS = [
    pytest.param(kind, case, id=f"{op}-{kind}-{case.rule}")
    for op, cases in (
        ("close", CLOSE_CASES),
        ("modify", MODIFY_CASES),
        ("close_by", CLOSE_BY_CASES),
    )
    for case in cases
    for kind in KINDS
    if case.code(kind) is not None
]


def _state(desk: Desk) -> tuple[Any, ...]:
    server = desk.server
    return (
        server.positions(desk.login),
        server.pending_orders(desk.login),
        server.history_orders(desk.login),
        server.deals(desk.login),
        server.account(desk.login),
    )


@pytest.mark.parametrize(("kind", "case"), PARAMS)
def test_every_position_code_with_its_rule(make_desk: MakeDesk, kind: str, case: Case) -> None:
    platform, margin_mode = KINDS[kind]
    expected = case.code(kind)
    desk = make_desk(platform, margin_mode=margin_mode, **(case.desk or {}))
    case.setup(desk)
    before = _state(desk)
    events = len(desk.events)
    error = desk.refused(case.request(desk))
    assert error.code == expected, error
    assert expected is not None
    assert error.name == lookup(platform, expected).name
    assert error.message
    # a refusal changes nothing, emits nothing, and is in the ground-truth log
    assert _state(desk) == before
    assert len(desk.events) == events
    assert desk.server.executed[-1].outcome is error


def test_requote_on_close_carries_the_new_prices(make_desk: MakeDesk, platform: Platform) -> None:
    desk = make_desk(platform, symbols=instant_symbols())
    _dip_and_back(desk)
    error = desk.refused(desk.close_req(_first(desk), price=px(BID, -10), deviation=5))
    assert (error.bid, error.ask) == (BID, ASK)


@pytest.mark.parametrize("kind", KINDS)
def test_the_stops_level_distance_itself_is_accepted(make_desk: MakeDesk, kind: str) -> None:
    """Reference §4.3: at least the level (≥); a buy against Bid, a sell against Ask."""
    platform, margin_mode = KINDS[kind]
    desk = make_desk(platform, margin_mode=margin_mode)
    buy = desk.market(T.BUY, volume=0.1).order
    desk.send(desk.modify_position_req(buy, px(BID, -10), px(BID, 10)))
    assert (desk.position(buy).sl, desk.position(buy).tp) == (px(BID, -10), px(BID, 10))
    if margin_mode == MarginMode.NETTING:
        return
    sell = desk.market(T.SELL, volume=0.1).order
    desk.send(desk.modify_position_req(sell, px(ASK, 10), px(ASK, -10)))
    assert (desk.position(sell).sl, desk.position(sell).tp) == (px(ASK, 10), px(ASK, -10))
    # 9 points from Ask is too close for a sell, although 21 points from Bid
    error = desk.refused(desk.modify_position_req(sell, px(ASK, 9)))
    assert error.code == (130 if platform == Platform.MT4 else 10016)


@pytest.mark.parametrize("kind", KINDS)
def test_the_freeze_distance_itself_is_frozen(make_desk: MakeDesk, kind: str) -> None:
    """Reference §4.4: strictly beyond the freeze level; equal is frozen."""
    platform, margin_mode = KINDS[kind]
    desk = make_desk(platform, margin_mode=margin_mode)
    ticket = desk.market(T.BUY, volume=0.1, sl=px(BID, -20)).order
    desk.quote("EURUSD", px(BID, -14), px(ASK, -14))  # SL 6 points below Bid: free
    desk.send(desk.modify_position_req(ticket, px(BID, -30)))
    desk.quote("EURUSD", px(BID, -25), px(ASK, -25))  # SL exactly 5 points below Bid: frozen
    error = desk.refused(desk.close_req(ticket))
    assert error.code == (145 if platform == Platform.MT4 else 10029)


@pytest.mark.parametrize("mode", [TradeMode.CLOSE_ONLY, TradeMode.LONG_ONLY, TradeMode.SHORT_ONLY])
@pytest.mark.parametrize("kind", KINDS)
def test_restricted_trade_modes_still_allow_closing_and_modifying(
    make_desk: MakeDesk, kind: str, mode: TradeMode
) -> None:
    platform, margin_mode = KINDS[kind]
    desk = make_desk(platform, margin_mode=margin_mode)
    buy = desk.market(T.BUY, volume=0.3).order
    _swap_symbol(trade_mode=mode)(desk)
    assert desk.send(desk.modify_position_req(buy, px(BID, -100))).code in (0, 10009)
    closed = desk.close(buy, 0.1)
    assert closed.volume == 0.1
    assert desk.close(closed.remainder).volume == 0.2
    assert desk.server.positions(desk.login) == []


def test_instant_execution_fills_a_close_within_the_deviation(
    make_desk: MakeDesk, platform: Platform
) -> None:
    desk = make_desk(platform, symbols={**DEFAULT_SYMBOLS, "EURUSD": instant_execution(EURUSD)})
    ticket = desk.market(T.BUY, volume=0.1).order
    desk.quote("EURUSD", px(BID, -3), px(ASK, -3))
    desk.quote("EURUSD", BID, ASK)
    result = desk.close(ticket, price=px(BID, -3), deviation=5)
    assert result.price == BID  # the current Bid, within 5 points of the requested one
