"""Every pre-validation refusal, with the field and the rule it names (reference §4.2-§4.6)."""

from __future__ import annotations

import pytest

from mtgate.domain.enums import (
    ExpirationFlag,
    MarginMode,
    OrderModeFlag,
    OrderType,
    Platform,
    TradeMode,
)
from mtgate.domain.symbols import SymbolSpec
from mtgate.execution.requests import InvalidRequest, MarketOrderRequest, PendingOrderRequest, parse
from mtgate.execution.validation import Market, OrderIntent, prevalidate
from mtgate.protocol import messages as m

EURUSD = SymbolSpec(
    name="EURUSD",
    digits=5,
    point=0.00001,
    tick_size=0.00001,
    tick_value=1.0,
    contract_size=100_000,
    volume_min=0.01,
    volume_max=50.0,
    volume_step=0.01,
    currency_base="EUR",
    currency_profit="USD",
    currency_margin="EUR",
    stops_level=20,
    freeze_level=10,
)
TICK = m.Tick(symbol="EURUSD", bid=1.10000, ask=1.10010, time_ms=1_000_000)
ACCOUNT = m.AccountReport(
    login=1,
    server="S",
    currency="USD",
    leverage=100,
    margin_mode=2,
    balance=10_000.0,
    credit=0.0,
    profit=0.0,
    equity=10_000.0,
    margin=0.0,
    margin_free=10_000.0,
    margin_level=0.0,
    margin_so_call=100.0,
    margin_so_so=50.0,
    trade_allowed=True,
    trade_expert=True,
)


def market(
    spec: SymbolSpec | None = EURUSD,
    platform: Platform = Platform.MT5,
    mode: MarginMode = MarginMode.HEDGING,
) -> Market:
    return Market(platform, mode, spec, TICK, ACCOUNT, now_ms=1_000_000)


def intent(
    order_type: OrderType = OrderType.BUY,
    volume: float = 0.1,
    price: float = 0.0,
    sl: float = 0.0,
    tp: float = 0.0,
    stoplimit: float = 0.0,
    expiration_ms: int = 0,
    symbol: str = "EURUSD",
) -> OrderIntent:
    return OrderIntent(symbol, order_type, volume, price, sl, tp, stoplimit, expiration_ms)


def with_spec(**changes: object) -> SymbolSpec:
    import msgspec

    return msgspec.structs.replace(EURUSD, **changes)


B, S = OrderType.BUY, OrderType.SELL

CASES = [
    ("unknown symbol", intent(symbol="EURXXX"), market(spec=None), "symbol", "unknown_symbol"),
    (
        "trade disabled",
        intent(),
        market(with_spec(trade_mode=TradeMode.DISABLED)),
        "symbol",
        "trade_mode",
    ),
    (
        "close only",
        intent(),
        market(with_spec(trade_mode=TradeMode.CLOSE_ONLY)),
        "symbol",
        "trade_mode",
    ),
    (
        "long only",
        intent(S),
        market(with_spec(trade_mode=TradeMode.LONG_ONLY)),
        "side",
        "trade_mode",
    ),
    (
        "short only",
        intent(B),
        market(with_spec(trade_mode=TradeMode.SHORT_ONLY)),
        "side",
        "trade_mode",
    ),
    (
        "order_mode",
        intent(OrderType.BUY_LIMIT, price=1.09),
        market(with_spec(order_mode=OrderModeFlag.MARKET)),
        "kind",
        "order_mode",
    ),
    (
        "mt4 stop-limit",
        intent(OrderType.BUY_STOP_LIMIT, price=1.102, stoplimit=1.101),
        market(platform=Platform.MT4),
        "kind",
        "order_type",
    ),
    (
        "expiration flag",
        intent(OrderType.BUY_LIMIT, price=1.09, expiration_ms=2_000_000),
        market(with_spec(expiration_mode=ExpirationFlag.GTC)),
        "expiration_ms",
        "expiration_mode",
    ),
    (
        "expiration past",
        intent(OrderType.BUY_LIMIT, price=1.09, expiration_ms=999_999),
        market(),
        "expiration_ms",
        "expiration",
    ),
    ("volume min", intent(volume=0.001), market(), "volume", "volume_min"),
    ("volume max", intent(volume=51), market(), "volume", "volume_max"),
    ("volume step", intent(volume=0.015), market(), "volume", "volume_step"),
    ("volume nan", intent(volume=float("nan")), market(), "volume", "volume_min"),
    ("price nan", intent(OrderType.BUY_LIMIT, price=float("nan")), market(), "price", "tick_size"),
    ("price tick", intent(OrderType.BUY_LIMIT, price=1.090005), market(), "price", "tick_size"),
    ("sl tick", intent(sl=1.0950001), market(), "sl", "tick_size"),
    ("negative tp", intent(tp=-1.0), market(), "tp", "positive"),
    (
        "buy limit above ask",
        intent(OrderType.BUY_LIMIT, price=1.10020),
        market(),
        "price",
        "price_side",
    ),
    (
        "sell limit below bid",
        intent(OrderType.SELL_LIMIT, price=1.09990),
        market(),
        "price",
        "price_side",
    ),
    (
        "buy stop below ask",
        intent(OrderType.BUY_STOP, price=1.10000),
        market(),
        "price",
        "price_side",
    ),
    (
        "sell stop above bid",
        intent(OrderType.SELL_STOP, price=1.10010),
        market(),
        "price",
        "price_side",
    ),
    (
        "stoplimit above stop",
        intent(OrderType.BUY_STOP_LIMIT, price=1.10100, stoplimit=1.10200),
        market(),
        "stoplimit",
        "price_side",
    ),
    ("buy sl within stops level", intent(B, sl=1.09980), market(), "sl", "stops_level"),
    ("buy sl above bid", intent(B, sl=1.10005), market(), "sl", "stops_level"),
    ("sell tp within stops level", intent(S, tp=1.09995), market(), "tp", "stops_level"),
    (
        "pending price within stops level",
        intent(OrderType.BUY_LIMIT, price=1.09995),
        market(),
        "price",
        "stops_level",
    ),
    ("free margin", intent(volume=10.0), market(), "volume", "free_margin"),
]


