"""Per-symbol trigger levels: which pending orders and SL/TP a new quote reaches (reference §4.2).

Buy limit / buy stop (and buy stop-limit) trigger on Ask, sell limit / sell stop on Bid; a buy
position's SL/TP trigger on Bid, a sell position's on Ask. Each of the four (price, direction)
pairs is a heap ordered so that the next level to fire is on top, so a quote costs
O(fired · log n) however many orders and positions are open, instead of a scan.

Entries are never removed in place: when an order or position changes or goes away its
``version`` moves on and the caller skips the stale entry when it pops (lazy deletion).
:meth:`TriggerBook.compact` drops stale entries once they dominate a heap.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Callable
from typing import NamedTuple


class Kind(enum.IntEnum):
    """What fired; orders are processed before SL/TP within one quote."""

    ORDER = 0
    SL = 1
    TP = 2


class Fired(NamedTuple):
    kind: Kind
    seq: int
    ticket: int
    version: int
    level: float


_Entry = tuple[float, int, int, int, int, float]  # (key, seq, kind, ticket, version, level)


class _Heap:
    """Levels firing when the price reaches them from below (``rising``) or from above."""

    __slots__ = ("_items", "_sign")

    def __init__(self, *, rising: bool) -> None:
        self._items: list[_Entry] = []
        # rising: fires when price >= level: smallest level first (min-heap on level);
        # falling: fires when price <= level: largest level first (min-heap on -level).
        self._sign = 1.0 if rising else -1.0

    def __len__(self) -> int:
        return len(self._items)

    def push(self, level: float, seq: int, kind: Kind, ticket: int, version: int) -> None:
        heapq.heappush(self._items, (self._sign * level, seq, int(kind), ticket, version, level))

    def pop_fired(self, price: float, eps: float, out: list[Fired]) -> None:
        limit = self._sign * price + eps
        items = self._items
        while items and items[0][0] <= limit:
            _, seq, kind, ticket, version, level = heapq.heappop(items)
            out.append(Fired(Kind(kind), seq, ticket, version, level))

    def compact(self, live: Callable[[int, int, int], bool]) -> None:
        self._items = [e for e in self._items if live(e[2], e[3], e[4])]
        heapq.heapify(self._items)


class TriggerBook:
    """The trigger levels of one symbol in one account.

    Args:
        eps: price tolerance for "reached" (a thousandth of a point): prices are normalized,
            so only binary rounding can separate a quote from a level it equals.
    """

    __slots__ = ("_ask_down", "_ask_up", "_bid_down", "_bid_up", "_eps", "_seq", "stale")

    def __init__(self, eps: float) -> None:
        self._eps = eps
        self._seq = 0
        self._ask_up = _Heap(rising=True)  # buy stop, buy stop-limit, sell SL
        self._ask_down = _Heap(rising=False)  # buy limit, sell TP
        self._bid_up = _Heap(rising=True)  # sell limit, buy TP
        self._bid_down = _Heap(rising=False)  # sell stop, sell stop-limit, buy SL
        self.stale = 0

    def __len__(self) -> int:
        return len(self._ask_up) + len(self._ask_down) + len(self._bid_up) + len(self._bid_down)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def add_order(self, ticket: int, version: int, *, buy: bool, limit: bool, price: float) -> None:
        """A pending order: limits fire when the market comes down (buy) / up (sell) to
        ``price``, stops (and stop-limits) when it goes beyond ``price``."""
        if buy:
            heap = self._ask_down if limit else self._ask_up
        else:
            heap = self._bid_up if limit else self._bid_down
        heap.push(price, self._next_seq(), Kind.ORDER, ticket, version)

    def add_position(self, ticket: int, version: int, *, buy: bool, sl: float, tp: float) -> None:
        """A position's SL and TP (zero: not set)."""
        if sl:
            heap = self._bid_down if buy else self._ask_up
            heap.push(sl, self._next_seq(), Kind.SL, ticket, version)
        if tp:
            heap = self._bid_up if buy else self._ask_down
            heap.push(tp, self._next_seq(), Kind.TP, ticket, version)

    def reached(self, bid: float, ask: float) -> bool:
        """Whether :meth:`fired` would return anything (stale entries included): the check
        every quote makes for every account, so it looks at the four heap tops and nothing
        else."""
        eps = self._eps
        items = self._ask_up._items
        if items and items[0][0] <= ask + eps:
            return True
        items = self._ask_down._items
        if items and items[0][0] <= eps - ask:
            return True
        items = self._bid_up._items
        if items and items[0][0] <= bid + eps:
            return True
        items = self._bid_down._items
        return bool(items) and items[0][0] <= eps - bid

    def fired(self, bid: float, ask: float) -> list[Fired]:
        """Every entry the quote reaches, orders first, each group in the order it was added.

        Popped entries are gone: the caller must act on each live one (fill, close, re-add).
        """
        out: list[Fired] = []
        self._ask_up.pop_fired(ask, self._eps, out)
        self._ask_down.pop_fired(ask, self._eps, out)
        self._bid_up.pop_fired(bid, self._eps, out)
        self._bid_down.pop_fired(bid, self._eps, out)
        out.sort(key=lambda f: (f.kind != Kind.ORDER, f.seq))
        return out

    def compact(self, live: Callable[[int, int, int], bool]) -> None:
        """Drop entries for which ``live(kind, ticket, version)`` is False."""
        for heap in (self._ask_up, self._ask_down, self._bid_up, self._bid_down):
            heap.compact(live)
        self.stale = 0

    def needs_compaction(self) -> bool:
        return self.stale > 256 and self.stale * 2 > len(self)
