"""Retries end to end: each fault the simulator injects, and what the bridge's retry does
with it. Every retry is a new attempt (``mg:<id>.<n>``) sent only once the previous one is
proven not to have executed; each test checks the trade server executed the order once."""

from __future__ import annotations

import asyncio

import pytest

from mtgate.domain.enums import OrderType
from mtgate.domain.orders import OrderStatus, Trigger
from mtgate.execution.requests import OrderResult
from mtgate.protocol import messages as m
from mtgate.sessions.session import SessionSettings
from mtsim.faults import Fault, FaultKind
from tests.integration.conftest import MT4, MT5H, Harness, HarnessFactory, eventually


def _positions(h: Harness, tid: str, cid: str) -> list[m.PositionReport]:
    login = h.terminal(tid).config.login
    report = h.server(tid).handle(login, m.Positions(id=0))
    assert isinstance(report, list)
    return [p for p in report if p.comment.startswith(f"mg:{cid}")]


async def _buy(h: Harness, tid: str, cid: str, **fields: object) -> OrderResult:
    fields.setdefault("volume", 0.1)
    return await h.bridge.place_market_order(
        account=h.account(tid), symbol="EURUSD", side="buy", client_order_id=cid, **fields
    )


def _steps(result: OrderResult) -> list[tuple[int, str, int | None, str | None]]:
    return [(a.attempt, a.outcome, a.code, a.next) for a in result.attempts]


@pytest.mark.parametrize(
    ("tid", "kind", "code"),
    [
        (MT4, FaultKind.REQUOTE, 138),
        (MT4, FaultKind.PRICE_CHANGED, 135),
        (MT4, FaultKind.OFF_QUOTES, 136),
        (MT5H, FaultKind.REQUOTE, 10004),
        (MT5H, FaultKind.PRICE_CHANGED, 10020),
        (MT5H, FaultKind.OFF_QUOTES, 10021),
    ],
)
async def test_a_price_refusal_is_retried_at_once_on_a_fresh_price(
    harness: Harness, tid: str, kind: FaultKind, code: int
) -> None:
    harness.terminal(tid).plan.script(Fault(kind))
    r = await _buy(harness, tid, f"rp-{code}")
    assert r.status == OrderStatus.FILLED
    assert _steps(r) == [(1, "rejected", code, "fresh_price"), (2, "filled", None, None)]
    [position] = _positions(harness, tid, f"rp-{code}")
    assert position.comment == f"mg:rp-{code}.2"
    stored = await harness.bridge.journal.get(f"rp-{code}")
    assert stored is not None and (stored.retry_count, stored.comment) == (1, f"mg:rp-{code}.2")


async def test_a_fresh_price_beyond_the_deviation_allowed_is_not_taken(harness: Harness) -> None:
    """The caller decided at a price 50 points away and allowed 10: after the requote the
    market is outside the band, so no attempt follows and the requote is the outcome."""
    ask = harness.server(MT5H).feed.quote("EURUSD").ask
    harness.terminal(MT5H).plan.script(Fault(FaultKind.REQUOTE))
    r = await _buy(harness, MT5H, "rp-far", price=round(ask - 0.0005, 5), deviation_points=10)
    assert r.status == OrderStatus.REJECTED
    assert r.error is not None and r.error.code == 10004
    assert r.attempts == ()
    assert _positions(harness, MT5H, "rp-far") == []


@pytest.mark.parametrize(
    ("tid", "kind", "code"),
    [
        (MT4, FaultKind.CONTEXT_BUSY, 146),
        (MT4, FaultKind.TOO_MANY_REQUESTS, 141),
        (MT5H, FaultKind.TOO_MANY_REQUESTS, 10024),
    ],
)
async def test_a_busy_refusal_is_retried_after_a_backoff(
    harness: Harness, tid: str, kind: FaultKind, code: int
) -> None:
    harness.terminal(tid).plan.next_trades(2, Fault(kind))
    r = await _buy(harness, tid, f"rl-{code}")
    assert r.status == OrderStatus.FILLED
    assert _steps(r) == [
        (1, "rejected", code, "backoff"),
        (2, "rejected", code, "backoff"),
        (3, "filled", None, None),
    ]
    assert len(_positions(harness, tid, f"rl-{code}")) == 1


