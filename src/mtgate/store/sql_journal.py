"""The SQLAlchemy journal, for PostgreSQL (psycopg 3).

Every call runs in one dedicated worker thread: the event loop never waits on the network, and
a single thread keeps the writes in the order they were called (a pool of threads could commit
a fill before the submit it follows). A caller cancelled while its write is in the worker does
not stop that write; it lands or fails as a whole (one transaction), and the caller, not having
seen it return, must not send.

It also runs on any SQLAlchemy URL the models support, which the tests use to prove that this
journal and the SQLite fast path read each other's rows.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import URL, Connection, Engine, Insert, Select, make_url
from sqlalchemy.exc import IntegrityError

from mtgate.domain.orders import OrderStatus, Trigger
from mtgate.domain.records import OrderRecord
from mtgate.store import queries, rows
from mtgate.store.migrate import make_engine, migrate
from mtgate.store.values import (
    DuplicateOrderError,
    HealthSample,
    JournalError,
    JournalNotOpenError,
    OrderEvent,
    StaleOrderError,
    check_transition,
)

T = TypeVar("T")

_ts = rows.ms_to_datetime


class SqlJournal:
    """Journal on a SQLAlchemy engine, driven from the event loop through one worker thread."""

    def __init__(self, url: str | URL) -> None:
        self.url = make_url(url)
        self._engine: Engine | None = None
        self._executor: ThreadPoolExecutor | None = None

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

    async def record_submitted(self, order: OrderRecord, *, new_id: bool = False) -> None:
        check_transition(OrderStatus.NEW, Trigger.SEND, order.status)
        await self._call(functools.partial(_insert, order, Trigger.SEND, ""))

    async def record_refused(self, order: OrderRecord) -> None:
        check_transition(OrderStatus.NEW, Trigger.REFUSE, order.status)
        detail = order.rejection_reason or ""
        await self._call(functools.partial(_insert, order, Trigger.REFUSE, detail))

    async def record_transition(
        self, order: OrderRecord, previous: OrderStatus, trigger: Trigger, detail: str = ""
    ) -> None:
        check_transition(previous, trigger, order.status)
        await self._call(functools.partial(_update, order, previous, trigger, detail))

    async def record_event(self, order: OrderRecord, detail: str) -> None:
        await self._call(functools.partial(_update, order, order.status, None, detail))

    async def get(self, client_order_id: str) -> OrderRecord | None:
        params = {"client_order_id": client_order_id}
        found = await self._call(functools.partial(_select, queries.SELECT_BY_CLIENT_ID, params))
        return found[0] if found else None

    async def find_by_ticket(
        self, account_login: int, account_server: str, ticket: int
    ) -> OrderRecord | None:
        params = {
            "account_login": account_login,
            "account_server": account_server,
            "ticket": ticket,
        }
        found = await self._call(functools.partial(_select, queries.SELECT_BY_TICKET, params))
        if len(found) > 1:
            raise JournalError(
                f"ticket {ticket} of {account_login}@{account_server} belongs to "
                f"{len(found)} journalled orders"
            )
        return found[0] if found else None

    async def list_orders(
        self,
        *,
        account_login: int | None = None,
        statuses: Collection[OrderStatus] | None = None,
        limit: int = 1000,
    ) -> list[OrderRecord]:
        if limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        stmt = queries.list_orders(account_login, statuses, limit)
        return await self._call(functools.partial(_select, stmt, {}))

    async def events(self, client_order_id: str) -> list[OrderEvent]:
        return await self._call(functools.partial(_events, client_order_id))

    async def record_health(self, sample: HealthSample) -> None:
        row = rows.health_row(sample, uuid.uuid4(), _ts)
        params = dict(zip(rows.HEALTH_COLUMNS, row, strict=True))
        await self._call(functools.partial(_execute, queries.INSERT_HEALTH, params))


# Below: the worker thread's side. Plain functions of the engine, so nothing here can touch the
# journal's state from the wrong thread.


def _insert(order: OrderRecord, trigger: Trigger, detail: str, engine: Engine) -> None:
    stored_id = rows.canonical_uuid(order.order_id)
    row = dict(zip(rows.ORDER_COLUMNS, rows.order_row(order, stored_id, _ts), strict=True))
    events = [
        rows.created_row(order, stored_id, row["placed_at"]),
        rows.event_row(order, stored_id, OrderStatus.NEW, trigger, detail, row["updated_at"]),
    ]
    try:
        with engine.begin() as conn:
            conn.execute(queries.INSERT_ORDER, row)
            conn.execute(queries.INSERT_EVENT, [_event(values) for values in events])
    except IntegrityError as exc:
        params = {"client_order_id": order.client_order_id, "order_id": stored_id}
        with engine.connect() as conn:
            if conn.execute(queries.SELECT_EXISTING, params).first() is not None:
                raise DuplicateOrderError(order.client_order_id, order.order_id) from exc
        raise


def _update(
    order: OrderRecord, previous: OrderStatus, trigger: Trigger | None, detail: str, engine: Engine
) -> None:
    stored_id = rows.canonical_uuid(order.order_id)
    params = dict(zip(rows.MUTABLE_COLUMNS, rows.mutable_row(order, _ts), strict=True))
    params[rows.WHERE_ORDER_ID] = stored_id
    params[rows.WHERE_CLIENT_ID] = order.client_order_id
    params[rows.WHERE_STATUS] = previous.value
    event = rows.event_row(order, stored_id, previous, trigger, detail, params["updated_at"])
    with engine.begin() as conn:
        if conn.execute(queries.UPDATE_ORDER, params).rowcount != 1:
            raise StaleOrderError(order.client_order_id, previous, _status(conn, order))
        conn.execute(queries.INSERT_EVENT, _event(event))


def _event(values: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(rows.EVENT_COLUMNS, values, strict=True))


def _status(conn: Connection, order: OrderRecord) -> OrderStatus | None:
    params = {"client_order_id": order.client_order_id}
    value = conn.execute(queries.SELECT_STATUS, params).scalar_one_or_none()
    return None if value is None else OrderStatus(value)


def _select(stmt: Select[Any], params: dict[str, Any], engine: Engine) -> list[OrderRecord]:
    with engine.connect() as conn:
        result = conn.execute(stmt, params).mappings()
        return [rows.record_from_row(row, rows.datetime_to_ms) for row in result]


def _events(client_order_id: str, engine: Engine) -> list[OrderEvent]:
    with engine.connect() as conn:
        result = conn.execute(queries.SELECT_EVENTS, {"client_order_id": client_order_id})
        return [rows.event_from_row(row, rows.datetime_to_ms) for row in result.mappings()]


def _execute(stmt: Insert, params: dict[str, Any], engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(stmt, params)
