"""The data of each event type, built from what the bridge decided (docs/events.md, "Types").

Each builder returns the :class:`~mtgate.events.model.Entry` its writer inserts: orders from
the journal (:func:`order_entry`, its hook), positions and account syncs from the sync store,
terminals and alerts from the bridge's listeners (:class:`BridgeEvents`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import msgspec

from mtgate import logs
from mtgate.domain.orders import OrderStatus, Trigger
from mtgate.domain.records import OrderRecord
from mtgate.events.model import Entry, EventType, entry, order_type_of, unmade
from mtgate.execution.book import result_of
from mtgate.execution.requests import OrderResult
from mtgate.health.alerts import Alert, AlertKind
from mtgate.sessions.routing import Switch
from mtgate.store.sync_values import AccountState, PositionEvent
from mtgate.store.sync_writes import Buffer

log = logs.get("mtgate.events")


class OrderEventData(msgspec.Struct, frozen=True, omit_defaults=True):
    """``execution.order.*``: the order as the API shows it, and what moved it."""

    order: OrderResult
    """The same shape as an order call's answer (status, ticket, fill, slippage, error)."""
    order_id: str
    from_status: OrderStatus | None
    trigger: Trigger | None
    detail: str
    signal_id: str | None = None


def order_entry(
    order: OrderRecord, previous: OrderStatus, trigger: Trigger | None, detail: str
) -> Entry | None:
    """The event of a journalled change of ``order`` (the journal's outbox hook)."""
    kind = order_type_of(previous, order.status)
    if kind is None:
        return None
    data = OrderEventData(
        order=result_of(order),
        order_id=order.order_id,
        from_status=previous,
        trigger=trigger,
        detail=detail,
        signal_id=order.signal_id,
    )
    return entry(
        kind,
        account=(order.account_login, order.account_server),
        terminal_id=order.terminal_id,
        data=data,
        at_ms=order.updated_at_ms or order.placed_at_ms,
    )


_POSITION_TYPES: dict[str, EventType] = {
    "position_opened": EventType.POSITION_OPENED,
    "position_modified": EventType.POSITION_MODIFIED,
    "position_partially_closed": EventType.POSITION_PARTIALLY_CLOSED,
    "position_reversed": EventType.POSITION_REVERSED,
    "position_closed": EventType.POSITION_CLOSED,
    "trailing_moved": EventType.POSITION_MODIFIED,
}
"""The synchronizer's change kinds (``mtgate.sync.diff.ChangeKind``) and the trailing stop's
move; ``pending_*`` kinds are ``execution.pending.changed``, any other (the bridge's own
operations, a close's late reason) ``execution.position.changed``, the kind in the data."""


class PositionEventData(msgspec.Struct, frozen=True, omit_defaults=True):
    """``execution.position.*``: one entry of a position's history (``position_events``)."""

    ticket: int
    kind: str
    detail: str
    client_order_id: str | None = None


def position_entry(event: PositionEvent) -> Entry:
    kind = _POSITION_TYPES.get(event.kind)
    if kind is None:
        pending = event.kind.startswith("pending_")
        kind = EventType.PENDING_CHANGED if pending else EventType.POSITION_CHANGED
    data = PositionEventData(event.ticket, event.kind, event.detail, event.client_order_id)
    account = (event.account.login, event.account.server)
    return entry(kind, account=account, terminal_id=None, data=data, at_ms=event.at_ms)


class AccountSyncedData(msgspec.Struct, frozen=True):
    """``execution.account.synced``: the account's figures as this sync stored them."""

    currency: str
    leverage: int
    balance: float
    credit: float
    equity: float
    margin: float
    margin_free: float
    margin_level: float
    positions: int
    pending_orders: int
    stale: bool


def account_entry(state: AccountState) -> Entry:
    r = state.report
    data = AccountSyncedData(
        r.currency, r.leverage, r.balance, r.credit, r.equity, r.margin, r.margin_free,
        r.margin_level, state.positions, state.pending_orders, state.stale,
    )  # fmt: skip
    account = (state.account.login, state.account.server)
    return entry(
        EventType.ACCOUNT_SYNCED, account=account, terminal_id=None, data=data,
        at_ms=state.synced_at_ms,
    )  # fmt: skip


def sync_entries(buffer: Buffer) -> list[Entry]:
    """The sync store's outbox hook: a flush's position events, then its account syncs. One
    that cannot be made is logged and left out: the flush's rows must land all the same."""
    made: list[Entry] = []
    items: list[tuple[Callable[[Any], Entry], Any]] = [(position_entry, e) for e in buffer.events]
    items += [(account_entry, s) for s in buffer.accounts.values()]
    for build, value in items:
        try:
            made.append(build(value))
        except Exception as exc:
            unmade.count += 1
            log.error("a sync event could not be made; it is left out", error=repr(exc)[:500])
    return made


class TerminalEventData(msgspec.Struct, frozen=True, omit_defaults=True):
    """``bridge.terminal.connected`` / ``disconnected``."""

    terminal_id: str
    reason: str = ""


class SwitchData(msgspec.Struct, frozen=True, omit_defaults=True):
    """``bridge.account.switched``: the terminal that trades the account changed."""

    to_terminal: str
    reason: str
    from_terminal: str | None = None


class AlertData(msgspec.Struct, frozen=True, omit_defaults=True):
    """``bridge.alert.*`` and ``bridge.terminal.down`` / ``up`` (the terminal-down alert)."""

    kind: AlertKind
    state: Literal["raised", "cleared"]
    threshold: float
    message: str
    value: float | None = None


def _account_of(text: str | None) -> tuple[int, str] | None:
    if not text:
        return None
    login, _, server = text.partition("@")
    try:
        return int(login), server
    except ValueError:
        return None


class BridgeEvents:
    """Entries of what is no journalled state change: terminal sessions, switches, alerts.
    ``write`` is the journal's ``record_outbox`` (written behind, in its own transaction)."""

    def __init__(self, write: Callable[[Entry], None], now_ms: Callable[[], int]) -> None:
        self._write = write
        self._now_ms = now_ms

    def terminal(
        self, connected: bool, terminal_id: str, account: tuple[int, str] | None, reason: str
    ) -> None:
        kind = EventType.TERMINAL_CONNECTED if connected else EventType.TERMINAL_DISCONNECTED
        data = TerminalEventData(terminal_id, reason)
        self._write(
            entry(kind, account=account, terminal_id=terminal_id, data=data, at_ms=self._now_ms())
        )

    def switch(self, switch: Switch) -> None:
        data = SwitchData(switch.to_terminal, switch.reason, switch.from_terminal)
        account = (switch.account.login, switch.account.server)
        made = entry(
            EventType.ACCOUNT_SWITCHED, account=account, terminal_id=switch.to_terminal,
            data=data, at_ms=self._now_ms(),
        )  # fmt: skip
        self._write(made)

    def alert(self, alert: Alert) -> None:
        if alert.kind is AlertKind.TERMINAL_DOWN:
            kind = EventType.TERMINAL_DOWN if alert.raised else EventType.TERMINAL_UP
        else:
            kind = EventType.ALERT_RAISED if alert.raised else EventType.ALERT_CLEARED
        data = AlertData(
            alert.kind, "raised" if alert.raised else "cleared", alert.threshold,
            alert.message, alert.value,
        )  # fmt: skip
        made = entry(
            kind, account=_account_of(alert.account), terminal_id=alert.terminal_id,
            data=data, at_ms=alert.at_ms,
        )  # fmt: skip
        self._write(made)
