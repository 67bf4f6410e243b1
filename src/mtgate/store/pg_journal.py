"""The PostgreSQL journal: group commit on one writer thread, answers written behind.

Every write goes onto one FIFO queue that a dedicated thread drains: everything queued when it
wakes is one *batch*, written by one statement (:mod:`mtgate.store.pg_sql`) on a psycopg 3
connection in autocommit, so concurrent orders share one round trip and one commit, and the
event loop never waits on the network or runs a line of driver code.

What a caller awaits, and what it does not (the same guarantees as the SQLite journal):

- ``record_submitted`` / ``record_refused`` / ``record_attempt`` / ``record_health`` return once
  their batch has committed: an order's intent (its row, SUBMITTED) is durable before its frame
  leaves, as is an attempt before it is sent again.
- ``record_transition`` / ``record_event`` (the terminal's answer, a note) are checked at once
  against the state machine and the status this journal wrote last, then written behind with the
  next batch, never awaited. A crash can lose them: the order is then still SUBMITTED (or the
  status before) in the journal, and start-up reconciliation asks the terminal for its outcome.
- ``record_outbox`` is written behind, in call order.

Reads (``get``, ``list_orders``, ...) are queued like writes and run after every write called
before them, on a SQLAlchemy connection of their own in the same thread: a reader always sees
what was written before it asked.

Failures are contained where they happen. A batch the database refuses (a duplicate id, a value
a column cannot hold) is written again item by item, so only the bad item fails: an awaited item
raises in its caller; a written-behind change is quarantined (``journal_quarantine``) and logged
at ERROR. A change whose guarded update matches no row (another writer moved the order) is
quarantined the same way, with nothing of it written. A lost connection fails the batch's
awaited items (their orders are not sent) and keeps the written-behind ones, in order, for the
next batch; the connection is made again then, at most once per ``RETRY_INTERVAL_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

import msgspec
import psycopg
from sqlalchemy import URL, Engine, insert, make_url

from mtgate import logs
from mtgate.domain.orders import TERMINAL as FINAL_STATUSES
from mtgate.domain.orders import OrderStatus, Trigger
from mtgate.domain.records import OrderRecord
from mtgate.events.model import Entry, OrderOutbox, entries_of
from mtgate.store import outbox, pg_sql, quarantine, rejection_sql, rejections, rows
from mtgate.store.migrate import make_engine, migrate
from mtgate.store.models import journal_quarantine
from mtgate.store.sql_journal import EngineReads
from mtgate.store.values import (
    DuplicateOrderError,
    HealthSample,
    JournalError,
    JournalNotOpenError,
    StaleOrderError,
    check_transition,
)

T = TypeVar("T")

log = logs.get("mtgate.journal")

RETRY_INTERVAL_S: Final = 1.0
"""After a lost connection, how long written-behind changes wait before the next try (sooner if
new work arrives: it is tried with them)."""
CONNECT_TIMEOUT_S: Final = 5
APPLICATION_NAME: Final = "mtgate-journal"
"""The writer connection's name in ``pg_stat_activity``."""
CLOSE_TRIES: Final = 3
"""At close, how many more times held items are tried (half a retry interval apart)."""
LINGER_S: Final = 0.005
"""How long written-behind items wait for an awaited one to share its commit."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_MS: Final = (datetime(1000, 1, 1, tzinfo=UTC) - _EPOCH) // timedelta(milliseconds=1)
_MAX_MS: Final = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC) - _EPOCH) // timedelta(
    milliseconds=1
)


@functools.lru_cache(maxsize=1024)
def pg_ts(ms: int) -> str:
    """A ``timestamptz`` literal in UTC; years 1000-9999, what SQLAlchemy and psycopg read back
    (the reads go through them). Raises OverflowError outside (rows.TIME_ERRORS)."""
    if not _MIN_MS <= ms <= _MAX_MS:
        raise OverflowError(f"{ms} ms since the epoch is outside years 1000-9999")
    return rows.sqlite_ts(ms) + "+00"


_WRITER_SETTINGS: Final = (
    "SET enable_seqscan = off; SET enable_hashjoin = off; SET enable_mergejoin = off; "
    "SET statement_timeout = '10s'; SET lock_timeout = '5s'"
)
"""The writer's own settings: index probes only (see ``_connect``), and no statement or lock
wait (the outbox's advisory lock, another writer's row) holds every order's intent for long."""
_SELECT_STATUS: Final = "SELECT order_status FROM execution_orders WHERE client_order_id = %(c)s"
_UPDATED_AT: Final = rows.ORDER_COLUMNS.index("updated_at")
_M_UPDATED_AT: Final = rows.MUTABLE_COLUMNS.index("updated_at")
_encode = msgspec.json.Encoder().encode


