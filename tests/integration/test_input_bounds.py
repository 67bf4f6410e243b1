"""Bad input never reaches the wire or the journal: every field is bounded by the MetaTrader
type or journal column it becomes, typed requests are checked like dict ones, and a refusal
names the field (MT4, MT5 hedging, MT5 netting)."""

from __future__ import annotations

import msgspec
import pytest

from mtgate.domain.limits import MT_DATETIME_MAX_MS
from mtgate.domain.orders import OrderStatus
from mtgate.execution.requests import (
    InvalidRequest,
    MarketOrderRequest,
    ModifyOrderRequest,
    PendingOrderRequest,
    Side,
)
from mtgate.positions.requests import TrailingStopRequest
from mtgate.protocol import codec
from mtgate.protocol import messages as m
from tests.integration.conftest import MT4, MT5H, MT5N, Harness

ALL = [MT4, MT5H, MT5N]


def _market(h: Harness, tid: str, **over: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "account": h.account(tid),
        "symbol": "EURUSD",
        "side": "buy",
        "volume": 0.1,
    }
    fields.update(over)
    return fields


async def _nothing_written_or_sent(h: Harness, tid: str) -> None:
    assert await h.bridge.list_orders() == []
    assert h.trades_seen(tid) == 0


@pytest.mark.parametrize("tid", ALL)
async def test_f2_huge_deviation_is_refused_naming_the_field(harness: Harness, tid: str) -> None:
    """deviation 2**63 once passed the API, was sent, and then poisoned the journal's flush."""
    with pytest.raises(InvalidRequest) as raised:
        await harness.bridge.place_market_order(**_market(harness, tid, deviation_points=2**63))
    assert raised.value.field == "deviation_points"
    with pytest.raises(InvalidRequest) as raised:
        await harness.bridge.close_position(
            account=harness.account(tid), ticket=1, deviation_points=2**31
        )
    assert raised.value.field == "deviation_points"
    await _nothing_written_or_sent(harness, tid)


@pytest.mark.parametrize("tid", ALL)
async def test_f3_expiration_past_the_mt_datetime_range_is_refused(
    harness: Harness, tid: str
) -> None:
    """An expiration at year 10000 was journalled and made the account's rows unreadable; the
    last second of MQL's datetime range (3000-12-31 23:59:59) is still an expiration."""
    bid, _, _ = harness.server(tid).feed.quote("EURUSD")
    pending = {
        "account": harness.account(tid),
        "symbol": "EURUSD",
        "kind": "buy_limit",
        "volume": 0.1,
        "price": round(bid - 0.005, 5),
    }
    for bad in (253_402_300_800_000, MT_DATETIME_MAX_MS + 1):
        with pytest.raises(InvalidRequest) as raised:
            await harness.bridge.place_pending_order(**pending, expiration_ms=bad)
        assert raised.value.field == "expiration_ms"
    await _nothing_written_or_sent(harness, tid)
    last_second = MT_DATETIME_MAX_MS - 999
    placed = await harness.bridge.place_pending_order(**pending, expiration_ms=last_second)
    assert placed.status == OrderStatus.PLACED
    stored = await harness.bridge.journal.get(placed.client_order_id)
    assert stored is not None and stored.expiration_ms == last_second
    assert [o.client_order_id for o in await harness.bridge.list_orders()] == [
        placed.client_order_id
    ]
    with pytest.raises(InvalidRequest) as raised:
        await harness.bridge.modify_order(
            account=harness.account(tid),
            client_order_id=placed.client_order_id,
            expiration_ms=MT_DATETIME_MAX_MS + 1,
        )
    assert raised.value.field == "expiration_ms"


@pytest.mark.parametrize("tid", ALL)
async def test_f12_typed_requests_are_validated_like_dicts(harness: Harness, tid: str) -> None:
    """A struct's constructor checks nothing: side="BUY" used to open a SELL, kind="BUY_LIMIT"
    raised a KeyError, and an out-of-range magic reached the wire."""
    account = harness.account(tid)
    bad_market = [
        (MarketOrderRequest(account=account, symbol="EURUSD", side="BUY", volume=0.1), "side"),  # type: ignore[arg-type]
        (MarketOrderRequest(account=account, symbol="EURUSD", side="long", volume=0.1), "side"),  # type: ignore[arg-type]
        (MarketOrderRequest(account=account, symbol="EURUSD", side=Side.BUY, volume=-1), "volume"),
        (
            MarketOrderRequest(
                account=account, symbol="EURUSD", side=Side.BUY, volume=0.1, magic=2**31
            ),
            "magic",
        ),
        (
            MarketOrderRequest(
                account=account, symbol="EURUSD", side=Side.BUY, volume=0.1, deviation_points=-1
            ),
            "deviation_points",
        ),
    ]
    for request, field in bad_market:
        with pytest.raises(InvalidRequest) as raised:
            await harness.bridge.place_market_order(request)
        assert raised.value.field == field, request
    pending = PendingOrderRequest(
        account=account,
        symbol="EURUSD",
        kind="BUY_LIMIT",  # type: ignore[arg-type]
        volume=0.1,
        price=1.0,
    )
    with pytest.raises(InvalidRequest) as raised:
        await harness.bridge.place_pending_order(pending)
    assert raised.value.field == "kind"
    modify = ModifyOrderRequest(account=account, ticket=2**70)
    with pytest.raises(InvalidRequest) as raised:
        await harness.bridge.modify_order(modify)
    assert raised.value.field == "ticket"
    await _nothing_written_or_sent(harness, tid)
    good = MarketOrderRequest(account=account, symbol="EURUSD", side=Side.SELL, volume=0.1)
    result = await harness.bridge.place_market_order(good)
    assert result.status == OrderStatus.FILLED
    login = harness.login(tid)
    sells = [p for p in harness.server(tid).positions(login) if p.type == 1]
    assert len(sells) == 1


