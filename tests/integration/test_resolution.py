"""Resolution finds what really happened (docs/protocol.md §9): by ticket once known, by
client order id, and by the history (magic + symbol + side + volume + time) when a broker
rewrote or dropped the comment; netting OUT deals prove a fill; MT4 closes of magic-0
positions are judged by the exit's time and volume, not its reason."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest

from mtgate.config import DEFAULT_MAGIC
from mtgate.domain.enums import DealEntry, DealReason, OrderType, Platform
from mtgate.domain.orders import OrderStatus, comment_for
from mtgate.domain.records import OrderRecord
from mtgate.execution.requests import OrderResult
from mtgate.protocol import messages as m
from mtgate.store.journal import open_journal
from mtsim.server import ServerConfig
from tests.integration.conftest import (
    MT4,
    MT5H,
    MT5N,
    US30_CLOSED_NOW,
    Harness,
    HarnessFactory,
    eventually,
)

DROPS_COMMENTS = {
    name: ServerConfig(sessions=US30_CLOSED_NOW, rewrite_comment="")
    for name in ("Sim-MT4", "Sim-MT5")
}


async def _status(h: Harness, tid: str, cid: str) -> OrderStatus | None:
    found = await h.bridge.get_order(h.account(tid), client_order_id=cid)
    return None if found is None else found.status


async def _settles(h: Harness, tid: str, cid: str, status: OrderStatus) -> None:
    async def check() -> bool:
        return await _status(h, tid, cid) == status

    await eventually(check, timeout_s=10)


def _login(h: Harness, tid: str) -> int:
    return h.terminal(tid).config.login


def _positions(h: Harness, tid: str) -> list[m.PositionReport]:
    return h.server(tid).positions(_login(h, tid))


async def _market(
    h: Harness, tid: str, cid: str, side: str = "buy", volume: float = 0.1, **kw: object
) -> OrderResult:
    """One attempt (no retry): these tests watch the resolution of an order in doubt, which
    a retry after a proven absence would otherwise wait for (tests/integration/test_retries.py)."""
    kw.setdefault("retry", {"enabled": False})
    return await h.bridge.place_market_order(
        account=h.account(tid), symbol="EURUSD", side=side, volume=volume, client_order_id=cid, **kw
    )


@contextlib.asynccontextmanager
async def _away(h: Harness, tid: str) -> AsyncIterator[None]:
    """The terminal is disconnected (and stays so) while the block runs, then reconnects:
    what happens meanwhile reaches the bridge by no event, only by its lookups."""
    faults = h.terminal(tid).faults
    faults.stay_down = True
    h.terminal(tid).drop()
    await eventually(lambda: h.bridge.registry.ready_session(tid) is None)
    try:
        yield
    finally:
        faults.stay_down = False


# --- the bridge's own magic -----------------------------------------------------------------


@pytest.mark.parametrize("tid", [MT4, MT5H, MT5N])
async def test_f4_orders_without_a_magic_carry_the_bridges(harness: Harness, tid: str) -> None:
    result = await _market(harness, tid, "own-magic")
    assert result.status == OrderStatus.FILLED
    assert [p.magic for p in _positions(harness, tid)] == [DEFAULT_MAGIC]
    stored = await harness.bridge.journal.get("own-magic")
    assert stored is not None and stored.magic == DEFAULT_MAGIC


# --- MT4 closes -------------------------------------------------------------------------------


async def _open_mt4(h: Harness, cid: str, *, magic: int, volume: float = 0.3) -> int:
    result = await _market(h, MT4, cid, volume=volume, magic=magic)
    assert result.status == OrderStatus.FILLED
    ticket = next(p.ticket for p in _positions(h, MT4) if p.comment == comment_for(cid))
    await eventually(lambda: h.bridge.synced_positions(h.account(MT4)) != [])
    return ticket


async def test_f4_mt4_close_of_a_magic_0_position_whose_answer_was_lost_is_filled(
    harness: Harness,
) -> None:
    """A real MT4 EA reports the exit deal of a magic-0 ticket with reason 0, as it would a
    manual close (docs/protocol.md §10): the close executed, so it must end FILLED, not
    NOT_FOUND ("closed otherwise")."""
    ticket = await _open_mt4(harness, "m0-open", magic=0)
    harness.terminal(MT4).faults.drop_after_next_trade = True
    closed = await harness.bridge.close_position(
        account=harness.account(MT4), ticket=ticket, client_order_id="m0-close"
    )
    assert closed.status == OrderStatus.UNKNOWN
    await _settles(harness, MT4, "m0-close", OrderStatus.FILLED)
    exits = [d for d in harness.server(MT4).deals(1001) if d.entry == DealEntry.OUT]
    assert [(d.position_id, d.reason) for d in exits] == [(ticket, DealReason.CLIENT)]
    stored = await harness.bridge.journal.get("m0-close")
    assert stored is not None and stored.fill_price == exits[0].price
    assert _positions(harness, MT4) == []


async def test_f4_mt4_close_lost_while_the_position_hit_its_stop_is_not_found(
    harness: Harness,
) -> None:
    """The close never reached the trade server; meanwhile the position's SL closed it: the
    exit (reason 4, ``[sl]``) is not the bridge's."""
    ticket = await _open_mt4(harness, "sl-open", magic=0)
    bid, _, _ = harness.server(MT4).feed.quote("EURUSD")
    modified = await harness.bridge.modify_position(
        account=harness.account(MT4), ticket=ticket, sl=round(bid - 0.0020, 5)
    )
    assert modified.status == "done"
    faults = harness.terminal(MT4).faults
    faults.drop_before_next_trade = True
    faults.stay_down = True
    closed = await harness.bridge.close_position(
        account=harness.account(MT4), ticket=ticket, client_order_id="sl-close"
    )
    assert closed.status == OrderStatus.UNKNOWN
    harness.server(MT4).set_quote("EURUSD", round(bid - 0.0030, 5), round(bid - 0.0029, 5))
    assert _positions(harness, MT4) == []
    faults.stay_down = False
    await _settles(harness, MT4, "sl-close", OrderStatus.NOT_FOUND)


