"""A terminal whose data is not synchronised yet answers its start-up reads -3 ``not_ready``
(docs/protocol.md §4.2): the bridge asks again in the same session and the terminal becomes
ready; it does not end the session at the first -3 and cause a reconnect storm (protocol
review D6)."""

from __future__ import annotations

import asyncio

import pytest

from mtgate.domain.orders import OrderStatus
from mtgate.sessions.session import SessionSettings
from tests.integration.conftest import MT4, MT5H, HarnessFactory, eventually


@pytest.mark.parametrize("tid", [MT4, MT5H])
async def test_reads_answered_not_ready_at_start_are_asked_again_in_the_same_session(
    make_harness: HarnessFactory, tid: str
) -> None:
    h = await make_harness(start=False)
    h.terminal(tid).faults.not_ready_reads = 4  # account_info, then symbols, ... all -3 first
    host, port = await h.bridge.start()
    h.world.start(host, port)
    await h.ready()
    assert h.terminal(tid).faults.not_ready_reads == 0  # each was answered -3, then asked again
    assert h.terminal(tid).sessions == 1  # no reconnect
    result = await h.bridge.place_market_order(
        account=h.account(tid), symbol="EURUSD", side="buy", volume=0.1, client_order_id="nr-1"
    )
    assert result.status == OrderStatus.FILLED


async def test_a_terminal_never_ready_ends_its_session_and_does_not_storm(
    make_harness: HarnessFactory,
) -> None:
    """Past ``not_ready_wait_s`` the session ends (``sync_failed``); the EA's backoff does not
    reset after a session that was never ready, so it reconnects a few times, not hundreds."""
    h = await make_harness(
        start=False, settings=SessionSettings(heartbeat_ms=200, not_ready_wait_s=0.3)
    )
    terminal = h.terminal(MT5H)
    terminal.faults.not_ready_reads = 10**9
    host, port = await h.bridge.start()
    h.world.start(host, port)
    await h.ready(MT4)
    await asyncio.sleep(2.0)
    assert terminal.last_bye.startswith("sync_failed"), terminal.last_bye
    assert (
        h.bridge.registry.session(MT5H) is None
        or not h.bridge.registry.session(MT5H).ready.is_set()
    )
    dials = terminal.dials
    assert 2 <= dials <= 8, dials  # each session lives 0.3 s; the backoff grows between them
    terminal.faults.not_ready_reads = 0
    await eventually(lambda: h.bridge.registry.session(MT5H) is not None, timeout_s=10)
    await h.ready(MT5H)
