"""Manual overrides: a human settles an order the bridge cannot, audited with who and why."""

from __future__ import annotations

import json

import pytest

from mtgate.domain.orders import OrderStatus, Trigger
from mtgate.execution.overrides import OverrideAudit, OverrideRefused
from mtgate.execution.requests import InvalidRequest
from tests.integration.conftest import MT5H, Harness, eventually


async def _stuck(h: Harness, cid: str) -> None:
    """An order sent, its terminal gone before executing it and not coming back: UNKNOWN,
    with nothing the bridge can look it up on."""
    faults = h.terminal(MT5H).faults
    faults.drop_before_next_trade = True
    faults.stay_down = True
    r = await h.bridge.place_market_order(
        account=h.account(MT5H),
        symbol="EURUSD",
        side="buy",
        volume=0.1,
        client_order_id=cid,
        retry={"enabled": False},  # its caller does not wait for a proof of absence
    )
    assert r.status == OrderStatus.UNKNOWN


async def test_mark_resolved_ends_an_order_in_doubt_with_the_audit(harness: Harness) -> None:
    await _stuck(harness, "stuck-1")
    done = await harness.bridge.override_resolve(
        "stuck-1",
        "not_found",
        evidence="terminal journal: no request from the EA at 10:00",
        operator="alice",
        reason="terminal machine replaced",
    )
    assert (done.previous, done.status) == (OrderStatus.UNKNOWN, OrderStatus.NOT_FOUND)
    found = await harness.bridge.get_order(harness.account(MT5H), client_order_id="stuck-1")
    assert found is not None and found.status == OrderStatus.NOT_FOUND
    last = (await harness.bridge.journal.events("stuck-1"))[-1]
    assert (last.from_status, last.to_status, last.trigger) == (
        OrderStatus.UNKNOWN,
        OrderStatus.NOT_FOUND,
        Trigger.OVERRIDE_ABSENT,
    )
    audit = OverrideAudit.parse(last.detail)
    assert audit is not None
    assert (audit.operator, audit.reason, audit.previous) == (
        "alice",
        "terminal machine replaced",
        OrderStatus.UNKNOWN,
    )
    assert json.loads(last.detail)["evidence"].startswith("terminal journal")
    # The terminal returning later changes nothing: the status is final.
    harness.terminal(MT5H).faults.stay_down = False
    await harness.ready(MT5H)
    again = await harness.bridge.get_order(harness.account(MT5H), client_order_id="stuck-1")
    assert again is not None and again.status == OrderStatus.NOT_FOUND
    assert harness.trades_seen(MT5H) == 0


async def test_a_final_status_is_never_overridden(harness: Harness) -> None:
    r = await harness.bridge.place_market_order(
        account=harness.account(MT5H),
        symbol="EURUSD",
        side="buy",
        volume=0.1,
        client_order_id="done-1",
    )
    assert r.status == OrderStatus.FILLED
    with pytest.raises(OverrideRefused, match="final status is never changed"):
        await harness.bridge.override_resolve(
            "done-1", "rejected", evidence="x", operator="bob", reason="mistake"
        )
    with pytest.raises(OverrideRefused, match="not in the journal"):
        await harness.bridge.override_cancel("nobody", operator="bob", reason="typo")
    assert [e.to_status for e in await harness.bridge.journal.events("done-1")][-1] == (
        OrderStatus.FILLED
    )


