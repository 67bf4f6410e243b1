"""The values the synchronizer's store keeps: positions, trailing stops, account states,
position events, and the rows the database refused (re-exported by :mod:`mtgate.store.sync_store`)."""

from __future__ import annotations

from dataclasses import dataclass

from mtgate.protocol import messages as m
from mtgate.sessions.session import AccountKey


@dataclass(frozen=True, slots=True)
class PositionState:
    """The bridge's view of one position (open, or closed and kept for the record)."""

    account: AccountKey
    ticket: int
    identifier: int
    origin_ticket: int
    symbol: str
    buy: bool
    volume: float
    price_open: float
    sl: float
    tp: float
    magic: int
    comment: str
    client_order_id: str | None
    external: bool
    opened_at_ms: int
    updated_at_ms: int
    open: bool = True
    profit: float = 0.0
    closed_at_ms: int | None = None
    close_reason: str | None = None
    close_deal: int | None = None


@dataclass(frozen=True, slots=True)
class TrailingState:
    """A trailing stop as stored; ``active`` ones are reloaded at start-up."""

    account: AccountKey
    ticket: int
    symbol: str
    buy: bool
    distance_points: int
    step_points: int
    activation_points: int | None
    min_interval_ms: int
    active: bool
    stop_loss: float | None
    moves: int
    last_moved_at_ms: int | None
    finished_reason: str | None
    created_at_ms: int
    updated_at_ms: int


@dataclass(frozen=True, slots=True)
class AccountState:
    account: AccountKey
    report: m.AccountReport
    positions: int
    pending_orders: int
    stale: bool
    history_cursor_ms: int | None
    synced_at_ms: int


@dataclass(frozen=True, slots=True)
class PositionEvent:
    account: AccountKey
    ticket: int
    kind: str
    client_order_id: str | None
    detail: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class RefusedRow:
    """A row the database refused for good (a value out of its column's range, say): it is
    dropped from the buffer, so that every other row is still written, and kept here to see."""

    table: str
    key: str
    """The row's key in its table, account included (``login/server/ticket`` for positions)."""
    error: str
    account: AccountKey
    value: object
    """What was buffered: a :class:`PositionState`, a ``(account, DealReport, client order
    id)``, an :class:`AccountState`, an ``(account, AccountReport, at_ms)`` margin sample, a
    :class:`PositionEvent` or a :class:`TrailingState`."""
