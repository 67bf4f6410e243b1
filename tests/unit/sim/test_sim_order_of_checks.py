"""Reference §4.6: checks run in a fixed order, so when a request breaks two rules the code of
the earlier step is the answer. Each case breaks exactly two rules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from mtgate.domain.enums import OrderModeFlag, OrderType, Platform, TradeMode
from mtgate.protocol.messages import Request
from mtsim.config import ServerConfig, Session
from mtsim.symbols import DEFAULT_SYMBOLS, EURUSD, instant_symbols
from tests.unit.sim.simdesk import ASK, BID, Desk, MakeDesk, px

T = OrderType
CLOSED = {"EURUSD": (Session(0, 0, 1440),)}  # Monday only; the test clock is on a Thursday


def _eurusd(**changes: Any) -> dict[str, Any]:
    return {**DEFAULT_SYMBOLS, "EURUSD": msgspec.structs.replace(EURUSD, **changes)}


def _open_buy(desk: Desk) -> None:
    desk.market(T.BUY)


def _stale_quote_then_buy(desk: Desk) -> None:
    desk.quote("EURUSD", px(BID, -10), px(ASK, -10))
    desk.quote("EURUSD", BID, ASK)
    desk.market(T.BUY)


# (name, desk options, setup, request, expected MT4, expected MT5)
PAIRS: list[
    tuple[
        str,
        dict[str, Any],
        Callable[[Desk], None] | None,
        Callable[[Desk], Request],
        int | None,
        int,
    ]
] = [
    (
        "bad order type before no connection",
        {"config": ServerConfig(connected=False)},
        None,
        lambda d: d.market_req(order_type=5),
        3,
        10013,
    ),
    (
        "no connection before algo trading off",
        {"config": ServerConfig(connected=False, trade_allowed=False)},
        None,
        lambda d: d.market_req(),
        6,
        10031,
    ),
    (
        "algo trading off before unknown symbol",
        {"config": ServerConfig(trade_allowed=False)},
        None,
        lambda d: d.market_req(symbol="NOPE"),
        4109,
        10027,
    ),
    (
        "unknown symbol before bad volume",
        {},
        None,
        lambda d: d.market_req(symbol="NOPE", volume=-1.0),
        4106,
        10013,
    ),
    (
        "market closed before trade disabled",
        {
            "config": ServerConfig(sessions=CLOSED),
            "symbols": _eurusd(trade_mode=TradeMode.DISABLED),
        },
        None,
        lambda d: d.market_req(),
        132,
        10018,
    ),
    (
        "trade disabled before bad volume",
        {"symbols": _eurusd(trade_mode=TradeMode.DISABLED)},
        None,
        lambda d: d.market_req(volume=0.015),
        133,
        10017,
    ),
    (
        "order type denied before bad filling",
        {"symbols": _eurusd(order_mode=int(OrderModeFlag.LIMIT))},
        None,
        lambda d: d.market_req(filling=2),
        None,
        10035,
    ),
    (
        "bad filling before bad volume",
        {},
        None,
        lambda d: d.market_req(filling=2, volume=0.015),
        None,
        10030,
    ),
    (
        "expiration before bad volume",
        {"config": ServerConfig(expiration_allowed=False)},
        None,
        lambda d: d.pending_req(
            T.BUY_LIMIT, px(ASK, -100), volume=0.015, expiration_ms=d.clock.now_ms() - 1
        ),
        147,
        10022,
    ),
    (
        "bad volume before bad price",
        {},
        None,
        lambda d: d.pending_req(T.BUY_LIMIT, 1.0990005, volume=0.015),
        131,
        10014,
    ),
    (
        "bad price before bad stops",
        {},
        None,
        lambda d: d.pending_req(T.BUY_LIMIT, 1.0990005, sl=px(ASK, -101)),
        129,
        10015,
    ),
    (
        "bad stops before no money",
        {"balance": 100.0},
        None,
        lambda d: d.market_req(volume=1.0, sl=px(BID, -1)),
        130,
        10016,
    ),
    (
        "no money before positions limit",
        {"balance": 2_000.0, "config": ServerConfig(max_orders=1)},
        _open_buy,
        lambda d: d.market_req(volume=5.0),
        134,
        10019,
    ),
    (
        "positions limit before hedge prohibited",
        {"config": ServerConfig(max_orders=1, hedging_allowed=False)},
        _open_buy,
        lambda d: d.market_req(T.SELL),
        148,
        10040,
    ),
    (
        "hedge prohibited before requote",
        {"config": ServerConfig(hedging_allowed=False), "symbols": instant_symbols()},
        _stale_quote_then_buy,
        lambda d: d.market_req(T.SELL, price=px(BID, -10), deviation=0),
        149,
        10046,
    ),
]


@pytest.mark.parametrize(
    ("platform", "options", "setup", "request_of", "expected"),
    [
        pytest.param(platform, options, setup, request_of, code, id=f"{platform.value}-{name}")
        for name, options, setup, request_of, mt4, mt5 in PAIRS
        for platform, code in ((Platform.MT4, mt4), (Platform.MT5, mt5))
        if code is not None  # the earlier rule is MT5-only: nothing to order on MT4
    ],
)
def test_ref_4_6_earlier_rule_wins(
    make_desk: MakeDesk,
    platform: Platform,
    options: dict[str, Any],
    setup: Callable[[Desk], None] | None,
    request_of: Callable[[Desk], Request],
    expected: int,
) -> None:
    desk = make_desk(platform, **options)
    if setup is not None:
        setup(desk)
    assert desk.refused(request_of(desk)).code == expected


def test_ref_4_6_modify_no_changes_is_detected_before_the_freeze_level(
    make_desk: MakeDesk, platform: Platform
) -> None:
    desk = make_desk(platform)
    ticket = desk.pending(T.BUY_LIMIT, px(ASK, -20)).order
    desk.quote("EURUSD", px(BID, -18), px(ASK, -18))  # now frozen (freeze level 5)
    unchanged = desk.refused(desk.modify_req(ticket, px(ASK, -20)))
    assert unchanged.code == (1 if platform == Platform.MT4 else 10025)
    changed = desk.refused(desk.modify_req(ticket, px(ASK, -200)))
    assert changed.code == (145 if platform == Platform.MT4 else 10029)


def test_ref_4_6_stops_are_checked_before_the_freeze_level(
    make_desk: MakeDesk, platform: Platform
) -> None:
    desk = make_desk(platform)
    ticket = desk.pending(T.BUY_LIMIT, px(ASK, -20)).order
    desk.quote("EURUSD", px(BID, -18), px(ASK, -18))
    error = desk.refused(desk.modify_req(ticket, px(ASK, -200), sl=px(ASK, -201)))
    assert error.code == (130 if platform == Platform.MT4 else 10016)
