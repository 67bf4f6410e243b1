"""The account view: snapshots applied in order, client ids carried through renumbering."""

from __future__ import annotations

import itertools

import msgspec

from mtgate.domain.enums import DealEntry, DealReason
from mtgate.protocol import messages as m
from mtgate.sessions.session import AccountKey
from mtgate.sync.diff import ChangeKind, CloseReason
from mtgate.sync.view import AccountView, apply_snapshot
from tests.unit.test_sync_diff import ACCOUNT, pos

KEY = AccountKey(1, "S")


def snap(
    time_ms: int,
    positions: list[m.PositionReport],
    deals: list[m.DealReport] | None = None,
    account: m.AccountReport = ACCOUNT,
) -> m.Snapshot:
    return m.Snapshot(time_ms=time_ms, account=account, positions=positions, deals=deals or [])


def exit_deal(ticket: int, position: int, reason: DealReason, time_ms: int) -> m.DealReport:
    return m.DealReport(
        ticket=ticket,
        order=ticket,
        position_id=position,
        symbol="EURUSD",
        type=1,
        entry=DealEntry.OUT,
        volume=0.1,
        price=1.1,
        time_ms=time_ms,
        reason=reason,
        profit=12.5,
        commission=-0.5,
    )


def test_first_snapshot_opens_everything_and_marks_external() -> None:
    view = AccountView(KEY)
    applied = apply_snapshot(view, snap(10, [pos(1), pos(2, comment="manual")]), now_ms=11)
    kinds = [(a.change.kind, a.change.ticket) for a in applied]
    assert kinds == [
        (ChangeKind.POSITION_OPENED, 1),
        (ChangeKind.POSITION_OPENED, 2),
        (ChangeKind.ACCOUNT_CHANGED, 0),
    ]
    assert view.positions[1].client_order_id == "A1" and not view.positions[1].external
    assert view.positions[2].client_order_id is None and view.positions[2].external


def test_only_price_and_profit_moving_changes_nothing() -> None:
    view = AccountView(KEY)
    apply_snapshot(view, snap(10, [pos(1)]), now_ms=11)
    moved = msgspec.structs.replace(pos(1), price_current=1.2, profit=50.0)
    assert apply_snapshot(view, snap(20, [moved]), now_ms=21) == []


def test_mt4_partial_close_keeps_the_client_id_on_the_new_ticket() -> None:
    view = AccountView(KEY)
    apply_snapshot(view, snap(10, [pos(1, 0.5)]), now_ms=11)
    rest = pos(2, 0.3, comment="from #1")
    applied = apply_snapshot(view, snap(20, [rest]), now_ms=21)
    [item] = [a for a in applied if a.change.kind != ChangeKind.ACCOUNT_CHANGED]
    assert item.change.kind == ChangeKind.POSITION_PARTIALLY_CLOSED
    assert item.position is not None and item.closed_part is not None
    assert (item.position.ticket, item.position.client_order_id, item.position.origin_ticket) == (
        2,
        "A1",
        1,
    )
    assert (item.closed_part.ticket, item.closed_part.open, item.closed_part.volume) == (
        1,
        False,
        0.2,
    )
    assert list(view.positions) == [2]
    # A second renumbering still leads back to the first ticket and the same client id.
    applied = apply_snapshot(view, snap(30, [pos(3, 0.1, comment="from #2")]), now_ms=31)
    assert view.positions[3].client_order_id == "A1" and view.positions[3].origin_ticket == 1


def test_a_close_takes_its_reason_profit_and_time_from_the_exit_deal() -> None:
    view = AccountView(KEY)
    apply_snapshot(view, snap(10, [pos(1)]), now_ms=11)
    applied = apply_snapshot(
        view, snap(20, [], deals=[exit_deal(9, 1, DealReason.TP, 15)]), now_ms=21
    )
    [item] = [a for a in applied if a.change.kind == ChangeKind.POSITION_CLOSED]
    assert item.change.reason == CloseReason.TP
    assert item.position is not None
    assert (item.position.open, item.position.close_deal, item.position.closed_at_ms) == (
        False,
        9,
        15,
    )
    assert item.position.profit == 12.0
    assert view.positions == {}
    assert view.history_cursor_ms == 15


