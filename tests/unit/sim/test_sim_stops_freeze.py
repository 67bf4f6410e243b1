"""Stops level (reference §4.3) and freeze level (§4.4), every order type, at the boundary.

EURUSD with stops level 30 and freeze level 10 points (article 2555's example level), market
Bid 1.10000 / Ask 1.10012. "At the level" is accepted (the server compares with >=); one
point inside is refused with MT4 130 / MT5 10016. For the freeze level a distance equal to the
level is frozen (strict >): MT4 145 / MT5 10029.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from mtgate.domain.enums import OrderState, OrderType, Platform
from mtgate.protocol.messages import PendingOrder, TradeResult
from mtsim.symbols import DEFAULT_SYMBOLS, EURUSD
from tests.unit.sim.simdesk import ASK, BID, Desk, MakeDesk, px

LEVEL = 30
FREEZE = 10
SYMBOLS = {
    **DEFAULT_SYMBOLS,
    "EURUSD": msgspec.structs.replace(EURUSD, stops_level=LEVEL, freeze_level=FREEZE),
}
STOPS_CODE = {Platform.MT4: 130, Platform.MT5: 10016}
FROZEN_CODE = {Platform.MT4: 145, Platform.MT5: 10029}

T = OrderType
# (order type, open price of a pending order in points from its market reference side)
# Each case: field, the boundary value (accepted) and the value one point inside (refused).
# Market buy: SL/TP against Bid; market sell: against Ask (reference §4.3 "key point").
MARKET_CASES = [
    (T.BUY, "sl", px(BID, -LEVEL), px(BID, -LEVEL + 1)),
    (T.BUY, "tp", px(BID, LEVEL), px(BID, LEVEL - 1)),
    (T.SELL, "sl", px(ASK, LEVEL), px(ASK, LEVEL - 1)),
    (T.SELL, "tp", px(ASK, -LEVEL), px(ASK, -LEVEL + 1)),
]
# Pending orders: the open price against the market (Ask for buys, Bid for sells), SL/TP
# against the open price. Open prices of the SL/TP cases sit 100 points from the market.
BL, SL_, BS, SS = px(ASK, -100), px(BID, 100), px(ASK, 100), px(BID, -100)
PENDING_CASES = [
    (T.BUY_LIMIT, "price", None, px(ASK, -LEVEL), px(ASK, -LEVEL + 1)),
    (T.BUY_LIMIT, "sl", BL, px(BL, -LEVEL), px(BL, -LEVEL + 1)),
    (T.BUY_LIMIT, "tp", BL, px(BL, LEVEL), px(BL, LEVEL - 1)),
    (T.SELL_LIMIT, "price", None, px(BID, LEVEL), px(BID, LEVEL - 1)),
    (T.SELL_LIMIT, "sl", SL_, px(SL_, LEVEL), px(SL_, LEVEL - 1)),
    (T.SELL_LIMIT, "tp", SL_, px(SL_, -LEVEL), px(SL_, -LEVEL + 1)),
    (T.BUY_STOP, "price", None, px(ASK, LEVEL), px(ASK, LEVEL - 1)),
    (T.BUY_STOP, "sl", BS, px(BS, -LEVEL), px(BS, -LEVEL + 1)),
    (T.BUY_STOP, "tp", BS, px(BS, LEVEL), px(BS, LEVEL - 1)),
    (T.SELL_STOP, "price", None, px(BID, -LEVEL), px(BID, -LEVEL + 1)),
    (T.SELL_STOP, "sl", SS, px(SS, LEVEL), px(SS, LEVEL - 1)),
    (T.SELL_STOP, "tp", SS, px(SS, -LEVEL), px(SS, -LEVEL + 1)),
]


@pytest.fixture
def desk(make_desk: MakeDesk, platform: Platform) -> Desk:
    return make_desk(platform, symbols=SYMBOLS)


@pytest.mark.parametrize(("order_type", "field", "at_level", "inside"), MARKET_CASES)
def test_ref_4_3_market_sl_tp_distance(
    desk: Desk, order_type: OrderType, field: str, at_level: float, inside: float
) -> None:
    at: dict[str, Any] = {field: at_level}
    accepted = desk.market(order_type, **at)
    assert isinstance(accepted, TradeResult)
    assert getattr(desk.server.positions(desk.login)[0], field) == at_level
    one_inside: dict[str, Any] = {field: inside}
    error = desk.refused(desk.market_req(order_type, **one_inside))
    assert error.code == STOPS_CODE[desk.server.platform]
    assert len(desk.server.positions(desk.login)) == 1


@pytest.mark.parametrize(("order_type", "field", "open_price", "at_level", "inside"), PENDING_CASES)
def test_ref_4_3_pending_price_sl_tp_distance(
    desk: Desk,
    order_type: OrderType,
    field: str,
    open_price: float | None,
    at_level: float,
    inside: float,
) -> None:
    def request(value: float) -> PendingOrder:
        if field == "price":
            return desk.pending_req(order_type, value)
        assert open_price is not None
        stops: dict[str, Any] = {field: value}
        return desk.pending_req(order_type, open_price, **stops)

    placed = desk.send(request(at_level))
    assert placed.order > 0
    assert (
        getattr(
            desk.server.pending_orders(desk.login)[0], "price_open" if field == "price" else field
        )
        == at_level
    )
    error = desk.refused(request(inside))
    assert error.code == STOPS_CODE[desk.server.platform]
    assert len(desk.server.pending_orders(desk.login)) == 1


def test_ref_4_3_stop_limit_stops_measured_from_the_limit_price(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5, symbols=SYMBOLS)
    stop, limit = px(ASK, 100), px(ASK, 60)
    ok = desk.pending(T.BUY_STOP_LIMIT, stop, stoplimit=limit, sl=px(limit, -LEVEL))
    assert ok.code == 10008
    error = desk.refused(
        desk.pending_req(T.BUY_STOP_LIMIT, stop, stoplimit=limit, sl=px(limit, -LEVEL + 1))
    )
    assert error.code == 10016


def test_ref_4_3_sl_on_the_wrong_side_is_refused_even_with_level_zero(
    make_desk: MakeDesk, platform: Platform
) -> None:
    zero = {**DEFAULT_SYMBOLS, "EURUSD": msgspec.structs.replace(EURUSD, stops_level=0)}
    desk = make_desk(platform, symbols=zero)
    assert desk.market(T.BUY, sl=px(BID, -1)).volume == 0.1
    error = desk.refused(desk.market_req(T.BUY, sl=px(BID, 1)))
    assert error.code == STOPS_CODE[platform]


def test_ref_4_3_unnormalized_sl_is_invalid_stops(desk: Desk) -> None:
    error = desk.refused(desk.market_req(T.BUY, sl=1.099555))
    assert error.code == STOPS_CODE[desk.server.platform]


# --- §4.4 freeze level ---------------------------------------------------------------------

# (type, open price, market shift that leaves exactly FREEZE points on the trigger side)
FREEZE_CASES = [
    (T.BUY_LIMIT, px(ASK, -100), -100 + FREEZE),  # Ask - Open = FL
    (T.SELL_LIMIT, px(BID, 100), 100 - FREEZE),  # Open - Bid = FL
    (T.BUY_STOP, px(ASK, 100), 100 - FREEZE),  # Open - Ask = FL
    (T.SELL_STOP, px(BID, -100), -100 + FREEZE),  # Bid - Open = FL
]


def _move(desk: Desk, points: int) -> None:
    """Shift the whole market by ``points`` (keeping the 12-point spread)."""
    desk.quote("EURUSD", px(BID, points), px(ASK, points))


@pytest.mark.parametrize(("order_type", "open_price", "shift"), FREEZE_CASES)
def test_ref_4_4_cancel_at_exactly_the_freeze_level_is_frozen(
    desk: Desk, order_type: OrderType, open_price: float, shift: int
) -> None:
    ticket = desk.pending(order_type, open_price).order
    _move(desk, shift)
    error = desk.refused(desk.cancel_req(ticket))
    assert error.code == FROZEN_CODE[desk.server.platform]
    assert [o.ticket for o in desk.server.pending_orders(desk.login)] == [ticket]
    # one point farther away: allowed
    _move(desk, shift - 1 if shift > 0 else shift + 1)
    result = desk.send(desk.cancel_req(ticket))
    assert result.order == ticket
    assert desk.server.pending_orders(desk.login) == []
    assert desk.server.history_orders(desk.login)[-1].state == OrderState.CANCELED


@pytest.mark.parametrize(("order_type", "open_price", "shift"), FREEZE_CASES)
def test_ref_4_4_modify_at_exactly_the_freeze_level_is_frozen(
    desk: Desk, order_type: OrderType, open_price: float, shift: int
) -> None:
    ticket = desk.pending(order_type, open_price).order
    _move(desk, shift)
    # the new price is valid (far from the market); the *current* order is frozen
    far = px(open_price, -300 if order_type in (T.BUY_LIMIT, T.SELL_STOP) else 300)
    error = desk.refused(desk.modify_req(ticket, far))
    assert error.code == FROZEN_CODE[desk.server.platform]
    assert desk.server.pending_orders(desk.login)[0].price_open == open_price
    _move(desk, shift - 1 if shift > 0 else shift + 1)
    assert desk.send(desk.modify_req(ticket, far)).price == far
    assert desk.server.pending_orders(desk.login)[0].price_open == far
