"""The bridge's view of one account, and how a snapshot's changes update it (pure, no I/O).

:func:`apply_snapshot` is the only code that mutates an :class:`AccountView`: it diffs the
snapshot against the previous one (:func:`mtgate.sync.diff.diff`), carries client order ids
through MT4 renumbering, and returns the changes with the position states they produced, for
the synchronizer to persist and publish.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field

from mtgate.domain.enums import DealEntry, DealReason, OrderType
from mtgate.domain.orders import client_id_from_comment
from mtgate.protocol import messages as m
from mtgate.sessions.session import AccountKey
from mtgate.store.sync_store import PositionState
from mtgate.sync.diff import DEAL_REASONS, AccountSnapshot, Change, ChangeKind, CloseReason, diff

UNEXPLAINED_KEPT = 1000
"""Closes awaiting their exit deal, at most (the oldest is forgotten first)."""


@dataclass(slots=True)
class AccountView:
    """What the bridge knows of an account between snapshots."""

    account: AccountKey
    snapshot: AccountSnapshot | None = None
    positions: dict[int, PositionState] = field(default_factory=dict)
    """Open positions by ticket, with the client order id that opened them."""
    history_cursor_ms: int | None = None
    stale: bool = False
    last_snapshot_ns: int | None = None
    """Monotonic time the last snapshot arrived (staleness)."""
    last_margin_sample_ms: int | None = None
    last_account_write_ms: int | None = None
    unexplained: dict[int, PositionState] = field(default_factory=dict)
    """Closed positions whose exit deal has not arrived yet, by position id."""

    @classmethod
    def restored(
        cls, account: AccountKey, stored: Iterable[PositionState], cursor_ms: int | None
    ) -> AccountView:
        """The view as the last run left it: its open positions become the previous snapshot,
        so what changed while the bridge was away is diffed like any other change."""
        open_positions = {p.ticket: p for p in stored if p.open}
        previous = AccountSnapshot(
            account=m.AccountReport(
                login=account.login,
                server=account.server,
                currency="",
                leverage=0,
                margin_mode=0,
                balance=0.0,
                credit=0.0,
                profit=0.0,
                equity=0.0,
                margin=0.0,
                margin_free=0.0,
                margin_level=0.0,
                margin_so_call=0.0,
                margin_so_so=0.0,
                trade_allowed=False,
                trade_expert=False,
            ),
            positions={t: report_of(p) for t, p in open_positions.items()},
            orders={},
            time_ms=0,
        )
        return cls(account, previous if open_positions else None, open_positions, cursor_ms)


@dataclass(frozen=True, slots=True)
class Applied:
    """One change and the position state it left (None for pending orders and the account)."""

    change: Change
    position: PositionState | None
    closed_part: PositionState | None = None
    """MT4 partial close: the old ticket, now in history with the closed volume."""


def report_of(p: PositionState) -> m.PositionReport:
    return m.PositionReport(
        ticket=p.ticket,
        identifier=p.identifier,
        symbol=p.symbol,
        type=OrderType.BUY if p.buy else OrderType.SELL,
        volume=p.volume,
        price_open=p.price_open,
        price_current=p.price_open,
        time_ms=p.opened_at_ms,
        magic=p.magic,
        comment=p.comment,
        sl=p.sl,
        tp=p.tp,
    )


def state_of(
    account: AccountKey,
    report: m.PositionReport,
    now_ms: int,
    *,
    client_order_id: str | None = None,
    origin_ticket: int | None = None,
) -> PositionState:
    cid = client_order_id or client_id_from_comment(report.comment)
    return PositionState(
        account=account,
        ticket=report.ticket,
        identifier=report.identifier,
        origin_ticket=origin_ticket or report.ticket,
        symbol=report.symbol,
        buy=report.type == OrderType.BUY,
        volume=report.volume,
        price_open=report.price_open,
        sl=report.sl,
        tp=report.tp,
        magic=report.magic,
        comment=report.comment,
        client_order_id=cid,
        external=cid is None,
        opened_at_ms=report.time_ms,
        updated_at_ms=now_ms,
        profit=report.profit,
    )


def apply_snapshot(view: AccountView, snap: m.Snapshot, now_ms: int) -> list[Applied]:
    """Diff ``snap`` against the view, update the view, and say what changed."""
    current = AccountSnapshot.of(snap.account, snap.positions, snap.orders, snap.time_ms)
    changes = diff(view.snapshot, current, snap.deals, snap.history_orders)
    applied = [_apply(view, current, change, snap, now_ms) for change in changes]
    applied += _opened_and_closed_between(view, current, snap, now_ms)
    applied += _explained_late(view, snap, now_ms)
    for item in applied:
        pos, change = item.position, item.change
        unexplained = change.reason == CloseReason.UNEXPLAINED
        if change.kind == ChangeKind.POSITION_CLOSED and unexplained and pos is not None:
            view.unexplained[pos.identifier] = pos
            if len(view.unexplained) > UNEXPLAINED_KEPT:  # a deal that never comes
                del view.unexplained[next(iter(view.unexplained))]
    # The terminal decides what exists: nothing the snapshot does not show stays open here
    # (an entry the bridge's own operations added early is re-added by the next snapshot).
    for ticket in [t for t in view.positions if t not in current.positions]:
        del view.positions[ticket]
    view.snapshot = current
    times = [d.time_ms for d in snap.deals] + [o.time_done_ms for o in snap.history_orders]
    if times and (view.history_cursor_ms is None or max(times) > view.history_cursor_ms):
        view.history_cursor_ms = max(times)
    return applied


def _apply(
    view: AccountView, current: AccountSnapshot, change: Change, snap: m.Snapshot, now_ms: int
) -> Applied:
    kind = change.kind
    if kind == ChangeKind.POSITION_OPENED:
        state = state_of(view.account, current.positions[change.ticket], now_ms)
        view.positions[state.ticket] = state
        return Applied(change, state)
    if kind == ChangeKind.POSITION_CLOSED:
        return Applied(change, _closed(view, change, snap, now_ms))
    if kind in (
        ChangeKind.POSITION_MODIFIED,
        ChangeKind.POSITION_REVERSED,
        ChangeKind.POSITION_PARTIALLY_CLOSED,
    ):
        if change.new_ticket:  # MT4: the rest lives on under a new ticket
            return _renumbered(view, current, change, now_ms)
        report = current.positions[change.ticket]
        old = view.positions.get(change.ticket)
        state = state_of(
            view.account,
            report,
            now_ms,
            client_order_id=old.client_order_id if old else None,
            origin_ticket=old.origin_ticket if old else None,
        )
        view.positions[state.ticket] = state
        return Applied(change, state)
    return Applied(change, None)


def _opened_and_closed_between(
    view: AccountView, current: AccountSnapshot, snap: m.Snapshot, now_ms: int
) -> list[Applied]:
    """Positions that opened and closed between two snapshots appear in neither: their deals
    tell. Each gets its *opened* and *closed* changes, the close with its deal's reason."""
    before = view.snapshot.positions.values() if view.snapshot else ()
    known = {p.identifier for p in before} | {p.identifier for p in current.positions.values()}
    by_position: dict[int, list[m.DealReport]] = {}
    for deal in snap.deals:
        if deal.position_id and deal.position_id not in known:
            by_position.setdefault(deal.position_id, []).append(deal)
    applied: list[Applied] = []
    for position_id, deals in by_position.items():
        entry = next((d for d in deals if d.entry == DealEntry.IN), None)
        exits = [d for d in deals if d.entry in (DealEntry.OUT, DealEntry.OUT_BY)]
        if entry is None or not exits:
            continue  # history of a position opened before the subscription's window
        last = max(exits, key=lambda d: (d.time_ms, d.ticket))
        cid = client_id_from_comment(entry.comment)
        report = m.PositionReport(
            ticket=position_id,
            identifier=position_id,
            symbol=entry.symbol,
            type=OrderType.BUY if entry.type == 0 else OrderType.SELL,
            volume=entry.volume,
            price_open=entry.price,
            price_current=last.price,
            time_ms=entry.time_ms,
            magic=entry.magic,
            comment=entry.comment,
        )
        opened = state_of(view.account, report, now_ms)
        view.positions.pop(position_id, None)
        reason = _reason_of(last)
        closed = dataclasses.replace(
            opened,
            open=False,
            profit=sum(d.profit + d.swap + d.commission for d in exits),
            closed_at_ms=last.time_ms,
            close_reason=reason.value,
            close_deal=last.ticket,
        )
        external = cid is None
        applied.append(
            Applied(
                Change(
                    ChangeKind.POSITION_OPENED,
                    position_id,
                    entry.symbol,
                    cid,
                    external,
                    0.0,
                    entry.volume,
                ),
                opened,
            )
        )
        applied.append(
            Applied(
                Change(
                    ChangeKind.POSITION_CLOSED,
                    position_id,
                    entry.symbol,
                    cid,
                    external,
                    entry.volume,
                    0.0,
                    reason,
                    last.ticket,
                ),
                closed,
            )
        )
    return applied


