"""The SQLAlchemy journal, for PostgreSQL (psycopg 3).

Every call runs in one dedicated worker thread: the event loop never waits on the network, and
a single thread keeps the writes in the order they were called (a pool of threads could commit
a fill before the submit it follows). A caller cancelled while its write is queued or in the
worker does not stop that write: it lands or fails as a whole (one transaction), as on the
SQLite journal, and a read called after the cancellation runs after it, so it sees the write.
The caller, not having seen it return, must not send; a failure nobody awaits any more is
logged.

It also runs on any SQLAlchemy URL the models support, which the tests use to prove that this
journal and the SQLite fast path read each other's rows.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import URL, Connection, Engine, Insert, Select, make_url
from sqlalchemy.exc import DataError, IntegrityError

from mtgate import logs
from mtgate.domain.orders import OrderStatus, Trigger
from mtgate.domain.records import OrderRecord
from mtgate.events.model import Entry, OrderOutbox, entries_of
from mtgate.store import outbox, quarantine, queries, rejection_sql, rejections, rows
from mtgate.store.migrate import make_engine, migrate
from mtgate.store.models import execution_orders
from mtgate.store.values import (
    DuplicateOrderError,
    HealthSample,
    JournalError,
    JournalNotOpenError,
    OrderEvent,
    QuarantinedRecord,
    StaleOrderError,
    UnreadableOrderError,
    check_transition,
)

T = TypeVar("T")

_ts = rows.ms_to_datetime
log = logs.get("mtgate.journal")

_UNREADABLE = (ValueError, TypeError, KeyError, OverflowError, DataError)
"""What reading a row this code cannot represent raises: a driver that cannot load a value
(psycopg: a timestamp after year 9999), SQLAlchemy's SQLite type processors, or the mapping."""


class EngineReads:
    """The reads of the journals on a SQLAlchemy engine (:class:`SqlJournal`, and the
    PostgreSQL journal): each a function of the engine that :meth:`_read` runs after every
    write called before it."""

    unreadable_rows: int

    async def _read(self, fn: Callable[[Engine], T]) -> T:
        raise NotImplementedError

    async def get(self, client_order_id: str) -> OrderRecord | None:
        """The order, or None. Raises UnreadableOrderError if its row cannot be read."""
        params = {"client_order_id": client_order_id}
        found = await self._read(
            functools.partial(select_orders, queries.SELECT_BY_CLIENT_ID, params)
        )
        if found.unreadable:
            raise found.unreadable[0]
        return found.records[0] if found.records else None

    async def find_by_ticket(
        self, account_login: int, account_server: str, ticket: int
    ) -> OrderRecord | None:
        params = {
            "account_login": account_login,
            "account_server": account_server,
            "ticket": ticket,
        }
        found = await self._read(functools.partial(select_orders, queries.SELECT_BY_TICKET, params))
        count = len(found.records) + len(found.unreadable)
        if count > 1:
            raise JournalError(
                f"ticket {ticket} of {account_login}@{account_server} belongs to "
                f"{count} journalled orders"
            )
        if found.unreadable:
            raise found.unreadable[0]
        return found.records[0] if found.records else None

    async def list_orders(
        self,
        *,
        account_login: int | None = None,
        account_server: str | None = None,
        statuses: Collection[OrderStatus] | None = None,
        limit: int | None = 1000,
        position_ticket: int | None = None,
    ) -> list[OrderRecord]:
        """Newest first, at most ``limit`` (None: all); unreadable rows left out and counted."""
        queries.check_limit(limit)
        stmt = queries.list_orders(account_login, account_server, statuses, limit, position_ticket)
        found = await self._read(functools.partial(select_orders, stmt, {}))
        for exc in found.unreadable:
            self.unreadable_rows += 1
            log.error(
                "a journalled order cannot be read and is left out of the list; a human must "
                "repair its row",
                client_order_id=exc.client_order_id,
                error=exc.reason,
            )
        return found.records

    async def events(self, client_order_id: str) -> list[OrderEvent]:
        return await self._read(functools.partial(select_events, client_order_id))

    async def quarantined(self) -> list[QuarantinedRecord]:
        """What a journal on this database could not write and kept for a human, oldest
        first."""
        return await self._read(select_quarantined)


