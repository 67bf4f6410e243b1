"""Values and errors of the journal API, shared by both implementations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mtgate.domain.orders import InvalidTransition, OrderStatus, Trigger, transition


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """One row of an order's audit trail.

    ``from_status`` is None for the creation event; ``trigger`` is None for the creation event
    and for recorded modifications that do not change the status (``from_status == to_status``).
    """

    from_status: OrderStatus | None
    to_status: OrderStatus
    trigger: Trigger | None
    detail: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class HealthSample:
    """One health sample of a configured terminal (a row of ``bridge_health_metrics``),
    connected or not (``connection_status`` ``disconnected``).

    ``rejection_rate`` is the percentage (0-100) of trade requests rejected over the sampling
    window, as the seed's ``DECIMAL(5,2)`` held it. Times are epoch ms; latencies keep
    sub-millisecond precision.
    """

    terminal_id: str
    connection_status: str
    recorded_at_ms: int
    account_login: int | None = None
    account_server: str | None = None
    last_heartbeat_ms: int | None = None
    execution_latency_ms: float | None = None
    rejection_rate: float | None = None
    sync_delay_ms: float | None = None
    heartbeat_rtt_ms: float | None = None
    """Round trip of the bridge's last answered ``ping`` (migration 0009, as below)."""
    latency_p50_ms: float | None = None
    """Median send-to-answer time of the terminal's requests over the recent window."""
    latency_p99_ms: float | None = None
    disconnects: int | None = None
    """Sessions of this terminal that closed since the bridge started."""
    flaps: int | None = None
    """Of those, how many closed within the flap window (what the flapping alert compares)."""
    snapshot_age_ms: float | None = None
    """Time since the account's last snapshot (None: not synced)."""
    ready: bool | None = None


QuarantineKind = Literal["intent", "write"]


@dataclass(frozen=True, slots=True)
class QuarantinedRecord:
    """Something the journal could not write and kept for a human (``journal_quarantine``).

    Nothing the bridge journals is dropped: an item the database refuses for a reason that
    retrying cannot cure (a value out of range, a key another writer took) lands here instead,
    with an ERROR log. ``kind`` is ``intent`` for an order whose intent was committed (so it may
    have been sent) but whose rows the order tables refused; its client order id stays taken.
    ``write`` is a status change or note of an order whose row was refused or is missing.

    ``payload`` is a JSON document of what would have been written, keyed by column name:
    ``{"order": {...}, "events": [{...}, ...]}`` for an intent, ``{"changes": {...},
    "where": {...}, "event": {...}}`` for a write. Timestamps and ids are as the backend stores
    them. An intent whose log row could not even be decoded keeps its intent-log bytes as they
    were. ``error`` says why the database refused it; ``at_ms`` is when it was quarantined.
    """

    id: int
    client_order_id: str
    kind: QuarantineKind
    payload: bytes
    error: str
    at_ms: int


class JournalError(Exception):
    """The journal could not do what was asked; nothing was written by the failing call."""


class JournalNotOpenError(JournalError):
    def __init__(self) -> None:
        super().__init__("the journal is not open: call and await open() first")


class DuplicateOrderError(JournalError):
    """An order with this client order id (or order id) is already journalled.

    Raised by ``record_submitted``/``record_refused`` before anything is sent: the bridge must
    not send a second order under an id it already used.
    """

    def __init__(self, client_order_id: str, order_id: str) -> None:
        super().__init__(
            f"order {client_order_id!r} (order_id {order_id}) is already in the journal"
        )
        self.client_order_id = client_order_id
        self.order_id = order_id


class UnstorableOrderError(JournalError):
    """A time of the record cannot be stored by this journal (it is out of the backend's range).

    Raised before anything of the call is written, so the bridge does not send the order.
    Inputs are bounded where they enter; this names the field when one slips through.
    """

    def __init__(self, client_order_id: str, field: str, value: int, reason: Exception) -> None:
        super().__init__(
            f"order {client_order_id!r}: {field}={value} cannot be stored in the journal "
            f"({type(reason).__name__}: {reason}); nothing was written"
        )
        self.client_order_id = client_order_id
        self.field = field
        self.value = value


class UnreadableOrderError(JournalError):
    """A journalled order's row cannot be turned back into a record (a value this code cannot
    represent, written by another version or another writer). Lists skip such a row and count
    it; a read of that one order raises this, naming it, so a human can repair the row."""

    def __init__(self, client_order_id: str, reason: Exception | str) -> None:
        why = reason if isinstance(reason, str) else f"{type(reason).__name__}: {reason}"
        super().__init__(f"journalled order {client_order_id!r} cannot be read: {why}")
        self.client_order_id = client_order_id
        self.reason = why


class StaleOrderError(JournalError):
    """The journalled status is not the ``previous`` status the caller based its change on.

    Another writer changed the order first (or it does not exist). The caller's view of the
    order is stale; it must reload it from the journal rather than overwrite it.
    """

    def __init__(
        self, client_order_id: str, expected: OrderStatus, actual: OrderStatus | None
    ) -> None:
        found = "it is not in the journal" if actual is None else f"it is {actual.value!r}"
        super().__init__(
            f"order {client_order_id!r} was expected in status {expected.value!r} but {found}"
        )
        self.client_order_id = client_order_id
        self.expected = expected
        self.actual = actual


class TransitionMismatchError(InvalidTransition):
    """The transition table allows the trigger, but the record's status is not its result.

    A subclass of :class:`InvalidTransition` so callers handle every state-machine violation
    in one place; the message names all three statuses because "no transition" would mislead.
    """

    def __init__(
        self, status: OrderStatus, trigger: Trigger, expected: OrderStatus, actual: OrderStatus
    ) -> None:
        Exception.__init__(
            self,
            f"{status.value!r} on {trigger.value!r} leads to {expected.value!r}, "
            f"but the record says {actual.value!r}",
        )
        self.status = status
        self.trigger = trigger
        self.expected = expected
        self.actual = actual


class JournalConfigError(ValueError):
    """The journal URL or an option names something the journal does not support."""


def check_transition(previous: OrderStatus, trigger: Trigger, status: OrderStatus) -> None:
    """Raise unless the state machine takes ``previous`` to ``status`` on ``trigger``."""
    expected = transition(previous, trigger)
    if expected is not status:
        raise TransitionMismatchError(previous, trigger, expected, status)
