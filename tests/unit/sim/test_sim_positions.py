"""Positions: netting vs hedging (reference §3.6, §7) and SL/TP closes (§4.2, §1.1)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from mtgate.domain.enums import (
    DealEntry,
    DealReason,
    MarginMode,
    OrderState,
    OrderType,
    Platform,
    TradeMode,
)
from mtgate.protocol.messages import OrderGet
from mtsim.symbols import DEFAULT_SYMBOLS, EURUSD
from tests.unit.sim.simdesk import ASK, BID, Desk, MakeDesk, px

T = OrderType
CONTRACT = 100_000


@pytest.fixture
def netting(make_desk: MakeDesk) -> Desk:
    return make_desk(Platform.MT5, margin_mode=MarginMode.NETTING)


def test_ref_3_6_netting_add_averages_the_open_price(netting: Desk) -> None:
    first = netting.market(T.BUY, volume=1.0)
    netting.quote("EURUSD", 1.10100, 1.10112)
    second = netting.market(T.BUY, volume=0.5)
    [pos] = netting.server.positions(netting.login)
    assert (pos.ticket, pos.identifier, pos.volume) == (first.order, first.order, 1.5)
    assert pos.price_open == pytest.approx((1.0 * ASK + 0.5 * 1.10112) / 1.5, abs=1e-12)
    assert second.position == first.order
    deals = netting.server.deals(netting.login)
    assert [(d.entry, d.volume, d.position_id) for d in deals] == [
        (DealEntry.IN, 1.0, first.order),
        (DealEntry.IN, 0.5, first.order),
    ]


def test_ref_3_6_netting_reduce_keeps_price_and_stops_and_books_profit(netting: Desk) -> None:
    first = netting.market(T.BUY, volume=1.0, sl=px(BID, -100), tp=px(BID, 100))
    netting.quote("EURUSD", 1.10050, 1.10062)
    reduce = netting.market(T.SELL, volume=0.4)
    [pos] = netting.server.positions(netting.login)
    assert (pos.ticket, pos.volume, pos.price_open) == (first.order, 0.6, ASK)
    assert (pos.sl, pos.tp) == (px(BID, -100), px(BID, 100))
    out = netting.server.deals(netting.login)[-1]
    assert (out.entry, out.volume, out.order, out.position_id) == (
        DealEntry.OUT,
        0.4,
        reduce.order,
        first.order,
    )
    assert out.profit == round((1.10050 - ASK) * 0.4 * CONTRACT, 2) == 15.2
    assert netting.server.account(netting.login).balance == 100_015.2


def test_ref_3_6_netting_reversal_is_one_inout_deal_keeping_the_identifier(netting: Desk) -> None:
    first = netting.market(T.BUY, volume=1.0)
    netting.quote("EURUSD", 1.10100, 1.10112)
    reverse = netting.market(T.SELL, volume=1.5, sl=px(1.10112, 100), comment="mg:REV")
    [pos] = netting.server.positions(netting.login)
    assert pos.identifier == first.order  # reference §7: the identifier never changes
    assert pos.ticket == reverse.order  # the ticket becomes the reversing order's
    assert (pos.type, pos.volume, pos.price_open) == (1, 0.5, 1.10100)
    assert (pos.sl, pos.comment) == (px(1.10112, 100), "mg:REV")
    [_, inout] = netting.server.deals(netting.login)
    assert (inout.entry, inout.volume, inout.position_id) == (DealEntry.INOUT, 1.5, first.order)
    assert inout.profit == round((1.10100 - ASK) * 1.0 * CONTRACT, 2) == 88.0
    assert reverse.position == first.order
    # the position is found under its identifier and under its new ticket
    for ticket in (first.order, reverse.order):
        found = netting.send(OrderGet(id=99, ticket=ticket))
        assert [p.ticket for p in found.positions] == [reverse.order]


def test_ref_3_6_netting_opposite_equal_volume_closes(netting: Desk) -> None:
    first = netting.market(T.BUY, volume=0.3)
    netting.market(T.SELL, volume=0.3)
    assert netting.server.positions(netting.login) == []
    out = netting.server.deals(netting.login)[-1]
    assert (out.entry, out.position_id, out.profit) == (DealEntry.OUT, first.order, -3.6)


def test_ref_3_6_netting_sl_tp_come_from_the_latest_order_zeros_delete(netting: Desk) -> None:
    netting.market(T.BUY, volume=0.1, sl=px(BID, -100), tp=px(BID, 100))
    netting.market(T.BUY, volume=0.1, tp=px(BID, 200))
    [pos] = netting.server.positions(netting.login)
    assert (pos.sl, pos.tp) == (0.0, px(BID, 200))
    # the deleted SL no longer triggers; the new TP does
    netting.quote("EURUSD", px(BID, -100), px(ASK, -100))
    assert len(netting.server.positions(netting.login)) == 1
    netting.quote("EURUSD", px(BID, 200), px(ASK, 200))
    assert netting.server.positions(netting.login) == []
    assert netting.server.deals(netting.login)[-1].reason == DealReason.TP


def test_netting_close_only_symbol_still_allows_reducing(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5, margin_mode=MarginMode.NETTING)
    desk.market(T.BUY, volume=0.5)
    desk.server.symbols["EURUSD"] = msgspec.structs.replace(EURUSD, trade_mode=TradeMode.CLOSE_ONLY)
    assert desk.market(T.SELL, volume=0.2).volume == 0.2
    assert desk.refused(desk.market_req(T.BUY, volume=0.1)).code == 10044
    assert desk.refused(desk.market_req(T.SELL, volume=0.5)).code == 10044  # would reverse
    assert DEFAULT_SYMBOLS["EURUSD"].trade_mode == TradeMode.FULL


def test_ref_3_6_hedging_opens_one_position_per_fill(
    make_desk: MakeDesk, platform: Platform
) -> None:
    desk = make_desk(platform)
    results = [desk.market(T.BUY), desk.market(T.BUY), desk.market(T.SELL)]
    positions = desk.server.positions(desk.login)
    assert [p.ticket for p in positions] == [r.order for r in results]
    assert [p.identifier for p in positions] == [r.order for r in results]
    assert [p.type for p in positions] == [0, 0, 1]
    assert [(d.entry, d.order) for d in desk.server.deals(desk.login)] == [
        (DealEntry.IN, r.order) for r in results
    ]


# --- SL / TP ---------------------------------------------------------------------------------


# (position type, field, level, trigger quote one tick before, trigger quote)
SLTP = [
    (T.BUY, "sl", px(BID, -50), (px(BID, -49), px(ASK, -49)), (px(BID, -50), px(ASK, -50))),
    (T.BUY, "tp", px(BID, 100), (px(BID, 99), px(ASK, 99)), (px(BID, 100), px(ASK, 100))),
    (T.SELL, "sl", px(ASK, 50), (px(BID, 49), px(ASK, 49)), (px(BID, 50), px(ASK, 50))),
    (T.SELL, "tp", px(ASK, -100), (px(BID, -99), px(ASK, -99)), (px(BID, -100), px(ASK, -100))),
]


@pytest.mark.parametrize(("order_type", "field", "level", "before", "at"), SLTP)
def test_ref_4_2_sl_tp_trigger_on_bid_for_buys_ask_for_sells(
    make_desk: MakeDesk,
    platform: Platform,
    order_type: OrderType,
    field: str,
    level: float,
    before: tuple[float, float],
    at: tuple[float, float],
) -> None:
    desk = make_desk(platform)
    stops: dict[str, Any] = {field: level}
    opened = desk.market(order_type, volume=0.1, comment="mg:SLTP1", **stops)
    desk.quote("EURUSD", *before)
    assert len(desk.server.positions(desk.login)) == 1
    desk.quote("EURUSD", *at)
    assert desk.server.positions(desk.login) == []
    reason = DealReason.SL if field == "sl" else DealReason.TP
    out = desk.server.deals(desk.login)[-1]
    assert (out.entry, out.reason, out.volume, out.price) == (DealEntry.OUT, reason, 0.1, level)
    assert out.type == (1 if order_type == T.BUY else 0)  # the closing deal is opposite
    expected_profit = round(
        ((level - opened.price) if order_type == T.BUY else (opened.price - level))
        * 0.1
        * CONTRACT,
        2,
    )
    assert out.profit == expected_profit
    assert desk.server.account(desk.login).balance == round(100_000 + expected_profit, 2)
    assert desk.names("deal")[-1] == out
    if platform == Platform.MT4:
        assert out.comment == f"mg:SLTP1[{field}]"  # reference §1.1
        assert (out.ticket, out.order, out.position_id) == (
            2 * opened.order + 1,
            opened.order,
            opened.order,
        )
        [hist] = desk.server.history_orders(desk.login)
        assert (hist.ticket, hist.type, hist.comment) == (
            opened.order,
            order_type,
            f"mg:SLTP1[{field}]",
        )
        assert (hist.price_open, hist.price_current) == (opened.price, level)
    else:
        assert out.comment == f"[{field} {level:.5f}]"
        close_order = desk.server.history_orders(desk.login)[-1]
        assert close_order.ticket == out.order != opened.order
        assert (close_order.position_id, close_order.state) == (opened.order, OrderState.FILLED)
        assert close_order.type == (1 if order_type == T.BUY else 0)


def test_sl_on_a_gap_closes_at_the_market_tp_at_its_level(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5)
    desk.market(T.BUY, sl=px(BID, -50))
    desk.market(T.BUY, tp=px(BID, 50))
    desk.quote("EURUSD", px(BID, -80), px(ASK, -80))
    assert desk.server.deals(desk.login)[-1].price == px(BID, -80)
    desk.quote("EURUSD", px(BID, 90), px(ASK, 90))
    assert desk.server.deals(desk.login)[-1].price == px(BID, 50)


def test_mt4_marker_replaces_the_end_of_a_full_comment(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT4)
    comment = "mg:" + "X" * 40  # truncated to 31 on entry
    desk.market(T.BUY, sl=px(BID, -50), comment=comment)
    assert desk.server.positions(desk.login)[0].comment == comment[:31]
    desk.quote("EURUSD", px(BID, -50), px(ASK, -50))
    closed = desk.server.history_orders(desk.login)[0].comment
    assert closed == comment[:27] + "[sl]"
    assert len(closed) == 31


def test_mt4_tp_marker_on_a_sell_and_a_full_comment(make_desk: MakeDesk) -> None:
    """``[tp]`` like ``[sl]``: appended to the ticket's comment in history and on its out
    deal, cutting the comment so the result fits 31 chars."""
    desk = make_desk(Platform.MT4)
    short = desk.market(T.SELL, tp=px(ASK, -50), comment="mg:TP1").order
    long = desk.market(T.SELL, tp=px(ASK, -50), comment="mg:" + "Y" * 28).order
    desk.quote("EURUSD", px(BID, -50), px(ASK, -50))  # Ask reaches the sells' TP
    closed = {h.ticket: h.comment for h in desk.server.history_orders(desk.login)}
    assert closed == {short: "mg:TP1[tp]", long: "mg:" + "Y" * 24 + "[tp]"}
    outs = {d.order: (d.comment, d.reason) for d in desk.server.deals(desk.login) if d.entry}
    assert outs == {
        short: ("mg:TP1[tp]", DealReason.TP),
        long: ("mg:" + "Y" * 24 + "[tp]", DealReason.TP),
    }


def test_mt5_sl_tp_closes_carry_the_level_on_the_close_order_and_deal(
    make_desk: MakeDesk,
) -> None:
    """MT5: the position keeps no marker; the server's close order and its deal carry
    ``[sl <level>]`` / ``[tp <level>]`` with the symbol's digits."""
    desk = make_desk(Platform.MT5)
    sell = desk.market(T.SELL, sl=px(ASK, 50), comment="mg:S").order
    buy = desk.market(T.BUY, tp=px(BID, 40), comment="mg:B").order
    desk.quote("EURUSD", px(BID, 50), px(ASK, 50))  # Ask reaches the sell's SL, Bid the TP
    by_position = {
        o.position_id: o.comment
        for o in desk.server.history_orders(desk.login)
        if o.comment.startswith("[")
    }
    assert by_position == {sell: f"[sl {px(ASK, 50):.5f}]", buy: f"[tp {px(BID, 40):.5f}]"}
    outs = {d.position_id: (d.comment, d.reason) for d in desk.server.deals(desk.login) if d.entry}
    assert outs == {
        sell: (f"[sl {px(ASK, 50):.5f}]", DealReason.SL),
        buy: (f"[tp {px(BID, 40):.5f}]", DealReason.TP),
    }


def test_one_quote_closes_every_position_it_reaches_in_opening_order(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5, balance=1e7)
    tickets = [desk.market(T.BUY, sl=px(BID, -50 - i)).order for i in range(20)]
    desk.market(T.BUY, sl=px(BID, -200))
    desk.quote("EURUSD", px(BID, -60), px(ASK, -60))
    closed = [d.position_id for d in desk.server.deals(desk.login) if d.entry == DealEntry.OUT]
    assert closed == tickets[:11]
    assert len(desk.server.positions(desk.login)) == 10
