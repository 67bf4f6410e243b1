"""Retry strategies per code (the seed's RetryStrategy): pure decisions, no I/O.

Every retry is a new *attempt* of the same order, made only once the previous attempt is
proven not to have executed: a definitive refusal whose code guarantees nothing happened, or
an outcome-unknown attempt that resolution proved absent (docs/protocol.md §9 rule 4). The
order never executes twice because no attempt starts while another may still execute.

Defaults follow the retry classes of reference §2 (MT4) and §3.7 (MT5):

- ``fresh_price`` (RP): requote, price changed, off quotes, invalid price. Resent at once with
  the current price; the deviation the caller allowed is never widened: the new attempt's
  deviation is what is left of it once the price has moved (:func:`fresh_price_terms`).
- ``backoff`` (RL): server busy, context busy, too many requests, no connection, locked,
  frozen, and the protocol's own "not ready" and "deadline passed". Resent after a delay
  with full jitter, doubling to a cap.
- ``market_closed`` (RL until the next session): only when the caller asked for it
  (``market_closed_wait_s``), and never past that wait.
- ``reduce_volume``, ``round_volume``, ``next_filling``: modify-and-retry, only where the caller
  opted in (no money → a smaller volume down to the caller's floor; invalid volume → the
  volume rounded down to the symbol's step; unsupported filling → the next mode the symbol
  allows).
- ``alternative``: the terminal refused for a reason of its own (algo trading off in that
  terminal): the same order through another ready terminal of the account.
- ``none``: every other code.

An outcome-unknown attempt (timeout, lost connection, 10031, 128...) is never retried by its
code: it is resolved, and retried (``after_absence``) only once proven absent.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from mtgate.domain.codes import MT4, MT5, PROTOCOL_CODES, Classification, lookup
from mtgate.domain.enums import Platform
from mtgate.domain.orders import ATTEMPT_MAX


class Strategy(enum.StrEnum):
    NONE = "none"
    FRESH_PRICE = "fresh_price"
    BACKOFF = "backoff"
    MARKET_CLOSED = "market_closed"
    REDUCE_VOLUME = "reduce_volume"
    ROUND_VOLUME = "round_volume"
    NEXT_FILLING = "next_filling"
    ALTERNATIVE = "alternative"


S = Strategy

DEFAULT_STRATEGIES: Mapping[tuple[Platform, int], Strategy] = {
    # MT4, reference §2.
    **{(Platform.MT4, c): S.FRESH_PRICE for c in (129, 135, 136, 138)},
    **{(Platform.MT4, c): S.BACKOFF for c in (4, 6, 8, 137, 141, 146)},
    (Platform.MT4, MT4.MARKET_CLOSED): S.MARKET_CLOSED,
    (Platform.MT4, MT4.NOT_ENOUGH_MONEY): S.REDUCE_VOLUME,
    (Platform.MT4, MT4.INVALID_TRADE_VOLUME): S.ROUND_VOLUME,
    (Platform.MT4, MT4.TRADE_NOT_ALLOWED): S.ALTERNATIVE,
    # MT5, reference §3.7.
    **{(Platform.MT5, c): S.FRESH_PRICE for c in (10004, 10020, 10021)},
    **{(Platform.MT5, c): S.BACKOFF for c in (10024, 10028, 10029)},
    (Platform.MT5, MT5.MARKET_CLOSED): S.MARKET_CLOSED,
    (Platform.MT5, MT5.NO_MONEY): S.REDUCE_VOLUME,
    (Platform.MT5, MT5.INVALID_VOLUME): S.ROUND_VOLUME,
    (Platform.MT5, MT5.INVALID_FILL): S.NEXT_FILLING,
    (Platform.MT5, MT5.CLIENT_DISABLES_AT): S.ALTERNATIVE,
    # The protocol's own refusals guarantee nothing executed (docs/protocol.md §4.2).
    **{(p, c): S.BACKOFF for p in Platform for c in (-3, -6)},
}
"""The strategy of each code that has one; every other code is ``none``."""

MIN_DELAY_S: Mapping[tuple[Platform, int], float] = {
    (Platform.MT4, 4): 60.0,  # server busy: "RL (minutes)", reference §2
    (Platform.MT4, 6): 5.0,  # no connection: "RL (after reconnect, >= 5 s)"
    (Platform.MT4, 136): 5.0,  # off quotes: "RP (after about 5 s)"
    (Platform.MT5, 10021): 1.0,  # no quotes: "RP (short wait)", reference §3.7
}
"""The least a code's retry waits, where the reference says so. With the default
``max_age_s`` a wait of minutes means no retry: the order is stale by then."""

MARKET_CLOSED_STEP_CAP_S = 30.0
"""A market-closed retry waits at least a second, doubling to this, until the caller's wait."""

