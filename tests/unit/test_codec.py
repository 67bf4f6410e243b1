"""Wire protocol v1: messages, payloads, framing and the codec's failure modes.

The codec is pure, so everything here feeds it values and bytes (docs/protocol.md §2, §9).
Every failure of a peer's bytes must surface as ``codec.ProtocolError`` with a stable code: the
session turns that code into a ``bye`` and closes that one session, nothing else.
"""

from __future__ import annotations

import struct
import types
import typing
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtgate.domain.symbols import SymbolSpec
from mtgate.protocol import codec
from mtgate.protocol import messages as m
from mtgate.protocol.codec import FrameDecoder, ProtocolError

T0 = 1_767_225_600_000  # epoch ms, trade-server clock
EA_NONCE = "3f9c0a7d52e14b8c9a6f0e1d2c3b4a59"
BRIDGE_NONCE = "b7e2c41f09d83a6e5f1c2b3a4d5e6f70"
CLIENT_ID = "0K3J5W2Q9B7XRT4Z"
COMMENT = "mg:" + CLIENT_ID
MAGIC = 20250101

BRIDGE_INBOUND: tuple[type[m.Message], ...] = typing.get_args(m.BridgeInbound)
TERMINAL_INBOUND: tuple[type[m.Message], ...] = typing.get_args(m.TerminalInbound)

# --- realistic payloads ---------------------------------------------------------------------

EURUSD = SymbolSpec(
    name="EURUSD",
    digits=5,
    point=0.00001,
    tick_size=0.00001,
    tick_value=1.0,
    contract_size=100_000.0,
    volume_min=0.01,
    volume_max=100.0,
    volume_step=0.01,
    currency_base="EUR",
    currency_profit="USD",
    currency_margin="EUR",
    stops_level=10,
    freeze_level=5,
    description="Euro vs US Dollar",
)
US500 = SymbolSpec(
    name="US500.cash",
    digits=2,
    point=0.01,
    tick_size=0.25,
    tick_value=0.25,
    contract_size=1.0,
    volume_min=0.1,
    volume_max=250.0,
    volume_step=0.1,
    currency_base="USD",
    currency_profit="USD",
    currency_margin="USD",
    calc_mode=3,
    exe_mode=2,
    volume_limit=1000.0,
    filling_mode=2,
    expiration_mode=5,
    order_mode=63,
    margin_initial=0.0,
    margin_hedged=0.5,
)
ACCOUNT = m.AccountReport(
    login=51234567,
    server="ICMarketsSC-Demo",
    currency="USD",
    leverage=500,
    margin_mode=2,
    balance=10_000.0,
    credit=0.0,
    profit=-12.5,
    equity=9987.5,
    margin=216.84,
    margin_free=9770.66,
    margin_level=4605.93,
    margin_so_call=100.0,
    margin_so_so=50.0,
    trade_allowed=True,
    trade_expert=True,
    limit_orders=200,
    company="Raw Trading Ltd",
    name="Jane Trader",
)
POSITION = m.PositionReport(
    ticket=1468026008,
    identifier=1468026008,
    symbol="EURUSD",
    type=0,
    volume=0.1,
    price_open=1.08412,
    price_current=1.08399,
    time_ms=T0 + 1_234,
    magic=MAGIC,
    comment=COMMENT,
    sl=1.08,
    tp=1.09,
    profit=-1.3,
    swap=-0.21,
    commission=-0.7,
    time_update_ms=T0 + 5_000,
)
MT4_POSITION = m.PositionReport(
    ticket=48213377,
    identifier=48213377,
    symbol="GBPUSD",
    type=1,
    volume=0.5,
    price_open=1.2671,
    price_current=1.2668,
    time_ms=T0,
    comment="from #48213301",
)
PENDING = m.OrderReport(
    ticket=1468026100,
    symbol="EURUSD",
    type=2,
    state=1,
    volume_initial=0.2,
    volume_current=0.2,
    price_open=1.08,
    time_setup_ms=T0 + 2_000,
    magic=MAGIC,
    comment=COMMENT,
    sl=1.075,
    tp=1.09,
    price_current=1.08401,
    expiration_ms=T0 + 86_400_000,
    time_type=2,
)
STOP_LIMIT = m.OrderReport(
    ticket=1468026101,
    symbol="EURUSD",
    type=6,
    state=1,
    volume_initial=1.0,
    volume_current=1.0,
    price_open=1.0875,
    stoplimit=1.087,
    time_setup_ms=T0 + 3_000,
)
FILLED_ORDER = m.OrderReport(
    ticket=1468026008,
    symbol="EURUSD",
    type=0,
    state=4,
    volume_initial=0.1,
    volume_current=0.0,
    price_open=1.08412,
    time_setup_ms=T0 + 1_200,
    time_done_ms=T0 + 1_234,
    position_id=1468026008,
    magic=MAGIC,
    comment=COMMENT,
)
DEAL_IN = m.DealReport(
    ticket=1445796125,
    order=1468026008,
    position_id=1468026008,
    symbol="EURUSD",
    type=0,
    entry=0,
    volume=0.1,
    price=1.08412,
    time_ms=T0 + 1_234,
    reason=3,
    magic=MAGIC,
    comment=COMMENT,
    commission=-0.35,
)
DEAL_OUT = m.DealReport(
    ticket=1445796155,
    order=1468026041,
    position_id=1468026008,
    symbol="EURUSD",
    type=1,
    entry=1,
    volume=0.1,
    price=1.08,
    time_ms=T0 + 60_000,
    reason=4,
    magic=MAGIC,
    comment="[sl 1.08000]",
    profit=-41.2,
    swap=-0.21,
    commission=-0.35,
)
TICK = m.Tick(symbol="EURUSD", bid=1.08399, ask=1.08401, time_ms=T0 + 1_500)
FILL = m.TradeResult(
    code=10009,
    order=1468026008,
    volume=0.1,
    price=1.08412,
    bid=1.0841,
    ask=1.08412,
    time_ms=T0 + 1_234,
    deal=1445796125,
    position=1468026008,
    comment="Request executed",
)
MT4_FILL = m.TradeResult(
    code=0, order=48213377, volume=0.5, price=1.2671, bid=1.2671, ask=1.2673, time_ms=T0
)
PLACED = m.TradeResult(
    code=10008, order=1468026100, volume=0.2, price=1.08, bid=1.08399, ask=1.08401, time_ms=T0
)

