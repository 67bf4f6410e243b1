"""Execution modes (reference §8), the MT4 price-stream rule (§1.1), seeded slippage and
requotes, trade modes (§4.6 #5), sessions (§8) and determinism under a seed."""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec
import pytest

from mtgate.domain.enums import OrderType, Platform, TradeMode
from mtsim.config import ServerConfig, Session, weekday_sessions
from mtsim.server import TradeError
from mtsim.symbols import DEFAULT_SYMBOLS, EURUSD, instant_symbols
from tests.unit.sim.simdesk import ASK, BID, Desk, MakeDesk, make_desk, px

T = OrderType
INSTANT = instant_symbols()


def test_ref_8_market_execution_ignores_price_and_deviation(
    make_desk: MakeDesk, platform: Platform
) -> None:
    desk = make_desk(platform)
    result = desk.market(T.BUY, price=1.23456789, deviation=0)
    assert result.price == ASK


def test_ref_8_mt5_instant_fills_within_the_deviation_at_the_current_price(
    make_desk: MakeDesk,
) -> None:
    desk = make_desk(Platform.MT5, symbols=INSTANT)
    assert desk.market(T.BUY, price=px(ASK, -5), deviation=5).price == ASK
    assert desk.market(T.SELL, price=px(BID, 5), deviation=5).price == BID
    assert desk.market(T.BUY).price == ASK  # price 0: the current Ask
    error = desk.refused(desk.market_req(T.BUY, price=px(ASK, -6), deviation=5))
    assert (error.code, error.bid, error.ask) == (10004, BID, ASK)
    assert len(desk.server.positions(desk.login)) == 3


@pytest.fixture
def mt4_instant(make_desk: MakeDesk) -> Desk:
    """MT4 instant execution; Ask was 1.10002 one second ago, 1.10012 now."""
    desk = make_desk(Platform.MT4, symbols=INSTANT)
    desk.quote("EURUSD", px(BID, -10), px(ASK, -10))
    desk.clock.advance(1000)
    desk.quote("EURUSD", BID, ASK)
    return desk


def test_ref_1_1_recent_price_within_slippage_fills_at_the_current_price(mt4_instant: Desk) -> None:
    result = mt4_instant.market(T.BUY, price=px(ASK, -10), deviation=10)
    assert result.price == ASK


def test_ref_1_1_recent_price_beyond_slippage_is_requoted(mt4_instant: Desk) -> None:
    error = mt4_instant.refused(mt4_instant.market_req(T.BUY, price=px(ASK, -10), deviation=9))
    assert (error.code, error.bid, error.ask) == (138, BID, ASK)


def test_ref_1_1_completely_stale_price_is_requoted_whatever_the_slippage(
    mt4_instant: Desk,
) -> None:
    mt4_instant.clock.advance(mt4_instant.server.config.recent_ms)  # the old quote is now stale
    error = mt4_instant.refused(mt4_instant.market_req(T.BUY, price=px(ASK, -10), deviation=10_000))
    assert error.code == 138


def test_ref_1_1_bid_ask_confusion_is_a_requote(mt4_instant: Desk) -> None:
    error = mt4_instant.refused(mt4_instant.market_req(T.BUY, price=BID, deviation=10_000))
    assert error.code == 138


@pytest.mark.parametrize("price", [px(ASK, -3), 1.100125])
def test_ref_1_1_never_quoted_or_unnormalized_price_is_invalid(
    mt4_instant: Desk, price: float
) -> None:
    assert (
        mt4_instant.refused(mt4_instant.market_req(T.BUY, price=price, deviation=10_000)).code
        == 129
    )


def test_requote_probability_is_seeded(make_desk: MakeDesk) -> None:
    def outcomes(seed: int) -> list[int]:
        desk = make_desk(
            Platform.MT5, symbols=INSTANT, config=ServerConfig(requote_probability=0.5, seed=seed)
        )
        codes = []
        for _ in range(40):
            try:
                codes.append(desk.market(T.BUY, volume=0.01).code)
            except TradeError as exc:
                codes.append(exc.code)
        return codes

    first, again, other = outcomes(1), outcomes(1), outcomes(2)
    assert first == again
    assert first != other
    assert set(first) == {10009, 10004}
    always = make_desk(Platform.MT4, symbols=INSTANT, config=ServerConfig(requote_probability=1.0))
    assert always.refused(always.market_req()).code == 138
    # market execution never requotes
    market = make_desk(Platform.MT5, config=ServerConfig(requote_probability=1.0))
    assert market.market().code == 10009


def test_slippage_is_seeded_within_bounds_and_on_the_tick_grid(make_desk: MakeDesk) -> None:
    def prices(seed: int, symbol: str = "EURUSD", volume: float = 0.01) -> list[float]:
        desk = make_desk(
            Platform.MT5, balance=1e9, config=ServerConfig(slippage_points=20, seed=seed)
        )
        return [desk.market(T.BUY, volume=volume, symbol=symbol).price for _ in range(60)]

    first = prices(3)
    assert first == prices(3)
    assert first != prices(4)
    assert all(abs(p - ASK) <= 20e-5 + 1e-12 for p in first)
    assert len(set(first)) > 10  # actually spread over the range
    index = prices(3, "US30", 0.1)  # 20 points of 0.01 < one 0.25 tick: no slippage possible
    assert set(index) == {44002.0}


