"""The order book: the bridge's in-memory orders, the only writer of their state.

Every status change goes through :meth:`OrderBook.move`, which applies the state machine and
journals the change; every other change of a record goes through :meth:`OrderBook.note`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mtgate import logs
from mtgate.domain.clock import Clock
from mtgate.domain.codes import Classification
from mtgate.domain.orders import (
    ACTION_VALUES,
    TERMINAL,
    InvalidTransition,
    OrderAction,
    OrderStatus,
    Trigger,
    transition,
)
from mtgate.domain.records import OrderRecord
from mtgate.execution.requests import ORDER_TYPE_NAMES, InvalidRequest, OrderError, OrderResult
from mtgate.sessions.session import AccountKey, TerminalSession
from mtgate.store.journal import Journal
from mtgate.store.values import DuplicateOrderError

log = logs.get("mtgate.orders")

_ACTIVE = frozenset({OrderStatus.SUBMITTED, OrderStatus.UNKNOWN, OrderStatus.PLACED})
IN_DOUBT = frozenset({OrderStatus.SUBMITTED, OrderStatus.UNKNOWN})
"""Sent (or journalled to be sent) and not yet settled: the order may exist on the server."""


class OrderBook:
    def __init__(self, journal: Journal, clock: Clock) -> None:
        self.journal = journal
        self.clock = clock
        self._by_client: dict[str, OrderRecord] = {}
        self._by_ticket: dict[tuple[int, str, int], OrderRecord] = {}
        """By (login, server, ticket): a plain tuple, built without a Python call."""
        self.carrier: dict[str, TerminalSession] = {}
        """The session that carried an order's last trade request (absence proofs need it)."""
        self.deferred: dict[str, list[tuple[str, Any]]] = {}
        self.retrying: set[str] = set()
        """Orders between two attempts (mtgate.execution.retries): their sender decides what
        comes next, so nothing else looks them up, proves them absent or overrides them."""
        self.retries: dict[tuple[str, str], int] = {}
        """Attempts that followed a refused or absent one since start, by (account, strategy):
        bounded by the configured accounts and the strategies (``/metrics``)."""
        self.absence_waiters: dict[str, asyncio.Future[Any]] = {}
        """Orders whose sender retries them once proven absent (mtgate.execution.retries):
        resolution hands the proof (the session that made it) to the waiter instead of
        ending the order NOT_FOUND."""
        """Events about an order whose request is still awaiting its answer, replayed after it."""
        self._doubt: dict[tuple[int, str], dict[str, str]] = {}
        """Per account (login, server), the orders in doubt (SUBMITTED, UNKNOWN) and their
        carrying terminal."""
        self._settled: dict[tuple[int, str], asyncio.Event] = {}
        """Set when an order of the account leaves doubt (for failover waits)."""

    # --- lookups -----------------------------------------------------------------------------

    def get(self, client_order_id: str) -> OrderRecord | None:
        return self._by_client.get(client_order_id)

    def by_ticket(self, account: AccountKey, ticket: int) -> OrderRecord | None:
        return self._by_ticket.get((*account, ticket))

    async def load(
        self, client_order_id: str | None, account: AccountKey, ticket: int | None
    ) -> OrderRecord | None:
        """From memory, else from the journal (orders of an earlier run)."""
        record = None
        if client_order_id:
            record = self._by_client.get(client_order_id) or await self.journal.get(client_order_id)
        elif ticket:
            record = self._by_ticket.get((*account, ticket)) or await self.journal.find_by_ticket(
                account.login, account.server, ticket
            )
        if record is not None and (record.account_login, record.account_server) != (
            account.login,
            account.server,
        ):
            return None
        if record is not None and record.status in _ACTIVE:
            self.track(record)  # finished orders stay in the journal, not in memory
        return record

    def in_doubt(self, account: AccountKey, *, other_than: str) -> dict[str, str]:
        """Orders of ``account`` in doubt that a terminal other than ``other_than`` carried
        (client order id → terminal id)."""
        doubt = self._doubt.get((account.login, account.server))
        if not doubt:
            return {}
        return {cid: tid for cid, tid in doubt.items() if tid != other_than}

    def doubt_elsewhere(self, account: AccountKey, *, other_than: str) -> bool:
        """Whether :meth:`in_doubt` has any order (the order path's test: no dictionary built)."""
        doubt = self._doubt.get((account.login, account.server))
        if not doubt:
            return False
        return [*doubt.values()].count(other_than) != len(doubt)

    async def doubt_changed(self, account: AccountKey, timeout_s: float) -> None:
        """Wait until an order of ``account`` leaves doubt, or ``timeout_s``."""
        event = self._settled.setdefault((account.login, account.server), asyncio.Event())
        try:
            async with asyncio.timeout(timeout_s):
                await event.wait()
        except TimeoutError:
            return

    def _doubt_add(self, record: OrderRecord) -> None:
        key = (record.account_login, record.account_server)
        self._doubt.setdefault(key, {})[record.client_order_id] = record.terminal_id

    def _doubt_remove(self, record: OrderRecord) -> None:
        key = (record.account_login, record.account_server)
        doubt = self._doubt.get(key)
        if doubt is None or doubt.pop(record.client_order_id, None) is None:
            return
        if not doubt:
            del self._doubt[key]
        event = self._settled.pop(key, None)
        if event is not None:
            event.set()

    def open_orders(self) -> list[OrderRecord]:
        """Every order in memory not yet final (submitted, unknown, placed)."""
        return [r for r in self._by_client.values() if r.status in _ACTIVE]

    def active(self, account: AccountKey) -> list[OrderRecord]:
        return [
            r
            for r in self._by_client.values()
            if r.status in _ACTIVE
            and r.account_login == account.login
            and r.account_server == account.server
        ]

    # --- writes ------------------------------------------------------------------------------

    def track(self, record: OrderRecord) -> None:
        record = self._by_client.setdefault(record.client_order_id, record)
        if record.status in IN_DOUBT:
            self._doubt_add(record)
        if record.mt_order_id:
            self._by_ticket[record.account_login, record.account_server, record.mt_order_id] = (
                record
            )

    def busy(self, client_order_id: str) -> bool:
        """Whether the order's own sender settles it: its answer is awaited or being applied,
        or it is between two attempts."""
        return client_order_id in self.deferred or client_order_id in self.retrying

    def forget_finished(self, record: OrderRecord) -> None:
        """Drop a finished order from memory; the journal keeps it."""
        if record.status in _ACTIVE:
            return
        self._by_client.pop(record.client_order_id, None)
        if record.mt_order_id:
            self._by_ticket.pop(
                (record.account_login, record.account_server, record.mt_order_id), None
            )
        self.carrier.pop(record.client_order_id, None)

    async def submitted(self, record: OrderRecord, *, new_id: bool = False) -> None:
        """Journal a new order before it is sent; a reused client order id is refused."""
        record.status = transition(record.status, Trigger.SEND)
        record.updated_at_ms = self.clock.now_ms()
        try:
            await self.journal.record_submitted(record, new_id=new_id)
        except DuplicateOrderError:
            raise _reused(record) from None
        self.track(record)

    async def refused(self, record: OrderRecord) -> None:
        record.status = transition(record.status, Trigger.REFUSE)
        record.updated_at_ms = self.clock.now_ms()
        try:
            await self.journal.record_refused(record)
        except DuplicateOrderError:
            raise _reused(record) from None

    def can(self, record: OrderRecord, trigger: Trigger) -> bool:
        try:
            transition(record.status, trigger)
        except InvalidTransition:
            return False
        return True

    async def move(self, record: OrderRecord, trigger: Trigger, detail: str = "") -> None:
        """Apply ``trigger`` (raises InvalidTransition when the table forbids it) and journal it.

        No log line: the journal's ``order_events`` row, with ``detail``, is the record of
        every move (a debug line per move cost the order path more than its status table)."""
        previous = record.status
        record.status = transition(previous, trigger)
        now = self.clock.now_ms()
        record.updated_at_ms = now
        if previous in IN_DOUBT and record.status not in IN_DOUBT:
            self._doubt_remove(record)
        if record.status == OrderStatus.FILLED and record.filled_at_ms is None:
            record.filled_at_ms = now
        if record.mt_order_id:
            self._by_ticket[record.account_login, record.account_server, record.mt_order_id] = (
                record
            )
        if record.status in TERMINAL and record.client_order_id not in self.deferred:
            self.forget_finished(record)  # the journal keeps it; memory keeps what is open
        try:
            await self.journal.record_transition(record, previous, trigger, detail)
        except Exception:
            log.error(
                "journal write failed",
                client_order_id=record.client_order_id,
                status=record.status.value,
            )
            raise

    async def attempt(self, record: OrderRecord, detail: str) -> None:
        """Journal a new attempt of ``record`` (its fields already describe it), durably:
        UNKNOWN (proven absent) goes back to SUBMITTED on ``retry``; SUBMITTED (refused, to
        be tried again) stays. Raises what the journal raises; the caller restores the
        record's fields then (nothing was written)."""
        previous = record.status
        if previous not in IN_DOUBT:  # settled meanwhile: never send another attempt
            raise InvalidTransition(previous, Trigger.RETRY)
        trigger = Trigger.RETRY if previous is OrderStatus.UNKNOWN else None
        if trigger is not None:
            record.status = transition(previous, trigger)
        record.updated_at_ms = self.clock.now_ms()
        await self.journal.record_attempt(record, previous, trigger, detail)
        self._doubt_add(record)  # carried by the attempt's terminal now

    async def note(self, record: OrderRecord, detail: str) -> None:
        """Journal a change that is not a status change (a modify, a request, a finding)."""
        record.updated_at_ms = self.clock.now_ms()
        if record.mt_order_id:
            self._by_ticket[record.account_login, record.account_server, record.mt_order_id] = (
                record
            )
        await self.journal.record_event(record, detail)


