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

Nothing written behind is dropped: a flush never raises and never leaves a transaction open. A
transient failure (the file locked, I/O) keeps the whole queue for a retry; an item the database
refuses for good is quarantined (:mod:`mtgate.store.quarantine`) while the rest lands.

Durability follows ``PRAGMA synchronous``: ``normal`` makes every commit survive a crash of
the bridge process (the WAL write is in the OS before ``COMMIT`` returns); ``full`` and ``extra``
also fsync the WAL on each commit and survive power loss, for ~100-200 µs more per commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid
from collections.abc import Collection, Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

from sqlalchemy import URL, Engine
from sqlalchemy.pool import NullPool

from mtgate import logs
from mtgate.domain.orders import TERMINAL as FINAL_STATUSES
from mtgate.domain.orders import OrderStatus, Trigger
from mtgate.domain.records import OrderRecord
from mtgate.events.model import Entry, OrderOutbox, entries_of, entry_of
from mtgate.store import outbox, quarantine, queries, rejection_sql, rejections, rows
from mtgate.store.migrate import make_engine, migrate
from mtgate.store.models import bridge_health_metrics
from mtgate.store.sqlite_checkpoint import BACKSTOP_PAGES, Checkpointer, CheckpointStats
from mtgate.store.sqlite_lock import writer_lock
from mtgate.store.sqlite_writes import (
    INSERT_EVENT,
    INSERT_INTENT,
    INSERT_ORDER,
    UPDATE_ATTEMPT,
    Emit,
    Fold,
    Item,
    Write,
    encode_intent,
    fold_logged_intents,
    payload_of,
    quarantine_item,
    rollback,
    write_items,
)
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

SYNCHRONOUS_LEVELS: Final = frozenset({"normal", "full", "extra"})
"""``off`` is refused: a journal that may lose a commit cannot back "persist before send"."""

_INSERT_HEALTH: Final = queries.sqlite_insert(bridge_health_metrics, rows.HEALTH_COLUMNS)
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
RETRY_INTERVAL_S: Final = 1.0
"""After a transient failure, when the kept queue is tried again (sooner if a read or a close
flushes). Not sooner: each try may block the loop for up to ``BUSY_TIMEOUT_S``."""