OPT_IN: frozenset[Strategy] = frozenset(
    {S.MARKET_CLOSED, S.REDUCE_VOLUME, S.ROUND_VOLUME, S.NEXT_FILLING}
)
"""Strategies that change what the caller asked for (or when): only used when asked."""

FILLING_ORDER = (0, 1, 2)
"""MT5 ``ORDER_FILLING_*`` modes of a market order, tried in this order: FOK, IOC, RETURN."""


def strategy_allowed(platform: Platform, code: int, strategy: Strategy) -> str | None:
    """Why ``strategy`` must not be configured for ``code``, or None when it may.

    Only codes that guarantee nothing executed may be retried at all: a configuration cannot
    make an outcome-unknown or success code retryable (it would resend an order that may
    have executed)."""
    if strategy is S.NONE:
        return None
    entry = PROTOCOL_CODES.get(code) if code < 0 else lookup(platform, code)
    if entry is None or entry.name.startswith("UNLISTED_"):
        return f"{platform.value} code {code} is not in the registry"
    if entry.classification in (Classification.UNKNOWN, Classification.OK):
        return (
            f"{platform.value} code {code} ({entry.name}) is {entry.classification.value}: "
            "the order may have executed, so it is never resent by its code"
        )
    return None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The bridge's retry settings (TOML ``[retry]``, docs/operations.md)."""

    enabled: bool = True
    max_attempts: int = 5
    """Attempts of one order in all, the first included (at most 99)."""
    fresh_price_attempts: int = 3
    """Of those, how many may follow a requote / price change / off quotes."""
    backoff_base_ms: int = 100
    backoff_cap_ms: int = 2000
    max_age_s: float = 30.0
    """No attempt starts later than this after the order was placed: a signal's price and
    its moment go stale, whatever the code."""
    after_absence: bool = True
    """Retry an outcome-unknown attempt once resolution proved it absent."""
    absence_wait_s: float = 10.0
    """How long the caller waits for that proof before getting UNKNOWN (then nothing is
    retried; the resolution goes on and ends the order as it finds it)."""
    market_closed_cap_s: float = 300.0
    """The longest ``market_closed_wait_s`` a caller may ask for."""
    strategies: Mapping[tuple[Platform, int], Strategy] = field(
        default_factory=lambda: dict(DEFAULT_STRATEGIES)
    )

    def strategy(self, platform: Platform, code: int) -> Strategy:
        return self.strategies.get((platform, code), S.NONE)


@dataclass(frozen=True, slots=True)
class RetryOptions:
    """What one caller allows for its order (the request's ``retry``)."""

    enabled: bool = True
    market_closed_wait_s: float = 0.0
    """Retry "market closed" until the market opens, waiting at most this long (0: never)."""
    min_volume: float | None = None
    """No money: retry with half the volume (rounded down to the step) down to this floor."""
    round_volume: bool = False
    """Invalid volume: retry with the volume rounded down to the symbol's step."""
    next_filling: bool = False
    """Unsupported filling: retry with the next mode the symbol allows."""


class Step(enum.StrEnum):
    RESEND = "resend"
    """Send the next attempt (after ``delay_s``)."""
    STOP = "stop"
    """No further attempt: the last one's outcome is the order's."""


@dataclass(frozen=True, slots=True)
class Decision:
    step: Step
    strategy: Strategy
    delay_s: float = 0.0
    why: str = ""


