"""``close_position``: full and partial closes (reference §1.1 OrderClose, §1.3, §3.6, §4.2, §7).

Figures are computed by hand from the standard quote (EURUSD Bid 1.10000 / Ask 1.10012,
contract 100 000, leverage 100, margin at the open price converted from EUR).
"""

from __future__ import annotations

import pytest

from mtgate.domain.enums import DealEntry, DealReason, MarginMode, OrderState, OrderType, Platform
from mtgate.protocol.messages import OrderGet
from mtsim.config import ServerConfig
from tests.unit.sim.simdesk import ASK, BID, MakeDesk, px

T = OrderType
CONTRACT = 100_000


def _margin(volume: float, price: float) -> float:
    """Forex margin of reference §5.1: lots · contract / leverage, EUR → USD at the price."""
    return volume * CONTRACT / 100 * price


@pytest.mark.parametrize("kind", ["mt4", "mt5-hedging", "mt5-netting"])
def test_full_close_of_a_buy_at_bid_books_profit_and_releases_margin(
    make_desk: MakeDesk, kind: str
) -> None:
    platform = Platform.MT4 if kind == "mt4" else Platform.MT5
    margin_mode = MarginMode.NETTING if kind == "mt5-netting" else MarginMode.HEDGING
    desk = make_desk(platform, margin_mode=margin_mode)
    opened = desk.market(T.BUY, volume=0.5, comment="mg:OPEN1")
    assert desk.server.account(desk.login).margin == round(_margin(0.5, ASK), 2) == 550.06
    desk.quote("EURUSD", 1.10050, 1.10062)
    result = desk.close(opened.order, comment="mg:CLOSE1")
    assert (result.volume, result.price, result.remainder) == (0.5, 1.10050, 0)
    assert desk.server.positions(desk.login) == []
    account = desk.server.account(desk.login)
    profit = round((1.10050 - ASK) * 0.5 * CONTRACT, 2)
    assert profit == 19.0
    assert (account.balance, account.equity, account.profit) == (100_019.0, 100_019.0, 0.0)
    assert (account.margin, account.margin_free, account.margin_level) == (0.0, 100_019.0, 0.0)
    out = desk.server.deals(desk.login)[-1]
    assert (out.entry, out.type, out.volume, out.price, out.profit) == (
        DealEntry.OUT,
        1,
        0.5,
        1.10050,
        profit,
    )
    assert out.reason == DealReason.EXPERT
    assert desk.names("deal") == desk.server.deals(desk.login)
    if platform == Platform.MT4:
        assert (result.code, result.order, result.deal, result.position) == (0, opened.order, 0, 0)
        assert (out.ticket, out.order, out.position_id) == (
            2 * opened.order + 1,
            opened.order,
            opened.order,
        )
        [hist] = desk.server.history_orders(desk.login)
        assert (hist.ticket, hist.type, hist.comment, hist.state) == (
            opened.order,
            T.BUY,
            "mg:OPEN1",  # MT4 OrderClose takes no comment: the order keeps its own
            OrderState.FILLED,
        )
        assert (hist.price_open, hist.price_current, hist.volume_initial) == (ASK, 1.10050, 0.5)
    else:
        assert (result.code, result.comment) == (10009, "Request executed")
        assert (result.deal, result.position) == (out.ticket, opened.order)
        close_order = desk.server.history_orders(desk.login)[-1]
        assert close_order.ticket == result.order == out.order != opened.order
        assert (close_order.type, close_order.state, close_order.position_id) == (
            T.SELL,
            OrderState.FILLED,
            opened.order,
        )
        assert (close_order.comment, out.comment, out.position_id) == (
            "mg:CLOSE1",
            "mg:CLOSE1",
            opened.order,
        )
        # the close intent's client id finds the close order and its deal (docs/protocol.md §9)
        found = desk.send(OrderGet(id=90, client_id="CLOSE1"))
        assert ([o.ticket for o in found.history_orders], found.deals) == ([result.order], [out])


def test_a_sell_closes_at_ask(make_desk: MakeDesk, platform: Platform) -> None:
    desk = make_desk(platform)
    opened = desk.market(T.SELL, volume=0.3)
    desk.quote("EURUSD", 1.09950, 1.09962)
    result = desk.close(opened.order)
    assert result.price == 1.09962
    out = desk.server.deals(desk.login)[-1]
    assert (out.type, out.profit) == (0, round((BID - 1.09962) * 0.3 * CONTRACT, 2)) == (0, 11.4)
    assert desk.server.account(desk.login).balance == 100_011.4


def test_partial_close_figures(make_desk: MakeDesk, platform: Platform) -> None:
    desk = make_desk(platform)
    opened = desk.market(T.BUY, volume=0.5)
    desk.quote("EURUSD", 1.10050, 1.10062)
    result = desk.close(opened.order, 0.2)
    assert (result.volume, result.price) == (0.2, 1.10050)
    account = desk.server.account(desk.login)
    margin = _margin(0.3, ASK)
    equity = 100_000 + 7.6 + 11.4
    assert (account.balance, account.profit, account.equity) == (100_007.6, 11.4, 100_019.0)
    assert account.margin == round(margin, 2) == 330.04
    assert account.margin_free == round(equity - margin, 2) == 99_688.96
    assert account.margin_level == round(equity / margin * 100, 2)
    [pos] = desk.server.positions(desk.login)
    assert (pos.volume, pos.price_open, pos.profit) == (0.3, ASK, 11.4)


