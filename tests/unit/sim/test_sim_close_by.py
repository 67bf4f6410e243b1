"""``close_by``: closing a position by an opposite one (reference §1.3 [O], §3.6, §7).

A buy of 0.3 at Ask 1.10012, then (quote 1.10050 / 1.10062) a sell of 0.2 at Bid 1.10050:
closed by each other at the sell's open price, the buy books (1.10050 - 1.10012) · 0.2 lots =
7.60 and the sell 0; 0.1 of the buy survives.
"""

from __future__ import annotations

import pytest

from mtgate.domain.enums import DealEntry, DealReason, OrderState, OrderType, Platform
from mtsim.closing import ORDER_TYPE_CLOSE_BY
from tests.unit.sim.simdesk import ASK, Desk, MakeDesk

T = OrderType
CONTRACT = 100_000
SELL_OPEN = 1.10050


def _pair(desk: Desk, buy: float = 0.3, sell: float = 0.2) -> tuple[int, int]:
    first = desk.market(T.BUY, volume=buy, comment="mg:BUY1").order
    desk.clock.advance(10_000)
    desk.quote("EURUSD", SELL_OPEN, 1.10062)
    second = desk.market(T.SELL, volume=sell, comment="mg:SELL1").order
    return first, second


def test_mt5_close_by_order_deals_and_survivor(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5)
    buy, sell = _pair(desk)
    desk.clock.advance(10_000)
    result = desk.close_by(buy, sell)
    # the larger position survives with the difference, its direction, open price and ticket
    [pos] = desk.server.positions(desk.login)
    assert (pos.ticket, pos.identifier, pos.type, pos.volume, pos.price_open) == (
        buy,
        buy,
        T.BUY,
        0.1,
        ASK,
    )
    order = desk.server.history_orders(desk.login)[-1]
    assert (order.ticket, order.type, order.state) == (
        result.order,
        ORDER_TYPE_CLOSE_BY,
        OrderState.FILLED,
    )
    assert (order.comment, order.position_id, order.volume_initial) == (
        f"close #{buy} by #{sell}",
        buy,
        0.2,
    )
    deal_a, deal_b = desk.server.deals(desk.login)[-2:]
    profit = round((SELL_OPEN - ASK) * 0.2 * CONTRACT, 2)
    assert profit == 7.6
    assert [
        (d.entry, d.type, d.volume, d.price, d.position_id, d.order, d.profit)
        for d in (deal_a, deal_b)
    ] == [
        (DealEntry.OUT_BY, 1, 0.2, SELL_OPEN, buy, result.order, profit),
        (DealEntry.OUT_BY, 0, 0.2, SELL_OPEN, sell, result.order, 0.0),
    ]
    assert (result.code, result.deal, result.position, result.remainder) == (
        10009,
        deal_a.ticket,
        buy,
        buy,
    )
    assert (result.volume, result.price) == (0.2, SELL_OPEN)
    assert desk.names("deal")[-2:] == [deal_a, deal_b]
    account = desk.server.account(desk.login)
    assert account.balance == 100_007.6
    assert account.margin == round(0.1 * CONTRACT / 100 * ASK, 2) == 110.01


def test_close_by_pays_no_spread(make_desk: MakeDesk, platform: Platform) -> None:
    """Closing both at market pays the spread (the sell closes at Ask); a close-by offsets
    both at one price (reference §7)."""
    by_market = make_desk(platform)
    buy, sell = _pair(by_market, 0.2, 0.2)
    by_market.close(buy)
    by_market.close(sell)
    closed_by = make_desk(platform)
    buy, sell = _pair(closed_by, 0.2, 0.2)
    result = closed_by.close_by(buy, sell)
    assert result.remainder == 0
    assert closed_by.server.positions(closed_by.login) == []
    spread_cost = round(0.00012 * 0.2 * CONTRACT, 2)
    assert by_market.server.account(1).balance == 100_005.2
    assert closed_by.server.account(1).balance == round(100_005.2 + spread_cost, 2) == 100_007.6
    assert closed_by.server.account(1).margin == 0.0