def _reused(record: OrderRecord) -> InvalidRequest:
    return InvalidRequest(
        f"client_order_id {record.client_order_id!r} was already used", field="client_order_id"
    )


def result_of(record: OrderRecord, error: OrderError | None = None) -> OrderResult:
    """The API's view of a record; a rejected one says why, as it did when it was refused."""
    if error is None and record.status == OrderStatus.REJECTED:
        error = _journalled_rejection(record)
    return OrderResult(
        client_order_id=record.client_order_id,
        account=f"{record.account_login}@{record.account_server}",
        terminal_id=record.terminal_id,
        symbol=record.symbol,
        order_type=ORDER_TYPE_NAMES[record.order_type],
        status=record.status,
        volume=record.volume,
        ticket=record.mt_order_id,
        position_id=record.mt_position_id,
        deal=record.mt_deal_id,
        requested_price=record.requested_price,
        fill_price=record.fill_price,
        fill_volume=record.fill_volume,
        unfilled_volume=unfilled_volume(record),
        slippage_points=record.slippage_points,
        sl=record.stop_loss,
        tp=record.take_profit,
        execution_time_ms=record.execution_time_ms,
        action=ACTION_VALUES[record.action],
        position_ticket=record.position_ticket,
        remainder_ticket=record.remainder_ticket,
        error=error,
    )


def unfilled_volume(record: OrderRecord) -> float | None:
    """Lots of a filled opening order that the market did not fill (an IOC partial fill,
    MT5 10010): requested minus filled; None when it filled in full or is not filled."""
    filled = record.fill_volume
    if filled is None or filled >= record.volume or record.action != OrderAction.OPEN:
        return None
    rest = round(record.volume - filled, 8)
    return rest if rest > 1e-9 else None


def _journalled_rejection(record: OrderRecord) -> OrderError:
    """The error of a rejected order, rebuilt from its journalled fields: the platform's code
    for a terminal's rejection, the rule and field (``bridge:<rule>``, ``"<field>: ..."``)
    for a refusal of the bridge's own."""
    reason = record.rejection_reason or ""
    name = record.rejection_name or ""
    if record.rejection_code is None and name.startswith("bridge:"):
        field, _, message = reason.partition(": ")
        return OrderError(
            source="bridge",
            message=message or reason,
            field=field or None,
            rule=name.removeprefix("bridge:"),
            classification=Classification.REJECTED,
        )
    return OrderError(
        source="terminal",
        message=reason,
        code=record.rejection_code,
        name=record.rejection_name,
    )
