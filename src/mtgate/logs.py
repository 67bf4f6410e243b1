"""Structured logging: JSON lines in production, readable on a terminal."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO, cast

import structlog


def configure(*, json: bool | None = False, level: str = "INFO") -> None:
    """Log lines at ``level`` and above to standard error; ``json`` None: JSON unless
    standard error is a terminal."""
    if json is None:
        json = not sys.stderr.isatty()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=cast(TextIO, _Stderr())),
        cache_logger_on_first_use=True,
    )


class _Stderr:
    """Standard error as it is when a line is written, not when logging was configured: a
    logger cached on first use keeps writing where the process's stderr now points (a test
    runner's capture, a redirect made after start-up) instead of into a closed stream."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def get(name: str) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger


class Throttle:
    """Lets at most ``per_s`` events a second through (bursts of as many), for log lines a
    peer could otherwise trigger at will.

    ``allow()`` returns None for an event to drop, else how many were dropped since the last
    one let through (to put in that line)."""

    __slots__ = ("_clock", "_last", "_per_s", "_suppressed", "_tokens")

    def __init__(self, per_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._per_s = per_s
        self._clock = clock
        self._tokens = per_s
        self._last = clock()
        self._suppressed = 0

    def allow(self) -> int | None:
        now = self._clock()
        self._tokens = min(self._per_s, self._tokens + (now - self._last) * self._per_s)
        self._last = now
        if self._tokens < 1.0:
            self._suppressed += 1
            return None
        self._tokens -= 1.0
        suppressed, self._suppressed = self._suppressed, 0
        return suppressed
