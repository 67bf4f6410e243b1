"""The simulated trade server's clock: server time runs from a chosen start at real speed."""

from __future__ import annotations

import time


class ServerClock:
    """Real elapsed time added to a fixed server-time start, so scripted sessions (market
    hours, expirations) behave the same whenever they run."""

    def __init__(self, start_ms: int) -> None:
        self._start_ms = start_ms
        self._origin_ns = time.perf_counter_ns()

    def now_ms(self) -> int:
        return self._start_ms + (time.perf_counter_ns() - self._origin_ns) // 1_000_000

    def monotonic_ns(self) -> int:
        return time.perf_counter_ns()
