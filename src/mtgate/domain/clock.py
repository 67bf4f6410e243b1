"""Injected clocks: logic never reads the time itself, so tests never sleep."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall-clock time, epoch milliseconds (server time for a simulated broker)."""
        ...

    def monotonic_ns(self) -> int:
        """Monotonic time for durations and deadlines."""
        ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    monotonic_ns = staticmethod(time.perf_counter_ns)
    """The clock's own function, not a method around it: no Python frame (the order path
    reads it several times per order)."""


class ManualClock:
    """A clock tests move by hand."""

    def __init__(self, start_ms: int = 1_767_225_600_000) -> None:
        self._ms = start_ms
        self._mono_ns = 0

    def now_ms(self) -> int:
        return self._ms

    def monotonic_ns(self) -> int:
        return self._mono_ns

    def advance(self, ms: int) -> None:
        if ms < 0:
            raise ValueError("a clock does not go back")
        self._ms += ms
        self._mono_ns += ms * 1_000_000
