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
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import URL, Connection, Engine, Table, and_, event, make_url, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import OperationalError as SqlOperationalError

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
from mtgate.store.rows import TsOut, datetime_to_ms, ms_to_datetime, sqlite_ts
from mtgate.store.sqlite_checkpoint import BACKSTOP_PAGES
from mtgate.store.values import JournalNotOpenError

log = logs.get("mtgate.store.sync")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PositionState:
    """The bridge's view of one position (open, or closed and kept for the record)."""

    account: AccountKey
    ticket: int
    identifier: int
    origin_ticket: int
    symbol: str
    buy: bool
    volume: float
    price_open: float
    sl: float
    tp: float
    magic: int
    comment: str
    client_order_id: str | None
    external: bool
    opened_at_ms: int
    updated_at_ms: int
    open: bool = True
    profit: float = 0.0
    closed_at_ms: int | None = None
    close_reason: str | None = None
    close_deal: int | None = None


@dataclass(frozen=True, slots=True)
class TrailingState:
    """A trailing stop as stored; ``active`` ones are reloaded at start-up."""

    account: AccountKey
    ticket: int
    symbol: str
    buy: bool
    distance_points: int
    step_points: int
    activation_points: int | None
    min_interval_ms: int
    active: bool
    stop_loss: float | None
    moves: int
    last_moved_at_ms: int | None
    finished_reason: str | None
    created_at_ms: int
    updated_at_ms: int


@dataclass(frozen=True, slots=True)
class AccountState:
    account: AccountKey
    report: m.AccountReport
    positions: int
    pending_orders: int
    stale: bool
    history_cursor_ms: int | None
    synced_at_ms: int


@dataclass(frozen=True, slots=True)
class PositionEvent:
    account: AccountKey
    ticket: int
    kind: str
    client_order_id: str | None
    detail: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class RefusedRow:
    """A row the database refused for good (a value out of its column's range, say): it is
    dropped from the buffer, so that every other row is still written, and kept here to see."""

    table: str
    key: str
    error: str


BUFFERED_MAX = 50_000
"""Margin samples, and position events, buffered at most (each): beyond, while the database
is unreachable, the oldest are dropped. The other buffers hold one row per position, deal,
account or trailing stop (the latest state wins), so the entities bound them."""
REFUSED_KEPT = 100
"""Refused rows kept in :attr:`SyncStore.refused_rows` (the newest)."""


@dataclass(slots=True)
class _Buffer:
    positions: dict[tuple[int, str, int], PositionState]
    deals: dict[tuple[int, str, int], tuple[AccountKey, m.DealReport, str | None]]
    accounts: dict[tuple[int, str], AccountState]
    margins: deque[tuple[AccountKey, m.AccountReport, int]]
    events: deque[PositionEvent]
    trailing: dict[tuple[int, str, int, int], TrailingState]

    @classmethod
    def empty(cls) -> _Buffer:
        return cls({}, {}, {}, deque(), deque(), {})

    def rows(self) -> Iterator[tuple[str, str, _Buffer]]:
        """Each row alone, as a buffer of its own, with its table and key (to isolate the
        rows the database refuses)."""
        for key, pos in self.positions.items():
            one = _Buffer.empty()
            one.positions[key] = pos
            yield "positions", _key(key), one
        for dkey, deal in self.deals.items():
            one = _Buffer.empty()
            one.deals[dkey] = deal
            yield "deals", _key(dkey), one
        for akey, state in self.accounts.items():
            one = _Buffer.empty()
            one.accounts[akey] = state
            yield "account_states", _key(akey), one
        for margin in self.margins:
            one = _Buffer.empty()
            one.margins.append(margin)
            yield "margin_level_history", f"{margin[0]} at {margin[2]}", one
        for change in self.events:
            one = _Buffer.empty()
            one.events.append(change)
            yield "position_events", f"{change.account} #{change.ticket} {change.kind}", one
        for tkey, trailing in self.trailing.items():
            one = _Buffer.empty()
            one.trailing[tkey] = trailing
            yield "trailing_stops", _key(tkey), one

    def accounts_in(self) -> list[str]:
        """The accounts this buffer has rows of (for log lines)."""
        found = {f"{k[0]}@{k[1]}" for k in [*self.positions, *self.deals, *self.accounts]}
        found |= {str(a) for a, _, _ in self.margins} | {str(e.account) for e in self.events}
        return sorted(found)[:20]

    def __bool__(self) -> bool:
        return bool(
            self.positions
            or self.deals
            or self.accounts
            or self.margins
            or self.events
            or self.trailing
        )

    def split(self, max_rows: int) -> list[_Buffer]:
        """Consecutive parts of at most ``max_rows`` rows each, in table order, so that a
        large flush (the first snapshots of many accounts) holds the database's write lock
        for one part at a time."""
        parts = [_Buffer.empty()]
        count = 0

        def room() -> _Buffer:
            nonlocal count
            if count >= max_rows:
                parts.append(_Buffer.empty())
                count = 0
            count += 1
            return parts[-1]

        for key, pos in self.positions.items():
            room().positions[key] = pos
        for dkey, deal in self.deals.items():
            room().deals[dkey] = deal
        for akey, state in self.accounts.items():
            room().accounts[akey] = state
        for margin in self.margins:
            room().margins.append(margin)
        for change in self.events:
            room().events.append(change)
        for tkey, trailing in self.trailing.items():
            room().trailing[tkey] = trailing
        return parts


