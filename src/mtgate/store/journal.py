"""The order journal: the durable record behind "persist before send" (DESIGN §4, §6).

The bridge journals an order *before* its frame leaves (``record_submitted`` returns only once
the row is durable), then every status change with its trigger, so after any crash the journal
says which orders may exist on a server. The two a URL selects (and ``SqlJournal``, the same
contract in plain SQLAlchemy Core, which the tests run) pass one contract test suite:

- :class:`~mtgate.store.sqlite_journal.SqliteJournal` (``sqlite:///path.db``), the default:
  stdlib ``sqlite3`` on the event loop thread, tens of microseconds per write.
- :class:`~mtgate.store.pg_journal.PgJournal` (``postgresql+psycopg://...``): one writer
  thread, every batch of concurrent writes one statement and one commit, the terminal's
  answers written behind; the event loop never waits on the network.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Protocol

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from mtgate.domain.orders import OrderStatus, Trigger
from mtgate.domain.records import OrderRecord
from mtgate.events.model import Entry, OrderOutbox
from mtgate.store.pg_journal import PgJournal
from mtgate.store.rejections import RejectionQuery, RejectionReport
from mtgate.store.sqlite_journal import SYNCHRONOUS_LEVELS, SqliteJournal
from mtgate.store.values import HealthSample, JournalConfigError, OrderEvent, QuarantinedRecord


class Journal(Protocol):
    """What the bridge needs from its store. All writes are single transactions.

    A write, once called, lands or fails as a whole even if its caller is cancelled; a read
    called after that cancellation sees it (``get`` finds a cancelled caller's order).

    Raises (besides driver errors, which propagate unchanged):
        InvalidTransition: the state machine does not allow the recorded change (nothing is
            written); :class:`~mtgate.store.values.TransitionMismatchError` when it allows the
            trigger but to another status than the record's.
        StaleOrderError: the journalled status is not ``previous`` (another writer won).
        DuplicateOrderError: the client order id or order id is already journalled, or an
            order with that client order id is being journalled right now.
        UnstorableOrderError: a time of the record is outside what the backend can store
            (nothing is written).
        UnreadableOrderError: ``get`` / ``find_by_ticket`` found the order's row but cannot
            turn it into a record (``list_orders`` leaves such rows out instead).
        JournalNotOpenError: a call before ``open()`` or after ``close()``.
    """

    quarantine_count: int
    """Items this journal moved to the quarantine since it was made (see ``quarantined``)."""
    unreadable_rows: int
    """Rows ``list_orders`` left out because they cannot be read."""
    outbox: OrderOutbox | None
    """Makes the outbox entry of each order change, written in the change's transaction
    (docs/events.md); None: the journal writes no events."""
    dropped_events: int
    """Events of no order (``record_outbox``) the database refused; each logged at ERROR."""

    async def open(self) -> None:
        """Run migrations and open the connection."""
        ...

    async def close(self) -> None: ...

    async def record_submitted(self, order: OrderRecord, *, new_id: bool = False) -> None:
        """Insert ``order`` (status already SUBMITTED) with events created → NEW, NEW → SUBMITTED
        (``send``); durable on return. The bridge sends the frame only after this returns.
        ``new_id``: the bridge made the client order id just now (unique by construction), so
        a journal may skip looking it up; a reused id is still refused by the table's key."""
        ...

    async def record_refused(self, order: OrderRecord) -> None:
        """Insert ``order`` refused before sending (status REJECTED, rejection fields set), with
        events created → NEW, NEW → REJECTED (``refuse``)."""
        ...

    async def record_transition(
        self, order: OrderRecord, previous: OrderStatus, trigger: Trigger, detail: str = ""
    ) -> None:
        """Write every mutable field of ``order`` and one event ``previous → order.status``,
        only if the journal still holds ``previous``."""
        ...

    async def record_event(self, order: OrderRecord, detail: str) -> None:
        """Write the mutable fields and an event that keeps the status (e.g. a modify)."""
        ...

    async def record_attempt(
        self, order: OrderRecord, previous: OrderStatus, trigger: Trigger | None, detail: str
    ) -> None:
        """Journal a new attempt of ``order`` before it is sent: the attempt's identity
        columns (``rows.ATTEMPT_COLUMNS``: terminal, volume, comment, send time, deadline),
        every mutable field, and one event ``previous → order.status`` (``trigger`` None: the
        status is kept), only if the journal still holds ``previous``. Durable on return,
        like ``record_submitted``: the attempt's frame leaves only after it."""
        ...

    def record_outbox(self, entry: Entry) -> None:
        """Write an event that records no order change (a terminal session, an alert) behind,
        after every write called before it. From the event loop; never awaits."""
        ...

    async def get(self, client_order_id: str) -> OrderRecord | None: ...

    async def find_by_ticket(
        self, account_login: int, account_server: str, ticket: int
    ) -> OrderRecord | None:
        """The order whose ``mt_order_id`` is ``ticket`` on this account."""
        ...

    async def list_orders(
        self,
        *,
        account_login: int | None = None,
        account_server: str | None = None,
        statuses: Collection[OrderStatus] | None = None,
        limit: int | None = 1000,
        position_ticket: int | None = None,
    ) -> list[OrderRecord]:
        """Newest first, at most ``limit`` (``None``: every matching order), filtered in SQL by
        account (login and server), status and (closes) the position closed. A row that cannot be read is left out, logged
        at ERROR and counted in ``unreadable_rows``: one bad row must not hide the others."""
        ...

    async def events(self, client_order_id: str) -> list[OrderEvent]:
        """The audit trail, oldest first."""
        ...

    async def rejections(self, query: RejectionQuery) -> RejectionReport:
        """Rejection counts and rates of the orders placed in the query's window, aggregated
        in SQL (:mod:`mtgate.store.rejections`). Sees every write made before the call; runs
        in a worker thread with a connection of its own, never on the event loop nor ahead
        of the order writes."""
        ...

    async def quarantined(self) -> list[QuarantinedRecord]:
        """What the journal could not write and kept for a human instead, oldest first.
        Normally empty; every entry was logged at ERROR when it was made."""
        ...

    async def record_health(self, sample: HealthSample) -> None: ...


SQLITE_SCHEMES = frozenset({"sqlite", "sqlite+pysqlite"})
POSTGRES_SCHEMES = frozenset({"postgresql", "postgresql+psycopg"})


def open_journal(url: str, *, synchronous: str = "normal") -> Journal:
    """The journal for ``url`` (not yet opened: await ``open()``).

    Args:
        url: ``sqlite:///relative.db``, ``sqlite:////absolute/path.db``, or
            ``postgresql+psycopg://user@host:port/db`` (``postgresql://`` means psycopg too).
        synchronous: SQLite durability, ``normal`` (survives a bridge crash) or ``full`` /
            ``extra`` (also power loss, for one fsync per write: ~190 µs here). PostgreSQL
            commits are as durable as the server's ``synchronous_commit`` makes them; the value
            must still be valid.

    Raises:
        JournalConfigError: an unsupported scheme, an in-memory SQLite database, or a bad level.
    """
    if synchronous.lower() not in SYNCHRONOUS_LEVELS:
        raise JournalConfigError(
            f"synchronous={synchronous!r}: expected one of {sorted(SYNCHRONOUS_LEVELS)}"
        )
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        shown = url.split("://", 1)[0] + "://..." if "://" in url else "<no scheme>"
        raise JournalConfigError(f"journal URL {shown!r} is not a database URL") from exc
    scheme = parsed.drivername
    shown = parsed.render_as_string(hide_password=True)
    if scheme in SQLITE_SCHEMES:
        database = parsed.database
        if not database or database == ":memory:" or database.startswith("file:"):
            raise JournalConfigError(
                f"journal URL {shown!r}: the SQLite journal needs a file path "
                "(an in-memory database would lose every order on exit)"
            )
        return SqliteJournal(Path(database), synchronous=synchronous)
    if scheme in POSTGRES_SCHEMES:
        return PgJournal(parsed.set(drivername="postgresql+psycopg"))
    raise JournalConfigError(
        f"journal URL scheme {scheme!r} is not supported (in {shown!r}); use "
        "'sqlite:///path.db' or 'postgresql+psycopg://user@host/db'"
    )
