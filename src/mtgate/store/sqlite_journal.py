"""The SQLite journal: the default store, and the one on the order hot path.

Each write is one transaction of a few statements on a stdlib ``sqlite3`` connection in WAL
mode, run directly on the event loop thread: it costs tens of microseconds, and a hop to an
executor thread would cost more than that. The SQL comes from the models' tables
(:mod:`mtgate.store.queries`); the driver keeps each text prepared in its statement cache, so
the hot path only binds and steps. Where the time goes, and what would make it cheaper:
docs/schema.md, "Cost of a journal write".

Intent log and write-behind: ``record_submitted`` commits one small row to ``journal_intents``
(the order's rows, encoded) before it returns, because the bridge sends the order's frame right
after; that row is the durable intent. The order tables are written behind it: the intent is
folded into ``execution_orders`` / ``order_events`` (and its log row deleted), and status
changes and notes (``record_transition`` / ``record_event``, checked at once against the state
machine and the status this journal wrote last) are applied, all in one transaction at the end
of the current event-loop iteration, while the order is on the wire. Start-up folds in any
intent a crash left in the log before anything else runs. Reads flush the queue
first, so a reader always sees every write made before it. A status change that a crash keeps
from the disk is recovered from the terminal on restart (the order is still SUBMITTED or
UNKNOWN in the journal, so it is looked up by its client order id).

Durability follows ``PRAGMA synchronous``: ``normal`` makes every commit survive a crash of
the bridge process (the WAL write is in the OS before ``COMMIT`` returns); ``full`` and ``extra``
also fsync the WAL on each commit and survive power loss, for ~100-200 µs more per commit.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple

import msgspec
from sqlalchemy import URL

from mtgate import logs
from mtgate.domain.orders import TERMINAL as FINAL_STATUSES
from mtgate.domain.orders import OrderStatus, Trigger
from mtgate.domain.records import OrderRecord
from mtgate.store import queries, rows
from mtgate.store.migrate import migrate
from mtgate.store.models import bridge_health_metrics, execution_orders, order_events
from mtgate.store.sqlite_checkpoint import BACKSTOP_PAGES, Checkpointer, CheckpointStats
from mtgate.store.values import (
    DuplicateOrderError,
    HealthSample,
    JournalError,
    JournalNotOpenError,
    OrderEvent,
    StaleOrderError,
    check_transition,
)

SYNCHRONOUS_LEVELS: Final = frozenset({"normal", "full", "extra"})
"""``off`` is refused: a journal that may lose a commit cannot back "persist before send"."""

_INSERT_ORDER: Final = queries.sqlite_insert(execution_orders, rows.ORDER_COLUMNS)
_INSERT_EVENT: Final = queries.sqlite_insert(order_events, rows.EVENT_COLUMNS)
_INSERT_HEALTH: Final = queries.sqlite_insert(bridge_health_metrics, rows.HEALTH_COLUMNS)
_UPDATE_ORDER: Final = queries.sqlite_guarded_update(
    execution_orders, rows.MUTABLE_COLUMNS, ("order_id", "client_order_id", "order_status")
)
_INSERT_INTENT: Final = "INSERT INTO journal_intents (client_order_id, payload) VALUES (?, ?)"
_DELETE_INTENTS: Final = "DELETE FROM journal_intents WHERE seq <= ?"
_DELETE_INTENT: Final = "DELETE FROM journal_intents WHERE seq = ?"
_SELECT_CLIENT_ID: Final = "SELECT 1 FROM execution_orders WHERE client_order_id = ?"
_SELECT_BY_CLIENT_ID: Final = queries.sqlite_sql(queries.SELECT_BY_CLIENT_ID)
_SELECT_BY_TICKET: Final = queries.sqlite_sql(queries.SELECT_BY_TICKET)
_SELECT_ID_STATUS: Final = (
    "SELECT order_id, order_status FROM execution_orders WHERE client_order_id = :client_order_id"
)
_SELECT_EXISTING: Final = queries.sqlite_sql(queries.SELECT_EXISTING)
_SELECT_EVENTS: Final = queries.sqlite_sql(queries.SELECT_EVENTS)
_STATEMENT_CACHE: Final = 4 * queries.NullAwareSql.MAX_PATTERNS
BUSY_TIMEOUT_S: Final = 1.0
"""How long a write waits for another process's write lock (there should be none: the bridge is
the only writer) while blocking the event loop, before it fails and the order is not sent."""
_UPDATED_AT: Final = rows.ORDER_COLUMNS.index("updated_at")
_M_UPDATED_AT: Final = rows.MUTABLE_COLUMNS.index("updated_at")

FLUSH_INTERVAL_S: Final = 0.01
"""How long written-behind changes wait: long enough that an order's intent and its answer
usually share one insert, short enough that other readers see the tables a moment later."""

_ts = rows.sqlite_ts
log = logs.get("mtgate.journal")


class SqliteJournal:
    """Journal on a SQLite file. Use from one event loop thread (the stdlib connection's rule).

    Args:
        path: the database file; its parent directory is created if missing.
        synchronous: ``normal`` (survives a process crash), ``full`` or ``extra`` (also survive
            power loss, one fsync per commit).
        checkpoint_interval_s: with ``normal``, how often a background thread checkpoints the
            WAL (see :mod:`mtgate.store.sqlite_checkpoint`); None leaves checkpoints to the
            writing connection, at SQLite's default threshold, stalls included. ``full`` and
            ``extra`` never use the thread: their commits already fsync the WAL, which makes the
            writer's own checkpoints cheap, and a second thread fsyncing the same files measured
            slower at p50 and p99.
    """

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "normal",
        checkpoint_interval_s: float | None = 0.1,
    ) -> None:
        level = synchronous.lower()
        if level not in SYNCHRONOUS_LEVELS:
            raise ValueError(
                f"synchronous={synchronous!r}: expected one of {sorted(SYNCHRONOUS_LEVELS)}"
            )
        self.path = path
        self.synchronous = level
        self.checkpoint_interval_s = checkpoint_interval_s
        self._conn: sqlite3.Connection | None = None
        self._cur: sqlite3.Cursor | None = None
        self._checkpointer: Checkpointer | None = None
        self._behind: list[_Write | _Fold] = []
        self._pending_folds: dict[str, _Fold] = {}
        self._intents: list[tuple[str, bytes, tuple[Any, Any, Any]]] = []
        self._intent_batch: asyncio.Future[None] | None = None
        self._unfolded: set[str] = set()
        self._flush_handle: asyncio.Handle | None = None
        self._status: dict[str, tuple[str, OrderStatus]] = {}
        """Order id and status each unfinished order will have once the queue is written."""
        self.write_errors = 0

    async def open(self) -> None:
        """Create the file and directory if needed, migrate, and open the connection."""
        if self._conn is not None:
            raise JournalError(f"journal {self.path} is already open")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A URL object, not text: a path may contain characters a URL string would misread.
        await asyncio.to_thread(migrate, URL.create("sqlite", database=str(self.path)))
        conn = sqlite3.connect(
            self.path,
            isolation_level=None,  # transactions are explicit: BEGIN IMMEDIATE ... COMMIT
            timeout=BUSY_TIMEOUT_S,
            cached_statements=_STATEMENT_CACHE,
        )
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise JournalError(f"{self.path}: SQLite refused WAL mode (got {mode!r})")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            self._fold_logged_intents(conn)
            self._checkpointer = self._start_checkpointer(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._cur = conn.cursor()  # one cursor for every write: saves an allocation per statement

    def _start_checkpointer(self, conn: sqlite3.Connection) -> Checkpointer | None:
        if self.checkpoint_interval_s is None or self.synchronous != "normal":
            return None
        conn.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
        checkpointer = Checkpointer(
            self.path, synchronous=self.synchronous, interval_s=self.checkpoint_interval_s
        )
        checkpointer.start()
        return checkpointer

    @property
    def checkpoint_stats(self) -> CheckpointStats | None:
        """The checkpoint thread's counters; None without one."""
        return None if self._checkpointer is None else self._checkpointer.stats

    async def close(self) -> None:
        if self._conn is not None:
            self._flush()
        conn, self._conn, self._cur = self._conn, None, None
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            await asyncio.to_thread(checkpointer.stop)
        if conn is not None:
            conn.close()  # the last connection to close checkpoints and removes the WAL

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise JournalNotOpenError()
        return self._conn

    def _cursor(self) -> sqlite3.Cursor:
        if self._cur is None:
            raise JournalNotOpenError()
        return self._cur

    async def record_submitted(self, order: OrderRecord, *, new_id: bool = False) -> None:
        """Journal a new order as SUBMITTED (events: created, then ``send``), durably: one
        intent-log row committed now, the order tables written behind it."""
        check_transition(OrderStatus.NEW, Trigger.SEND, order.status)
        cur = self._cursor()
        cid = order.client_order_id
        stored_id = rows.sqlite_uuid(order.order_id)
        if cid in self._status or cid in self._unfolded:
            raise DuplicateOrderError(cid, order.order_id)
        _check_row(order)  # the tables' CHECKs, now: the row itself is only written behind
        if not new_id and cur.execute(_SELECT_CLIENT_ID, (cid,)).fetchone() is not None:
            raise DuplicateOrderError(cid, order.order_id)
        row = rows.order_row(order, stored_id, _ts)
        created = rows.created_row(order, stored_id, _ts(order.placed_at_ms))
        moved = rows.event_row(
            order, stored_id, OrderStatus.NEW, Trigger.SEND, "", row[_UPDATED_AT]
        )
        payload = _intent_encoder.encode((row, created, moved))
        # The id is taken now, so a second order with it in the same batch is refused.
        self._unfolded.add(cid)
        self._intents.append((cid, payload, (row, created, moved)))
        batch = self._intent_batch
        if batch is None:
            batch = self._intent_batch = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(self._commit_intents)
        try:
            await batch  # group commit: every intent made in this loop iteration, one commit
        except BaseException:
            self._unfolded.discard(cid)
            raise
        self._remember(order, order.status)

    def _commit_intents(self) -> None:
        """Commit the intents queued in this loop iteration, then wake their callers."""
        batch, self._intent_batch = self._intent_batch, None
        intents, self._intents = self._intents, []
        assert batch is not None
        cur = self._cur
        if cur is None:
            batch.set_exception(JournalNotOpenError())
            return
        folds: list[_Write | _Fold] = []
        try:
            cur.execute("BEGIN IMMEDIATE")
            for cid, payload, (row, created, moved) in intents:
                cur.execute(_INSERT_INTENT, (cid, payload))
                assert cur.lastrowid is not None
                folds.append(_Fold(cur.lastrowid, cid, row, [created, moved]))
            cur.execute("COMMIT")
        except BaseException as exc:
            self._rollback(cur)
            if not batch.cancelled():
                batch.set_exception(exc)
            return
        self._behind.extend(folds)
        self._pending_folds.update((f.client_order_id, f) for f in folds if isinstance(f, _Fold))
        if not batch.cancelled():
            batch.set_result(None)  # first: the callers send their frames before the fold runs
        self._schedule_flush()

    async def record_refused(self, order: OrderRecord) -> None:
        """Journal a new order refused before sending (events: created, then ``refuse``)."""
        self._flush()
        if order.client_order_id in self._status:
            raise DuplicateOrderError(order.client_order_id, order.order_id)
        self._insert(order, Trigger.REFUSE, order.rejection_reason or "")

    def _insert(self, order: OrderRecord, trigger: Trigger, detail: str) -> None:
        check_transition(OrderStatus.NEW, trigger, order.status)
        cur = self._cursor()
        stored_id = rows.sqlite_uuid(order.order_id)
        row = rows.order_row(order, stored_id, _ts)
        created = rows.created_row(order, stored_id, _ts(order.placed_at_ms))
        moved = rows.event_row(order, stored_id, OrderStatus.NEW, trigger, detail, row[_UPDATED_AT])
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.execute(*_INSERT_ORDER.bind(row))
            cur.execute(*_INSERT_EVENT.bind(created))
            cur.execute(*_INSERT_EVENT.bind(moved))
        except sqlite3.IntegrityError as exc:
            self._rollback(cur)
            self._raise_if_duplicate(cur, order, stored_id, exc)
            raise
        except BaseException:
            self._rollback(cur)
            raise
        cur.execute("COMMIT")
        self._remember(order, order.status)

    @staticmethod
    def _rollback(cur: sqlite3.Cursor) -> None:
        if cur.connection.in_transaction:
            cur.execute("ROLLBACK")

    @staticmethod
    def _raise_if_duplicate(
        cur: sqlite3.Cursor, order: OrderRecord, stored_id: str, exc: Exception
    ) -> None:
        params = {"client_order_id": order.client_order_id, "order_id": stored_id}
        if cur.execute(_SELECT_EXISTING, params).fetchone() is not None:
            raise DuplicateOrderError(order.client_order_id, order.order_id) from exc

    async def record_transition(
        self, order: OrderRecord, previous: OrderStatus, trigger: Trigger, detail: str = ""
    ) -> None:
        """Journal ``previous → order.status`` on ``trigger`` and the record's mutable fields."""
        check_transition(previous, trigger, order.status)
        self._queue(order, previous, trigger, detail)

    async def record_event(self, order: OrderRecord, detail: str) -> None:
        """Journal a change that keeps the status (e.g. a modify of a placed order)."""
        self._queue(order, order.status, None, detail)

    def _queue(
        self, order: OrderRecord, previous: OrderStatus, trigger: Trigger | None, detail: str
    ) -> None:
        """Check the change against the journalled status now; write it behind.

        The row is taken from ``order`` now: later changes to the record are later writes."""
        cur = self._cursor()
        cid = order.client_order_id
        known = self._status.get(cid)
        if known is None:
            self._flush()
            known = self._stored_status(cur, cid)
        if known is None or known[1] is not previous or known[0] != order.order_id.lower():
            raise StaleOrderError(cid, previous, None if known is None else known[1])
        stored_id = rows.sqlite_uuid(order.order_id)
        fold = self._pending_folds.get(cid)
        if fold is not None:  # not written yet: write it as it stands now
            fold.row = rows.order_row(order, stored_id, _ts)
            at = fold.row[_UPDATED_AT]
            fold.events.append(rows.event_row(order, stored_id, previous, trigger, detail, at))
        else:
            changes = rows.mutable_row(order, _ts)
            guard = (stored_id, cid, rows.STATUS_VALUES[previous])
            at = changes[_M_UPDATED_AT]
            event = rows.event_row(order, stored_id, previous, trigger, detail, at)
            self._behind.append(_Write(cid, changes + guard, event))
        self._remember(order, order.status)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(
                FLUSH_INTERVAL_S, self._flush
            )

    def _remember(self, order: OrderRecord, status: OrderStatus) -> None:
        if status in FINAL_STATUSES:
            self._status.pop(order.client_order_id, None)
        else:
            self._status[order.client_order_id] = (order.order_id.lower(), status)

    def _write_behind(self, cur: sqlite3.Cursor) -> None:
        """Execute the queued writes inside the caller's transaction."""
        queued, self._behind = self._behind, []
        folded = 0
        for write in queued:
            if isinstance(write, _Fold):
                self._pending_folds.pop(write.client_order_id, None)
                self._fold(cur, write.row, write.events)
                folded = write.seq
                continue
            if cur.execute(*_UPDATE_ORDER.bind(write.changes)).rowcount != 1:
                # Checked when queued against the status this journal wrote last; only
                # another writer on the same file could get here.
                self.write_errors += 1
                log.error("journal write lost its order", client_order_id=write.client_order_id)
                continue
            cur.execute(*_INSERT_EVENT.bind(write.event))
        if folded:
            cur.execute(_DELETE_INTENTS, (folded,))
            self._unfolded.difference_update(
                w.client_order_id for w in queued if isinstance(w, _Fold)
            )

    @staticmethod
    def _fold(cur: sqlite3.Cursor, row: Sequence[Any], events: Sequence[Sequence[Any]]) -> None:
        cur.execute(*_INSERT_ORDER.bind(tuple(row)))
        for event in events:
            cur.execute(*_INSERT_EVENT.bind(tuple(event)))

    def _fold_logged_intents(self, conn: sqlite3.Connection) -> int:
        """Fold in what a crash left in the intent log (start-up, before anything else)."""
        cur = conn.cursor()
        logged = cur.execute("SELECT seq, payload FROM journal_intents ORDER BY seq").fetchall()
        if not logged:
            return 0
        cur.execute("BEGIN IMMEDIATE")
        try:
            for _, payload in logged:
                row, created, moved = _intent_decoder.decode(payload)
                self._fold(cur, row, (created, moved))
            cur.execute(_DELETE_INTENTS, (logged[-1][0],))
            cur.execute("COMMIT")
        except BaseException:
            self._rollback(cur)
            raise
        log.info("folded logged intents into the journal", count=len(logged))
        return len(logged)

    def _flush(self) -> None:
        """Commit the queued writes now (end of loop iteration, before a read, at close)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._behind or self._cur is None:
            return
        cur = self._cur
        pending = list(self._behind)
        try:
            cur.execute("BEGIN IMMEDIATE")
            self._write_behind(cur)
            cur.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            # One bad row must not hold the others back: write them one by one.
            self._rollback(cur)
            log.error("journal batch refused; writing its rows one by one", error=str(exc))
            self._behind = []
            self._write_one_by_one(cur, pending)
        except sqlite3.Error as exc:
            self._rollback(cur)
            # Nothing of the batch is lost: the intents are still in the log (folded again at
            # the next flush or start-up), and the status changes are queued again.
            self._behind = pending + self._behind
            for write in pending:
                if isinstance(write, _Fold):
                    self._unfolded.add(write.client_order_id)
                    self._pending_folds[write.client_order_id] = write
            self.write_errors += 1
            log.error("journal write failed; will retry", error=str(exc))

    def _write_one_by_one(self, cur: sqlite3.Cursor, pending: list[_Write | _Fold]) -> None:
        for write in pending:
            self._behind = [write]
            try:
                cur.execute("BEGIN IMMEDIATE")
                self._write_behind(cur)
                cur.execute("COMMIT")
            except sqlite3.IntegrityError as exc:
                self._rollback(cur)
                self.write_errors += 1
                self._unfolded.discard(write.client_order_id)
                if isinstance(write, _Fold):
                    cur.execute(_DELETE_INTENT, (write.seq,))
                log.error(
                    "journal refused a row; the terminal remains the record of this order",
                    client_order_id=write.client_order_id,
                    error=str(exc),
                )
        self._behind = []

    @staticmethod
    def _stored_status(cur: sqlite3.Cursor, client_order_id: str) -> tuple[str, OrderStatus] | None:
        row = cur.execute(_SELECT_ID_STATUS, {"client_order_id": client_order_id}).fetchone()
        return None if row is None else (str(uuid.UUID(row[0])), OrderStatus(row[1]))

    async def get(self, client_order_id: str) -> OrderRecord | None:
        conn = self._require()
        self._flush()
        row = conn.execute(_SELECT_BY_CLIENT_ID, {"client_order_id": client_order_id}).fetchone()
        return None if row is None else _record(row)

    async def find_by_ticket(
        self, account_login: int, account_server: str, ticket: int
    ) -> OrderRecord | None:
        """The order whose MetaTrader ticket is ``ticket`` on this account, if journalled."""
        conn = self._require()
        self._flush()
        params = {
            "account_login": account_login,
            "account_server": account_server,
            "ticket": ticket,
        }
        found = conn.execute(_SELECT_BY_TICKET, params).fetchall()
        if len(found) > 1:
            raise JournalError(
                f"ticket {ticket} of {account_login}@{account_server} belongs to "
                f"{len(found)} journalled orders"
            )
        return _record(found[0]) if found else None

    async def list_orders(
        self,
        *,
        account_login: int | None = None,
        statuses: Collection[OrderStatus] | None = None,
        limit: int = 1000,
    ) -> list[OrderRecord]:
        """Newest first, at most ``limit``; ``statuses=()`` matches nothing."""
        conn = self._require()
        self._flush()
        if limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        sql, params = queries.sqlite_sql_with_params(
            queries.list_orders(account_login, statuses, limit)
        )
        return [_record(row) for row in conn.execute(sql, params)]

    async def events(self, client_order_id: str) -> list[OrderEvent]:
        """The order's audit trail, oldest first; empty for an unknown order."""
        conn = self._require()
        self._flush()
        cursor = conn.execute(_SELECT_EVENTS, {"client_order_id": client_order_id})
        return [
            rows.event_from_row(
                dict(zip(rows.EVENT_READ_COLUMNS, row, strict=True)), rows.sqlite_ts_to_ms
            )
            for row in cursor
        ]

    async def record_health(self, sample: HealthSample) -> None:
        cur = self._cursor()
        row = rows.health_row(sample, uuid.uuid4().hex, _ts)
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.execute(*_INSERT_HEALTH.bind(row))
            cur.execute("COMMIT")
        except BaseException:
            self._rollback(cur)
            raise


class _Write(NamedTuple):
    """A status change or note: update the order row, add an event."""

    client_order_id: str
    changes: tuple[Any, ...]
    event: tuple[Any, ...]


@dataclass(slots=True)
class _Fold:
    """A logged intent to fold into the order tables. Status changes queued before it is
    written are merged into it: the row is inserted as it stands then, with all its events,
    instead of inserted and updated."""

    seq: int
    client_order_id: str
    row: tuple[Any, ...]
    events: list[tuple[Any, ...]]


_intent_encoder = msgspec.msgpack.Encoder()
_intent_decoder = msgspec.msgpack.Decoder(tuple[list[Any], list[Any], list[Any]])


def _check_row(order: OrderRecord) -> None:
    """The CHECK constraints of ``execution_orders`` that a record can break (the others are
    enumerations the record's types already hold to)."""
    if not 1 <= len(order.client_order_id) <= 20:
        raise sqlite3.IntegrityError(
            "CHECK constraint failed: ck_execution_orders_client_order_id_length"
        )
    if order.retry_count < 0:
        raise sqlite3.IntegrityError("CHECK constraint failed: ck_execution_orders_retry_count")


def _record(row: tuple[Any, ...]) -> OrderRecord:
    named: Mapping[str, Any] = dict(zip(rows.ORDER_COLUMNS, row, strict=True))
    return rows.record_from_row(named, rows.sqlite_ts_to_ms)