@pytest.mark.parametrize("tid", ALL)
@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"symbol": "X" * 33}, "symbol"),
        ({"signal_id": "s" * 65}, "signal_id"),
        ({"account": "1001@" + "s" * 65}, "account"),
        ({"account": "1" * 25 + "@Sim-MT5"}, "account"),
        ({"account": "99999999999999999999@Sim-MT5"}, "account"),
        ({"sl": 1e305}, "sl"),
        ({"tp": float("inf")}, "tp"),
        ({"price": float("nan")}, "price"),
        ({"volume": float("inf")}, "volume"),
        ({"volume": 1e7}, "volume"),
        ({"client_order_id": "a" * 21}, "client_order_id"),
        ({"client_order_id": "bad id"}, "client_order_id"),
        ({"magic": -1}, "magic"),
    ],
)
async def test_f20_out_of_range_fields_are_refused_naming_the_field(
    harness: Harness, tid: str, over: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        await harness.bridge.place_market_order(**_market(harness, tid, **over))
    assert raised.value.field == field
    await _nothing_written_or_sent(harness, tid)


async def test_f20_a_login_of_an_mt5_long_still_routes(harness: Harness) -> None:
    """The biggest login an MT5 ``long`` holds is a valid account, just not a connected one:
    a refusal journalled (nothing sent), never an overflow."""
    result = await harness.bridge.place_market_order(
        account=f"{2**63 - 1}@Sim-MT5", symbol="EURUSD", side="buy", volume=0.1
    )
    assert result.status == OrderStatus.REJECTED
    assert result.error is not None and result.error.rule == "not_routable"
    stored = await harness.bridge.journal.get(result.client_order_id)
    assert stored is not None and stored.account_login == 2**63 - 1


async def test_f20_trailing_and_queries_are_bounded_too(harness: Harness) -> None:
    account = harness.account(MT5H)
    with pytest.raises(InvalidRequest) as raised:
        await harness.bridge.trail_position(
            TrailingStopRequest(account=account, ticket=1, distance_points=2**31)
        )
    assert raised.value.field == "distance_points"
    with pytest.raises(InvalidRequest) as raised:
        await harness.bridge.get_order(account, ticket=2**64)
    assert raised.value.field == "ticket"
    with pytest.raises(InvalidRequest) as raised:
        await harness.bridge.list_orders(limit=0)
    assert raised.value.field == "limit"
    with pytest.raises(InvalidRequest) as raised:
        harness.bridge.synced_positions("not an account")
    assert raised.value.field == "account"


def test_f2_wire_integers_beyond_int64_are_invalid_messages() -> None:
    """A terminal answering a ticket of 2**63 used to reach the journal's INTEGER column."""
    body = (
        b'{"type":"evt","seq":1,"name":"deal","data":{"ticket":9223372036854775808,"order":1,'
        b'"position_id":1,"symbol":"EURUSD","type":0,"entry":0,"volume":0.1,"price":1.1,'
        b'"time_ms":1}}'
    )
    event = codec.decode_for_bridge(body)
    assert isinstance(event, m.Event)
    with pytest.raises(codec.ProtocolError) as raised:
        codec.decode_event(event.name, event.data)
    assert raised.value.code == "invalid_message"
    far = (
        b'{"code":0,"order":1,"volume":0.1,"price":1.1,"bid":1.1,"ask":1.1,'
        b'"time_ms":253402300800000}'
    )
    with pytest.raises(codec.ProtocolError):
        codec.decode_result(m.MarketOrder, msgspec.Raw(far))
    overflow = b'{"symbol":"EURUSD","bid":1e400,"ask":1.1,"time_ms":1}'
    with pytest.raises(codec.ProtocolError):
        codec.decode_result(m.GetTick, msgspec.Raw(overflow))


@pytest.fixture
async def harness(any_harness: Harness) -> Harness:
    """Every test of this module runs with each kind of MT5 terminal."""
    return any_harness
