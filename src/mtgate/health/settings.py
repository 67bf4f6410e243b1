"""The health monitor's settings (``[health]`` in the configuration file)."""

from __future__ import annotations

from dataclasses import dataclass

BOUNDS: dict[str, tuple[float, float]] = {
    "interval_ms": (100, 3_600_000),
    "latency_window_s": (1, 86_400),
    "latency_samples": (16, 100_000),
    "max_execution_latency_ms": (1, 600_000),
    "flap_disconnects": (2, 1000),
    "flap_window_s": (1, 86_400),
    "down_after_ms": (0, 3_600_000),
    "stale_after_intervals": (2, 10_000),
    "max_rejection_rate_pct": (0, 100),
    "rejection_window_s": (1, 86_400),
    "rejection_min_trades": (1, 100_000),
}
"""Inclusive bounds of every numeric setting; the configuration file is held to the same ones."""


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """What the health monitor measures and when it alerts (docs/operations.md).

    Raises:
        ValueError: a value outside :data:`BOUNDS`, naming the key.
    """

    enabled: bool = True
    interval_ms: int = 5000
    """How often every terminal is sampled, its row written and the alert rules evaluated."""
    latency_window_s: float = 300.0
    """Request latency percentiles are taken over the answers of this recent window..."""
    latency_samples: int = 1024
    """...among the newest this many of each terminal (a fixed ring: O(1) per answer)."""
    max_execution_latency_ms: float = 100.0
    """Alert when the p99 of a terminal's trade requests over the window is above this."""
    flap_disconnects: int = 3
    """Alert ``flapping`` when a terminal's sessions closed this many times..."""
    flap_window_s: float = 300.0
    """...within this window."""
    down_after_ms: int = 10_000
    """A terminal not READY (or an account without a READY terminal) for this long raises
    ``terminal_down`` (``no_ready_terminal``); a configured terminal that never connected
    counts from the monitor's start."""
    stale_after_intervals: int = 3
    """Alert ``account_stale`` when an account's last snapshot is older than this many sync
    intervals (``sync.interval_ms``)."""
    max_rejection_rate_pct: float = 20.0
    """Alert when more than this percentage of an account's trade answers refused the trade..."""
    rejection_window_s: float = 300.0
    """...over this sliding window..."""
    rejection_min_trades: int = 5
    """...once it holds at least this many trade answers (one refusal of one is not a rate)."""

    def __post_init__(self) -> None:
        for name, (low, high) in BOUNDS.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"health.{name} must be in {low:g}..{high:g}, got {value!r}")
