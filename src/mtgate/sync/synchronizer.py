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
from mtgate.store.sync_store import AccountState, PositionEvent, PositionState, SyncStore
from mtgate.sync.diff import Change, ChangeKind
from mtgate.sync.view import AccountView, Applied, apply_snapshot

log = logs.get("mtgate.sync")

SUBSCRIBE_RETRY_CAP_S = 10.0
"""Longest wait between two ``sync`` requests of a session whose subscription failed."""


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

        Never raises for a failure of the store or of the ``sync`` request: the view is made
        even when the store cannot be read (staleness still works), and a refused or
        unanswered ``sync`` is sent again, with backoff, while the session lives and still
        owns the account; an account is never left owned without a subscription."""
        assert session.identity is not None
        account = session.identity.account
        if m.SYNC_FEATURE not in session.identity.features:
            log.warning("terminal does not offer sync", terminal=session.terminal_id)
            return
        if account in self._owners:
            return
        self._owners[account] = session
        view = self.views.get(account)
        if view is None:
            view = self.views[account] = await self._restored_view(account)
        view.last_snapshot_ns = self.clock.monotonic_ns()  # the clock for staleness starts now
        await asyncio.sleep(self.phase_delay_ms(account) / 1000)
        backoff = Backoff(base_s=0.2, cap_s=SUBSCRIBE_RETRY_CAP_S)
        while self._owners.get(account) is session and session.state != SessionState.CLOSED:
            try:
                await session.request(
                    m.Sync(
                        id=0,
                        interval_ms=self.settings.interval_ms,
                        since_ms=view.history_cursor_ms or 0,
                    ),
                    session.settings.read_timeout_s,
                )
            except SessionError as exc:
                log.warning(
                    "sync subscription failed; will retry",
                    terminal=session.terminal_id,
                    error=str(exc),
                )
                await asyncio.sleep(backoff.next_delay_s())
                continue
            view.last_snapshot_ns = self.clock.monotonic_ns()
            return
        if self._owners.get(account) is session:  # it closed: the next ready session subscribes
            del self._owners[account]

    async def _restored_view(self, account: AccountKey) -> AccountView:
        """The account's view as the store last saw it; an empty one if it cannot be read
        (the first snapshot then reports every position as new, and the history is read
        again from the start, deduplicated by ticket)."""
        try:
            stored = await self.store.positions(account)
            state = await self.store.account_state(account)
        except Exception as exc:
            log.error(
                "stored positions unreadable; syncing the account from scratch",
                account=str(account),
                error=repr(exc),
            )
            return AccountView.restored(account, [], None)
        cursor = state["history_cursor"] if state else None
        return AccountView.restored(
            account, stored, None if cursor is None else datetime_to_ms(cursor)
        )

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
        await self.attach(session)

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
        session.view.account = snap.account
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