_ts = lru_cache(maxsize=1024)(rows.sqlite_ts)
"""Memoised: an order's times repeat (placed, updated, its events' times), and a hit costs
no Python frame. Out-of-range times raise, and are not remembered."""
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
        self._write_lock = writer_lock(path)
        """Shared with the other writers of the file in this process (the sync store)."""
        self.synchronous = level
        self.checkpoint_interval_s = checkpoint_interval_s
        self._conn: sqlite3.Connection | None = None
        self._cur: sqlite3.Cursor | None = None
        self._checkpointer: Checkpointer | None = None
        self._reader: Engine | None = None
        """Connections for reads that run in worker threads (rejection analytics)."""
        self._behind: list[Item] = []
        self._pending_folds: dict[str, Fold] = {}
        self._intents: list[
            tuple[str, str, bytes, tuple[Any, Any, Any, Entry | None], asyncio.Future[None]]
        ] = []
        """Intents queued in this loop iteration, each with the future its caller awaits."""
        self._health: list[tuple[tuple[Any, ...], asyncio.Future[None]]] = []
        """Health samples queued in this loop iteration (one commit), with their futures."""
        self._unfolded: set[str] = set()
        """Client order ids taken that no ``execution_orders`` row holds: intents being
        committed or written behind, and quarantined intents (their orders may have been sent,
        so the id must never be used again)."""
        self._flush_handle: asyncio.Handle | None = None
        self._status: dict[str, tuple[str, OrderStatus]] = {}
        """Order id and status each unfinished order will have once the queue is written."""
        self.write_errors = 0
        """Flushes that failed and were kept for a retry, plus items quarantined."""
        self.quarantine_count = 0
        """Items this journal moved to the quarantine (each logged at ERROR): see
        :meth:`quarantined` for what they are."""
        self.unreadable_rows = 0
        """Rows ``list_orders`` left out because they cannot be read (each logged at ERROR)."""
        self.outbox: OrderOutbox | None = None
        """Makes the outbox entry of each order change (docs/events.md); None: no events."""
        self.dropped_events = 0
        """Outbox entries of no order the database refused (each logged at ERROR)."""

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
            self._recover(conn)
            self._checkpointer = self._start_checkpointer(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._cur = conn.cursor()  # one cursor for every write: saves an allocation per statement

    def _recover(self, conn: sqlite3.Connection) -> None:
        """Fold the logged intents in, and keep the ids of quarantined intents taken."""
        recovery = fold_logged_intents(conn, self.outbox)
        if recovery.folded:
            log.info("folded logged intents into the journal", count=recovery.folded)
        if recovery.quarantined:
            self.quarantine_count += len(recovery.quarantined)
            log.error(
                "logged intents could not be folded and are quarantined; the journal opened "
                "without them: a human must reconcile these orders with their terminals",
                count=len(recovery.quarantined),
                client_order_ids=recovery.quarantined,
            )
        self._unfolded.update(cid for (cid,) in conn.execute(quarantine.SQLITE_RESERVED))

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
            self._forget_queue()
        conn, self._conn, self._cur = self._conn, None, None
        checkpointer, self._checkpointer = self._checkpointer, None
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.dispose()
        if checkpointer is not None:
            await asyncio.to_thread(checkpointer.stop)
        if conn is not None:
            conn.close()  # the last connection to close checkpoints and removes the WAL

    def _forget_queue(self) -> None:
        """At close, after the last flush: what a transient failure kept cannot be written now.
        The kept folds' intents are still in the log (folded at the next open); status changes
        are lost to the journal, and said so."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        lost = sorted({w.client_order_id for w in self._behind if isinstance(w, Write)})
        if lost:
            log.error(
                "journal closed with status changes it could not write; a human must check "
                "these orders against their terminals",
                client_order_ids=lost,
            )
        self._behind, self._pending_folds, self._status = [], {}, {}
        self._unfolded = {cid for cid, *_ in self._intents}

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
        intent-log row committed now, the order tables written behind it.

        A caller cancelled while it waits does not cancel the group commit for the others; its
        own intent is committed (or fails) with the batch, and the journal then knows it as
        SUBMITTED, its id taken, although the caller sees ``CancelledError``."""
        check_transition(OrderStatus.NEW, Trigger.SEND, order.status)
        cur = self._cursor()
        cid = order.client_order_id
        stored_id = rows.sqlite_uuid(order.order_id)
        if cid in self._status or cid in self._unfolded:
            raise DuplicateOrderError(cid, order.order_id)
        _check_row(order)  # the tables' CHECKs, now: the row itself is only written behind
        if not new_id and cur.execute(_SELECT_CLIENT_ID, (cid,)).fetchone() is not None:
            raise DuplicateOrderError(cid, order.order_id)
        try:
            row = rows.order_row(order, stored_id, _ts)
        except rows.TIME_ERRORS:
            rows.check_times(order, _ts)  # names the time out of range, if that is the cause
            raise
        created = rows.created_row(order, stored_id, _ts(order.placed_at_ms))
        moved = rows.event_row(
            order, stored_id, OrderStatus.NEW, Trigger.SEND, "", row[_UPDATED_AT]
        )
        payload = encode_intent(row, created, moved)
        made = entry_of(self.outbox, order, OrderStatus.NEW, Trigger.SEND, "")
        # The id is taken now, so a second order with it in the same batch is refused.
        self._unfolded.add(cid)
        loop = asyncio.get_running_loop()
        if not self._intents:
            loop.call_soon(self._commit_intents)
        committed: asyncio.Future[None] = loop.create_future()
        self._intents.append(
            (cid, order.order_id.lower(), payload, (row, created, moved, made), committed)
        )
        # Group commit: every intent made in this loop iteration, one commit. Each caller
        # awaits a future of its own: one caller's cancellation cancels nobody else's wait
        # (and costs no extra loop iteration, as a shield of a shared future would).
        await committed

    def _commit_intents(self) -> None:
        """Commit the intents queued in this loop iteration, then wake their callers.

        The per-intent bookkeeping is done here, not by the callers after their await, so it
        holds for a caller that was cancelled meanwhile: a committed intent is SUBMITTED and
        its id stays taken; a failed one releases its id."""
        intents, self._intents = self._intents, []
        cur = self._cur
        folds: list[Fold] = []
        try:
            if cur is None:
                raise JournalNotOpenError()
            with self._transaction(cur):
                for cid, _, payload, (row, created, moved, made), _ in intents:
                    cur.execute(INSERT_INTENT, (cid, payload))
                    assert cur.lastrowid is not None
                    entries = [] if made is None else [made]
                    folds.append(Fold(cur.lastrowid, cid, row, [created, moved], entries))
        except BaseException as exc:
            self._unfolded.difference_update(cid for cid, *_ in intents)
            for *_, committed in intents:
                if not committed.cancelled():
                    committed.set_exception(exc)
            return
        status, pending = self._status, self._pending_folds
        for f, (cid, order_id, _, _, _) in zip(folds, intents, strict=True):
            pending[cid] = f
            status[cid] = (order_id, OrderStatus.SUBMITTED)
        self._behind.extend(folds)
        for *_, committed in intents:  # first: the callers send their frames before the fold
            if not committed.cancelled():
                committed.set_result(None)
        self._schedule_flush()

    async def record_refused(self, order: OrderRecord) -> None:
        """Journal a new order refused before sending (events: created, then ``refuse``).

        Refused as a duplicate while an order with its client id is being committed or written
        behind: that order may be on the wire, and its row must win the id."""
        self._flush()
        cid = order.client_order_id
        if cid in self._status or cid in self._unfolded or cid in self._pending_folds:
            raise DuplicateOrderError(cid, order.order_id)
        self._insert(order, Trigger.REFUSE, order.rejection_reason or "")

    def _insert(self, order: OrderRecord, trigger: Trigger, detail: str) -> None:
        check_transition(OrderStatus.NEW, trigger, order.status)
        cur = self._cursor()
        stored_id = rows.sqlite_uuid(order.order_id)
        try:
            row = rows.order_row(order, stored_id, _ts)
        except rows.TIME_ERRORS:
            rows.check_times(order, _ts)
            raise
        created = rows.created_row(order, stored_id, _ts(order.placed_at_ms))
        moved = rows.event_row(order, stored_id, OrderStatus.NEW, trigger, detail, row[_UPDATED_AT])
        made = entries_of(self.outbox, order, OrderStatus.NEW, trigger, detail)
        try:
            with self._transaction(cur):
                cur.execute(*INSERT_ORDER.bind(row))
                cur.execute(*INSERT_EVENT.bind(created))
                cur.execute(*INSERT_EVENT.bind(moved))
                outbox.sqlite_insert(cur, made, _ts)
        except sqlite3.IntegrityError as exc:
            self._raise_if_duplicate(cur, order, stored_id, exc)
            raise
        self._remember(order, order.status)

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

    async def record_attempt(
        self, order: OrderRecord, previous: OrderStatus, trigger: Trigger | None, detail: str
    ) -> None:
        """Journal a new attempt now, in a transaction of its own committed before return
        (the attempt's frame leaves after it, as a new order's does after its intent). What
        was queued before is written first, so the guard sees the status it left."""
        if trigger is not None:
            check_transition(previous, trigger, order.status)
        cur = self._cursor()
        self._flush()
        if self._behind:  # the queue could not be written: neither can this, in order
            raise JournalError(
                f"the journal could not write {len(self._behind)} queued change(s); "
                f"attempt of {order.client_order_id!r} not recorded"
            )
        stored_id = rows.sqlite_uuid(order.order_id)
        try:
            values = rows.attempt_row(order, _ts)
        except rows.TIME_ERRORS:
            rows.check_times(order, _ts)
            raise
        guard = (stored_id, order.client_order_id, rows.STATUS_VALUES[previous])
        at = values[len(rows.ATTEMPT_COLUMNS) + _M_UPDATED_AT]
        event = rows.event_row(order, stored_id, previous, trigger, detail, at)
        made = entries_of(self.outbox, order, previous, trigger, detail)
        with self._transaction(cur):
            if cur.execute(*UPDATE_ATTEMPT.bind(values + guard)).rowcount != 1:
                stored = self._stored_status(cur, order.client_order_id)
                raise StaleOrderError(
                    order.client_order_id, previous, None if stored is None else stored[1]
                )
            cur.execute(*INSERT_EVENT.bind(event))
            outbox.sqlite_insert(cur, made, _ts)
        self._remember(order, order.status)

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
        made = entry_of(self.outbox, order, previous, trigger, detail)
        try:
            if fold is not None:  # not written yet: write it as it stands now
                fold.row = rows.order_row(order, stored_id, _ts)
                at = fold.row[_UPDATED_AT]
                fold.events.append(rows.event_row(order, stored_id, previous, trigger, detail, at))
                if made is not None:
                    fold.outbox.append(made)
            else:
                changes = rows.mutable_row(order, _ts)
                guard = (stored_id, cid, rows.STATUS_VALUES[previous])
                at = changes[_M_UPDATED_AT]
                event = rows.event_row(order, stored_id, previous, trigger, detail, at)
                self._behind.append(Write(cid, changes + guard, event, made))
        except rows.TIME_ERRORS:
            rows.check_times(order, _ts)
            raise
        self._remember(order, order.status)
        self._schedule_flush()

    def record_outbox(self, entry: Entry) -> None:
        """Write an event of no order (a terminal session, an alert) behind, with the next
        flush; from the event loop, no await."""
        self._cursor()
        self._behind.append(Emit(entry))
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

    def _flush(self) -> None:
        """Commit the queued writes now (end of loop iteration, before a read, at close).

        Never raises and never leaves a transaction open: it runs as a loop callback, where an
        exception would lose the queue and leave the write lock held. A transient failure keeps
        every queued item for a retry; any other failure writes the items one by one, so every
        good one lands and each bad one is quarantined."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._behind or self._cur is None:
            return
        cur = self._cur
        queued, self._behind = self._behind, []
        try:
            with self._transaction(cur):
                folds = write_items(cur, queued)
        except sqlite3.OperationalError as exc:
            self._keep(queued, exc)
        except Exception as exc:
            self._isolate(cur, queued, exc)
        except BaseException:
            self._behind[:0] = queued
            raise
        else:
            self._landed(folds)

    def _landed(self, folds: list[Fold]) -> None:
        pending, unfolded = self._pending_folds, self._unfolded
        for f in folds:
            pending.pop(f.client_order_id, None)
            unfolded.discard(f.client_order_id)

    def _keep(self, items: list[Item], exc: BaseException) -> None:
        """A transient failure: keep the items, in order, ahead of anything queued since."""
        self._behind[:0] = items
        self.write_errors += 1
        log.warning(
            "journal write failed; every queued write is kept and retried",
            error=quarantine.error_text(exc),
            client_order_ids=sorted({item.client_order_id for item in items}),
        )
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(
                RETRY_INTERVAL_S, self._flush
            )

    def _isolate(self, cur: sqlite3.Cursor, queued: list[Item], exc: Exception) -> None:
        """Write the items one by one after the batch was refused: each in its own transaction,
        each one refused again quarantined. A transient failure keeps the rest, in order."""
        log.error(
            "journal batch refused; writing its items one by one",
            error=quarantine.error_text(exc),
            client_order_ids=sorted({item.client_order_id for item in queued}),
        )
        kept: list[Item] = []
        for i, item in enumerate(queued):
            try:
                self._write_alone(cur, item)
            except sqlite3.OperationalError as transient:
                self._keep(kept + queued[i:], transient)
                return
            except Exception as refused:
                try:
                    self._quarantine(cur, item, refused)
                except sqlite3.OperationalError as transient:
                    self._keep(kept + queued[i:], transient)
                    return
                except Exception as failed:
                    kept.append(item)  # cannot happen (nothing constrains the quarantine)
                    log.error(
                        "journal could not quarantine a write; it is kept in memory: a human "
                        "must check the database",
                        client_order_id=item.client_order_id,
                        error=quarantine.error_text(failed),
                    )
            except BaseException:
                self._behind[:0] = kept + queued[i:]
                raise
        if kept:
            self._behind[:0] = kept

    @contextlib.contextmanager
    def _transaction(self, cur: sqlite3.Cursor) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` under the file's writer lock, rolled back on any
        failure (the writer lock is shared with the sync store: mtgate.store.sqlite_lock)."""
        with self._write_lock:
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield
                cur.execute("COMMIT")
            except BaseException:
                rollback(cur)
                raise

    def _write_alone(self, cur: sqlite3.Cursor, item: Item) -> None:
        with self._transaction(cur):
            folds = write_items(cur, [item], exact=True)
        self._landed(folds)

    def _quarantine(self, cur: sqlite3.Cursor, item: Item, exc: Exception) -> None:
        """Move a refused item to the quarantine. A refused intent's order may be on the wire:
        its id stays taken and its status known, so its later changes are quarantined too.
        A refused event of no order is dropped, and said so: it records no state."""
        if isinstance(item, Emit):
            self.dropped_events += 1
            log.error(
                "the journal refused an event of no order; it is dropped",
                type=item.entry.type,
                event_id=item.entry.event_id,
                error=quarantine.error_text(exc),
            )
            return
        kind, payload = payload_of(item)
        error = quarantine.error_text(exc)
        seq = item.seq if isinstance(item, Fold) else None
        with self._write_lock:
            quarantine_item(cur, item.client_order_id, kind, payload, error, seq)
        if isinstance(item, Fold):
            self._pending_folds.pop(item.client_order_id, None)
        self.quarantine_count += 1
        self.write_errors += 1
        log.error(
            "journal refused a write and quarantined it; a human must reconcile this order "
            "with its terminal and repair the journal",
            client_order_id=item.client_order_id,
            kind=kind,
            error=error,
        )

    @staticmethod
    def _stored_status(cur: sqlite3.Cursor, client_order_id: str) -> tuple[str, OrderStatus] | None:
        row = cur.execute(_SELECT_ID_STATUS, {"client_order_id": client_order_id}).fetchone()
        return None if row is None else (str(uuid.UUID(row[0])), OrderStatus(row[1]))

    async def get(self, client_order_id: str) -> OrderRecord | None:
        """The order, or None. Raises UnreadableOrderError if its row cannot be read."""
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
        account_server: str | None = None,
        statuses: Collection[OrderStatus] | None = None,
        limit: int | None = 1000,
        position_ticket: int | None = None,
    ) -> list[OrderRecord]:
        """Newest first, at most ``limit`` (None: all); ``statuses=()`` matches nothing.

        A row that cannot be read is left out, logged at ERROR and counted in
        ``unreadable_rows``, so one bad row cannot hide an account's other orders."""
        conn = self._require()
        self._flush()
        queries.check_limit(limit)
        sql, params = queries.sqlite_sql_with_params(
            queries.list_orders(account_login, account_server, statuses, limit, position_ticket)
        )
        records: list[OrderRecord] = []
        for row in conn.execute(sql, params):
            try:
                records.append(_record(row))
            except UnreadableOrderError as exc:
                self.unreadable_rows += 1
                _log_unreadable(exc)
        return records

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

    async def rejections(self, query: rejections.RejectionQuery) -> rejections.RejectionReport:
        """Rejection analytics. The queue is flushed first (so every write made before the
        call is seen), then the aggregate runs in a worker thread on a connection of its own:
        a scan of a large window must not hold up the event loop, and WAL lets it read while
        this connection writes."""
        self._require()
        self._flush()
        if self._reader is None:
            self._reader = make_engine(
                URL.create("sqlite", database=str(self.path)), poolclass=NullPool
            )
        return await asyncio.to_thread(rejection_sql.read, self._reader, query)

    async def quarantined(self) -> list[QuarantinedRecord]:
        """What this journal could not write and kept for a human, oldest first."""
        conn = self._require()
        self._flush()
        found = conn.execute(quarantine.SQLITE_SELECT).fetchall()
        return [quarantine.record_from_row(row, rows.sqlite_ts_to_ms) for row in found]

    async def record_health(self, sample: HealthSample) -> None:
        """Write one health sample; the samples of one loop iteration share one commit (the
        monitor writes a row per terminal at once), each caller told its own outcome."""
        self._cursor()
        row = rows.health_row(sample, uuid.uuid4().hex, _ts)
        loop = asyncio.get_running_loop()
        if not self._health:
            loop.call_soon(self._commit_health)
        written: asyncio.Future[None] = loop.create_future()
        self._health.append((row, written))
        await written

    def _commit_health(self) -> None:
        batch, self._health = self._health, []
        try:
            cur = self._cursor()
            with self._transaction(cur):
                for row, _ in batch:
                    cur.execute(*_INSERT_HEALTH.bind(row))
        except Exception as exc:
            for _, written in batch:
                if not written.done():
                    written.set_exception(exc)
            return
        for _, written in batch:
            if not written.done():
                written.set_result(None)


def _log_unreadable(exc: UnreadableOrderError) -> None:
    log.error(
        "a journalled order cannot be read and is left out of the list; a human must repair "
        "its row",
        client_order_id=exc.client_order_id,
        error=exc.reason,
    )


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
    try:
        return rows.record_from_row(named, rows.sqlite_ts_to_ms)
    except Exception as exc:  # any value this code cannot represent: name the order
        raise UnreadableOrderError(str(named["client_order_id"]), exc) from exc
