"""Events an EA dropped but counted (docs/protocol.md §7): at the next event the bridge sees
the gap, re-reads the account and looks up every unfinished order of it (protocol review D8)."""

from __future__ import annotations

import asyncio

import pytest

from mtgate.domain.enums import OrderType
from mtgate.domain.orders import OrderStatus
from mtgate.protocol import messages as m
from mtgate.sync.synchronizer import SyncSettings
from tests.integration.conftest import MT4, MT5H, HarnessFactory, eventually


def _reads(h: object, tid: str, op: type[m.Request]) -> int:
    server = h.server(tid)  # type: ignore[attr-defined]
    login = h.terminal(tid).config.login  # type: ignore[attr-defined]
    return sum(1 for e in server.executed if e.login == login and isinstance(e.request, op))


@pytest.mark.parametrize("tid", [MT4, MT5H])
async def test_a_fill_whose_events_were_lost_is_found_at_the_gap(
    make_harness: HarnessFactory, tid: str
) -> None:
    # One snapshot at the start, none while the test runs: only the gap can reveal the fill.
    h = await make_harness(sync=SyncSettings(interval_ms=600_000))
    bid, ask, _ = h.server(tid).feed.quote("EURUSD")
    placed = await h.bridge.place_pending_order(
        account=h.account(tid),
        symbol="EURUSD",
        kind="buy_stop",
        volume=0.1,
        price=round(ask + 0.0010, 5),
        client_order_id="gap-stop",
    )
    assert placed.status == OrderStatus.PLACED
    h.terminal(tid).faults.lose_events = 2  # the stop's trigger: its order and deal events
    h.server(tid).set_quote("EURUSD", round(bid + 0.0015, 5), round(ask + 0.0015, 5))
    await eventually(lambda: h.terminal(tid).faults.lose_events == 0)
    accounts_before = _reads(h, tid, m.AccountInfo)
    lookups_before = _reads(h, tid, m.OrderGet)
    # The next tick carries the next seq: the bridge sees the gap (no trade of its own here,
    # so the account read that follows is the gap's).
    h.server(tid).set_quote("EURUSD", round(bid + 0.0016, 5), round(ask + 0.0016, 5))

    async def found() -> bool:
        got = await h.bridge.journal.get("gap-stop")
        return got is not None and got.status == OrderStatus.FILLED

    await eventually(found)
    assert _reads(h, tid, m.OrderGet) > lookups_before
    await eventually(lambda: _reads(h, tid, m.AccountInfo) > accounts_before)


async def test_a_gap_re_reads_the_account(make_harness: HarnessFactory) -> None:
    """No order of the bridge is involved: a trade made by hand at the terminal, its events
    lost; the account read that follows the next tick is the gap's alone."""
    h = await make_harness(sync=SyncSettings(interval_ms=600_000))
    tid = MT5H
    login = h.terminal(tid).config.login
    faults = h.terminal(tid).faults
    faults.lose_events = 100
    h.server(tid).manual_market_order(login, "EURUSD", OrderType.BUY, 0.2)
    lost = 100 - faults.lose_events
    faults.lose_events = 0
    assert lost >= 1
    await asyncio.sleep(0.3)  # any account read already under way has come and gone
    before = _reads(h, tid, m.AccountInfo)
    bid, ask, _ = h.server(tid).feed.quote("EURUSD")
    h.server(tid).set_quote("EURUSD", round(bid + 0.0001, 5), round(ask + 0.0001, 5))
    await eventually(lambda: _reads(h, tid, m.AccountInfo) > before)