def test_mt4_partial_close_renumbers_the_remainder(make_desk: MakeDesk) -> None:
    """Reference §1.3: history under the original ticket with ``to #new``; the rest reopens
    under a new ticket at the original open price (and time) with ``from #old``."""
    desk = make_desk(Platform.MT4)
    sl, tp = px(BID, -100), px(BID, 100)
    opened = desk.market(T.BUY, volume=0.5, sl=sl, tp=tp, magic=42, comment="mg:CHAIN1")
    t0 = desk.clock.now_ms()
    desk.clock.advance(60_000)
    desk.quote("EURUSD", 1.10050, 1.10062)
    first = desk.close(opened.order, 0.2)
    new = first.remainder
    assert new > opened.order
    assert desk.position(opened.order) is None
    remainder = desk.position(new)
    assert (remainder.identifier, remainder.volume, remainder.type) == (new, 0.3, T.BUY)
    assert (remainder.price_open, remainder.time_ms) == (ASK, t0)
    assert (remainder.sl, remainder.tp, remainder.magic) == (sl, tp, 42)
    assert remainder.comment == f"from #{opened.order}"
    [hist] = desk.server.history_orders(desk.login)
    assert (hist.ticket, hist.volume_initial, hist.comment) == (opened.order, 0.2, f"to #{new}")
    assert (hist.price_open, hist.price_current, hist.sl, hist.tp) == (ASK, 1.10050, sl, tp)
    # a second partial close renumbers again; a full close keeps the comment it has
    desk.clock.advance(60_000)
    second = desk.close(new, 0.1)
    newer = second.remainder
    assert desk.position(newer).comment == f"from #{new}"
    assert desk.position(newer).time_ms == t0
    final = desk.close(newer)
    assert final.remainder == 0
    history = desk.server.history_orders(desk.login)
    assert [(h.ticket, h.volume_initial, h.comment) for h in history] == [
        (opened.order, 0.2, f"to #{new}"),
        (new, 0.1, f"to #{newer}"),
        (newer, 0.2, f"from #{new}"),
    ]
    deals = desk.server.deals(desk.login)
    assert [(d.ticket, d.entry, d.volume, d.position_id) for d in deals] == [
        (2 * opened.order, DealEntry.IN, 0.5, opened.order),
        (2 * opened.order + 1, DealEntry.OUT, 0.2, opened.order),
        (2 * new + 1, DealEntry.OUT, 0.1, new),  # the remainder has no IN deal
        (2 * newer + 1, DealEntry.OUT, 0.2, newer),
    ]
    assert desk.server.account(desk.login).balance == round(100_000 + 0.5 * 38, 2)


def test_mt4_renumbering_comments_are_cut_to_the_comment_limit(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT4, config=ServerConfig(comment_max=10))
    opened = desk.market(T.BUY, volume=0.5)
    new = desk.close(opened.order, 0.2).remainder
    assert desk.position(new).comment == f"from #{opened.order}"[:10] == "from #1000"
    assert desk.server.history_orders(desk.login)[0].comment == f"to #{new}"[:10]


def test_mt4_remainder_keeps_its_sl_tp_levels(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT4)
    opened = desk.market(T.BUY, volume=0.5, sl=px(BID, -50))
    new = desk.close(opened.order, 0.2).remainder
    desk.quote("EURUSD", px(BID, -50), px(ASK, -50))
    assert desk.server.positions(desk.login) == []
    out = desk.server.deals(desk.login)[-1]
    assert (out.ticket, out.reason, out.volume) == (2 * new + 1, DealReason.SL, 0.3)
    assert out.comment == f"from #{opened.order}[sl]"


def test_mt5_partial_close_keeps_ticket_identifier_price_and_stops(make_desk: MakeDesk) -> None:
    """Reference §7: a partial close keeps the position's ticket and identifier (unlike MT4)."""
    desk = make_desk(Platform.MT5)
    sl, tp = px(BID, -100), px(BID, 100)
    opened = desk.market(T.BUY, volume=0.5, sl=sl, tp=tp, comment="mg:KEEP1")
    desk.clock.advance(5_000)
    result = desk.close(opened.order, 0.2)
    assert result.remainder == opened.order
    [pos] = desk.server.positions(desk.login)
    assert (pos.ticket, pos.identifier, pos.volume, pos.price_open) == (
        opened.order,
        opened.order,
        0.3,
        ASK,
    )
    assert (pos.sl, pos.tp, pos.comment) == (sl, tp, "mg:KEEP1")
    assert pos.time_update_ms == desk.clock.now_ms() > pos.time_ms
    [deal_in, deal_out] = desk.server.deals(desk.login)
    assert (deal_out.position_id, deal_out.volume, deal_out.order) == (
        opened.order,
        0.2,
        result.order,
    )
    assert deal_out.profit == round((BID - ASK) * 0.2 * CONTRACT, 2) == -2.4
    # the position's deals are found under its ticket (order_get by position)
    found = desk.send(OrderGet(id=91, ticket=opened.order))
    assert found.deals == [deal_in, deal_out]
    assert [p.volume for p in found.positions] == [0.3]


