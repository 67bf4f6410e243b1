"""The synchronizer's store below its API: the buffer of rows waiting to be written, which
failures retrying can cure (:func:`transient`), and the rows each table gets, written in one
transaction by the store's worker thread."""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Table, and_
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError, DisconnectionError, StatementError
from sqlalchemy.exc import OperationalError as SqlOperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from mtgate import logs
from mtgate.events.model import Entry
from mtgate.protocol import messages as m
from mtgate.sessions.session import AccountKey
from mtgate.store import outbox
from mtgate.store.models import (
    account_states,
    deals,
    margin_level_history,
    position_events,
    positions,
    trailing_stops,
)
from mtgate.store.rows import TsOut, datetime_to_ms, ms_to_datetime, sqlite_ts
from mtgate.store.sqlite_lock import writer_lock
from mtgate.store.sync_values import (
    AccountState,
    PositionEvent,
    PositionState,
    TrailingState,
)
from mtgate.store.values import JournalNotOpenError

log = logs.get("mtgate.store.sync")
_MS = timedelta(milliseconds=1)
T = TypeVar("T")


BUFFERED_MAX = 50_000
"""Margin samples, and position events, buffered at most (each): beyond, while the database
is unreachable, the oldest are dropped (counted, one ERROR per episode). The other buffers are
dicts holding one row per position, deal, account or trailing stop (the latest state wins), so
the entities bound them; they are not capped because their rows are the record itself (a
position's last state, a deal), which no later row repeats."""
REFUSED_KEPT = 100
"""Refused rows kept in :attr:`SyncStore.refused_rows` (the newest)."""


def _column_length(table: Table, column: str) -> int:
    length = getattr(table.c[column].type, "length", None)
    assert isinstance(length, int), f"{table.name}.{column} has no length"
    return length


POSITION_COMMENT_MAX = _column_length(positions, "comment")
DEAL_COMMENT_MAX = _column_length(deals, "comment")
FINISHED_REASON_MAX = _column_length(trailing_stops, "finished_reason")
"""Free-text columns (the broker's comments, why a trailing stop ended) are cut to these
lengths when buffered rather than refused: PostgreSQL enforces them, and the text is a note,
not a key. Symbols, currencies, ids and numbers are never cut: a wrong one is refused."""


@dataclass(slots=True)
class Buffer:
    positions: dict[tuple[int, str, int], PositionState]
    deals: dict[tuple[int, str, int], tuple[AccountKey, m.DealReport, str | None]]
    accounts: dict[tuple[int, str], AccountState]
    margins: deque[tuple[AccountKey, m.AccountReport, int]]
    events: deque[PositionEvent]
    trailing: dict[tuple[int, str, int, int], TrailingState]

    @classmethod
    def empty(cls) -> Buffer:
        return cls({}, {}, {}, deque(), deque(), {})

    def rows(self) -> Iterator[tuple[str, AccountKey, str, object]]:
        """Every row's table, account, key and buffered value (to name the rows of a part
        that failed, and the row the database refused)."""
        for key, pos in self.positions.items():
            yield "positions", pos.account, _key(key), pos
        for dkey, deal in self.deals.items():
            yield "deals", deal[0], _key(dkey), deal
        for akey, state in self.accounts.items():
            yield "account_states", state.account, _key(akey), state
        for margin in self.margins:
            yield "margin_level_history", margin[0], f"{margin[0]} at {margin[2]}", margin
        for e in self.events:
            yield "position_events", e.account, f"{e.account} #{e.ticket} {e.kind}", e
        for tkey, trailing in self.trailing.items():
            yield "trailing_stops", trailing.account, _key(tkey), trailing

    def about(self) -> dict[str, Any]:
        """The tables and accounts this buffer has rows of, for the log line of a part that
        failed (at most :data:`_ACCOUNTS_LOGGED` accounts named)."""
        tables: dict[str, None] = {}
        accounts: set[str] = set()
        for table, account, _, _ in self.rows():
            tables[table] = None
            accounts.add(str(account))
        named = sorted(accounts)[:_ACCOUNTS_LOGGED]
        return {"tables": list(tables), "accounts": named, "account_count": len(accounts)}

    def __len__(self) -> int:
        return (
            len(self.positions)
            + len(self.deals)
            + len(self.accounts)
            + len(self.margins)
            + len(self.events)
            + len(self.trailing)
        )

    def split(self, max_rows: int) -> list[Buffer]:
        """Consecutive parts of at most ``max_rows`` rows each, in table order, so that a
        large flush (the first snapshots of many accounts) holds the database's write lock
        for one part at a time."""
        parts = [Buffer.empty()]
        count = 0

        def room() -> Buffer:
            nonlocal count
            if count >= max_rows:
                parts.append(Buffer.empty())
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


_ACCOUNTS_LOGGED = 20


def _key(key: tuple[Any, ...]) -> str:
    return "/".join(str(k) for k in key)


_TRANSIENT_TYPES = (
    sqlite3.OperationalError,  # locked, busy, disk full, I/O error, read-only file
    SqlOperationalError,  # the same, and PostgreSQL's connection, lock and shutdown classes
    DisconnectionError,
    PoolTimeoutError,  # no pooled connection free in time
    JournalNotOpenError,
    ConnectionError,
    TimeoutError,
)
_TRANSIENT_SQLSTATES = ("08", "25006", "40", "53", "57", "58")
"""PostgreSQL error classes that say nothing of the rows: connection, read-only transaction
(a standby, during a failover: the driver calls it an InternalError), transaction rollback
(deadlock, serialization), insufficient resources, operator intervention, system error."""