def _key(key: tuple[Any, ...]) -> str:
    return "/".join(str(k) for k in key)


def transient(exc: BaseException) -> bool:
    """A failure that retrying can cure (the database is busy, locked or unreachable), as
    opposed to a row it refuses for what it holds."""
    if isinstance(exc, sqlite3.OperationalError | SqlOperationalError | JournalNotOpenError):
        return True
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated)
    return isinstance(exc, ConnectionError | TimeoutError)


FLUSH_ROWS_MAX = 2_000
"""Rows per write transaction (~20 ms of SQLite work at most): the journal's order intents
wait for the same file's write lock, up to their busy timeout."""


class SyncStore:
    """Buffered writer and reader of the synchronizer's tables."""

    def __init__(self, url: str | URL, *, flush_interval_s: float = 1.0) -> None:
        self.url = make_url(url)
        self.flush_interval_s = flush_interval_s
        self._engine: Engine | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._buffer = _Buffer.empty()
        self._flusher: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self.refused_rows: deque[RefusedRow] = deque(maxlen=REFUSED_KEPT)
        """The latest rows the database refused for good (see :class:`RefusedRow`)."""
        self.refused_count = 0
        self.dropped_count = 0
        """Margin samples and position events dropped beyond :data:`BUFFERED_MAX`."""
        self._dropping = False

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
        self._buffer.positions[(a.login, a.server, position.ticket)] = position

    def put_deal(
        self, account: AccountKey, deal: m.DealReport, client_order_id: str | None
    ) -> None:
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
        self._buffer.trailing[(a.login, a.server, state.ticket, state.created_at_ms)] = state

    # --- flushing ----------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s)
            # A failure is logged where it happens and its rows are kept: the next flush
            # retries them.
            with contextlib.suppress(Exception):
                await self.flush()

    async def flush(self) -> None:
        """Write everything buffered so far: one transaction per part of at most
        :data:`FLUSH_ROWS_MAX` rows.

        A part the database cannot take now (busy, locked, unreachable: :func:`transient`)
        is kept, with the parts after it, for the next flush, and the error raised. A part it
        refuses for what a row holds is written again row by row: every good row lands, and
        each row refused for good is dropped and reported (:attr:`refused_rows`, an ERROR
        line), so one bad row never holds back the others."""
        async with self._flush_lock:
            if not self._buffer:
                return
            parts, self._buffer = self._buffer.split(FLUSH_ROWS_MAX), _Buffer.empty()
            for i, part in enumerate(parts):
                try:
                    await self._call(functools.partial(_write, buffer=part))
                except Exception as exc:
                    if transient(exc):
                        self._keep(parts[i:], exc)
                        raise
                    await self._isolate(part, parts[i + 1 :])
                except BaseException:
                    self._keep(parts[i:], None)
                    raise
            self._dropping = False

    def _keep(self, unwritten: list[_Buffer], exc: BaseException | None) -> None:
        for part in reversed(unwritten):  # written parts stay written
            self._merge_back(part)
        if exc is not None:
            log.warning(
                "sync store flush failed; will retry",
                error=repr(exc),
                accounts=self._buffer.accounts_in(),
            )

    async def _isolate(self, part: _Buffer, later: list[_Buffer]) -> None:
        """Write ``part`` row by row, reporting each row refused for good."""
        rows = list(part.rows())
        for j, (table, key, one) in enumerate(rows):
            try:
                await self._call(functools.partial(_write, buffer=one))
            except Exception as exc:
                if transient(exc):
                    self._keep([*(r[2] for r in rows[j:]), *later], exc)
                    raise
                self.refused_count += 1
                self.refused_rows.append(RefusedRow(table, key, repr(exc)))
                log.error(
                    "sync store refused a row; it is dropped, the others are written",
                    table=table,
                    key=key,
                    error=repr(exc),
                )

    def _merge_back(self, older: _Buffer) -> None:
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
            lambda conn: [_position_from_row(r._mapping) for r in conn.execute(query)]
        )

    async def position(self, account: AccountKey, ticket: int) -> PositionState | None:
        query = select(positions).where(
            positions.c.account_login == account.login,
            positions.c.account_server == account.server,
            positions.c.ticket == ticket,
        )

        def one(conn: Connection) -> PositionState | None:
            row = conn.execute(query).first()
            return None if row is None else _position_from_row(row._mapping)

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
            lambda conn: [_trailing_from_row(r._mapping) for r in conn.execute(query)]
        )


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    """Leave checkpoints to the journal's checkpoint thread: a commit of ours that crossed the
    default threshold (1,000 pages) would checkpoint inside our write lock, and the journal's
    order intents wait for that lock (seen as 60 ms outliers in ``mtgate bench``)."""
    dbapi_connection.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
    dbapi_connection.execute("PRAGMA busy_timeout = 5000")


