"""A bridge-managed trailing stop, as a pure rule: fed prices and times, it says where to move.

MetaTrader's own trailing stop lives in the terminal and stops when the terminal does; the
bridge's follows the position on every price it receives instead. This module holds only the
decision: no I/O, no clock (times are passed in), nothing random. The caller sends the move,
and records it with :meth:`TrailingStop.moved` once the terminal accepted it.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from mtgate.domain.symbols import SymbolSpec, points, position_frozen
from mtgate.execution.validation import Refusal
from mtgate.positions.levels import check_position_levels

__all__ = ["Decision", "HoldReason", "TrailingSpec", "TrailingStop"]

_STEP_EPS = 1e-6
"""Tolerance, in ticks, of rounding to the tick grid: a price already on the grid (up to float
noise, far below a millionth of a tick) stays where it is."""


def _whole(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, not {value!r}")


@dataclass(frozen=True, slots=True)
class TrailingSpec:
    """How a stop trails the close price.

    Attributes:
        distance_points: How far behind the close price (Bid for a buy, Ask for a sell) the
            stop sits, in points; at least 1.
        step_points: The least improvement worth a move, in points; at least 1.
        activation_points: The profit, in points, from which the stop starts trailing; None:
            at once, even at a loss.
        min_interval_ms: The least time between two moves; 0 for no limit.
    """

    distance_points: int
    step_points: int
    activation_points: int | None = None
    min_interval_ms: int = 1000

    def __post_init__(self) -> None:
        _whole("distance_points", self.distance_points, 1)
        _whole("step_points", self.step_points, 1)
        if self.activation_points is not None:
            _whole("activation_points", self.activation_points, 0)
        _whole("min_interval_ms", self.min_interval_ms, 0)


class HoldReason(enum.StrEnum):
    """Why a trailing stop does not move on a price (in the order they are checked)."""

    NOT_ACTIVATED = "not_activated"
    """The profit has not reached ``activation_points``."""
    NO_VALID_LEVEL = "no_valid_level"
    """The distance puts the stop at or below zero."""
    NOT_IMPROVED_BY_STEP = "not_improved_by_step"
    """The stop would not improve on the current one by ``step_points``."""
    CLAMPED_NOT_IMPROVED = "stops_level_clamped"
    """The distance is inside the stops level; the nearest allowed level does not improve on
    the current stop by ``step_points``."""
    TOO_SOON = "too_soon"
    """The last move is less than ``min_interval_ms`` ago."""
    FROZEN = "frozen"
    """The position's current SL or TP is within the freeze level: it cannot be modified."""
    REFUSED = "refused"
    """Pre-validation refuses the change for another reason, e.g. the position's TP (which
    a modify sends again) is now within the stops level; see :attr:`Decision.refusal`."""


@dataclass(frozen=True, slots=True)
class Decision:
    """Either "move the stop to :attr:`move_to`" or why not (:attr:`reason`)."""

    move_to: float | None = None
    reason: HoldReason | None = None
    clamped: bool = False
    """The move's level was pulled back to the stops level (the distance asked is inside it)."""
    refusal: Refusal | None = None
    """Pre-validation's refusal, with reason REFUSED."""

    def __post_init__(self) -> None:
        if (self.move_to is None) == (self.reason is None):
            raise ValueError("a decision is either a move or a reason to hold")

    @property
    def moves(self) -> bool:
        return self.move_to is not None


def _round_away(spec: SymbolSpec, value: float, *, down: bool) -> float:
    """``value`` on the tick grid, rounded away from the market (down for a buy's stop)."""
    tick = spec.tick_size or spec.point
    ticks = value / tick
    n = math.floor(ticks + _STEP_EPS) if down else math.ceil(ticks - _STEP_EPS)
    return round(n * tick, spec.digits)