@pytest.mark.parametrize("reverse", [False, True], ids=["buy-by-sell", "sell-by-buy"])
def test_the_total_profit_does_not_depend_on_which_position_is_named_first(
    make_desk: MakeDesk, platform: Platform, reverse: bool
) -> None:
    desk = make_desk(platform)
    buy, sell = _pair(desk)
    result = desk.close_by(sell, buy) if reverse else desk.close_by(buy, sell)
    outs = [
        d for d in desk.server.deals(desk.login) if d.entry in (DealEntry.OUT, DealEntry.OUT_BY)
    ]
    assert sum(d.profit for d in outs) == 7.6
    assert outs[0].profit == 7.6  # the profit is booked on one deal, the requested one's
    assert outs[1].profit == 0.0
    assert result.price == (ASK if reverse else SELL_OPEN)  # the offset: position_by's open
    [pos] = desk.server.positions(desk.login)
    assert (pos.type, pos.volume, pos.price_open) == (T.BUY, 0.1, ASK)


def test_mt5_the_opposite_survives_when_it_is_larger(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5)
    buy, sell = _pair(desk, 0.1, 0.3)
    result = desk.close_by(buy, sell)
    [pos] = desk.server.positions(desk.login)
    assert (pos.ticket, pos.type, pos.volume, pos.price_open) == (sell, T.SELL, 0.2, SELL_OPEN)
    assert result.remainder == sell
    assert desk.server.deals(desk.login)[-2].profit == round((SELL_OPEN - ASK) * 0.1 * CONTRACT, 2)


def test_mt4_close_by_closes_both_and_reopens_the_rest(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT4)
    t0 = desk.clock.now_ms()
    buy, sell = _pair(desk)
    result = desk.close_by(buy, sell)
    new = result.remainder
    assert new > sell
    assert (result.code, result.order, result.deal, result.position) == (0, buy, 0, 0)
    [pos] = desk.server.positions(desk.login)
    assert (pos.ticket, pos.identifier, pos.type, pos.volume) == (new, new, T.BUY, 0.1)
    assert (pos.price_open, pos.time_ms, pos.comment) == (ASK, t0, f"from #{buy}")
    history = desk.server.history_orders(desk.login)
    assert [(h.ticket, h.type, h.volume_initial, h.price_current, h.comment) for h in history] == [
        (buy, T.BUY, 0.2, SELL_OPEN, f"close hedge by #{sell}"),
        (sell, T.SELL, 0.2, SELL_OPEN, f"close hedge by #{buy}"),
    ]
    outs = desk.server.deals(desk.login)[-2:]
    assert [(d.ticket, d.entry, d.type, d.volume, d.profit) for d in outs] == [
        (2 * buy + 1, DealEntry.OUT, 1, 0.2, 7.6),
        (2 * sell + 1, DealEntry.OUT, 0, 0.2, 0.0),
    ]
    assert all(d.reason == DealReason.EXPERT for d in outs)
    assert desk.server.account(desk.login).balance == 100_007.6


def test_mt4_equal_volumes_leave_nothing(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT4)
    buy, sell = _pair(desk, 0.2, 0.2)
    assert desk.close_by(sell, buy).remainder == 0
    assert desk.server.positions(desk.login) == []
    assert [h.comment for h in desk.server.history_orders(desk.login)] == [
        f"close hedge by #{buy}",
        f"close hedge by #{sell}",
    ]


def test_closed_tickets_cannot_be_closed_by_again(make_desk: MakeDesk, platform: Platform) -> None:
    desk = make_desk(platform)
    buy, sell = _pair(desk, 0.2, 0.2)
    desk.close_by(buy, sell)
    error = desk.refused(desk.close_by_req(buy, sell))
    assert error.code == (4108 if platform == Platform.MT4 else 10036)