def _explained_late(view: AccountView, snap: m.Snapshot, now_ms: int) -> list[Applied]:
    """Exit deals of positions closed in an earlier snapshot without one (docs/protocol.md
    §5.3: a history backlog is carried over several snapshots)."""
    applied: list[Applied] = []
    for deal in snap.deals:
        if deal.entry not in (DealEntry.OUT, DealEntry.OUT_BY):
            continue
        closed = view.unexplained.pop(deal.position_id, None)
        if closed is None:
            continue
        reason = _reason_of(deal)
        state = dataclasses.replace(
            closed,
            close_reason=reason.value,
            close_deal=deal.ticket,
            closed_at_ms=deal.time_ms,
            profit=deal.profit + deal.swap + deal.commission,
            updated_at_ms=now_ms,
        )
        change = Change(
            ChangeKind.POSITION_CLOSE_EXPLAINED,
            closed.ticket,
            closed.symbol,
            closed.client_order_id,
            closed.external,
            closed.volume,
            0.0,
            reason,
            deal.ticket,
        )
        applied.append(Applied(change, state))
    return applied


def _reason_of(deal: m.DealReport) -> CloseReason:
    try:
        return DEAL_REASONS.get(DealReason(deal.reason), CloseReason.UNEXPLAINED)
    except ValueError:
        return CloseReason.UNEXPLAINED


