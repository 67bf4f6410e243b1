"""Latency percentiles, outcome counts and the flap detector, fed values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtgate.domain.codes import MT4, MT5
from mtgate.domain.enums import Platform
from mtgate.health.meter import LATENCY_BUCKETS_MS, TerminalMeter
from mtgate.health.settings import HealthSettings
from mtgate.health.windows import FlapDetector, LatencyWindow, OutcomeWindow, percentile
from mtgate.sessions.session import AccountKey

S = 1_000_000_000


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([7.0], 50, 7.0),
        ([7.0], 99, 7.0),
        ([float(v) for v in range(1, 101)], 50, 50.0),
        ([float(v) for v in range(1, 101)], 99, 99.0),
        ([float(v) for v in range(1, 1001)], 99, 990.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
        ([1.0, 2.0, 3.0, 4.0], 99, 4.0),  # fewer than 100 values: p99 is the maximum
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
    ],
)
def test_percentile_is_nearest_rank(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == expected


@pytest.mark.parametrize("q", [0, -1, 100.5])
def test_percentile_refuses_a_rank_outside_0_100(q: float) -> None:
    with pytest.raises(ValueError, match="percentile"):
        percentile([1.0], q)


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_latency_window_keeps_the_newest_and_forgets_by_time() -> None:
    window = LatencyWindow(capacity=4, window_ns=10 * S)
    assert window.percentiles(0, 50, 99) is None
    for i, value in enumerate([100.0, 1.0, 2.0, 3.0, 4.0]):  # the 100 is pushed out
        window.record(i * S, value)
    assert window.recent(5 * S) == [1.0, 2.0, 3.0, 4.0]
    assert window.percentiles(5 * S, 50, 99) == (2.0, 4.0)
    # 12.5 s: the ones measured at 1 s and 2 s are older than the 10 s window.
    assert window.recent(12 * S + S // 2) == [3.0, 4.0]
    assert window.percentiles(100 * S, 50) is None


def test_latency_window_wraps_its_ring_many_times() -> None:
    window = LatencyWindow(capacity=8, window_ns=1000 * S)
    for i in range(1, 101):
        window.record(i, float(i))
    assert window.recent(200) == [float(v) for v in range(93, 101)]


def test_outcome_window_counts_refusals_within_the_window() -> None:
    window = OutcomeWindow(capacity=100, window_ns=10 * S)
    assert window.counts(0) == (0, 0)
    window.record(1 * S, refused=True)
    window.record(2 * S, refused=False)
    window.record(3 * S, refused=True)
    assert window.counts(3 * S) == (3, 2)
    assert window.counts(12 * S + 1) == (1, 1)  # the two oldest left the window
    assert window.counts(20 * S) == (0, 0)


def test_flap_detector_needs_the_threshold_within_the_window() -> None:
    flaps = FlapDetector(threshold=3, window_ns=60 * S)
    for at in (0, 10 * S):
        flaps.record(at)
    assert not flaps.flapping(20 * S)
    flaps.record(30 * S)
    assert flaps.flapping(30 * S) and flaps.recent(30 * S) == 3
    assert not flaps.flapping(61 * S)  # the first one is older than the window now
    assert flaps.total == 3


def test_meter_measures_every_request_and_counts_refused_trades() -> None:
    meter = TerminalMeter(HealthSettings())
    meter.platform = Platform.MT5
    meter.account = AccountKey(7, "Demo")
    meter.answered(None, 1, 2_000_000, None)  # a read: latency only
    meter.answered("market_order", 2, 150_000_000, None)
    meter.answered("market_order", 3, 10_000_000, MT5.TRADE_DISABLED)  # refused
    meter.answered("close_position", 4, 10_000_000, MT5.TIMEOUT)  # unknown: not a refusal
    assert meter.latencies.recent(5) == [2.0, 10.0, 10.0, 150.0]
    assert meter.trade_latencies.recent(5) == [10.0, 10.0, 150.0]
    assert meter.outcomes.counts(5) == (3, 1)
    market = meter.trades[("7@Demo", "market_order")]
    assert sum(market.buckets) == 2 and market.sum_ms == 160.0
    assert market.buckets[LATENCY_BUCKETS_MS.index(10.0)] == 1  # 10 ms: at most 10
    assert market.buckets[LATENCY_BUCKETS_MS.index(250.0)] == 1  # 150 ms: above 100
    assert sum(meter.trades[("7@Demo", "close_position")].buckets) == 1
    meter.timed_out(True, 6, 400_000_000)
    assert meter.trade_latencies.percentiles(7, 99) == (400.0,)


def test_meter_reads_codes_with_the_terminals_platform() -> None:
    meter = TerminalMeter(HealthSettings())
    meter.platform = Platform.MT4
    meter.answered("market_order", 1, 1_000_000, MT4.TRADE_DISABLED)
    meter.answered("market_order", 2, 1_000_000, MT4.REQUOTE)  # retryable: still a refusal
    assert meter.outcomes.counts(3) == (2, 2)


@given(
    st.lists(
        st.tuples(st.integers(0, 50), st.booleans(), st.booleans()),
        max_size=60,
    ),
    st.integers(1, 8),
)
def test_refusals_counted_as_they_come_and_go_match_a_recount(
    steps: list[tuple[int, bool, bool]], capacity: int
) -> None:
    """The running count of refused answers equals a count over what the window holds,
    whether entries leave by age or make room for newer ones."""
    window = OutcomeWindow(capacity=capacity, window_ns=20)
    held: list[tuple[int, bool]] = []
    now = 0
    for gap, refused, sample in steps:
        now += gap
        window.record(now, refused)
        held = [*held, (now, refused)][-capacity:]
        if sample:
            held = [(at, r) for at, r in held if at >= now - 20]
            assert window.counts(now) == (len(held), sum(r for _, r in held))
