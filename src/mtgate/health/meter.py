"""One terminal's measurements, kept across its sessions (the registry holds one per id).

The session reports every answered request (:meth:`TerminalMeter.answered`) and the registry
every close (:meth:`TerminalMeter.disconnected`); both are O(1). The monitor reads the windows
when it samples.
"""

from __future__ import annotations

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
OUTCOMES_KEPT = 100_000
"""At most this many trade answers per terminal are kept for the rejection rate."""


class TerminalMeter:
    """Request latencies, trade outcomes and disconnects of one terminal id."""

    __slots__ = ("account", "closes", "latencies", "outcomes", "platform", "trade_latencies")

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

    def answered(self, trade: bool, now_ns: int, latency_ns: int, error_code: int | None) -> None:
        """A request was answered ``latency_ns`` after it was sent; ``error_code`` is the
        platform's code of an error answer, None for a result."""
        latency_ms = latency_ns / 1e6
        self.latencies.record(now_ns, latency_ms)
        if not trade:
            return
        self.trade_latencies.record(now_ns, latency_ms)
        refused = False
        if error_code is not None:
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

    def disconnected(self, now_ns: int) -> None:
        self.closes.record(now_ns)