class SqlJournal(EngineReads):
    """Journal on a SQLAlchemy engine, driven from the event loop through one worker thread."""

    def __init__(self, url: str | URL) -> None:
        self.url = make_url(url)
        self._engine: Engine | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.quarantine_count = 0
        """Always 0: this journal's writes are synchronous with their callers, who see every
        error, so nothing is ever quarantined here (the table is read all the same)."""
        self.unreadable_rows = 0
        """Rows ``list_orders`` left out because they cannot be read (each logged at ERROR)."""
        self.outbox: OrderOutbox | None = None
        """Makes the outbox entry of each order change (docs/events.md); None: no events."""
        self.dropped_events = 0
        """Outbox entries of no order that could not be written (each logged at ERROR)."""

    async def open(self) -> None:
        """Migrate and connect, in the worker thread."""
        if self._executor is not None:
            raise JournalError(f"journal {self.url!r} is already open")
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mtgate-journal")
        try:
            loop = asyncio.get_running_loop()
            self._engine = await loop.run_in_executor(executor, self._connect)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        self._executor = executor

    def _connect(self) -> Engine:
        migrate(self.url)
        # pre_ping: a server restart costs one reconnect, not a failed journal write.
        engine = make_engine(self.url, pool_pre_ping=True)
        try:
            with engine.connect():
                pass  # a pooled connection ready for the first order
        except BaseException:
            engine.dispose()
            raise
        return engine

    async def close(self) -> None:
        executor, engine = self._executor, self._engine
        self._executor = self._engine = None
        if executor is None:
            return
        try:
            if engine is not None:
                await asyncio.get_running_loop().run_in_executor(executor, engine.dispose)
        finally:
            executor.shutdown(wait=True)  # idle by now: dispose ran after every queued call

    async def _call(self, fn: Callable[[Engine], T]) -> T:
        executor, engine = self._executor, self._engine
        if executor is None or engine is None:
            raise JournalNotOpenError()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, fn, engine)

    async def _read(self, fn: Callable[[Engine], T]) -> T:
        return await self._call(fn)

    async def _write(self, fn: Callable[[Engine], None], client_order_id: str) -> None:
        """Run a write in the worker, whatever happens to the caller.

        Shielded: cancelling the caller would otherwise cancel the executor's future, and a
        write still queued behind another would then never run, while the bridge's memory
        already holds the change (a fill journalled in memory only)."""
        executor, engine = self._executor, self._engine
        if executor is None or engine is None:
            raise JournalNotOpenError()
        written = asyncio.get_running_loop().run_in_executor(executor, fn, engine)
        try:
            await asyncio.shield(written)
        except asyncio.CancelledError:
            written.add_done_callback(functools.partial(_log_orphan, client_order_id))
            raise

    async def record_submitted(self, order: OrderRecord, *, new_id: bool = False) -> None:
        check_transition(OrderStatus.NEW, Trigger.SEND, order.status)
        made = entries_of(self.outbox, order, OrderStatus.NEW, Trigger.SEND, "")
        write = functools.partial(_insert, order, Trigger.SEND, "", made)
        await self._write(write, order.client_order_id)

    async def record_refused(self, order: OrderRecord) -> None:
        check_transition(OrderStatus.NEW, Trigger.REFUSE, order.status)
        detail = order.rejection_reason or ""
        made = entries_of(self.outbox, order, OrderStatus.NEW, Trigger.REFUSE, detail)
        write = functools.partial(_insert, order, Trigger.REFUSE, detail, made)
        await self._write(write, order.client_order_id)

    async def record_transition(
        self, order: OrderRecord, previous: OrderStatus, trigger: Trigger, detail: str = ""
    ) -> None:
        check_transition(previous, trigger, order.status)
        made = entries_of(self.outbox, order, previous, trigger, detail)
        write = functools.partial(_update, order, previous, trigger, detail, made)
        await self._write(write, order.client_order_id)

    async def record_event(self, order: OrderRecord, detail: str) -> None:
        made = entries_of(self.outbox, order, order.status, None, detail)
        write = functools.partial(_update, order, order.status, None, detail, made)
        await self._write(write, order.client_order_id)

    async def record_attempt(
        self, order: OrderRecord, previous: OrderStatus, trigger: Trigger | None, detail: str
    ) -> None:
        if trigger is not None:
            check_transition(previous, trigger, order.status)
        made = entries_of(self.outbox, order, previous, trigger, detail)
        write = functools.partial(_update, order, previous, trigger, detail, made, attempt=True)
        await self._write(write, order.client_order_id)

    def record_outbox(self, entry: Entry) -> None:
        """Write an event of no order in the worker, after the writes called before it;
        from the event loop, no await. A failure is logged and counted, not raised."""
        executor, engine = self._executor, self._engine
        if executor is None or engine is None:
            raise JournalNotOpenError()
        done = asyncio.get_running_loop().run_in_executor(
            executor, functools.partial(_emit, [entry]), engine
        )
        done.add_done_callback(functools.partial(self._emitted, entry))

    def _emitted(self, entry: Entry, done: asyncio.Future[None]) -> None:
        if done.cancelled() or done.exception() is None:
            return
        self.dropped_events += 1
        log.error(
            "an event of no order could not be written; it is dropped",
            type=entry.type,
            event_id=entry.event_id,
            error=quarantine.error_text(done.exception() or Exception()),
        )

    async def rejections(self, query: rejections.RejectionQuery) -> rejections.RejectionReport:
        """Rejection analytics, in a thread of its own with a pooled connection: not in the
        journal's worker, where a long aggregate would hold up every order write queued
        behind it. Every write awaited before the call has committed, so it is seen."""
        engine = self._engine
        if self._executor is None or engine is None:
            raise JournalNotOpenError()
        return await asyncio.to_thread(rejection_sql.read, engine, query)

    async def record_health(self, sample: HealthSample) -> None:
        row = rows.health_row(sample, uuid.uuid4(), _ts)
        params = dict(zip(rows.HEALTH_COLUMNS, row, strict=True))
        await self._call(functools.partial(_execute, queries.INSERT_HEALTH, params))