class TrailingStop:
    """One position's trailing stop.

    State: the position's side and open price, the stop this rule last moved to (0: none yet)
    and when. :meth:`decide` reads it and never changes it; :meth:`moved` records a move the
    terminal accepted.
    """

    __slots__ = ("_buy", "_last_moved_ms", "_price_open", "_stop", "_trailing")

    def __init__(
        self,
        trailing: TrailingSpec,
        *,
        buy: bool,
        price_open: float,
        stop: float = 0.0,
        last_moved_ms: int | None = None,
    ) -> None:
        if not math.isfinite(price_open) or price_open <= 0:
            raise ValueError(f"price_open must be a positive price, not {price_open!r}")
        if not math.isfinite(stop) or stop < 0:
            raise ValueError(f"stop must be a price or 0, not {stop!r}")
        self._trailing = trailing
        self._buy = buy
        self._price_open = price_open
        self._stop = stop
        self._last_moved_ms = last_moved_ms

    @property
    def trailing(self) -> TrailingSpec:
        return self._trailing

    @property
    def buy(self) -> bool:
        return self._buy

    @property
    def price_open(self) -> float:
        return self._price_open

    @property
    def stop(self) -> float:
        """The last level this rule moved the stop to; 0 before the first move."""
        return self._stop

    @property
    def last_moved_ms(self) -> int | None:
        return self._last_moved_ms

    def __repr__(self) -> str:
        side = "buy" if self._buy else "sell"
        return (
            f"TrailingStop({self._trailing!r}, {side} from {self._price_open}, "
            f"stop={self._stop}, last_moved_ms={self._last_moved_ms})"
        )

    def moved(self, new_sl: float, now_ms: int) -> None:
        """Record that the terminal accepted the stop at ``new_sl`` at ``now_ms``."""
        if not math.isfinite(new_sl) or new_sl <= 0:
            raise ValueError(f"new_sl must be a positive price, not {new_sl!r}")
        self._stop = new_sl
        self._last_moved_ms = now_ms

    def _reference(self, current_sl: float) -> float:
        """The stop to improve on: the tighter of ours and the position's (0: none).

        Ours covers a move the next snapshot does not show yet; the position's covers a stop
        someone else tightened. Loosening either would worsen the stop."""
        levels = [s for s in (self._stop, current_sl) if s > 0]
        if not levels:
            return 0.0
        return max(levels) if self._buy else min(levels)

    def _candidate(self, bid: float, ask: float, spec: SymbolSpec) -> tuple[float, bool]:
        """The level ``distance_points`` behind the close price, on the tick grid, pulled back
        to the stops level (plus the bridge's point of margin) when inside it."""
        distance = self._trailing.distance_points * spec.point
        if self._buy:
            candidate = _round_away(spec, bid - distance, down=True)
        else:
            candidate = _round_away(spec, ask + distance, down=False)
        if not spec.stops_level:
            # distance >= 1 point, rounded away: already strictly beyond the close price.
            return candidate, False
        allowed = (spec.stops_level + 1) * spec.point
        if self._buy:
            limit = _round_away(spec, bid - allowed, down=True)
            return (limit, True) if candidate > limit else (candidate, False)
        limit = _round_away(spec, ask + allowed, down=False)
        return (limit, True) if candidate < limit else (candidate, False)

    def decide(
        self,
        bid: float,
        ask: float,
        spec: SymbolSpec,
        now_ms: int,
        current_sl: float,
        current_tp: float,
    ) -> Decision:
        """Where to move the stop on this price, or why not.

        Args:
            bid: The last Bid.
            ask: The last Ask.
            spec: The symbol's specification (point, tick size, stops and freeze levels).
            now_ms: The time of the decision (injected; compared with the last move).
            current_sl: The position's stop loss as the terminal reports it, 0 for none.
            current_tp: The position's take profit, 0 for none (it blocks a move when frozen).
        """
        t = self._trailing
        profit = points(spec, (bid - self._price_open) if self._buy else (self._price_open - ask))
        if t.activation_points is not None and profit < t.activation_points:
            return Decision(reason=HoldReason.NOT_ACTIVATED)
        candidate, clamped = self._candidate(bid, ask, spec)
        if candidate <= 0:
            return Decision(reason=HoldReason.NO_VALID_LEVEL)
        reference = self._reference(current_sl)
        if reference:
            gain = (candidate - reference) if self._buy else (reference - candidate)
            if points(spec, gain) < t.step_points:
                reason = (
                    HoldReason.CLAMPED_NOT_IMPROVED if clamped else HoldReason.NOT_IMPROVED_BY_STEP
                )
                return Decision(reason=reason)
        last = self._last_moved_ms
        if last is not None and now_ms - last < t.min_interval_ms:
            return Decision(reason=HoldReason.TOO_SOON)
        freeze = spec.freeze_level * spec.point
        if position_frozen(self._buy, current_sl, current_tp, bid, ask, freeze):
            return Decision(reason=HoldReason.FROZEN)
        refusal = check_position_levels(
            spec,
            buy=self._buy,
            sl=candidate,
            tp=current_tp,
            current_sl=current_sl,
            current_tp=current_tp,
            bid=bid,
            ask=ask,
        )
        if refusal is not None:
            return Decision(reason=HoldReason.REFUSED, refusal=refusal)
        return Decision(move_to=candidate, clamped=clamped)
