"""The simulated EA honours trade deadlines (docs/protocol.md §4.4, feature ``deadline``).

Under the feature the EA's ``ping.t_ms`` is its monotonic clock, it pings at once after
``ready``, and a trade whose turn comes when that clock reads ``deadline_ms`` or later is
answered -6 ``deadline_passed`` and never reaches the trade server.
"""

from __future__ import annotations

import pytest

from mtgate.domain.codes import Classification, lookup
from mtgate.domain.enums import Platform
from mtgate.protocol import messages as m
from mtsim.server import TradeServer
from tests.unit.sim.simdesk import MakeDesk
from tests.unit.sim.simwire import WireBridge, wire_session


def _order(req_id: int, deadline_ms: int) -> m.MarketOrder:
    return m.MarketOrder(
        id=req_id,
        symbol="EURUSD",
        order_type=0,
        volume=0.1,
        magic=7,
        comment=f"mg:DL{req_id}",
        deadline_ms=deadline_ms,
    )


async def _first_ping(bridge: WireBridge) -> int:
    frame = await bridge.receive()
    assert isinstance(frame, m.Ping), "under the feature the EA pings first, right after ready"
    return frame.t_ms


def _trades(server: TradeServer, login: int) -> int:
    """Trade requests that reached the trade server (ground truth)."""
    return sum(
        1 for e in server.executed if e.login == login and isinstance(e.request, m.TRADE_OPS)
    )


@pytest.mark.parametrize("platform", [Platform.MT4, Platform.MT5], ids=["mt4", "mt5"])
async def test_a_trade_past_its_deadline_is_refused_and_one_before_executes(
    make_desk: MakeDesk, platform: Platform
) -> None:
    desk = make_desk(platform)
    async with wire_session(desk, deadline=True) as (bridge, terminal):
        t_ms = await _first_ping(bridge)
        assert abs(t_ms - terminal.ea_clock_ms()) < 1_000
        late = await bridge.request(_order(1, t_ms - 1))
        assert not late.ok and late.error is not None
        assert (late.error.code, late.error.name) == (-6, "deadline_passed")
        assert _trades(desk.server, desk.login) == 0
        ok = await bridge.request(_order(2, terminal.ea_clock_ms() + 60_000))
        assert ok.ok
        assert _trades(desk.server, desk.login) == 1


async def test_a_trade_whose_deadline_passes_in_the_queue_is_refused(make_desk: MakeDesk) -> None:
    """The first trade holds the trade context 300 ms at the broker; the second's deadline
    is 100 ms away when both arrive: its turn comes too late."""
    desk = make_desk(Platform.MT5)
    async with wire_session(desk, deadline=True, broker_delay_ms=(300.0, 300.0)) as (
        bridge,
        terminal,
    ):
        await _first_ping(bridge)
        now = terminal.ea_clock_ms()
        bridge.send(_order(1, now + 60_000), _order(2, now + 100))
        answers: dict[int, m.Response] = {}
        while len(answers) < 2:
            frame = await bridge.receive()
            if isinstance(frame, m.Response):
                answers[frame.id] = frame
        assert answers[1].ok
        second = answers[2]
        assert not second.ok and second.error is not None and second.error.code == -6
        assert _trades(desk.server, desk.login) == 1


async def test_a_deadline_without_the_feature_is_an_invalid_frame(make_desk: MakeDesk) -> None:
    """An EA that did not agree on the feature knows no such field (§12): it refuses the
    frame instead of trading without the guarantee the bridge counted on."""
    desk = make_desk(Platform.MT5)
    async with wire_session(desk) as (bridge, _terminal):
        bridge.send(_order(1, 123))
        frames = await bridge.until_closed()
    byes = [f for f in frames if isinstance(f, m.Bye)]
    assert [b.code for b in byes] == ["invalid_message"]
    assert _trades(desk.server, desk.login) == 0


def test_deadline_passed_is_a_proof_that_nothing_executed() -> None:
    entry = lookup(Platform.MT5, -6)
    assert (entry.name, entry.classification) == ("deadline_passed", Classification.RETRYABLE)
