"""Choosing an account's terminal: priority, failover, failback with hysteresis, drain."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mtgate.domain.clock import ManualClock
from mtgate.sessions.errors import NotRoutable
from mtgate.sessions.routing import Router, RoutingPolicy, Switch
from mtgate.sessions.session import AccountKey, SessionState

ACCOUNT = AccountKey(4001, "Sim-MT5")
S = 1_000_000_000


@dataclass
class FakeSession:
    terminal_id: str
    state: SessionState = SessionState.READY
    ready_since_ns: int = 0


def _router(clock: ManualClock, switches: list[Switch], hold_s: float = 30.0) -> Router:
    return Router(
        {"primary": 1, "standby": 2, "spare": 3},
        RoutingPolicy(failback_after_s=hold_s),
        clock,
        switches.append,
    )


def _at(clock: ManualClock, seconds: float) -> None:
    clock.advance(int(seconds * 1000))


def test_the_best_priority_wins_before_any_failover() -> None:
    clock, switches = ManualClock(), []  # type: list[Switch]
    router = _router(clock, switches)
    standby = FakeSession("standby", ready_since_ns=0)
    assert router.choose(ACCOUNT, [standby]) is standby
    primary = FakeSession("primary", ready_since_ns=1)
    # The primary came up a moment later, no failover has happened: it takes over at once.
    assert router.choose(ACCOUNT, [standby, primary]) is primary
    assert [(s.to_terminal, s.reason) for s in switches] == [
        ("standby", "initial"),
        ("primary", "priority"),
    ]


def test_failover_then_failback_only_after_the_hold() -> None:
    clock, switches = ManualClock(), []  # type: list[Switch]
    router = _router(clock, switches, hold_s=30.0)
    primary, standby = FakeSession("primary"), FakeSession("standby")
    assert router.choose(ACCOUNT, [primary, standby]) is primary
    primary.state = SessionState.CLOSED
    assert router.choose(ACCOUNT, [primary, standby]) is standby
    assert switches[-1].reason == "failover"
    back = FakeSession("primary", ready_since_ns=clock.monotonic_ns())  # its new session
    _at(clock, 29.9)
    assert router.choose(ACCOUNT, [back, standby]) is standby  # not held long enough
    _at(clock, 0.1)
    assert router.choose(ACCOUNT, [back, standby]) is back
    assert switches[-1].reason == "failback"
    assert router.switches == 2


def test_a_flapping_primary_never_gets_the_orders_back() -> None:
    clock, switches = ManualClock(), []  # type: list[Switch]
    router = _router(clock, switches, hold_s=30.0)
    standby = FakeSession("standby")
    primary = FakeSession("primary")
    router.choose(ACCOUNT, [primary, standby])
    for _ in range(10):  # up 20 s, down, up again...
        primary.state = SessionState.CLOSED
        assert router.choose(ACCOUNT, [primary, standby]) is standby
        primary = FakeSession("primary", ready_since_ns=clock.monotonic_ns())
        _at(clock, 20)
        assert router.choose(ACCOUNT, [primary, standby]) is standby
    assert router.switches == 1  # the one failover, no failback


def test_drain_moves_new_orders_and_enable_brings_them_back_at_once() -> None:
    clock, switches = ManualClock(), []  # type: list[Switch]
    router = _router(clock, switches)
    primary, standby = FakeSession("primary"), FakeSession("standby")
    assert router.choose(ACCOUNT, [primary, standby]) is primary
    router.drained.add("primary")
    assert router.choose(ACCOUNT, [primary, standby]) is standby
    assert switches[-1].reason == "drained"
    # A drained terminal can still be asked about orders in doubt.
    assert router.lookup_session(ACCOUNT, [primary, standby]) is standby
    router.drained.discard("primary")
    assert router.choose(ACCOUNT, [primary, standby]) is primary  # no hold: it never failed


def test_nothing_usable_names_every_terminal_and_why() -> None:
    router = _router(ManualClock(), [])
    primary = FakeSession("primary")
    syncing = FakeSession("standby", state=SessionState.SYNCING)
    router.drained.add("primary")
    with pytest.raises(NotRoutable) as raised:
        router.choose(ACCOUNT, [primary, syncing])
    assert "primary: drained" in str(raised.value)
    assert "standby: syncing" in str(raised.value)
    with pytest.raises(NotRoutable, match="no terminal is connected"):
        router.choose(ACCOUNT, [])


def test_a_raising_observer_does_not_stop_routing() -> None:
    def boom(_: Switch) -> None:
        raise RuntimeError("observer bug")

    router = Router({}, RoutingPolicy(), ManualClock(), boom)
    only = FakeSession("t1")
    assert router.choose(ACCOUNT, [only]) is only
    assert router.active(ACCOUNT) == "t1"