async def test_cancel_intent_refuses_an_order_that_was_sent(harness: Harness) -> None:
    await _stuck(harness, "stuck-2")
    with pytest.raises(OverrideRefused, match="was sent and may have executed"):
        await harness.bridge.override_cancel("stuck-2", operator="carol", reason="clean up")
    found = await harness.bridge.get_order(harness.account(MT5H), client_order_id="stuck-2")
    assert found is not None and found.status == OrderStatus.UNKNOWN


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"status": "filled!"}, "status"),
        ({"status": "placed"}, "status"),
        ({"operator": "  "}, "operator"),
        ({"operator": "a" * 65}, "operator"),
        ({"reason": "why\x00"}, "reason"),
        ({"evidence": ""}, "evidence"),
    ],
)
async def test_bad_input_is_refused_naming_the_field(
    harness: Harness, fields: dict[str, str], field: str
) -> None:
    await _stuck(harness, "stuck-3")
    args = {"status": "filled", "evidence": "ticket 7", "operator": "dave", "reason": "seen"}
    args.update(fields)
    with pytest.raises(InvalidRequest) as raised:
        await harness.bridge.override_resolve(
            "stuck-3",
            args["status"],
            evidence=args["evidence"],
            operator=args["operator"],
            reason=args["reason"],
        )
    assert raised.value.field == field
    found = await harness.bridge.get_order(harness.account(MT5H), client_order_id="stuck-3")
    assert found is not None and found.status == OrderStatus.UNKNOWN

    async def still_resolving() -> bool:  # the refusal left its resolution running
        return "stuck-3" in harness.bridge.service.tracker.resolver.resolving

    await eventually(still_resolving)


async def test_force_attempt_sends_a_rejected_order_again_with_the_audit(
    harness: Harness,
) -> None:
    """A 10018 rejection (market closed, nothing executed): once the market is open again
    an operator forces a new attempt; it fills as ``mg:<id>.2``, audited."""
    from mtsim.faults import Fault, FaultKind

    harness.terminal(MT5H).plan.script(Fault(FaultKind.MARKET_CLOSED, duration_ms=1000))
    first = await harness.bridge.place_market_order(
        account=harness.account(MT5H),
        symbol="EURUSD",
        side="buy",
        volume=0.1,
        client_order_id="forced-1",
    )
    assert first.status == OrderStatus.REJECTED
    harness.clock.advance(2000)  # the window is in server time: the market is open again
    again = await harness.bridge.override_force_attempt(
        "forced-1", operator="erin", reason="the session opened; the signal still holds"
    )
    assert (again.status, again.client_order_id) == (OrderStatus.FILLED, "forced-1")
    stored = await harness.bridge.journal.get("forced-1")
    assert stored is not None and (stored.retry_count, stored.comment) == (1, "mg:forced-1.2")
    trail = await harness.bridge.journal.events("forced-1")
    forced = [e for e in trail if e.trigger == Trigger.OVERRIDE_RETRY]
    assert [(e.from_status, e.to_status) for e in forced] == [
        (OrderStatus.REJECTED, OrderStatus.SUBMITTED)
    ]
    audit = json.loads(forced[0].detail)
    assert (audit["override"], audit["operator"], audit["attempt"]) == ("force_attempt", "erin", 2)
    assert trail[-1].to_status == OrderStatus.FILLED
    assert harness.trades_seen(MT5H) == 2  # the refused attempt and the forced one


async def test_force_attempt_refuses_what_may_have_executed(harness: Harness) -> None:
    await _stuck(harness, "forced-2")  # UNKNOWN: not proven absent
    with pytest.raises(OverrideRefused, match="proven not to have executed"):
        await harness.bridge.override_force_attempt("forced-2", operator="erin", reason="x")
    harness.terminal(MT5H).faults.stay_down = False
    await harness.ready(MT5H)
    done = await harness.bridge.place_market_order(
        account=harness.account(MT5H),
        symbol="EURUSD",
        side="buy",
        volume=0.1,
        client_order_id="forced-3",
    )
    assert done.status == OrderStatus.FILLED
    with pytest.raises(OverrideRefused, match="proven not to have executed"):
        await harness.bridge.override_force_attempt("forced-3", operator="erin", reason="x")
    with pytest.raises(InvalidRequest) as raised:
        await harness.bridge.override_force_attempt("forced-3", operator="", reason="x")
    assert raised.value.field == "operator"
