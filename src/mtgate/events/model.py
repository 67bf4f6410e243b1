"""The events' types, envelope and data, and the outbox entries the writers insert.

An :class:`Entry` is built where the state change is decided (on the event loop, from the
record as it is at that moment: a later change is a later event), and written by the store in
the change's own transaction. Its ``data`` is already JSON: the relay never decodes it.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable
from typing import Final, NamedTuple

import msgspec

from mtgate import logs
from mtgate.domain.orders import OrderStatus, Trigger, new_order_id
from mtgate.domain.records import OrderRecord


class EventType(enum.StrEnum):
    """Every event type the bridge emits (docs/events.md); each is also a Kafka topic."""

    ORDER_SUBMITTED = "execution.order.submitted"
    ORDER_PLACED = "execution.order.placed"
    ORDER_FILLED = "execution.order.filled"
    ORDER_REJECTED = "execution.order.rejected"
    ORDER_UNKNOWN = "execution.order.unknown"
    ORDER_CANCELLED = "execution.order.cancelled"
    ORDER_EXPIRED = "execution.order.expired"
    ORDER_NOT_FOUND = "execution.order.not_found"
    ORDER_MODIFIED = "execution.order.modified"
    POSITION_OPENED = "execution.position.opened"
    POSITION_MODIFIED = "execution.position.modified"
    POSITION_PARTIALLY_CLOSED = "execution.position.partially_closed"
    POSITION_REVERSED = "execution.position.reversed"
    POSITION_CLOSED = "execution.position.closed"
    POSITION_CHANGED = "execution.position.changed"
    PENDING_CHANGED = "execution.pending.changed"
    ACCOUNT_SYNCED = "execution.account.synced"
    TERMINAL_CONNECTED = "bridge.terminal.connected"
    TERMINAL_DISCONNECTED = "bridge.terminal.disconnected"
    TERMINAL_DOWN = "bridge.terminal.down"
    TERMINAL_UP = "bridge.terminal.up"
    ACCOUNT_SWITCHED = "bridge.account.switched"
    ALERT_RAISED = "bridge.alert.raised"
    ALERT_CLEARED = "bridge.alert.cleared"


ORDER_TYPES: Final[dict[OrderStatus, EventType]] = {
    OrderStatus.SUBMITTED: EventType.ORDER_SUBMITTED,
    OrderStatus.PLACED: EventType.ORDER_PLACED,
    OrderStatus.FILLED: EventType.ORDER_FILLED,
    OrderStatus.REJECTED: EventType.ORDER_REJECTED,
    OrderStatus.UNKNOWN: EventType.ORDER_UNKNOWN,
    OrderStatus.CANCELLED: EventType.ORDER_CANCELLED,
    OrderStatus.EXPIRED: EventType.ORDER_EXPIRED,
    OrderStatus.NOT_FOUND: EventType.ORDER_NOT_FOUND,
}
"""The event of a move to each status (a move to NEW, the order's creation, has none: the
order's first event is its ``submitted`` or, refused before sending, its ``rejected``)."""

KEY_MAX: Final = 96
"""``outbox.key``: ``login@server`` is at most 20 + 1 + 64 characters."""


class Entry(NamedTuple):
    """One outbox row before the database gives it its ``seq``."""

    event_id: str
    type: str
    key: str
    account_login: int | None
    account_server: str | None
    terminal_id: str | None
    data: bytes
    """The event's ``data`` document, JSON."""
    at_ms: int
    n: int
    """Made n-th in this process: a batch inserts its entries in the order they were made."""


OrderOutbox = Callable[[OrderRecord, OrderStatus, Trigger | None, str], Entry | None]
"""The journal's hook that makes the outbox entry of an order's change (None: no event)."""


def entry_of(
    hook: OrderOutbox | None,
    order: OrderRecord,
    previous: OrderStatus,
    trigger: Trigger | None,
    detail: str,
) -> Entry | None:
    """The outbox entry of one change of ``order`` (None without a hook, or for a change that
    is no event), made at once from the record as it is now. A hook that fails loses its
    event, logged and counted, never the journal write: an order must not go unsent because
    its event could not be made."""
    if hook is None:
        return None
    try:
        return hook(order, previous, trigger, detail)
    except Exception as exc:
        unmade.count += 1
        log.error(
            "an order event could not be made; the order's change is journalled without it",
            client_order_id=order.client_order_id,
            error=repr(exc)[:500],
        )
        return None


def entries_of(
    hook: OrderOutbox | None,
    order: OrderRecord,
    previous: OrderStatus,
    trigger: Trigger | None,
    detail: str,
) -> list[Entry]:
    """:func:`entry_of` as the list a journal inserts."""
    made = entry_of(hook, order, previous, trigger, detail)
    return [] if made is None else [made]


class Event(msgspec.Struct, frozen=True):
    """The envelope every sink carries (docs/events.md, "Envelope")."""

    id: str
    """Stable across redeliveries: consumers de-duplicate on it."""
    seq: int
    """The outbox position: increasing, with gaps; resume a stream after it."""
    type: str
    at: str
    """When the state change happened, UTC, RFC 3339 with milliseconds."""
    key: str
    """The partition key: ``login@server``, or the terminal id of an event of no account."""
    account: str | None
    terminal_id: str | None
    data: msgspec.Raw


_encode = msgspec.json.Encoder().encode
_made = itertools.count()
log = logs.get("mtgate.events")


class Unmade:
    """Events whose builder failed since start (each logged at ERROR), for the metrics."""

    count = 0


unmade = Unmade()


def encode_data(value: object) -> bytes:
    return _encode(value)


def entry(
    type_: EventType,
    *,
    account: tuple[int, str] | None,
    terminal_id: str | None,
    data: object,
    at_ms: int,
) -> Entry:
    """An entry of a fresh id, keyed by its account (else its terminal, else ``bridge``)."""
    if account is not None:
        key = f"{account[0]}@{account[1]}"
        login, server = account
    else:
        key = terminal_id or "bridge"
        login, server = None, None
    return Entry(
        new_order_id(),
        type_.value,
        key[:KEY_MAX],
        login,
        server,
        terminal_id,
        _encode(data),
        at_ms,
        next(_made),
    )


def order_type_of(previous: OrderStatus | None, status: OrderStatus) -> EventType | None:
    """The event of an order's move from ``previous`` to ``status`` (None: not an event).
    A change that keeps the status (a modify, an attempt noted) is ``modified``."""
    if previous is status:
        return EventType.ORDER_MODIFIED
    return ORDER_TYPES.get(status)


class OrderMove(msgspec.Struct, frozen=True):
    """What moved an order: the data of every ``execution.order.*`` event wraps it."""

    from_status: OrderStatus | None
    trigger: Trigger | None
    detail: str
