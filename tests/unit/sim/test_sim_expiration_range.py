"""Expirations outside MQL's datetime range (1970 to 3000-12-31 23:59:59) are refused
(review finding S2; ``mtgate.domain.limits.MT_DATETIME_MAX_MS``).

- The simulated EA cannot build the ``datetime`` of the platform call, so it answers -2
  ``invalid_request`` and calls nothing (docs/protocol.md §4.2: a negative code guarantees
  that the platform's trade function was not called).
- The trade server model, reached when a test calls ``TradeServer.handle`` directly, refuses
  the same values: MT5 10022 INVALID_EXPIRATION, MT4 3 ERR_INVALID_TRADE_PARAMETERS
  (reference §3.4; the choice is documented in :mod:`mtsim.errors`).
"""

from __future__ import annotations

import pytest

from mtgate.domain.enums import OrderType, Platform, TimeInForce
from mtgate.domain.limits import MT_DATETIME_MAX_MS
from mtgate.protocol import ea
from mtgate.protocol import messages as m
from tests.unit.sim.simdesk import ASK, Desk, MakeDesk, px
from tests.unit.sim.simwire import wire_session

T = OrderType
OUT_OF_RANGE = [MT_DATETIME_MAX_MS + 1, 253_402_300_800_000, 2**62, -1, -(2**40)]
"""Just past 3000-12-31 23:59:59.999, year 10000 (the F3 path), far beyond, and negatives."""
LIMIT_PRICE = px(ASK, -100)


def _code(platform: Platform) -> int:
    return 3 if platform == Platform.MT4 else 10022


def _pending_req(desk: Desk, expiration_ms: int, time_type: int = 0) -> m.PendingOrder:
    return desk.pending_req(
        T.BUY_LIMIT, LIMIT_PRICE, expiration_ms=expiration_ms, time_type=time_type
    )


def _trades_executed(desk: Desk) -> list[m.Request]:
    """The trade requests in the server's ground-truth log (the terminal's own reads, such
    as its account read at connect, are left out)."""
    return [e.request for e in desk.server.executed if isinstance(e.request, m.TRADE_OPS)]


@pytest.mark.parametrize("expiration_ms", OUT_OF_RANGE)
def test_server_refuses_a_pending_order_outside_the_range(
    make_desk: MakeDesk, platform: Platform, expiration_ms: int
) -> None:
    desk = make_desk(platform)
    time_type = TimeInForce.SPECIFIED if expiration_ms > 0 else TimeInForce.GTC
    error = desk.refused(_pending_req(desk, expiration_ms, time_type))
    assert error.code == _code(platform)
    assert desk.server.pending_orders(desk.login) == []


def test_server_refuses_a_negative_expiration_whatever_the_time_type(
    make_desk: MakeDesk,
) -> None:
    """MT5 DAY ignores the expiration field, but -1 is no datetime at all: refused as well."""
    desk = make_desk(Platform.MT5)
    assert desk.refused(_pending_req(desk, -1, TimeInForce.DAY)).code == 10022
    assert desk.server.pending_orders(desk.login) == []


@pytest.mark.parametrize("expiration_ms", OUT_OF_RANGE)
def test_server_refuses_a_modify_outside_the_range(
    make_desk: MakeDesk, platform: Platform, expiration_ms: int
) -> None:
    desk = make_desk(platform)
    placed = desk.pending(T.BUY_LIMIT, LIMIT_PRICE)
    time_type = TimeInForce.SPECIFIED if expiration_ms > 0 else TimeInForce.GTC
    request = desk.modify_req(
        placed.order, LIMIT_PRICE, expiration_ms=expiration_ms, time_type=time_type
    )
    assert desk.refused(request).code == _code(platform)
    [order] = desk.server.pending_orders(desk.login)
    assert order.expiration_ms == 0  # unchanged


def test_server_accepts_the_last_millisecond_of_the_range(
    make_desk: MakeDesk, platform: Platform
) -> None:
    """The bound is inclusive: 3000-12-31 23:59:59.999 is still a valid expiration."""
    desk = make_desk(platform)
    desk.send(_pending_req(desk, MT_DATETIME_MAX_MS, TimeInForce.SPECIFIED))
    [order] = desk.server.pending_orders(desk.login)
    assert order.expiration_ms == MT_DATETIME_MAX_MS


@pytest.mark.parametrize("expiration_ms", [MT_DATETIME_MAX_MS + 1, -1])
def test_ea_rule_is_the_datetime_range(expiration_ms: int) -> None:
    pending = m.PendingOrder(
        id=1,
        symbol="EURUSD",
        order_type=2,
        volume=0.1,
        price=1.0,
        magic=0,
        comment="",
        expiration_ms=expiration_ms,
        time_type=2,
    )
    modify = m.ModifyOrder(id=2, ticket=5, price=1.0, expiration_ms=expiration_ms, time_type=2)
    mt5 = Platform.MT5
    assert ea.invalid_request(pending, mt5) is not None
    assert ea.invalid_request(modify, mt5) is not None
    assert ea.invalid_request(m.ModifyOrder(id=3, ticket=5, price=1.0), mt5) is None
    ok = m.ModifyOrder(id=4, ticket=5, price=1.0, expiration_ms=MT_DATETIME_MAX_MS, time_type=2)
    assert ea.invalid_request(ok, mt5) is None


@pytest.mark.parametrize("expiration_ms", [MT_DATETIME_MAX_MS + 1, -1])
async def test_terminal_answers_invalid_request_without_calling_the_server(
    make_desk: MakeDesk, platform: Platform, expiration_ms: int
) -> None:
    """§4.2: -2 and nothing executed; the server's ground-truth log holds no such request."""
    desk = make_desk(platform)
    placed = desk.pending(T.BUY_LIMIT, LIMIT_PRICE)
    before = _trades_executed(desk)
    assert len(before) == 1
    async with wire_session(desk) as (bridge, _terminal):
        pending = await bridge.request(
            m.PendingOrder(
                id=1,
                symbol="EURUSD",
                order_type=2,
                volume=0.1,
                price=LIMIT_PRICE,
                magic=7,
                comment="mg:FAR1",
                expiration_ms=expiration_ms,
                time_type=2,
            )
        )
        modify = await bridge.request(
            m.ModifyOrder(id=2, ticket=placed.order, price=LIMIT_PRICE, expiration_ms=expiration_ms)
        )
        for answer in (pending, modify):
            assert not answer.ok
            assert answer.error is not None
            assert (answer.error.code, answer.error.name) == (-2, "invalid_request")
        assert _trades_executed(desk) == before  # the platform was never called
        in_range = await bridge.request(
            m.ModifyOrder(
                id=3,
                ticket=placed.order,
                price=LIMIT_PRICE,
                expiration_ms=MT_DATETIME_MAX_MS,
                time_type=2,
            )
        )
        assert in_range.ok  # the same request inside the range reaches the server
    [order] = desk.server.pending_orders(desk.login)
    assert order.expiration_ms == MT_DATETIME_MAX_MS
