"""Trade faults a simulated terminal injects: scripted per test, or drawn under a seed.

A :class:`FaultPlan` decides, for each trade request when its turn comes (after the EA's own
checks: a malformed request, a passed deadline, a dead session never get this far; see
:mod:`mtsim.terminal`), whether a fault hits it and which. It is pure: it reads no clock (the
caller passes the EA's ``now_ms``) and draws from its own seeded generator, so the same seed
and the same calls give the same faults. It counts what it injected by kind
(:meth:`FaultPlan.faults_by_kind`).

The kinds and what a terminal does with each (codes: reference §2 for MT4, §3.7 for MT5;
the rules are in :data:`mtsim.errors.FAULT_RULES`):

- ``requote`` (138 / 10004), ``price_changed`` (135 / 10020), ``off_quotes`` (136 / 10021):
  refused with the current bid/ask, not executed (reference §8). Market orders and position
  closes only (the operations that trade at a price). ⚠ Injected under every execution mode,
  though a real server under market execution answers off quotes, never a requote (§8).
- ``context_busy``: MT4 146 ERR_TRADE_CONTEXT_BUSY. MT5 has no single trade context, so no
  such code; the nearest is 10024 TOO_MANY_REQUESTS (same retry class RL, §3.7). 10028
  LOCKED is not it: it concerns one order already being processed (MT4 139's kin).
- ``too_many_requests`` (141 / 10024): refused, not executed.
- ``no_connection`` (6 / 10031): the terminal's link to the trade server is down for
  ``duration_ms``: this trade and every later one inside the window is refused, unexecuted
  (each counted).
- ``market_closed`` (132 / 10018): the trade server closes the request's symbol for
  ``duration_ms`` (:meth:`mtsim.server.TradeServer.close_market`), as a session table would;
  the trade then reaches the server, which refuses it at its own step (reference §4.6 #4).
  Every refusal the closure causes is counted. Requests that name a symbol only.
- ``slow``: the trade server answers ``delay_ms`` later than the broker delay; executed.
- ``late_answer``: executed at once (its events are pushed as they happen), the answer held
  ``delay_ms`` (0: never sent; the connection's end ends the wait), as when the bridge's wait
  is shorter than the trade server's round trip.
- ``hang``: nothing executed; after ``delay_ms`` the EA answers 128 / 10012 TIMEOUT ("request
  canceled by timeout", outcome unknown for the bridge, §2/§3.7); 0: never answered.
- ``drop_before`` / ``drop_after`` / ``answer_lost``: the connection is cut before the trade
  is executed / the trade executed with the connection already dead (no answer, no events) /
  executed, events pushed, then cut before the answer (as ``TerminalFaults``).
- ``partial_fill``: MT5 market orders only (MT4 has no partial fills of market orders,
  reference §1). Liquidity is ``ratio`` of the volume, rounded down to the volume step and at
  least one step: IOC fills that and cancels the rest (10010 DONE_PARTIAL, a success with the
  filled volume, §3.3); FOK fills nothing (10006 REJECT ⚠: the reference names no code for
  an unfillable FOK; §8 says market-execution rejects come as 10006); RETURN (request and
  instant execution) is not modelled and fills in full. Counted only when it changed the
  outcome.
- ``restart``: not drawn per trade; :meth:`mtsim.terminal.SimTerminal.restart` counts it.
"""

from __future__ import annotations

import collections
import enum
import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from mtgate.domain.enums import Platform
from mtgate.protocol import messages as m
from mtsim import errors
from mtsim.errors import TradeError

MAX_DURATION_MS = 3_600_000
"""The longest window (``no_connection``, ``market_closed``) or hold a fault may have."""
MAX_SCRIPTED = 10_000
"""Scripted faults queued at most at once (a test arms a few; a chaos driver a run's worth)."""


