"""Requests and results of the position API (parsed like the order API's, with
:func:`mtgate.execution.requests.parse`)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from mtgate.domain.limits import INT32_MAX
from mtgate.execution.requests import (
    Account,
    ClientId,
    Magic,
    OrderError,
    OrderResult,
    Points,
    Price,
    Side,
    Symbol,
    Ticket,
    Volume,
)

PositivePoints = Annotated[int, msgspec.Meta(gt=0, le=INT32_MAX)]
IntervalMs = Annotated[int, msgspec.Meta(ge=0, le=INT32_MAX)]


class _Request(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class ModifyPositionRequest(_Request, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """New SL and/or TP of an open position; a level left out is kept, 0 removes it."""

    account: Account
    ticket: Ticket
    sl: Price | None = None
    tp: Price | None = None


class ClosePositionRequest(_Request, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Close all of a position (``volume`` omitted) or part of it, at market. The close is an
    order of its own in the journal, under ``client_order_id`` (generated when omitted)."""

    account: Account
    ticket: Ticket
    volume: Volume | None = None
    deviation_points: Points = 10
    client_order_id: ClientId | None = None


class CloseByRequest(_Request, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Close a position by an opposite one of the same symbol (hedging accounts)."""

    account: Account
    ticket: Ticket
    opposite: Ticket
    client_order_id: ClientId | None = None


class ReversePositionRequest(_Request, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Turn a position into the opposite one of ``volume`` lots (its own volume when omitted).

    Netting accounts: one deal of the position's volume plus ``volume``. Hedging accounts: a
    full close, then, only once it filled, a market order the other way."""

    account: Account
    ticket: Ticket
    volume: Volume | None = None
    sl: Price | None = None
    tp: Price | None = None
    deviation_points: Points = 10
    client_order_id: ClientId | None = None
    """Of the opening leg (the close leg gets a generated id)."""


class PositionFilter(_Request, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Which open positions a bulk operation acts on: every field given must match."""

    accounts: Annotated[list[Account], msgspec.Meta(max_length=10_000)] | None = None
    symbol: Symbol | None = None
    magic: Magic | None = None
    side: Side | None = None
    tickets: Annotated[list[Ticket], msgspec.Meta(max_length=100_000)] | None = None


class BulkModifyRequest(_Request, frozen=True, forbid_unknown_fields=True, kw_only=True):
    select: PositionFilter
    sl: Price | None = None
    tp: Price | None = None


class BulkCloseRequest(_Request, frozen=True, forbid_unknown_fields=True, kw_only=True):
    select: PositionFilter
    deviation_points: Points = 10


class TrailingStopRequest(_Request, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A trailing stop managed by the bridge: the SL follows the price at ``distance_points``,
    moving by at least ``step_points``, once the profit reaches ``activation_points``, at most
    once per ``min_interval_ms``."""

    account: Account
    ticket: Ticket
    distance_points: PositivePoints
    step_points: PositivePoints = 1
    activation_points: Points | None = None
    min_interval_ms: IntervalMs = 1000


class PositionResult(msgspec.Struct, frozen=True, omit_defaults=True):
    """Outcome of a change of SL/TP: ``done``, ``refused`` (by the bridge: nothing sent),
    ``rejected`` (by the terminal) or ``unknown`` (sent, no answer; the next sync shows it)."""

    account: str
    ticket: int
    status: Literal["done", "refused", "rejected", "unknown"]
    sl: float | None = None
    tp: float | None = None
    execution_time_ms: float | None = None
    error: OrderError | None = None


class ReversalResult(msgspec.Struct, frozen=True, omit_defaults=True):
    """``complete`` when the account now holds the reversed position. On hedging accounts a
    failed second leg leaves the position closed and nothing open: ``message`` says so."""

    complete: bool
    message: str
    close: OrderResult | None = None
    open: OrderResult | None = None


class BulkItem(msgspec.Struct, frozen=True, omit_defaults=True):
    account: str
    ticket: int
    modified: PositionResult | None = None
    closed: OrderResult | None = None
