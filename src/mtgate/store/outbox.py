"""The outbox table's writes and reads (docs/events.md, "Outbox").

Writers insert :class:`~mtgate.events.model.Entry` rows inside their own transaction: the
SQLite journal through its cursor (:func:`sqlite_insert`), the PostgreSQL journal and the sync
store through SQLAlchemy (:func:`insert`). On PostgreSQL a BIGSERIAL is handed out at insert
time and transactions may commit in another order, so a reader could see ``seq`` 12 before
11 commits and skip 11 for good; every inserting transaction therefore first takes the
transaction-scoped advisory lock :data:`PG_LOCK`, which makes the commit order the ``seq``
order. SQLite has one writer at a time, which does the same by construction.

Reads (:class:`OutboxReader`) run in a worker thread on a connection of their own.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from sqlalchemy import Connection, Engine, delete, func, insert, select, text

from mtgate.events.model import Entry, Event
from mtgate.store import rows
from mtgate.store.models import outbox, outbox_cursors
from mtgate.store.sqlite_lock import writer_lock

PG_LOCK: Final = 0x6D74_6F62  # "mtob"
"""The advisory lock key every PostgreSQL transaction that inserts outbox rows takes first."""

COLUMNS: Final = (
    "event_id",
    "type",
    "key",
    "account_login",
    "account_server",
    "terminal_id",
    "data",
    "at",
)
SQLITE_INSERT: Final = (
    f"INSERT INTO outbox ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
)
_PG_LOCK_SQL: Final = text(f"SELECT pg_advisory_xact_lock({PG_LOCK})")

Ts = Callable[[int], Any]


def values(entry: Entry, ts: Ts) -> tuple[Any, ...]:
    """The row of ``entry``, its time through ``ts`` (the backend's timestamp conversion)."""
    return (
        entry.event_id,
        entry.type,
        entry.key,
        entry.account_login,
        entry.account_server,
        entry.terminal_id,
        entry.data.decode(),
        ts(entry.at_ms),
    )


def sqlite_insert(cur: sqlite3.Cursor | Any, entries: Sequence[Entry], ts: Ts) -> None:
    """Insert ``entries`` in the cursor's open transaction, in the order they were made."""
    if len(entries) == 1:
        cur.execute(SQLITE_INSERT, values(entries[0], ts))
    elif entries:
        ordered = sorted(entries, key=_made)
        cur.executemany(SQLITE_INSERT, [values(e, ts) for e in ordered])


def _made(entry: Entry) -> int:
    return entry.n


def insert_rows(conn: Connection, entries: Sequence[Entry]) -> None:
    """Insert ``entries`` in the connection's open transaction (SQLAlchemy, any dialect)."""
    if not entries:
        return
    if conn.dialect.name == "postgresql":
        conn.execute(_PG_LOCK_SQL)
    ordered = sorted(entries, key=_made)
    conn.execute(
        insert(outbox),
        [dict(zip(COLUMNS, values(e, rows.ms_to_datetime), strict=True)) for e in ordered],
    )


@dataclass(frozen=True, slots=True)
class Stored:
    """An outbox row as read back: the envelope a sink sends, and its account."""

    event: Event
    account_login: int | None
    account_server: str | None
    at_ms: int


def _iso(ms: int) -> str:
    return rows.ms_to_datetime(ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _stored(row: Any) -> Stored:
    at = rows.datetime_to_ms(row.at)
    account = None if row.account_login is None else f"{row.account_login}@{row.account_server}"
    event = Event(
        id=row.event_id,
        seq=row.seq,
        type=row.type,
        at=_iso(at),
        key=row.key,
        account=account,
        terminal_id=row.terminal_id,
        data=_raw(row.data),
    )
    return Stored(event, row.account_login, row.account_server, at)


def _raw(data: str) -> msgspec.Raw:
    return msgspec.Raw(data.encode())


_SQLITE_AFTER: Final = (
    "SELECT seq, event_id, type, key, account_login, account_server, terminal_id, data, at "
    "FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?"
)


def _sqlite_stored(row: tuple[Any, ...]) -> Stored:
    """A row read by the stdlib driver: ``at`` is SQLAlchemy's SQLite text
    (``YYYY-MM-DD HH:MM:SS.ffffff``), turned into RFC 3339 by slicing, not parsing."""
    seq, event_id, type_, key, login, server, terminal_id, data, at = row
    at_ms = rows.sqlite_ts_to_ms(at)
    iso = f"{at[:10]}T{at[11:23]}Z" if len(at) >= 23 and at[10] == " " else _iso(at_ms)
    account = None if login is None else f"{login}@{server}"
    event = Event(event_id, seq, type_, iso, key, account, terminal_id, msgspec.Raw(data.encode()))
    return Stored(event, login, server, at_ms)


PRUNE_BATCH = 2000
"""Events deleted per transaction by :meth:`OutboxReader.prune`."""


class OutboxReader:
    """Reads of the outbox and the sinks' cursors; every method blocks (call it in a thread).

    On SQLite the tail's reads (:meth:`after`, many per second) use one stdlib connection of
    their own, serialised by a lock, instead of SQLAlchemy: reading the events back measured
    as costly as writing them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sqlite: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        if engine.dialect.name == "sqlite" and engine.url.database:
            self._sqlite = sqlite3.connect(
                engine.url.database, check_same_thread=False, isolation_level=None
            )

    def close(self) -> None:
        with self._lock:
            if self._sqlite is not None:
                self._sqlite.close()
                self._sqlite = None
        self.engine.dispose()

    def after(self, seq: int, limit: int) -> list[Stored]:
        """Up to ``limit`` events after ``seq``, in ``seq`` order."""
        if self._sqlite is not None:
            with self._lock:
                found = self._sqlite.execute(_SQLITE_AFTER, (seq, limit)).fetchall()
            return [_sqlite_stored(r) for r in found]
        stmt = select(outbox).where(outbox.c.seq > seq).order_by(outbox.c.seq).limit(limit)
        with self.engine.connect() as conn:
            return [_stored(r) for r in conn.execute(stmt)]

    def head(self) -> int:
        """The last ``seq`` written (0: none yet)."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(outbox.c.seq), 0))).scalar_one())

    def oldest(self) -> int | None:
        """The first ``seq`` still kept (None: the outbox is empty)."""
        with self.engine.connect() as conn:
            found = conn.execute(select(func.min(outbox.c.seq))).scalar_one()
        return None if found is None else int(found)

    def cursors(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {r.sink: int(r.seq) for r in conn.execute(select(outbox_cursors))}

    def _writing(self) -> contextlib.AbstractContextManager[object]:
        """On SQLite, the file's in-process writer lock (mtgate.store.sqlite_lock): the
        journal's order intents then wait for these writes without SQLite's sleeps."""
        if self.engine.dialect.name == "sqlite":
            return writer_lock(self.engine.url.database or ":memory:")
        return contextlib.nullcontext()

    def save_cursor(self, sink: str, seq: int, at_ms: int) -> None:
        row = {"sink": sink, "seq": seq, "updated_at": rows.ms_to_datetime(at_ms)}
        with self._writing(), self.engine.begin() as conn:
            done = conn.execute(
                outbox_cursors.update()
                .where(outbox_cursors.c.sink == sink)
                .values(seq=seq, updated_at=row["updated_at"])
            )
            if done.rowcount == 0:
                conn.execute(insert(outbox_cursors), row)

    def prune(self, before_ms: int, up_to_seq: int) -> tuple[int, int]:
        """Delete the events older than ``before_ms`` that every durable sink has relayed
        (``seq <= up_to_seq``); how many went, and the highest ``seq`` of them (0: none).

        In transactions of at most :data:`PRUNE_BATCH` events: a minute of events at a
        thousand orders a second is a few hundred thousand rows, and the journal's order
        intents wait for the same write lock."""
        where = (outbox.c.at < rows.ms_to_datetime(before_ms), outbox.c.seq <= up_to_seq)
        total, highest = 0, 0
        while True:
            with self._writing(), self.engine.begin() as conn:
                batch = select(outbox.c.seq).where(*where).order_by(outbox.c.seq)
                last = conn.execute(
                    select(func.max(batch.limit(PRUNE_BATCH).subquery().c.seq))
                ).scalar_one()
                if last is None:
                    return total, highest
                gone = conn.execute(delete(outbox).where(*where, outbox.c.seq <= last))
            total += int(gone.rowcount or 0)
            highest = int(last)
