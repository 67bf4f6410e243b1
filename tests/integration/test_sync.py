"""The account synchronizer against simulated terminals: snapshots every interval, changes
made by hand noticed within one interval, persistence, staleness, restart."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
import time

import pytest
from sqlalchemy.exc import OperationalError

from mtgate.bridge import Bridge
from mtgate.domain.enums import OrderType
from mtgate.domain.orders import OrderStatus
from mtgate.protocol import codec
from mtgate.protocol import messages as m
from mtgate.sessions.session import AccountKey, SessionSettings, grants_for
from mtgate.store.journal import open_journal
from mtgate.store.sync_store import PositionState
from mtgate.sync.synchronizer import SyncEvent, SyncSettings
from mtsim.terminal import SimTerminal
from tests.integration.conftest import (
    MT4,
    MT5H,
    MT5N,
    Harness,
    HarnessFactory,
    eventually,
    open_tickets,
)

INTERVAL_MS = 200


def _key(h: Harness, tid: str) -> AccountKey:
    return AccountKey.parse(h.account(tid))


async def _first_snapshot(h: Harness, tid: str) -> None:
    await eventually(lambda: h.bridge.synced_account(h.account(tid)) is not None, timeout_s=3)


class _Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[float, SyncEvent]] = []
        self.arrived = asyncio.Event()

    def __call__(self, event: SyncEvent) -> None:
        self.events.append((time.monotonic(), event))
        self.arrived.set()

    async def wait_for(self, kind: str, ticket: int, timeout_s: float) -> tuple[float, SyncEvent]:
        deadline = time.monotonic() + timeout_s
        while True:
            for at, event in self.events:
                if event.kind == kind and event.change and event.change.ticket == ticket:
                    return at, event
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {kind} for #{ticket} within {timeout_s} s")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), left)


@pytest.mark.parametrize("tid", [MT4, MT5H, MT5N])
async def test_a_manual_trade_and_close_appear_within_one_interval(
    harness: Harness, tid: str
) -> None:
    await _first_snapshot(harness, tid)
    recorder = _Recorder()
    harness.bridge.sync.subscribe(recorder)
    login = harness.login(tid)
    server = harness.server(tid)
    made = time.monotonic()
    opened = server.manual_market_order(login, "EURUSD", OrderType.BUY, 0.2)
    ticket = opened.position or opened.order
    at, event = await recorder.wait_for("position_opened", ticket, timeout_s=2)
    # One interval, plus the time to build, send and apply one snapshot.
    assert at - made <= INTERVAL_MS / 1000 + 0.1
    assert event.change is not None and event.change.external
    assert event.position is not None and event.position.external
    assert event.position.client_order_id is None and event.position.volume == pytest.approx(0.2)
    made = time.monotonic()
    server.manual_close(login, ticket)
    at, event = await recorder.wait_for("position_closed", ticket, timeout_s=2)
    assert at - made <= INTERVAL_MS / 1000 + 0.1
    assert event.change is not None and event.change.reason is not None
    assert event.change.reason.value == "manual"
    stored = await harness.bridge.store.position(_key(harness, tid), ticket)
    assert stored is not None and not stored.open and stored.close_reason == "manual"
    deals = await harness.bridge.store.deals(_key(harness, tid))
    assert any(d["position_id"] in (ticket, opened.position) for d in deals)


async def test_sl_hit_is_reported_with_its_reason_and_the_bridge_client_id(
    harness: Harness,
) -> None:
    tid = MT4
    await _first_snapshot(harness, tid)
    result = await harness.bridge.place_market_order(
        account=harness.account(tid),
        symbol="EURUSD",
        side="buy",
        volume=0.1,
        client_order_id="slhit",
    )
    assert result.status == OrderStatus.FILLED and result.fill_price is not None
    ticket = result.ticket
    assert ticket is not None
    bid, _, _ = harness.server(tid).feed.quote("EURUSD")
    sl = round(bid - 0.0005, 5)
    done = await harness.bridge.modify_position(account=harness.account(tid), ticket=ticket, sl=sl)
    assert done.status == "done"
    recorder = _Recorder()
    harness.bridge.sync.subscribe(recorder)
    harness.server(tid).set_quote("EURUSD", round(sl - 0.0001, 5), round(sl + 0.0001, 5))
    _, event = await recorder.wait_for("position_closed", ticket, timeout_s=2)
    assert event.change is not None and event.change.reason is not None
    assert event.change.reason.value == "sl"
    assert event.change.client_order_id == "slhit" and not event.change.external


async def test_account_figures_are_refreshed_by_sync(make_harness: HarnessFactory) -> None:
    # Rows written at every snapshot here (by default at most every 5 s).
    harness = await make_harness(
        sync=SyncSettings(interval_ms=INTERVAL_MS, account_state_interval_ms=0)
    )
    tid = MT5H
    await _first_snapshot(harness, tid)
    before = harness.bridge.synced_account(harness.account(tid))
    assert before is not None
    login = harness.login(tid)
    harness.server(tid).manual_market_order(login, "EURUSD", OrderType.BUY, 1.0)
    await eventually(
        lambda: (
            (a := harness.bridge.synced_account(harness.account(tid))) is not None
            and a.margin > before.margin
        ),
        timeout_s=2,
    )
    after = harness.bridge.synced_account(harness.account(tid))
    assert after is not None
    truth = harness.server(tid).account(login)
    assert after.margin == pytest.approx(truth.margin)
    assert after.margin_level == pytest.approx(after.equity / after.margin * 100, rel=1e-6)
    state = await harness.bridge.store.account_state(_key(harness, tid))
    assert state is not None and state["margin"] == pytest.approx(truth.margin)
    history = await harness.bridge.store.margin_history(_key(harness, tid))
    assert history and history[0]["margin_level"] >= 0


async def test_an_account_without_snapshots_goes_stale_and_recovers(
    make_harness: HarnessFactory,
) -> None:
    h = await make_harness(sync=SyncSettings(interval_ms=INTERVAL_MS))
    await _first_snapshot(h, MT5H)
    recorder = _Recorder()
    h.bridge.sync.subscribe(recorder)
    h.terminal(MT5H).faults.frozen = True
    await eventually(lambda: h.bridge.sync.is_stale(_key(h, MT5H)), timeout_s=3)
    assert any(e.kind == "account_stale" and e.account == _key(h, MT5H) for _, e in recorder.events)
    assert not h.bridge.sync.is_stale(_key(h, MT4))
    h.terminal(MT5H).faults.frozen = False
    h.terminal(MT5H).drop()  # the frozen connection is dead: the terminal dials again
    await eventually(lambda: not h.bridge.sync.is_stale(_key(h, MT5H)), timeout_s=5)


async def test_positions_survive_a_bridge_restart_and_changes_meanwhile_are_found(
    make_harness: HarnessFactory,
) -> None:
    h = await make_harness()
    tid = MT5H
    await _first_snapshot(h, tid)
    login = h.login(tid)
    result = await h.bridge.place_market_order(
        account=h.account(tid), symbol="EURUSD", side="buy", volume=0.1, client_order_id="rst"
    )
    assert result.status == OrderStatus.FILLED and result.position_id is not None
    ticket = result.position_id
    await eventually(lambda: ticket in open_tickets(h.bridge, _key(h, tid)))
    assert h.bridge.address is not None
    host, port = h.bridge.address
    await h.bridge.stop()
    # While the bridge is down, the position is closed by hand on the terminal.
    h.server(tid).manual_close(login, ticket)
    again = Bridge(
        terminals=grants_for(h.world.bindings()),
        journal=open_journal(f"sqlite:///{h.db}"),
        host=host,
        port=port,
        store_url=f"sqlite:///{h.db}",
        sync=SyncSettings(interval_ms=INTERVAL_MS),
    )
    recorder = _Recorder()
    try:
        await again.start()
        again.sync.subscribe(recorder)
        await again.wait_ready(set(h.world.terminals), timeout_s=10)
        _, event = await recorder.wait_for("position_closed", ticket, timeout_s=3)
        assert event.change is not None and event.change.client_order_id == "rst"
        assert event.change.reason is not None and event.change.reason.value == "manual"
        stored = await again.store.position(_key(h, tid), ticket)
        assert stored is not None and not stored.open and stored.close_reason == "manual"
    finally:
        await again.stop()


async def test_features_are_negotiated_and_an_ea_without_sync_still_trades(
    make_harness: HarnessFactory,
) -> None:
    from mtgate.domain.enums import MarginMode, Platform
    from mtsim.world import AccountSpec

    h = await make_harness(
        [
            AccountSpec("old-ea", 4001, "Sim-MT5", Platform.MT5, MarginMode.HEDGING, sync=False),
            AccountSpec("new-ea", 4002, "Sim-MT5", Platform.MT5, MarginMode.HEDGING),
        ]
    )
    assert h.terminal("old-ea").bridge_features == {"positions", "deadline"}
    assert h.terminal("new-ea").bridge_features == {"positions", "sync", "deadline"}
    await _first_snapshot(h, "new-ea")
    result = await h.bridge.place_market_order(
        account=h.account("old-ea"), symbol="EURUSD", side="buy", volume=0.1
    )
    assert result.status == OrderStatus.FILLED
    assert h.bridge.synced_account(h.account("old-ea")) is None
    assert h.bridge.sync.is_stale(_key(h, "old-ea"))  # no snapshot: never fresh


async def test_f10_a_store_that_cannot_be_read_does_not_keep_an_account_unsynced(
    make_harness: HarnessFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stored positions cannot be read when the account attaches: its view is made anyway
    and its terminal subscribed (the account used to stay "owned" and never synced)."""
    h = await make_harness(start=False)
    host, port = await h.bridge.start()

    async def unreadable(account: AccountKey, *, open_only: bool = True) -> list[object]:
        raise OSError("disk I/O error")

    monkeypatch.setattr(h.bridge.store, "positions", unreadable)
    h.world.start(host, port)
    await h.ready()
    for tid in (MT4, MT5H, MT5N):
        await _first_snapshot(h, tid)
        assert not h.bridge.sync.is_stale(_key(h, tid))


