"""Seeded bid/ask paths for the simulated symbols.

Prices are kept as whole numbers of ticks, so every quote is normalized to the symbol's
``digits`` and tick size by construction (the server refuses unnormalized prices, reference
§4.1, and the feed must never produce one).

The walk: one step every ``step_ms`` of feed time, at fixed times ``start + k * step_ms``. At
each step the bid moves by -1, 0 or +1 tick (probabilities 0.35 / 0.30 / 0.35) and, with
probability 0.05 each, the spread widens or narrows by one tick, staying between one tick and
three times the start spread. A step that changes neither side produces no quote. Each symbol
has its own ``random.Random`` seeded from ``(seed, symbol)``, so a path depends only on the
seed, the symbol and the number of steps taken, never on how many other symbols the feed
carries or how often :meth:`PriceFeed.advance` is called (as long as no call covers more than
``max_gap_steps`` steps). A longer gap is treated as a market pause: the skipped steps are
dropped and the walk resumes from the last price, so a day-long jump of a manual clock, or a
late ``step()`` of a stalled terminal, replays at most ``max_gap_steps`` steps (default 600:
one minute of walk) instead of a burst of thousands of ticks.

``step_ms=0`` gives a static feed that only :meth:`PriceFeed.set_quote` moves, which is what
rule tests want.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from mtgate.domain.clock import Clock
from mtgate.domain.symbols import SymbolSpec, on_grid
from mtsim.symbols import DEFAULT_START

QuoteListener = Callable[[str, float, float, int], None]


class Quote(NamedTuple):
    bid: float
    ask: float
    time_ms: int


@dataclass(slots=True)
class _Walk:
    spec: SymbolSpec
    rng: random.Random
    bid_ticks: int
    spread_ticks: int
    max_spread_ticks: int
    quote: Quote
    history: deque[Quote] = field(default_factory=deque)

    def price(self, ticks: int) -> float:
        return round(ticks * self.spec.tick_size, self.spec.digits)


class PriceFeed:
    """Bid/ask paths, deterministic under ``seed``, with a bounded history per symbol.

    Args:
        symbols: the symbols to quote.
        seed: seed of the random walks.
        start: start (bid, ask) per symbol; defaults to :data:`mtsim.symbols.DEFAULT_START`.
        clock: gives the time of the first quotes (0 without a clock).
        step_ms: walk step; 0 disables the walk.
        history_size: quotes kept per symbol for :meth:`recent`.
        max_gap_steps: most steps one :meth:`advance` call generates.
    """

    def __init__(
        self,
        symbols: Mapping[str, SymbolSpec],
        *,
        seed: int = 0,
        start: Mapping[str, tuple[float, float]] | None = None,
        clock: Clock | None = None,
        step_ms: int = 100,
        history_size: int = 1024,
        max_gap_steps: int = 600,
    ) -> None:
        if step_ms < 0 or history_size < 1 or max_gap_steps < 1:
            raise ValueError("step_ms >= 0, history_size >= 1 and max_gap_steps >= 1 required")
        self.seed = seed
        self.step_ms = step_ms
        self._max_gap_steps = max_gap_steps
        now = clock.now_ms() if clock is not None else 0
        self._next_step_ms = now + step_ms
        self._listeners: list[QuoteListener] = []
        self._walks: dict[str, _Walk] = {}
        starts = dict(DEFAULT_START)
        starts.update(start or {})
        for name, spec in symbols.items():
            if name not in starts:
                raise ValueError(f"no start price for {name}")
            self._walks[name] = self._new_walk(spec, *starts[name], now, history_size)

    def _new_walk(
        self, spec: SymbolSpec, bid: float, ask: float, now: int, history_size: int
    ) -> _Walk:
        bid_ticks, ask_ticks = self._ticks(spec, bid, ask)
        spread = max(1, ask_ticks - bid_ticks)
        quote = Quote(bid, ask, now)
        walk = _Walk(
            spec=spec,
            rng=random.Random(f"{self.seed}:{spec.name}"),
            bid_ticks=bid_ticks,
            spread_ticks=ask_ticks - bid_ticks,
            max_spread_ticks=3 * spread,
            quote=quote,
            history=deque([quote], maxlen=history_size),
        )
        return walk

    @staticmethod
    def _ticks(spec: SymbolSpec, bid: float, ask: float) -> tuple[int, int]:
        if not (bid > 0 and ask >= bid):
            raise ValueError(f"{spec.name}: need 0 < bid <= ask, got {bid} / {ask}")
        for price in (bid, ask):
            if not on_grid(price, spec.tick_size):
                raise ValueError(f"{spec.name}: {price} is not a multiple of {spec.tick_size}")
        return round(bid / spec.tick_size), round(ask / spec.tick_size)

    @property
    def symbols(self) -> list[str]:
        return list(self._walks)

    def quote(self, symbol: str) -> Quote:
        """The last (bid, ask, time_ms) of ``symbol``; KeyError for a symbol not quoted."""
        return self._walks[symbol].quote

    def recent(self, symbol: str) -> deque[Quote]:
        """The last quotes of ``symbol``, oldest first (the live history: do not mutate)."""
        return self._walks[symbol].history

    def listen(self, callback: QuoteListener) -> Callable[[], None]:
        """Call ``callback(symbol, bid, ask, time_ms)`` on every new quote; returns unsubscribe."""
        self._listeners.append(callback)

        def unsubscribe() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return unsubscribe

    def set_quote(self, symbol: str, bid: float, ask: float, time_ms: int) -> None:
        """Force a quote (tests, scripted scenarios); the walk continues from it."""
        walk = self._walks[symbol]
        bid_ticks, ask_ticks = self._ticks(walk.spec, bid, ask)
        walk.bid_ticks = bid_ticks
        walk.spread_ticks = ask_ticks - bid_ticks
        self._publish(symbol, walk, time_ms)

    def advance(self, now_ms: int) -> list[str]:
        """Take every walk step due by ``now_ms``; returns the symbols that got a new quote."""
        if self.step_ms == 0 or now_ms < self._next_step_ms:
            return []
        due = (now_ms - self._next_step_ms) // self.step_ms + 1
        if due > self._max_gap_steps:
            self._next_step_ms += (due - self._max_gap_steps) * self.step_ms
            due = self._max_gap_steps
        changed: dict[str, None] = {}
        for _ in range(due):
            t = self._next_step_ms
            for name, walk in self._walks.items():
                if self._step(walk):
                    self._publish(name, walk, t)
                    changed[name] = None
            self._next_step_ms += self.step_ms
        return list(changed)

    @staticmethod
    def _step(walk: _Walk) -> bool:
        r = walk.rng.random()
        move = -1 if r < 0.35 else (1 if r >= 0.65 else 0)
        s = walk.rng.random()
        widen = 1 if s < 0.05 else (-1 if s >= 0.95 else 0)
        spread = min(max(walk.spread_ticks + widen, 1), walk.max_spread_ticks)
        bid = max(walk.bid_ticks + move, 1)
        if bid == walk.bid_ticks and spread == walk.spread_ticks:
            return False
        walk.bid_ticks, walk.spread_ticks = bid, spread
        return True

    def _publish(self, symbol: str, walk: _Walk, time_ms: int) -> None:
        quote = Quote(
            walk.price(walk.bid_ticks), walk.price(walk.bid_ticks + walk.spread_ticks), time_ms
        )
        walk.quote = quote
        walk.history.append(quote)
        for listener in list(self._listeners):
            listener(symbol, quote.bid, quote.ask, time_ms)