class FaultKind(enum.StrEnum):
    REQUOTE = "requote"
    PRICE_CHANGED = "price_changed"
    OFF_QUOTES = "off_quotes"
    CONTEXT_BUSY = "context_busy"
    TOO_MANY_REQUESTS = "too_many_requests"
    NO_CONNECTION = "no_connection"
    MARKET_CLOSED = "market_closed"
    SLOW = "slow"
    LATE_ANSWER = "late_answer"
    HANG = "hang"
    DROP_BEFORE = "drop_before"
    DROP_AFTER = "drop_after"
    ANSWER_LOST = "answer_lost"
    PARTIAL_FILL = "partial_fill"
    RESTART = "restart"


PRICE_KINDS = frozenset({FaultKind.REQUOTE, FaultKind.PRICE_CHANGED, FaultKind.OFF_QUOTES})
"""Faults of an operation that trades at a price (market order, position close)."""
REFUSAL_KINDS = PRICE_KINDS | {
    FaultKind.CONTEXT_BUSY,
    FaultKind.TOO_MANY_REQUESTS,
    FaultKind.NO_CONNECTION,
}
"""Faults answered with a refusal code, nothing executed."""
ANY_TRADE_KINDS = frozenset(
    {
        FaultKind.CONTEXT_BUSY,
        FaultKind.TOO_MANY_REQUESTS,
        FaultKind.NO_CONNECTION,
        FaultKind.SLOW,
        FaultKind.LATE_ANSWER,
        FaultKind.HANG,
        FaultKind.DROP_BEFORE,
        FaultKind.DROP_AFTER,
        FaultKind.ANSWER_LOST,
    }
)
"""Faults any trade operation can meet."""
DRAWN_KINDS = tuple(k for k in FaultKind if k != FaultKind.RESTART)


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault for one trade request.

    Attributes:
        kind: what happens (module docstring).
        duration_ms: ``no_connection`` / ``market_closed``: how long the window lasts from
            this request (0: this request only).
        delay_ms: ``slow``: the extra delay; ``late_answer`` / ``hang``: how long the answer
            is held (0: never sent).
        ratio: ``partial_fill``: the share of the volume the market can fill, in (0, 1).
    """

    kind: FaultKind
    duration_ms: int = 0
    delay_ms: int = 0
    ratio: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.duration_ms <= MAX_DURATION_MS:
            raise ValueError(f"duration_ms {self.duration_ms} is outside 0..{MAX_DURATION_MS}")
        if not 0 <= self.delay_ms <= MAX_DURATION_MS:
            raise ValueError(f"delay_ms {self.delay_ms} is outside 0..{MAX_DURATION_MS}")
        if not (math.isfinite(self.ratio) and 0 < self.ratio < 1):
            raise ValueError(f"ratio {self.ratio} is outside (0, 1)")
        if self.kind == FaultKind.RESTART:
            raise ValueError("a restart is not a per-trade fault: use SimTerminal.restart")


def _range(name: str, lo: float, hi: float, top: float) -> None:
    if not (0 <= lo <= hi <= top):
        raise ValueError(f"{name} ({lo}, {hi}) must satisfy 0 <= low <= high <= {top}")


@dataclass(frozen=True, slots=True)
class RandomFaults:
    """Faults drawn under a seed: each trade meets ``kind`` with probability ``rates[kind]``
    (at most one fault per trade; the rates must sum to at most 1). A drawn fault that does
    not apply to the request (a requote for a pending order, a partial fill on MT4) is not
    injected and not counted. Parameters are drawn uniformly from the ranges."""

    rates: Mapping[FaultKind, float] = field(default_factory=dict)
    duration_ms: tuple[int, int] = (200, 2_000)
    delay_ms: tuple[int, int] = (50, 500)
    hold_ms: tuple[int, int] = (0, 0)
    """``late_answer`` / ``hang``: the answer's hold (0: never answered)."""
    ratio: tuple[float, float] = (0.1, 0.9)

    def __post_init__(self) -> None:
        for kind, rate in self.rates.items():
            if kind not in DRAWN_KINDS:
                raise ValueError(f"{kind} cannot be drawn per trade")
            if not (math.isfinite(rate) and 0 <= rate <= 1):
                raise ValueError(f"rate of {kind} {rate} is outside [0, 1]")
        if sum(self.rates.values()) > 1 + 1e-9:
            raise ValueError("the rates sum to more than 1")
        _range("duration_ms", *self.duration_ms, MAX_DURATION_MS)
        _range("delay_ms", *self.delay_ms, MAX_DURATION_MS)
        _range("hold_ms", *self.hold_ms, MAX_DURATION_MS)
        lo, hi = self.ratio
        if not (0 < lo <= hi < 1):
            raise ValueError(f"ratio ({lo}, {hi}) must satisfy 0 < low <= high < 1")