async def test_f21_a_refused_sync_subscription_is_asked_again(
    make_harness: HarnessFactory,
) -> None:
    """The terminal answers its first two ``sync`` requests -3 not_ready (history still
    loading): the bridge asks again while the session lives, instead of leaving the account
    stale until a reconnect."""
    h = await make_harness(start=False)
    h.terminal(MT5H).faults.refuse_syncs = 2
    host, port = await h.bridge.start()
    h.world.start(host, port)
    await h.ready()
    await eventually(lambda: h.terminal(MT5H).faults.refuse_syncs == 0, timeout_s=3)
    await _first_snapshot(h, MT5H)
    assert h.terminal(MT5H).sessions == 1  # the same session, subscribed at the third try
    assert not h.bridge.sync.is_stale(_key(h, MT5H))


def _stored_position(account: AccountKey, ticket: int) -> PositionState:
    """An open position as a previous run of the bridge left it in the store."""
    return PositionState(
        account=account,
        ticket=ticket,
        identifier=ticket,
        origin_ticket=ticket,
        symbol="EURUSD",
        buy=True,
        volume=0.1,
        price_open=1.085,
        sl=0.0,
        tp=0.0,
        magic=7,
        comment="",
        client_order_id=None,
        external=True,
        opened_at_ms=1_767_700_000_000,
        updated_at_ms=1_767_700_000_000,
    )


