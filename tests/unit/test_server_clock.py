"""The session's view of the trade server's clock (TerminalSession.server_now_ms)."""

from __future__ import annotations

from mtgate.domain.clock import ManualClock
from mtgate.sessions.session import SERVER_OFFSET_TTL_NS, TerminalSession


def _session(clock: ManualClock) -> TerminalSession:
    """Only the clock-keeping state of a session (no link, no host)."""
    session = object.__new__(TerminalSession)
    session._clock = clock  # type: ignore[misc]
    session.server_time_ms = 0
    session._server_offset = None
    return session


def test_nothing_seen_means_no_server_clock() -> None:
    assert _session(ManualClock()).server_now_ms() is None


def test_the_freshest_report_is_carried_forward_by_the_time_elapsed() -> None:
    clock = ManualClock()
    s = _session(clock)
    s._saw_server_time(50_000_000)  # the server reads 50 000 000 when the bridge's mono is 0
    clock.advance(2_000)
    assert s.server_now_ms() == 50_002_000
    s._saw_server_time(49_000_000)  # an old tick (a quiet symbol): it does not pull back
    assert s.server_now_ms() == 50_002_000
    s._saw_server_time(50_002_500)  # a fresher report moves it up
    assert s.server_now_ms() == 50_002_500
    assert s.server_time_ms == 50_002_500


def test_a_server_clock_set_back_is_followed_within_the_ttl() -> None:
    clock = ManualClock()
    s = _session(clock)
    s._saw_server_time(10_000_000)
    hour = 3_600_000
    clock.advance(1_000)
    s._saw_server_time(10_001_000 - hour)  # the broker's clock went back an hour (DST)
    assert s.server_now_ms() == 10_001_000  # not yet: within the TTL the best offset stands
    clock.advance(SERVER_OFFSET_TTL_NS // 1_000_000 + 1)
    s._saw_server_time(clock.monotonic_ns() // 1_000_000 + 10_000_000 - hour)
    assert s.server_now_ms() == clock.monotonic_ns() // 1_000_000 + 10_000_000 - hour


def test_zero_times_are_not_reports() -> None:
    s = _session(ManualClock())
    s._saw_server_time(0)
    assert s.server_now_ms() is None
