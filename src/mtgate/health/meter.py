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


class TradeHistogram:
    """Answered trades of one account and operation by latency since the bridge started."""

    __slots__ = ("buckets", "sum_ms")

    def __init__(self) -> None:
        self.buckets = [0] * (len(LATENCY_BUCKETS_MS) + 1)
        """``[i]`` counts those at most ``LATENCY_BUCKETS_MS[i]`` and above the bucket before
        (the last: above every bound); summed into Prometheus's cumulative form when read."""
        self.sum_ms = 0.0


class TerminalMeter:
    """Request latencies, trade outcomes, sessions and disconnects of one terminal id."""

    __slots__ = (
        "account",
        "closes",
        "error_codes",
        "latencies",
        "outcomes",
        "platform",
        "ready_sessions",
        "trade_latencies",
        "trade_timeouts",
        "trades",
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
        self.trades: dict[tuple[str, str], TradeHistogram] = {}
        """Answered trades by (account, operation): the accounts are those the terminal's
        sessions served (bounded by its grants), the operations the protocol's trade ops."""
        self.trade_timeouts = 0
        self.ready_sessions = 0
        """Sessions of this terminal id that proved its key and took the id (above one:
        reconnects)."""
        self.error_codes: dict[int, int] = {}
        """Error answers by the platform's code since the bridge started (at most
        :data:`CODES_KEPT` codes; any beyond count under ``-1``)."""

    def answered(
        self, operation: str | None, now_ns: int, latency_ns: int, error_code: int | None
    ) -> None:
        """A request was answered ``latency_ns`` after it was sent; ``operation`` is the trade
        op's name (None for a read); ``error_code`` is the platform's code of an error answer,
        None for a result."""
        latency_ms = latency_ns / 1e6
        self.latencies.record(now_ns, latency_ms)
        if operation is None:
            return
        self.trade_latencies.record(now_ns, latency_ms)
        key = (str(self.account) if self.account is not None else "", operation)
        histogram = self.trades.get(key)
        if histogram is None:
            histogram = self.trades[key] = TradeHistogram()
        histogram.buckets[bisect_left(LATENCY_BUCKETS_MS, latency_ms)] += 1
        histogram.sum_ms += latency_ms
        refused = False
        if error_code is not None:
            codes = self.error_codes
            kept = error_code if error_code in codes or len(codes) < CODES_KEPT else -1
            codes[kept] = codes.get(kept, 0) + 1
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
