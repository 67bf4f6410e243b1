"""The account synchronizer (DESIGN §5): one snapshot subscription per account.

Every account is synced through one of its ready sessions (the first to become ready; another
one takes over when it closes). Its terminal pushes a ``snapshot`` every interval; each is
applied to the account's :class:`~mtgate.sync.view.AccountView` synchronously, in the frame's
turn of the event loop (no await), so snapshots are applied in order and a trade's answer
behind a snapshot waits for nothing but that. Writes are buffered in the
:class:`~mtgate.store.sync_store.SyncStore` and flushed by its own task.

Conflict rules (docs/architecture.md, "Synchronization"): the terminal decides what exists; the
journal holds intent (a journalled order the terminal contradicts is re-resolved through the
tracker, never overwritten here); the deal history explains closes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from mtgate import logs
from mtgate.domain.backoff import Backoff
from mtgate.domain.clock import Clock
from mtgate.domain.orders import client_id_from_comment
from mtgate.protocol import messages as m
from mtgate.sessions.errors import NotRoutable, SessionError
from mtgate.sessions.registry import TerminalRegistry
from mtgate.sessions.session import AccountKey, SessionState, TerminalSession
from mtgate.store.rows import datetime_to_ms
from mtgate.store.sync_store import (
    AccountState,
    PositionEvent,
    PositionState,
    SyncStore,
    transient,
)
from mtgate.sync.diff import Change, ChangeKind
from mtgate.sync.view import AccountView, Applied, apply_snapshot

log = logs.get("mtgate.sync")

SUBSCRIBE_RETRY_CAP_S = 10.0
"""Longest wait between two ``sync`` requests of a session whose subscription failed (or two
reads of an account's stored view), before the wait for the account's phase."""
RETRY_BASE_S = 0.1
RESTORE_ATTEMPTS = 8
"""Reads of an account's stored view that fail transiently (backoff of about 6 s in all, 13 s
at most) before the account is synced from an empty view rather than not at all."""


@dataclass(frozen=True, slots=True)
class SyncSettings:
    interval_ms: int = 1000
    margin_history_interval_ms: int = 10_000
    """At most one margin-level sample per account per this interval."""
    account_state_interval_ms: int = 5_000
    """The ``account_states`` row is rewritten at most this often (and when the account
    goes stale or fresh): every write of the SQLite file briefly holds the lock the journal's
    order intents need."""


@dataclass(frozen=True, slots=True)
class SyncEvent:
    """What the synchronizer publishes: a change of a position, a pending order or the
    account, or the account going stale / fresh (``change`` None)."""

    account: AccountKey
    kind: str
    at_ms: int
    change: Change | None = None
    position: PositionState | None = None
    detail: str = ""


Listener = Callable[[SyncEvent], None]
JournalHook = Callable[[AccountKey, str], None]
"""Called with a client order id the terminal reported: the tracker re-resolves it if the
journal holds it unfinished."""


class Synchronizer:
    """Keeps every account's view, store rows and listeners in step with its terminal."""

    def __init__(
        self,
        store: SyncStore,
        clock: Clock,
        settings: SyncSettings | None = None,
        *,
        journal_hook: JournalHook | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings or SyncSettings()
        self.registry: TerminalRegistry | None = None
        self.views: dict[AccountKey, AccountView] = {}
        self._owners: dict[AccountKey, TerminalSession] = {}
        self._listeners: list[Listener] = []
        self._journal_hook = journal_hook
        self._watchdog: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._phases: dict[AccountKey, int] = {}
        self._unrestored: set[AccountKey] = set()
        """Accounts whose view stands in for a stored one that could not be read yet."""
        self.snapshots = 0
        """Snapshots applied since start (a counter for the benchmark and metrics)."""

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def start(self, registry: TerminalRegistry) -> None:
        self.registry = registry
        self._watchdog = asyncio.get_running_loop().create_task(
            self._watch_staleness(), name="sync-staleness"
        )

    async def close(self) -> None:
        tasks = [*self._tasks, *([self._watchdog] if self._watchdog else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # --- subscriptions -----------------------------------------------------------------------

    async def attach(self, session: TerminalSession) -> None:
        """Subscribe ``session`` if its account has no synced session yet.

        The subscription starts at the account's phase within the interval, so that many
        accounts' snapshots arrive spread over the interval instead of together (after a
        bridge restart every terminal reconnects at once); the first snapshot comes at most
        one interval after the session became ready.

        Never raises for a failure of the store or of the ``sync`` request: both
        are retried with backoff while the session lives and still owns the account, and it
        returns once subscribed, or once the session closed or another one took over. An
        account is never left owned without an attempt in progress: that would keep every
        other session from syncing it, with no staleness to show it."""
        assert session.identity is not None
        account = session.identity.account
        if m.SYNC_FEATURE not in session.identity.features:
            log.warning("terminal does not offer sync", terminal=session.terminal_id)
            return
        if account in self._owners:
            return
        self._owners[account] = session
        subscribed = False
        try:
            if await self._restore(session, account):
                # The clock for staleness starts now.
                self.views[account].last_snapshot_ns = self.clock.monotonic_ns()
                subscribed = await self._subscribe(session, account)
        finally:
            if not subscribed and self._owners.get(account) is session:
                del self._owners[account]  # cancelled: the account is free for another session

    def _owns(self, session: TerminalSession, account: AccountKey) -> bool:
        return session.state != SessionState.CLOSED and self._owners.get(account) is session

    async def _restore(self, session: TerminalSession, account: AccountKey) -> bool:
        """Give the account a view: the one kept from an earlier session, else the one the
        store holds (the last run's open positions and history cursor, so that what changed
        while the bridge was away is diffed like any other change).

        While the store cannot be read, a view restored from nothing stands in, so staleness
        is watched meanwhile; a read that fails transiently is tried again, up to
        :data:`RESTORE_ATTEMPTS` times. After a failure retrying cannot cure (a stored row
        that cannot be read back), or the last attempt, the account is synced from that view:
        its positions come back as new, its history from the start (deduplicated), and a
        position closed while the bridge was away keeps its open row until the next start.
        False when the session no longer owns the account."""
        view = self.views.get(account)
        if view is not None and not (account in self._unrestored and view.snapshot is None):
            return True
        backoff = Backoff(base_s=RETRY_BASE_S, cap_s=SUBSCRIBE_RETRY_CAP_S)
        attempt = 0
        while True:
            attempt += 1
            try:
                restored = await self._read_view(account)
            except Exception as exc:
                if not self._owns(session, account):
                    return False
                self._stand_in(account)
                if not transient(exc) or attempt >= RESTORE_ATTEMPTS:
                    log.error(
                        "stored view of the account not read; syncing it from an empty view",
                        account=str(account),
                        attempt=attempt,
                        error=repr(exc),
                    )
                    return True
                log.warning(
                    "stored view of the account not read; will retry",
                    account=str(account),
                    attempt=attempt,
                    error=repr(exc),
                )
                await asyncio.sleep(backoff.next_delay_s())
                if not self._owns(session, account):
                    return False
                continue
            if not self._owns(session, account):
                return False
            self._install(account, restored)
            return True

    async def _read_view(self, account: AccountKey) -> AccountView:
        stored = await self.store.positions(account)
        state = await self.store.account_state(account)
        cursor = state["history_cursor"] if state else None
        return AccountView.restored(
            account, stored, None if cursor is None else datetime_to_ms(cursor)
        )

    def _stand_in(self, account: AccountKey) -> None:
        if account not in self.views:
            view = self.views[account] = AccountView.restored(account, (), None)
            view.last_snapshot_ns = self.clock.monotonic_ns()  # staleness is watched meanwhile
            self._unrestored.add(account)

    def _install(self, account: AccountKey, restored: AccountView) -> None:
        """The stored view replaces the stand-in unless a snapshot was applied to it already;
        a stand-in that went stale passes that on, so the first snapshot says fresh again."""
        current = self.views.get(account)
        if current is None or current.snapshot is None:
            if current is not None:
                restored.stale = current.stale
            self.views[account] = restored
        self._unrestored.discard(account)

    async def _subscribe(self, session: TerminalSession, account: AccountKey) -> bool:
        """Send ``sync`` at the account's phase until the terminal takes it: a refusal (an EA
        still loading its history) or no answer in time (a busy terminal) is retried with
        backoff, then the phase again, so retries stay spread too. False when the session
        closed or lost the account meanwhile."""
        backoff = Backoff(base_s=RETRY_BASE_S, cap_s=SUBSCRIBE_RETRY_CAP_S)
        while True:
            await asyncio.sleep(self.phase_delay_ms(account) / 1000)
            if not self._owns(session, account):
                return False  # closed (and perhaps taken over) while waiting for its phase
            view = self.views[account]
            request = m.Sync(
                id=0, interval_ms=self.settings.interval_ms, since_ms=view.history_cursor_ms or 0
            )
            try:
                await session.request(request, session.settings.read_timeout_s)
            except Exception as exc:
                if not self._owns(session, account):
                    return False
                # A SessionError is the terminal's doing; anything else is ours (a bug).
                (log.warning if isinstance(exc, SessionError) else log.error)(
                    "sync subscription failed; will retry",
                    terminal=session.terminal_id,
                    account=str(account),
                    attempt=backoff.attempt + 1,
                    error=repr(exc),
                )
                await asyncio.sleep(backoff.next_delay_s())
                continue
            view.last_snapshot_ns = self.clock.monotonic_ns()
            return True

    def phase_delay_ms(self, account: AccountKey) -> int:
        """Milliseconds until the account's phase: the golden-ratio sequence over the
        accounts in the order they were first synced spreads any number of them evenly."""
        index = self._phases.setdefault(account, len(self._phases))
        interval = self.settings.interval_ms
        phase = int((index * 0.6180339887498949) % 1.0 * interval)
        now = (self.clock.monotonic_ns() // 1_000_000) % interval
        return (phase - now) % interval

    def on_closed(self, session: TerminalSession) -> None:
        if session.identity is None:
            return
        account = session.identity.account
        if self._owners.get(account) is not session:
            return
        del self._owners[account]
        if self.registry is None:
            return
        try:
            other = self.registry.route(account)
        except NotRoutable:
            return  # the next session to become ready subscribes
        task = asyncio.get_running_loop().create_task(
            self._take_over(other), name=f"sync:{other.terminal_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _take_over(self, session: TerminalSession) -> None:
        try:
            await self.attach(session)
        except Exception as exc:  # attach retries what it can: this is a bug, not an outage
            log.error("sync take-over failed", terminal=session.terminal_id, error=repr(exc))

    # --- snapshots ---------------------------------------------------------------------------

    def on_snapshot(self, session: TerminalSession, snap: m.Snapshot) -> None:
        assert session.identity is not None
        account = session.identity.account
        if self._owners.get(account) is not session:
            return  # a standby's (or a replaced subscription's) snapshot
        try:
            self._apply(session, account, snap)
        except Exception as exc:  # a snapshot that cannot be applied must not end the session
            log.error(
                "snapshot not applied", account=str(account), error=repr(exc), time_ms=snap.time_ms
            )

    def _apply(self, session: TerminalSession, account: AccountKey, snap: m.Snapshot) -> None:
        view = self.views[account]
        now_ms = self.clock.now_ms()
        applied = apply_snapshot(view, snap, now_ms)
        self.snapshots += 1
        session.saw_account(snap.account)
        view.last_snapshot_ns = self.clock.monotonic_ns()
        fresh_again = view.stale
        if view.stale:
            view.stale = False
            log.info("account synced again", account=str(account))
            self._publish(SyncEvent(account, "account_fresh", now_ms))
        for item in applied:
            self._record(account, item, now_ms)
        self._store_history(account, snap)
        self._store_account(view, snap.account, now_ms, force=fresh_again)
        self._sample_margin(view, snap)

    def _record(self, account: AccountKey, item: Applied, now_ms: int) -> None:
        change = item.change
        if item.closed_part is not None:
            self.store.put_position(item.closed_part)
        if item.position is not None:
            self.store.put_position(item.position)
        if change.kind != ChangeKind.ACCOUNT_CHANGED:
            detail = _describe(change)
            self.store.put_event(
                PositionEvent(
                    account,
                    change.ticket,
                    change.kind.value,
                    change.client_order_id,
                    detail,
                    now_ms,
                )
            )
            if change.client_order_id is not None and self._journal_hook is not None:
                self._journal_hook(account, change.client_order_id)
        self._publish(
            SyncEvent(account, change.kind.value, now_ms, change, item.position, _describe(change))
        )

    def _store_history(self, account: AccountKey, snap: m.Snapshot) -> None:
        view = self.views[account]
        for deal in snap.deals:
            cid = client_id_from_comment(deal.comment)
            if cid is None:
                owner = view.positions.get(deal.position_id)
                cid = owner.client_order_id if owner else None
            self.store.put_deal(account, deal, cid)

    def _store_account(
        self, view: AccountView, report: m.AccountReport, now_ms: int, *, force: bool
    ) -> None:
        last = view.last_account_write_ms
        recent = last is not None and now_ms - last < self.settings.account_state_interval_ms
        if recent and not force:
            return
        view.last_account_write_ms = now_ms
        snapshot = view.snapshot
        self.store.put_account(
            AccountState(
                view.account,
                report,
                len(snapshot.positions) if snapshot else 0,
                len(snapshot.orders) if snapshot else 0,
                view.stale,
                view.history_cursor_ms,
                now_ms,
            )
        )

    def _sample_margin(self, view: AccountView, snap: m.Snapshot) -> None:
        every = self.settings.margin_history_interval_ms
        last = view.last_margin_sample_ms
        if last is None or snap.time_ms - last >= every:
            view.last_margin_sample_ms = snap.time_ms
            self.store.put_margin_sample(view.account, snap.account, snap.time_ms)

    # --- staleness ---------------------------------------------------------------------------

    async def _watch_staleness(self) -> None:
        period_s = self.settings.interval_ms / 4000
        while True:
            await asyncio.sleep(period_s)
            self.check_staleness()

    def check_staleness(self) -> list[AccountKey]:
        """Mark stale every synced account whose last snapshot is older than twice the
        interval; returns the accounts that just became stale."""
        now_ns = self.clock.monotonic_ns()
        limit_ns = 2 * self.settings.interval_ms * 1_000_000
        newly: list[AccountKey] = []
        for account, view in self.views.items():
            if view.stale or view.last_snapshot_ns is None:
                continue
            if now_ns - view.last_snapshot_ns > limit_ns:
                view.stale = True
                newly.append(account)
                if view.snapshot is not None:
                    self._store_account(
                        view, view.snapshot.account, self.clock.now_ms(), force=True
                    )
                age_ms = (now_ns - view.last_snapshot_ns) // 1_000_000
                log.warning("account stale", account=str(account), age_ms=age_ms)
                self._publish(
                    SyncEvent(
                        account,
                        "account_stale",
                        self.clock.now_ms(),
                        detail=f"no snapshot for {age_ms} ms",
                    )
                )
        return newly

    def is_stale(self, account: AccountKey) -> bool:
        view = self.views.get(account)
        return view is None or view.stale

    def _publish(self, event: SyncEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception as exc:  # one bad listener must not stop the others
                log.error("sync listener failed", kind=event.kind, error=repr(exc))


def _describe(change: Change) -> str:
    parts = [change.kind.value, f"#{change.ticket}"] if change.ticket else [change.kind.value]
    if change.symbol:
        parts.append(change.symbol)
    if change.volume_before or change.volume_after:
        parts.append(f"{change.volume_before:g}->{change.volume_after:g}")
    if change.reason is not None:
        parts.append(f"by {change.reason.value}")
    if change.new_ticket:
        parts.append(f"rest as #{change.new_ticket}")
    if change.fields:
        parts.append("fields=" + ",".join(change.fields))
    if change.external:
        parts.append("external")
    return " ".join(parts)
