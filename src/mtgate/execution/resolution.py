"""Resolving orders whose outcome is unknown (DESIGN §4, docs/protocol.md §9).

An order in doubt is looked up on its account, by ticket once known, else by client order
id, and, when neither finds anything, in the history by magic + symbol + side + volume +
time (:mod:`mtgate.execution.matching` decides what the records prove). Finding it proves the
outcome. Not finding it proves absence only when the session that carried the request is gone
(the EA drops unstarted trades with a dead connection) and the lookup ran on a later session
of that terminal; otherwise the order stays UNKNOWN and is looked up again, with backoff.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from mtgate import logs
from mtgate.domain.backoff import Backoff
from mtgate.domain.enums import Platform
from mtgate.domain.orders import OrderAction, OrderStatus, Trigger
from mtgate.domain.records import OrderRecord
from mtgate.execution import matching
from mtgate.execution.book import IN_DOUBT as _IN_DOUBT
from mtgate.execution.matching import lookup_request
from mtgate.protocol import messages as m
from mtgate.sessions.errors import SessionError
from mtgate.sessions.registry import TerminalRegistry
from mtgate.sessions.session import AccountKey, SessionState, TerminalSession
from mtgate.store.values import JournalError

if TYPE_CHECKING:
    from mtgate.execution.tracker import Tracker

log = logs.get("mtgate.resolution")

_UNFINISHED = (OrderStatus.SUBMITTED, OrderStatus.UNKNOWN, OrderStatus.PLACED)


class Resolver:
    """Settles orders in doubt; applies what it finds through the tracker."""

    def __init__(self, tracker: Tracker, backoff_cap_s: float) -> None:
        self.t = tracker
        self.book = tracker.book
        self.registry: TerminalRegistry | None = None
        self.backoff_cap_s = backoff_cap_s
        self.resolving: set[str] = set()
        """Client order ids with a resolution running."""
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        """The running resolutions' tasks (once started), for :meth:`stop`."""

    @staticmethod
    def past_deadline(record: OrderRecord, session: TerminalSession, at_ms: int) -> bool:
        """Whether at ``at_ms`` the order's deadline and the longest trade call have passed,
        and ``session`` is of the order's account (any of its terminals sees the same trade
        server)."""
        if record.deadline_at_ms is None or session.identity is None:
            return False
        if session.identity.account != AccountKey(record.account_login, record.account_server):
            return False
        settle_ms = record.deadline_at_ms + session.settings.max_trade_call_s * 1000
        return at_ms >= settle_ms

    def resolve_later(self, record: OrderRecord) -> None:
        if record.client_order_id in self.book.retrying:
            return  # between two attempts: its sender decides (mtgate.execution.retries)
        if record.client_order_id not in self.resolving:
            self.resolving.add(record.client_order_id)
            self.t.spawn(self._resolve(record), f"resolve:{record.client_order_id}")

    async def stop(self, client_order_id: str) -> None:
        """End the resolution of ``client_order_id`` if one runs, and return once it has: a
        manual override then decides on the status the resolution left, and no lookup of
        the resolution lands after it. (One not started yet finds the override's final
        status and ends at once.)"""
        task = self._tasks.get(client_order_id)
        if task is None or task is asyncio.current_task():
            return
        task.cancel()
        await asyncio.wait([task])  # not ``await task``: its CancelledError is not the caller's

    async def _resolve(self, record: OrderRecord) -> None:
        backoff = Backoff(base_s=0.05, cap_s=self.backoff_cap_s)
        account = AccountKey(record.account_login, record.account_server)
        task = asyncio.current_task()
        if task is not None:
            self._tasks[record.client_order_id] = task
        try:
            while record.status in _UNFINISHED:
                session = await self._ready_session(account, record.terminal_id, backoff)
                asked_ms = self.book.clock.now_ms()
                try:
                    lookup = await session.request(
                        lookup_request(record), session.settings.read_timeout_s
                    )
                    settled = await self.apply_lookup(record, lookup, session, asked_ms)
                except SessionError as exc:
                    log.warning(
                        "resolution lookup failed",
                        client_order_id=record.client_order_id,
                        error=str(exc),
                    )
                except Exception as exc:  # a journal error or a bug: try again later
                    log.error(
                        "resolution failed; will try again",
                        client_order_id=record.client_order_id,
                        error=repr(exc),
                    )
                else:
                    if settled or record.status == OrderStatus.PLACED:
                        return
                await asyncio.sleep(self._next_delay_s(record, session, backoff))
        finally:
            self.resolving.discard(record.client_order_id)
            self._tasks.pop(record.client_order_id, None)
            waiter = self.book.absence_waiters.pop(record.client_order_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)  # settled otherwise (found, or a human decided)

    def _next_delay_s(
        self, record: OrderRecord, session: TerminalSession, backoff: Backoff
    ) -> float:
        """The backoff's delay, cut short to the moment the deadline proof becomes possible
        (a new order of the account may be waiting for this one, DESIGN §4)."""
        delay = backoff.next_delay_s()
        if record.deadline_at_ms is None:
            return delay
        settle_ms = record.deadline_at_ms + session.settings.max_trade_call_s * 1000
        until_s = (settle_ms - self.book.clock.now_ms()) / 1000
        return min(delay, until_s + 0.005) if until_s > 0 else delay

    async def _ready_session(
        self, account: AccountKey, terminal_id: str, backoff: Backoff
    ) -> TerminalSession:
        """The carrying terminal's session when it is ready (only it can prove absence),
        else any ready session of the account (which can still find the order)."""
        assert self.registry is not None
        while True:
            own = self.registry.ready_session(terminal_id)
            if own is not None:
                return own
            other = self.registry.lookup_session(account)
            if other is not None:
                return other
            await asyncio.sleep(backoff.next_delay_s())

    async def apply_lookup(
        self, record: OrderRecord, found: m.Lookup, session: TerminalSession, asked_ms: int
    ) -> bool:
        """Apply what an ``order_get`` found (and, when it found nothing, what the history
        fallback finds). True when the order's outcome is settled. ``asked_ms``: the bridge's
        time before the lookup was sent (what a time-based proof of absence is judged by)."""
        if record.action != OrderAction.OPEN:
            return await self._apply_close_lookup(record, found, session, asked_ms)
        if matching.empty(found) and record.status in _IN_DOUBT:
            ticket = await self._fallback(record, session)
            if ticket is None:
                return await self._prove_absent(record, session, "not on account", asked_ms)
            if ticket < 0:
                return False  # ambiguous: stays unknown (a human decides)
            record.mt_order_id = ticket
            await self.book.note(
                record, f"found as #{ticket} by the history fallback (magic, symbol, side, volume)"
            )
            found = await session.request(lookup_request(record), session.settings.read_timeout_s)
        await self._apply_open_lookup(record, found, session)
        return record.status not in _IN_DOUBT

    async def _apply_open_lookup(
        self, record: OrderRecord, found: m.Lookup, session: TerminalSession
    ) -> None:
        deal = matching.fill_deal(record, found.deals)
        if deal is not None:
            await self.t.apply_deal(record, deal, session)
        elif self.book.can(record, Trigger.FILL):
            position = next(
                (p for p in found.positions if record.mt_order_id in (None, p.identifier)), None
            )
            history = matching.fill_from_history(record, found)
            if position is not None:
                record.mt_order_id = record.mt_order_id or position.identifier
                self.t.fill_fields(
                    record, position.price_open, position.volume, position.identifier, 0, session
                )
                await self.book.move(
                    record, Trigger.FILL, f"found open position #{position.ticket}"
                )
            elif history is not None:
                price = history.price_open or history.price_current
                volume = history.volume_initial - history.volume_current
                self.t.fill_fields(record, price, volume, history.position_id, 0, session)
                await self.book.move(
                    record, Trigger.FILL, f"history order #{history.ticket} is filled"
                )
        for order in [*found.orders, *found.history_orders]:
            if record.mt_order_id in (None, order.ticket):
                await self.t.apply_order_report(record, order)

    async def _fallback(self, record: OrderRecord, session: TerminalSession) -> int | None:
        """docs/protocol.md §9 rule 3: the order's ticket found in the history, the open
        positions or the pending orders by magic + symbol + side + volume + time; None when
        nothing matches, -1 when several orders do (the outcome stays unknown)."""
        timeout = session.settings.read_timeout_s
        history: m.HistoryReport = await session.request(
            m.History(id=0, since_ms=matching.since_ms(record)), timeout
        )
        positions: list[m.PositionReport] = []
        orders: list[m.OrderReport] = []
        if record.action == OrderAction.OPEN:
            positions = await session.request(m.Positions(id=0, symbol=record.symbol), timeout)
            orders = await session.request(m.Orders(id=0, symbol=record.symbol), timeout)
        matched = matching.fallback_candidates(record, history, positions, orders)
        found = matching.Candidates(frozenset(matched - await self._claimed(record, matched)))
        rivals = self._rivals(record)
        if found.ambiguous or (found.tickets and rivals):
            # Several orders match, or another order of the bridge alike this one is in
            # doubt too and could be the one that filled: no guess; a later round (once the
            # others settle) or a human decides.
            log.warning(
                "order matches several in the history; left unknown",
                client_order_id=record.client_order_id,
                tickets=sorted(found.tickets),
                alike=rivals,
            )
            return -1
        return found.found

    def _rivals(self, record: OrderRecord) -> list[str]:
        """Other orders in doubt of the same account that the fallback could not tell from
        this one (same action, symbol, type, volume and magic)."""
        account = AccountKey(record.account_login, record.account_server)
        alike = (record.action, record.symbol, record.order_type, record.volume, record.magic)
        return [
            r.client_order_id
            for r in self.book.active(account)
            if r is not record
            and r.status in _IN_DOUBT
            and (r.action, r.symbol, r.order_type, r.volume, r.magic) == alike
        ]

    async def _claimed(self, record: OrderRecord, tickets: set[int]) -> set[int]:
        """The order tickets among ``tickets`` that other journalled orders hold."""
        account = AccountKey(record.account_login, record.account_server)
        claimed: set[int] = set()
        for ticket in tickets:
            owner = self.book.by_ticket(account, ticket)
            if owner is None:
                try:
                    owner = await self.book.journal.find_by_ticket(
                        account.login, account.server, ticket
                    )
                except JournalError:  # several orders hold it (an MT4 position and its close)
                    claimed.add(ticket)
                    continue
            if owner is not None and owner.client_order_id != record.client_order_id:
                claimed.add(ticket)
        return claimed

    async def _prove_absent(
        self, record: OrderRecord, session: TerminalSession, why: str, asked_ms: int
    ) -> bool:
        """Absence, if this lookup can prove it (see :meth:`_absence_provable`)."""
        if not self._absence_provable(record, session, asked_ms):
            return False
        if record.status == OrderStatus.SUBMITTED:
            await self.book.move(record, Trigger.LOSE, "its session ended before an answer")
        waiter = self.book.absence_waiters.pop(record.client_order_id, None)
        if waiter is not None and not waiter.done() and record.status == OrderStatus.UNKNOWN:
            # Its sender tries it again (mtgate.execution.retries): the proof is handed over
            # and the order stays UNKNOWN until the next attempt is journalled.
            await self.book.note(
                record, f"{why}: proven absent (looked up on {session.terminal_id})"
            )
            if not waiter.done():  # its sender may have stopped waiting during the note
                waiter.set_result(session)
                return True
        # Another lookup of the same order may have settled it while the journal wrote.
        if self.book.can(record, Trigger.PROVE_ABSENT):
            await self.book.move(
                record, Trigger.PROVE_ABSENT, f"{why} (looked up on {session.terminal_id})"
            )
        return True

    async def _apply_close_lookup(
        self, record: OrderRecord, found: m.Lookup, session: TerminalSession, asked_ms: int
    ) -> bool:
        """A close order: its exit deal proves it (see :func:`matching.close_evidence`); an
        exit for another reason means the position was gone before the close could act,
        which proves the close absent."""
        others = await self._closes_of_position(record)
        evidence = matching.close_evidence(record, found.deals, others)
        if evidence.ambiguous:
            await self.book.note(
                record,
                f"exit of #{record.position_ticket} fits another close in doubt too: left to "
                "be resolved later or by an operator",
            )
            return False
        if evidence.ours is None and not evidence.otherwise and record.status in _IN_DOUBT:
            ticket = await self._fallback(record, session)
            if ticket is not None and ticket > 0:
                record.mt_order_id = ticket
                await self.book.note(record, f"found as #{ticket} by the history fallback")
                found = await session.request(
                    lookup_request(record), session.settings.read_timeout_s
                )
                evidence = matching.close_evidence(record, found.deals, others)
            elif ticket is not None:
                return False  # ambiguous
        deal = evidence.ours
        if deal is not None and self.book.can(record, Trigger.FILL):
            record.mt_order_id = record.mt_order_id or deal.order
            self.t.fill_fields(
                record, deal.price, deal.volume, deal.position_id, deal.ticket, session
            )
            await self.book.move(record, Trigger.FILL, f"exit deal #{deal.ticket} at {deal.price}")
            return True
        if record.status not in _IN_DOUBT:
            return True
        if evidence.otherwise:
            if record.status == OrderStatus.SUBMITTED:
                await self.book.move(record, Trigger.LOSE, "its session ended before an answer")
            if self.book.can(record, Trigger.PROVE_ABSENT):
                await self.book.move(
                    record,
                    Trigger.PROVE_ABSENT,
                    f"the position was closed otherwise (looked up on {session.terminal_id})",
                )
            return True
        return await self._prove_absent(record, session, "no exit deal", asked_ms)

    async def _closes_of_position(self, record: OrderRecord) -> list[OrderRecord]:
        """The journal's orders that close the same position (MT4: several closes of one
        ticket, one of which at most can have executed; see matching.close_evidence)."""
        if record.platform != Platform.MT4 or record.position_ticket is None:
            return []
        return await self.book.journal.list_orders(
            account_login=record.account_login,
            account_server=record.account_server,
            position_ticket=record.position_ticket,
            limit=None,
        )

    def _absence_provable(
        self, record: OrderRecord, session: TerminalSession, asked_ms: int
    ) -> bool:
        """Whether not finding the order in a lookup sent at ``asked_ms`` proves it absent.

        By time (docs/protocol.md §4.4), on any terminal of the account: the carrier was told
        a deadline after which it never starts the trade, and a trade it started before then
        is over at the server ``max_trade_call_s`` later; a lookup sent after both finds the
        order if it ever executed. By session (§4.3 rule 4), the fast path: the terminal
        that carried the request, from a later session (the EA finishes the trade in progress
        before it reconnects and drops the ones it had not started). Short of either, another
        terminal (a standby) can find the order, but not finding it proves nothing: the
        carrier may still be executing it."""
        if self.past_deadline(record, session, asked_ms):
            return True
        if session.terminal_id != record.terminal_id:
            return False
        carrier = self.book.carrier.get(record.client_order_id)
        if carrier is None:
            return True  # journalled by an earlier run of the bridge: its sessions are gone
        return carrier is not session and carrier.state == SessionState.CLOSED
