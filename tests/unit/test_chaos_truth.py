"""The chaos verdict: each counter fed constructed cases."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from mtgate.chaos.ops import executions
from mtgate.chaos.truth import (
    Execution,
    Intent,
    JournalOrder,
    PositionFacts,
    Truth,
    compare,
    intent_of,
    retries,
)
from mtgate.domain.orders import OrderStatus as S
from mtgate.protocol import messages as m
from mtsim.server import ExecutedRequest

A = "1001@Chaos"


def _truth(
    intents: list[Intent] | None = None,
    journal: list[JournalOrder] | None = None,
    executions: list[Execution] | None = None,
    pending: set[int] | None = None,
    server_positions: list[PositionFacts] | None = None,
    synced: list[PositionFacts] | None = None,
) -> Truth:
    return Truth(
        intents=intents or [],
        journal=journal or [],
        executions=executions or [],
        server_pending={A: pending or set()},
        server_positions={A: server_positions or []},
        synced_positions={A: synced or []},
    )


def _filled(cid: str, ticket: int = 11, **fields: object) -> JournalOrder:
    values: dict[str, object] = {
        "status": S.FILLED,
        "ticket": ticket,
        "fill_volume": 0.1,
        "fill_price": 1.1,
    } | fields
    return JournalOrder(cid, A, **values)  # type: ignore[arg-type]


def _market(cid: str | None, ticket: int = 11, **fields: object) -> Execution:
    values: dict[str, object] = {"volume": 0.1, "price": 1.1} | fields
    return Execution(A, "market", cid, ticket, **values)  # type: ignore[arg-type]


def _counts(truth: Truth) -> dict[str, int]:
    v = compare(truth)
    return {c: v.count(c) for c in ("duplicates", "lost", "unknown_unresolved", "mismatches")}


ZERO = {"duplicates": 0, "lost": 0, "unknown_unresolved": 0, "mismatches": 0}


def test_a_clean_run_counts_nothing() -> None:
    pos = PositionFacts(11, 0.1, 1.0, 1.2)
    truth = _truth(
        intents=[Intent("a", A, S.FILLED), Intent("r", A, S.REJECTED), Intent("p", A, S.PLACED)],
        journal=[
            _filled("a"),
            JournalOrder("r", A, S.REJECTED),
            JournalOrder("p", A, S.PLACED, ticket=12, requested_price=1.05),
        ],
        executions=[_market("a"), Execution(A, "pending", "p", 12, 0.1, 1.05)],
        pending={12},
        server_positions=[pos],
        synced=[pos],
    )
    verdict = compare(truth)
    assert verdict.clean and _counts(truth) == ZERO


def test_an_intent_executed_twice_is_a_duplicate_retries_included() -> None:
    truth = _truth(
        intents=[Intent("a", A, S.FILLED)],
        journal=[_filled("a")],
        executions=[_market("a"), _market(intent_of("a.2"), ticket=12)],
    )
    assert _counts(truth) == ZERO | {"duplicates": 1}


def test_executions_of_every_attempt_count_for_their_intent() -> None:
    """Attempts 1, 2 and 3 of one intent (comments ``mg:b``, ``mg:b.2``, ``mg:b.3``) all
    executed: one intent, three executions, one duplicate finding."""

    def executed(ticket: int, comment: str) -> ExecutedRequest:
        req = m.MarketOrder(
            id=1, symbol="EURUSD", order_type=0, volume=0.2, magic=0, comment=comment
        )
        res = m.TradeResult(
            code=10010, order=ticket, volume=0.1, price=1.1, bid=1.1, ask=1.1, time_ms=0
        )
        return ExecutedRequest(0, 1001, req, res)

    server = SimpleNamespace(
        name="Chaos",
        executed=[executed(11, "mg:b"), executed(12, "mg:b.2"), executed(13, "mg:b.3")],
    )
    found = executions(server)  # type: ignore[arg-type]
    assert [(e.client_order_id, e.volume, e.requested_volume) for e in found] == [
        ("b", 0.1, 0.2)
    ] * 3
    truth = _truth(
        intents=[Intent("b", A, S.FILLED)],
        journal=[_filled("b", retry_count=2)],
        executions=[dataclasses.replace(e, account=A) for e in found],
    )
    verdict = compare(truth)
    assert _counts(truth) == ZERO | {"duplicates": 1}
    assert "3 executions" in verdict.findings[0].server


def test_a_retry_comment_belongs_to_its_intent() -> None:
    assert intent_of("x7-3.2") == "x7-3"
    assert intent_of("x7-3.12") == "x7-3"
    assert intent_of("x7-3") == "x7-3"
    assert intent_of("x7-3.1") == "x7-3.1"  # attempt 1 has no suffix: not an attempt id


def test_a_partial_fill_is_judged_by_the_volume_the_server_filled() -> None:
    """Asked 0.2, the server filled 0.1 (IOC, 10010): FILLED with fill_volume 0.1 is right;
    a journal that says 0.2 filled, or that lost the volume asked, is a mismatch."""

    def judged(**journal: object) -> dict[str, int]:
        record = _filled("p", volume=0.2, **journal)
        ex = _market("p", volume=0.1, requested_volume=0.2)
        return _counts(
            _truth(intents=[Intent("p", A, S.FILLED)], journal=[record], executions=[ex])
        )

    assert judged(fill_volume=0.1) == ZERO
    assert judged(fill_volume=0.2) == ZERO | {"mismatches": 1}


def test_a_volume_reduced_by_a_retry_must_be_the_servers_final_volume() -> None:
    """Attempt 1 asked 0.4 (no money), attempt 2 asked 0.2 and was filled: the journal's
    volume is the executed attempt's 0.2; one still saying 0.4 is a mismatch."""
    ex = _market("r", volume=0.2, requested_volume=0.2)

    def judged(volume: float) -> dict[str, int]:
        record = _filled("r", volume=volume, fill_volume=0.2, retry_count=1)
        return _counts(
            _truth(intents=[Intent("r", A, S.FILLED)], journal=[record], executions=[ex])
        )

    assert judged(0.2) == ZERO
    assert judged(0.4) == ZERO | {"mismatches": 1}