async def test_no_connection_to_the_trade_server_is_retried_until_it_is_back(
    harness: Harness,
) -> None:
    """MT4 6: the terminal's link to its server is down for 150 ms; backoff outlasts it."""
    harness.terminal(MT4).plan.script(Fault(FaultKind.NO_CONNECTION, duration_ms=150))
    r = await _buy(harness, MT4, "rl-6")
    assert r.status == OrderStatus.FILLED
    assert {a.code for a in r.attempts[:-1]} == {6}
    assert len(_positions(harness, MT4, "rl-6")) == 1


async def test_market_closed_is_retried_only_when_the_caller_asked(harness: Harness) -> None:
    faults = harness.terminal(MT5H).plan
    faults.script(Fault(FaultKind.MARKET_CLOSED, duration_ms=1500))
    refused = await _buy(harness, MT5H, "mc-no")
    assert (refused.status, refused.attempts) == (OrderStatus.REJECTED, ())
    assert refused.error is not None and refused.error.code == 10018
    # The window is in trade-server time, which the harness's clock drives: it opens again
    # 2 s of server time later, half a second from now.
    asyncio.get_running_loop().call_later(0.5, harness.clock.advance, 2000)
    waited = await _buy(harness, MT5H, "mc-yes", retry={"market_closed_wait_s": 20})
    assert waited.status == OrderStatus.FILLED
    assert {a.code for a in waited.attempts[:-1]} == {10018}
    assert waited.attempts[0].next == "market_closed"


async def test_no_money_retries_a_smaller_volume_down_to_the_floor(harness: Harness) -> None:
    """The bridge's view of free margin is a snapshot old: the account holder has just used
    a third of it by hand, so 80 lots (86,800 of margin) are refused 10019, 40 fit."""
    login = harness.terminal(MT5H).config.login
    by_hand = harness.server(MT5H).manual_market_order(login, "EURUSD", OrderType.BUY, 30.0)
    assert by_hand.code == 10009
    r = await _buy(harness, MT5H, "nm-1", volume=80.0, retry={"min_volume": 10.0})
    assert r.status == OrderStatus.FILLED
    assert [(a.volume, a.code) for a in r.attempts] == [(80.0, 10019), (40.0, None)]
    assert r.attempts[0].next == "reduce_volume"
    assert [p.volume for p in _positions(harness, MT5H, "nm-1")] == [40.0]
    stored = await harness.bridge.journal.get("nm-1")
    assert stored is not None and (stored.volume, stored.fill_volume) == (40.0, 40.0)


async def test_no_money_is_not_retried_unless_asked_or_under_the_floor(harness: Harness) -> None:
    login = harness.terminal(MT5H).config.login
    harness.server(MT5H).manual_market_order(login, "EURUSD", OrderType.BUY, 30.0)
    floor = await _buy(harness, MT5H, "nm-2", volume=80.0, retry={"min_volume": 45.0})
    assert (floor.status, floor.attempts) == (OrderStatus.REJECTED, ())  # 40 is under 45
    assert floor.error is not None and floor.error.code == 10019
    without = await _buy(harness, MT5H, "nm-3", volume=80.0)
    assert (without.status, without.attempts) == (OrderStatus.REJECTED, ())  # not asked for


async def test_a_timeout_that_did_not_execute_ends_in_one_retried_execution(
    make_harness: HarnessFactory,
) -> None:
    """The EA hangs without executing (no answer): the bridge times out, closes the session,
    proves the attempt absent on the reconnected terminal and sends attempt 2."""
    harness = await make_harness(settings=SessionSettings(heartbeat_ms=200, request_timeout_s=0.3))
    harness.terminal(MT5H).plan.script(Fault(FaultKind.HANG))
    r = await _buy(harness, MT5H, "hang-1")
    assert r.status == OrderStatus.FILLED
    assert [(a.attempt, a.outcome) for a in r.attempts] == [(1, "absent"), (2, "filled")]
    assert len(_positions(harness, MT5H, "hang-1")) == 1
    assert harness.trades_seen(MT5H) == 1
    trail = await harness.bridge.journal.events("hang-1")
    assert Trigger.RETRY in {e.trigger for e in trail}


