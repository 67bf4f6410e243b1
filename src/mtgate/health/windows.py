"""Pure measurement windows: latencies with percentiles, trade outcomes, disconnects.

Recording is O(1) and allocates nothing on the order path; the work (pruning old entries,
sorting for percentiles) is done when the monitor samples.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence


def percentile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ``ordered`` (sorted, not empty):
    the smallest value with at least ``q`` % of the values at or below it, so p99 of 100
    values is the 99th, and p99 of fewer than 100 is their maximum."""
    if not ordered:
        raise ValueError("percentile of no values")
    if not 0 < q <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {q}")
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[rank - 1]


class LatencyWindow:
    """The newest ``capacity`` latencies, each with the time it was measured; percentiles
    over those measured within ``window_ns`` of the time asked about."""

    __slots__ = ("_at", "_count", "_next", "_size", "_values", "window_ns")

    def __init__(self, capacity: int, window_ns: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._at = [0] * capacity
        self._values = [0.0] * capacity
        self._next = 0
        self._count = 0
        self._size = capacity
        self.window_ns = window_ns

    def record(self, at_ns: int, value_ms: float) -> None:
        i = self._next
        self._at[i] = at_ns
        self._values[i] = value_ms
        i += 1
        self._next = i if i < self._size else 0
        if self._count < self._size:
            self._count += 1

    def recent(self, now_ns: int) -> list[float]:
        """The latencies measured within the window, sorted."""
        since = now_ns - self.window_ns
        at, values = self._at, self._values
        size = len(at)
        start = (self._next - self._count) % size
        found = [values[j] for k in range(self._count) if at[j := (start + k) % size] >= since]
        found.sort()
        return found

    def percentiles(self, now_ns: int, *qs: float) -> tuple[float, ...] | None:
        """The ``qs`` percentiles of :meth:`recent`; None when the window holds none."""
        found = self.recent(now_ns)
        if not found:
            return None
        return tuple(percentile(found, q) for q in qs)


class OutcomeWindow:
    """Trade answers (refused or not) over a sliding time window, at most ``capacity``.

    The refused ones are counted as they come and go, so a sample costs no pass over the
    window (it holds up to ``capacity`` answers)."""

    __slots__ = ("_entries", "_refused", "window_ns")

    def __init__(self, capacity: int, window_ns: int) -> None:
        self._entries: deque[tuple[int, bool]] = deque(maxlen=capacity)
        self._refused = 0
        self.window_ns = window_ns

    def record(self, at_ns: int, refused: bool) -> None:
        entries = self._entries
        if len(entries) == entries.maxlen and entries[0][1]:
            self._refused -= 1  # the oldest, refused, makes room
        entries.append((at_ns, refused))
        if refused:
            self._refused += 1

    def counts(self, now_ns: int) -> tuple[int, int]:
        """``(answers, refused)`` within the window (older entries are dropped)."""
        since = now_ns - self.window_ns
        entries = self._entries
        while entries and entries[0][0] < since:
            if entries.popleft()[1]:
                self._refused -= 1
        return len(entries), self._refused


class FlapDetector:
    """Disconnects of one terminal: flapping is ``threshold`` of them within ``window_ns``."""

    __slots__ = ("_times", "threshold", "total", "window_ns")

    def __init__(self, threshold: int, window_ns: int) -> None:
        self._times: deque[int] = deque(maxlen=max(threshold, 64))
        self.threshold = threshold
        self.window_ns = window_ns
        self.total = 0
        """Disconnects since this detector was made."""

    def record(self, at_ns: int) -> None:
        self._times.append(at_ns)
        self.total += 1

    def recent(self, now_ns: int) -> int:
        """Disconnects within the window."""
        since = now_ns - self.window_ns
        times = self._times
        while times and times[0] < since:
            times.popleft()
        return len(times)

    def flapping(self, now_ns: int) -> bool:
        return self.recent(now_ns) >= self.threshold