def test_a_restored_view_diffs_what_changed_while_away() -> None:
    view = AccountView(KEY)
    apply_snapshot(view, snap(10, [pos(1), pos(2, comment="mg:B2")]), now_ms=11)
    stored = list(view.positions.values())
    restored = AccountView.restored(KEY, stored, cursor_ms=10)
    applied = apply_snapshot(
        restored,
        snap(50, [pos(2, comment="mg:B2")], deals=[exit_deal(9, 1, DealReason.SL, 40)]),
        now_ms=51,
    )
    closes = [a for a in applied if a.change.kind == ChangeKind.POSITION_CLOSED]
    assert [(a.change.ticket, a.change.reason, a.change.client_order_id) for a in closes] == [
        (1, CloseReason.SL, "A1")
    ]
    assert not [a for a in applied if a.change.kind == ChangeKind.POSITION_OPENED]
    assert restored.history_cursor_ms == 40


def test_a_position_opened_and_closed_between_snapshots_is_told_by_its_deals() -> None:
    view = AccountView(KEY)
    apply_snapshot(view, snap(10, []), now_ms=11)
    entry = m.DealReport(
        ticket=8,
        order=5,
        position_id=5,
        symbol="EURUSD",
        type=0,
        entry=DealEntry.IN,
        volume=0.1,
        price=1.1,
        time_ms=12,
        comment="mg:Q1",
    )
    applied = apply_snapshot(
        view, snap(20, [], deals=[entry, exit_deal(9, 5, DealReason.SL, 15)]), now_ms=21
    )
    kinds = [(a.change.kind, a.change.ticket, a.change.client_order_id) for a in applied]
    assert (ChangeKind.POSITION_OPENED, 5, "Q1") in kinds
    assert (ChangeKind.POSITION_CLOSED, 5, "Q1") in kinds
    [closed] = [a for a in applied if a.change.kind == ChangeKind.POSITION_CLOSED]
    assert closed.change.reason == CloseReason.SL
    assert closed.position is not None and closed.position.close_reason == "sl"
    assert view.positions == {}


def test_a_close_whose_exit_deal_comes_later_is_explained_then() -> None:
    """A history backlog carried over several snapshots (docs/protocol.md §5.3)."""
    view = AccountView(KEY)
    apply_snapshot(view, snap(10, [pos(1)]), now_ms=11)
    first = apply_snapshot(view, snap(20, []), now_ms=21)
    [closed] = [a for a in first if a.change.kind == ChangeKind.POSITION_CLOSED]
    assert closed.change.reason == CloseReason.UNEXPLAINED
    later = apply_snapshot(
        view, snap(30, [], deals=[exit_deal(9, 1, DealReason.SO, 18)]), now_ms=31
    )
    [explained] = [a for a in later if a.change.kind == ChangeKind.POSITION_CLOSE_EXPLAINED]
    assert explained.change.reason == CloseReason.STOP_OUT
    assert explained.position is not None
    assert (explained.position.close_reason, explained.position.close_deal) == ("stop_out", 9)
    assert view.unexplained == {}


def test_sync_phases_spread_any_number_of_accounts_over_the_interval() -> None:
    """After a restart every terminal reconnects at once; their snapshots must not."""
    from mtgate.domain.clock import ManualClock
    from mtgate.store.sync_store import SyncStore
    from mtgate.sync.synchronizer import Synchronizer, SyncSettings

    clock = ManualClock(0)
    sync = Synchronizer(SyncStore("sqlite://"), clock, SyncSettings(interval_ms=1000))
    for n in (2, 7, 100):
        delays = sorted(sync.phase_delay_ms(AccountKey(i, f"S{n}")) for i in range(n))
        gaps = [b - a for a, b in itertools.pairwise(delays)]
        gaps.append(1000 - delays[-1] + delays[0])
        assert max(gaps) <= 3 * 1000 / n, (n, max(gaps))
        assert all(0 <= d < 1000 for d in delays)
