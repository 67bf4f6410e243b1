"""Pre-validation: refuse, before sending, what the trade server would refuse anyway.

Checks run against the terminal's cached symbol spec, last tick and account report, in the
server's order (reference §4.6). They are stricter than the server where the reference says a
bridge should be (stops: one point of slack), and they only refuse what is certain to fail:
whatever depends on facts the bridge cannot see (sessions, the broker's live margin) is left
to the server.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from mtgate.domain import symbols as rules
from mtgate.domain.enums import (
    ORDER_MODE_BITS,
    ExpirationFlag,
    MarginMode,
    OrderType,
    Platform,
    TradeMode,
    trade_mode,
)
from mtgate.domain.symbols import SymbolSpec
from mtgate.protocol import messages as m


@dataclass(frozen=True, slots=True)
class Refusal:
    field: str
    rule: str
    message: str


class OrderIntent(NamedTuple):
    """The order as it will be sent: what pre-validation looks at.

    This and :class:`Market` are tuples: made on every order, and a frozen dataclass takes
    four times as long to build."""

    symbol: str
    order_type: OrderType
    volume: float
    price: float  # pending: the order price; market: 0 or the decision price
    sl: float
    tp: float
    stoplimit: float = 0.0
    expiration_ms: int = 0


class Market(NamedTuple):
    """What the bridge knows of the account and the symbol when the order arrives."""

    platform: Platform
    margin_mode: MarginMode
    spec: SymbolSpec | None
    tick: m.Tick | None
    account: m.AccountReport | None
    now_ms: int | None
    """The trade server's clock now (:meth:`TerminalSession.server_now_ms`); None before it
    reported any time: then no server time is checked here, the server checks it."""


def _trade_mode(intent: OrderIntent, spec: SymbolSpec) -> Refusal | None:
    mode = trade_mode(spec.trade_mode)
    buy = intent.order_type.is_buy
    if mode == TradeMode.DISABLED:
        return Refusal("symbol", "trade_mode", f"trading {spec.name} is disabled")
    if mode == TradeMode.CLOSE_ONLY:
        return Refusal("symbol", "trade_mode", f"{spec.name} accepts closing trades only")
    if mode == TradeMode.LONG_ONLY and not buy:
        return Refusal("side", "trade_mode", f"{spec.name} accepts long positions only")
    if mode == TradeMode.SHORT_ONLY and buy:
        return Refusal("side", "trade_mode", f"{spec.name} accepts short positions only")
    return None


def _order_kind(intent: OrderIntent, spec: SymbolSpec, market: Market) -> Refusal | None:
    field = "side" if intent.order_type.is_market else "kind"
    if intent.order_type.is_stop_limit and market.platform == Platform.MT4:
        return Refusal(field, "order_type", "MT4 has no stop-limit orders")
    if not spec.order_mode & ORDER_MODE_BITS[intent.order_type]:
        return Refusal(
            field, "order_mode", f"{spec.name} does not allow {intent.order_type.name} orders"
        )
    if intent.expiration_ms:
        if market.platform == Platform.MT5 and not spec.expiration_mode & ExpirationFlag.SPECIFIED:
            return Refusal(
                "expiration_ms", "expiration_mode", f"{spec.name} does not allow an expiration time"
            )
        if market.now_ms is not None and intent.expiration_ms <= market.now_ms:
            return Refusal("expiration_ms", "expiration", "expiration time is in the past")
    return None


def volume_refusal(volume: float, spec: SymbolSpec) -> Refusal | None:
    """Reference §4.5: minimum, maximum, step."""
    if not math.isfinite(volume):
        return Refusal("volume", "volume_min", f"volume {volume} is not a number of lots")
    if volume < spec.volume_min - 1e-9:
        return Refusal(
            "volume", "volume_min", f"volume {volume:g} is below the minimum {spec.volume_min:g}"
        )
    if volume > spec.volume_max + 1e-9:
        return Refusal(
            "volume", "volume_max", f"volume {volume:g} is above the maximum {spec.volume_max:g}"
        )
    if not rules.on_grid(volume, spec.volume_step):
        return Refusal(
            "volume",
            "volume_step",
            f"volume {volume:g} is not a multiple of the step {spec.volume_step:g}",
        )
    return None


def _prices(intent: OrderIntent, spec: SymbolSpec) -> Refusal | None:
    named = (
        ("price", intent.price),
        ("stoplimit", intent.stoplimit),
        ("sl", intent.sl),
        ("tp", intent.tp),
    )
    for field, value in named:
        if value < 0:
            return Refusal(field, "positive", f"{field} {value} is negative")
        if value and not rules.price_normalized(spec, value):
            return Refusal(
                field,
                "tick_size",
                f"{field} {value} is not a multiple of the tick size {spec.tick_size:g}",
            )
    return None


def _against_market(intent: OrderIntent, spec: SymbolSpec, tick: m.Tick) -> Refusal | None:
    ot = intent.order_type
    if ot.is_pending:
        if not rules.pending_price_side_ok(ot, intent.price, tick.bid, tick.ask):
            return Refusal(
                "price",
                "price_side",
                f"{ot.name} price {intent.price} is on the wrong side of the market (bid {tick.bid}, ask {tick.ask})",
            )
        if ot.is_stop_limit and not rules.stoplimit_side_ok(ot, intent.price, intent.stoplimit):
            return Refusal(
                "stoplimit", "price_side", f"stoplimit {intent.stoplimit} is beyond the stop price"
            )
    broken = rules.stops_distance_broken(
        ot,
        open_price=intent.price,
        sl=intent.sl,
        tp=intent.tp,
        bid=tick.bid,
        ask=tick.ask,
        min_distance=spec.stops_level * spec.point,
        slack=spec.point if spec.stops_level else 0.0,
        stoplimit=intent.stoplimit,
    )
    if broken is not None:
        return Refusal(
            broken,
            "stops_level",
            f"{broken} is on the wrong side or closer than {spec.stops_level} points to the market "
            f"(bid {tick.bid}, ask {tick.ask})",
        )
    return None


def _margin(intent: OrderIntent, spec: SymbolSpec, market: Market, tick: m.Tick) -> Refusal | None:
    # Netting orders may reduce a position (less margin, not more): the server decides.
    account = market.account
    if account is None or market.margin_mode == MarginMode.NETTING:
        return None
    price = intent.price or (tick.ask if intent.order_type.is_buy else tick.bid)
    try:
        need = rules.margin_required(spec, intent.volume, price, account.leverage, account.currency)
    except (ValueError, ArithmeticError):
        return (
            None  # a calculation mode or currency the estimate does not cover: the server decides
        )
    if need > account.margin_free:
        return Refusal(
            "volume",
            "free_margin",
            f"{intent.volume:g} lots need {need:.2f} {account.currency} margin, free margin is {account.margin_free:.2f}",
        )
    return None


def prevalidate(intent: OrderIntent, market: Market) -> Refusal | None:
    """The first rule ``intent`` breaks, or None when it may be sent.

    A symbol specification the rules cannot work with (an enumeration value the bridge does
    not know, say) refuses the order, naming the symbol: the terminal's data must not make
    the order path raise."""
    spec = market.spec
    if spec is None:
        return Refusal(
            "symbol", "unknown_symbol", f"symbol {intent.symbol!r} is not offered by this terminal"
        )
    try:
        return _checks(intent, market, spec)
    except (ValueError, ArithmeticError) as exc:
        return Refusal(
            "symbol",
            "symbol_spec",
            f"the terminal's specification of {spec.name} cannot be checked: {exc}",
        )


def _checks(intent: OrderIntent, market: Market, spec: SymbolSpec) -> Refusal | None:
    found = _trade_mode(intent, spec) or _order_kind(intent, spec, market)
    if found is not None:
        return found
    found = volume_refusal(intent.volume, spec) or _prices(intent, spec)
    if found is not None or market.tick is None:
        return found
    return _against_market(intent, spec, market.tick) or _margin(intent, spec, market, market.tick)
