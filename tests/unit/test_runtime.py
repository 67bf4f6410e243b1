"""The runtime's meters measure what they claim: a blocked loop shows as lag, a collection as
a pause of its generation; and the settings are the ones serve uses."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

from mtgate import runtime


def _hold_the_loop(seconds: float) -> None:
    """What a blocking call in a callback does: nothing else runs meanwhile."""
    time.sleep(seconds)


async def test_loop_lag_sees_a_callback_that_holds_the_loop() -> None:
    lag = runtime.LoopLag(0.002, keep=True)
    lag.start()
    await asyncio.sleep(0.02)
    _hold_the_loop(0.06)  # the timer due meanwhile runs ~60 ms late
    await asyncio.sleep(0.02)
    lag.stop()
    h = lag.histogram
    assert h.count >= 3
    assert h.max_ms >= 50
    assert h.samples is not None and len(h.samples) == h.count
    assert sum(h.buckets) == h.count
    assert h.buckets[-1] == 0  # nothing above the last bound (1 s)
    late = sum(h.buckets[runtime.PAUSE_BUCKETS_MS.index(25.0) + 1 :])
    assert late >= 1  # the blocked wake-up is in a bucket above 25 ms
    count = h.count
    await asyncio.sleep(0.02)
    assert h.count == count  # stopped: no more samples


async def test_loop_lag_restarted_runs_one_timer() -> None:
    lag = runtime.LoopLag(0.005)
    lag.start()
    lag.start()
    await asyncio.sleep(0.1)
    lag.stop()
    assert lag.histogram.count <= 0.1 / 0.005 + 2  # two timers would count twice as many


def test_loop_lag_interval_is_bounded() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        runtime.LoopLag(0)


def test_gc_pauses_time_each_generation_while_installed() -> None:
    pauses = runtime.GcPauses(keep=True)
    with pauses:
        gc.collect(2)
        gc.collect(0)
    assert pauses.by_generation[2].count == 1
    assert pauses.by_generation[0].count >= 1
    assert pauses.max_ms > 0
    gc.collect(2)  # removed: not counted
    assert pauses.by_generation[2].count == 1
    figures = runtime.pause_figures(pauses)
    assert set(figures) == {"gen0", "gen1", "gen2"}
    assert figures["gen2"]["count"] == 1


def test_settle_heap_freezes_what_is_alive() -> None:
    try:
        runtime.settle_heap()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