def _closed(view: AccountView, change: Change, snap: m.Snapshot, now_ms: int) -> PositionState:
    old = view.positions.pop(change.ticket, None)
    if old is None:  # closed before the bridge had seen it open
        assert view.snapshot is not None
        old = state_of(view.account, view.snapshot.positions[change.ticket], now_ms)
    exit_deal = next((d for d in snap.deals if d.ticket == change.deal), None)
    closed_at = exit_deal.time_ms if exit_deal is not None else snap.time_ms
    profit = sum(
        d.profit + d.swap + d.commission
        for d in snap.deals
        if d.position_id == old.identifier and d.entry in (DealEntry.OUT, DealEntry.OUT_BY)
    )
    return dataclasses.replace(
        old,
        open=False,
        volume=change.volume_before,
        profit=profit or old.profit,
        closed_at_ms=closed_at,
        close_reason=change.reason.value if change.reason else None,
        close_deal=change.deal or None,
        updated_at_ms=now_ms,
    )


def _renumbered(
    view: AccountView, current: AccountSnapshot, change: Change, now_ms: int
) -> Applied:
    """MT4 partial close: the old ticket goes to history with the closed part; the rest is
    the same position for the bridge (same client order id and origin)."""
    old = view.positions.pop(change.ticket, None)
    if old is None:
        assert view.snapshot is not None
        old = state_of(view.account, view.snapshot.positions[change.ticket], now_ms)
    report = current.positions[change.new_ticket]
    state = state_of(
        view.account,
        report,
        now_ms,
        client_order_id=old.client_order_id,
        origin_ticket=old.origin_ticket,
    )
    view.positions[state.ticket] = state
    closed = dataclasses.replace(
        old,
        open=False,
        volume=round(change.volume_before - change.volume_after, 8),
        closed_at_ms=current.time_ms,
        close_reason="partial_close",
        updated_at_ms=now_ms,
    )
    return Applied(change, state, closed)
