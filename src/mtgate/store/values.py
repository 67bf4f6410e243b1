"""Values and errors of the journal API, shared by both implementations."""

from __future__ import annotations

from dataclasses import dataclass

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
    """One health sample of a terminal session (a row of ``bridge_health_metrics``).

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