async def test_a_retry_can_be_refused_by_the_caller(harness: Harness) -> None:
    harness.terminal(MT5H).plan.script(Fault(FaultKind.REQUOTE))
    r = await _buy(harness, MT5H, "no-retry", retry={"enabled": False})
    assert (r.status, r.attempts) == (OrderStatus.REJECTED, ())
    assert r.error is not None and r.error.code == 10004


async def test_a_client_id_that_looks_like_an_attempt_is_refused(harness: Harness) -> None:
    from mtgate.execution.requests import InvalidRequest

    with pytest.raises(InvalidRequest) as raised:
        await _buy(harness, MT5H, "order.2")
    assert raised.value.field == "client_order_id"


async def test_a_late_answer_after_execution_ends_filled_with_no_second_order(
    make_harness: HarnessFactory,
) -> None:
    """The trade executes at once but its answer is held past the bridge's timeout: the
    events or the lookup prove the fill, and no second attempt is made."""
    harness = await make_harness(settings=SessionSettings(heartbeat_ms=200, request_timeout_s=0.3))
    harness.terminal(MT5H).plan.script(Fault(FaultKind.LATE_ANSWER, delay_ms=0))
    r = await _buy(harness, MT5H, "late-1")
    assert (r.status, r.attempts) == (OrderStatus.FILLED, ())
    assert len(_positions(harness, MT5H, "late-1")) == 1
    assert harness.trades_seen(MT5H) == 1


async def test_a_slow_response_within_the_timeout_is_one_attempt(harness: Harness) -> None:
    harness.terminal(MT5H).plan.script(Fault(FaultKind.SLOW, delay_ms=150))
    r = await _buy(harness, MT5H, "slow-ok")
    assert (r.status, r.attempts) == (OrderStatus.FILLED, ())
    assert r.execution_time_ms is not None and r.execution_time_ms >= 150
    assert harness.terminal(MT5H).plan.faults_by_kind() == {"slow": 1}


async def test_an_order_between_attempts_is_left_to_its_sender(harness: Harness) -> None:
    """Review finding: during a retry's wait the terminal drops and comes back; its
    reconciliation must not prove the order absent (NOT_FOUND) while the next attempt is
    about to be sent: the order ends with attempt 2's fill, journal and server agreeing."""
    terminal = harness.terminal(MT5H)
    terminal.plan.script(Fault(FaultKind.MARKET_CLOSED, duration_ms=1500))
    loop = asyncio.get_running_loop()
    loop.call_later(0.3, terminal.drop)  # reconnects at once, reconciles while we wait
    loop.call_later(0.6, harness.clock.advance, 2000)  # the market opens again
    r = await _buy(harness, MT5H, "mc-drop", retry={"market_closed_wait_s": 20})
    assert r.status == OrderStatus.FILLED
    assert len(_positions(harness, MT5H, "mc-drop")) == 1
    trail = await harness.bridge.journal.events("mc-drop")
    assert OrderStatus.NOT_FOUND not in {e.to_status for e in trail}
    stored = await harness.bridge.journal.get("mc-drop")
    assert stored is not None and stored.status == OrderStatus.FILLED
    assert "mc-drop" not in harness.bridge.service.book.retrying


async def test_an_outcome_unknown_code_is_resolved_not_retried(harness: Harness) -> None:
    """Review finding: 10012 TIMEOUT came back from the trade call, and the server may still
    execute it (reference §3.7 VF): the order is resolved, never sent again."""
    harness.terminal(MT5H).plan.script(Fault(FaultKind.HANG, delay_ms=50))
    r = await _buy(harness, MT5H, "vf-1")
    assert (r.status, r.attempts) == (OrderStatus.UNKNOWN, ())
    assert r.error is not None and r.error.code == 10012

    async def settled() -> bool:
        found = await harness.bridge.get_order(harness.account(MT5H), client_order_id="vf-1")
        return found is not None and found.status == OrderStatus.NOT_FOUND

    await eventually(settled)
    assert _positions(harness, MT5H, "vf-1") == []
    assert harness.trades_seen(MT5H) == 0