class FaultPlan:
    """Scripted faults for the next trades, random faults under a seed, and counters.

    Scripted faults come first, in order; the head waits for the first trade it applies to
    (a ``partial_fill`` armed before a pending order hits the next market order). While a
    ``no_connection`` window is open every trade is refused with it, before anything else.
    Random faults are drawn only when no window is open and nothing is scripted: one draw of
    the generator per trade, then the fault's parameters.
    """

    def __init__(self, *, seed: int = 0, random_faults: RandomFaults | None = None) -> None:
        self._rng = random.Random(seed)
        self.random = random_faults or RandomFaults()
        self._script: collections.deque[Fault] = collections.deque()
        self._offline_until_ms = 0
        self.counts: collections.Counter[FaultKind] = collections.Counter()

    @property
    def armed(self) -> bool:
        """Whether a trade may meet a fault (False: the terminal keeps its fast path)."""
        return bool(self._script or self._offline_until_ms or any(self.random.rates.values()))

    def script(self, *faults: Fault) -> None:
        """Queue ``faults`` for the next trades, one each, in order."""
        if len(self._script) + len(faults) > MAX_SCRIPTED:
            raise ValueError(f"at most {MAX_SCRIPTED} scripted faults")
        self._script.extend(faults)

    def next_trades(self, count: int, fault: Fault) -> None:
        """``fault`` for each of the next ``count`` trades it applies to."""
        if not 0 < count <= MAX_SCRIPTED:
            raise ValueError(f"count {count} is outside 1..{MAX_SCRIPTED}")
        self.script(*([fault] * count))

    def clear(self) -> None:
        """Forget scripted faults and an open window (the counters stay)."""
        self._script.clear()
        self._offline_until_ms = 0

    @property
    def scripted(self) -> int:
        return len(self._script)

    def decide(self, now_ms: int, applicable: Iterable[FaultKind]) -> Fault | None:
        """The fault for the trade whose turn comes at ``now_ms`` (EA clock), among the
        kinds that ``applicable`` lists for it; None: no fault. Counts what it returns,
        except ``market_closed`` and ``partial_fill`` (the caller counts their effect)."""
        kinds = frozenset(applicable)
        if now_ms < self._offline_until_ms:
            return self._count(Fault(FaultKind.NO_CONNECTION))
        self._offline_until_ms = 0
        fault = self._scripted(kinds) if self._script else self._draw(kinds)
        if fault is None:
            return None
        if fault.kind == FaultKind.NO_CONNECTION and fault.duration_ms:
            self._offline_until_ms = now_ms + fault.duration_ms
        if fault.kind in (FaultKind.MARKET_CLOSED, FaultKind.PARTIAL_FILL):
            return fault
        return self._count(fault)

    def _scripted(self, kinds: frozenset[FaultKind]) -> Fault | None:
        if self._script[0].kind not in kinds:
            return None
        return self._script.popleft()

    def _draw(self, kinds: frozenset[FaultKind]) -> Fault | None:
        rates = self.random.rates
        if not rates:
            return None
        u = self._rng.random()
        chosen: FaultKind | None = None
        cumulative = 0.0
        for kind in DRAWN_KINDS:
            cumulative += rates.get(kind, 0.0)
            if u < cumulative:
                chosen = kind
                break
        if chosen is None:
            return None
        fault = self._parameters(chosen)
        return fault if chosen in kinds else None

    def _parameters(self, kind: FaultKind) -> Fault:
        """Draws every parameter whatever the kind, so the sequence of draws does not depend
        on which kinds applied."""
        r = self.random
        duration = self._rng.randint(*r.duration_ms)
        delay = self._rng.randint(*r.delay_ms)
        hold = self._rng.randint(*r.hold_ms)
        ratio = self._rng.uniform(*r.ratio)
        if kind in (FaultKind.LATE_ANSWER, FaultKind.HANG):
            delay = hold
        elif kind != FaultKind.SLOW:
            delay = 0
        if kind not in (FaultKind.NO_CONNECTION, FaultKind.MARKET_CLOSED):
            duration = 0
        return Fault(kind, duration_ms=duration, delay_ms=delay, ratio=ratio)

    def _count(self, fault: Fault) -> Fault:
        self.counts[fault.kind] += 1
        return fault

    def count(self, kind: FaultKind) -> None:
        """Count an injected fault whose effect the caller observed (a refusal by an
        injected market closure, a partial fill, a restart)."""
        self.counts[kind] += 1

    def faults_by_kind(self) -> dict[str, int]:
        """What was injected so far, by kind name (kinds never injected are absent)."""
        return {kind.value: n for kind, n in sorted(self.counts.items()) if n}


