"""One terminal's measurements, kept across its sessions (the registry holds one per id).

The session reports every answered request (:meth:`TerminalMeter.answered`) and the registry
every close (:meth:`TerminalMeter.disconnected`); both are O(1). The monitor reads the windows
when it samples.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING

from mtgate.domain.codes import Classification, lookup
from mtgate.domain.enums import Platform
from mtgate.health.settings import HealthSettings
from mtgate.health.windows import FlapDetector, LatencyWindow, OutcomeWindow

if TYPE_CHECKING:
    from mtgate.sessions.session import AccountKey

_SECOND_NS = 1_000_000_000
_REFUSED = frozenset({Classification.REJECTED, Classification.RETRYABLE})
"""A trade answer with one of these refused the trade (an outcome-unknown one did not say)."""
LATENCY_BUCKETS_MS = (
    1.0,
    2.5,
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1000.0,
    2500.0,
    10_000.0,
)
"""Upper bounds of the trade latency histogram (``/metrics``)."""
CODES_KEPT = 128
"""Distinct error codes counted per terminal (a terminal sends what it likes: bounded)."""
OUTCOMES_KEPT = 100_000
"""At most this many trade answers per terminal are kept for the rejection rate."""


class TerminalMeter:
    """Request latencies, trade outcomes and disconnects of one terminal id."""

    __slots__ = (
        "account",
        "closes",
        "error_codes",
        "latencies",
        "outcomes",
        "platform",
        "trade_buckets",
        "trade_latencies",
        "trade_sum_ms",
        "trade_timeouts",
    )

    def __init__(self, settings: HealthSettings) -> None:
        latency_ns = int(settings.latency_window_s * _SECOND_NS)
        self.latencies = LatencyWindow(settings.latency_samples, latency_ns)
        """Every request, reads and trades, from send to answer."""
        self.trade_latencies = LatencyWindow(settings.latency_samples, latency_ns)
        """Trade requests only: what the execution latency alert compares."""
        self.outcomes = OutcomeWindow(OUTCOMES_KEPT, int(settings.rejection_window_s * _SECOND_NS))
        self.closes = FlapDetector(
            settings.flap_disconnects, int(settings.flap_window_s * _SECOND_NS)
        )
        self.platform: Platform | None = None
        """The platform of the terminal's latest session (how its error codes read)."""
        self.account: AccountKey | None = None
        """The account of the terminal's latest session."""
        self.trade_buckets = [0] * (len(LATENCY_BUCKETS_MS) + 1)
        """Answered trades by latency since the bridge started: ``[i]`` counts those at most
        ``LATENCY_BUCKETS_MS[i]`` and above the bucket before (the last: above every bound);
        cumulative, as Prometheus histograms are."""
        self.trade_sum_ms = 0.0
        self.trade_timeouts = 0
        self.error_codes: dict[int, int] = {}
        """Error answers by the platform's code since the bridge started (at most
        :data:`CODES_KEPT` codes; any beyond count under ``-1``)."""

    def answered(self, trade: bool, now_ns: int, latency_ns: int, error_code: int | None) -> None:
        """A request was answered ``latency_ns`` after it was sent; ``error_code`` is the
        platform's code of an error answer, None for a result."""
        latency_ms = latency_ns / 1e6
        self.latencies.record(now_ns, latency_ms)
        if not trade:
            return
        self.trade_latencies.record(now_ns, latency_ms)
        self.trade_buckets[bisect_left(LATENCY_BUCKETS_MS, latency_ms)] += 1
        self.trade_sum_ms += latency_ms
        refused = False
        if error_code is not None:
            codes = self.error_codes
            key = error_code if error_code in codes or len(codes) < CODES_KEPT else -1
            codes[key] = codes.get(key, 0) + 1
            platform = self.platform
            refused = platform is None or lookup(platform, error_code).classification in _REFUSED
        self.outcomes.record(now_ns, refused)

    def timed_out(self, trade: bool, now_ns: int, waited_ns: int) -> None:
        """A request got no answer in time: it counts in the latencies at what it waited (a
        lower bound), so that a terminal that stops answering shows in the percentiles."""
        waited_ms = waited_ns / 1e6
        self.latencies.record(now_ns, waited_ms)
        if trade:
            self.trade_latencies.record(now_ns, waited_ms)
            self.trade_timeouts += 1

    def disconnected(self, now_ns: int) -> None:
        self.closes.record(now_ns)