RESULT_SAMPLES: dict[type[m.Request], Any] = {
    m.AccountInfo: ACCOUNT,
    m.Symbols: [EURUSD, US500],
    m.GetTick: TICK,
    m.Positions: [POSITION, MT4_POSITION],
    m.Orders: [PENDING, STOP_LIMIT],
    m.OrderGet: m.Lookup(
        orders=[], positions=[POSITION], history_orders=[FILLED_ORDER], deals=[DEAL_IN]
    ),
    m.History: m.HistoryReport(orders=[FILLED_ORDER], deals=[DEAL_IN, DEAL_OUT]),
    m.Subscribe: m.Subscribed(ticks=["EURUSD", "US500.cash"]),
    m.Sync: m.SyncStarted(interval_ms=1000),
    m.MarketOrder: FILL,
    m.PendingOrder: PLACED,
    m.ModifyOrder: m.TradeResult(
        code=10009, order=1468026100, volume=0.2, price=1.0795, bid=1.08, ask=1.0801, time_ms=T0
    ),
    m.CancelOrder: m.TradeResult(
        code=0, order=48213390, volume=1.0, price=1.25, bid=1.2668, ask=1.267, time_ms=T0
    ),
    m.ModifyPosition: m.TradeResult(
        code=10009,
        order=1468026008,
        volume=0.1,
        price=1.08412,
        bid=1.0845,
        ask=1.08452,
        time_ms=T0 + 9_000,
        position=1468026008,
        comment="Request executed",
    ),
    # MT4 partial close: 0.2 of 0.5 lots closed, the rest reopened as ticket 48213401
    m.ClosePosition: m.TradeResult(
        code=0,
        order=48213377,
        volume=0.2,
        price=1.2668,
        bid=1.2666,
        ask=1.2668,
        time_ms=T0 + 60_000,
        remainder=48213401,
    ),
    # MT5 close-by: the close-by order, the OUT_BY deal of ``ticket``, the surviving position
    m.CloseBy: m.TradeResult(
        code=10009,
        order=1468026200,
        volume=0.1,
        price=1.0843,
        bid=1.0845,
        ask=1.08452,
        time_ms=T0 + 70_000,
        deal=1445796301,
        position=1468026008,
        comment="Request executed",
        remainder=1468026150,
    ),
}

EVENT_SAMPLES: dict[str, Any] = {
    "tick": TICK,
    "order": PENDING,
    "deal": DEAL_OUT,
    "account": ACCOUNT,
    "snapshot": m.Snapshot(
        time_ms=T0 + 61_000,
        account=ACCOUNT,
        positions=[POSITION, MT4_POSITION],
        orders=[PENDING, STOP_LIMIT],
        deals=[DEAL_IN, DEAL_OUT],
        history_orders=[FILLED_ORDER],
    ),
}

# --- realistic messages ---------------------------------------------------------------------

HELLO = m.Hello(
    v=1,
    platform="mt5",
    build=4755,
    login=51234567,
    server="ICMarketsSC-Demo",
    company="Raw Trading Ltd",
    currency="USD",
    leverage=500,
    margin_mode=2,
    terminal_id="ftmo-01",
    ea_version="1.0.0",
    nonce=EA_NONCE,
)
MARKET_BUY = m.MarketOrder(
    id=7, symbol="EURUSD", order_type=0, volume=0.1, magic=MAGIC, comment=COMMENT
)
REQUOTE = m.Response(
    id=8,
    ok=False,
    error=m.Error(code=138, name="ERR_REQUOTE", message="requote", bid=1.2668, ask=1.267),
)

BRIDGE_SAMPLES: dict[str, m.Message] = {
    "hello-mt5": HELLO,
    "hello-mt4-features": m.Hello(
        v=1,
        platform="mt4",
        build=1420,
        login=7001234,
        server="FTMO-Demo2",
        company="FTMO S.R.O.",
        currency="EUR",
        leverage=100,
        margin_mode=2,
        terminal_id="vps3.mt4_a",
        ea_version="1.0.0",
        nonce=EA_NONCE,
        features=["x-demo"],
    ),
    "auth": m.Auth(proof="a" * 64),
    "res-ok": m.Response(id=7, ok=True, result=codec.encode_payload(FILL)),
    "res-requote": REQUOTE,
    "res-protocol-error": m.Response(
        id=9,
        ok=False,
        error=m.Error(code=-2, name="invalid_request", message="stop-limit orders need MT5"),
    ),
    "evt-deal": m.Event(seq=1, name="deal", data=codec.encode_payload(DEAL_IN)),
    "evt-tick": m.Event(seq=2, name="tick", data=codec.encode_payload(TICK)),
    "ping": m.Ping(t_ms=123_456),
    "pong": m.Pong(t_ms=123_456),
    "bye": m.Bye(reason="bridge failed to prove the terminal key", code="auth_failed"),
}

