"""The journal's quarantine (``journal_quarantine``): what could not be written, kept for a human.

A journal must never drop what the bridge wrote. When the database refuses an item for a reason
that retrying cannot cure (a value out of the column's range, a key another writer took, a row
that vanished), the SQLite journal moves the item here instead, in the transaction that takes it
off its queue or intent log, and logs it at ERROR. The payload is JSON keyed by column name, so
it can be read and repaired with nothing but a SQL shell.

The PostgreSQL journal quarantines only written-behind changes (a status change or note the
database refused, or whose guarded update matched no row), in a transaction of its own; its
intents are awaited, so their callers see every error.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, Final, cast

from sqlalchemy import Select, select

from mtgate.store import rows
from mtgate.store.models import journal_quarantine
from mtgate.store.values import QuarantinedRecord, QuarantineKind

KIND_INTENT: Final = "intent"
KIND_WRITE: Final = "write"

_WHERE_COLUMNS: Final = ("order_id", "client_order_id", "order_status")
"""The guard of a queued status change: the order and the status it must still have."""

COLUMNS: Final = ("id", "client_order_id", "kind", "payload", "error", "at")

SQLITE_INSERT: Final = (
    "INSERT INTO journal_quarantine (client_order_id, kind, payload, error, at) "
    "VALUES (?, ?, ?, ?, ?)"
)
SQLITE_SELECT: Final = f"SELECT {', '.join(COLUMNS)} FROM journal_quarantine ORDER BY id"
SQLITE_RESERVED: Final = (
    f"SELECT DISTINCT client_order_id FROM journal_quarantine WHERE kind = '{KIND_INTENT}'"
)
"""Client order ids of quarantined intents: their orders may have been sent, so the ids stay
taken across restarts although no ``execution_orders`` row holds them."""

SELECT: Final[Select[Any]] = select(*(journal_quarantine.c[name] for name in COLUMNS)).order_by(
    journal_quarantine.c.id
)


def _encode(document: dict[str, Any]) -> bytes:
    # The stdlib encoder, not msgspec: this is the failure path, and it must hold what broke
    # the write (integers beyond 64 bits, inf and NaN) rather than refuse it or write null.
    return json.dumps(document, default=repr, separators=(",", ":")).encode()


def intent_payload(row: Sequence[Any], events: Sequence[Sequence[Any]]) -> bytes:
    """An order's row and its events, as they would have been inserted."""
    return _encode(
        {
            "order": dict(zip(rows.ORDER_COLUMNS, row, strict=False)),
            "events": [dict(zip(rows.EVENT_COLUMNS, e, strict=False)) for e in events],
        }
    )


def write_payload(changes: Sequence[Any], event: Sequence[Any]) -> bytes:
    """A status change or note: the SET values, the guard, and the event to insert."""
    n = len(rows.MUTABLE_COLUMNS)
    return _encode(
        {
            "changes": dict(zip(rows.MUTABLE_COLUMNS, changes[:n], strict=False)),
            "where": dict(zip(_WHERE_COLUMNS, changes[n:], strict=False)),
            "event": dict(zip(rows.EVENT_COLUMNS, event, strict=False)),
        }
    )


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def now_ms() -> int:
    """When an item is quarantined. The wall clock, read at the store's edge: the journal has
    no clock of its own, and this stamp is for the human reading the table, not for logic."""
    return time.time_ns() // 1_000_000


def record_from_row(row: Sequence[Any], ts_in: rows.TsIn) -> QuarantinedRecord:
    """A row of :data:`COLUMNS`, as read by either journal."""
    id_, client_order_id, kind, payload, error, at = row
    return QuarantinedRecord(
        id=int(id_),
        client_order_id=str(client_order_id),
        kind=cast(QuarantineKind, str(kind)),
        payload=bytes(payload),
        error=str(error),
        at_ms=ts_in(at),
    )