def test_lost_intents_no_status_or_one_the_server_contradicts() -> None:
    truth = _truth(
        intents=[
            Intent("unanswered", A, None),
            Intent("filled-nothing", A, S.FILLED),
            Intent("rejected-executed", A, S.REJECTED),
            Intent("absent-executed", A, S.NOT_FOUND),
        ],
        journal=[
            _filled("filled-nothing"),
            JournalOrder("rejected-executed", A, S.REJECTED),
            JournalOrder("absent-executed", A, S.NOT_FOUND),
        ],
        executions=[_market("rejected-executed"), _market("absent-executed", ticket=13)],
    )
    assert _counts(truth) == ZERO | {"lost": 4}


def test_an_execution_no_intent_accounts_for_is_lost() -> None:
    truth = _truth(executions=[_market("stranger")])
    assert _counts(truth) == ZERO | {"lost": 1}


def test_an_mt4_close_is_attributed_by_the_position_ticket() -> None:
    close = JournalOrder(
        "c",
        A,
        S.FILLED,
        action="close",
        ticket=11,
        position_ticket=11,
        fill_volume=0.1,
        fill_price=1.1,
    )
    ex = Execution(A, "close", None, 11, 0.1, 1.1, request_ticket=11)
    assert (
        _counts(_truth(intents=[Intent("c", A, S.FILLED)], journal=[close], executions=[ex]))
        == ZERO
    )
    second = Execution(A, "close", None, 11, 0.1, 1.1, request_ticket=11)
    counts = _counts(
        _truth(intents=[Intent("c", A, S.FILLED)], journal=[close], executions=[ex, second])
    )
    assert counts == ZERO | {"lost": 1}  # nothing in the journal accounts for the second close


def test_orders_in_doubt_are_unresolved() -> None:
    truth = _truth(
        intents=[Intent("u", A, S.UNKNOWN), Intent("s", A, S.UNKNOWN)],
        journal=[JournalOrder("u", A, S.UNKNOWN), JournalOrder("s", A, S.SUBMITTED)],
        executions=[_market("u")],
    )
    assert _counts(truth) == ZERO | {"unknown_unresolved": 2}


def test_journal_fields_that_differ_from_the_server_are_mismatches() -> None:
    truth = _truth(
        intents=[Intent(c, A, S.FILLED) for c in ("t", "v", "p")],
        journal=[_filled("t", ticket=99), _filled("v", ticket=12), _filled("p", ticket=13)],
        executions=[
            _market("t"),
            _market("v", ticket=12, volume=0.05),
            _market("p", ticket=13, price=1.2),
        ],
    )
    assert _counts(truth) == ZERO | {"mismatches": 3}


def test_pending_state_and_synced_positions_that_differ_are_mismatches() -> None:
    truth = _truth(
        intents=[Intent("gone", A, S.PLACED), Intent("still", A, S.CANCELLED)],
        journal=[
            JournalOrder("gone", A, S.PLACED, ticket=21, requested_price=1.0),
            JournalOrder("still", A, S.CANCELLED, ticket=22, requested_price=1.0),
        ],
        executions=[
            Execution(A, "pending", "gone", 21, 0.1, 1.0),
            Execution(A, "pending", "still", 22, 0.1, 1.0),
        ],
        pending={22},
        server_positions=[PositionFacts(1, 0.1, 1.0, 0.0), PositionFacts(2, 0.2, 0.0, 0.0)],
        synced=[PositionFacts(1, 0.1, 1.01, 0.0), PositionFacts(3, 0.2, 0.0, 0.0)],
    )
    # gone: placed vs not pending; still: cancelled vs placed; #1 SL; #2 missing; #3 extra.
    assert _counts(truth) == ZERO | {"mismatches": 5}


def test_retries_are_the_journals_attempts_beyond_the_first() -> None:
    assert retries([JournalOrder("a", A, S.FILLED, retry_count=2), _filled("b")]) == 2


def test_a_close_of_a_position_already_gone_is_done_with_nothing_traded() -> None:
    """MT5 10036: FILLED without a fill; consistent only if the position is not open."""
    gone = JournalOrder("c", A, S.FILLED, action="close", position_ticket=11)
    intents = [Intent("c", A, S.FILLED)]
    assert _counts(_truth(intents=intents, journal=[gone])) == ZERO
    still_open = [PositionFacts(11, 0.1, 0.0, 0.0)]
    counts = _counts(
        _truth(intents=intents, journal=[gone], server_positions=still_open, synced=still_open)
    )
    assert counts == ZERO | {"lost": 1}