TERMINAL_SAMPLES: dict[str, m.Message] = {
    "welcome": m.Welcome(
        v=1, nonce=BRIDGE_NONCE, proof="0f" * 32, session="s17", heartbeat_ms=1000
    ),
    "welcome-features": m.Welcome(
        v=1,
        nonce=BRIDGE_NONCE,
        proof="0f" * 32,
        session="s18",
        heartbeat_ms=500,
        features=["x-demo"],
    ),
    "ready": m.Ready(),
    "bye": m.Bye(reason="no frame for 3 heartbeats", code="heartbeat_timeout"),
    "bye-default-code": m.Bye(reason="bridge stopping"),
    "ping": m.Ping(t_ms=987_654_321),
    "pong": m.Pong(t_ms=987_654_321),
    "account_info": m.AccountInfo(id=1),
    "symbols": m.Symbols(id=2, names=["EURUSD", "US500.cash"]),
    "symbols-all": m.Symbols(id=3),
    "tick": m.GetTick(id=4, symbol="EURUSD"),
    "positions": m.Positions(id=5, symbol="EURUSD"),
    "orders": m.Orders(id=6),
    "order_get-ticket": m.OrderGet(id=10, ticket=1468026008),
    "order_get-client-id": m.OrderGet(id=11, client_id=CLIENT_ID),
    "history": m.History(id=12, since_ms=T0 - 3_600_000, until_ms=T0),
    "subscribe": m.Subscribe(id=13, ticks=["EURUSD", "XAUUSD"]),
    "sync": m.Sync(id=13, interval_ms=1000, since_ms=T0),
    "market_order": MARKET_BUY,
    "market_order-full": m.MarketOrder(
        id=14,
        symbol="XAUUSD",
        order_type=1,
        volume=0.05,
        magic=MAGIC,
        comment=COMMENT,
        price=2034.51,
        deviation=20,
        sl=2045.0,
        tp=2010.0,
        filling=1,
    ),
    "pending_order": m.PendingOrder(
        id=15,
        symbol="EURUSD",
        order_type=6,
        volume=1.0,
        price=1.0875,
        magic=MAGIC,
        comment=COMMENT,
        stoplimit=1.087,
        sl=1.082,
        tp=1.095,
        expiration_ms=T0 + 86_400_000,
        time_type=2,
        filling=2,
    ),
    "modify_order": m.ModifyOrder(
        id=16, ticket=1468026100, price=1.0795, sl=1.075, tp=1.09, time_type=0
    ),
    "cancel_order": m.CancelOrder(id=17, ticket=1468026100),
    "modify_position": m.ModifyPosition(id=18, ticket=1468026008, sl=1.0815, tp=1.0905),
    "modify_position-remove-levels": m.ModifyPosition(id=19, ticket=1468026008),
    "close_position": m.ClosePosition(id=20, ticket=1468026008),
    "close_position-partial": m.ClosePosition(
        id=21, ticket=48213377, volume=0.2, price=1.2668, deviation=10, comment=COMMENT
    ),
    "close_by": m.CloseBy(id=22, ticket=1468026008, opposite=1468026150),
}


def _frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def _one_frame(message: m.Message) -> bytes:
    """Encode ``message`` and take the frame apart again with a fresh decoder."""
    frame = codec.encode(message)
    (size,) = struct.unpack(">I", frame[:4])
    assert size == len(frame) - codec.HEADER_BYTES
    decoder = FrameDecoder()
    bodies = decoder.feed(frame)
    assert bodies == [frame[4:]]
    assert decoder.buffered == 0
    return bodies[0]


def _tag(cls: type[msgspec.Struct]) -> str:
    return str(cls.__struct_config__.tag)


# --- constants ------------------------------------------------------------------------------


def test_protocol_constants() -> None:
    assert m.PROTOCOL_VERSION == 2
    assert m.MAX_FRAME_BYTES == 1_048_576
    assert codec.HEADER_BYTES == 4


def test_samples_cover_every_message_type() -> None:
    assert {type(s) for s in BRIDGE_SAMPLES.values()} == set(BRIDGE_INBOUND)
    assert {type(s) for s in TERMINAL_SAMPLES.values()} == set(TERMINAL_INBOUND)
    assert set(RESULT_SAMPLES) == set(m.RESULT_TYPES)
    assert set(m.RESULT_TYPES) == set(m.READ_OPS) | set(m.TRADE_OPS)
    assert (
        set(EVENT_SAMPLES)
        == set(m.EVENT_TYPES)
        == {
            "tick",
            "order",
            "deal",
            "account",
            "snapshot",
        }
    )


def test_message_type_names() -> None:
    tags = sorted(_tag(cls) for cls in {*BRIDGE_INBOUND, *TERMINAL_INBOUND})
    assert tags == sorted(
        [
            "account_info",
            "auth",
            "bye",
            "cancel_order",
            "close_by",
            "close_position",
            "evt",
            "hello",
            "history",
            "market_order",
            "modify_order",
            "modify_position",
            "order_get",
            "orders",
            "pending_order",
            "ping",
            "pong",
            "positions",
            "ready",
            "res",
            "subscribe",
            "symbols",
            "sync",
            "tick",
            "welcome",
        ]
    )


# --- round trips of every message -----------------------------------------------------------


@pytest.mark.parametrize("message", BRIDGE_SAMPLES.values(), ids=BRIDGE_SAMPLES.keys())
def test_bridge_inbound_round_trip(message: m.Message) -> None:
    assert codec.decode_for_bridge(_one_frame(message)) == message


@pytest.mark.parametrize("message", TERMINAL_SAMPLES.values(), ids=TERMINAL_SAMPLES.keys())
def test_terminal_inbound_round_trip(message: m.Message) -> None:
    assert codec.decode_for_terminal(_one_frame(message)) == message


@pytest.mark.parametrize(
    "message",
    [s for s in TERMINAL_SAMPLES.values() if type(s) not in BRIDGE_INBOUND],
    ids=lambda s: _tag(type(s)),
)
def test_bridge_refuses_what_only_a_terminal_receives(message: m.Message) -> None:
    with pytest.raises(ProtocolError) as info:
        codec.decode_for_bridge(_one_frame(message))
    assert info.value.code == "invalid_message"


@pytest.mark.parametrize(
    "message",
    [s for s in BRIDGE_SAMPLES.values() if type(s) not in TERMINAL_INBOUND],
    ids=lambda s: _tag(type(s)),
)
def test_terminal_refuses_what_only_the_bridge_receives(message: m.Message) -> None:
    with pytest.raises(ProtocolError) as info:
        codec.decode_for_terminal(_one_frame(message))
    assert info.value.code == "invalid_message"


def test_wire_shape_of_a_minimal_market_order() -> None:
    """Defaults are omitted; the tag comes first; names are the documented ones."""
    body = _one_frame(MARKET_BUY)
    assert body == (
        b'{"type":"market_order","id":7,"symbol":"EURUSD","order_type":0,"volume":0.1,'
        b'"magic":20250101,"comment":"mg:0K3J5W2Q9B7XRT4Z"}'
    )


