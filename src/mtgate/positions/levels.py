"""Pre-validation of a change of a position's SL/TP, before the bridge sends it.

The checks run in the trade server's order (reference §4.6, as the simulator applies them to
TRADE_ACTION_SLTP / OrderModify): a request that changes nothing (MT4 error 1, MT5 10025), the
tick grid (#10), side and stops distance of the new levels (#11, §4.3) and the freeze level of
the *current* levels (#12, §4.4). Rule names are the ones :func:`prevalidate` reports, so a
client sees the same ``rule`` whether an order or a position change was refused: a level on
the wrong side of the close price is a ``stops_level`` refusal, as the server's code is the
same (MT4 130, MT5 10016).
"""

from __future__ import annotations

from mtgate.domain.enums import OrderType
from mtgate.domain.symbols import (
    SymbolSpec,
    position_frozen,
    price_normalized,
    stops_distance_broken,
)
from mtgate.execution.validation import Refusal

__all__ = ["check_position_levels"]


def _same(spec: SymbolSpec, a: float, b: float) -> bool:
    # The simulator's tolerance: prices that round to the same digits are the same level.
    return abs(a - b) <= spec.point * 1e-3


def _grid(spec: SymbolSpec, sl: float, tp: float) -> Refusal | None:
    for field, value in (("sl", sl), ("tp", tp)):
        if value < 0:
            return Refusal(field, "positive", f"{field} {value} is negative")
        if value and not price_normalized(spec, value):
            return Refusal(
                field,
                "tick_size",
                f"{field} {value} is not a multiple of the tick size {spec.tick_size:g}",
            )
    return None


def _stops(
    spec: SymbolSpec, *, buy: bool, sl: float, tp: float, bid: float, ask: float
) -> Refusal | None:
    close = bid if buy else ask
    close_name = "bid" if buy else "ask"
    for field, value in (("sl", sl), ("tp", tp)):
        if not value:
            continue
        broken = stops_distance_broken(
            OrderType.BUY if buy else OrderType.SELL,
            open_price=0.0,
            sl=value if field == "sl" else 0.0,
            tp=value if field == "tp" else 0.0,
            bid=bid,
            ask=ask,
            min_distance=spec.stops_level * spec.point,
            slack=spec.point if spec.stops_level else 0.0,
        )
        if broken is None:
            continue
        below = (field == "sl") == buy
        if (value >= close) if below else (value <= close):
            where = "below" if below else "above"
            message = f"{field} {value} must be {where} the {close_name} {close}"
        else:
            message = (
                f"{field} {value} is closer than {spec.stops_level} points (+1 point of margin) "
                f"to the {close_name} {close}"
            )
        return Refusal(field, "stops_level", message)
    return None


def _frozen(
    spec: SymbolSpec, *, buy: bool, current_sl: float, current_tp: float, bid: float, ask: float
) -> Refusal | None:
    freeze = spec.freeze_level * spec.point
    for field, sl, tp in (("sl", current_sl, 0.0), ("tp", 0.0, current_tp)):
        if position_frozen(buy, sl, tp, bid, ask, freeze):
            return Refusal(
                field,
                "freeze_level",
                f"the position's current {field} {sl or tp} is within the freeze level "
                f"({spec.freeze_level} points) of the market (bid {bid}, ask {ask})",
            )
    return None


def check_position_levels(
    spec: SymbolSpec,
    *,
    buy: bool,
    sl: float,
    tp: float,
    current_sl: float,
    current_tp: float,
    bid: float,
    ask: float,
) -> Refusal | None:
    """The first rule that setting ``sl``/``tp`` on a position breaks, or None.

    Args:
        spec: The symbol's specification (levels in points).
        buy: Whether the position is a buy (its SL/TP are compared with Bid) or a sell (Ask).
        sl: The new stop loss, 0 for none.
        tp: The new take profit, 0 for none.
        current_sl: The position's stop loss now, 0 for none.
        current_tp: The position's take profit now, 0 for none.
        bid: The last Bid.
        ask: The last Ask.

    Returns:
        ``no_change`` (field ``sl``), ``positive`` or ``tick_size`` (the new level's field),
        ``stops_level`` (a new level on the wrong side of the close price or closer than the
        stops level plus one point), ``freeze_level`` (the *current* level within the freeze
        distance, equal included: the position cannot be modified), or None.
    """
    if _same(spec, sl, current_sl) and _same(spec, tp, current_tp):
        return Refusal("sl", "no_change", f"the position already has sl {sl} and tp {tp}")
    return (
        _grid(spec, sl, tp)
        or _stops(spec, buy=buy, sl=sl, tp=tp, bid=bid, ask=ask)
        or _frozen(spec, buy=buy, current_sl=current_sl, current_tp=current_tp, bid=bid, ask=ask)
    )