@pytest.mark.parametrize(
    ("label", "order", "mkt", "field", "rule"), CASES, ids=[c[0] for c in CASES]
)
def test_refusal_names_field_and_rule(
    label: str, order: OrderIntent, mkt: Market, field: str, rule: str
) -> None:
    refusal = prevalidate(order, mkt)
    assert refusal is not None, label
    assert (refusal.field, refusal.rule) == (field, rule)
    assert refusal.message


@pytest.mark.parametrize(
    "order",
    [
        intent(),
        intent(S, volume=0.5, sl=1.10100, tp=1.09000),
        intent(
            B, sl=1.09970, tp=1.10100
        ),  # 30 points from Bid: beyond the 20-point level + 1 slack
        intent(OrderType.BUY_LIMIT, price=1.09900, sl=1.09800, tp=1.10200),
        intent(
            OrderType.SELL_STOP_LIMIT, price=1.09900, stoplimit=1.09950, expiration_ms=2_000_000
        ),
    ],
)
def test_valid_orders_pass(order: OrderIntent) -> None:
    assert prevalidate(order, market()) is None


def test_netting_accounts_leave_margin_to_the_server() -> None:
    """A netting order may reduce a position; only the server knows what it will cost."""
    assert prevalidate(intent(volume=10.0), market(mode=MarginMode.NETTING)) is None


def test_the_stops_check_keeps_one_point_of_slack() -> None:
    """The server accepts exactly the level; the bridge wants one point more (reference §4.3)."""
    at_level = intent(B, sl=round(TICK.bid - 20 * EURUSD.point, 5))
    one_more = intent(B, sl=round(TICK.bid - 21 * EURUSD.point, 5))
    refusal = prevalidate(at_level, market())
    assert refusal is not None and refusal.rule == "stops_level"
    assert prevalidate(one_more, market()) is None


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"account": "1@S", "symbol": "EURUSD", "side": "hold", "volume": 1}, "side"),
        ({"account": "1@S", "symbol": "EURUSD", "side": "buy", "volume": -1}, "volume"),
        ({"account": "1@S", "symbol": "EURUSD", "side": "buy", "volume": "1"}, "volume"),
        ({"account": "nobody", "symbol": "EURUSD", "side": "buy", "volume": 1}, "account"),
        (
            {
                "account": "1@S",
                "symbol": "EURUSD",
                "side": "buy",
                "volume": 1,
                "client_order_id": "x" * 21,
            },
            "client_order_id",
        ),
        (
            {
                "account": "1@S",
                "symbol": "EURUSD",
                "side": "buy",
                "volume": 1,
                "client_order_id": "a b",
            },
            "client_order_id",
        ),
        (
            {"account": "1@S", "symbol": "EURUSD", "side": "buy", "volume": 1, "leverage": 5},
            "leverage",
        ),
        ({"account": "1@S", "side": "buy", "volume": 1}, "symbol"),
    ],
)
def test_bad_api_payload_names_the_field(payload: dict[str, object], field: str | None) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse(MarketOrderRequest, payload)
    assert raised.value.field == field
    assert str(raised.value)


def test_bad_json_payload_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="malformed JSON"):
        parse(PendingOrderRequest, b'{"account": ')


@pytest.mark.parametrize("value", [9, -1, 2**31])
def test_a_trade_mode_the_bridge_does_not_know_refuses_naming_the_symbol(value: int) -> None:
    """The terminal's data must not make the order path raise: a trade mode outside the
    table refuses the order (rule ``symbol_spec``), it is never guessed."""
    refusal = prevalidate(intent(), market(with_spec(trade_mode=value)))
    assert refusal is not None
    assert (refusal.field, refusal.rule) == ("symbol", "symbol_spec")
    assert str(value) in refusal.message


@pytest.mark.parametrize("value", [42, -1])
def test_a_calc_mode_the_bridge_does_not_know_leaves_the_margin_to_the_server(
    value: int,
) -> None:
    """Margin is an estimate: a calculation mode it does not cover is the server's to judge,
    even with a volume whose margin in the known modes exceeds the free margin."""
    assert prevalidate(intent(volume=20.0), market(with_spec(calc_mode=value))) is None
    refusal = prevalidate(intent(volume=20.0), market())
    assert refusal is not None and refusal.rule == "free_margin"