async def test_f4_mt4_close_lost_while_a_different_volume_was_closed_by_hand(
    harness: Harness,
) -> None:
    """A manual exit of another volume than the lost close's is not the bridge's."""
    ticket = await _open_mt4(harness, "hand-open", magic=77)
    faults = harness.terminal(MT4).faults
    faults.drop_before_next_trade = True
    faults.stay_down = True
    closed = await harness.bridge.close_position(
        account=harness.account(MT4), ticket=ticket, client_order_id="hand-close"
    )
    assert closed.status == OrderStatus.UNKNOWN
    harness.server(MT4).manual_close(1001, ticket, 0.1)
    faults.stay_down = False
    await _settles(harness, MT4, "hand-close", OrderStatus.NOT_FOUND)
    assert [p.volume for p in _positions(harness, MT4)] == [pytest.approx(0.2)]


# --- netting ----------------------------------------------------------------------------------


async def test_f5_netting_order_that_reduced_the_position_resolves_filled(
    harness: Harness,
) -> None:
    """A sell that halves a netting long books an OUT deal only (reference §3.6): the lookup
    must take it as the fill instead of polling forever."""
    opened = await _market(harness, MT5N, "net-long", volume=1.0)
    assert opened.status == OrderStatus.FILLED
    harness.terminal(MT5N).faults.drop_after_next_trade = True
    reduced = await _market(harness, MT5N, "net-reduce", side="sell", volume=0.5)
    assert reduced.status == OrderStatus.UNKNOWN
    await _settles(harness, MT5N, "net-reduce", OrderStatus.FILLED)
    stored = await harness.bridge.journal.get("net-reduce")
    assert stored is not None and stored.fill_volume == pytest.approx(0.5)
    deals = [d for d in harness.server(MT5N).deals(2002) if d.order == stored.mt_order_id]
    assert [d.entry for d in deals] == [DealEntry.OUT]
    assert [p.volume for p in _positions(harness, MT5N)] == [pytest.approx(0.5)]
    assert harness.trades_seen(MT5N) == 2


async def test_f5_placed_netting_order_that_filled_unseen_is_filled(harness: Harness) -> None:
    """A pending sell that reduced a netting long while the terminal was away: the lookup at
    reconnection finds its OUT deal by its ticket and ends it FILLED, not PLACED forever."""
    opened = await _market(harness, MT5N, "net-base", volume=1.0)
    assert opened.status == OrderStatus.FILLED
    bid, ask, _ = harness.server(MT5N).feed.quote("EURUSD")
    placed = await harness.bridge.place_pending_order(
        account=harness.account(MT5N),
        symbol="EURUSD",
        kind="sell_limit",
        volume=0.4,
        price=round(bid + 0.0010, 5),
        client_order_id="net-limit",
    )
    assert placed.status == OrderStatus.PLACED
    async with _away(harness, MT5N):
        harness.server(MT5N).set_quote("EURUSD", round(bid + 0.0012, 5), round(ask + 0.0012, 5))
        assert [p.volume for p in _positions(harness, MT5N)] == [pytest.approx(0.6)]
    await _settles(harness, MT5N, "net-limit", OrderStatus.FILLED)
    stored = await harness.bridge.journal.get("net-limit")
    assert stored is not None and stored.fill_volume == pytest.approx(0.4)