def test_wire_shape_of_responses() -> None:
    assert _one_frame(REQUOTE) == (
        b'{"type":"res","id":8,"ok":false,"error":{"code":138,"name":"ERR_REQUOTE",'
        b'"message":"requote","bid":1.2668,"ask":1.267}}'
    )
    ok = m.Response(id=4, ok=True, result=codec.encode_payload(TICK))
    assert _one_frame(ok) == (
        b'{"type":"res","id":4,"ok":true,"result":{"symbol":"EURUSD","bid":1.08399,'
        b'"ask":1.08401,"time_ms":1767225601500}}'
    )


def test_wire_shape_of_handshake_frames() -> None:
    assert _one_frame(m.Ready()) == b'{"type":"ready"}'
    assert _one_frame(m.Auth(proof="ab" * 32)) == b'{"type":"auth","proof":"' + b"ab" * 32 + b'"}'
    hello = msgspec.json.decode(_one_frame(HELLO))
    assert "features" not in hello
    assert list(hello) == [
        "type",
        "v",
        "platform",
        "build",
        "login",
        "server",
        "company",
        "currency",
        "leverage",
        "margin_mode",
        "terminal_id",
        "ea_version",
        "nonce",
    ]


def test_bye_code_defaults_to_closed() -> None:
    body = b'{"type":"bye","reason":"bridge stopping"}'
    assert _one_frame(m.Bye(reason="bridge stopping")) == body
    bye = codec.decode_for_terminal(body)
    assert bye == m.Bye(reason="bridge stopping", code="closed")


def test_omitted_optional_fields_take_their_documented_defaults() -> None:
    order = codec.decode_for_terminal(
        b'{"type":"pending_order","id":3,"symbol":"EURUSD","order_type":2,"volume":0.2,'
        b'"price":1.08,"magic":0,"comment":""}'
    )
    assert order == m.PendingOrder(
        id=3,
        symbol="EURUSD",
        order_type=2,
        volume=0.2,
        price=1.08,
        magic=0,
        comment="",
        stoplimit=0.0,
        sl=0.0,
        tp=0.0,
        expiration_ms=0,
        time_type=0,
        filling=-1,
    )
    response = codec.decode_for_bridge(b'{"type":"res","id":1,"ok":true}')
    assert isinstance(response, m.Response)
    assert bytes(response.result) == b"null"
    assert response.error is None


def test_field_order_and_whitespace_do_not_matter() -> None:
    body = b' {\n "t_ms" : 42 ,\t"type":"ping" } \r\n'
    assert codec.decode_for_bridge(body) == m.Ping(t_ms=42)
    assert codec.decode_for_terminal(body) == m.Ping(t_ms=42)


def test_integers_are_accepted_for_float_fields() -> None:
    order = codec.decode_for_terminal(
        b'{"type":"market_order","id":1,"symbol":"US30","order_type":1,"volume":2,'
        b'"magic":1,"comment":"","price":39000}'
    )
    assert isinstance(order, m.MarketOrder)
    assert order.volume == 2.0
    assert isinstance(order.volume, float)
    assert order.price == 39000.0


def test_non_ascii_text_round_trips_as_utf8() -> None:
    bye = m.Bye(reason="Zürich server: Verbindung getrennt")
    body = _one_frame(bye)
    assert "Zürich".encode() in body
    assert codec.decode_for_terminal(body) == bye


def test_duplicate_keys_last_value_wins() -> None:
    """msgspec keeps the last value; the spec therefore forbids senders to repeat a key."""
    order = codec.decode_for_terminal(
        b'{"type":"market_order","id":1,"symbol":"EURUSD","order_type":0,"volume":0.01,'
        b'"volume":50,"magic":1,"comment":""}'
    )
    assert isinstance(order, m.MarketOrder)
    assert order.volume == 50.0


def test_to_builtins() -> None:
    assert codec.to_builtins(TICK) == {
        "symbol": "EURUSD",
        "bid": 1.08399,
        "ask": 1.08401,
        "time_ms": 1_767_225_601_500,
    }


# --- results and events ---------------------------------------------------------------------


@pytest.mark.parametrize("op", RESULT_SAMPLES, ids=_tag)
def test_result_round_trip_for_every_operation(op: type[m.Request]) -> None:
    value = RESULT_SAMPLES[op]
    response = codec.decode_for_bridge(
        _one_frame(m.Response(id=5, ok=True, result=codec.encode_payload(value)))
    )
    assert isinstance(response, m.Response)
    assert response.id == 5
    assert response.ok is True
    assert response.error is None
    assert codec.decode_result(op, response.result) == value


@pytest.mark.parametrize("op", m.TRADE_OPS, ids=_tag)
def test_trade_result_refuses_a_null_result(op: type[m.Request]) -> None:
    with pytest.raises(ProtocolError) as info:
        codec.decode_result(op, msgspec.Raw(b"null"))
    assert info.value.code == "invalid_message"


def test_result_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(ProtocolError) as info:
        codec.decode_result(m.AccountInfo, codec.encode_payload(FILL))
    assert info.value.code == "invalid_message"
    with pytest.raises(ProtocolError) as info:
        codec.decode_result(m.Positions, codec.encode_payload(POSITION))  # not a list
    assert info.value.code == "invalid_message"


def test_result_with_an_unknown_field_is_refused() -> None:
    raw = msgspec.Raw(
        b'{"code":10009,"order":1,"volume":0.1,"price":1.1,"bid":1.1,"ask":1.1,'
        b'"time_ms":1,"retcode_external":0}'
    )
    with pytest.raises(ProtocolError) as info:
        codec.decode_result(m.MarketOrder, raw)
    assert info.value.code == "invalid_message"
    assert "retcode_external" in info.value.message


def test_empty_lookup_is_an_empty_object() -> None:
    raw = codec.encode_payload(m.Lookup())
    assert bytes(raw) == b"{}"
    assert codec.decode_result(m.OrderGet, raw) == m.Lookup(
        orders=[], positions=[], history_orders=[], deals=[]
    )


def test_symbol_spec_round_trips_with_its_defaults_spelled_out() -> None:
    raw = codec.encode_payload([EURUSD])
    decoded = msgspec.json.decode(bytes(raw))
    assert decoded[0]["filling_mode"] == 3
    assert decoded[0]["order_mode"] == 127
    assert codec.decode_result(m.Symbols, raw) == [EURUSD]