def _finite(values: tuple[Any, ...] | list[Any], *tail: Any) -> list[Any]:
    """The values (then ``tail``) as the jsonb array can hold them: a non-finite float, and
    ``-0.0``, as the text PostgreSQL's ``float8`` reads (JSON has no NaN, msgspec would write
    null, and jsonb's ``numeric`` has no negative zero: each a silent change)."""
    out = [*values, *tail]
    for i, v in enumerate(out):
        if v.__class__ is float and (
            not math.isfinite(v) or (v == 0.0 and math.copysign(1, v) < 0)
        ):
            out[i] = _NON_NUMERIC.get(v, "NaN") if v == v else "NaN"
    return out


_NON_NUMERIC: Final = {math.inf: "Infinity", -math.inf: "-Infinity", 0.0: "-0"}
"""jsonb keeps numbers as ``numeric``: no infinity, no NaN, no negative zero; as text each
reaches ``float8`` exactly (``0.0`` here is ``-0.0``: the only zero that gets this far)."""


# --- the queue's items ---------------------------------------------------------------------


@dataclass(slots=True)
class _Insert:
    """A new order: its row and two events (created, then send or refuse)."""

    client_order_id: str
    order_id: str
    status: OrderStatus
    row: list[Any]
    events: list[list[Any]]
    outbox: list[Entry]
    done: asyncio.Future[None]
    stored_id: str = ""


@dataclass(slots=True)
class _Change:
    """A guarded update of an order's row with one event. ``done``: an attempt, awaited."""

    client_order_id: str
    values: list[Any]
    """``MUTABLE_COLUMNS`` values, or ``ATTEMPT_COLUMNS + MUTABLE_COLUMNS`` for an attempt."""
    guard: tuple[str, str, str]
    event: list[Any]
    outbox: list[Entry]
    attempt: bool
    done: asyncio.Future[None] | None


@dataclass(slots=True)
class _Emit:
    entry: Entry
    client_order_id: str = ""


@dataclass(slots=True)
class _Health:
    row: list[Any]
    done: asyncio.Future[None]
    client_order_id: str = ""


@dataclass(slots=True)
class _Read:
    fn: Callable[[Engine], Any]
    done: asyncio.Future[Any]


class _Stop:
    pass


_Write = _Insert | _Change | _Emit | _Health
_Job = _Write | _Read | _Stop


@dataclass(slots=True)
class _Merged:
    """The changes of one order in one batch, applied as one guarded update: the first one's
    guard (the status the database holds), the last one's values, every event in order."""

    client_order_id: str
    values: list[Any]
    guard: tuple[str, str, str]
    attempt_values: list[Any] | None
    items: list[_Change] = field(default_factory=list)


class _Missed(Exception):
    """A change's guarded update matched no row."""

    def __init__(self, guard: tuple[str, str, str]) -> None:
        order_id, client_order_id, status = guard
        super().__init__(
            f"no row of order {client_order_id!r} (order_id {order_id}) in status {status!r} "
            "to update"
        )


# --- the journal (event loop side) ---------------------------------------------------------


