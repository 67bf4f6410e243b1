"""The pure snapshot diff: every change named once, with the history's reason for closes."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from mtgate.domain.enums import DealEntry, DealReason, OrderState
from mtgate.protocol import messages as m
from mtgate.sync.diff import AccountSnapshot, Change, ChangeKind, CloseReason, diff

ACCOUNT = m.AccountReport(
    login=1,
    server="S",
    currency="USD",
    leverage=100,
    margin_mode=2,
    balance=10_000.0,
    credit=0.0,
    profit=0.0,
    equity=10_000.0,
    margin=0.0,
    margin_free=10_000.0,
    margin_level=0.0,
    margin_so_call=100.0,
    margin_so_so=50.0,
    trade_allowed=True,
    trade_expert=True,
)


def pos(
    ticket: int,
    volume: float = 0.1,
    *,
    type_: int = 0,
    comment: str = "mg:A1",
    sl: float = 0.0,
    identifier: int | None = None,
) -> m.PositionReport:
    return m.PositionReport(
        ticket=ticket,
        identifier=identifier or ticket,
        symbol="EURUSD",
        type=type_,
        volume=volume,
        price_open=1.1,
        price_current=1.1,
        time_ms=1,
        comment=comment,
        sl=sl,
    )


def order(ticket: int, price: float = 1.05, comment: str = "mg:P1") -> m.OrderReport:
    return m.OrderReport(
        ticket=ticket,
        symbol="EURUSD",
        type=2,
        state=OrderState.PLACED,
        volume_initial=0.1,
        volume_current=0.1,
        price_open=price,
        time_setup_ms=1,
        comment=comment,
    )


def deal(
    ticket: int, position: int, reason: DealReason, entry: DealEntry = DealEntry.OUT
) -> m.DealReport:
    return m.DealReport(
        ticket=ticket,
        order=ticket,
        position_id=position,
        symbol="EURUSD",
        type=1,
        entry=entry,
        volume=0.1,
        price=1.1,
        time_ms=5,
        reason=reason,
    )


def snap(
    positions: list[m.PositionReport] = (),
    orders: list[m.OrderReport] = (),  # type: ignore[assignment]
    account: m.AccountReport = ACCOUNT,
) -> AccountSnapshot:
    return AccountSnapshot.of(account, positions, orders, time_ms=1)


def kinds(changes: list[Change]) -> list[tuple[ChangeKind, int]]:
    return sorted((c.kind, c.ticket) for c in changes if c.kind != ChangeKind.ACCOUNT_CHANGED)


def test_first_snapshot_reports_everything_as_new() -> None:
    changes = diff(None, snap([pos(1)], [order(9)]))
    assert kinds(changes) == [(ChangeKind.PENDING_PLACED, 9), (ChangeKind.POSITION_OPENED, 1)]
    assert any(c.kind == ChangeKind.ACCOUNT_CHANGED for c in changes)


def test_nothing_changed_is_nothing() -> None:
    before = snap([pos(1)], [order(9)])
    moved_price = snap([msgspec.structs.replace(pos(1), price_current=1.2, profit=5.0)], [order(9)])
    assert diff(before, moved_price) == []


def test_a_manual_position_is_external() -> None:
    [opened] = [c for c in diff(snap(), snap([pos(2, comment="by hand")])) if c.ticket == 2]
    assert (opened.kind, opened.external, opened.client_order_id) == (
        ChangeKind.POSITION_OPENED,
        True,
        None,
    )


def test_bridge_position_carries_its_client_id() -> None:
    [opened] = [c for c in diff(snap(), snap([pos(2, comment="mg:ABC[sl]")])) if c.ticket == 2]
    assert (opened.external, opened.client_order_id) == (False, "ABC")


def test_close_reasons_come_from_the_exit_deal() -> None:
    before = snap([pos(1), pos(2), pos(3), pos(4), pos(5)])
    deals = [
        deal(11, 1, DealReason.SL),
        deal(12, 2, DealReason.TP),
        deal(13, 3, DealReason.SO),
        deal(14, 4, DealReason.CLIENT),
        deal(10, 1, DealReason.EXPERT, DealEntry.IN),
    ]
    closes = {c.ticket: (c.reason, c.deal) for c in diff(before, snap(), deals)}
    assert closes == {
        1: (CloseReason.SL, 11),
        2: (CloseReason.TP, 12),
        3: (CloseReason.STOP_OUT, 13),
        4: (CloseReason.MANUAL, 14),
        5: (CloseReason.UNEXPLAINED, 0),
    }


def test_mt4_partial_close_is_not_a_close_and_an_open() -> None:
    before = snap([pos(100, 0.3)])
    after = snap([pos(101, 0.1, comment="from #100")])
    [change] = [c for c in diff(before, after) if c.kind != ChangeKind.ACCOUNT_CHANGED]
    assert (change.kind, change.ticket, change.new_ticket) == (
        ChangeKind.POSITION_PARTIALLY_CLOSED,
        100,
        101,
    )
    assert (change.volume_before, change.volume_after) == (0.3, 0.1)


def test_mt5_partial_close_keeps_the_ticket() -> None:
    [change] = diff(snap([pos(7, 0.5)]), snap([pos(7, 0.2)]))
    assert (change.kind, change.volume_before, change.volume_after) == (
        ChangeKind.POSITION_PARTIALLY_CLOSED,
        0.5,
        0.2,
    )


def test_levels_and_reversal() -> None:
    [moved] = diff(snap([pos(7)]), snap([pos(7, sl=1.09)]))
    assert (moved.kind, moved.fields) == (ChangeKind.POSITION_MODIFIED, ("sl",))
    [flipped] = diff(snap([pos(7, 0.5)]), snap([pos(7, 0.2, type_=1)]))
    assert flipped.kind == ChangeKind.POSITION_REVERSED


def test_pending_orders_leave_by_their_history_state() -> None:
    before = snap([], [order(1), order(2), order(3), order(4)])
    history = [
        msgspec.structs.replace(order(1), state=OrderState.FILLED),
        msgspec.structs.replace(order(2), state=OrderState.CANCELED),
        msgspec.structs.replace(order(3), state=OrderState.EXPIRED),
    ]
    assert kinds(diff(before, snap(), history_orders=history)) == sorted(
        [
            (ChangeKind.PENDING_TRIGGERED, 1),
            (ChangeKind.PENDING_CANCELLED, 2),
            (ChangeKind.PENDING_EXPIRED, 3),
            (ChangeKind.PENDING_GONE, 4),
        ]
    )
    [modified] = diff(snap([], [order(5)]), snap([], [order(5, price=1.04)]))
    assert (modified.kind, modified.fields) == (ChangeKind.PENDING_MODIFIED, ("price_open",))


def test_account_figures_changing_is_one_change() -> None:
    richer = msgspec.structs.replace(ACCOUNT, equity=10_050.0)
    assert [c.kind for c in diff(snap(), snap(account=richer))] == [ChangeKind.ACCOUNT_CHANGED]


tickets = st.sets(st.integers(1, 40), max_size=12)


@given(tickets, tickets, tickets, tickets)
def test_every_ticket_that_comes_or_goes_is_named_exactly_once(
    pos_before: set[int], pos_after: set[int], ord_before: set[int], ord_after: set[int]
) -> None:
    before = snap([pos(t) for t in pos_before], [order(t + 100) for t in ord_before])
    after = snap([pos(t) for t in pos_after], [order(t + 100) for t in ord_after])
    changes = [c for c in diff(before, after) if c.kind != ChangeKind.ACCOUNT_CHANGED]
    named = sorted(c.ticket for c in changes)
    expected = sorted(pos_before ^ pos_after) + sorted(t + 100 for t in ord_before ^ ord_after)
    assert named == sorted(expected)


def test_a_remainder_marker_of_thousands_of_digits_is_only_a_comment() -> None:
    """``int()`` refuses strings of more than 4,300 digits: such a ``from #`` comment used to
    make every snapshot of the account fail to apply. It is no MT4 marker (a ticket fits a
    long): the position is just opened."""
    before = snap([pos(1)])
    after = snap([pos(2, comment="from #" + "9" * 5000)])
    changes = diff(before, after)
    assert {c.kind for c in changes} >= {ChangeKind.POSITION_OPENED}
    assert [c.ticket for c in changes if c.kind == ChangeKind.POSITION_OPENED] == [2]
