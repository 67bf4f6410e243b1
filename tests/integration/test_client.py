"""`mtgate.client` against the API over a bridge and simulated terminals: typed requests in,
the in-process API's result types out, errors as ApiError naming the field."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from mtgate.api.app import create_app
from mtgate.api.auth import Scope, Tokens
from mtgate.client import ApiError, Client
from mtgate.domain.orders import OrderStatus
from mtgate.execution.requests import (
    CancelOrderRequest,
    MarketOrderRequest,
    OrderResult,
    PendingKind,
    PendingOrderRequest,
    Side,
)
from mtgate.execution.signals import SignalRequest, SignalTarget
from mtgate.positions.requests import ClosePositionRequest
from tests.integration.conftest import MT4, MT5H, Harness

TOKEN = "c" * 40


@pytest.fixture
async def api(harness: Harness) -> AsyncIterator[Client]:
    app = create_app(harness.bridge, Tokens([("client", TOKEN, [Scope.ADMIN])]))
    async with Client("http://api", TOKEN, transport=httpx.ASGITransport(app=app)) as client:
        yield client


async def test_orders_positions_and_signals_through_the_client(
    harness: Harness, api: Client
) -> None:
    account = harness.account(MT5H)
    filled = await api.place_market_order(
        MarketOrderRequest(account=account, symbol="EURUSD", side=Side.BUY, volume=0.1,
                           client_order_id="cl-1")
    )  # fmt: skip
    assert isinstance(filled, OrderResult) and filled.status == OrderStatus.FILLED
    assert await api.get_order(account, client_order_id="cl-1") == filled
    assert (await api.get_order(account, ticket=filled.ticket or 0)) == filled
    assert await api.get_order(account, client_order_id="nothing") is None
    positions = await api.list_positions(account)
    assert [p.ticket for p in positions] == [filled.position_id]
    closed = await api.close_position(
        ClosePositionRequest(account=account, ticket=filled.position_id or 0)
    )
    assert closed.status == OrderStatus.FILLED
    bid, _, _ = harness.server(MT5H).feed.quote("EURUSD")
    placed = await api.place_pending_order(
        PendingOrderRequest(account=account, symbol="EURUSD", kind=PendingKind.BUY_LIMIT,
                            volume=0.1, price=round(bid - 0.01, 5), client_order_id="cl-p")
    )  # fmt: skip
    assert placed.status == OrderStatus.PLACED
    cancelled = await api.cancel_order(CancelOrderRequest(account=account, client_order_id="cl-p"))
    assert cancelled.status == OrderStatus.CANCELLED
    listed = await api.list_orders(account, statuses={"cancelled"})
    assert [o.client_order_id for o in listed] == ["cl-p"]
    signal = SignalRequest(
        signal_id="cl-sig", symbol="EURUSD", side=Side.SELL, sl=round(bid + 0.005, 5),
        accounts=[SignalTarget(account=harness.account(MT4))],
    )  # fmt: skip
    result = await api.execute_signal(signal)
    assert result.orders[0].result is not None
    assert result.orders[0].result.status == OrderStatus.FILLED
    assert (await api.ready()).status == "ok"
    assert (await api.drain_terminal(MT5H)).drained is True
    assert (await api.enable_terminal(MT5H)).drained is False


async def test_errors_are_api_errors_naming_the_field(harness: Harness, api: Client) -> None:
    bad = MarketOrderRequest(account=harness.account(MT5H), symbol="EURUSD", side="BUY",  # type: ignore[arg-type]
                             volume=0.1)  # fmt: skip
    with pytest.raises(ApiError) as caught:
        await api.place_market_order(bad)
    assert (caught.value.status, caught.value.code, caught.value.field) == (
        422, "invalid_request", "side"
    )  # fmt: skip
    with pytest.raises(ApiError) as unknown:
        await api.list_positions("42@Nowhere")
    assert (unknown.value.status, unknown.value.code) == (404, "unknown_account")
    assert harness.trades_seen(MT5H) == 0


async def test_a_wrong_token_is_an_api_error(harness: Harness) -> None:
    app = create_app(harness.bridge, Tokens([("client", TOKEN, [Scope.READ])]))
    async with Client("http://api", "w" * 40, transport=httpx.ASGITransport(app=app)) as client:
        with pytest.raises(ApiError) as caught:
            await client.list_orders()
    assert (caught.value.status, caught.value.code) == (401, "unauthorized")


@pytest.fixture
async def harness(any_harness: Harness) -> Harness:
    """Every test of this module runs with each kind of MT5 terminal."""
    return any_harness
