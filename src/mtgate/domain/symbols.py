"""Symbol specification and the pure trading rules that depend on it (reference §4, §5).

The simulator enforces these rules with MetaTrader's own comparisons; the bridge's
pre-validation uses the same functions with a stricter margin so that an order it lets through
is not refused by the server for a rounding hair.
"""

from __future__ import annotations

import math

import msgspec

from mtgate.domain.enums import CalcMode, ExecutionMode, OrderType, TradeMode, calc_mode
from mtgate.domain.limits import Finite, Int64

_EPS = 1e-9
_PRICE_EPS = 1e-9
"""Tolerance for comparing price distances with a level. Prices are binary floats: the
difference of two normalized prices exactly ``level`` points apart can come out a hair above
or below ``level * point`` (e.g. 1.10000 - 1.09970 vs 30 * 0.00001), which without a
tolerance refuses stops that sit exactly at the level (or lets through orders exactly at the
freeze level). 1e-9 is far below any point size (1e-8 at most 8 digits) and far above the
rounding error of prices below 10**6."""


class SymbolSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a terminal reports about a symbol (the SymbolInfo fields validation needs).

    Levels (``stops_level``, ``freeze_level``) are in points; volumes in lots.
    """

    name: str
    digits: Int64
    point: Finite
    tick_size: Finite
    tick_value: Finite
    contract_size: Finite
    volume_min: Finite
    volume_max: Finite
    volume_step: Finite
    currency_base: str
    currency_profit: str
    currency_margin: str
    calc_mode: Int64 = CalcMode.FOREX
    trade_mode: Int64 = TradeMode.FULL
    exe_mode: Int64 = ExecutionMode.MARKET
    volume_limit: Finite = 0.0
    stops_level: Int64 = 0
    freeze_level: Int64 = 0
    filling_mode: Int64 = 3
    expiration_mode: Int64 = 15
    order_mode: Int64 = 127
    margin_initial: Finite = 0.0
    margin_hedged: Finite = 0.0
    description: str = ""


def on_grid(value: float, step: float) -> bool:
    """Whether ``value`` is a whole number of ``step`` (article 2555's test, tolerance 1e-7).

    A step of 0 (or less) declares no grid, as some brokers report for a symbol's tick size:
    every finite value is on it; the trade server is the judge."""
    if not step > 0:
        return math.isfinite(value)
    ratio = round(value / step)
    return abs(ratio * step - value) <= 1e-7


def volume_rule_broken(spec: SymbolSpec, volume: float) -> str | None:
    """The volume rule (reference §4.5) that ``volume`` breaks, or None."""
    if not math.isfinite(volume) or volume < spec.volume_min - _EPS:
        return f"volume {volume:g} is below the minimum {spec.volume_min:g}"
    if volume > spec.volume_max + _EPS:
        return f"volume {volume:g} is above the maximum {spec.volume_max:g}"
    if not on_grid(volume, spec.volume_step):
        return f"volume {volume:g} is not a multiple of the step {spec.volume_step:g}"
    return None


def round_volume_down(spec: SymbolSpec, volume: float) -> float:
    """Round down to the volume step (never up: rounding up would enlarge the risk)."""
    steps = math.floor(volume / spec.volume_step + _EPS)
    decimals = max(0, -math.floor(math.log10(spec.volume_step) + _EPS))
    return round(steps * spec.volume_step, decimals)


def price_normalized(spec: SymbolSpec, price: float) -> bool:
    """Whether ``price`` is a multiple of the tick size at the symbol's digits."""
    if not math.isfinite(price) or price <= 0:
        return False
    if abs(round(price, spec.digits) - price) > spec.point * 1e-3:
        return False
    return on_grid(price, spec.tick_size)


def pending_price_side_ok(order_type: OrderType, price: float, bid: float, ask: float) -> bool:
    """Reference §4.2: limits below/above the market, stops beyond it."""
    if order_type in (OrderType.BUY_LIMIT,):
        return price < ask
    if order_type in (OrderType.SELL_LIMIT,):
        return price > bid
    if order_type in (OrderType.BUY_STOP, OrderType.BUY_STOP_LIMIT):
        return price > ask
    if order_type in (OrderType.SELL_STOP, OrderType.SELL_STOP_LIMIT):
        return price < bid
    raise ValueError(f"{order_type!r} is not a pending order type")


def stoplimit_side_ok(order_type: OrderType, price: float, stoplimit: float) -> bool:
    """Buy stop-limit: the limit is at or below the stop price; sell: at or above."""
    if order_type == OrderType.BUY_STOP_LIMIT:
        return stoplimit <= price
    if order_type == OrderType.SELL_STOP_LIMIT:
        return stoplimit >= price
    raise ValueError(f"{order_type!r} is not a stop-limit type")


def _at_least(distance: float, minimum: float, slack: float) -> bool:
    return distance >= minimum + slack - _PRICE_EPS


def _beyond(distance: float, freeze: float) -> bool:
    """Strictly farther than the freeze distance (reference §4.4: equal is frozen)."""
    return distance > freeze + _PRICE_EPS


def stops_distance_broken(
    order_type: OrderType,
    *,
    open_price: float,
    sl: float,
    tp: float,
    bid: float,
    ask: float,
    min_distance: float,
    slack: float = 0.0,
    stoplimit: float = 0.0,
) -> str | None:
    """The first field of reference §4.3 that is closer than ``min_distance`` (a price).

    For market orders SL/TP are compared with Bid (buys) or Ask (sells); for pending orders
    the order's own open price is the reference. Zero SL/TP means "not set". The server
    accepts a distance equal to the level (``>=``); the bridge passes a positive ``slack``.
    A level of zero still requires SL/TP on the right side of the reference price. A
    stop-limit order activates like a stop; its SL/TP are measured from its limit price.
    """
    buy = order_type.is_buy
    if order_type.is_market:
        ref = bid if buy else ask
    else:
        ref = stoplimit if order_type.is_stop_limit else open_price
        if order_type.is_limit:
            dist = (ask - open_price) if buy else (open_price - bid)
        else:
            dist = (open_price - ask) if buy else (bid - open_price)
        if min_distance > 0 and not _at_least(dist, min_distance, slack):
            return "price"
    if sl:
        dist = (ref - sl) if buy else (sl - ref)
        if dist <= 0 or (min_distance > 0 and not _at_least(dist, min_distance, slack)):
            return "sl"
    if tp:
        dist = (tp - ref) if buy else (ref - tp)
        if dist <= 0 or (min_distance > 0 and not _at_least(dist, min_distance, slack)):
            return "tp"
    return None


def pending_frozen(
    order_type: OrderType, open_price: float, bid: float, ask: float, freeze: float
) -> bool:
    """Reference §4.4: a pending order within the freeze distance cannot be changed or deleted."""
    if freeze <= 0:
        return False
    if order_type == OrderType.BUY_LIMIT:
        return not _beyond(ask - open_price, freeze)
    if order_type == OrderType.SELL_LIMIT:
        return not _beyond(open_price - bid, freeze)
    if order_type in (OrderType.BUY_STOP, OrderType.BUY_STOP_LIMIT):
        return not _beyond(open_price - ask, freeze)
    if order_type in (OrderType.SELL_STOP, OrderType.SELL_STOP_LIMIT):
        return not _beyond(bid - open_price, freeze)
    raise ValueError(f"{order_type!r} is not a pending order type")


def position_frozen(buy: bool, sl: float, tp: float, bid: float, ask: float, freeze: float) -> bool:
    """Reference §4.4: a position whose set SL or TP is within the freeze distance."""
    if freeze <= 0:
        return False
    if buy:
        tp_dist, sl_dist = tp - bid, bid - sl
    else:
        tp_dist, sl_dist = ask - tp, sl - ask
    return bool((tp and not _beyond(tp_dist, freeze)) or (sl and not _beyond(sl_dist, freeze)))


def _to_deposit(
    amount: float, currency: str, deposit: str, base: str, profit_ccy: str, price: float
) -> float:
    """Convert using the symbol's own price (the simulator's accounts are in USD)."""
    if currency == deposit:
        return amount
    if currency == base and profit_ccy == deposit:
        return amount * price
    if currency == profit_ccy and base == deposit:
        return amount / price
    raise ValueError(f"no conversion from {currency} to {deposit} through {base}{profit_ccy}")


def margin_required(
    spec: SymbolSpec, volume: float, price: float, leverage: int, deposit: str
) -> float:
    """Initial margin in the deposit currency (reference §5.1), ``Margin_Rate`` = 1."""
    mode = calc_mode(spec.calc_mode)
    lots_units = volume * spec.contract_size
    if mode == CalcMode.FOREX:
        amount = lots_units / leverage
    elif mode == CalcMode.FOREX_NO_LEVERAGE:
        amount = lots_units
    elif mode == CalcMode.CFD:
        amount = lots_units * price
    elif mode == CalcMode.CFD_LEVERAGE:
        amount = lots_units * price / leverage
    elif mode == CalcMode.CFD_INDEX:
        amount = lots_units * price * spec.tick_value / spec.tick_size
    else:
        amount = volume * spec.margin_initial
    if mode in (CalcMode.FOREX, CalcMode.FOREX_NO_LEVERAGE):
        return _to_deposit(
            amount, spec.currency_margin, deposit, spec.currency_base, spec.currency_profit, price
        )
    return _to_deposit(
        amount, spec.currency_profit, deposit, spec.currency_base, spec.currency_profit, price
    )


def profit(
    spec: SymbolSpec, buy: bool, volume: float, open_price: float, close_price: float, deposit: str
) -> float:
    """Profit in the deposit currency: ΔP·ContractSize·Lots, converted at the close price."""
    delta = (close_price - open_price) if buy else (open_price - close_price)
    if calc_mode(spec.calc_mode) == CalcMode.FUTURES:
        return delta / spec.tick_size * spec.tick_value * volume
    amount = delta * spec.contract_size * volume
    return _to_deposit(
        amount, spec.currency_profit, deposit, spec.currency_base, spec.currency_profit, close_price
    )


def points(spec: SymbolSpec, price_delta: float) -> float:
    """A price difference in points, rounded to a tenth of a point."""
    return round(price_delta / spec.point, 1)
