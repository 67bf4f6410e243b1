"""Stop out (reference §5.2) and manual trades (the account holder, not the bridge)."""

from __future__ import annotations

import pytest

from mtgate.domain.enums import DealEntry, DealReason, OrderType, Platform
from mtsim.config import ServerConfig
from mtsim.errors import TradeError
from tests.unit.sim.simdesk import ASK, BID, Desk, MakeDesk, px

T = OrderType
SECOND_ASK = 1.10224


def _two_buys(desk: Desk) -> tuple[int, int]:
    """0.5 at Ask 1.10012 and 0.5 at Ask 1.10224: margin 550.06 + 551.12 = 1101.18."""
    first = desk.market(T.BUY, volume=0.5).order
    desk.quote("EURUSD", 1.10212, SECOND_ASK)
    second = desk.market(T.BUY, volume=0.5).order
    return first, second


def _drop(desk: Desk, bid: float) -> None:
    desk.quote("EURUSD", bid, round(bid + 0.00012, 5))


def test_stop_out_closes_the_worst_position_first_until_the_level_recovers(
    make_desk: MakeDesk, platform: Platform
) -> None:
    desk = make_desk(platform, balance=1_200.0, config=ServerConfig(stop_out=True))
    first, second = _two_buys(desk)
    _drop(desk, 1.09500)  # equity 1200 - 256 - 362 = 582: level 52.9 %, above 50
    assert len(desk.server.positions(desk.login)) == 2
    _drop(desk, 1.09400)  # equity 1200 - 306 - 412 = 482: level 43.8 %
    [left] = desk.server.positions(desk.login)
    assert left.ticket == first  # the larger loss (the higher open price) went first
    out = desk.server.deals(desk.login)[-1]
    loss = round((1.09400 - SECOND_ASK) * 0.5 * 100_000, 2)
    assert loss == -412.0
    assert (out.entry, out.reason, out.volume, out.price, out.profit) == (
        DealEntry.OUT,
        DealReason.SO,
        0.5,
        1.09400,
        loss,
    )
    marker = f"so: {482.0 / 1101.18 * 100:.1f}%/482.00/1101.18"
    assert marker == "so: 43.8%/482.00/1101.18"
    assert out.comment == marker
    assert desk.server.history_orders(desk.login)[-1].comment == marker
    if platform == Platform.MT4:
        assert out.ticket == 2 * second + 1
    account = desk.server.account(desk.login)
    assert (account.balance, account.margin) == (788.0, 550.06)
    assert account.margin_level == round((788.0 - 306.0) / 550.06 * 100, 2)  # 87.6 %: stays
    _drop(desk, 1.08900)  # equity 788 - 556 = 232: 42.2 %
    assert desk.server.positions(desk.login) == []
    assert desk.server.account(desk.login).balance == 232.0


def test_without_stop_out_the_account_may_sink(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5, balance=1_200.0)
    _two_buys(desk)
    _drop(desk, 1.09400)
    assert len(desk.server.positions(desk.login)) == 2
    assert desk.server.account(desk.login).margin_level < 50


def test_manual_trades_are_client_trades_outside_the_bridge_log(
    make_desk: MakeDesk, platform: Platform
) -> None:
    desk = make_desk(platform, config=ServerConfig(trade_allowed=False, connected=False))
    opened = desk.server.manual_market_order(desk.login, "EURUSD", T.BUY, 0.3, sl=px(BID, -50))
    [pos] = desk.server.positions(desk.login)
    assert (pos.ticket, pos.magic, pos.comment, pos.sl, pos.price_open) == (
        opened.order,
        0,
        "",
        px(BID, -50),
        ASK,
    )
    closed = desk.server.manual_close(desk.login, opened.order, 0.1)
    rest = closed.remainder
    desk.server.manual_close(desk.login, rest)
    deals = desk.server.deals(desk.login)
    assert [(d.entry, d.reason, d.volume, d.magic) for d in deals] == [
        (DealEntry.IN, DealReason.CLIENT, 0.3, 0),
        (DealEntry.OUT, DealReason.CLIENT, 0.1, 0),
        (DealEntry.OUT, DealReason.CLIENT, 0.2, 0),
    ]
    assert desk.names("deal") == deals  # the same events as the bridge's trades
    assert desk.server.executed == []  # not the bridge's requests
    if platform == Platform.MT4:
        assert rest != opened.order
    else:
        assert rest == opened.order


def test_manual_trades_follow_the_trade_rules(make_desk: MakeDesk, platform: Platform) -> None:
    desk = make_desk(platform)
    with pytest.raises(TradeError) as info:
        desk.server.manual_market_order(desk.login, "EURUSD", T.BUY, 0.015)
    assert info.value.code == (131 if platform == Platform.MT4 else 10014)
    with pytest.raises(TradeError) as info:
        desk.server.manual_close(desk.login, 12345)
    assert info.value.code == (4108 if platform == Platform.MT4 else 10013)
    assert desk.server.positions(desk.login) == []