def transient(exc: BaseException) -> bool:
    """A failure that retrying can cure (the database is busy, locked or unreachable), as
    opposed to a row it refuses for what it holds (an integrity or data error, a value the
    driver cannot bind: ``OverflowError``, ``ValueError``, ``TypeError``, anything else).

    The distinction decides what a flush does with its rows (:meth:`SyncStore.flush`): kept
    for the next flush, or isolated so that only the refused ones are dropped. Guessing
    "transient" for a row's own fault would retry it forever; guessing "refused" for an
    outage would drop good rows, so only failures known to be about the database count."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    # A corrupt or foreign file (SQLITE_CORRUPT, SQLITE_NOTADB) is no row's fault either; its
    # subclasses (IntegrityError, DataError, ...) are.
    if isinstance(exc, _TRANSIENT_TYPES) or type(exc) is sqlite3.DatabaseError:
        return True
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate.startswith(_TRANSIENT_SQLSTATES):
        return True
    orig = exc.orig if isinstance(exc, StatementError) else None
    return orig is not None and orig is not exc and transient(orig)


FLUSH_ROWS_MAX = 100
"""Rows per write transaction (~1-2 ms of SQLite work): the journal's order intents wait
for the same file's write lock (mtgate.store.sqlite_lock) for at most one of them."""


# --- rows ------------------------------------------------------------------------------------


_KEYS = ("account_login", "account_server", "ticket")
Write = tuple[Table, tuple[str, ...] | None, list[dict[str, Any]]]
"""A table, its conflict keys (None: a plain insert) and its rows."""


def _writes(buffer: Buffer, ts: TsOut) -> list[Write]:
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


Emitter = Callable[[Buffer], list[Entry]]
"""Makes the outbox entries of a buffer's rows (position events, account syncs)."""


def write(engine: Engine, buffer: Buffer, emit: Emitter | None = None) -> None:
    """One transaction, the rows' outbox entries (``emit``) included. On SQLite the rows go
    straight to the driver with precomputed SQL: the journal's intent commits share the
    file's write lock, so the lock is held for the driver's work only (~0.3 ms for a second's
    worth of rows), not SQLAlchemy's (~3 ms)."""
    entries = [] if emit is None else emit(buffer)
    if engine.dialect.name == "sqlite":
        _write_sqlite(engine, buffer, entries)
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
        outbox.insert_rows(conn, entries)  # last: the outbox lock is held the least


def _sqlite_sql(table: Table, keys: tuple[str, ...] | None, columns: Sequence[str]) -> str:
    cols = ", ".join(f'"{c}"' for c in columns)
    sql = f'INSERT INTO "{table.name}" ({cols}) VALUES ({", ".join("?" * len(columns))})'
    if keys is None:
        return sql
    updates = ", ".join(f'"{c}" = excluded."{c}"' for c in columns if c not in keys)
    conflict = ", ".join(f'"{k}"' for k in keys)
    return f"{sql} ON CONFLICT ({conflict}) DO UPDATE SET {updates}"


_READABLE_MS = (
    (datetime.min - datetime(1970, 1, 1)) // _MS,
    (datetime.max - datetime(1970, 1, 1)) // _MS,
)


def _readable_sqlite_ts(ms: int) -> str:
    """:func:`sqlite_ts`, refusing a time this store could not read back: SQLite keeps any
    year, but the reads here go through SQLAlchemy's ``DATETIME``, which parses years 1-9999
    only, so one such row (a terminal's far-future time) would make every later read of its
    account raise. PostgreSQL refuses the same row; here it is refused before it is written."""
    low, high = _READABLE_MS
    if not low <= ms <= high:
        raise ValueError(f"time {ms} ms is outside the years 1-9999")
    return sqlite_ts(ms)


def _write_sqlite(engine: Engine, buffer: Buffer, entries: list[Entry]) -> None:
    batches = [
        (_sqlite_sql(table, keys, list(rows[0])), [tuple(r.values()) for r in rows])
        for table, keys, rows in _writes(buffer, _readable_sqlite_ts)
        if rows
    ]
    trailing = [_trailing_values(s, _readable_sqlite_ts) for s in buffer.trailing.values()]
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        with writer_lock(engine.url.database or ":memory:"):  # the journal's intents wait less
            cur.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in batches:
                    cur.executemany(sql, params)
                for values in trailing:
                    _write_trailing_sqlite(cur, values)
                outbox.sqlite_insert(cur, entries, _readable_sqlite_ts)
                cur.execute("COMMIT")
            except BaseException:
                _roll_back(raw)
                raise
    finally:
        raw.close()


def _roll_back(raw: Any) -> None:
    """Undo a failed write so the pooled connection holds no write lock. SQLite has already
    rolled back after some errors (a full disk, an I/O error), and then ``ROLLBACK`` itself
    fails: that error must not replace the write's own, which decides whether the rows are
    kept or isolated (:func:`transient`), so a connection that cannot roll back is discarded
    instead."""
    connection = raw.driver_connection
    if not connection.in_transaction:
        return
    try:
        connection.execute("ROLLBACK")
    except sqlite3.Error as exc:
        log.warning("sync store rollback failed; connection discarded", error=repr(exc))
        raw.invalidate()


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
        "comment": p.comment,
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


def position_from_row(r: Any) -> PositionState:
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
        "comment": d.comment,
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
        "finished_reason": s.finished_reason,
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


def trailing_from_row(r: Any) -> TrailingState:
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
