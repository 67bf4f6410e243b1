"""The health monitor: samples every terminal, writes ``bridge_health_metrics``, raises alerts.

One supervised task (``health-monitor``) wakes every ``health.interval_ms``, reads each
configured terminal's figures (its session, its :class:`~mtgate.health.meter.TerminalMeter`,
its account's last snapshot), evaluates the rules of :mod:`mtgate.health.alerts`, tells the
listeners and the log about raised and cleared alerts, and writes one row per terminal through
the journal. Nothing here is on the order path: the session only records into the meter.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

from mtgate import logs
from mtgate.domain.clock import Clock
from mtgate.health.alerts import AccountHealth, Alert, AlertBook, TerminalHealth, evaluate
from mtgate.health.settings import HealthSettings
from mtgate.sessions.registry import TerminalRegistry
from mtgate.sessions.session import AccountKey, SessionState
from mtgate.store.journal import Journal
from mtgate.store.values import HealthSample
from mtgate.sync.synchronizer import Synchronizer

log = logs.get("mtgate.health")

AlertListener = Callable[[Alert], None]
"""Called with every raised and cleared alert, in the monitor's task: it must not block (hand
slow work to a task or a queue). One that raises is logged and the others still hear."""

_STOP_TIMEOUT_S = 5.0


class HealthMonitor:
    """Samples the terminals of ``registry`` every ``settings.interval_ms``."""

    def __init__(
        self,
        registry: TerminalRegistry,
        journal: Journal,
        clock: Clock,
        settings: HealthSettings,
        *,
        sync: Synchronizer | None = None,
        listeners: list[AlertListener] | None = None,
    ) -> None:
        self.registry = registry
        self.journal = journal
        self.clock = clock
        self.settings = settings
        self.sync = sync
        self.listeners: list[AlertListener] = [] if listeners is None else listeners
        self.book = AlertBook()
        self.terminals: list[TerminalHealth] = []
        """The figures of every configured terminal at the latest sample."""
        self.accounts: list[AccountHealth] = []
        """The figures of every configured account at the latest sample."""
        self._started_ns = clock.monotonic_ns()
        self._down_since: dict[str, int] = {}
        self._unserved_since: dict[AccountKey, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._write_failing = False

    def start(self) -> None:
        self._started_ns = self.clock.monotonic_ns()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="health-monitor")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            async with asyncio.timeout(_STOP_TIMEOUT_S):
                await task

    def on_alert(self, listener: AlertListener) -> Callable[[], None]:
        """Call ``listener`` with every alert raised or cleared; returns the unsubscribe."""
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener)

    def active_alerts(self) -> list[Alert]:
        return self.book.active()

    async def _run(self) -> None:
        period_s = self.settings.interval_ms / 1000
        while True:
            await asyncio.sleep(period_s)
            try:
                await self.sample()
            except Exception as exc:  # a bug here must not end health monitoring
                log.error("health sample failed", error=repr(exc))

    async def sample(self) -> list[Alert]:
        """Measure, evaluate and report once; returns the alerts raised or cleared."""
        now_ns, now_ms = self.clock.monotonic_ns(), self.clock.now_ms()
        self.terminals = [self._terminal(tid, now_ns, now_ms) for tid in self.registry.grants()]
        self.accounts = [self._account(a, now_ns) for a in self._configured_accounts()]
        interval = None if self.sync is None else self.sync.settings.interval_ms
        edges = self.book.update(
            evaluate(self.terminals, self.accounts, self.settings, interval), now_ms
        )
        for alert in edges:
            self._tell(alert)
        await self._write(self.terminals, now_ns)
        return edges

    # --- measuring ---------------------------------------------------------------------------

    def _terminal(self, tid: str, now_ns: int, now_ms: int) -> TerminalHealth:
        session = self.registry.session(tid)
        meter = self.registry.meters[tid]
        ready = session is not None and session.state == SessionState.READY
        if ready:
            self._down_since.pop(tid, None)
            down_ms = 0.0
        else:
            down_ms = (now_ns - self._down_since.setdefault(tid, self._started_ns)) / 1e6
        account = meter.account
        if account is None:
            accounts = self.registry.grants()[tid].accounts
            account = next(iter(accounts)) if len(accounts) == 1 else None
        spread = meter.latencies.percentiles(now_ns, 50, 99)
        trades = meter.trade_latencies.percentiles(now_ns, 99)
        return TerminalHealth(
            terminal_id=tid,
            account=None if account is None else str(account),
            state="disconnected" if session is None else session.state.value,
            ready=ready,
            not_ready_for_ms=down_ms,
            heartbeat_rtt_ms=None if session is None else session.rtt_ms,
            last_frame_ms=None
            if session is None
            else now_ms - (now_ns - session.last_rx_ns) // 1_000_000,
            latency_p50_ms=None if spread is None else spread[0],
            latency_p99_ms=None if spread is None else spread[1],
            execution_latency_ms=None if trades is None else trades[0],
            disconnects=meter.closes.total,
            flaps=meter.closes.recent(now_ns),
            snapshot_age_ms=None if account is None else self._snapshot_age_ms(account, now_ns),
            recorded_at_ms=now_ms,
        )

    def _configured_accounts(self) -> list[AccountKey]:
        found = {a for g in self.registry.grants().values() for a in g.accounts}
        return sorted(found, key=str)

    def _account(self, account: AccountKey, now_ns: int) -> AccountHealth:
        ready = 0
        trades = refused = 0
        for tid, grant in self.registry.grants().items():
            if account not in grant.accounts:
                continue
            session = self.registry.ready_session(tid)
            if session is not None and session.identity and session.identity.account == account:
                ready += 1
            meter = self.registry.meters[tid]
            if meter.account == account:
                answered, rejected = meter.outcomes.counts(now_ns)
                trades, refused = trades + answered, refused + rejected
        if ready:
            self._unserved_since.pop(account, None)
            unserved_ms = 0.0
        else:
            since = self._unserved_since.setdefault(account, self._started_ns)
            unserved_ms = (now_ns - since) / 1e6
        return AccountHealth(
            account=str(account),
            ready_terminals=ready,
            no_ready_for_ms=unserved_ms,
            snapshot_age_ms=self._snapshot_age_ms(account, now_ns),
            trades=trades,
            refused=refused,
        )

    def _snapshot_age_ms(self, account: AccountKey, now_ns: int) -> float | None:
        view = None if self.sync is None else self.sync.views.get(account)
        if view is None or view.last_snapshot_ns is None:
            return None
        return max(0.0, (now_ns - view.last_snapshot_ns) / 1e6)

    # --- reporting ---------------------------------------------------------------------------

    def _tell(self, alert: Alert) -> None:
        (log.warning if alert.raised else log.info)(
            "alert raised" if alert.raised else "alert cleared",
            kind=alert.kind.value,
            terminal=alert.terminal_id,
            account=alert.account,
            value=alert.value,
            threshold=alert.threshold,
            detail=alert.message,
        )
        for listener in list(self.listeners):
            try:
                listener(alert)
            except Exception as exc:  # one listener's bug must not stop the others
                log.error("alert listener failed", kind=alert.kind.value, error=repr(exc))

    async def _write(self, terminals: Sequence[TerminalHealth], now_ns: int) -> None:
        """One row per terminal; a journal that refuses is logged once per outage (the next
        sample tries again) and never stops the monitor."""
        try:
            # Together: the SQLite journal writes the samples of one moment in one commit.
            await asyncio.gather(
                *(self.journal.record_health(self._row(t, now_ns)) for t in terminals)
            )
        except Exception as exc:
            if not self._write_failing:
                log.warning("health samples not written; will retry", error=repr(exc))
            self._write_failing = True
            return
        if self._write_failing:
            log.info("health samples written again")
        self._write_failing = False

    def _row(self, t: TerminalHealth, now_ns: int) -> HealthSample:
        key = None if t.account is None else AccountKey.parse(t.account)
        meter = self.registry.meters[t.terminal_id]
        answered, refused = meter.outcomes.counts(now_ns)
        return HealthSample(
            terminal_id=t.terminal_id,
            connection_status=t.state,
            recorded_at_ms=t.recorded_at_ms,
            account_login=None if key is None else key.login,
            account_server=None if key is None else key.server,
            last_heartbeat_ms=t.last_frame_ms,
            execution_latency_ms=t.execution_latency_ms,
            rejection_rate=None if answered == 0 else 100.0 * refused / answered,
            heartbeat_rtt_ms=t.heartbeat_rtt_ms,
            latency_p50_ms=t.latency_p50_ms,
            latency_p99_ms=t.latency_p99_ms,
            disconnects=t.disconnects,
            flaps=t.flaps,
            snapshot_age_ms=t.snapshot_age_ms,
            ready=t.ready,
        )
