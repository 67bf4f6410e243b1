"""The bridge's view of the EA's clock never runs ahead of it (docs/protocol.md §4.4)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mtgate.domain.clock import ManualClock
from mtgate.protocol import messages as m
from mtgate.sessions.session import SessionSettings, TerminalSession, ea_clock_at


@given(
    ea_at_send_ms=st.integers(1, 2**40),  # an EA clock counts from boot: >= 1 ms
    transit_ns=st.integers(0, 5 * 10**9),
    ahead_ns=st.integers(-(10**9), 600 * 10**9),
    rate_ppm=st.integers(-200, 200),
)
def test_the_deadline_on_the_ea_clock_is_never_later_than_the_ea_clock_then(
    ea_at_send_ms: int, transit_ns: int, ahead_ns: int, rate_ppm: int
) -> None:
    """The ping left the EA when its clock read ``ea_at_send_ms``, spent ``transit_ns`` on
    the way, and the deadline is ``ahead_ns`` after its arrival; the EA's clock runs
    ``rate_ppm`` fast or slow against the bridge's. Whatever those are, the converted deadline
    is never later than what the EA's clock reads at the deadline, so the EA never starts a
    trade after the bridge's deadline."""
    rx_ns = 10**12
    at_ns = rx_ns + ahead_ns
    elapsed_since_send_ns = transit_ns + ahead_ns
    if elapsed_since_send_ns < 0:
        return  # the deadline would lie before the ping was sent: not a case that occurs
    ea_then_ms = ea_at_send_ms + elapsed_since_send_ns * (1 + rate_ppm * 1e-6) / 1e6
    assert ea_clock_at(ea_at_send_ms, rx_ns, at_ns) <= ea_then_ms


def test_zero_is_never_produced() -> None:
    """0 on the wire means "no deadline": a deadline that has long passed is sent as 1."""
    assert ea_clock_at(5, 10**12, 0) == 1


async def test_a_session_tells_deadlines_once_it_has_a_clock_sample() -> None:
    """The submitter journals a deadline only when the request will carry one: the session
    says so exactly when its conversion gives a non-zero deadline, and a new ping's sample
    replaces the old one."""
    clock = ManualClock()
    session = TerminalSession(host=None, settings=SessionSettings(), clock=clock, session_id="s")  # type: ignore[arg-type]
    session.deadlines = True
    deadline_ns = clock.monotonic_ns() + 10**9
    assert not session.tells_deadlines
    assert session.ea_deadline_ms(deadline_ns) == 0  # no sample yet: no deadline on the wire
    session._on_message(m.Ping(t_ms=1_000))
    assert session.tells_deadlines
    assert session.ea_deadline_ms(deadline_ns) == ea_clock_at(
        1_000, clock.monotonic_ns(), deadline_ns
    )
    clock.advance(5)
    session._on_message(m.Ping(t_ms=500_000))  # the EA restarted its count, say
    assert session.ea_deadline_ms(deadline_ns) == ea_clock_at(
        500_000, clock.monotonic_ns(), deadline_ns
    )


async def test_without_the_feature_pings_give_no_deadline() -> None:
    clock = ManualClock()
    session = TerminalSession(host=None, settings=SessionSettings(), clock=clock, session_id="s")  # type: ignore[arg-type]
    session._on_message(m.Ping(t_ms=1_000))
    assert not session.tells_deadlines
    assert session.ea_deadline_ms(clock.monotonic_ns() + 10**9) == 0