_RULES = {
    FaultKind.REQUOTE: errors.REQUOTE,
    FaultKind.PRICE_CHANGED: errors.PRICE_CHANGED,
    FaultKind.OFF_QUOTES: errors.OFF_QUOTES,
    FaultKind.CONTEXT_BUSY: errors.CONTEXT_BUSY,
    FaultKind.TOO_MANY_REQUESTS: errors.TOO_MANY_REQUESTS,
    FaultKind.NO_CONNECTION: errors.NO_CONNECTION,
    FaultKind.HANG: errors.TRADE_TIMEOUT,
}
_MESSAGES = {
    FaultKind.REQUOTE: "requote",
    FaultKind.PRICE_CHANGED: "price changed",
    FaultKind.OFF_QUOTES: "off quotes",
    FaultKind.CONTEXT_BUSY: "trade context busy",
    FaultKind.TOO_MANY_REQUESTS: "too many requests",
    FaultKind.NO_CONNECTION: "no connection to the trade server",
    FaultKind.HANG: "request canceled by timeout",
}


def refusal(platform: Platform, kind: FaultKind, *, bid: float, ask: float) -> TradeError:
    """The error a refusing fault answers with (module docstring). Price faults carry the
    current ``bid``/``ask`` (reference §3.2 MqlTradeResult, §8); the others none."""
    rule = _RULES[kind]
    if kind not in PRICE_KINDS:
        bid = ask = 0.0
    return errors.refuse(platform, rule, f"{_MESSAGES[kind]} (injected)", bid=bid, ask=ask)


def applicable_kinds(request: m.Request, symbol: str, platform: Platform) -> frozenset[FaultKind]:
    """The faults ``request`` can meet; ``symbol`` is the one it acts on ("" unknown)."""
    kinds = set(ANY_TRADE_KINDS)
    market = isinstance(request, m.MarketOrder)
    if symbol and (market or isinstance(request, m.ClosePosition)):
        kinds |= PRICE_KINDS
    if symbol and (market or isinstance(request, m.PendingOrder)):
        kinds.add(FaultKind.MARKET_CLOSED)
    if market and platform == Platform.MT5:
        kinds.add(FaultKind.PARTIAL_FILL)
    return frozenset(kinds)


def partial_volume(volume: float, ratio: float, step: float, volume_min: float) -> float:
    """The volume a partial fill of ``ratio`` fills: rounded down to ``step``, at least one
    step and at least ``volume_min``, never more than ``volume`` (reference §3.3, §4.5)."""
    if not (step > 0 and volume > 0 and 0 < ratio < 1):
        raise ValueError("volume, step and ratio must be positive (ratio below 1)")
    steps = math.floor(volume * ratio / step + 1e-9)
    filled = max(steps * step, step, volume_min)
    return round(min(filled, volume), 8)


def merged_counts(plans: Iterable[FaultPlan]) -> dict[str, int]:
    """``faults_by_kind`` summed over several terminals' plans (a chaos suite's report)."""
    total: collections.Counter[str] = collections.Counter()
    for plan in plans:
        total.update(plan.faults_by_kind())
    return dict(sorted(total.items()))
