"""Position size from risk: the volume whose loss at the stop is a share of equity.

``loss per lot = |entry - sl| / tick_size * tick_value`` (``tick_value``: the deposit-currency
value of one tick for one lot, ``trade_tick_value`` in reference §4; MT5's
``trade_tick_value_loss`` would be exact for a loss, and the protocol does not carry it yet,
a difference only for symbols whose profit currency is not the deposit's); the volume is
``equity * risk % / loss per lot``, rounded **down** to the volume step (rounding up would
risk more than asked), then held to the symbol's maximum. Below the minimum it is refused:
sending the minimum would risk more than asked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mtgate.domain.symbols import SymbolSpec


@dataclass(frozen=True, slots=True)
class Sized:
    volume: float
    risk_amount: float
    """The deposit-currency loss at the stop for ``volume`` (at most what was asked)."""
    clamped: bool
    """The risk asked for more than the symbol's maximum volume: ``volume`` is the maximum."""


@dataclass(frozen=True, slots=True)
class NotSized:
    rule: str
    """``volume_min`` (the risk buys less than the minimum), ``stop_distance`` (no distance
    between entry and stop), ``symbol_spec`` (a tick size or value that cannot be used),
    ``equity`` (none to risk)."""
    message: str


def risk_volume(
    equity: float, risk_pct: float, entry: float, sl: float, spec: SymbolSpec
) -> Sized | NotSized:
    if not (math.isfinite(equity) and equity > 0):
        return NotSized("equity", f"the account's equity {equity:g} leaves nothing to risk")
    distance = abs(entry - sl)
    if not math.isfinite(distance) or distance < spec.tick_size / 2:
        return NotSized("stop_distance", f"the stop {sl} is no distance from the entry {entry}")
    if not (spec.tick_size > 0 and spec.tick_value > 0 and spec.volume_step > 0):
        return NotSized(
            "symbol_spec",
            f"{spec.name}: tick size {spec.tick_size:g}, tick value {spec.tick_value:g} and "
            f"volume step {spec.volume_step:g} must be positive to size by risk",
        )
    loss_per_lot = distance / spec.tick_size * spec.tick_value
    budget = equity * risk_pct / 100
    steps = math.floor(budget / loss_per_lot / spec.volume_step + 1e-9)
    volume = round(steps * spec.volume_step, 8)
    clamped = volume > spec.volume_max
    if clamped:
        steps = math.floor(spec.volume_max / spec.volume_step + 1e-9)
        volume = round(steps * spec.volume_step, 8)
    if volume < spec.volume_min - 1e-9 or volume <= 0:
        return NotSized(
            "volume_min",
            f"risking {risk_pct:g} % of {equity:.2f} ({budget:.2f}) at {distance:g} from the "
            f"entry buys {budget / loss_per_lot:.4f} lots, below the minimum {spec.volume_min:g}",
        )
    return Sized(volume, round(volume * loss_per_lot, 2), clamped)
