"""Account synchronization in the simulator (feature "sync", docs/protocol.md §5.3): the
trade server's snapshots and history cursor, then the terminal's ``sync`` over a socket."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from mtgate.domain.enums import DealReason, MarginMode, OrderState, OrderType, Platform
from mtgate.domain.symbols import profit
from mtgate.protocol import codec
from mtgate.protocol import messages as m
from mtsim import server as server_module
from mtsim.arith import Arithmetic
from mtsim.server import SyncCursor, TradeServer
from mtsim.symbols import DEFAULT_SYMBOLS
from mtsim.terminal import SYNC_MIN_INTERVAL_MS, SimTerminal, sync_interval_ms
from mtsim.triggers import TriggerBook
from tests.unit.sim.simdesk import ASK, BID, Desk, MakeDesk, px
from tests.unit.sim.simwire import WireBridge, wire_session

T = OrderType

ACCOUNTS = [
    pytest.param(Platform.MT4, MarginMode.HEDGING, id="mt4"),
    pytest.param(Platform.MT5, MarginMode.HEDGING, id="mt5-hedging"),
    pytest.param(Platform.MT5, MarginMode.NETTING, id="mt5-netting"),
]


def _snap(desk: Desk, cursor: SyncCursor) -> tuple[m.Snapshot, SyncCursor]:
    return desk.server.snapshot(desk.login, cursor)


def _first(desk: Desk, since_ms: int = 0) -> tuple[m.Snapshot, SyncCursor]:
    return _snap(desk, desk.server.sync_cursor(desk.login, since_ms))


# --- the trade server: content ------------------------------------------------------------


@pytest.mark.parametrize(("platform", "mode"), ACCOUNTS)
def test_snapshot_holds_the_account_positions_orders_and_history(
    make_desk: MakeDesk, platform: Platform, mode: MarginMode
) -> None:
    desk = make_desk(platform, margin_mode=mode)
    first = desk.market(T.BUY, volume=0.3, comment="mg:A")
    desk.clock.advance(1_000)
    desk.market(T.BUY, volume=0.2, comment="mg:B")  # netting: adds to the same position
    desk.market(T.BUY, volume=0.1, symbol="GBPUSD", sl=1.2, comment="mg:C")
    limit = desk.pending(T.BUY_LIMIT, px(ASK, -100), comment="mg:D").order
    desk.quote("EURUSD", px(BID, 30), px(ASK, 30))  # positions are valued at the new quote

    snap, cursor = _first(desk)

    server, login = desk.server, desk.login
    assert snap.time_ms == desk.clock.now_ms()
    assert snap.account == server.account(login)
    assert snap.positions == server.positions(login)
    assert snap.orders == server.pending_orders(login)
    assert snap.deals == server.deals(login)
    assert snap.history_orders == server.history_orders(login)
    assert cursor == SyncCursor(len(server.deals(login)), len(server.history_orders(login)))
    assert [o.ticket for o in snap.orders] == [limit]
    assert [d.comment for d in snap.deals] == ["mg:A", "mg:B", "mg:C"]
    eurusd = [p for p in snap.positions if p.symbol == "EURUSD"]
    if mode == MarginMode.NETTING:
        [pos] = eurusd
        assert (pos.ticket, pos.volume) == (first.order, 0.5)
        assert len(snap.positions) == 2
    else:
        assert [p.volume for p in eurusd] == [0.3, 0.2]
        assert len(snap.positions) == 3
    for pos in eurusd:  # a buy is valued at the Bid: 30 points up on each lot
        assert pos.price_current == px(BID, 30)
        expected = profit(DEFAULT_SYMBOLS["EURUSD"], True, pos.volume, ASK, px(BID, 30), "USD")
        assert pos.profit == round(expected, 2) > 0
    # MT4 keeps open tickets out of history; MT5 records each market order as FILLED.
    assert len(snap.history_orders) == (0 if platform == Platform.MT4 else 3)
    # The wire form decodes back to the same snapshot.
    raw = codec.encode_payload(snap)
    assert codec.decode_event("snapshot", raw) == snap


def test_reports_follow_prices_and_position_changes(make_desk: MakeDesk) -> None:
    """Reports reuse a per-position template: a new price, new SL/TP or a partial close must
    show in the next snapshot, exactly as a fresh report would be."""
    desk = make_desk(Platform.MT5)
    opened = desk.market(T.BUY, volume=0.5)
    snap, cursor = _first(desk)
    assert snap.positions[0].sl == 0.0
    desk.quote("EURUSD", px(BID, -20), px(ASK, -20))
    snap, cursor = _snap(desk, cursor)
    assert snap.positions[0].price_current == px(BID, -20)
    assert snap.positions[0].profit < 0
    desk.clock.advance(5_000)
    desk.send(desk.modify_position_req(opened.order, sl=px(BID, -200)))
    snap, cursor = _snap(desk, cursor)
    assert snap.positions[0].sl == px(BID, -200)
    assert snap.positions[0].time_update_ms == desk.clock.now_ms()
    desk.close(opened.order, 0.2)
    snap, cursor = _snap(desk, cursor)
    [pos] = snap.positions
    assert (pos.ticket, pos.volume) == (opened.order, 0.3)
    assert snap.positions == desk.server.positions(desk.login)
    assert [d.volume for d in snap.deals] == [0.2]


@pytest.mark.parametrize("symbol", sorted(DEFAULT_SYMBOLS))
def test_position_profit_is_the_domain_profit_to_the_bit(symbol: str) -> None:
    spec = DEFAULT_SYMBOLS[symbol]
    rng = random.Random(symbol)
    for currency in ("USD", spec.currency_base, spec.currency_profit):
        arith = Arithmetic(spec, 100, currency)
        for _ in range(200):
            buy = rng.random() < 0.5
            volume = rng.choice([0.01, 0.1, 0.37, 1.0, 12.5])
            open_price = rng.uniform(0.5, 50_000.0)
            close = open_price * rng.uniform(0.9, 1.1)
            expected = profit(spec, buy, volume, open_price, close, currency)
            assert arith.position_profit(buy, volume, open_price, close) == expected


def test_reached_says_exactly_whether_a_quote_fires_anything() -> None:
    rng = random.Random(7)
    book = TriggerBook(1e-8)
    for ticket in range(200):
        if rng.random() < 0.5:
            book.add_order(
                ticket, 0, buy=rng.random() < 0.5, limit=rng.random() < 0.5, price=rng.uniform(1, 2)
            )
        else:
            sl, tp = rng.uniform(1, 2), rng.uniform(1, 2)
            book.add_position(ticket, 0, buy=rng.random() < 0.5, sl=sl, tp=tp)
    for _ in range(300):
        bid = rng.uniform(0.9, 2.1)
        ask = bid + rng.uniform(0.0, 0.01)
        reached = book.reached(bid, ask)
        assert reached == bool(book.fired(bid, ask))
    assert not TriggerBook(1e-8).reached(1.0, 1.1)


def test_a_due_expiry_runs_before_the_snapshot(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5)
    expires = desk.clock.now_ms() + 1_000
    ticket = desk.pending(T.BUY_LIMIT, px(ASK, -100), expiration_ms=expires).order
    snap, cursor = _first(desk)
    assert [o.ticket for o in snap.orders] == [ticket]
    desk.clock.advance(1_000)
    snap, cursor = _snap(desk, cursor)
    assert snap.orders == []
    assert [(o.ticket, o.state) for o in snap.history_orders] == [(ticket, OrderState.EXPIRED)]
    assert desk.names("order")[-1].state == OrderState.EXPIRED  # the event went out first


# --- the trade server: the history cursor --------------------------------------------------


def test_each_deal_is_in_exactly_one_snapshot(make_desk: MakeDesk, platform: Platform) -> None:
    desk = make_desk(platform)
    rng = random.Random(3)
    snap, cursor = _first(desk)
    seen_deals = [d.ticket for d in snap.deals]
    seen_orders = [o.ticket for o in snap.history_orders]
    for step in range(60):
        open_tickets = [p.ticket for p in desk.server.positions(desk.login)]
        if open_tickets and rng.random() < 0.4:
            desk.close(rng.choice(open_tickets))
        else:
            desk.market(rng.choice([T.BUY, T.SELL]), volume=0.1)
        if rng.random() < 0.5:
            desk.clock.advance(rng.choice([0, 1, 1000]))
        if step % 3 == 0:
            snap, cursor = _snap(desk, cursor)
            seen_deals += [d.ticket for d in snap.deals]
            seen_orders += [o.ticket for o in snap.history_orders]
    snap, cursor = _snap(desk, cursor)
    seen_deals += [d.ticket for d in snap.deals]
    seen_orders += [o.ticket for o in snap.history_orders]
    assert seen_deals == [d.ticket for d in desk.server.deals(desk.login)]
    assert seen_orders == [o.ticket for o in desk.server.history_orders(desk.login)]
    assert len(set(seen_deals)) == len(seen_deals) == 60  # one deal per step
    again, _ = _snap(desk, cursor)
    assert (again.deals, again.history_orders) == ([], [])


def test_deals_in_the_same_millisecond_are_neither_repeated_nor_skipped(
    make_desk: MakeDesk,
) -> None:
    """A time cursor would lose (``>``) or repeat (``>=``) deals that share the millisecond
    of the previous snapshot; positions in the history lists do neither."""
    desk = make_desk(Platform.MT5)
    now = desk.clock.now_ms()
    desk.market(T.BUY)
    desk.market(T.BUY)
    snap, cursor = _first(desk)
    assert len(snap.deals) == 2
    desk.market(T.SELL)
    desk.market(T.SELL)
    desk.market(T.SELL)  # the same millisecond as the previous snapshot
    snap, cursor = _snap(desk, cursor)
    assert [d.time_ms for d in snap.deals] == [now] * 3
    assert [d.type for d in snap.deals] == [1, 1, 1]
    all_tickets = [d.ticket for d in desk.server.deals(desk.login)]
    assert [d.ticket for d in snap.deals] == all_tickets[2:]


def test_the_first_snapshot_starts_at_since_ms_inclusive(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT4)
    desk.market(T.BUY, comment="mg:OLD")
    desk.clock.advance(1_000)
    since = desk.clock.now_ms()
    desk.market(T.BUY, comment="mg:AT")
    desk.market(T.BUY, comment="mg:AT2")
    desk.clock.advance(1)
    desk.market(T.BUY, comment="mg:AFTER")
    snap, _ = _first(desk, since)
    assert [d.comment for d in snap.deals] == ["mg:AT", "mg:AT2", "mg:AFTER"]
    snap, _ = _first(desk, since + 2)
    assert snap.deals == []
    assert len(snap.positions) == 4  # the state is always complete


def test_a_long_backlog_is_carried_over_several_snapshots(
    make_desk: MakeDesk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "SNAPSHOT_HISTORY_MAX", 3)
    desk = make_desk(Platform.MT5)
    desk.server.open_positions(desk.login, "EURUSD", 7, 0.1)
    sizes = []
    cursor = desk.server.sync_cursor(desk.login)
    tickets: list[int] = []
    for _ in range(4):
        snap, cursor = _snap(desk, cursor)
        sizes.append((len(snap.deals), len(snap.history_orders)))
        tickets += [d.ticket for d in snap.deals]
        assert len(snap.positions) == 7
    assert sizes == [(3, 3), (3, 3), (1, 1), (0, 0)]
    assert tickets == [d.ticket for d in desk.server.deals(desk.login)]


def test_the_real_history_cap_keeps_a_large_snapshot_inside_a_frame(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5, balance=1e9)
    desk.server.open_positions(desk.login, "EURUSD", 1500, 0.01, comment="mg:0123456789abcdefghi")
    snap, _ = _first(desk)
    cap = server_module.SNAPSHOT_HISTORY_MAX
    assert (len(snap.deals), len(snap.history_orders), len(snap.positions)) == (cap, cap, 1500)
    frame = codec.encode(m.Event(seq=1, name="snapshot", data=codec.encode_payload(snap)))
    assert len(frame) < m.MAX_FRAME_BYTES


# --- the trade server: SL/TP closes and manual trades ----------------------------------


@pytest.mark.parametrize(
    ("platform", "stop", "reason", "marker"),
    [
        (Platform.MT4, "sl", DealReason.SL, "mg:KEEP[sl]"),
        (Platform.MT4, "tp", DealReason.TP, "mg:KEEP[tp]"),
        (Platform.MT5, "sl", DealReason.SL, f"[sl {px(BID, -50):.5f}]"),
        (Platform.MT5, "tp", DealReason.TP, f"[tp {px(BID, 50):.5f}]"),
    ],
)
def test_a_position_closed_by_its_stop_shows_as_a_deal_with_its_reason(
    make_desk: MakeDesk, platform: Platform, stop: str, reason: DealReason, marker: str
) -> None:
    desk = make_desk(platform)
    level = px(BID, -50) if stop == "sl" else px(BID, 50)
    opened = desk.market(T.BUY, comment="mg:KEEP", **{stop: level})
    snap, cursor = _first(desk)
    assert [p.ticket for p in snap.positions] == [opened.order]
    moved = -50 if stop == "sl" else 50
    desk.quote("EURUSD", px(BID, moved), px(ASK, moved))
    snap, cursor = _snap(desk, cursor)
    assert snap.positions == []
    [deal] = snap.deals
    assert (deal.position_id, deal.reason, deal.entry, deal.comment) == (
        opened.order,
        reason,
        1,
        marker,
    )
    [closed] = snap.history_orders
    assert closed.comment == marker
    assert closed.position_id == opened.order
    assert snap.account.balance == round(100_000.0 + deal.profit, 2)


def test_a_manual_trade_is_in_the_next_snapshot(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT4)
    _, cursor = _first(desk)
    result = desk.server.manual_market_order(desk.login, "EURUSD", T.SELL, 0.2)
    snap, cursor = _snap(desk, cursor)
    [pos] = snap.positions
    assert (pos.ticket, pos.type, pos.volume, pos.magic, pos.comment) == (
        result.order,
        1,
        0.2,
        0,
        "",
    )
    [deal] = snap.deals
    assert (deal.order, deal.reason) == (result.order, DealReason.CLIENT)


def test_open_positions_goes_through_the_ledger(make_desk: MakeDesk, platform: Platform) -> None:
    bulk, single = make_desk(platform), make_desk(platform)
    tickets = bulk.server.open_positions(bulk.login, "EURUSD", 6, 0.1, magic=9, comment="x")
    for i in range(6):
        single.server.manual_market_order(single.login, "EURUSD", i % 2, 0.1, magic=9, comment="x")
    positions = bulk.server.positions(bulk.login)
    assert [p.ticket for p in positions] == tickets
    assert len(set(tickets)) == 6
    assert [p.type for p in positions] == [0, 1, 0, 1, 0, 1]
    assert bulk.server.account(bulk.login) == single.server.account(single.login)
    assert bulk.server.account(bulk.login).margin > 0
    # MT4 EAs derive the reason from the magic (docs/protocol.md §10): 9 reads as EXPERT
    manual = DealReason.EXPERT if platform == Platform.MT4 else DealReason.CLIENT
    assert {d.reason for d in bulk.server.deals(bulk.login)} == {manual}
    assert len(bulk.names("deal")) == 6
    sells = bulk.server.open_positions(bulk.login, "GBPUSD", 2, 0.1, order_type=T.SELL)
    assert [bulk.position(t).type for t in sells] == [1, 1]


def test_open_positions_refuses_many_on_a_netting_account(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5, margin_mode=MarginMode.NETTING)
    with pytest.raises(ValueError, match="netting"):
        desk.server.open_positions(desk.login, "EURUSD", 2, 0.1)
    assert desk.server.positions(desk.login) == []
    assert len(desk.server.open_positions(desk.login, "EURUSD", 1, 0.1)) == 1


# --- the terminal: sync over a socket -----------------------------------------------------


def test_interval_clamp() -> None:
    assert [sync_interval_ms(v) for v in (0, 1, 99, 100, 250)] == [0, 100, 100, 100, 250]
    assert SYNC_MIN_INTERVAL_MS == 100


@contextlib.asynccontextmanager
async def _session(
    desk: Desk, **config: Any
) -> AsyncIterator[tuple[WireBridge, SimTerminal, m.Hello]]:
    async with wire_session(desk, **config) as (bridge, terminal):
        assert bridge.hello is not None
        yield bridge, terminal, bridge.hello


def _count_builds(monkeypatch: pytest.MonkeyPatch, server: TradeServer) -> list[SyncCursor]:
    """Record every snapshot the server builds (the cursor it was asked for)."""
    calls: list[SyncCursor] = []
    original: Callable[[int, SyncCursor], tuple[m.Snapshot, SyncCursor]] = server.snapshot

    def counting(login: int, cursor: SyncCursor) -> tuple[m.Snapshot, SyncCursor]:
        calls.append(cursor)
        return original(login, cursor)

    monkeypatch.setattr(server, "snapshot", counting)
    return calls


async def test_sync_answers_then_pushes_now_and_every_interval(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5)
    opened = desk.market(T.BUY, volume=0.4)
    async with _session(desk) as (bridge, _, hello):
        assert m.SYNC_FEATURE in hello.features
        bridge.send(m.Sync(id=1, interval_ms=20))  # raised to the minimum
        answer = await bridge.receive()
        assert isinstance(answer, m.Response) and answer.ok
        started = codec.decode_result(m.Sync, answer.result)
        assert started == m.SyncStarted(interval_ms=SYNC_MIN_INTERVAL_MS)
        loop = asyncio.get_running_loop()
        pushed = await bridge.receive()  # the very next frame: pushed at once
        arrivals = [loop.time()]
        assert isinstance(pushed, m.Event)
        assert (pushed.name, pushed.seq) == ("snapshot", 1)
        first = codec.decode_event("snapshot", pushed.data)
        assert [p.ticket for p in first.positions] == [opened.order]
        assert [d.order for d in first.deals] == [opened.order]
        for _ in range(3):
            later = await bridge.snapshot()
            arrivals.append(loop.time())
            assert later.positions == first.positions
            assert later.deals == []  # the history was in the first one
        gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        assert all(gap > 0.05 for gap in gaps), gaps
        assert sum(gaps) < 3.0
        assert [e.seq for e in bridge.events] == [1, 2, 3, 4]


async def test_a_manual_trade_is_pushed_with_the_next_snapshot(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT4)
    async with _session(desk) as (bridge, _, _hello):
        assert (await bridge.request(m.Sync(id=1, interval_ms=100))).ok
        assert (await bridge.snapshot()).positions == []
        result = desk.server.manual_market_order(desk.login, "EURUSD", T.BUY, 0.3)
        snap = await bridge.snapshot()
        assert [(p.ticket, p.volume) for p in snap.positions] == [(result.order, 0.3)]
        assert [(d.order, d.reason) for d in snap.deals] == [(result.order, DealReason.CLIENT)]
        names = [e.name for e in bridge.events]
        assert names.index("deal") < len(names) - 1  # the deal event came before the snapshot
        assert [e.seq for e in bridge.events] == list(range(1, len(bridge.events) + 1))


async def test_sync_with_interval_zero_stops_the_pushes(
    make_desk: MakeDesk, monkeypatch: pytest.MonkeyPatch
) -> None:
    desk = make_desk(Platform.MT5)
    builds = _count_builds(monkeypatch, desk.server)
    async with _session(desk) as (bridge, _, _hello):
        assert (await bridge.request(m.Sync(id=1, interval_ms=100))).ok
        await bridge.snapshot()
        await bridge.snapshot()
        stop = await bridge.request(m.Sync(id=2, interval_ms=0))
        assert codec.decode_result(m.Sync, stop.result) == m.SyncStarted(interval_ms=0)
        built = len(builds)
        await bridge.no_snapshot_for(0.35)
        assert len(builds) == built


async def test_a_new_sync_replaces_the_old_one(
    make_desk: MakeDesk, monkeypatch: pytest.MonkeyPatch
) -> None:
    desk = make_desk(Platform.MT5)
    desk.market(T.BUY)
    builds = _count_builds(monkeypatch, desk.server)
    async with _session(desk) as (bridge, _, _hello):
        assert (await bridge.request(m.Sync(id=1, interval_ms=100))).ok
        first = await bridge.snapshot()
        assert len(first.deals) == 1
        await bridge.snapshot()
        replaced = await bridge.request(m.Sync(id=2, interval_ms=60_000, since_ms=0))
        assert codec.decode_result(m.Sync, replaced.result).interval_ms == 60_000
        again = await bridge.snapshot()  # the new subscription's first: its history restarts
        assert again.deals == first.deals
        built = len(builds)
        await bridge.no_snapshot_for(0.35)  # the 100 ms subscription is gone
        assert len(builds) == built
        assert builds[-1] == SyncCursor(0, 0)


async def test_pushes_end_with_the_connection(
    make_desk: MakeDesk, monkeypatch: pytest.MonkeyPatch
) -> None:
    desk = make_desk(Platform.MT5)
    builds = _count_builds(monkeypatch, desk.server)
    async with _session(desk) as (bridge, terminal, _hello):
        assert (await bridge.request(m.Sync(id=1, interval_ms=100))).ok
        await bridge.snapshot()
        await bridge.snapshot()
        connection = terminal.connection
        assert connection is not None
        bridge.writer.close()  # the bridge goes away
        await asyncio.wait_for(connection.closed.wait(), 5)
        built = len(builds)
        await asyncio.sleep(0.35)
        assert len(builds) == built


async def test_snapshots_stop_while_the_terminal_is_frozen(
    make_desk: MakeDesk, monkeypatch: pytest.MonkeyPatch
) -> None:
    desk = make_desk(Platform.MT5)
    builds = _count_builds(monkeypatch, desk.server)
    async with _session(desk) as (bridge, terminal, _hello):
        assert (await bridge.request(m.Sync(id=1, interval_ms=100))).ok
        await bridge.snapshot()
        terminal.faults.frozen = True
        built = len(builds)
        await bridge.no_snapshot_for(0.35)
        assert len(builds) == built
        terminal.faults.frozen = False
        await bridge.snapshot()


async def test_a_trade_is_answered_while_snapshots_keep_coming(make_desk: MakeDesk) -> None:
    """The trade waits for its broker round trip (300 ms) only: snapshots go on meanwhile,
    and the next one after the answer shows the new position."""
    desk = make_desk(Platform.MT5)
    async with _session(desk, broker_delay_ms=(300.0, 300.0)) as (bridge, _, _hello):
        assert (await bridge.request(m.Sync(id=1, interval_ms=100))).ok
        await bridge.snapshot()
        loop = asyncio.get_running_loop()
        sent = loop.time()
        before = len(bridge.events)
        order = m.MarketOrder(id=2, symbol="EURUSD", order_type=0, volume=0.1, magic=7, comment="")
        answer = await bridge.request(order)
        latency = loop.time() - sent
        assert answer.ok
        result = codec.decode_result(m.MarketOrder, answer.result)
        during = [e for e in bridge.events[before:] if e.name == "snapshot"]
        assert len(during) >= 2  # pushed while the trade was at the broker
        for event in during:  # ... and built before it executed
            assert codec.decode_event("snapshot", event.data).positions == []
        assert 0.29 <= latency < 0.3 + 0.25
        snap = await bridge.snapshot()
        if not snap.positions:  # a snapshot written just before the answer
            snap = await bridge.snapshot()
        assert [p.ticket for p in snap.positions] == [result.order]


async def test_sync_refusals(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5)
    async with _session(desk) as (bridge, _, _hello):
        bad = await bridge.request(m.Sync(id=1, interval_ms=-5))
        assert bad.error is not None
        assert (bad.error.code, bad.error.name) == (-2, "invalid_request")
        await bridge.no_snapshot_for(0.15)
    async with _session(desk, sync=False) as (bridge, _, hello):
        assert hello.features == [m.POSITIONS_FEATURE, m.DEADLINE_FEATURE]
        refused = await bridge.request(m.Sync(id=1, interval_ms=100))
        assert refused.error is not None
        assert (refused.error.code, refused.error.name) == (-1, "unknown_operation")


@pytest.mark.parametrize(("platform", "code"), [(Platform.MT4, 133), (Platform.MT5, 10017)])
async def test_reject_trades_after_refuses_later_trades_with_trade_disabled(
    make_desk: MakeDesk, platform: Platform, code: int
) -> None:
    """A fault of the terminal, not of sync: the broker disables trading after ``n`` trades."""
    desk = make_desk(platform)
    async with _session(desk) as (bridge, terminal, _hello):
        terminal.faults.reject_trades_after = 1
        order = m.MarketOrder(id=1, symbol="EURUSD", order_type=0, volume=0.1, magic=7, comment="")
        assert (await bridge.request(order)).ok
        refused = await bridge.request(
            m.ClosePosition(id=2, ticket=desk.server.positions(1)[0].ticket)
        )
        assert refused.error is not None
        assert refused.error.code == code
        assert len(desk.server.positions(desk.login)) == 1  # nothing executed
        reads = await bridge.request(m.Positions(id=3))
        assert reads.ok  # reads still work