class PgJournal(EngineReads):
    """Journal on PostgreSQL. Use from one event loop; one writer thread does the I/O."""

    def __init__(self, url: str | URL) -> None:
        self.url = make_url(url).set(drivername="postgresql+psycopg")
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._status: dict[str, tuple[str, OrderStatus]] = {}
        """Order id and status each unfinished order has once the queue is written."""
        self._taken: set[str] = set()
        """Client order ids of inserts queued and not yet committed."""
        self.quarantine_count = 0
        self.unreadable_rows = 0
        self.write_errors = 0
        """Batches that failed and were written again (item by item, or after a reconnect)."""
        self.outbox: OrderOutbox | None = None
        self.dropped_events = 0
        self.batches = 0
        """Statements written (each one commit); with ``items_written``: the group commit."""
        self.items_written = 0
        self.busy_s = 0.0
        """Time the writer spent in its statements (with ``batches``: how loaded it is)."""

    # --- lifecycle

    async def open(self) -> None:
        """Migrate, connect (both connections), and start the writer thread."""
        if self._thread is not None:
            raise JournalError(f"journal {self._shown()} is already open")
        loop = asyncio.get_running_loop()
        engine = await asyncio.to_thread(_engine, self.url)
        try:
            writer = await asyncio.to_thread(_Writer.connect, self.url, self, engine)
        except BaseException:
            engine.dispose()
            raise
        self._thread = threading.Thread(
            target=writer.run, args=(self._queue, loop), name="mtgate-pg-journal", daemon=True
        )
        self._thread.start()

    async def close(self) -> None:
        """Write everything queued, then stop the thread and close the connections."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(_Stop())  # after everything queued: written before the thread ends
        await asyncio.to_thread(thread.join)
        self._status, self._taken = {}, set()

    def _shown(self) -> str:
        return self.url.render_as_string(hide_password=True)

    def _put(self, job: _Job) -> None:
        if self._thread is None:
            raise JournalNotOpenError()
        self._queue.put(job)

    # --- writes

    async def record_submitted(self, order: OrderRecord, *, new_id: bool = False) -> None:
        """Journal a new order as SUBMITTED; returns once its batch has committed. A caller
        cancelled meanwhile does not stop the write: its order is journalled all the same."""
        check_transition(OrderStatus.NEW, Trigger.SEND, order.status)
        await self._insert(order, Trigger.SEND, "")

    async def record_refused(self, order: OrderRecord) -> None:
        check_transition(OrderStatus.NEW, Trigger.REFUSE, order.status)
        await self._insert(order, Trigger.REFUSE, order.rejection_reason or "")

    async def _insert(self, order: OrderRecord, trigger: Trigger, detail: str) -> None:
        if self._thread is None:
            raise JournalNotOpenError()
        cid = order.client_order_id
        if cid in self._status or cid in self._taken:
            raise DuplicateOrderError(cid, order.order_id)
        stored_id = rows.canonical_uuid(order.order_id)
        try:
            row = rows.order_row(order, stored_id, pg_ts)
        except rows.TIME_ERRORS:
            rows.check_times(order, pg_ts)
            raise
        at = row[_UPDATED_AT]
        events = [
            _finite(rows.created_row(order, stored_id, pg_ts(order.placed_at_ms)), None),
            _finite(rows.event_row(order, stored_id, OrderStatus.NEW, trigger, detail, at), None),
        ]
        made = entries_of(self.outbox, order, OrderStatus.NEW, trigger, detail)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        job = _Insert(cid, stored_id, order.status, _finite(row), events, made, done, stored_id)
        self._taken.add(cid)
        self._queue.put(job)
        await done

    async def record_transition(
        self, order: OrderRecord, previous: OrderStatus, trigger: Trigger, detail: str = ""
    ) -> None:
        check_transition(previous, trigger, order.status)
        await self._change(order, previous, trigger, detail, attempt=False)

    async def record_event(self, order: OrderRecord, detail: str) -> None:
        await self._change(order, order.status, None, detail, attempt=False)

    async def record_attempt(
        self, order: OrderRecord, previous: OrderStatus, trigger: Trigger | None, detail: str
    ) -> None:
        """Journal a new attempt; returns once committed (its frame leaves after it)."""
        if trigger is not None:
            check_transition(previous, trigger, order.status)
        await self._change(order, previous, trigger, detail, attempt=True)

    async def _change(
        self,
        order: OrderRecord,
        previous: OrderStatus,
        trigger: Trigger | None,
        detail: str,
        *,
        attempt: bool,
    ) -> None:
        """Check the change against the status this journal wrote last, queue it, and (an
        attempt, or an order this journal does not hold in memory) await its commit.

        Nothing here waits before the change is queued, so it is built from ``order`` as the
        caller called, and lands or fails whatever happens to the caller after. An order
        not in memory (finished, or journalled by an earlier run) is not read first: its
        guarded update decides, and the caller hears ``StaleOrderError`` if it missed."""
        if self._thread is None:
            raise JournalNotOpenError()
        cid = order.client_order_id
        known = self._status.get(cid)
        if known is not None and (known[1] is not previous or known[0] != order.order_id.lower()):
            raise StaleOrderError(cid, previous, known[1])
        stored_id = rows.canonical_uuid(order.order_id)
        try:
            values = rows.attempt_row(order, pg_ts) if attempt else rows.mutable_row(order, pg_ts)
        except rows.TIME_ERRORS:
            rows.check_times(order, pg_ts)
            raise
        at = values[(len(rows.ATTEMPT_COLUMNS) if attempt else 0) + _M_UPDATED_AT]
        event = _finite(rows.event_row(order, stored_id, previous, trigger, detail, at), cid)
        made = entries_of(self.outbox, order, previous, trigger, detail)
        guard = (stored_id, cid, previous.value)
        loop = asyncio.get_running_loop()
        awaited = attempt or known is None
        done: asyncio.Future[None] | None = loop.create_future() if awaited else None
        self._queue.put(_Change(cid, _finite(values), guard, event, made, attempt, done))
        self._remember(cid, order.order_id.lower(), order.status)
        if done is not None:
            await done

    def _remember(self, cid: str, order_id: str, status: OrderStatus) -> None:
        if status in FINAL_STATUSES:
            self._status.pop(cid, None)
        else:
            self._status[cid] = (order_id, status)

    def record_outbox(self, entry: Entry) -> None:
        """Write an event of no order behind, after every write called before it."""
        self._put(_Emit(entry))

    async def record_health(self, sample: HealthSample) -> None:
        """One health sample, committed with its batch (the monitor's samples of one moment
        share one)."""
        row = _finite(rows.health_row(sample, str(uuid.uuid4()), pg_ts))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._put(_Health(row, done))
        await done

    # --- what the writer reports back (on the loop, once per batch)

    def _settled(self, outcomes: list[tuple[_Write, BaseException | None]]) -> None:
        for item, error in outcomes:
            if isinstance(item, _Insert):
                self._taken.discard(item.client_order_id)
                if error is None:
                    self._remember(item.client_order_id, item.order_id, item.status)
            elif isinstance(item, _Change) and error is not None:
                self._status.pop(item.client_order_id, None)  # read again from the table
            done = getattr(item, "done", None)
            if done is not None and not done.done():
                if error is None:
                    done.set_result(None)
                else:
                    done.set_exception(error)

    # --- reads

    async def _read(self, fn: Callable[[Engine], T]) -> T:
        if self._thread is None:
            raise JournalNotOpenError()
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put(_Read(fn, done))
        return await done

    async def rejections(self, query: rejections.RejectionQuery) -> rejections.RejectionReport:
        """Rejection analytics: after every write queued before the call, in a thread of its
        own (a long aggregate must not hold up the order writes queued behind it)."""
        engine: Engine = await self._read(lambda engine: engine)
        return await asyncio.to_thread(rejection_sql.read, engine, query)


# --- the writer thread ---------------------------------------------------------------------


class _Writer:
    """The thread's side: the connections, the batches, and what is kept after a failure."""

    def __init__(self, url: URL, journal: PgJournal, engine: Engine) -> None:
        self.url = url
        self.conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.journal = journal
        self.engine = engine
        self.conn: psycopg.Connection[Any] | None = None
        self.kept: list[_Write] = []
        """Written-behind items a lost connection kept, oldest first."""

    @classmethod
    def connect(cls, url: URL, journal: PgJournal, engine: Engine) -> _Writer:
        writer = cls(url, journal, engine)
        writer.conn = writer._connect()
        return writer

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(
            self.conninfo,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name=APPLICATION_NAME,
            # A half-open connection is found in seconds, not after the kernel's ~15 minutes
            # of retries: every intent waits behind this one connection.
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
            tcp_user_timeout=10_000,
        )
        try:
            # This connection runs nothing but the batch statement, whose updates find each
            # row by its primary key. Left to itself the planner joins a batch to the whole
            # table (a hash join over a sequential scan) while the table is small, and a
            # prepared plan may keep that shape as it grows: one index probe per row instead.
            conn.execute(_WRITER_SETTINGS)
        except BaseException:
            conn.close()
            raise
        return conn

    def run(self, jobs: queue.SimpleQueue[_Job], loop: asyncio.AbstractEventLoop) -> None:
        """Write batches until the stop."""
        try:
            while True:
                timeout = RETRY_INTERVAL_S if self.kept else None
                try:
                    batch = [jobs.get(timeout=timeout)]
                except queue.Empty:
                    batch = []  # retry what was kept
                self._drain(jobs, batch)
                try:
                    if self._run_batch(batch, loop):
                        return
                except Exception as exc:  # a bug here must not strand every caller after it
                    if self._crashed(batch, exc, loop):
                        return
        finally:
            self.close()
            self.engine.dispose()

    def _crashed(self, batch: list[_Job], exc: Exception, loop: asyncio.AbstractEventLoop) -> bool:
        """A failure outside every expected path (a bug): fail what the batch awaits, keep what
        it writes behind (what was held already stays held). True if the batch held the stop.
        An item the batch settled before the failure may be told twice: the second answer is
        ignored (a future is set once)."""
        log.critical(
            "journal writer failed on a batch; its awaited writes fail, the rest is kept",
            error=quarantine.error_text(exc),
        )
        outcomes: list[tuple[_Write, BaseException | None]] = []
        stop = False
        for job in batch:
            if isinstance(job, _Read):
                _tell(loop, _fail, job.done, exc)
            elif isinstance(job, _Stop):
                stop = True
            elif _behind(job):
                if not any(job is k for k in self.kept):
                    self.kept.append(job)
            else:
                outcomes.append((job, exc))
        _tell(loop, self.journal._settled, outcomes)
        return stop

    @staticmethod
    def _drain(jobs: queue.SimpleQueue[_Job], batch: list[_Job]) -> None:
        """Everything queued now. A batch of written-behind items only waits up to
        ``LINGER_S`` for the next awaited one, which it then rides with: an order's answer
        and the next order's intent share one commit instead of queueing one behind the
        other."""
        deadline: float | None = None
        while True:
            try:
                batch.append(jobs.get_nowait())
                continue
            except queue.Empty:
                pass
            if not all(_behind(j) for j in batch):
                return
            now = time.monotonic()
            if deadline is None:
                deadline = now + LINGER_S
            if now >= deadline:
                return
            try:
                batch.append(jobs.get(timeout=deadline - now))
            except queue.Empty:
                return

    def _run_batch(self, batch: list[_Job], loop: asyncio.AbstractEventLoop) -> bool:
        """Writes up to each read (or the stop) in one statement; True on stop."""
        writes: list[_Write] = []
        for job in batch:
            if isinstance(job, _Read | _Stop):
                self._write_batch(writes, loop)
                writes = []
                if isinstance(job, _Stop):
                    self._lost_at_close(loop)
                    return True
                if self.kept:  # what it would read is not what was written before it asked
                    held = JournalError(
                        f"the journal holds {len(self.kept)} write(s) it could not make yet; "
                        "it cannot be read until they are written"
                    )
                    _tell(loop, _fail, job.done, held)
                    continue
                self._read(job, loop)
            else:
                writes.append(job)
        self._write_batch(writes, loop)
        return False

    def _read(self, job: _Read, loop: asyncio.AbstractEventLoop) -> None:
        try:
            result = job.fn(self.engine)
        except Exception as exc:
            _tell(loop, _fail, job.done, exc)
            return
        _tell(loop, _succeed, job.done, result)

    def _lost_at_close(self, loop: asyncio.AbstractEventLoop) -> None:
        """At the stop: held items get a few more tries, then what is left is named."""
        for _ in range(CLOSE_TRIES):
            if not self.kept:
                return
            time.sleep(RETRY_INTERVAL_S / 2)
            self._write_batch([], loop)
        lost = sorted({i.client_order_id for i in self.kept if isinstance(i, _Change)})
        events = [i.entry.event_id for i in self.kept if isinstance(i, _Emit)]
        if lost or events:
            log.error(
                "journal closed with writes it could not make; a human must check these "
                "orders against their terminals (their events of no order are lost)",
                client_order_ids=lost,
                event_ids=events,
            )

    def _write_batch(self, writes: list[_Write], loop: asyncio.AbstractEventLoop) -> None:
        items = self.kept + writes if self.kept else writes
        if not items:
            return
        self.kept = []
        outcomes: list[tuple[_Write, BaseException | None]]
        try:
            missed = self._execute(items)
        except Exception as exc:
            if _transient(exc):
                outcomes = self._connection_lost(items, exc)
                _tell(loop, self.journal._settled, outcomes)
                return
            # refused for what an item holds (or unencodable): find the item, keep the rest
            log.error(
                "journal batch refused; writing its items one by one",
                error=quarantine.error_text(exc),
                client_order_ids=sorted({i.client_order_id for i in items if i.client_order_id}),
            )
            outcomes = self._isolate(items)
        else:
            outcomes = self._outcomes(items, missed)
        _tell(loop, self.journal._settled, outcomes)

    def _outcomes(
        self, items: list[_Write], missed: set[int]
    ) -> list[tuple[_Write, BaseException | None]]:
        out: list[tuple[_Write, BaseException | None]] = []
        for item in items:
            if isinstance(item, _Change) and id(item) in missed:
                out.append((item, self._missed(item, item.guard)))
            else:
                out.append((item, None))
        return out

    def _missed(self, item: _Change, guard: tuple[str, str, str]) -> BaseException:
        """A change whose guard matched no row: quarantined if written behind; an attempt's
        caller is told the order is not in the status it was sent from."""
        if item.done is None:
            self._quarantine(item, _Missed(guard))
            return _Missed(guard)
        return StaleOrderError(
            item.client_order_id, OrderStatus(guard[2]), self._found_status(item.client_order_id)
        )

    def _found_status(self, client_order_id: str) -> OrderStatus | None:
        """The status the order has in the table, for the caller's error (None: no row, or
        it cannot be read now)."""
        try:
            assert self.conn is not None
            row = self.conn.execute(_SELECT_STATUS, {"c": client_order_id}).fetchone()
            return None if row is None else OrderStatus(row[0])
        except Exception:
            return None

    def _connection_lost(
        self, items: list[_Write], exc: BaseException
    ) -> list[tuple[_Write, BaseException | None]]:
        """Awaited items fail (their orders are not sent); written-behind ones are kept."""
        self.journal.write_errors += 1
        if self.conn is not None:
            self.conn.close()
        self.conn = None
        self.kept = [i for i in items if _behind(i)]
        log.warning(
            "journal connection failed; awaited writes fail, written-behind ones are kept",
            error=quarantine.error_text(exc),
            kept=len(self.kept),
        )
        error = JournalError(f"the journal's database is unreachable: {exc}")
        error.__cause__ = exc
        return [(i, error) for i in items if not _behind(i)]

    def _isolate(self, items: list[_Write]) -> list[tuple[_Write, BaseException | None]]:
        self.journal.write_errors += 1
        out: list[tuple[_Write, BaseException | None]] = []
        for i, item in enumerate(items):
            try:
                missed = self._execute([item])
            except Exception as exc:
                if _transient(exc):
                    return out + self._connection_lost(items[i:], exc)
                out.append((item, self._contained(self._refused, item, exc)))
                continue
            if missed and isinstance(item, _Change):
                out.append((item, self._contained(self._missed, item, item.guard)))
            else:
                out.append((item, None))
        return out

    @staticmethod
    def _contained(handle: Callable[..., BaseException], item: _Write, *args: Any) -> BaseException:
        """What ``handle`` says about ``item``; whatever it raises instead (a probe or a
        quarantine on a connection just lost) is the item's outcome, not the batch's."""
        try:
            return handle(item, *args)
        except Exception as exc:
            if _behind(item):
                log.error(
                    "journal could not settle a refused write; it is lost: a human must check "
                    "this order against its terminal",
                    client_order_id=item.client_order_id,
                    error=quarantine.error_text(exc),
                )
            return exc

    def _refused(self, item: _Write, exc: Exception) -> BaseException:
        """What the caller of an item the database refused alone is told (written-behind
        items have no caller: they are quarantined)."""
        refused_id = isinstance(item, _Insert) and isinstance(exc, psycopg.errors.IntegrityError)
        if refused_id and isinstance(item, _Insert) and self._exists(item):
            return DuplicateOrderError(item.client_order_id, item.order_id)
        if _behind(item):
            self._quarantine(item, exc)
        return exc

    def _exists(self, item: _Insert) -> bool:
        assert self.conn is not None
        params = {"client_order_id": item.client_order_id, "order_id": item.stored_id}
        return self.conn.execute(pg_sql.SELECT_EXISTING, params).fetchone() is not None

    def _quarantine(self, item: _Write, exc: BaseException) -> None:
        if isinstance(item, _Emit):
            self.journal.dropped_events += 1
            log.error(
                "the journal refused an event of no order; it is dropped",
                type=item.entry.type,
                event_id=item.entry.event_id,
                error=quarantine.error_text(exc),
            )
            return
        assert isinstance(item, _Change)
        error = quarantine.error_text(exc)
        payload = quarantine.write_payload(list(item.values[-len(rows.MUTABLE_COLUMNS):])
                                           + list(item.guard), item.event[:-1])  # fmt: skip
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(journal_quarantine),
                    {
                        "client_order_id": item.client_order_id,
                        "kind": quarantine.KIND_WRITE,
                        "payload": payload,
                        "error": error,
                        "at": rows.ms_to_datetime(quarantine.now_ms()),
                    },
                )
        except Exception as failed:
            log.error(
                "journal could not quarantine a write; it is lost: a human must check this "
                "order against its terminal",
                client_order_id=item.client_order_id,
                error=quarantine.error_text(failed),
                refused=error,
            )
            return
        self.journal.quarantine_count += 1
        log.error(
            "journal refused a write and quarantined it; a human must reconcile this order "
            "with its terminal and repair the journal",
            client_order_id=item.client_order_id,
            kind=quarantine.KIND_WRITE,
            error=error,
        )

    def _execute(self, items: list[_Write]) -> set[int]:
        """Write ``items`` in one statement; the ``id()`` of each change that did not land
        (its guard missed, or it did not start from the status the change before it in the
        batch left: written after it, its guard could not have matched)."""
        if self.conn is None or self.conn.closed:
            self.conn = self._connect()
        ins: list[list[Any]] = []
        events: list[list[Any]] = []
        entries: list[tuple[Entry, str | None]] = []
        health: list[list[Any]] = []
        merged: dict[str, _Merged] = {}
        conflicting: set[int] = set()
        for item in items:
            if isinstance(item, _Insert):
                ins.append(item.row)
                events.extend(item.events)
                entries.extend((e, None) for e in item.outbox)
            elif isinstance(item, _Change):
                m = merged.get(item.client_order_id)
                if m is None:
                    m = merged[item.client_order_id] = _Merged(
                        item.client_order_id, item.values, item.guard, None
                    )
                elif item.guard[:2] != m.guard[:2] or item.guard[2] != _new_status(m):
                    conflicting.add(id(item))
                    continue
                else:
                    m.values = item.values
                if item.attempt:
                    m.attempt_values = item.values
                m.items.append(item)
                events.append(item.event)
                entries.extend((e, item.client_order_id) for e in item.outbox)
            elif isinstance(item, _Emit):
                entries.append((item.entry, None))
            else:
                health.append(item.row)
        upd: list[list[Any]] = []
        att: list[list[Any]] = []
        n_attempt = len(rows.ATTEMPT_COLUMNS)
        for m in merged.values():
            if m.attempt_values is None:
                upd.append(m.values + list(m.guard))
            else:
                mutable = m.values[-len(rows.MUTABLE_COLUMNS) :]
                att.append(m.attempt_values[:n_attempt] + mutable + list(m.guard))
        entries.sort(key=lambda pair: pair[0].n)
        ob = [_finite(outbox.values(e, pg_ts), cid) for e, cid in entries]
        shape = pg_sql.Shape(bool(ins), bool(upd), bool(att), bool(events), bool(ob),
                             bool(health))  # fmt: skip
        params: dict[str, str] = {}
        for name, data in (("ins", ins), ("upd", upd), ("att", att), ("ev", events),
                           ("ob", ob), ("hl", health)):  # fmt: skip
            if data:
                params[name] = _encode(data).decode()
        t0 = time.perf_counter()
        cur = self.conn.execute(pg_sql.statement(shape), params)
        matched = {r[0] for r in cur.fetchall()} if (upd or att) else set()
        self.journal.busy_s += time.perf_counter() - t0
        self.journal.batches += 1
        self.journal.items_written += len(items)
        missed = {id(i) for cid, m in merged.items() if cid not in matched for i in m.items}
        return missed | conflicting