# --- rows ------------------------------------------------------------------------------------


_KEYS = ("account_login", "account_server", "ticket")
COMMENT_MAX = 64
"""The ``comment`` columns: free text (the broker's markers), cut to fit rather than refused."""
Write = tuple[Table, tuple[str, ...] | None, list[dict[str, Any]]]
"""A table, its conflict keys (None: a plain insert) and its rows."""


def _writes(buffer: _Buffer, ts: TsOut) -> list[Write]:
    return [
        (positions, _KEYS, [_position_row(p, ts) for p in buffer.positions.values()]),
        (deals, _KEYS, [_deal_row(a, d, cid, ts) for a, d, cid in buffer.deals.values()]),
        (
            account_states,
            ("account_login", "account_server"),
            [_account_row(s, ts) for s in buffer.accounts.values()],
        ),
        (margin_level_history, None, [_margin_row(a, r, at, ts) for a, r, at in buffer.margins]),
        (position_events, None, [_event_row(e, ts) for e in buffer.events]),
    ]


def _write(engine: Engine, buffer: _Buffer) -> None:
    """One transaction. On SQLite the rows go straight to the driver with precomputed SQL:
    the journal's intent commits share the file's write lock, so the lock is held for the
    driver's work only (~0.3 ms for a second's worth of rows), not SQLAlchemy's (~3 ms)."""
    if engine.dialect.name == "sqlite":
        _write_sqlite(engine, buffer)
        return
    with engine.begin() as conn:
        for table, keys, rows in _writes(buffer, ms_to_datetime):
            if not rows:
                continue
            if keys is None:
                conn.execute(table.insert(), rows)
                continue
            stmt = postgresql.insert(table)
            update = {c: stmt.excluded[c] for c in rows[0] if c not in keys}
            conn.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=update), rows)
        for state in buffer.trailing.values():
            _write_trailing(conn, state)


