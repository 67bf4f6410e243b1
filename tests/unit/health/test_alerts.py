"""Each alert rule's raise and clear, and the book that fires once per episode."""

from __future__ import annotations

import dataclasses

import pytest

from mtgate.health.alerts import (
    AccountHealth,
    AlertBook,
    AlertKind,
    TerminalHealth,
    account_stale,
    evaluate,
    execution_latency,
    flapping,
    no_ready_terminal,
    rejection_rate,
    terminal_down,
)
from mtgate.health.settings import BOUNDS, HealthSettings

K = AlertKind
SETTINGS = HealthSettings(
    down_after_ms=1000,
    flap_disconnects=3,
    max_execution_latency_ms=100.0,
    stale_after_intervals=3,
    max_rejection_rate_pct=20.0,
    rejection_min_trades=5,
)
SYNC_MS = 1000
TERMINAL = TerminalHealth(
    terminal_id="t1",
    account="1001@Sim",
    state="ready",
    ready=True,
    not_ready_for_ms=0.0,
    heartbeat_rtt_ms=0.4,
    last_frame_ms=1_000,
    latency_p50_ms=1.0,
    latency_p99_ms=5.0,
    execution_latency_ms=20.0,
    disconnects=0,
    flaps=0,
    snapshot_age_ms=200.0,
    recorded_at_ms=1_000,
)
ACCOUNT = AccountHealth(
    account="1001@Sim",
    ready_terminals=1,
    no_ready_for_ms=0.0,
    snapshot_age_ms=200.0,
    trades=0,
    refused=0,
)


def t(**changes: object) -> TerminalHealth:
    return dataclasses.replace(TERMINAL, **changes)  # type: ignore[arg-type]


def a(**changes: object) -> AccountHealth:
    return dataclasses.replace(ACCOUNT, **changes)  # type: ignore[arg-type]


def test_terminal_down_after_the_grace() -> None:
    assert not terminal_down(TERMINAL, SETTINGS).breached
    assert not terminal_down(
        t(state="syncing", ready=False, not_ready_for_ms=999), SETTINGS
    ).breached
    check = terminal_down(t(state="disconnected", ready=False, not_ready_for_ms=1000), SETTINGS)
    assert check.breached and (check.value, check.threshold) == (1000, 1000)
    assert "disconnected" in check.message


def test_flapping_at_the_threshold_of_disconnects() -> None:
    assert not flapping(t(flaps=2, disconnects=9), SETTINGS).breached
    check = flapping(t(flaps=3), SETTINGS)
    assert check.breached and (check.kind, check.value, check.threshold) == (K.FLAPPING, 3, 3)


def test_execution_latency_over_the_limit_and_none_without_trades() -> None:
    assert execution_latency(t(execution_latency_ms=None), SETTINGS) is None
    ok = execution_latency(t(execution_latency_ms=100.0), SETTINGS)
    assert ok is not None and not ok.breached  # at the limit is not over it
    slow = execution_latency(t(execution_latency_ms=150.5), SETTINGS)
    assert slow is not None and slow.breached and slow.value == 150.5


def test_account_stale_after_n_intervals() -> None:
    assert account_stale(a(snapshot_age_ms=None), SETTINGS, SYNC_MS) is None
    fresh = account_stale(a(snapshot_age_ms=3000), SETTINGS, SYNC_MS)
    assert fresh is not None and not fresh.breached
    stale = account_stale(a(snapshot_age_ms=3001), SETTINGS, SYNC_MS)
    assert stale is not None and stale.breached and stale.threshold == 3000


def test_rejection_rate_needs_enough_trades_and_a_rate_over_the_threshold() -> None:
    assert rejection_rate(a(trades=0), SETTINGS) is None
    few = rejection_rate(a(trades=4, refused=4), SETTINGS)
    assert few is not None and not few.breached and few.value == 100.0
    at_limit = rejection_rate(a(trades=10, refused=2), SETTINGS)
    assert at_limit is not None and not at_limit.breached
    over = rejection_rate(a(trades=10, refused=3), SETTINGS)
    assert over is not None and over.breached and over.value == pytest.approx(30.0)


def test_no_ready_terminal_after_the_grace() -> None:
    assert not no_ready_terminal(ACCOUNT, SETTINGS).breached
    assert not no_ready_terminal(a(ready_terminals=0, no_ready_for_ms=10), SETTINGS).breached
    check = no_ready_terminal(a(ready_terminals=0, no_ready_for_ms=5000), SETTINGS)
    assert check.breached and check.account == "1001@Sim" and check.terminal_id is None


def test_book_raises_once_per_episode_and_clears_once() -> None:
    book = AlertBook()
    down = t(state="disconnected", ready=False, not_ready_for_ms=2000)
    assert book.update([terminal_down(TERMINAL, SETTINGS)], 1) == []
    raised = book.update([terminal_down(down, SETTINGS)], 2)
    assert [(e.kind, e.raised, e.at_ms) for e in raised] == [(K.TERMINAL_DOWN, True, 2)]
    assert book.update([terminal_down(down, SETTINGS)], 3) == []  # still down: no new edge
    assert [e.kind for e in book.active()] == [K.TERMINAL_DOWN]
    cleared = book.update([terminal_down(TERMINAL, SETTINGS)], 4)
    assert [(e.kind, e.raised, e.value) for e in cleared] == [(K.TERMINAL_DOWN, False, 0.0)]
    assert book.active() == []
    again = book.update([terminal_down(down, SETTINGS)], 5)
    assert [e.raised for e in again] == [True]  # a new episode fires again


def test_book_keeps_subjects_apart_and_clears_what_is_no_longer_measured() -> None:
    book = AlertBook()
    slow = t(execution_latency_ms=500.0)
    other = t(terminal_id="t2", execution_latency_ms=500.0)
    checks = [execution_latency(x, SETTINGS) for x in (slow, other)]
    edges = book.update([c for c in checks if c], 1)
    assert sorted(e.terminal_id or "" for e in edges) == ["t1", "t2"]
    quiet = execution_latency(t(execution_latency_ms=None), SETTINGS)  # window emptied
    assert quiet is None
    still = execution_latency(other, SETTINGS)
    assert still is not None
    edges = book.update([still], 2)
    assert [(e.terminal_id, e.raised, e.value) for e in edges] == [("t1", False, None)]


def test_evaluate_runs_every_rule_and_skips_staleness_without_sync() -> None:
    kinds = {c.kind for c in evaluate([TERMINAL], [a(trades=1)], SETTINGS, SYNC_MS)}
    assert kinds == set(AlertKind)
    kinds = {c.kind for c in evaluate([TERMINAL], [a(trades=1)], SETTINGS, None)}
    assert kinds == set(AlertKind) - {K.ACCOUNT_STALE}


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_settings_refuse_values_out_of_bounds(name: str) -> None:
    low, high = BOUNDS[name]
    kind = type(getattr(HealthSettings(), name))
    HealthSettings(**{name: kind(low)})
    HealthSettings(**{name: kind(high)})
    with pytest.raises(ValueError, match=f"health.{name}"):
        HealthSettings(**{name: kind(low) - 1})
    with pytest.raises(ValueError, match=f"health.{name}"):
        HealthSettings(**{name: kind(high) + 1})
