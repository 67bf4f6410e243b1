"""The SQLite journal's writes: its statements, its queued items, the intent log's format, the
quarantine's transaction, and the start-up fold of intents a crash left in the log.

Plain functions of a cursor, so :mod:`mtgate.store.sqlite_journal` keeps only the state (the
queue, the in-memory statuses) and the decisions of when to write and what to do on failure.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import msgspec

from mtgate import logs
from mtgate.domain.orders import OrderStatus, Trigger
from mtgate.events.model import Entry, OrderOutbox, entries_of
from mtgate.store import outbox, quarantine, queries, rows
from mtgate.store.models import execution_orders, order_events

INSERT_ORDER: Final = queries.sqlite_insert(execution_orders, rows.ORDER_COLUMNS)
INSERT_EVENT: Final = queries.sqlite_insert(order_events, rows.EVENT_COLUMNS)
UPDATE_ORDER: Final = queries.sqlite_guarded_update(
    execution_orders, rows.MUTABLE_COLUMNS, ("order_id", "client_order_id", "order_status")
)
UPDATE_ATTEMPT: Final = queries.sqlite_guarded_update(
    execution_orders,
    rows.ATTEMPT_COLUMNS + rows.MUTABLE_COLUMNS,
    ("order_id", "client_order_id", "order_status"),
)
INSERT_INTENT: Final = "INSERT INTO journal_intents (client_order_id, payload) VALUES (?, ?)"
DELETE_INTENTS: Final = "DELETE FROM journal_intents WHERE seq <= ?"
DELETE_INTENT: Final = "DELETE FROM journal_intents WHERE seq = ?"
_SELECT_LOGGED: Final = "SELECT seq, client_order_id, payload FROM journal_intents ORDER BY seq"

log = logs.get("mtgate.journal")


class Write(NamedTuple):
    """A status change or note: update the order row, add an event (and its outbox entry)."""

    client_order_id: str
    changes: tuple[Any, ...]
    """The values of ``MUTABLE_COLUMNS``, then the guard (order id, client id, status)."""
    event: tuple[Any, ...]
    outbox: Entry | None = None


class Emit(NamedTuple):
    """An outbox entry of no order (a terminal session, an alert): written behind."""

    entry: Entry
    client_order_id: str = ""


@dataclass(slots=True)
class Fold:
    """A logged intent to fold into the order tables. Status changes queued before it is
    written are merged into it: the row is inserted as it stands then, with all its events,
    instead of inserted and updated."""

    seq: int
    client_order_id: str
    row: tuple[Any, ...]
    events: list[tuple[Any, ...]]
    outbox: list[Entry] = field(default_factory=list)
    """The outbox entries of the events (the order's creation has none)."""


Item = Write | Fold | Emit


class MissedRowError(Exception):
    """A queued change's guarded UPDATE matched no row: the order's row is missing or holds
    another order id or status (another writer on the file, or its intent was quarantined)."""

    def __init__(self, write: Write) -> None:
        order_id, client_order_id, status = write.changes[len(rows.MUTABLE_COLUMNS) :]
        super().__init__(
            f"no row of order {client_order_id!r} (order_id {order_id}) in status {status!r} "
            "to update"
        )


_intent_encoder = msgspec.msgpack.Encoder()
_intent_decoder = msgspec.msgpack.Decoder(tuple[list[Any], list[Any], list[Any]])


def encode_intent(row: tuple[Any, ...], created: tuple[Any, ...], moved: tuple[Any, ...]) -> bytes:
    """The intent log's payload: the order's row and its two events (msgpack)."""
    return _intent_encoder.encode((row, created, moved))


def decode_intent(payload: bytes) -> tuple[list[Any], list[list[Any]]]:
    """The row and events of a logged intent, in this version's column order.

    Raises:
        msgspec.DecodeError, msgspec.ValidationError: not an intent payload.
        ValueError: a row of a length no version wrote.
    """
    row, created, moved = _intent_decoder.decode(payload)
    if len(row) == len(rows.ORDER_COLUMNS) - 2:  # logged before migration 0004 added a column
        row.insert(rows.SENT_AT_INDEX, None)
    if len(row) == len(rows.ORDER_COLUMNS) - 1:  # logged before migration 0005 added one
        row.insert(rows.DEADLINE_INDEX, None)
    if len(row) != len(rows.ORDER_COLUMNS):
        raise ValueError(f"intent row has {len(row)} values, expected {len(rows.ORDER_COLUMNS)}")
    return row, [created, moved]


def fold(cur: sqlite3.Cursor, row: Sequence[Any], events: Sequence[Sequence[Any]]) -> None:
    cur.execute(*INSERT_ORDER.bind(tuple(row)))
    for event in events:
        cur.execute(*INSERT_EVENT.bind(tuple(event)))


def write_items(cur: sqlite3.Cursor, items: Sequence[Item], *, exact: bool = False) -> list[Fold]:
    """Execute queued items inside the caller's transaction; return the folds written. The
    items' outbox entries are inserted with them, in the order they were made.

    The folded intents' log rows are deleted with them: in a batch, every row up to the last
    fold's ``seq`` (the batch holds every unfolded intent, in log order); with ``exact``, only
    those folds' rows (items written one by one, where an earlier one may have been kept back).

    Raises:
        MissedRowError: a status change matched no row.
    """
    folds: list[Fold] = []
    entries: list[Entry] = []
    for item in items:
        if isinstance(item, Fold):
            fold(cur, item.row, item.events)
            folds.append(item)
            entries += item.outbox
            continue
        if isinstance(item, Emit):
            entries.append(item.entry)
            continue
        if cur.execute(*UPDATE_ORDER.bind(item.changes)).rowcount != 1:
            raise MissedRowError(item)
        cur.execute(*INSERT_EVENT.bind(item.event))
        if item.outbox is not None:
            entries.append(item.outbox)
    outbox.sqlite_insert(cur, entries, rows.sqlite_ts)
    if folds and exact:
        cur.executemany(DELETE_INTENT, [(f.seq,) for f in folds])
    elif folds:
        cur.execute(DELETE_INTENTS, (folds[-1].seq,))
    return folds


def rollback(cur: sqlite3.Cursor) -> None:
    """Roll back if a transaction is open; a failing ROLLBACK is logged, not raised, because
    it always runs while another error is being handled (that error is the one to report)."""
    if not cur.connection.in_transaction:
        return
    try:
        cur.execute("ROLLBACK")
    except sqlite3.Error as exc:
        log.error(
            "journal rollback failed; a human must check the database file",
            error=quarantine.error_text(exc),
        )


def payload_of(item: Fold | Write) -> tuple[str, bytes]:
    """The quarantine kind and payload of a queued item."""
    if isinstance(item, Fold):
        return quarantine.KIND_INTENT, quarantine.intent_payload(item.row, item.events)
    return quarantine.KIND_WRITE, quarantine.write_payload(item.changes, item.event)


def quarantine_item(
    cur: sqlite3.Cursor,
    client_order_id: str,
    kind: str,
    payload: bytes,
    error: str,
    intent_seq: int | None,
) -> None:
    """Insert into the quarantine and, for an intent, delete its log row: one transaction, so
    the item is always in exactly one of the two places."""
    at = rows.sqlite_ts(quarantine.now_ms())
    cur.execute("BEGIN IMMEDIATE")
    try:
        cur.execute(quarantine.SQLITE_INSERT, (client_order_id, kind, payload, error, at))
        if intent_seq is not None:
            cur.execute(DELETE_INTENT, (intent_seq,))
        cur.execute("COMMIT")
    except BaseException:
        rollback(cur)
        raise


class Recovery(NamedTuple):
    folded: int
    quarantined: list[str]
    """Client order ids of the logged intents that could not be folded."""


def recovered_entry(row: Sequence[Any], hook: OrderOutbox | None) -> list[Entry]:
    """The ``submitted`` event of an intent folded at start-up, made from its logged row (the
    order as it was when its frame left); none when the row cannot be read back."""
    if hook is None:
        return []
    try:
        record = rows.record_from_row(
            dict(zip(rows.ORDER_COLUMNS, row, strict=True)), rows.sqlite_ts_to_ms
        )
    except Exception as exc:  # the fold itself decides what to do with the row
        log.error("a logged intent's event cannot be made", error=quarantine.error_text(exc))
        return []
    return entries_of(hook, record, OrderStatus.NEW, Trigger.SEND, "")


def fold_logged_intents(conn: sqlite3.Connection, hook: OrderOutbox | None = None) -> Recovery:
    """Fold in what a crash left in the intent log (start-up, before anything else).

    All in one transaction when it can; when that fails for a reason retrying cannot cure (an
    intent whose values the tables refuse, a payload that cannot be decoded), one by one, and
    each intent that still fails is quarantined, so the others are folded and the journal opens.
    A transient error (the file locked, I/O) fails ``open()`` with nothing changed.
    """
    cur = conn.cursor()
    logged: list[tuple[int, str, bytes]] = cur.execute(_SELECT_LOGGED).fetchall()
    if not logged:
        return Recovery(0, [])
    cur.execute("BEGIN IMMEDIATE")
    try:
        for _, _, payload in logged:
            row, events = decode_intent(payload)
            fold(cur, row, events)
            outbox.sqlite_insert(cur, recovered_entry(row, hook), rows.sqlite_ts)
        cur.execute(DELETE_INTENTS, (logged[-1][0],))
        cur.execute("COMMIT")
    except sqlite3.OperationalError:
        rollback(cur)
        raise
    except Exception as exc:
        rollback(cur)
        log.error(
            "intents left in the log cannot be folded together; folding them one by one",
            error=quarantine.error_text(exc),
        )
        return _fold_one_by_one(cur, logged, hook)
    except BaseException:
        rollback(cur)
        raise
    return Recovery(len(logged), [])


def _fold_one_by_one(
    cur: sqlite3.Cursor, logged: list[tuple[int, str, bytes]], hook: OrderOutbox | None
) -> Recovery:
    folded, quarantined = 0, []
    for seq, client_order_id, payload in logged:
        cur.execute("BEGIN IMMEDIATE")
        try:
            row, events = decode_intent(payload)
            fold(cur, row, events)
            outbox.sqlite_insert(cur, recovered_entry(row, hook), rows.sqlite_ts)
            cur.execute(DELETE_INTENT, (seq,))
            cur.execute("COMMIT")
        except sqlite3.OperationalError:
            rollback(cur)
            raise
        except Exception as exc:
            rollback(cur)
            _quarantine_logged(cur, seq, client_order_id, payload, exc)
            quarantined.append(client_order_id)
            continue
        except BaseException:
            rollback(cur)
            raise
        folded += 1
    return Recovery(folded, quarantined)


def _quarantine_logged(
    cur: sqlite3.Cursor, seq: int, client_order_id: str, payload: bytes, exc: Exception
) -> None:
    error = quarantine.error_text(exc)
    try:
        row, events = decode_intent(payload)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as undecodable:
        document = payload  # kept exactly as logged: nothing else can be read from it
        error += f" (payload kept as logged: {quarantine.error_text(undecodable)})"
    else:
        document = quarantine.intent_payload(row, events)
    quarantine_item(cur, client_order_id, quarantine.KIND_INTENT, document, error, seq)
    log.error(
        "a logged intent cannot be folded into the order tables and was quarantined; the order "
        "may have been sent: a human must reconcile it with the terminal",
        client_order_id=client_order_id,
        error=error,
    )
