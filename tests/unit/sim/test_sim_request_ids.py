"""Request ids strictly increase within a session (docs/protocol.md §4.1): the EA refuses a
repeated or lower id with ``bye invalid_message`` and executes nothing of it (a resent trade
must never be executed twice)."""

from __future__ import annotations

import asyncio

import pytest

from mtgate.domain.enums import Platform
from mtgate.protocol import codec
from mtgate.protocol import messages as m
from mtsim.faults import Fault, FaultKind
from tests.unit.sim.simdesk import MakeDesk
from tests.unit.sim.simwire import wire_session


def _order(req_id: int) -> m.MarketOrder:
    return m.MarketOrder(
        id=req_id, symbol="EURUSD", order_type=0, volume=0.1, magic=7, comment=f"mg:ids-{req_id}"
    )


@pytest.mark.parametrize("platform", [Platform.MT4, Platform.MT5])
@pytest.mark.parametrize("second_id", [5, 4])
async def test_a_repeated_or_lower_request_id_ends_the_session_unexecuted(
    make_desk: MakeDesk, platform: Platform, second_id: int
) -> None:
    desk = make_desk(platform)
    async with wire_session(desk) as (bridge, _terminal):
        first = await bridge.request(_order(5))
        assert first.ok
        bridge.send(_order(second_id))
        frames = await bridge.until_closed()
    [bye] = [f for f in frames if isinstance(f, m.Bye)]
    assert bye.code == "invalid_message" and "request id" in bye.reason
    assert not [f for f in frames if isinstance(f, m.Response)]
    assert len(desk.server.positions(desk.login)) == 1  # the first order only


@pytest.mark.parametrize(
    ("feature", "msg"),
    [
        (m.SYNC_FEATURE, m.Sync(id=1, interval_ms=1000)),
        (m.POSITIONS_FEATURE, m.ClosePosition(id=1, ticket=1, volume=0.0, deviation=10)),
    ],
)
async def test_a_request_of_a_feature_not_taken_is_unknown(
    make_desk: MakeDesk, feature: str, msg: m.Request
) -> None:
    """§12: the EA offers the feature, the welcome does not take it: the request is -1 and
    executes nothing, as if the EA did not know it."""
    desk = make_desk(Platform.MT5)
    async with wire_session(desk, withheld=frozenset({feature})) as (bridge, _terminal):
        answer = await bridge.request(msg)
    assert not answer.ok and answer.error is not None
    assert (answer.error.code, answer.error.name) == (-1, "unknown_operation")


@pytest.mark.parametrize("platform", [Platform.MT4, Platform.MT5])
async def test_a_requote_is_answered_and_never_resent_by_the_ea(
    make_desk: MakeDesk, platform: Platform
) -> None:
    """§4.3: the EA MUST NOT resend after a requote or any error: retries are the bridge's."""
    desk = make_desk(platform)
    async with wire_session(desk) as (bridge, terminal):
        terminal.plan.script(Fault(FaultKind.REQUOTE))
        answer = await bridge.request(_order(1))
        assert not answer.ok and answer.error is not None
        assert answer.error.code == (138 if platform == Platform.MT4 else 10004)
        assert answer.error.bid > 0 and answer.error.ask > 0  # §4.2: the new prices offered
        await asyncio.sleep(0.2)
    assert desk.server.positions(desk.login) == []
    assert len([e for e in desk.server.executed if isinstance(e.request, m.MarketOrder)]) <= 1


@pytest.mark.parametrize("platform", [Platform.MT4, Platform.MT5])
async def test_a_modify_that_changes_nothing_answers_the_positions_figures(
    make_desk: MakeDesk, platform: Platform
) -> None:
    """protocol §5.2: a no-op (MT4 1, MT5 10025) is a success whose result describes the
    position as a change would have: its ticket, volume, open price and (MT5) identifier."""
    desk = make_desk(platform)
    async with wire_session(desk) as (bridge, _terminal):
        opened = await bridge.request(_order(1))
        assert opened.ok
        [position] = desk.server.positions(desk.login)
        answer = await bridge.request(
            m.ModifyPosition(id=2, ticket=position.ticket, sl=0.0, tp=0.0)
        )
    assert answer.ok
    result = codec.decode_result(m.ModifyPosition, answer.result)
    assert result.code == (1 if platform == Platform.MT4 else 10025)
    assert (result.order, result.volume, result.price) == (
        position.ticket,
        position.volume,
        position.price_open,
    )
    assert result.position == (0 if platform == Platform.MT4 else position.identifier)
    assert result.bid > 0 and result.ask > 0