def test_index_slippage_moves_in_whole_ticks(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5, balance=1e9, config=ServerConfig(slippage_points=100, seed=5))
    fills = {desk.market(T.SELL, volume=0.1, symbol="US30").price for _ in range(60)}
    assert fills <= {44000.0 + 0.25 * k for k in range(-4, 5)}
    assert len(fills) > 3


# --- trade modes and sessions ---------------------------------------------------------------


def _mode(mode: TradeMode) -> dict[str, Any]:
    return {**DEFAULT_SYMBOLS, "EURUSD": msgspec.structs.replace(EURUSD, trade_mode=mode)}


# mode -> (buys allowed, sells allowed, code refusing the other direction: MT4, MT5)
MODES = {
    TradeMode.FULL: (True, True, None),
    TradeMode.LONG_ONLY: (True, False, (140, 10042)),
    TradeMode.SHORT_ONLY: (False, True, (133, 10043)),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_ref_4_6_trade_mode_directions(
    make_desk: MakeDesk, platform: Platform, mode: TradeMode
) -> None:
    buy_ok, sell_ok, codes = MODES[mode]
    desk = make_desk(platform, symbols=_mode(mode))
    code = None if codes is None else codes[platform == Platform.MT5]
    limit_price = {T.BUY_LIMIT: px(ASK, -100), T.SELL_LIMIT: px(BID, 100)}
    for market_type, pending_type, ok in (
        (T.BUY, T.BUY_LIMIT, buy_ok),
        (T.SELL, T.SELL_LIMIT, sell_ok),
    ):
        if ok:
            assert desk.market(market_type).volume == 0.1
            assert desk.pending(pending_type, limit_price[pending_type]).order > 0
        else:
            assert desk.refused(desk.market_req(market_type)).code == code
            assert (
                desk.refused(desk.pending_req(pending_type, limit_price[pending_type])).code == code
            )


def test_disabled_symbol_refuses_modify_and_cancel_too(
    make_desk: MakeDesk, platform: Platform
) -> None:
    desk = make_desk(platform)
    ticket = desk.pending(T.BUY_LIMIT, px(ASK, -100)).order
    desk.server.symbols["EURUSD"] = msgspec.structs.replace(EURUSD, trade_mode=TradeMode.DISABLED)
    code = 133 if platform == Platform.MT4 else 10017
    assert desk.refused(desk.cancel_req(ticket)).code == code
    assert desk.refused(desk.modify_req(ticket, px(ASK, -90))).code == code


def test_ref_8_sessions(make_desk: MakeDesk, platform: Platform) -> None:
    """The test clock starts Thursday 00:00 server time; EURUSD trades 01:00-23:00 Mon-Fri."""
    config = ServerConfig(sessions={"EURUSD": weekday_sessions(60, 23 * 60)})
    desk = make_desk(platform, config=config)
    closed = 132 if platform == Platform.MT4 else 10018
    assert desk.refused(desk.market_req()).code == closed
    assert desk.market(symbol="USDJPY").volume == 0.1  # not listed: always open
    desk.clock.advance(3_600_000)
    ticket = desk.pending(T.BUY_LIMIT, px(ASK, -100)).order
    desk.clock.advance(22 * 3_600_000)  # 23:00: closed again
    assert desk.refused(desk.cancel_req(ticket)).code == closed
    # no activation outside the session, even when the price is reached
    desk.quote("EURUSD", px(BID, -100), px(ASK, -100))
    assert len(desk.server.pending_orders(desk.login)) == 1
    desk.clock.advance(2 * 3_600_000)  # Friday 01:00
    desk.quote("EURUSD", px(BID, -101), px(ASK, -101))
    assert desk.server.pending_orders(desk.login) == []


def test_session_validation() -> None:
    with pytest.raises(ValueError, match="bad session"):
        Session(7, 0, 10)
    with pytest.raises(ValueError, match="bad session"):
        Session(1, 600, 600)


# --- determinism ------------------------------------------------------------------------------


def _script(seed: int) -> tuple[list[Any], list[Any], list[Any]]:
    """A walking feed, slippage and requotes, orders between clock steps."""
    config = ServerConfig(slippage_points=10, requote_probability=0.2, seed=seed)
    desk = make_desk(Platform.MT5, symbols=instant_symbols(), config=config, step_ms=100, seed=seed)
    for i in range(60):
        desk.clock.advance(250)
        desk.server.step()
        bid, ask, _ = desk.server.feed.quote("EURUSD")
        with contextlib.suppress(TradeError):  # refusals are in the executed log
            if i % 3 == 0:
                desk.pending(T.BUY_LIMIT, px(ask, -30), sl=px(ask, -200))
            desk.market(T.BUY if i % 2 else T.SELL, volume=0.01, sl=px(bid, -40) if i % 2 else 0.0)
    outcomes = [
        e.outcome if not isinstance(e.outcome, Exception) else repr(e.outcome)
        for e in desk.server.executed
    ]
    return outcomes, desk.server.deals(desk.login), desk.events


def test_determinism_under_a_seed() -> None:
    first = _script(11)
    assert first == _script(11)
    assert first[0] != _script(12)[0]
    assert len(first[1]) > 20