async def test_f10_attach_survives_a_store_failure(
    make_harness: HarnessFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store is locked for the first reads of every account's stored view (an exception
    attach used to let escape, leaving the account owned, unsubscribed and viewless): the
    reads are retried, so the account is synced from what the last run stored (a position
    it stored, gone from the terminal meanwhile, is found closed), not from nothing."""
    h = await make_harness(start=False)
    host, port = await h.bridge.start()
    store = h.bridge.store
    gone = _stored_position(_key(h, MT5H), 424_242)
    store.put_position(gone)
    await store.flush()
    real_positions = store.positions
    reads: dict[AccountKey, int] = {}

    async def locked_twice(account: AccountKey, *, open_only: bool = True) -> list[PositionState]:
        reads[account] = reads.get(account, 0) + 1
        if reads[account] <= 2:
            locked = sqlite3.OperationalError("database is locked")
            raise OperationalError("SELECT ... FROM positions", {}, locked)
        return await real_positions(account, open_only=open_only)

    monkeypatch.setattr(store, "positions", locked_twice)
    h.world.start(host, port)
    await h.ready()
    for tid in (MT4, MT5H, MT5N):
        await _first_snapshot(h, tid)
        assert not h.bridge.sync.is_stale(_key(h, tid))
        assert reads[_key(h, tid)] == 3
    monkeypatch.undo()

    async def closed() -> bool:  # diffed against the stored view, not an empty one
        stored = await store.position(_key(h, MT5H), gone.ticket)
        return stored is not None and not stored.open

    await eventually(closed, timeout_s=3)


async def test_f10_a_row_the_database_refuses_does_not_keep_accounts_from_syncing(
    make_harness: HarnessFactory,
) -> None:
    """A row SQLite cannot take (a magic beyond 64 bits) is buffered before the terminals
    connect: it used to make every read raise, so no account could attach to sync."""
    h = await make_harness(start=False)
    host, port = await h.bridge.start()
    h.bridge.store.put_position(
        dataclasses.replace(_stored_position(_key(h, MT4), 515_151), magic=2**63)
    )
    h.world.start(host, port)
    await h.ready()
    for tid in (MT4, MT5H, MT5N):
        await _first_snapshot(h, tid)
    assert h.bridge.store.refused_count == 1
    assert [r.table for r in h.bridge.store.refused_rows] == ["positions"]


class _SlowFirstSync:
    """Wraps a terminal's connections so that the first ``sync`` request is handled only
    ``hold_s`` after it arrived (a terminal busy loading its history), and counts them. The
    frames that arrive meanwhile wait behind it, in order, as they would in the EA's socket
    (an EA handles its frames in the order they came: a request handled after a later one
    would be a repeated id, docs/protocol.md §4.1); their arrival still counts as liveness."""

    def __init__(self, terminal: SimTerminal, hold_s: float) -> None:
        self.terminal = terminal
        self.hold_s = hold_s
        self.syncs = 0
        self.released = asyncio.Event()
        """Set once the held request has been handled (answered late)."""
        self._connect = terminal.connect

    async def connect(self, host: str, port: int) -> asyncio.Event:
        closed = await self._connect(host, port)
        conn = self.terminal.connection
        assert conn is not None
        handle = conn.on_frame

        held: list[bytes] = []
        holding = False

        def on_frame(body: bytes) -> None:
            nonlocal holding
            try:
                is_sync = isinstance(codec.decode_for_terminal(body), m.Sync)
            except codec.ProtocolError:
                is_sync = False  # the terminal's own handler says what is wrong with it
            if is_sync:
                self.syncs += 1
            if holding:
                held.append(body)
                conn._last_frame_s = asyncio.get_running_loop().time()  # it did arrive
                return
            if is_sync and self.syncs == 1:
                holding = True
                held.append(body)
                asyncio.get_running_loop().call_later(self.hold_s, release)
                return
            handle(body)

        def release() -> None:
            nonlocal holding
            holding = False
            for body in held:
                handle(body)
            held.clear()
            self.released.set()

        conn.on_frame = on_frame  # type: ignore[method-assign]
        return closed


async def test_f21_failed_sync_subscription_is_retried(
    make_harness: HarnessFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The terminal answers its first ``sync`` after the read timeout: the bridge asks again
    on the same session (it used to give up, leaving the account stale until a reconnect),
    and the late answer of the first one changes nothing."""
    h = await make_harness(
        start=False, settings=SessionSettings(heartbeat_ms=200, read_timeout_s=0.5)
    )
    slow = _SlowFirstSync(h.terminal(MT5H), hold_s=1.0)
    monkeypatch.setattr(h.terminal(MT5H), "connect", slow.connect)
    host, port = await h.bridge.start()
    h.world.start(host, port)
    await h.ready()
    await _first_snapshot(h, MT5H)
    await eventually(lambda: slow.syncs >= 2, timeout_s=2)
    await asyncio.wait_for(slow.released.wait(), timeout=3)
    view = h.bridge.sync.views[_key(h, MT5H)]
    last = view.last_snapshot_ns
    await eventually(lambda: view.last_snapshot_ns != last, timeout_s=2)  # snapshots go on
    assert not h.bridge.sync.is_stale(_key(h, MT5H))
    assert h.terminal(MT5H).sessions == 1  # all on the first session: no reconnect needed


@pytest.fixture
async def harness(any_harness: Harness) -> Harness:
    """Every test of this module runs with each kind of MT5 terminal."""
    return any_harness