@pytest.mark.parametrize("name", EVENT_SAMPLES)
def test_event_round_trip_by_name(name: str) -> None:
    payload = EVENT_SAMPLES[name]
    event = codec.decode_for_bridge(
        _one_frame(m.Event(seq=41, name=name, data=codec.encode_payload(payload)))
    )
    assert isinstance(event, m.Event)
    assert (event.seq, event.name) == (41, name)
    assert codec.decode_event(name, event.data) == payload


def test_unknown_event_name_is_refused() -> None:
    with pytest.raises(ProtocolError) as info:
        codec.decode_event("position", codec.encode_payload(POSITION))
    assert info.value.code == "unknown_event"
    assert "position" in info.value.message


def test_event_payload_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(ProtocolError) as info:
        codec.decode_event("tick", codec.encode_payload(DEAL_IN))
    assert info.value.code == "invalid_message"


def test_event_without_data_is_refused() -> None:
    with pytest.raises(ProtocolError) as info:
        codec.decode_for_bridge(b'{"type":"evt","seq":1,"name":"tick"}')
    assert info.value.code == "invalid_message"


# --- framing --------------------------------------------------------------------------------

STREAM_MESSAGES: list[m.Message] = [
    BRIDGE_SAMPLES["res-ok"],
    m.Ping(t_ms=1),
    BRIDGE_SAMPLES["evt-deal"],
]
STREAM = b"".join(codec.encode(msg) for msg in STREAM_MESSAGES)
STREAM_BODIES = [codec.encode(msg)[4:] for msg in STREAM_MESSAGES]
FRAME_ENDS = [sum(len(b) + 4 for b in STREAM_BODIES[: i + 1]) for i in range(len(STREAM_BODIES))]


def test_split_at_every_byte_boundary() -> None:
    for cut in range(len(STREAM) + 1):
        decoder = FrameDecoder()
        first = decoder.feed(STREAM[:cut])
        assert len(first) == sum(1 for end in FRAME_ENDS if end <= cut), cut
        assert decoder.buffered == cut - (FRAME_ENDS[len(first) - 1] if first else 0)
        rest = decoder.feed(STREAM[cut:])
        assert first + rest == STREAM_BODIES, cut
        assert decoder.buffered == 0


def test_split_at_every_pair_of_boundaries() -> None:
    stream = codec.encode(m.Ping(t_ms=5)) + codec.encode(m.Pong(t_ms=6))
    expected = [b'{"type":"ping","t_ms":5}', b'{"type":"pong","t_ms":6}']
    for a in range(len(stream) + 1):
        for b in range(a, len(stream) + 1):
            decoder = FrameDecoder()
            out = decoder.feed(stream[:a]) + decoder.feed(stream[a:b]) + decoder.feed(stream[b:])
            assert out == expected, (a, b)


def test_byte_by_byte() -> None:
    decoder = FrameDecoder()
    out: list[bytes] = []
    for i in range(len(STREAM)):
        out += decoder.feed(STREAM[i : i + 1])
    assert out == STREAM_BODIES
    assert [codec.decode_for_bridge(b) for b in out] == STREAM_MESSAGES


def test_many_frames_in_one_chunk() -> None:
    chunk = b"".join(codec.encode(m.Ping(t_ms=i)) for i in range(1000))
    decoder = FrameDecoder()
    bodies = decoder.feed(chunk)
    assert len(bodies) == 1000
    assert [codec.decode_for_terminal(b) for b in bodies] == [m.Ping(t_ms=i) for i in range(1000)]
    assert decoder.buffered == 0


def test_partial_header_waits() -> None:
    frame = codec.encode(m.Ping(t_ms=77))
    decoder = FrameDecoder()
    assert decoder.feed(frame[:3]) == []
    assert decoder.buffered == 3
    assert decoder.feed(frame[3:4]) == []
    assert decoder.buffered == 4
    assert decoder.feed(frame[4:-1]) == []
    assert decoder.feed(frame[-1:]) == [b'{"type":"ping","t_ms":77}']
    assert decoder.buffered == 0


def test_empty_feed_returns_nothing() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"") == []
    assert decoder.buffered == 0


def test_trailing_partial_frame_is_kept() -> None:
    ping = codec.encode(m.Ping(t_ms=1))
    decoder = FrameDecoder()
    assert decoder.feed(ping + ping[:6]) == [ping[4:]]
    assert decoder.buffered == 6
    assert decoder.feed(ping[6:]) == [ping[4:]]


def test_frame_of_exactly_the_limit_is_accepted() -> None:
    body = b"x" * 64
    assert FrameDecoder(max_frame=64).feed(_frame(body)) == [body]


def test_frame_one_over_the_limit_is_refused_from_its_header_alone() -> None:
    decoder = FrameDecoder(max_frame=64)
    with pytest.raises(ProtocolError) as info:
        decoder.feed(struct.pack(">I", 65))
    assert info.value.code == "frame_too_large"
    assert decoder.failed and decoder.buffered == 0  # nothing of the body was awaited
    with pytest.raises(ProtocolError):
        decoder.feed(b"{}")  # the stream stays refused


def test_good_frames_before_an_oversize_header_are_not_lost() -> None:
    """A trade's answer sharing a chunk with garbage must still reach the bridge."""
    good = codec.encode(m.Pong(t_ms=1))
    decoder = FrameDecoder(max_frame=64)
    assert decoder.feed(good + struct.pack(">I", 65)) == [good[4:]]
    with pytest.raises(ProtocolError) as info:
        decoder.feed(b"")
    assert info.value.code == "frame_too_large"


def test_default_limit_is_one_mebibyte() -> None:
    """A real 1 MiB body is accepted; 1 MiB + 1 is refused before any body byte arrives."""
    padding = len(codec.encode(m.Bye(reason=""))) - 4
    at_limit = m.Bye(reason="x" * (m.MAX_FRAME_BYTES - padding))
    frame = codec.encode(at_limit)
    assert len(frame) == 4 + m.MAX_FRAME_BYTES
    decoder = FrameDecoder()
    [body] = decoder.feed(frame)
    assert codec.decode_for_terminal(body) == at_limit

    with pytest.raises(ProtocolError) as info:
        FrameDecoder().feed(struct.pack(">I", m.MAX_FRAME_BYTES + 1) + b'{"type"')
    assert info.value.code == "frame_too_large"