# --- brokers that rewrite comments ------------------------------------------------------------


@pytest.mark.parametrize("tid", [MT4, MT5H, MT5N])
async def test_f7_answer_lost_at_a_broker_that_drops_comments_is_found_in_history(
    make_harness: HarnessFactory, tid: str
) -> None:
    """No comment survives, so the lookup by client id finds nothing: without the history
    fallback the order was proven absent (NOT_FOUND) although it executed, and a retry would
    have doubled it."""
    h = await make_harness(configs=DROPS_COMMENTS)
    h.terminal(tid).faults.drop_after_next_trade = True
    result = await _market(h, tid, "no-comment", magic=31)
    assert result.status == OrderStatus.UNKNOWN
    await _settles(h, tid, "no-comment", OrderStatus.FILLED)
    positions = _positions(h, tid)
    assert [(p.comment, p.magic) for p in positions] == [("", 31)]
    stored = await h.bridge.journal.get("no-comment")
    assert stored is not None
    expected = positions[0].ticket if tid == MT4 else positions[0].identifier
    assert stored.mt_order_id == expected
    assert h.trades_seen(tid) == 1


async def test_f7_history_fallback_does_not_take_another_orders_fill(
    make_harness: HarnessFactory,
) -> None:
    """Two orders alike (magic, symbol, side, volume); the first's fill is journalled, the
    second was never sent: the second must not be matched to the first's deal."""
    h = await make_harness(configs=DROPS_COMMENTS)
    first = await _market(h, MT5H, "alike-1", magic=31)
    assert first.status == OrderStatus.FILLED
    faults = h.terminal(MT5H).faults
    faults.drop_before_next_trade = True
    second = await _market(h, MT5H, "alike-2", magic=31)
    assert second.status == OrderStatus.UNKNOWN
    await _settles(h, MT5H, "alike-2", OrderStatus.NOT_FOUND)
    assert h.trades_seen(MT5H) == 1


async def test_f7_placed_order_at_a_broker_that_drops_comments_is_followed_by_ticket(
    make_harness: HarnessFactory,
) -> None:
    """A placed order that filled while the terminal was away: its ticket is journalled, so
    the lookup at reconnection asks by ticket (rule 1) and finds the fill; by client id it
    found nothing and the order stayed PLACED forever."""
    h = await make_harness(configs=DROPS_COMMENTS)
    bid, ask, _ = h.server(MT5H).feed.quote("EURUSD")
    placed = await h.bridge.place_pending_order(
        account=h.account(MT5H),
        symbol="EURUSD",
        kind="buy_stop",
        volume=0.2,
        price=round(ask + 0.0010, 5),
        client_order_id="stop-nc",
    )
    assert placed.status == OrderStatus.PLACED
    async with _away(h, MT5H):
        h.server(MT5H).set_quote("EURUSD", round(bid + 0.0015, 5), round(ask + 0.0015, 5))
    await _settles(h, MT5H, "stop-nc", OrderStatus.FILLED)


async def test_f7_mt4_partial_close_before_resolution_still_finds_the_fill(
    harness: Harness,
) -> None:
    """MT4 rewrites both comments on a partial close (``to #N`` / ``from #T``), so a real EA's
    lookup by client id finds nothing: the history fallback finds the opening deal."""
    faults = harness.terminal(MT4).faults
    faults.drop_after_next_trade = True
    faults.stay_down = True
    result = await _market(harness, MT4, "mt4-pc", volume=0.3, magic=5)
    assert result.status == OrderStatus.UNKNOWN
    ticket = _positions(harness, MT4)[0].ticket
    harness.server(MT4).manual_close(1001, ticket, 0.1)
    lookup = harness.server(MT4).handle(1001, m.OrderGet(id=0, client_id="mt4-pc"))
    assert lookup == m.Lookup()  # what a real MT4 EA answers now
    faults.stay_down = False
    await _settles(harness, MT4, "mt4-pc", OrderStatus.FILLED)
    stored = await harness.bridge.journal.get("mt4-pc")
    assert stored is not None and (stored.mt_order_id, stored.fill_volume) == (ticket, 0.3)
    assert harness.trades_seen(MT4) == 1


