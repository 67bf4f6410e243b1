"""The process's runtime: one set of settings for ``serve``, ``demo``, ``bench`` and ``soak``,
and the two meters of the event loop's health (loop lag, garbage-collector pauses).

Settings: uvloop where it exists (not on Windows), and :func:`settle_heap` once the bridge has
started, before the first order: a full collection, then ``gc.freeze()``, which moves every
object alive at that moment (modules, classes, the configuration, the sessions' tables) to the
permanent generation. A full collection walks only what is younger, so its pause stops growing
with the size of the code and the start-up state. Nothing is tuned for a benchmark alone: what
``mtgate bench`` and ``mtgate soak`` report is what ``mtgate serve`` does (docs/operations.md,
"Runtime").

Meters: :class:`LoopLag` wakes every ``interval_s`` and records how late it woke (a callback
that held the loop, a blocking call, a pause of the collector all show up as lag);
:class:`GcPauses` times every collection from the interpreter's own callbacks. Both keep a
histogram of fixed buckets (bounded memory however long the process runs) and, when asked
(the soak), every sample.
"""

from __future__ import annotations

import asyncio
import gc
import time
from array import array
from bisect import bisect_left
from typing import Final

PAUSE_BUCKETS_MS: Final = (0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0)
"""Upper bounds of the loop-lag and collector-pause histograms (``/metrics``)."""


def use_uvloop() -> None:
    """Make new event loops uvloop's (Windows: the standard loop)."""
    try:
        import uvloop
    except ImportError:
        return
    uvloop.install()


def settle_heap() -> None:
    """Collect, then freeze what is alive: call once after start-up, before taking orders."""
    gc.collect()
    gc.freeze()


class PauseHistogram:
    """Pauses (ms) in the fixed buckets of :data:`PAUSE_BUCKETS_MS`; every sample too if kept."""

    __slots__ = ("buckets", "count", "max_ms", "samples", "sum_ms")

    def __init__(self, keep: bool) -> None:
        self.buckets = [0] * (len(PAUSE_BUCKETS_MS) + 1)
        """``[i]``: samples at most ``PAUSE_BUCKETS_MS[i]`` and above the bound before."""
        self.count = 0
        self.sum_ms = 0.0
        self.max_ms = 0.0
        self.samples: array[float] | None = array("d") if keep else None

    def add(self, ms: float) -> None:
        self.buckets[bisect_left(PAUSE_BUCKETS_MS, ms)] += 1
        self.count += 1
        self.sum_ms += ms
        if ms > self.max_ms:
            self.max_ms = ms
        if self.samples is not None:
            self.samples.append(ms)


class LoopLag:
    """How late the event loop runs a timer due every ``interval_s``.

    The lag of one wake-up is the time from when it was due to when it ran: what any
    callback due then (a frame to read, an answer to send) waited for the loop. uvloop's timers
    have a millisecond's resolution, so a lag under ~1 ms is the timer's, not the loop's.
    """

    def __init__(self, interval_s: float = 0.005, *, keep: bool = False) -> None:
        if not 0.0005 <= interval_s <= 10:
            raise ValueError(f"interval_s={interval_s}: expected 0.0005..10")
        self.interval_s = interval_s
        self.histogram = PauseHistogram(keep)
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Start on the running loop (again: from now, the histogram kept)."""
        self.stop()
        self._loop = asyncio.get_running_loop()
        self._arm(time.perf_counter())

    def _arm(self, now: float) -> None:
        assert self._loop is not None
        self._due = now + self.interval_s
        self._handle = self._loop.call_later(self.interval_s, self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        self.histogram.add(max(0.0, (now - self._due) * 1000))
        self._arm(now)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class GcPauses:
    """Every garbage collection's pause, by generation, while installed."""

    def __init__(self, *, keep: bool = False) -> None:
        self.by_generation = [PauseHistogram(keep) for _ in range(3)]
        self._t0 = 0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter_ns()
        else:
            ms = (time.perf_counter_ns() - self._t0) / 1e6
            self.by_generation[min(2, max(0, info.get("generation", 2)))].add(ms)

    @property
    def max_ms(self) -> float:
        return max(h.max_ms for h in self.by_generation)

    def install(self) -> GcPauses:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)
        return self

    def remove(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def __enter__(self) -> GcPauses:
        return self.install()

    def __exit__(self, *_: object) -> None:
        self.remove()


def pause_figures(pauses: GcPauses) -> dict[str, dict[str, float]]:
    """Collections by generation: how many, the longest and the total pause."""
    return {
        f"gen{g}": {"count": h.count, "max_ms": round(h.max_ms, 3), "total_ms": round(h.sum_ms, 1)}
        for g, h in enumerate(pauses.by_generation)
    }