def test_netting_close_reduces_then_closes_keeping_the_identifier(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5, margin_mode=MarginMode.NETTING)
    opened = desk.market(T.BUY, volume=0.5)
    desk.close(opened.order, 0.2)
    [pos] = desk.server.positions(desk.login)
    assert (pos.ticket, pos.identifier, pos.volume) == (opened.order, opened.order, 0.3)
    desk.close(opened.order)
    assert desk.server.positions(desk.login) == []
    entries = [(d.entry, d.volume, d.position_id) for d in desk.server.deals(desk.login)]
    assert entries == [
        (DealEntry.IN, 0.5, opened.order),
        (DealEntry.OUT, 0.2, opened.order),
        (DealEntry.OUT, 0.3, opened.order),
    ]


def test_netting_after_a_reversal_the_position_is_closed_by_its_new_ticket(
    make_desk: MakeDesk,
) -> None:
    desk = make_desk(Platform.MT5, margin_mode=MarginMode.NETTING)
    first = desk.market(T.BUY, volume=0.3)
    reverse = desk.market(T.SELL, volume=0.5)
    [pos] = desk.server.positions(desk.login)
    assert (pos.ticket, pos.identifier) == (reverse.order, first.order)
    # the identifier is not the ticket any more: 10013, and never 10036 (the position is open)
    assert desk.refused(desk.close_req(first.order)).code == 10013
    result = desk.close(reverse.order)
    assert result.position == first.order
    out = desk.server.deals(desk.login)[-1]
    assert (out.entry, out.type, out.volume, out.position_id) == (
        DealEntry.OUT,
        0,
        0.2,
        first.order,
    )


def test_hedged_margin_follows_a_partial_close_of_one_leg(
    make_desk: MakeDesk, platform: Platform
) -> None:
    """Reference §5.1: the hedged volume is charged at margin_hedged / contract (50 000 on
    100 000: half) on both legs, the uncovered excess in full."""
    desk = make_desk(platform)
    buy = desk.market(T.BUY, volume=1.0).order
    sell = desk.market(T.SELL, volume=1.0).order
    mb, ms = _margin(1.0, ASK), _margin(1.0, BID)
    assert desk.server.account(desk.login).margin == round(0.5 * (mb + ms), 2) == 1100.06
    desk.close(sell, 0.4)
    expected = mb * 0.4 + 0.5 * (mb * 0.6 + ms * 0.6)
    assert desk.server.account(desk.login).margin == round(expected, 2) == 1100.08
    desk.close(buy)
    assert desk.server.account(desk.login).margin == round(_margin(0.6, BID), 2) == 660.0


def test_fifo_keeps_an_mt4_remainder_in_its_place(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT4, config=ServerConfig(fifo=True))
    older = desk.market(T.BUY, volume=0.5).order
    desk.clock.advance(1_000)
    newer = desk.market(T.BUY, volume=0.1).order
    rest = desk.close(older, 0.2).remainder  # the oldest may be closed, partly
    assert rest > newer
    assert desk.refused(desk.close_req(newer)).code == 150
    desk.close(rest)
    desk.close(newer)
    assert desk.server.positions(desk.login) == []


def test_market_execution_ignores_the_requested_price(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5)
    ticket = desk.market(T.BUY, volume=0.1).order
    assert desk.close(ticket, price=1.2, deviation=0).price == BID


def test_market_execution_slippage_is_drawn_in_whole_ticks(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5, config=ServerConfig(slippage_points=3, seed=5))
    prices = set()
    for _ in range(30):
        ticket = desk.market(T.BUY, volume=0.01).order
        prices.add(desk.close(ticket).price)
    assert prices <= {px(BID, k) for k in range(-3, 4)}
    assert len(prices) > 1


def test_closes_are_in_the_ground_truth_log(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5)
    ticket = desk.market(T.BUY).order
    request = desk.close_req(ticket)
    result = desk.send(request)
    assert desk.server.executed[-1].request is request
    assert desk.server.executed[-1].outcome is result


@pytest.mark.parametrize("platform", [Platform.MT4, Platform.MT5])
def test_a_close_takes_the_positions_magic(make_desk: MakeDesk, platform: Platform) -> None:
    """protocol §5.2: ``close_position`` carries no magic; MT5's close order and its deal take
    the position's, MT4's closed ticket keeps its own (the §9 history fallback matches on it)."""
    desk = make_desk(platform)
    opened = desk.market(0, 0.1, magic=77)
    desk.close(opened.order)
    deals = desk.server.deals(desk.login)
    assert [d.magic for d in deals] == [77, 77]
