"""The monitor's sampling without sockets: a registry with no sessions, a manual clock and a
hand-written journal that can refuse."""

from __future__ import annotations

from typing import Any, cast

from mtgate.domain.clock import ManualClock
from mtgate.health.alerts import Alert, AlertKind
from mtgate.health.monitor import HealthMonitor
from mtgate.health.settings import HealthSettings
from mtgate.protocol.auth import Secret
from mtgate.sessions.registry import TerminalRegistry
from mtgate.sessions.session import grants_for
from mtgate.store.journal import Journal
from mtgate.store.values import HealthSample

K = AlertKind


class FakeJournal:
    """Only what the monitor uses of a :class:`Journal`: ``record_health``."""

    def __init__(self) -> None:
        self.rows: list[HealthSample] = []
        self.refuse = False

    async def record_health(self, sample: HealthSample) -> None:
        if self.refuse:
            raise OSError("disk full")
        self.rows.append(sample)


class NoObserver:
    async def onboard(self, session: Any) -> None: ...
    def on_event(self, session: Any, name: str, payload: Any) -> None: ...
    def on_gap(self, session: Any) -> None: ...
    def on_late_response(self, session: Any, op: Any, response: Any) -> None: ...
    def on_closed(self, session: Any, reason: str) -> None: ...


def _monitor(settings: HealthSettings) -> tuple[HealthMonitor, FakeJournal, ManualClock]:
    clock = ManualClock()
    key = Secret(b"k" * 32)
    grants = grants_for([("t1", key, 1001, "S"), ("t2", key, 1001, "S")])
    registry = TerminalRegistry(grants, NoObserver(), clock=clock, health=settings)
    journal = FakeJournal()
    return HealthMonitor(registry, cast(Journal, journal), clock, settings), journal, clock


async def test_terminals_that_never_connected_are_down_after_the_grace_once() -> None:
    monitor, journal, clock = _monitor(HealthSettings(down_after_ms=1000))
    assert await monitor.sample() == []
    clock.advance(1000)
    raised = await monitor.sample()
    assert sorted((a.kind, a.terminal_id or "", a.account) for a in raised) == [
        (K.NO_READY_TERMINAL, "", "1001@S"),
        (K.TERMINAL_DOWN, "t1", "1001@S"),
        (K.TERMINAL_DOWN, "t2", "1001@S"),
    ]
    clock.advance(1000)
    assert await monitor.sample() == []  # still down: no second alert
    assert len(monitor.active_alerts()) == 3
    row = journal.rows[-1]
    assert (row.connection_status, row.ready, row.disconnects, row.flaps) == (
        "disconnected",
        False,
        0,
        0,
    )
    assert (row.account_login, row.account_server, row.heartbeat_rtt_ms) == (1001, "S", None)
    assert len(journal.rows) == 3 * 2  # one row per terminal per sample


async def test_a_refusing_journal_and_a_failing_listener_stop_nothing() -> None:
    monitor, journal, clock = _monitor(HealthSettings(down_after_ms=0))
    heard: list[Alert] = []

    def broken(alert: Alert) -> None:
        raise RuntimeError("a listener with a bug")

    monitor.on_alert(broken)
    unsubscribe = monitor.on_alert(heard.append)
    journal.refuse = True
    raised = await monitor.sample()
    assert raised and heard == raised and journal.rows == []
    journal.refuse = False
    clock.advance(100)
    await monitor.sample()
    assert len(journal.rows) == 2  # the next sample writes again
    unsubscribe()
    monitor.registry.meters["t1"].disconnected(clock.monotonic_ns())
    await monitor.sample()
    assert monitor.terminals[0].disconnects == 1 and len(heard) == len(raised)
