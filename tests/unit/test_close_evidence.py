"""An MT4 close looked up by its position's ticket is judged against the journal's other
closes of that ticket: an MT4 ticket closes once, so its one exit belongs to at most one of
them (found by `mtgate soak` under overload: a close that timed out before it started was
later settled FILLED by the exit another close of the same ticket made)."""

from __future__ import annotations

from mtgate.domain.enums import DealEntry, DealReason, OrderType, Platform
from mtgate.domain.orders import OrderAction, OrderStatus
from mtgate.domain.records import OrderRecord
from mtgate.execution.matching import close_evidence
from mtgate.protocol import messages as m

T = 10_001_524
SENT_MS = 1_767_780_015_000


def _close(n: int, status: OrderStatus, *, platform: Platform = Platform.MT4) -> OrderRecord:
    return OrderRecord(
        order_id=f"00000000-0000-4000-8000-{n:012d}",
        client_order_id=f"c{n}",
        account_login=7010,
        account_server="S",
        terminal_id="t",
        platform=platform,
        symbol="EURUSD",
        order_type=OrderType.SELL,
        volume=0.01,
        magic=77,
        comment=f"mg:c{n}",
        placed_at_ms=0,
        status=status,
        action=OrderAction.CLOSE,
        position_ticket=T,
        sent_server_ms=SENT_MS,
    )


EXIT = m.DealReport(
    ticket=20_003_049,
    order=T,
    position_id=T,
    symbol="EURUSD",
    type=1,
    entry=DealEntry.OUT,
    volume=0.01,
    price=1.08494,
    time_ms=SENT_MS + 15_000,
    reason=DealReason.EXPERT,
    magic=77,
)


def test_alone_the_fitting_exit_is_the_close_s() -> None:
    evidence = close_evidence(_close(1, OrderStatus.UNKNOWN), [EXIT])
    assert evidence.ours == EXIT and not evidence.ambiguous


def test_an_exit_another_close_was_answered_filled_for_is_not_this_one_s() -> None:
    lost = _close(1, OrderStatus.UNKNOWN)
    filled = _close(2, OrderStatus.FILLED)
    evidence = close_evidence(lost, [EXIT], [lost, filled])
    assert evidence.ours is None
    assert evidence.otherwise  # the ticket was closed by the other: this close did nothing


def test_an_exit_that_fits_another_close_in_doubt_settles_neither() -> None:
    first, second = _close(1, OrderStatus.UNKNOWN), _close(2, OrderStatus.SUBMITTED)
    evidence = close_evidence(first, [EXIT], [first, second])
    assert evidence.ours is None and not evidence.otherwise and evidence.ambiguous


def test_closes_that_did_not_execute_and_the_opening_order_claim_nothing() -> None:
    lost = _close(1, OrderStatus.UNKNOWN)
    refused = _close(2, OrderStatus.REJECTED)
    opening = _close(3, OrderStatus.FILLED)
    opening.action = OrderAction.OPEN
    evidence = close_evidence(lost, [EXIT], [lost, refused, opening])
    assert evidence.ours == EXIT and not evidence.ambiguous


def test_an_exit_before_the_rival_was_sent_is_not_the_rival_s() -> None:
    lost = _close(1, OrderStatus.UNKNOWN)
    later = _close(2, OrderStatus.UNKNOWN)
    later.sent_server_ms = EXIT.time_ms + 5_000  # sent after the exit: it cannot have made it
    evidence = close_evidence(lost, [EXIT], [lost, later])
    assert evidence.ours == EXIT and not evidence.ambiguous
