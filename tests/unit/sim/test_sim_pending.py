"""Pending orders: activation on the right price (reference §4.2), stop-limit (§3.1), expiration
and cancellation (§3.4, §7), with the events and history records each produces."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtgate.domain.enums import DealEntry, MarginMode, OrderState, OrderType, Platform
from mtgate.protocol.messages import AccountReport, DealReport, OrderReport
from mtsim.config import DAY_MS, ServerConfig
from tests.unit.sim.simdesk import ASK, BID, Desk, MakeDesk, make_desk, px

T = OrderType
SPREAD = 12


def _market_at(desk: Desk, *, bid: float | None = None, ask: float | None = None) -> None:
    """Quote with the standard spread, placing either Bid or Ask exactly."""
    if bid is not None:
        desk.quote("EURUSD", bid, px(bid, SPREAD))
    else:
        assert ask is not None
        desk.quote("EURUSD", px(ask, -SPREAD), ask)


# (type, order price, trigger side, side value one tick before, at the trigger, a gap beyond)
ACTIVATIONS = [
    (T.BUY_LIMIT, px(ASK, -100), "ask", 1, 0, -5),
    (T.BUY_STOP, px(ASK, 100), "ask", -1, 0, 5),
    (T.SELL_LIMIT, px(BID, 100), "bid", -1, 0, 5),
    (T.SELL_STOP, px(BID, -100), "bid", 1, 0, -5),
]


@pytest.mark.parametrize(("order_type", "price", "side", "before", "at", "gap"), ACTIVATIONS)
def test_ref_4_2_activation_on_the_right_price_and_not_one_tick_before(
    make_desk: MakeDesk,
    platform: Platform,
    order_type: OrderType,
    price: float,
    side: str,
    before: int,
    at: int,
    gap: int,
) -> None:
    desk = make_desk(platform)
    ticket = desk.pending(order_type, price, volume=0.2, sl=0.0, comment="mg:PEND1").order
    _market_at(desk, **{side: px(price, before)})
    assert [o.ticket for o in desk.server.pending_orders(desk.login)] == [ticket]
    assert desk.server.positions(desk.login) == []
    _market_at(desk, **{side: px(price, at)})
    assert desk.server.pending_orders(desk.login) == []
    [pos] = desk.server.positions(desk.login)
    assert pos.ticket == ticket  # MT4: the ticket is kept; MT5 hedging: position = order ticket
    assert pos.identifier == ticket
    assert pos.type == (0 if order_type.is_buy else 1)
    assert pos.volume == 0.2
    assert pos.price_open == price
    assert pos.comment == "mg:PEND1"
    [deal] = desk.names("deal")
    assert (deal.order, deal.position_id, deal.entry, deal.volume) == (
        ticket,
        ticket,
        DealEntry.IN,
        0.2,
    )
    assert deal.price == price
    filled = desk.names("order")[-1]
    assert (filled.ticket, filled.state, filled.type) == (ticket, OrderState.FILLED, order_type)


@pytest.mark.parametrize(
    ("order_type", "price", "side"),
    [(T.BUY_LIMIT, px(ASK, -100), "bid"), (T.SELL_LIMIT, px(BID, 100), "ask")],
)
def test_ref_4_2_the_other_side_of_the_quote_does_not_trigger(
    make_desk: MakeDesk, order_type: OrderType, price: float, side: str
) -> None:
    """A buy limit waits for Ask: Bid at the price (Ask a spread above) is not enough."""
    desk = make_desk(Platform.MT5)
    desk.pending(order_type, price)
    _market_at(desk, **{side: price})
    assert len(desk.server.pending_orders(desk.login)) == 1


@pytest.mark.parametrize(("order_type", "price", "side", "before", "at", "gap"), ACTIVATIONS)
def test_fill_price_limit_at_its_price_stop_at_the_market(
    make_desk: MakeDesk,
    order_type: OrderType,
    price: float,
    side: str,
    before: int,
    at: int,
    gap: int,
) -> None:
    desk = make_desk(Platform.MT5)
    desk.pending(order_type, price)
    gap_price = px(price, gap)
    _market_at(desk, **{side: gap_price})
    [pos] = desk.server.positions(desk.login)
    assert pos.price_open == (price if order_type.is_limit else gap_price)


def test_mt5_pending_fill_records_the_order_filled_in_history(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5)
    placed = desk.pending(T.BUY_LIMIT, px(ASK, -100))
    assert (placed.code, placed.deal, placed.position) == (10008, 0, 0)
    _market_at(desk, ask=px(ASK, -100))
    [hist] = desk.server.history_orders(desk.login)
    assert (hist.ticket, hist.state, hist.position_id, hist.volume_current) == (
        placed.order,
        OrderState.FILLED,
        placed.order,
        0.0,
    )


def test_mt4_triggered_order_stays_in_the_trading_pool(make_desk: MakeDesk) -> None:
    """MT4 (reference §1.3): the triggered ticket becomes the open order, not a history record."""
    desk = make_desk(Platform.MT4)
    ticket = desk.pending(T.SELL_STOP, px(BID, -100)).order
    _market_at(desk, bid=px(BID, -100))
    assert desk.server.history_orders(desk.login) == []
    [deal] = desk.server.deals(desk.login)
    assert deal.ticket == 2 * ticket  # synthetic IN deal


def test_ref_3_1_buy_stop_limit_places_a_limit_keeping_the_ticket(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5)
    stop, limit = px(ASK, 100), px(ASK, 80)
    ticket = desk.pending(T.BUY_STOP_LIMIT, stop, stoplimit=limit, sl=px(limit, -50)).order
    _market_at(desk, ask=px(stop, -1))
    assert desk.server.pending_orders(desk.login)[0].type == T.BUY_STOP_LIMIT
    _market_at(desk, ask=stop)
    [order] = desk.server.pending_orders(desk.login)
    assert (order.ticket, order.type, order.price_open, order.stoplimit) == (
        ticket,
        T.BUY_LIMIT,
        limit,
        0.0,
    )
    assert order.sl == px(limit, -50)
    assert desk.names("order")[-1].type == T.BUY_LIMIT
    assert desk.server.positions(desk.login) == []
    _market_at(desk, ask=px(limit, 1))
    assert desk.server.positions(desk.login) == []
    _market_at(desk, ask=limit)
    [pos] = desk.server.positions(desk.login)
    assert (pos.ticket, pos.price_open, pos.sl) == (ticket, limit, px(limit, -50))


def test_sell_stop_limit_fills_on_the_same_quote_when_the_limit_is_reached(
    make_desk: MakeDesk,
) -> None:
    desk = make_desk(Platform.MT5)
    stop = px(BID, -100)
    ticket = desk.pending(T.SELL_STOP_LIMIT, stop, stoplimit=stop).order
    _market_at(desk, bid=stop)
    [pos] = desk.server.positions(desk.login)
    assert (pos.ticket, pos.type, pos.price_open) == (ticket, 1, stop)


def test_ref_3_4_specified_expiration(make_desk: MakeDesk, platform: Platform) -> None:
    desk = make_desk(platform)
    expires = desk.clock.now_ms() + 3_600_000
    ticket = desk.pending(T.BUY_LIMIT, px(ASK, -100), expiration_ms=expires, comment="mg:EXP").order
    assert desk.server.pending_orders(desk.login)[0].expiration_ms == expires
    desk.clock.advance(3_600_000 - 1)
    desk.server.step()
    assert len(desk.server.pending_orders(desk.login)) == 1
    desk.clock.advance(1)
    desk.server.step()
    assert desk.server.pending_orders(desk.login) == []
    [hist] = desk.server.history_orders(desk.login)
    assert (hist.ticket, hist.state, hist.time_done_ms) == (ticket, OrderState.EXPIRED, expires)
    assert desk.names("order")[-1].state == OrderState.EXPIRED


def test_expired_order_does_not_fill_on_a_later_request(make_desk: MakeDesk) -> None:
    """Expirations due at the request time run before the request (no step needed)."""
    desk = make_desk(Platform.MT5)
    ticket = desk.pending(
        T.BUY_LIMIT, px(ASK, -100), expiration_ms=desk.clock.now_ms() + 1000
    ).order
    desk.clock.advance(1000)
    assert desk.refused(desk.cancel_req(ticket)).code == 10013
    assert desk.server.history_orders(desk.login)[-1].state == OrderState.EXPIRED


def test_ref_3_4_day_order_expires_at_the_server_midnight(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5)
    desk.clock.advance(10 * 3_600_000)  # 10:00 server time
    midnight = (desk.clock.now_ms() // DAY_MS + 1) * DAY_MS
    desk.pending(T.SELL_LIMIT, px(BID, 100), time_type=1)
    assert desk.server.pending_orders(desk.login)[0].expiration_ms == midnight
    desk.clock.advance(midnight - 1 - desk.clock.now_ms())
    desk.server.step()
    assert len(desk.server.pending_orders(desk.login)) == 1
    desk.clock.advance(1)
    desk.server.step()
    assert desk.server.pending_orders(desk.login) == []


def test_ref_3_4_gtc_with_an_expiration_time_is_read_as_specified(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5)
    expires = desk.clock.now_ms() + 60_000
    desk.pending(T.BUY_LIMIT, px(ASK, -100), expiration_ms=expires)
    [order] = desk.server.pending_orders(desk.login)
    assert (order.time_type, order.expiration_ms) == (2, expires)


def test_mt4_expiration_must_be_ten_minutes_ahead(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT4)
    now = desk.clock.now_ms()
    assert (
        desk.refused(desk.pending_req(T.BUY_LIMIT, px(ASK, -100), expiration_ms=now + 599_999)).code
        == 3
    )
    assert desk.pending(T.BUY_LIMIT, px(ASK, -100), expiration_ms=now + 600_000).code == 0


def test_cancel_moves_the_order_to_history(make_desk: MakeDesk, platform: Platform) -> None:
    desk = make_desk(platform)
    ticket = desk.pending(T.SELL_STOP, px(BID, -100), comment="mg:C1").order
    result = desk.send(desk.cancel_req(ticket))
    assert (result.order, result.volume, result.price) == (ticket, 0.1, px(BID, -100))
    [hist] = desk.server.history_orders(desk.login)
    assert (hist.ticket, hist.state, hist.volume_current) == (ticket, OrderState.CANCELED, 0.1)
    assert [e.state for e in desk.names("order")] == [OrderState.PLACED, OrderState.CANCELED]
    # a cancelled order is gone: it cannot fill
    _market_at(desk, bid=px(BID, -100))
    assert desk.server.positions(desk.login) == []


def test_modify_moves_the_trigger(make_desk: MakeDesk, platform: Platform) -> None:
    desk = make_desk(platform)
    ticket = desk.pending(T.BUY_LIMIT, px(ASK, -100)).order
    result = desk.send(desk.modify_req(ticket, px(ASK, -50), sl=px(ASK, -150), tp=px(ASK, 50)))
    assert result.price == px(ASK, -50)
    [order] = desk.server.pending_orders(desk.login)
    assert (order.price_open, order.sl, order.tp) == (px(ASK, -50), px(ASK, -150), px(ASK, 50))
    assert desk.names("order")[-1].price_open == px(ASK, -50)
    _market_at(desk, ask=px(ASK, -50))  # the old level (-100) is not needed any more
    [pos] = desk.server.positions(desk.login)
    assert (pos.ticket, pos.price_open, pos.tp) == (ticket, px(ASK, -50), px(ASK, 50))


def test_activation_without_margin_is_rejected(make_desk: MakeDesk) -> None:
    """MT5 10041 REJECT_CANCEL: the order leaves the book with state REJECTED."""
    desk = make_desk(Platform.MT5, balance=2_000.0)
    ticket = desk.pending(T.BUY_LIMIT, px(ASK, -100), volume=1.0).order
    desk.market(T.BUY, volume=1.0)  # uses the free margin the pending order would need
    _market_at(desk, ask=px(ASK, -100))
    assert desk.server.pending_orders(desk.login) == []
    assert [p.volume for p in desk.server.positions(desk.login)] == [1.0]
    assert desk.server.history_orders(desk.login)[-1].state == OrderState.REJECTED
    assert desk.server.history_orders(desk.login)[-1].ticket == ticket


def test_activation_against_a_prohibited_hedge_is_rejected(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT4, config=ServerConfig(hedging_allowed=False))
    desk.pending(T.SELL_LIMIT, px(BID, 100))
    desk.market(T.BUY)
    _market_at(desk, bid=px(BID, 100))
    assert [p.type for p in desk.server.positions(desk.login)] == [0]
    assert desk.server.history_orders(desk.login)[-1].state == OrderState.REJECTED


def test_netting_activation_joins_the_position(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5, margin_mode=MarginMode.NETTING)
    first = desk.market(T.BUY, volume=0.1)
    ticket = desk.pending(T.BUY_LIMIT, px(ASK, -100), volume=0.1).order
    _market_at(desk, ask=px(ASK, -100))
    [pos] = desk.server.positions(desk.login)
    assert (pos.ticket, pos.identifier, pos.volume) == (first.order, first.order, 0.2)
    [hist] = [h for h in desk.server.history_orders(desk.login) if h.ticket == ticket]
    assert hist.position_id == first.order
    assert desk.names("deal")[-1].position_id == first.order


@settings(max_examples=40, deadline=None)
@given(
    order_type=st.sampled_from([T.BUY_LIMIT, T.SELL_LIMIT, T.BUY_STOP, T.SELL_STOP]),
    distance=st.integers(min_value=10, max_value=400),
    path=st.lists(st.integers(min_value=-500, max_value=500), min_size=1, max_size=30),
)
def test_activation_happens_exactly_when_the_trigger_price_is_reached(
    order_type: OrderType, distance: int, path: list[int]
) -> None:
    """Against a brute-force oracle: an order fills at the first quote whose trigger side
    (Ask for buys, Bid for sells) reaches its price, and never before."""
    desk = make_desk(Platform.MT5, balance=1e9)
    sign = -1 if order_type in (T.BUY_LIMIT, T.SELL_STOP) else 1
    reference = ASK if order_type.is_buy else BID
    price = px(reference, sign * distance)
    desk.pending(order_type, price)
    filled_at: int | None = None
    for i, offset in enumerate(path):
        bid = px(BID, offset)
        desk.quote("EURUSD", bid, px(bid, SPREAD))
        side = px(bid, SPREAD) if order_type.is_buy else bid
        reached = side <= price if order_type.is_limit == order_type.is_buy else side >= price
        if filled_at is None and reached:
            filled_at = i
        assert bool(desk.server.positions(desk.login)) == (filled_at is not None)
    assert len(desk.server.pending_orders(desk.login)) == (0 if filled_at is not None else 1)


def test_events_are_typed_payloads(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5)
    desk.pending(T.BUY_LIMIT, px(ASK, -100))
    _market_at(desk, ask=px(ASK, -100))
    kinds = [(name, type(payload)) for name, payload in desk.events]
    assert kinds == [
        ("order", OrderReport),
        ("order", OrderReport),
        ("deal", DealReport),
        ("account", AccountReport),  # §7: the deal changed the account
    ]
