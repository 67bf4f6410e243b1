"""Reports, then a pure diff: what changed on an account between two snapshots (DESIGN §5).

A session only produces snapshots (account, positions, pending orders) and the history that
explains them (deals, history orders); this module compares two snapshots and names every
change, with the reason the deal history gives for a close. It keeps no state and does no
I/O, so the synchronizer that calls it can be tested by feeding values.

Rules (the terminal decides what exists; the deal history explains closes):

- a position that appears is *opened*, unless it is an MT4 remainder (comment ``from #N``
  naming a position that disappeared), which makes ``N`` *partially closed* instead;
- a position that disappears is *closed*, with the reason of its exit deal (SL, TP, stop-out,
  by hand, by an expert), or ``unexplained`` while the history does not show it yet;
- a position whose volume shrinks is *partially closed*; whose levels, volume or direction
  change is *modified* (direction: *reversed*, netting);
- a pending order that appears is *placed*; that disappears is *triggered*, *cancelled* or
  *expired* by its history record, or ``gone`` while the history does not show it yet;
- positions and orders without the bridge's comment prefix are marked ``external``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from mtgate.domain.enums import DealEntry, DealReason, OrderState
from mtgate.domain.orders import client_id_from_comment
from mtgate.protocol import messages as m

_FROM_TICKET = re.compile(r"from #(\d{1,19})(?!\d)")
"""An MT4 remainder's marker. At most 19 digits (a ticket fits a long): a broker comment of
thousands of digits must not make ``int()`` raise and stop every snapshot of the account."""


class ChangeKind(enum.StrEnum):
    POSITION_OPENED = "position_opened"
    POSITION_MODIFIED = "position_modified"
    POSITION_REVERSED = "position_reversed"
    POSITION_PARTIALLY_CLOSED = "position_partially_closed"
    POSITION_CLOSED = "position_closed"
    POSITION_CLOSE_EXPLAINED = "position_close_explained"
    """A close first seen without its exit deal (a history backlog) got its reason."""
    PENDING_PLACED = "pending_placed"
    PENDING_MODIFIED = "pending_modified"
    PENDING_TRIGGERED = "pending_triggered"
    PENDING_CANCELLED = "pending_cancelled"
    PENDING_EXPIRED = "pending_expired"
    PENDING_GONE = "pending_gone"
    ACCOUNT_CHANGED = "account_changed"


class CloseReason(enum.StrEnum):
    SL = "sl"
    TP = "tp"
    STOP_OUT = "stop_out"
    MANUAL = "manual"
    EXPERT = "expert"
    UNEXPLAINED = "unexplained"


DEAL_REASONS = {
    DealReason.SL: CloseReason.SL,
    DealReason.TP: CloseReason.TP,
    DealReason.SO: CloseReason.STOP_OUT,
    DealReason.CLIENT: CloseReason.MANUAL,
    DealReason.MOBILE: CloseReason.MANUAL,
    DealReason.WEB: CloseReason.MANUAL,
    DealReason.EXPERT: CloseReason.EXPERT,
}
_EXITS = frozenset({DealEntry.OUT, DealEntry.OUT_BY, DealEntry.INOUT})


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """What a terminal reported at ``time_ms``: positions and pending orders by ticket."""

    account: m.AccountReport
    positions: Mapping[int, m.PositionReport]
    orders: Mapping[int, m.OrderReport]
    time_ms: int

    @classmethod
    def of(
        cls,
        account: m.AccountReport,
        positions: Iterable[m.PositionReport],
        orders: Iterable[m.OrderReport],
        time_ms: int,
    ) -> AccountSnapshot:
        return cls(
            account, {p.ticket: p for p in positions}, {o.ticket: o for o in orders}, time_ms
        )


@dataclass(frozen=True, slots=True)
class Change:
    kind: ChangeKind
    ticket: int = 0
    symbol: str = ""
    client_order_id: str | None = None
    external: bool = False
    volume_before: float = 0.0
    volume_after: float = 0.0
    reason: CloseReason | None = None
    deal: int = 0
    new_ticket: int = 0
    fields: tuple[str, ...] = field(default=())
    """For *modified* changes: the names of the fields that changed."""


def _owner(comment: str) -> tuple[str | None, bool]:
    cid = client_id_from_comment(comment)
    return cid, cid is None


def _close_reason(identifier: int, deals: Sequence[m.DealReport]) -> tuple[CloseReason, int]:
    exits = [d for d in deals if d.position_id == identifier and d.entry in _EXITS]
    if not exits:
        return CloseReason.UNEXPLAINED, 0
    last = max(exits, key=lambda d: (d.time_ms, d.ticket))
    try:
        reason = DEAL_REASONS[DealReason(last.reason)]
    except ValueError:
        reason = CloseReason.UNEXPLAINED
    return reason, last.ticket


def _position_fields(before: m.PositionReport, after: m.PositionReport) -> tuple[str, ...]:
    return tuple(
        f for f in ("sl", "tp", "volume", "price_open") if getattr(before, f) != getattr(after, f)
    )


def _positions(
    before: Mapping[int, m.PositionReport],
    after: Mapping[int, m.PositionReport],
    deals: Sequence[m.DealReport],
) -> list[Change]:
    changes: list[Change] = []
    gone = {t: p for t, p in before.items() if t not in after}
    remainders: dict[int, m.PositionReport] = {}
    for ticket, pos in after.items():
        if ticket in before:
            continue
        source = _FROM_TICKET.search(pos.comment)
        if source is not None and int(source.group(1)) in gone:
            remainders[int(source.group(1))] = pos
    renumbered = {p.ticket for p in remainders.values()}
    for ticket, pos in after.items():
        if ticket in before or ticket in renumbered:
            continue
        cid, external = _owner(pos.comment)
        changes.append(
            Change(ChangeKind.POSITION_OPENED, ticket, pos.symbol, cid, external, 0.0, pos.volume)
        )
    for ticket, old in gone.items():
        cid, external = _owner(old.comment)
        rest = remainders.get(ticket)
        if rest is not None:  # MT4: the closed part keeps the ticket, the rest is renumbered
            changes.append(
                Change(
                    ChangeKind.POSITION_PARTIALLY_CLOSED,
                    ticket,
                    old.symbol,
                    cid,
                    external,
                    old.volume,
                    rest.volume,
                    new_ticket=rest.ticket,
                )
            )
            continue
        reason, deal = _close_reason(old.identifier, deals)
        changes.append(
            Change(
                ChangeKind.POSITION_CLOSED,
                ticket,
                old.symbol,
                cid,
                external,
                old.volume,
                0.0,
                reason,
                deal,
            )
        )
    for ticket, new in after.items():
        old_pos = before.get(ticket)
        if old_pos is None:
            continue
        change = _position_change(old_pos, new)
        if change is not None:
            changes.append(change)
    return changes


def _position_change(old: m.PositionReport, new: m.PositionReport) -> Change | None:
    """What changed in a position that stayed; None when only its price and profit moved."""
    if (
        old.sl == new.sl
        and old.tp == new.tp
        and old.volume == new.volume
        and old.price_open == new.price_open
        and old.type == new.type
    ):
        return None  # the common case, every second for every position: no attribute loop
    moved = _position_fields(old, new)
    if old.type == new.type and not moved:
        return None
    cid, external = _owner(new.comment)
    if old.type != new.type:
        kind = ChangeKind.POSITION_REVERSED
    elif new.volume < old.volume:
        kind = ChangeKind.POSITION_PARTIALLY_CLOSED
    else:
        kind = ChangeKind.POSITION_MODIFIED
    return Change(kind, new.ticket, new.symbol, cid, external, old.volume, new.volume, fields=moved)


_GONE_KINDS = {
    OrderState.FILLED: ChangeKind.PENDING_TRIGGERED,
    OrderState.CANCELED: ChangeKind.PENDING_CANCELLED,
    OrderState.EXPIRED: ChangeKind.PENDING_EXPIRED,
    OrderState.REJECTED: ChangeKind.PENDING_CANCELLED,
}


def _orders(
    before: Mapping[int, m.OrderReport],
    after: Mapping[int, m.OrderReport],
    history: Sequence[m.OrderReport],
) -> list[Change]:
    changes: list[Change] = []
    final = {o.ticket: o for o in history}
    for ticket, order in after.items():
        cid, external = _owner(order.comment)
        old = before.get(ticket)
        if old is None:
            changes.append(
                Change(
                    ChangeKind.PENDING_PLACED,
                    ticket,
                    order.symbol,
                    cid,
                    external,
                    0.0,
                    order.volume_current,
                )
            )
        elif old != order:
            moved = tuple(
                f
                for f in (
                    "price_open",
                    "stoplimit",
                    "sl",
                    "tp",
                    "expiration_ms",
                    "type",
                    "volume_current",
                )
                if getattr(old, f) != getattr(order, f)
            )
            if moved:
                changes.append(
                    Change(
                        ChangeKind.PENDING_MODIFIED,
                        ticket,
                        order.symbol,
                        cid,
                        external,
                        old.volume_current,
                        order.volume_current,
                        fields=moved,
                    )
                )
    for ticket, old in before.items():
        if ticket in after:
            continue
        cid, external = _owner(old.comment)
        record = final.get(ticket)
        kind = ChangeKind.PENDING_GONE
        if record is not None:
            try:
                kind = _GONE_KINDS.get(OrderState(record.state), ChangeKind.PENDING_GONE)
            except ValueError:
                kind = ChangeKind.PENDING_GONE
        changes.append(Change(kind, ticket, old.symbol, cid, external, old.volume_current, 0.0))
    return changes


_ACCOUNT_FIELDS = ("balance", "credit", "equity", "margin", "margin_free", "margin_level")


def diff(
    previous: AccountSnapshot | None,
    current: AccountSnapshot,
    deals: Sequence[m.DealReport] = (),
    history_orders: Sequence[m.OrderReport] = (),
) -> list[Change]:
    """Every change from ``previous`` to ``current``; with no previous snapshot, everything
    current is new. ``deals`` and ``history_orders`` are the history since ``previous``."""
    before_positions = previous.positions if previous else {}
    before_orders = previous.orders if previous else {}
    changes = _positions(before_positions, current.positions, deals)
    changes += _orders(before_orders, current.orders, history_orders)
    if previous is None or any(
        getattr(previous.account, f) != getattr(current.account, f) for f in _ACCOUNT_FIELDS
    ):
        changes.append(Change(ChangeKind.ACCOUNT_CHANGED))
    return changes