def _sqlite_sql(table: Table, keys: tuple[str, ...] | None, columns: Sequence[str]) -> str:
    cols = ", ".join(f'"{c}"' for c in columns)
    sql = f'INSERT INTO "{table.name}" ({cols}) VALUES ({", ".join("?" * len(columns))})'
    if keys is None:
        return sql
    updates = ", ".join(f'"{c}" = excluded."{c}"' for c in columns if c not in keys)
    conflict = ", ".join(f'"{k}"' for k in keys)
    return f"{sql} ON CONFLICT ({conflict}) DO UPDATE SET {updates}"


def _write_sqlite(engine: Engine, buffer: _Buffer) -> None:
    batches = [
        (_sqlite_sql(table, keys, list(rows[0])), [tuple(r.values()) for r in rows])
        for table, keys, rows in _writes(buffer, sqlite_ts)
        if rows
    ]
    trailing = [_trailing_values(s, sqlite_ts) for s in buffer.trailing.values()]
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in batches:
                cur.executemany(sql, params)
            for values in trailing:
                _write_trailing_sqlite(cur, values)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
    finally:
        raw.close()


def _write_trailing_sqlite(cur: Any, values: dict[str, Any]) -> None:
    where = ("account_login", "account_server", "ticket", "created_at")
    sets = [c for c in values if c not in where]
    cur.execute(
        f"UPDATE trailing_stops SET {', '.join(f'{c} = ?' for c in sets)} "
        f"WHERE {' AND '.join(f'{c} = ?' for c in where)}",
        [*(values[c] for c in sets), *(values[c] for c in where)],
    )
    if cur.rowcount == 0:
        cur.execute(_sqlite_sql(trailing_stops, None, list(values)), tuple(values.values()))


def _account_cols(account: AccountKey) -> dict[str, Any]:
    return {"account_login": account.login, "account_server": account.server}


def _position_row(p: PositionState, ts: TsOut) -> dict[str, Any]:
    return {
        **_account_cols(p.account),
        "ticket": p.ticket,
        "identifier": p.identifier,
        "origin_ticket": p.origin_ticket,
        "symbol": p.symbol,
        "side": "buy" if p.buy else "sell",
        "volume": p.volume,
        "price_open": p.price_open,
        "stop_loss": p.sl or None,
        "take_profit": p.tp or None,
        "magic": p.magic,
        "comment": p.comment[:COMMENT_MAX],
        "client_order_id": p.client_order_id,
        "external": p.external,
        "state": "open" if p.open else "closed",
        "profit": p.profit,
        "opened_at": ts(p.opened_at_ms),
        "closed_at": None if p.closed_at_ms is None else ts(p.closed_at_ms),
        "close_reason": p.close_reason,
        "close_deal": p.close_deal,
        "updated_at": ts(p.updated_at_ms),
    }


def _position_from_row(r: Any) -> PositionState:
    closed = r["closed_at"]
    return PositionState(
        account=AccountKey(r["account_login"], r["account_server"]),
        ticket=r["ticket"],
        identifier=r["identifier"],
        origin_ticket=r["origin_ticket"],
        symbol=r["symbol"],
        buy=r["side"] == "buy",
        volume=r["volume"],
        price_open=r["price_open"],
        sl=r["stop_loss"] or 0.0,
        tp=r["take_profit"] or 0.0,
        magic=r["magic"],
        comment=r["comment"],
        client_order_id=r["client_order_id"],
        external=r["external"],
        opened_at_ms=datetime_to_ms(r["opened_at"]),
        updated_at_ms=datetime_to_ms(r["updated_at"]),
        open=r["state"] == "open",
        profit=r["profit"],
        closed_at_ms=None if closed is None else datetime_to_ms(closed),
        close_reason=r["close_reason"],
        close_deal=r["close_deal"],
    )