def decide(
    policy: RetryPolicy,
    options: RetryOptions,
    platform: Platform,
    code: int,
    *,
    attempt: int,
    fresh_price_retries: int,
    age_s: float,
    jitter: float,
) -> Decision:
    """What follows attempt number ``attempt`` refused with ``code``.

    ``fresh_price_retries``: how many attempts so far followed a price refusal. ``age_s``:
    seconds since the order was placed. ``jitter`` in [0, 1) (full jitter of the backoff)."""
    strategy = policy.strategy(platform, code)

    def stop(why: str) -> Decision:
        return Decision(Step.STOP, strategy, why=why)

    if strategy is S.NONE:
        return stop("no retry for this code")
    if not (policy.enabled and options.enabled):
        return stop("retries are off")
    if attempt >= (ATTEMPT_MAX if strategy is S.MARKET_CLOSED else policy.max_attempts):
        return stop(f"{attempt} attempts made")
    if strategy in OPT_IN and not _opted_in(strategy, options):
        return stop(f"{strategy.value} was not asked for")
    if strategy is S.FRESH_PRICE:
        if fresh_price_retries >= policy.fresh_price_attempts:
            return stop(f"{policy.fresh_price_attempts} fresh-price retries made")
        delay_s = 0.0
    elif strategy is S.MARKET_CLOSED:
        # Until the session opens (reference §2 / §3.7 "RL (next session)"): not bounded by
        # max_attempts nor max_age_s, but by the wait the caller asked for.
        wait_s = min(options.market_closed_wait_s, policy.market_closed_cap_s)
        step_s = min(MARKET_CLOSED_STEP_CAP_S, float(1 << min(attempt - 1, 5)))
        delay_s = max(1.0, jitter * step_s)
        if age_s + delay_s > wait_s:
            return stop(f"the market stayed closed for the {wait_s:g} s asked for")
        return Decision(Step.RESEND, strategy, delay_s)
    elif strategy is S.BACKOFF:
        delay_s = backoff_delay_s(policy, attempt, jitter)
    else:
        delay_s = 0.0
    delay_s = max(delay_s, MIN_DELAY_S.get((platform, code), 0.0))
    if age_s + delay_s > policy.max_age_s:
        return stop(f"the order is older than {policy.max_age_s:g} s")
    return Decision(Step.RESEND, strategy, delay_s)


def _opted_in(strategy: Strategy, options: RetryOptions) -> bool:
    if strategy is S.MARKET_CLOSED:
        return options.market_closed_wait_s > 0
    if strategy is S.REDUCE_VOLUME:
        return options.min_volume is not None
    if strategy is S.ROUND_VOLUME:
        return options.round_volume
    return options.next_filling


def backoff_delay_s(
    policy: RetryPolicy, attempt: int, jitter: float, floor_s: float = 0.0
) -> float:
    """Full jitter over ``base * 2^(attempt-1)`` capped: attempt 1 waits up to the base."""
    ceiling_ms = min(policy.backoff_cap_ms, policy.backoff_base_ms << min(attempt - 1, 20))
    return max(floor_s, jitter * ceiling_ms / 1000)


@dataclass(frozen=True, slots=True)
class PriceTerms:
    price: float
    deviation_points: int


def fresh_price_terms(
    reference: float | None, fresh: float, deviation_points: int, point: float
) -> PriceTerms | None:
    """The next attempt's price and deviation after a price refusal, never wider than the
    caller allowed: the first attempt accepted fills within ``deviation_points`` of
    ``reference``; the new one asks ``fresh`` with what is left, so any fill stays within the
    original band. None when the price has moved beyond it. No reference (no price was known
    when the order was placed): the fresh price with the same deviation, which is what the
    first attempt would have been given."""
    if reference is None or reference <= 0:
        return PriceTerms(fresh, deviation_points)
    moved = round(abs(fresh - reference) / point, 6)
    left = deviation_points - math.ceil(moved)
    if left < 0:
        return None
    return PriceTerms(fresh, left)


def reduced_volume(volume: float, floor: float, step: float, minimum: float) -> float | None:
    """Half of ``volume`` rounded down to ``step``; None below ``floor`` or the symbol's
    minimum (then no retry)."""
    half = round_to_step(volume / 2, step)
    if half < max(floor, minimum) - 1e-9 or half >= volume - 1e-9:
        return None
    return half


def round_to_step(volume: float, step: float) -> float:
    """``volume`` rounded down to a multiple of ``step`` (a float error of 1e-9 steps is
    forgiven: 0.3 / 0.1 is 2.9999999999999996)."""
    if step <= 0:
        return volume
    steps = math.floor(volume / step + 1e-9)
    decimals = max(0, -math.floor(math.log10(step)) + 2)
    return round(steps * step, decimals)


def next_filling(current: int, allowed: frozenset[int]) -> int | None:
    """The next mode of :data:`FILLING_ORDER` after ``current`` that ``allowed`` holds."""
    order = list(FILLING_ORDER)
    start = order.index(current) + 1 if current in order else 0
    return next((f for f in order[start:] if f in allowed), None)
