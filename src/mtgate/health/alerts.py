"""Alert rules: pure functions of a terminal's or an account's figures, and the book that
turns their verdicts into raise and clear edges (one alert per episode, not one per sample).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mtgate.health.settings import HealthSettings


class AlertKind(enum.StrEnum):
    TERMINAL_DOWN = "terminal_down"
    FLAPPING = "flapping"
    EXECUTION_LATENCY = "execution_latency"
    ACCOUNT_STALE = "account_stale"
    REJECTION_RATE = "rejection_rate"
    NO_READY_TERMINAL = "no_ready_terminal"


@dataclass(frozen=True, slots=True)
class TerminalHealth:
    """One configured terminal's figures at one sample (a ``bridge_health_metrics`` row)."""

    terminal_id: str
    account: str | None
    """``login@server`` of its latest session (None before it ever authenticated)."""
    state: str
    """A session state (``ready``, ``syncing``, ...) or ``disconnected``."""
    ready: bool
    not_ready_for_ms: float
    """How long it has not been READY (0 when it is; from the monitor's start when it never
    was)."""
    heartbeat_rtt_ms: float | None
    last_frame_ms: int | None
    """Wall-clock time of the last frame received from it (None: no session)."""
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    """Send-to-answer time of all its requests over the latency window."""
    execution_latency_ms: float | None
    """p99 of its trade requests over the latency window (None: no trade answered in it)."""
    disconnects: int
    """Sessions of it that closed since the bridge started."""
    flaps: int
    """Of those, the ones within the flap window."""
    snapshot_age_ms: float | None
    """Age of its account's last snapshot (None: not synced)."""
    recorded_at_ms: int


@dataclass(frozen=True, slots=True)
class AccountHealth:
    """One configured account's figures at one sample."""

    account: str
    ready_terminals: int
    no_ready_for_ms: float
    """How long it has had no READY terminal (0 while it has one)."""
    snapshot_age_ms: float | None
    trades: int
    """Trade answers of its terminals within the rejection window..."""
    refused: int
    """...and how many of them refused the trade."""

    @property
    def rejection_rate_pct(self) -> float | None:
        return None if self.trades == 0 else 100.0 * self.refused / self.trades


