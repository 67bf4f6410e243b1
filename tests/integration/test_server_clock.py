"""The trade server's clock is the broker's, hours off the bridge's (docs/protocol.md §5):
server times such as an expiration are checked against the server's clock as the session
has seen it, never against the bridge's own (protocol review D7)."""

from __future__ import annotations

import pytest

from mtgate.domain.clock import SystemClock
from mtgate.domain.orders import OrderStatus
from tests.integration.conftest import MT4, MT5H, HarnessFactory

HOUR_MS = 3_600_000


@pytest.mark.parametrize("tid", [MT4, MT5H])
@pytest.mark.parametrize("offset_h", [-5, 3])
async def test_expirations_are_checked_against_the_servers_clock(
    make_harness: HarnessFactory, tid: str, offset_h: int
) -> None:
    bridge_now = SystemClock().now_ms()
    h = await make_harness(server_start_ms=bridge_now + offset_h * HOUR_MS)
    server_now = h.clock.now_ms()
    _, ask, _ = h.server(tid).feed.quote("EURUSD")
    price = round(ask - 0.0050, 5)

    def pending(cid: str, expiration_ms: int) -> dict[str, object]:
        return {
            "account": h.account(tid),
            "symbol": "EURUSD",
            "kind": "buy_limit",
            "volume": 0.1,
            "price": price,
            "expiration_ms": expiration_ms,
            "client_order_id": cid,
        }

    # Ten minutes ahead on the server's clock: placed, whatever the bridge's clock says.
    placed = await h.bridge.place_pending_order(**pending("clk-1", server_now + 600_000))
    assert placed.status == OrderStatus.PLACED, placed.error
    # A minute behind the server's clock (on the bridge's clock hours ahead or behind):
    # refused by the bridge before sending, as in the past.
    past = await h.bridge.place_pending_order(**pending("clk-2", server_now - 60_000))
    assert past.status == OrderStatus.REJECTED
    assert past.error is not None and past.error.rule == "expiration", past.error
    # Modify: the same clock.
    later = await h.bridge.modify_order(
        account=h.account(tid),
        ticket=placed.ticket,
        price=price,
        expiration_ms=server_now + 900_000,
    )
    assert later.status == OrderStatus.PLACED and later.error is None, later.error
    stale = await h.bridge.modify_order(
        account=h.account(tid), ticket=placed.ticket, price=price, expiration_ms=server_now - 1
    )
    assert stale.error is not None and stale.error.rule == "expiration", stale.error
    assert h.trades_seen(tid) == 2  # the placement and the first modify, nothing refused sent