# --- reconciliation covers every unfinished order -------------------------------------------


def _journalled(h: Harness, tid: str, cid: str, placed_at_ms: int) -> OrderRecord:
    return OrderRecord(
        order_id=str(uuid.uuid4()),
        client_order_id=cid,
        account_login=_login(h, tid),
        account_server=h.server(tid).name,
        terminal_id=tid,
        platform=Platform.MT5,
        symbol="EURUSD",
        order_type=OrderType.BUY,
        volume=0.1,
        magic=3,
        comment=comment_for(cid),
        placed_at_ms=placed_at_ms,
        status=OrderStatus.SUBMITTED,
    )


async def test_f18_reconciliation_sees_more_than_1000_unfinished_orders(
    make_harness: HarnessFactory,
) -> None:
    """A previous run left 1,005 orders journalled and unanswered, none of which reached the
    server: every one is settled at the next onboarding, the oldest included."""
    h = await make_harness(start=False)
    journal = open_journal(f"sqlite:///{h.db}")
    await journal.open()
    for i in range(1005):
        await journal.record_submitted(_journalled(h, MT5H, f"old-{i:04d}", 1_000_000 + i))
    await journal.close()
    host, port = await h.bridge.start()
    h.world.start(host, port)
    await h.ready()
    await _settles(h, MT5H, "old-0000", OrderStatus.NOT_FOUND)
    left = await h.bridge.list_orders(
        statuses={OrderStatus.SUBMITTED, OrderStatus.UNKNOWN}, limit=10_000
    )
    assert left == []


# --- closes of positions already closed -------------------------------------------------------


async def test_f19_close_of_a_position_already_closed_is_done(harness: Harness) -> None:
    """MT5 answers 10036 POSITION_CLOSED to a close of a position that left (reference §3.7:
    "treat as done for close intents"): the close ends FILLED without a fill, not REJECTED."""
    opened = await _market(harness, MT5H, "gone-open", volume=0.2)
    assert opened.status == OrderStatus.FILLED
    await eventually(lambda: harness.bridge.synced_positions(harness.account(MT5H)) != [])
    ticket = _positions(harness, MT5H)[0].ticket
    harness.server(MT5H).manual_close(2001, ticket)
    closed = await harness.bridge.close_position(
        account=harness.account(MT5H), ticket=ticket, client_order_id="gone-close"
    )
    assert (closed.status, closed.fill_price, closed.error) == (OrderStatus.FILLED, None, None)
    events = await harness.bridge.journal.events("gone-close")
    assert events[-1].detail.startswith("10036")
    assert ticket not in {p.ticket for p in harness.bridge.synced_positions(harness.account(MT5H))}


# --- answers whose ok flag contradicts their code ---------------------------------------------


@pytest.mark.parametrize("tid", [MT4, MT5H, MT5N])
async def test_f17_success_answered_as_an_error_is_never_rejected(
    harness: Harness, tid: str
) -> None:
    """An EA testing ``retcode != DONE`` sends a fill as ``ok: false`` with the success code:
    the order executed, so it must not be journalled REJECTED; it is resolved (FILLED)."""
    harness.terminal(tid).faults.success_as_error_next_trade = True
    result = await _market(harness, tid, "lenient")
    assert result.status != OrderStatus.REJECTED
    await _settles(harness, tid, "lenient", OrderStatus.FILLED)
    trail = await harness.bridge.journal.events("lenient")
    assert OrderStatus.REJECTED not in {e.to_status for e in trail}
    assert harness.trades_seen(tid) == 1 and len(_positions(harness, tid)) == 1


@pytest.mark.parametrize("tid", [MT4, MT5H, MT5N])
async def test_f17_failure_answered_as_a_success_is_no_phantom_fill(
    harness: Harness, tid: str
) -> None:
    """The mirror image: ``ok: true`` carrying a requote code. Nothing executed; the bridge
    must not journal a fill, and resolves the order (NOT_FOUND)."""
    harness.terminal(tid).faults.failure_as_success_next_trade = True
    result = await _market(harness, tid, "phantom")
    assert result.status == OrderStatus.UNKNOWN
    await _settles(harness, tid, "phantom", OrderStatus.NOT_FOUND)
    trail = await harness.bridge.journal.events("phantom")
    assert OrderStatus.FILLED not in {e.to_status for e in trail}
    assert harness.trades_seen(tid) == 0 and _positions(harness, tid) == []