@dataclass(frozen=True, slots=True)
class Check:
    """A rule's verdict on one terminal or account: whether its figure is over the limit."""

    kind: AlertKind
    terminal_id: str | None
    account: str | None
    value: float
    threshold: float
    breached: bool
    message: str

    @property
    def key(self) -> tuple[AlertKind, str | None, str | None]:
        return self.kind, self.terminal_id, self.account


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert raised (``raised`` True) or cleared, with the figure and the limit that
    decided it. ``value`` is None for an alert cleared because its figure is gone (the
    latency window emptied, the terminal is no longer measured)."""

    kind: AlertKind
    raised: bool
    terminal_id: str | None
    account: str | None
    value: float | None
    threshold: float
    message: str
    at_ms: int


# --- rules: one function per alert, of the figures and the settings ----------------------------


def terminal_down(t: TerminalHealth, s: HealthSettings) -> Check:
    breached = not t.ready and t.not_ready_for_ms >= s.down_after_ms
    return Check(
        AlertKind.TERMINAL_DOWN,
        t.terminal_id,
        t.account,
        t.not_ready_for_ms,
        s.down_after_ms,
        breached,
        f"terminal {t.terminal_id} is {t.state}, not ready for {t.not_ready_for_ms:.0f} ms"
        if breached
        else f"terminal {t.terminal_id} is ready",
    )


def flapping(t: TerminalHealth, s: HealthSettings) -> Check:
    return Check(
        AlertKind.FLAPPING,
        t.terminal_id,
        t.account,
        t.flaps,
        s.flap_disconnects,
        t.flaps >= s.flap_disconnects,
        f"terminal {t.terminal_id} disconnected {t.flaps} times in {s.flap_window_s:g} s",
    )


def execution_latency(t: TerminalHealth, s: HealthSettings) -> Check | None:
    value = t.execution_latency_ms
    if value is None:
        return None
    return Check(
        AlertKind.EXECUTION_LATENCY,
        t.terminal_id,
        t.account,
        value,
        s.max_execution_latency_ms,
        value > s.max_execution_latency_ms,
        f"terminal {t.terminal_id}: trade p99 {value:.1f} ms over {s.latency_window_s:g} s "
        f"(limit {s.max_execution_latency_ms:g} ms)",
    )


def account_stale(a: AccountHealth, s: HealthSettings, sync_interval_ms: int) -> Check | None:
    value = a.snapshot_age_ms
    if value is None:
        return None
    limit = s.stale_after_intervals * sync_interval_ms
    return Check(
        AlertKind.ACCOUNT_STALE,
        None,
        a.account,
        value,
        limit,
        value > limit,
        f"account {a.account}: no snapshot for {value:.0f} ms (limit {limit} ms)",
    )


def rejection_rate(a: AccountHealth, s: HealthSettings) -> Check | None:
    rate = a.rejection_rate_pct
    if rate is None:
        return None
    return Check(
        AlertKind.REJECTION_RATE,
        None,
        a.account,
        rate,
        s.max_rejection_rate_pct,
        a.trades >= s.rejection_min_trades and rate > s.max_rejection_rate_pct,
        f"account {a.account}: {a.refused} of {a.trades} trades refused "
        f"({rate:.1f} %) in {s.rejection_window_s:g} s",
    )


def no_ready_terminal(a: AccountHealth, s: HealthSettings) -> Check:
    breached = a.ready_terminals == 0 and a.no_ready_for_ms >= s.down_after_ms
    return Check(
        AlertKind.NO_READY_TERMINAL,
        None,
        a.account,
        a.no_ready_for_ms,
        s.down_after_ms,
        breached,
        f"account {a.account} has no ready terminal for {a.no_ready_for_ms:.0f} ms"
        if breached
        else f"account {a.account} has {a.ready_terminals} ready terminal(s)",
    )


TERMINAL_RULES: tuple[Callable[[TerminalHealth, HealthSettings], Check | None], ...] = (
    terminal_down,
    flapping,
    execution_latency,
)


def evaluate(
    terminals: Iterable[TerminalHealth],
    accounts: Iterable[AccountHealth],
    settings: HealthSettings,
    sync_interval_ms: int | None,
) -> list[Check]:
    """Every rule's verdict on every terminal and account (``sync_interval_ms`` None: no
    synchronization, so no staleness to judge)."""
    checks = [c for t in terminals for rule in TERMINAL_RULES if (c := rule(t, settings))]
    for a in accounts:
        found = [
            no_ready_terminal(a, settings),
            rejection_rate(a, settings),
            None if sync_interval_ms is None else account_stale(a, settings, sync_interval_ms),
        ]
        checks.extend(c for c in found if c is not None)
    return checks


class AlertBook:
    """The alerts active now; :meth:`update` returns only the edges."""

    def __init__(self) -> None:
        self._active: dict[tuple[AlertKind, str | None, str | None], Alert] = {}

    def update(self, checks: Iterable[Check], at_ms: int) -> list[Alert]:
        """Raise what is newly breached, clear what no longer is. An active alert whose rule
        had nothing to say this time (its figure is gone) is cleared too."""
        edges: list[Alert] = []
        seen = set()
        for check in checks:
            key = check.key
            seen.add(key)
            active = key in self._active
            if check.breached and not active:
                alert = _alert(check, True, check.value, check.message, at_ms)
                self._active[key] = alert
                edges.append(alert)
            elif not check.breached and active:
                del self._active[key]
                edges.append(_alert(check, False, check.value, check.message, at_ms))
        for key in [k for k in self._active if k not in seen]:
            gone = self._active.pop(key)
            edges.append(
                Alert(
                    gone.kind,
                    False,
                    gone.terminal_id,
                    gone.account,
                    None,
                    gone.threshold,
                    f"{gone.kind.value}: no longer measured",
                    at_ms,
                )
            )
        return edges

    def active(self) -> list[Alert]:
        return list(self._active.values())


def _alert(check: Check, raised: bool, value: float, message: str, at_ms: int) -> Alert:
    return Alert(
        check.kind, raised, check.terminal_id, check.account, value, check.threshold, message, at_ms
    )