# Below: the worker thread's side. Plain functions of the engine, so nothing here can touch the
# journal's state from the wrong thread.


def _log_orphan(client_order_id: str, written: asyncio.Future[None]) -> None:
    """A write whose caller was cancelled failed: nobody else will hear of it."""
    error = None if written.cancelled() else written.exception()
    if error is None:
        return
    log.error(
        "a journal write whose caller was cancelled failed; a human must check this order",
        client_order_id=client_order_id,
        error=quarantine.error_text(error),
    )


def _emit(entries: list[Entry], engine: Engine) -> None:
    with engine.begin() as conn:
        outbox.insert_rows(conn, entries)


def _insert(
    order: OrderRecord, trigger: Trigger, detail: str, made: list[Entry], engine: Engine
) -> None:
    stored_id = rows.canonical_uuid(order.order_id)
    try:
        values = rows.order_row(order, stored_id, _ts)
    except rows.TIME_ERRORS:
        rows.check_times(order, _ts)  # a clear error naming the time, before any write
        raise
    row = dict(zip(rows.ORDER_COLUMNS, values, strict=True))
    events = [
        rows.created_row(order, stored_id, row["placed_at"]),
        rows.event_row(order, stored_id, OrderStatus.NEW, trigger, detail, row["updated_at"]),
    ]
    try:
        with engine.begin() as conn:
            conn.execute(queries.INSERT_ORDER, row)
            conn.execute(queries.INSERT_EVENT, [_event(values) for values in events])
            outbox.insert_rows(conn, made)
    except IntegrityError as exc:
        params = {"client_order_id": order.client_order_id, "order_id": stored_id}
        with engine.connect() as conn:
            if conn.execute(queries.SELECT_EXISTING, params).first() is not None:
                raise DuplicateOrderError(order.client_order_id, order.order_id) from exc
        raise