def test_hostile_length_is_refused() -> None:
    with pytest.raises(ProtocolError) as info:
        FrameDecoder().feed(b"\xff\xff\xff\xff")
    assert info.value.code == "frame_too_large"
    assert "4294967295" in info.value.message


def test_encoder_refuses_a_body_over_the_limit() -> None:
    padding = len(codec.encode(m.Bye(reason=""))) - 4
    with pytest.raises(ProtocolError) as info:
        codec.encode(m.Bye(reason="x" * (m.MAX_FRAME_BYTES - padding + 1)))
    assert info.value.code == "frame_too_large"


def test_zero_length_frame_is_framed_then_refused_as_bad_json() -> None:
    decoder = FrameDecoder()
    ping = codec.encode(m.Ping(t_ms=3))
    assert decoder.feed(b"\x00\x00\x00\x00" + ping) == [b"", ping[4:]]
    for decode in (codec.decode_for_bridge, codec.decode_for_terminal):
        with pytest.raises(ProtocolError) as info:
            decode(b"")
        assert info.value.code == "bad_json"


# --- malformed input ------------------------------------------------------------------------

MALFORMED: list[tuple[str, bytes, str]] = [
    # bad JSON
    ("truncated", b'{"type":"ping",', "bad_json"),
    ("not-json", b"hello", "bad_json"),
    ("trailing-garbage", b'{"type":"ping","t_ms":1}x', "bad_json"),
    ("two-objects", b'{"type":"ping","t_ms":1}{"type":"ping","t_ms":2}', "bad_json"),
    ("utf8-bom", b'\xef\xbb\xbf{"type":"ping","t_ms":1}', "bad_json"),
    ("nan-literal", b'{"type":"ping","t_ms":NaN}', "bad_json"),
    ("single-quotes", b"{'type':'ping','t_ms':1}", "bad_json"),
    ("lone-surrogate-escape", b'{"type":"bye","reason":"\\ud800"}', "bad_json"),
    # JSON, but not an object
    ("array", b"[]", "invalid_message"),
    ("null", b"null", "invalid_message"),
    ("number", b"1", "invalid_message"),
    ("string", b'"ping"', "invalid_message"),
    # unknown or missing type
    ("unknown-type", b'{"type":"market_order2","id":1,"ticket":5}', "invalid_message"),
    (
        "unknown-member-of-a-position-op",
        b'{"type":"close_position","id":1,"ticket":5,"magic":7}',
        "invalid_message",
    ),
    ("missing-type", b'{"t_ms":1}', "invalid_message"),
    ("empty-object", b"{}", "invalid_message"),
    ("type-not-a-string", b'{"type":1}', "invalid_message"),
    ("type-wrong-case", b'{"type":"PING","t_ms":1}', "invalid_message"),
    ("abstract-base-tag", b'{"type":"Request","id":1}', "invalid_message"),
    # unknown field
    ("unknown-field", b'{"type":"ping","t_ms":1,"x":null}', "invalid_message"),
    # wrong field type
    ("string-for-int", b'{"type":"ping","t_ms":"1"}', "invalid_message"),
    ("float-for-int", b'{"type":"ping","t_ms":1.0}', "invalid_message"),
    ("exponent-for-int", b'{"type":"ping","t_ms":1e3}', "invalid_message"),
    ("bool-for-int", b'{"type":"ping","t_ms":true}', "invalid_message"),
    ("null-for-int", b'{"type":"ping","t_ms":null}', "invalid_message"),
    ("int-for-string", b'{"type":"bye","reason":42}', "invalid_message"),
]


def _body(fields: dict[str, Any]) -> bytes:
    return msgspec.json.encode(fields)


def _without(fields: dict[str, Any], name: str) -> bytes:
    return _body({k: v for k, v in fields.items() if k != name})


HELLO_FIELDS: dict[str, Any] = msgspec.json.decode(_one_frame(HELLO))
RES_ERROR: dict[str, Any] = {"type": "res", "id": 1, "ok": False}
ORDER_FIELDS: dict[str, Any] = msgspec.json.decode(_one_frame(MARKET_BUY))
WELCOME_FIELDS: dict[str, Any] = msgspec.json.decode(_one_frame(TERMINAL_SAMPLES["welcome"]))

BRIDGE_MALFORMED: list[tuple[str, bytes, str]] = [
    ("hello-missing-nonce", _without(HELLO_FIELDS, "nonce"), "invalid_message"),
    ("hello-string-login", _body({**HELLO_FIELDS, "login": "51234567"}), "invalid_message"),
    ("hello-features-not-list", _body({**HELLO_FIELDS, "features": "x"}), "invalid_message"),
    ("res-missing-id", b'{"type":"res","ok":true,"result":null}', "invalid_message"),
    ("res-ok-as-string", b'{"type":"res","id":1,"ok":"true"}', "invalid_message"),
    (
        "res-error-missing-name",
        _body({**RES_ERROR, "error": {"code": 1, "message": "m"}}),
        "invalid_message",
    ),
    (
        "res-error-unknown-field",
        _body({**RES_ERROR, "error": {"code": 1, "name": "n", "message": "m", "retcode_ext": 5}}),
        "invalid_message",
    ),
    ("evt-seq-string", b'{"type":"evt","seq":"1","name":"tick","data":{}}', "invalid_message"),
    ("auth-extra-field", b'{"type":"auth","proof":"00","terminal_id":"x"}', "invalid_message"),
]

