"""Persistence of what the synchronizer sees: positions, deals, account states, margin-level
history, position events and trailing stops (docs/schema.md, "Positions and deals").

None of this is on an order's critical path: the synchronizer and the position services
*buffer* their writes here from the event loop (no await), and a flush task writes the buffer
every ``flush_interval_s`` in one transaction, in one worker thread. Rows are coalesced while
buffered (the latest state of a position or an account wins), so a position whose profit moves
every second costs nothing until its structure changes. Reads go through the same thread after
a flush, so they see every write buffered before them.

Works on every URL the journal does (SQLite by default, PostgreSQL in production): upserts use
each dialect's ``ON CONFLICT``.

Failures: a flush the database cannot take *now* (:func:`transient`) keeps its
rows for the next one; a row it refuses for what the row holds is found by writing its part
again in halves, dropped, and reported (:attr:`SyncStore.refused_rows`), so one bad row never
holds back the others, nor makes reads (which flush first) raise. Free text is cut to its
column when buffered; what is not free text is never changed, only refused. While the
database is down the lists of margin samples and position events stop at
:data:`BUFFERED_MAX` each.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeVar

import msgspec
from sqlalchemy import URL, Connection, Engine, event, make_url, select

from mtgate import logs
from mtgate.protocol import messages as m
from mtgate.sessions.session import AccountKey
from mtgate.store.migrate import make_engine, migrate
from mtgate.store.models import (
    account_states,
    deals,
    margin_level_history,
    position_events,
    positions,
    trailing_stops,
)
from mtgate.store.rows import datetime_to_ms
from mtgate.store.sqlite_checkpoint import BACKSTOP_PAGES
from mtgate.store.sync_values import (
    AccountState,
    PositionEvent,
    PositionState,
    RefusedRow,
    TrailingState,
)
from mtgate.store.sync_writes import (
    BUFFERED_MAX,
    DEAL_COMMENT_MAX,
    FINISHED_REASON_MAX,
    FLUSH_ROWS_MAX,
    POSITION_COMMENT_MAX,
    REFUSED_KEPT,
    Buffer,
    Emitter,
    position_from_row,
    trailing_from_row,
    transient,
    write,
)
from mtgate.store.values import JournalNotOpenError

__all__ = [
    "BUFFERED_MAX",
    "FLUSH_ROWS_MAX",
    "AccountState",
    "PositionEvent",
    "PositionState",
    "RefusedRow",
    "SyncStore",
    "TrailingState",
    "transient",
]

log = logs.get("mtgate.store.sync")
_MS = timedelta(milliseconds=1)
T = TypeVar("T")


class SyncStore:
    """Buffered writer and reader of the synchronizer's tables."""

    def __init__(self, url: str | URL, *, flush_interval_s: float = 1.0) -> None:
        self.url = make_url(url)
        self.flush_interval_s = flush_interval_s
        self._engine: Engine | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._buffer = Buffer.empty()
        self._flusher: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self.refused_rows: deque[RefusedRow] = deque(maxlen=REFUSED_KEPT)
        """The latest rows the database refused for good (see :class:`RefusedRow`)."""
        self.refused_count = 0
        """Rows refused for good since start (each also an ERROR line)."""
        self.dropped_count = 0
        """Margin samples and position events dropped beyond :data:`BUFFERED_MAX`."""
        self._dropping = False
        self.outbox: Emitter | None = None
        """Makes the outbox entries of each flush's position events and account syncs,
        written in the flush's transaction (docs/events.md); None: no events."""

    async def open(self) -> None:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mtgate-sync-store")
        loop = asyncio.get_running_loop()
        try:
            self._engine = await loop.run_in_executor(executor, self._connect)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        self._executor = executor
        self._flusher = loop.create_task(self._flush_loop(), name="sync-store-flush")

    def _connect(self) -> Engine:
        migrate(self.url)
        engine = make_engine(self.url, pool_pre_ping=True)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_on_connect)
        return engine

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        if self._executor is None:
            return
        try:
            await self.flush()
        finally:
            executor, engine = self._executor, self._engine
            self._executor = self._engine = None
            if engine is not None:
                await asyncio.get_running_loop().run_in_executor(executor, engine.dispose)
            executor.shutdown(wait=True)

    # --- buffered writes (event loop, no await) ------------------------------------------------

    def put_position(self, position: PositionState) -> None:
        a = position.account
        if len(position.comment) > POSITION_COMMENT_MAX:  # the broker's free text: cut to fit
            position = dataclasses.replace(
                position, comment=position.comment[:POSITION_COMMENT_MAX]
            )
        self._buffer.positions[(a.login, a.server, position.ticket)] = position

    def put_deal(
        self, account: AccountKey, deal: m.DealReport, client_order_id: str | None
    ) -> None:
        if len(deal.comment) > DEAL_COMMENT_MAX:
            deal = msgspec.structs.replace(deal, comment=deal.comment[:DEAL_COMMENT_MAX])
        self._buffer.deals[(account.login, account.server, deal.ticket)] = (
            account,
            deal,
            client_order_id,
        )

    def put_account(self, state: AccountState) -> None:
        self._buffer.accounts[(state.account.login, state.account.server)] = state

    def put_margin_sample(self, account: AccountKey, report: m.AccountReport, at_ms: int) -> None:
        self._buffer.margins.append((account, report, at_ms))
        self._trim(self._buffer.margins)

    def put_event(self, event: PositionEvent) -> None:
        self._buffer.events.append(event)
        self._trim(self._buffer.events)

    def _trim(self, rows: deque[Any]) -> None:
        """Keep a list buffer within :data:`BUFFERED_MAX` (only reached while writes fail)."""
        over = len(rows) - BUFFERED_MAX
        if over <= 0:
            return
        for _ in range(over):
            rows.popleft()
        self.dropped_count += over
        if not self._dropping:
            self._dropping = True
            log.error(
                "sync store buffer full: dropping the oldest margin samples / position events "
                "until the database takes writes again",
                limit=BUFFERED_MAX,
            )

    def put_trailing(self, state: TrailingState) -> None:
        a = state.account
        reason = state.finished_reason
        if reason is not None and len(reason) > FINISHED_REASON_MAX:  # says why, in words
            state = dataclasses.replace(state, finished_reason=reason[:FINISHED_REASON_MAX])
        self._buffer.trailing[(a.login, a.server, state.ticket, state.created_at_ms)] = state

    # --- flushing ----------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        """Flush every ``flush_interval_s``. A flush that fails has logged its part (WARNING)
        and kept its rows; that flushes keep failing is an ERROR once per outage (a human is
        needed if it lasts), and its end is told."""
        failures = 0
        while True:
            await asyncio.sleep(self.flush_interval_s)
            try:
                await self.flush()
            except Exception as exc:  # the rows are kept: the next flush retries them
                failures += 1
                if failures == 1:
                    log.error("sync store cannot write; rows kept for later", error=repr(exc))
                continue
            if failures:
                log.info("sync store writes again", failed_flushes=failures)
                failures = 0

    async def flush(self) -> None:
        """Write everything buffered so far: one transaction per part of at most
        :data:`FLUSH_ROWS_MAX` rows.

        A part the database cannot take now (busy, locked, unreachable: :func:`transient`)
        is kept, with everything not yet written, for the next flush, and the error raised.
        A part it refuses for what a row holds is written again in halves, and those in
        halves, down to the rows it refuses alone: every good row lands, and each refused row
        is dropped and reported (:attr:`refused_rows`, an ERROR line), so one bad row never
        holds back the others, nor makes the next flush (or a read) fail again. Halving costs
        about ``2 * log2(rows)`` short transactions per bad row, not one per row: the
        journal's order intents wait for the same SQLite write lock."""
        async with self._flush_lock:
            if not self._buffer:
                return
            pending = deque((part, True) for part in self._buffer.split(FLUSH_ROWS_MAX))
            self._buffer = Buffer.empty()
            try:
                while pending:
                    part, whole = pending[0]
                    try:
                        await self._call(functools.partial(write, buffer=part, emit=self.outbox))
                    except Exception as exc:
                        if transient(exc):
                            log.warning(
                                "sync store part not written; kept for the next flush",
                                error=repr(exc),
                                rows=len(part),
                                **part.about(),
                            )
                            raise
                        pending.popleft()
                        self._isolate(part, whole, exc, pending)
                    else:
                        pending.popleft()
            except BaseException:  # also a cancelled flush: what was not written is kept
                for unwritten, _ in reversed(pending):  # written parts stay written
                    self._merge_back(unwritten)
                raise
            self._dropping = False

    def _isolate(
        self, part: Buffer, whole: bool, exc: Exception, pending: deque[tuple[Buffer, bool]]
    ) -> None:
        """``part`` was refused for what one of its rows holds: its halves go first in line,
        and a row refused alone is dropped and reported."""
        if whole:
            log.warning(
                "sync store part refused; writing it in smaller pieces",
                error=repr(exc),
                rows=len(part),
                **part.about(),
            )
        if len(part) > 1:
            halves = part.split((len(part) + 1) // 2)
            pending.extendleft(reversed([(half, False) for half in halves]))
            return
        for table, account, key, value in part.rows():  # exactly one
            self.refused_count += 1
            self.refused_rows.append(RefusedRow(table, key, repr(exc), account, value))
            log.error(
                "sync store refused a row; it is dropped, the others are written",
                table=table,
                account=str(account),
                key=key,
                error=repr(exc),
            )

    def _merge_back(self, older: Buffer) -> None:
        """Put a failed flush's rows back under anything buffered since (newer rows win)."""
        newer = self._buffer
        older.positions.update(newer.positions)
        older.deals.update(newer.deals)
        older.accounts.update(newer.accounts)
        older.margins.extend(newer.margins)
        older.events.extend(newer.events)
        older.trailing.update(newer.trailing)
        self._buffer = older
        self._trim(older.margins)
        self._trim(older.events)

    async def _call(self, fn: Callable[[Engine], T]) -> T:
        executor, engine = self._executor, self._engine
        if executor is None or engine is None:
            raise JournalNotOpenError()
        return await asyncio.get_running_loop().run_in_executor(executor, fn, engine)

    # --- reads (after a flush) ---------------------------------------------------------------

    async def _read(self, fn: Callable[[Connection], T]) -> T:
        await self.flush()

        def run(engine: Engine) -> T:
            with engine.connect() as conn:
                return fn(conn)

        return await self._call(run)

    async def positions(
        self, account: AccountKey, *, open_only: bool = True
    ) -> list[PositionState]:
        query = select(positions).where(
            positions.c.account_login == account.login,
            positions.c.account_server == account.server,
        )
        if open_only:
            query = query.where(positions.c.state == "open")
        query = query.order_by(positions.c.ticket)
        return await self._read(
            lambda conn: [position_from_row(r._mapping) for r in conn.execute(query)]
        )

    async def position(self, account: AccountKey, ticket: int) -> PositionState | None:
        query = select(positions).where(
            positions.c.account_login == account.login,
            positions.c.account_server == account.server,
            positions.c.ticket == ticket,
        )

        def one(conn: Connection) -> PositionState | None:
            row = conn.execute(query).first()
            return None if row is None else position_from_row(row._mapping)

        return await self._read(one)

    async def account_state(self, account: AccountKey) -> dict[str, Any] | None:
        query = select(account_states).where(
            account_states.c.account_login == account.login,
            account_states.c.account_server == account.server,
        )

        def one(conn: Connection) -> dict[str, Any] | None:
            row = conn.execute(query).first()
            return None if row is None else dict(row._mapping)

        return await self._read(one)

    async def deals(self, account: AccountKey) -> list[dict[str, Any]]:
        query = (
            select(deals)
            .where(deals.c.account_login == account.login, deals.c.account_server == account.server)
            .order_by(deals.c.time, deals.c.ticket)
        )
        return await self._read(lambda conn: [dict(r._mapping) for r in conn.execute(query)])

    async def margin_history(self, account: AccountKey) -> list[dict[str, Any]]:
        t = margin_level_history
        query = (
            select(t)
            .where(t.c.account_login == account.login, t.c.account_server == account.server)
            .order_by(t.c.at, t.c.id)
        )
        return await self._read(lambda conn: [dict(r._mapping) for r in conn.execute(query)])

    async def events(self, account: AccountKey, ticket: int | None = None) -> list[PositionEvent]:
        t = position_events
        query = select(t).where(
            t.c.account_login == account.login, t.c.account_server == account.server
        )
        if ticket is not None:
            query = query.where(t.c.ticket == ticket)
        query = query.order_by(t.c.id)
        return await self._read(
            lambda conn: [
                PositionEvent(
                    account,
                    r.ticket,
                    r.kind,
                    r.client_order_id,
                    r.detail,
                    datetime_to_ms(r.at),
                )
                for r in conn.execute(query)
            ]
        )

    async def trailing(self, *, active_only: bool = True) -> list[TrailingState]:
        t = trailing_stops
        query = select(t).order_by(t.c.id)
        if active_only:
            query = query.where(t.c.state == "active")
        return await self._read(
            lambda conn: [trailing_from_row(r._mapping) for r in conn.execute(query)]
        )


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    """Leave checkpoints to the journal's checkpoint thread: a commit of ours that crossed the
    default threshold (1,000 pages) would checkpoint inside our write lock, and the journal's
    order intents wait for that lock (seen as 60 ms outliers in ``mtgate bench``)."""
    dbapi_connection.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
    dbapi_connection.execute("PRAGMA busy_timeout = 5000")
