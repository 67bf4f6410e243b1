"""Bridge-managed trailing stops against simulated terminals: price-driven moves reach the
trade server, survive a bridge restart, follow MT4 renumbering and end with the position."""

from __future__ import annotations

import pytest

from mtgate.bridge import Bridge
from mtgate.domain.orders import OrderStatus
from mtgate.sessions.session import AccountKey, grants_for
from mtgate.store.journal import open_journal
from mtgate.sync.synchronizer import SyncSettings
from tests.integration.conftest import MT4, MT5H, Harness, HarnessFactory, eventually, open_tickets

P = 0.00001


async def _open_buy(h: Harness, tid: str, cid: str, volume: float = 0.2) -> tuple[int, float]:
    result = await h.bridge.place_market_order(
        account=h.account(tid), symbol="EURUSD", side="buy", volume=volume, client_order_id=cid
    )
    assert result.status == OrderStatus.FILLED and result.fill_price is not None
    ticket = result.ticket if tid == MT4 else result.position_id
    assert ticket is not None
    key = AccountKey.parse(h.account(tid))
    await eventually(lambda: ticket in open_tickets(h.bridge, key), timeout_s=3)
    return ticket, result.fill_price


def _sl(h: Harness, tid: str, ticket: int) -> float | None:
    login = h.login(tid)
    pos = next((p for p in h.server(tid).positions(login) if p.ticket == ticket), None)
    return None if pos is None else pos.sl


def _move(h: Harness, tid: str, bid: float) -> None:
    h.server(tid).set_quote("EURUSD", round(bid, 5), round(bid + 2 * P, 5))


@pytest.mark.parametrize("tid", [MT4, MT5H])
async def test_the_stop_follows_the_price_and_never_back(harness: Harness, tid: str) -> None:
    ticket, fill = await _open_buy(harness, tid, f"tr-{tid}")
    await harness.bridge.trail_position(
        account=harness.account(tid),
        ticket=ticket,
        distance_points=100,
        step_points=10,
        activation_points=30,
        min_interval_ms=0,
    )
    # The bid starts 2 points below the fill (the spread): not activated.
    _move(harness, tid, fill + 20 * P)
    for offset, expected in ((40, -60), (90, -10), (70, -10), (150, 50), (155, 50)):
        _move(harness, tid, fill + offset * P)
        want = round(fill + expected * P, 5)
        await eventually(lambda w=want: _sl(harness, tid, ticket) == pytest.approx(w), 3)
    moves = [sl for _, t, sl, _ in harness.bridge.trailing.moves if t == ticket]
    assert moves == pytest.approx([round(fill + d * P, 5) for d in (-60, -10, 50)])
    # Closing the position ends its trailing stop.
    closed = await harness.bridge.close_position(account=harness.account(tid), ticket=ticket)
    assert closed.status == OrderStatus.FILLED
    key = AccountKey.parse(harness.account(tid))
    await eventually(lambda: not harness.bridge.trailing.active(key), timeout_s=3)
    stored = await harness.bridge.store.trailing(active_only=False)
    assert [(s.ticket, s.active, s.moves) for s in stored] == [(ticket, False, 3)]


async def test_mt4_partial_close_moves_the_trailing_stop_to_the_new_ticket(
    harness: Harness,
) -> None:
    ticket, fill = await _open_buy(harness, MT4, "tr-ren", volume=0.5)
    await harness.bridge.trail_position(
        account=harness.account(MT4), ticket=ticket, distance_points=100, min_interval_ms=0
    )
    part = await harness.bridge.close_position(
        account=harness.account(MT4), ticket=ticket, volume=0.2
    )
    assert part.status == OrderStatus.FILLED and part.remainder_ticket is not None
    rest = part.remainder_ticket
    key = AccountKey.parse(harness.account(MT4))
    await eventually(
        lambda: [s.ticket for s in harness.bridge.trailing.active(key)] == [rest], timeout_s=3
    )
    _move(harness, MT4, fill + 300 * P)
    await eventually(lambda: _sl(harness, MT4, rest) == pytest.approx(round(fill + 200 * P, 5)), 3)


async def test_an_active_trailing_stop_survives_a_bridge_restart(
    make_harness: HarnessFactory,
) -> None:
    h = await make_harness()
    ticket, fill = await _open_buy(h, MT5H, "tr-rst")
    await h.bridge.trail_position(
        account=h.account(MT5H), ticket=ticket, distance_points=100, step_points=10
    )
    _move(h, MT5H, fill + 150 * P)
    await eventually(lambda: _sl(h, MT5H, ticket) == pytest.approx(round(fill + 50 * P, 5)), 3)
    assert h.bridge.address is not None
    host, port = h.bridge.address
    await h.bridge.stop()
    again = Bridge(
        terminals=grants_for(h.world.bindings()),
        journal=open_journal(f"sqlite:///{h.db}"),
        host=host,
        port=port,
        store_url=f"sqlite:///{h.db}",
        sync=SyncSettings(interval_ms=200),
    )
    try:
        await again.start()
        assert [s.ticket for s in again.trailing.active()] == [ticket]
        await again.wait_ready(set(h.world.terminals), timeout_s=10)
        key = AccountKey.parse(h.account(MT5H))
        await eventually(lambda: ticket in open_tickets(again, key), timeout_s=3)
        _move(h, MT5H, fill + 260 * P)
        await eventually(lambda: _sl(h, MT5H, ticket) == pytest.approx(round(fill + 160 * P, 5)), 3)
    finally:
        await again.stop()


@pytest.fixture
async def harness(any_harness: Harness) -> Harness:
    """Every test of this module runs with each kind of MT5 terminal."""
    return any_harness