TERMINAL_MALFORMED: list[tuple[str, bytes, str]] = [
    ("market-order-missing-symbol", _without(ORDER_FIELDS, "symbol"), "invalid_message"),
    ("market-order-volume-string", _body({**ORDER_FIELDS, "volume": "0.1"}), "invalid_message"),
    ("market-order-unknown-field", _body({**ORDER_FIELDS, "position": 5}), "invalid_message"),
    (
        "market-order-volume-out-of-range",
        _body(ORDER_FIELDS).replace(b'"volume":0.1', b'"volume":1e400'),
        "invalid_message",
    ),
    ("welcome-missing-proof", _without(WELCOME_FIELDS, "proof"), "invalid_message"),
    ("ready-with-field", b'{"type":"ready","id":1}', "invalid_message"),
    ("symbols-names-not-strings", b'{"type":"symbols","id":1,"names":[1,2]}', "invalid_message"),
    ("cancel-without-id", b'{"type":"cancel_order","ticket":5}', "invalid_message"),
]


def _cases(rows: list[tuple[str, bytes, str]]) -> Any:
    return pytest.mark.parametrize(
        ("body", "code"), [(b, c) for _, b, c in rows], ids=[n for n, _, _ in rows]
    )


@_cases(MALFORMED)
@pytest.mark.parametrize(
    "decode", [codec.decode_for_bridge, codec.decode_for_terminal], ids=["bridge", "terminal"]
)
def test_malformed_frames_are_protocol_errors(
    decode: Callable[[bytes], Any], body: bytes, code: str
) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(body)
    assert info.value.code == code
    assert str(info.value).startswith(code + ": ")


@_cases(BRIDGE_MALFORMED)
def test_malformed_frames_from_a_terminal(body: bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        codec.decode_for_bridge(body)
    assert info.value.code == code


@_cases(TERMINAL_MALFORMED)
def test_malformed_frames_from_the_bridge(body: bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        codec.decode_for_terminal(body)
    assert info.value.code == code


def test_protocol_error_names_the_offending_field() -> None:
    with pytest.raises(ProtocolError) as info:
        codec.decode_for_bridge(b'{"type":"ping","t_ms":"soon"}')
    assert info.value.message == "Expected `int`, got `str` - at `$.t_ms`"
    with pytest.raises(ProtocolError) as info:
        codec.decode_for_bridge(b'{"type":"ping","t_ms":1,"extra":1}')
    assert info.value.message == "Object contains unknown field `extra`"


# --- input that once escaped as other exceptions ---------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"type":"bye","reason":"\xff"}',
        b'{"type":"bye","reason":"caf\xc3"}',
        b'{"type":"by\xe9","reason":"x"}',
        b'{"type":"bye","reas\xf0on":"x"}',
    ],
)
def test_invalid_utf8_in_a_string_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        codec.decode_for_bridge(body)
    assert info.value.code == "bad_json"


def test_invalid_utf8_in_a_result_is_a_protocol_error() -> None:
    response = codec.decode_for_bridge(
        b'{"type":"res","id":1,"ok":true,"result":{"symbol":"EUR\xffUSD","bid":1,"ask":1,'
        b'"time_ms":1}}'
    )
    assert isinstance(response, m.Response)
    with pytest.raises(ProtocolError) as info:
        codec.decode_result(m.GetTick, response.result)
    assert info.value.code == "bad_json"


def test_deeply_nested_json_is_a_protocol_error() -> None:
    depth = 1000
    body = b'{"type":"res","id":1,"ok":true,"result":' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(ProtocolError) as info:
        codec.decode_for_bridge(body)
    assert info.value.code == "bad_json"