def _deal_row(account: AccountKey, d: m.DealReport, cid: str | None, ts: TsOut) -> dict[str, Any]:
    return {
        **_account_cols(account),
        "ticket": d.ticket,
        "order_ticket": d.order,
        "position_id": d.position_id,
        "symbol": d.symbol,
        "deal_type": d.type,
        "entry": d.entry,
        "reason": d.reason,
        "volume": d.volume,
        "price": d.price,
        "profit": d.profit,
        "swap": d.swap,
        "commission": d.commission,
        "magic": d.magic,
        "comment": d.comment[:COMMENT_MAX],
        "client_order_id": cid,
        "time": ts(d.time_ms),
    }


def _account_row(s: AccountState, ts: TsOut) -> dict[str, Any]:
    r = s.report
    return {
        **_account_cols(s.account),
        "currency": r.currency,
        "leverage": r.leverage,
        "balance": r.balance,
        "credit": r.credit,
        "equity": r.equity,
        "margin": r.margin,
        "margin_free": r.margin_free,
        "margin_level": r.margin_level,
        "positions": s.positions,
        "pending_orders": s.pending_orders,
        "stale": s.stale,
        "history_cursor": None if s.history_cursor_ms is None else ts(s.history_cursor_ms),
        "synced_at": ts(s.synced_at_ms),
    }


def _margin_row(account: AccountKey, r: m.AccountReport, at_ms: int, ts: TsOut) -> dict[str, Any]:
    return {
        **_account_cols(account),
        "balance": r.balance,
        "equity": r.equity,
        "margin": r.margin,
        "margin_free": r.margin_free,
        "margin_level": r.margin_level,
        "at": ts(at_ms),
    }


def _event_row(e: PositionEvent, ts: TsOut) -> dict[str, Any]:
    return {
        **_account_cols(e.account),
        "ticket": e.ticket,
        "kind": e.kind,
        "client_order_id": e.client_order_id,
        "detail": e.detail,
        "at": ts(e.at_ms),
    }


def _trailing_values(s: TrailingState, ts: TsOut) -> dict[str, Any]:
    return {
        **_account_cols(s.account),
        "ticket": s.ticket,
        "symbol": s.symbol,
        "side": "buy" if s.buy else "sell",
        "distance_points": s.distance_points,
        "step_points": s.step_points,
        "activation_points": s.activation_points,
        "min_interval_ms": s.min_interval_ms,
        "state": "active" if s.active else "finished",
        "stop_loss": s.stop_loss,
        "moves": s.moves,
        "last_moved_at": None if s.last_moved_at_ms is None else ts(s.last_moved_at_ms),
        "finished_reason": None if s.finished_reason is None else s.finished_reason[:64],
        "created_at": ts(s.created_at_ms),
        "updated_at": ts(s.updated_at_ms),
    }


def _write_trailing(conn: Connection, s: TrailingState) -> None:
    """One active row per position: a new trailing stop replaces the active one (kept as
    finished rows for the record); updates go to the active row, or the newest one."""
    t = trailing_stops
    where = and_(
        t.c.account_login == s.account.login,
        t.c.account_server == s.account.server,
        t.c.ticket == s.ticket,
        t.c.created_at == ms_to_datetime(s.created_at_ms),
    )
    values = _trailing_values(s, ms_to_datetime)
    if conn.execute(t.update().where(where).values(values)).rowcount == 0:
        conn.execute(t.insert().values(values))


def _trailing_from_row(r: Any) -> TrailingState:
    moved = r["last_moved_at"]
    return TrailingState(
        account=AccountKey(r["account_login"], r["account_server"]),
        ticket=r["ticket"],
        symbol=r["symbol"],
        buy=r["side"] == "buy",
        distance_points=r["distance_points"],
        step_points=r["step_points"],
        activation_points=r["activation_points"],
        min_interval_ms=r["min_interval_ms"],
        active=r["state"] == "active",
        stop_loss=r["stop_loss"],
        moves=r["moves"],
        last_moved_at_ms=None if moved is None else datetime_to_ms(moved),
        finished_reason=r["finished_reason"],
        created_at_ms=datetime_to_ms(r["created_at"]),
        updated_at_ms=datetime_to_ms(r["updated_at"]),
    )