def _engine(url: URL) -> Engine:
    """Migrate, and the engine of the reads (rare: a ping per checkout costs nothing on the
    order path, and survives a server restart)."""
    migrate(url)
    return make_engine(url, pool_pre_ping=True, pool_size=2)


_ITEM_FAULTS: Final = ("22", "23")
"""SQLSTATE classes that are the item's fault (a data exception, a constraint): anything else the
server says (read only after a failover, a timeout, privileges, a missing table) may clear up,
so written-behind items are kept for it rather than quarantined."""


def _transient(exc: BaseException) -> bool:
    """A failure to retry, not the item's fault: the connection, or a server condition."""
    if not isinstance(exc, psycopg.Error):
        return False
    return exc.sqlstate is None or exc.sqlstate[:2] not in _ITEM_FAULTS


_STATUS_AT: Final = rows.MUTABLE_COLUMNS.index("order_status")


def _new_status(m: _Merged) -> Any:
    """The status the merged changes leave (the last one's ``order_status``)."""
    return m.values[-len(rows.MUTABLE_COLUMNS) + _STATUS_AT]


def _behind(item: _Job) -> bool:
    """Written behind: nobody awaits it (a read or the stop is awaited, in effect)."""
    return not isinstance(item, _Read | _Stop) and getattr(item, "done", None) is None


def _tell(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    """Run ``callback`` on the loop; nothing when the loop is gone (nobody left to tell)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)


def _succeed(done: asyncio.Future[Any], result: Any) -> None:
    if not done.done():
        done.set_result(result)


def _fail(done: asyncio.Future[Any], exc: BaseException) -> None:
    if not done.done():
        done.set_exception(exc)