@pytest.mark.parametrize(
    "body",
    [
        b'{"type":"res","id":1,"ok":false}',
        b'{"type":"res","id":1,"ok":true,"error":{"code":1,"name":"n","message":"m"}}',
    ],
    ids=["error-without-details", "ok-with-error"],
)
def test_inconsistent_response_is_refused(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        codec.decode_for_bridge(body)


# --- property tests -------------------------------------------------------------------------

INT64 = st.integers(-(2**63), 2**63 - 1)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
TEXT = st.text(max_size=24)


def _strategy(tp: Any) -> st.SearchStrategy[Any]:
    """A strategy for a field type of the wire structs (finite floats: JSON has no NaN)."""
    if tp is int:
        return INT64
    if tp is float:
        return FLOATS
    if tp is str:
        return TEXT
    if tp is bool:
        return st.booleans()
    if tp is msgspec.Raw:
        return PAYLOADS.map(codec.encode_payload)
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:  # a bounded int or float: values inside the bounds
        base, meta = typing.get_args(tp)[:2]
        if base is int:
            return st.integers(min_value=meta.ge, max_value=meta.le)
        return st.floats(
            min_value=meta.ge, max_value=meta.le, allow_nan=False, allow_infinity=False
        )
    if origin is list:
        return st.lists(_strategy(typing.get_args(tp)[0]), max_size=3)
    if origin in (types.UnionType, typing.Union):
        return st.one_of(
            *(st.none() if a is type(None) else _strategy(a) for a in typing.get_args(tp))
        )
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return _builds(tp)
    raise TypeError(f"no strategy for {tp!r}")


def _builds(cls: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    fields = msgspec.structs.fields(cls)
    if cls is m.Response:  # ok: true carries a result, ok: false an error, never both
        ok = st.builds(
            m.Response, id=_strategy(int), ok=st.just(True), result=_strategy(msgspec.Raw)
        )
        failed = st.builds(m.Response, id=_strategy(int), ok=st.just(False), error=_builds(m.Error))
        return st.one_of(ok, failed)
    return st.builds(cls, **{f.name: _strategy(f.type) for f in fields})


PAYLOAD_TYPES: list[type[msgspec.Struct]] = [
    m.TradeResult,
    m.Tick,
    m.AccountReport,
    m.PositionReport,
    m.OrderReport,
    m.DealReport,
    m.Lookup,
    m.HistoryReport,
    m.Subscribed,
    SymbolSpec,
]
PAYLOADS: st.SearchStrategy[Any] = st.one_of(*(_builds(t) for t in PAYLOAD_TYPES))
MESSAGES: st.SearchStrategy[Any] = st.one_of(
    *(_builds(cls) for cls in sorted({*BRIDGE_INBOUND, *TERMINAL_INBOUND}, key=_tag))
)
RESULTS: st.SearchStrategy[tuple[type[m.Request], Any]] = st.sampled_from(
    sorted(m.RESULT_TYPES.items(), key=lambda kv: _tag(kv[0]))
).flatmap(lambda kv: _strategy(kv[1]).map(lambda value: (kv[0], value)))
EVENTS: st.SearchStrategy[tuple[str, Any]] = st.sampled_from(sorted(m.EVENT_TYPES.items())).flatmap(
    lambda kv: _strategy(kv[1]).map(lambda value: (kv[0], value))
)

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(MESSAGES)
def test_generated_messages_round_trip(message: m.Message) -> None:
    body = _one_frame(message)
    if isinstance(message, BRIDGE_INBOUND):
        assert codec.decode_for_bridge(body) == message
    if isinstance(message, TERMINAL_INBOUND):
        assert codec.decode_for_terminal(body) == message


@PROPERTY
@given(RESULTS)
def test_generated_results_round_trip(op_and_value: tuple[type[m.Request], Any]) -> None:
    op, value = op_and_value
    response = codec.decode_for_bridge(
        _one_frame(m.Response(id=1, ok=True, result=codec.encode_payload(value)))
    )
    assert isinstance(response, m.Response)
    assert codec.decode_result(op, response.result) == value


@PROPERTY
@given(EVENTS, st.integers(1, 2**63 - 1))
def test_generated_events_round_trip(name_and_payload: tuple[str, Any], seq: int) -> None:
    name, payload = name_and_payload
    event = codec.decode_for_bridge(
        _one_frame(m.Event(seq=seq, name=name, data=codec.encode_payload(payload)))
    )
    assert isinstance(event, m.Event)
    assert event.seq == seq
    assert codec.decode_event(name, event.data) == payload


# --- fuzzing the decoder --------------------------------------------------------------------

SEED_BODIES = [_one_frame(s) for s in (*BRIDGE_SAMPLES.values(), *TERMINAL_SAMPLES.values())]


@st.composite
def _mutated(draw: st.DrawFn, body: bytes) -> bytes:
    data = bytearray(body)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["replace", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "replace" and data:
            data[at] = draw(st.integers(0, 255))
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete" and data:
            del data[at : at + draw(st.integers(1, 8))]
        elif action == "truncate":
            del data[at:]
    return bytes(data)


BODIES: st.SearchStrategy[bytes] = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(SEED_BODIES).flatmap(_mutated),
)
STREAMS: st.SearchStrategy[bytes] = st.one_of(
    st.binary(max_size=256),  # raw noise, mostly hostile lengths
    st.lists(BODIES, max_size=4).map(lambda bodies: b"".join(_frame(b) for b in bodies)),
    st.lists(st.sampled_from(SEED_BODIES), min_size=1, max_size=4)
    .map(lambda bodies: b"".join(_frame(b) for b in bodies))
    .flatmap(_mutated),  # damage that may hit the headers too
)


def _reference_frames(stream: bytes, limit: int) -> tuple[list[bytes], bool]:
    """What a reader of the whole stream at once sees: complete frames, and whether a header
    announced more than ``limit``."""
    frames: list[bytes] = []
    pos = 0
    while len(stream) - pos >= 4:
        size = int.from_bytes(stream[pos : pos + 4], "big")
        if size > limit:
            return frames, True
        if len(stream) - pos - 4 < size:
            break
        frames.append(stream[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return frames, False


def _only_protocol_errors(decode: Callable[..., Any], *args: Any) -> Any:
    """Call ``decode``; a ProtocolError is fine, anything else fails the test."""
    try:
        return decode(*args)
    except ProtocolError:
        return None


def _decode_everything(body: bytes) -> None:
    for decode in (codec.decode_for_bridge, codec.decode_for_terminal):
        message = _only_protocol_errors(decode, body)
        if isinstance(message, m.Response):
            for op in m.RESULT_TYPES:
                _only_protocol_errors(codec.decode_result, op, message.result)
        elif isinstance(message, m.Event):
            _only_protocol_errors(codec.decode_event, message.name, message.data)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=STREAMS, data=st.data())
def test_fuzz_decoder_raises_only_protocol_errors(stream: bytes, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6), label="cuts"))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    decoder = FrameDecoder()
    bodies: list[bytes] = []
    error: ProtocolError | None = None
    for chunk in [*chunks, b""]:
        try:
            bodies += decoder.feed(chunk)
        except ProtocolError as exc:
            error = exc
            break

    expected, too_large = _reference_frames(stream, m.MAX_FRAME_BYTES)
    assert (error.code if error else None) == ("frame_too_large" if too_large else None)
    if too_large:
        # Every complete frame before the oversized header is returned; then the error.
        assert bodies == expected
    else:
        assert bodies == expected
        assert decoder.buffered == len(stream) - sum(4 + len(b) for b in bodies)
    for body in bodies:
        _decode_everything(body)


# --- feature "positions" (docs/protocol.md §5.2) -------------------------------------------


def test_position_operations_on_the_wire() -> None:
    assert m.POSITIONS_FEATURE == "positions"
    assert {m.ModifyPosition, m.ClosePosition, m.CloseBy} <= set(m.TRADE_OPS)
    assert _one_frame(m.ClosePosition(id=20, ticket=5)) == (
        b'{"type":"close_position","id":20,"ticket":5}'
    )
    assert _one_frame(m.ModifyPosition(id=21, ticket=5, sl=1.08)) == (
        b'{"type":"modify_position","id":21,"ticket":5,"sl":1.08}'
    )
    assert _one_frame(m.CloseBy(id=22, ticket=5, opposite=6)) == (
        b'{"type":"close_by","id":22,"ticket":5,"opposite":6}'
    )
    with pytest.raises(ProtocolError):  # both tickets are required
        codec.decode_for_terminal(b'{"type":"close_by","id":22,"ticket":5}')


def test_remainder_is_never_on_the_wire_of_v1_results() -> None:
    """``TradeResult.remainder`` defaults to 0 and is omitted: a v1 result is unchanged."""
    assert b"remainder" not in bytes(codec.encode_payload(FILL))
    raw = codec.encode_payload(RESULT_SAMPLES[m.ClosePosition])
    assert b'"remainder":48213401' in bytes(raw)
    assert codec.decode_result(m.ClosePosition, raw).remainder == 48213401
