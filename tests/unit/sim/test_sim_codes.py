"""Every MT4 error number and MT5 retcode the server model produces, each with the rule that
causes it (reference §2, §3.7, §4.6), and the code table itself.

Each scenario builds a desk, breaks exactly one rule and names the expected code per platform
(None: the rule does not exist on that platform and the scenario is skipped there).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import msgspec
import pytest

from mtgate.domain.codes import MT4_CODES, MT5_CODES, lookup
from mtgate.domain.enums import (
    ExpirationFlag,
    MarginMode,
    OrderModeFlag,
    OrderType,
    Platform,
    TradeMode,
)
from mtgate.protocol.messages import Request
from mtsim import errors
from mtsim.config import ServerConfig, Session
from mtsim.server import TradeServer
from mtsim.symbols import DEFAULT_SYMBOLS, EURUSD, instant_symbols
from tests.unit.sim.simdesk import ASK, BID, Desk, MakeDesk, px

T = OrderType
HOUR_MS = 3_600_000


def _eurusd(**changes: Any) -> dict[str, Any]:
    return {**DEFAULT_SYMBOLS, "EURUSD": msgspec.structs.replace(EURUSD, **changes)}


@dataclass(frozen=True)
class Case:
    rule: str
    mt4: int | None
    mt5: int | None
    request: Callable[[Desk], Request]
    desk: dict[str, Any] | None = None
    setup: Callable[[Desk], None] | None = None


def _closed() -> ServerConfig:
    # ManualClock starts on Thursday 2026-01-01 00:00 server time: a Monday-only session is shut
    return ServerConfig(sessions={"EURUSD": (Session(0, 0, 1440),)})


def _open_buy(desk: Desk) -> None:
    desk.market(T.BUY)


def _place_buy_limit(desk: Desk) -> None:
    desk.pending(T.BUY_LIMIT, px(ASK, -100))


def _place_then_approach(desk: Desk) -> None:
    """A buy limit 20 points below Ask, then Ask 2 points above it (freeze level 5)."""
    desk.pending(T.BUY_LIMIT, px(ASK, -20))
    desk.quote("EURUSD", px(BID, -18), px(ASK, -18))


def _dip_and_back(desk: Desk) -> None:
    """Ask 10 points lower for one quote, then back: that price is in the recent stream."""
    desk.quote("EURUSD", px(BID, -10), px(ASK, -10))
    desk.quote("EURUSD", BID, ASK)


CASES = [
    Case("bad order type", 3, 10013, lambda d: d.market_req(order_type=2)),
    Case("pending op with a market type", 3, 10013, lambda d: d.pending_req(T.BUY, px(ASK, -100))),
    Case("MT4 stop-limit", 3, None, lambda d: d.pending_req(T.BUY_STOP_LIMIT, px(ASK, 100))),
    Case(
        "not connected",
        6,
        10031,
        lambda d: d.market_req(),
        {"config": ServerConfig(connected=False)},
    ),
    Case(
        "algo trading off",
        4109,
        10027,
        lambda d: d.market_req(),
        {"config": ServerConfig(trade_allowed=False)},
    ),
    Case("unknown symbol", 4106, 10013, lambda d: d.market_req(symbol="EURXYZ")),
    Case("unknown ticket (cancel)", 4108, 10013, lambda d: d.cancel_req(99)),
    Case("unknown ticket (modify)", 4108, 10013, lambda d: d.modify_req(99, 1.0)),
    Case(
        "modify a position ticket",
        3,
        10013,
        lambda d: d.modify_req(d.server.positions(d.login)[0].ticket, px(ASK, -100)),
        setup=_open_buy,
    ),
    Case(
        "modify with unchanged values",
        1,
        10025,
        lambda d: d.modify_req(d.server.pending_orders(d.login)[0].ticket, px(ASK, -100)),
        setup=_place_buy_limit,
    ),
    Case("market closed", 132, 10018, lambda d: d.market_req(), {"config": _closed()}),
    Case(
        "trade disabled",
        133,
        10017,
        lambda d: d.market_req(),
        {"symbols": _eurusd(trade_mode=TradeMode.DISABLED)},
    ),
    Case(
        "long only, sell",
        140,
        10042,
        lambda d: d.market_req(T.SELL),
        {"symbols": _eurusd(trade_mode=TradeMode.LONG_ONLY)},
    ),
    Case(
        "short only, buy",
        133,
        10043,
        lambda d: d.market_req(T.BUY),
        {"symbols": _eurusd(trade_mode=TradeMode.SHORT_ONLY)},
    ),
    Case(
        "close only, open",
        133,
        10044,
        lambda d: d.market_req(T.BUY),
        {"symbols": _eurusd(trade_mode=TradeMode.CLOSE_ONLY)},
    ),
    Case(
        "order_mode without stop-limit",
        None,
        10035,
        lambda d: d.pending_req(T.BUY_STOP_LIMIT, 44100.0, symbol="US30", stoplimit=44050.0),
    ),
    Case(
        "order_mode without market",
        None,
        10035,
        lambda d: d.market_req(),
        {"symbols": _eurusd(order_mode=int(OrderModeFlag.LIMIT | OrderModeFlag.STOP))},
    ),
    Case("RETURN under market execution", None, 10030, lambda d: d.market_req(filling=2)),
    Case(
        "FOK without the symbol flag",
        None,
        10030,
        lambda d: d.market_req(symbol="US30", volume=0.1, filling=0),
    ),
    Case(
        "BOC without the symbol flag",
        None,
        10030,
        lambda d: d.pending_req(T.BUY_LIMIT, px(ASK, -100), filling=3),
    ),
    Case("unknown filling", None, 10030, lambda d: d.market_req(filling=9)),
    Case(
        "expiration denied (MT4 server / MT5 symbol flags)",
        147,
        10022,
        lambda d: d.pending_req(
            T.BUY_LIMIT, px(ASK, -100), expiration_ms=d.clock.now_ms() + HOUR_MS
        ),
        {
            "config": ServerConfig(expiration_allowed=False),
            "symbols": _eurusd(expiration_mode=int(ExpirationFlag.GTC)),
        },
    ),
    Case(
        "expiration too soon / in the past",
        3,
        10022,
        lambda d: (
            d.pending_req(T.BUY_LIMIT, px(ASK, -100), expiration_ms=d.clock.now_ms() + 60_000)
            if d.mt4
            else d.pending_req(T.BUY_LIMIT, px(ASK, -100), expiration_ms=d.clock.now_ms() - 1)
        ),
    ),
    Case("volume below min", 131, 10014, lambda d: d.market_req(volume=0.001)),
    Case("volume off the step", 131, 10014, lambda d: d.market_req(volume=0.015)),
    Case("unnormalized pending price", 129, 10015, lambda d: d.pending_req(T.BUY_LIMIT, 1.099005)),
    Case(
        "index price off the tick grid",
        129,
        10015,
        lambda d: d.pending_req(T.BUY_LIMIT, 43900.10, symbol="US30"),
    ),
    Case(
        "pending on the wrong side", 130, 10015, lambda d: d.pending_req(T.BUY_LIMIT, px(ASK, 100))
    ),
    Case(
        "stoplimit on the wrong side",
        None,
        10015,
        lambda d: d.pending_req(T.BUY_STOP_LIMIT, px(ASK, 100), stoplimit=px(ASK, 120)),
    ),
    Case("SL too close", 130, 10016, lambda d: d.market_req(sl=px(BID, -5))),
    Case(
        "SL not allowed by order_mode",
        None,
        10016,
        lambda d: d.market_req(sl=px(BID, -100)),
        {"symbols": _eurusd(order_mode=int(OrderModeFlag.MARKET | OrderModeFlag.TP))},
    ),
    Case(
        "frozen pending order",
        145,
        10029,
        lambda d: d.cancel_req(d.server.pending_orders(d.login)[0].ticket),
        setup=_place_then_approach,
    ),
    Case("not enough money", 134, 10019, lambda d: d.market_req(volume=1.0), {"balance": 1_000.0}),
    Case(
        "orders limit (MT4 open+pending / MT5 pending)",
        148,
        10033,
        lambda d: d.pending_req(T.BUY_LIMIT, px(ASK, -200)),
        {"config": ServerConfig(max_orders=1)},
        _place_buy_limit,
    ),
    Case(
        "account limit_orders",
        148,
        10033,
        lambda d: d.pending_req(T.BUY_LIMIT, px(ASK, -200)),
        {"limit_orders": 1},
        _place_buy_limit,
    ),
    Case(
        "positions limit",
        148,
        10040,
        lambda d: d.market_req(),
        {"config": ServerConfig(max_orders=1)},
        _open_buy,
    ),
    Case(
        "symbol volume limit",
        None,
        10034,
        lambda d: d.market_req(volume=0.5),
        {"symbols": _eurusd(volume_limit=0.5)},
        _open_buy,
    ),
    Case(
        "hedge prohibited",
        149,
        10046,
        lambda d: d.market_req(T.SELL),
        {"config": ServerConfig(hedging_allowed=False)},
        _open_buy,
    ),
    Case(
        "requote: beyond the deviation",
        138,
        10004,
        lambda d: d.market_req(price=px(ASK, -10), deviation=5),
        {"symbols": instant_symbols()},
        _dip_and_back,
    ),
    Case(
        "never quoted price (MT4 instant)",
        129,
        None,
        lambda d: d.market_req(price=px(ASK, -7), deviation=50),
        {"symbols": instant_symbols()},
    ),
]


PLATFORM_CASES = [
    pytest.param(platform, case, id=f"{platform.value}-{case.rule}")
    for case in CASES
    for platform in Platform
    if (case.mt4 if platform == Platform.MT4 else case.mt5) is not None
]


@pytest.mark.parametrize(("platform", "case"), PLATFORM_CASES)
def test_every_code_with_its_rule(make_desk: MakeDesk, platform: Platform, case: Case) -> None:
    expected = case.mt4 if platform == Platform.MT4 else case.mt5
    desk = make_desk(platform, **(case.desk or {}))
    if case.setup is not None:
        case.setup(desk)
    before = (desk.server.positions(desk.login), desk.server.pending_orders(desk.login))
    error = desk.refused(case.request(desk))
    assert error.code == expected, error
    assert expected is not None
    assert error.name == lookup(platform, expected).name
    assert error.message
    # a refusal changes nothing, and is in the ground-truth log
    assert (desk.server.positions(desk.login), desk.server.pending_orders(desk.login)) == before
    assert desk.server.executed[-1].outcome is error


def test_mt4_has_no_filling_or_order_mode_rules(make_desk: MakeDesk) -> None:
    """Filling policies and order_mode flags are MT5 symbol properties (reference §3.3, §3.4)."""
    only_limits = int(OrderModeFlag.LIMIT)
    desk = make_desk(Platform.MT4, symbols=_eurusd(order_mode=only_limits, filling_mode=0))
    assert desk.market(filling=2).code == 0
    assert desk.market(symbol="US30", volume=0.1, filling=0).code == 0


def test_requote_carries_the_new_prices(make_desk: MakeDesk, platform: Platform) -> None:
    desk = make_desk(platform, symbols=instant_symbols())
    desk.quote("EURUSD", px(BID, -10), px(ASK, -10))
    desk.quote("EURUSD", BID, ASK)
    error = desk.refused(desk.market_req(price=px(ASK, -10), deviation=5))
    assert (error.bid, error.ask) == (BID, ASK)


@pytest.mark.parametrize("rule", errors.RULES, ids=[r.name for r in errors.RULES])
def test_rule_codes_are_in_the_platform_tables(rule: errors.Rule) -> None:
    assert rule.mt5 in MT5_CODES
    if rule.mt4 is not None:
        assert rule.mt4 in MT4_CODES
        assert rule.code(Platform.MT4) == rule.mt4
    else:
        with pytest.raises(ValueError, match="does not exist"):
            rule.code(Platform.MT4)
    assert rule.code(Platform.MT5) == rule.mt5


def test_rules_are_listed_in_the_order_of_reference_4_6() -> None:
    steps = [r.step for r in errors.RULES]
    assert steps == sorted(steps)
    assert len({(r.mt5, r.mt4) for r in errors.RULES}) == len(errors.RULES)


def test_mt4_and_netting_accounts(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT4)
    with pytest.raises(ValueError, match="hedging"):
        desk.server.open_account(login=2, margin_mode=MarginMode.NETTING)
    server: TradeServer = make_desk(Platform.MT5).server
    server.open_account(login=2, margin_mode=MarginMode.NETTING)
    assert server.account(2).margin_mode == MarginMode.NETTING


def test_success_codes(make_desk: MakeDesk, platform: Platform) -> None:
    desk = make_desk(platform)
    market = desk.market()
    pending = desk.pending(T.BUY_LIMIT, px(ASK, -100))
    modified = desk.send(desk.modify_req(pending.order, px(ASK, -101)))
    cancelled = desk.send(desk.cancel_req(pending.order))
    codes = [market.code, pending.code, modified.code, cancelled.code]
    if platform == Platform.MT4:
        assert codes == [0, 0, 0, 0]
    else:
        assert codes == [10009, 10008, 10009, 10009]
        assert (market.comment, pending.comment) == ("Request executed", "Order placed")


def test_config_can_be_swapped_at_run_time(make_desk: MakeDesk, platform: Platform) -> None:
    desk = make_desk(platform)
    desk.server.config = replace(desk.server.config, connected=False)
    assert desk.refused(desk.market_req()).code == (6 if platform == Platform.MT4 else 10031)
    desk.server.config = replace(desk.server.config, connected=True)
    assert desk.market().volume == 0.1