def _update(
    order: OrderRecord,
    previous: OrderStatus,
    trigger: Trigger | None,
    detail: str,
    made: list[Entry],
    engine: Engine,
    *,
    attempt: bool = False,
) -> None:
    stored_id = rows.canonical_uuid(order.order_id)
    columns = rows.ATTEMPT_COLUMNS + rows.MUTABLE_COLUMNS if attempt else rows.MUTABLE_COLUMNS
    try:
        values = rows.attempt_row(order, _ts) if attempt else rows.mutable_row(order, _ts)
    except rows.TIME_ERRORS:
        rows.check_times(order, _ts)
        raise
    params = dict(zip(columns, values, strict=True))
    params[rows.WHERE_ORDER_ID] = stored_id
    params[rows.WHERE_CLIENT_ID] = order.client_order_id
    params[rows.WHERE_STATUS] = previous.value
    event = rows.event_row(order, stored_id, previous, trigger, detail, params["updated_at"])
    with engine.begin() as conn:
        if conn.execute(queries.UPDATE_ORDER, params).rowcount != 1:
            raise StaleOrderError(order.client_order_id, previous, _status(conn, order))
        conn.execute(queries.INSERT_EVENT, _event(event))
        outbox.insert_rows(conn, made)


def _event(values: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(rows.EVENT_COLUMNS, values, strict=True))


def _status(conn: Connection, order: OrderRecord) -> OrderStatus | None:
    params = {"client_order_id": order.client_order_id}
    value = conn.execute(queries.SELECT_STATUS, params).scalar_one_or_none()
    return None if value is None else OrderStatus(value)


class _Found(NamedTuple):
    records: list[OrderRecord]
    unreadable: list[UnreadableOrderError]


def select_orders(stmt: Select[Any], params: dict[str, Any], engine: Engine) -> _Found:
    """The orders ``stmt`` selects. If one cannot be read, the others still are: the matching
    client order ids are selected alone, then each row by itself (the failure path only)."""
    try:
        with engine.connect() as conn:
            result = conn.execute(stmt, params)
            try:
                records = [rows.record_from_row(r, rows.datetime_to_ms) for r in result.mappings()]
            finally:
                result.close()  # a fetch that failed half-way leaves the driver's cursor open
            return _Found(records, [])
    except _UNREADABLE:
        pass  # find which rows, below
    ids = stmt.with_only_columns(execution_orders.c.client_order_id)
    with engine.connect() as conn:
        client_order_ids: list[str] = list(conn.execute(ids, params).scalars())
    found = _Found([], [])
    for client_order_id in client_order_ids:
        try:
            with engine.connect() as conn:
                one = {"client_order_id": client_order_id}
                row = conn.execute(queries.SELECT_BY_CLIENT_ID, one).mappings().one()
                found.records.append(rows.record_from_row(row, rows.datetime_to_ms))
        except _UNREADABLE as exc:
            found.unreadable.append(UnreadableOrderError(client_order_id, exc))
    return found


def select_events(client_order_id: str, engine: Engine) -> list[OrderEvent]:
    with engine.connect() as conn:
        result = conn.execute(queries.SELECT_EVENTS, {"client_order_id": client_order_id})
        return [rows.event_from_row(row, rows.datetime_to_ms) for row in result.mappings()]


def select_quarantined(engine: Engine) -> list[QuarantinedRecord]:
    with engine.connect() as conn:
        found = conn.execute(quarantine.SELECT).all()
    return [quarantine.record_from_row(tuple(row), rows.datetime_to_ms) for row in found]


def _execute(stmt: Insert, params: dict[str, Any], engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(stmt, params)
