"""The synchronizer's store on SQLite and PostgreSQL: buffered, coalesced, upserted."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from mtgate.protocol import messages as m
from mtgate.sessions.session import AccountKey
from mtgate.store import sync_store
from mtgate.store.sync_store import (
    FLUSH_ROWS_MAX,
    AccountState,
    PositionEvent,
    PositionState,
    SyncStore,
    TrailingState,
)

T0 = 1_767_780_000_123
ACCOUNT = AccountKey(51234567, "Broker-Live")
REPORT = m.AccountReport(
    login=ACCOUNT.login,
    server=ACCOUNT.server,
    currency="USD",
    leverage=100,
    margin_mode=2,
    balance=10_000.0,
    credit=0.0,
    profit=-12.5,
    equity=9_987.5,
    margin=216.8,
    margin_free=9_770.7,
    margin_level=4606.7,
    margin_so_call=100.0,
    margin_so_so=50.0,
    trade_allowed=True,
    trade_expert=True,
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SyncStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 's.db'}"
    else:
        url = request.getfixturevalue("pg_schema_url")
    s = SyncStore(url, flush_interval_s=3600)  # flushed by the tests (and by reads)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def _position(ticket: int = 1001, **changes: object) -> PositionState:
    base = PositionState(
        account=ACCOUNT,
        ticket=ticket,
        identifier=ticket,
        origin_ticket=ticket,
        symbol="EURUSD",
        buy=True,
        volume=0.3,
        price_open=1.08412,
        sl=1.081,
        tp=0.0,
        magic=7,
        comment="mg:abc",
        client_order_id="abc",
        external=False,
        opened_at_ms=T0,
        updated_at_ms=T0,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


async def test_positions_are_coalesced_and_upserted(store: SyncStore) -> None:
    store.put_position(_position(volume=0.3))
    store.put_position(_position(volume=0.2))  # the same flush: only the latest is written
    await store.flush()
    store.put_position(
        _position(volume=0.2, open=False, closed_at_ms=T0 + 5000, close_reason="tp", close_deal=9)
    )
    store.put_position(_position(2002, client_order_id=None, external=True, comment="manual"))
    assert [p.ticket for p in await store.positions(ACCOUNT)] == [2002]
    closed = await store.position(ACCOUNT, 1001)
    assert closed is not None
    assert (closed.open, closed.volume, closed.close_reason, closed.close_deal) == (
        False,
        0.2,
        "tp",
        9,
    )
    assert closed.closed_at_ms == T0 + 5000 and closed.sl == 1.081 and closed.tp == 0.0
    everything = await store.positions(ACCOUNT, open_only=False)
    assert [(p.ticket, p.external) for p in everything] == [(1001, False), (2002, True)]
    assert await store.positions(AccountKey(1, "other")) == []


async def test_deals_are_written_once_per_ticket(store: SyncStore) -> None:
    deal = m.DealReport(
        ticket=77,
        order=1001,
        position_id=1001,
        symbol="EURUSD",
        type=1,
        entry=1,
        volume=0.3,
        price=1.085,
        time_ms=T0 + 1000,
        reason=5,
        comment="[tp 1.08500]",
        profit=26.4,
    )
    store.put_deal(ACCOUNT, deal, "abc")
    await store.flush()
    store.put_deal(ACCOUNT, deal, "abc")  # a snapshot repeating the cursor's deal
    rows = await store.deals(ACCOUNT)
    assert [(r["ticket"], r["reason"], r["client_order_id"], r["profit"]) for r in rows] == [
        (77, 5, "abc", 26.4)
    ]


async def test_account_state_is_one_row_and_margin_history_appends(store: SyncStore) -> None:
    for i in range(3):
        report = msgspec.structs.replace(REPORT, equity=REPORT.equity + i)
        store.put_account(AccountState(ACCOUNT, report, 2, 1, False, T0 + i, T0 + i * 1000))
        store.put_margin_sample(ACCOUNT, report, T0 + i * 1000)
        await store.flush()
    state = await store.account_state(ACCOUNT)
    assert state is not None
    assert (state["equity"], state["positions"], state["pending_orders"], state["stale"]) == (
        REPORT.equity + 2,
        2,
        1,
        False,
    )
    history = await store.margin_history(ACCOUNT)
    assert [h["equity"] for h in history] == [REPORT.equity + i for i in range(3)]


async def test_events_keep_their_order(store: SyncStore) -> None:
    for i, kind in enumerate(("position_opened", "bridge_modified", "position_closed")):
        store.put_event(PositionEvent(ACCOUNT, 1001, kind, "abc", f"step {i}", T0 + i))
    events = await store.events(ACCOUNT, 1001)
    assert [(e.kind, e.detail) for e in events] == [
        ("position_opened", "step 0"),
        ("bridge_modified", "step 1"),
        ("position_closed", "step 2"),
    ]


async def test_trailing_stops_update_their_row_and_only_active_ones_reload(
    store: SyncStore,
) -> None:
    first = TrailingState(
        ACCOUNT, 1001, "EURUSD", True, 200, 20, None, 1000, True, None, 0, None, None, T0, T0
    )
    store.put_trailing(first)
    await store.flush()
    moved = dataclasses.replace(
        first, stop_loss=1.0831, moves=1, last_moved_at_ms=T0 + 10, updated_at_ms=T0 + 10
    )
    store.put_trailing(moved)
    assert await store.trailing() == [moved]
    # MT4 renumbering: the old one finishes, a new one follows the new ticket.
    store.put_trailing(dataclasses.replace(moved, active=False, finished_reason="renumbered"))
    follow = dataclasses.replace(moved, ticket=1002, created_at_ms=T0 + 20, updated_at_ms=T0 + 20)
    store.put_trailing(follow)
    assert await store.trailing() == [follow]
    assert len(await store.trailing(active_only=False)) == 2


async def test_f10_a_refused_row_is_isolated_and_the_rest_flush(store: SyncStore) -> None:
    """One row the database refuses for what it holds (SQLite: an integer beyond 64 bits;
    PostgreSQL: a symbol longer than VARCHAR(32)) used to make every later flush fail, for
    every account: now the others land, it is dropped and reported, and flushing goes on."""
    sqlite = store.url.get_backend_name() == "sqlite"
    bad = _position(3003, magic=2**63) if sqlite else _position(3003, symbol="X" * 100)
    store.put_position(_position())
    store.put_event(PositionEvent(ACCOUNT, 1001, "position_opened", "abc", "opened", T0))
    store.put_position(bad)
    store.put_account(AccountState(ACCOUNT, REPORT, 1, 0, False, T0, T0))
    await store.flush()  # no error: the bad row is isolated
    assert [p.ticket for p in await store.positions(ACCOUNT)] == [1001]
    assert [e.kind for e in await store.events(ACCOUNT, 1001)] == ["position_opened"]
    assert await store.account_state(ACCOUNT) is not None
    assert store.refused_count == 1
    assert [(r.table, r.key) for r in store.refused_rows] == [
        ("positions", f"{ACCOUNT.login}/{ACCOUNT.server}/3003")
    ]
    store.put_position(_position(3003))  # a good row of the same position is written again
    assert [p.ticket for p in await store.positions(ACCOUNT)] == [1001, 3003]


def _deal(ticket: int, **changes: object) -> m.DealReport:
    base = m.DealReport(
        ticket=ticket,
        order=1001,
        position_id=1001,
        symbol="EURUSD",
        type=1,
        entry=1,
        volume=0.3,
        price=1.085,
        time_ms=T0 + ticket,
    )
    return msgspec.structs.replace(base, **changes)


def _trailing(ticket: int, **changes: object) -> TrailingState:
    base = TrailingState(
        ACCOUNT, ticket, "EURUSD", True, 200, 20, None, 1000, True, None, 0, None, None, T0, T0
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


YEAR_10000_MS = 253_402_300_800_000
OTHER = AccountKey(51234568, "Broker-Live")


def _put_bad_rows(store: SyncStore) -> set[tuple[str, str]]:
    """One row per table that the backend refuses for what it holds (review F10's triggers),
    each among good rows; returns their (table, key)."""
    acct = f"{ACCOUNT.login}/{ACCOUNT.server}"
    if store.url.get_backend_name() == "sqlite":  # typeless columns: only what cannot bind
        store.put_position(_position(3003, magic=2**63))
        store.put_position(_position(3004, opened_at_ms=YEAR_10000_MS))  # unreadable back
        store.put_deal(ACCOUNT, _deal(78, magic=2**63), None)
        store.put_margin_sample(ACCOUNT, msgspec.structs.replace(REPORT, equity=float("nan")), T0)
        store.put_event(PositionEvent(ACCOUNT, 2**63, "position_opened", None, "", T0))
        store.put_trailing(_trailing(1002, distance_points=2**63))
        return {
            ("positions", f"{acct}/3003"),
            ("positions", f"{acct}/3004"),
            ("deals", f"{acct}/78"),
            ("margin_level_history", f"{ACCOUNT} at {T0}"),
            ("position_events", f"{ACCOUNT} #{2**63} position_opened"),
            ("trailing_stops", f"{acct}/1002/{T0}"),
        }
    store.put_position(_position(3003, symbol="X" * 33))  # VARCHAR(32)
    store.put_deal(ACCOUNT, _deal(78, symbol="Y" * 33), None)
    store.put_account(
        AccountState(OTHER, msgspec.structs.replace(REPORT, leverage=2**31), 0, 0, False, T0, T0)
    )
    store.put_event(PositionEvent(ACCOUNT, 1001, "k" * 33, None, "", T0))  # VARCHAR(32)
    store.put_trailing(_trailing(1002, distance_points=2**31))  # INTEGER
    return {
        ("positions", f"{acct}/3003"),
        ("deals", f"{acct}/78"),
        ("account_states", f"{OTHER.login}/{OTHER.server}"),
        ("position_events", f"{ACCOUNT} #1001 {'k' * 33}"),
        ("trailing_stops", f"{acct}/1002/{T0}"),
    }


async def test_f10_every_table_s_refused_rows_are_isolated_among_many(store: SyncStore) -> None:
    """Refused rows of every table, spread over several parts of good rows: exactly they are
    dropped and reported (with their account and what was buffered); every good row lands,
    in order, and the next flush and every read work (each used to fail from then on)."""
    good_events = FLUSH_ROWS_MAX + 500
    store.put_position(_position())
    store.put_deal(ACCOUNT, _deal(77), "abc")
    store.put_account(AccountState(ACCOUNT, REPORT, 1, 0, False, T0, T0))
    store.put_trailing(_trailing(1001))
    for i in range(good_events // 2):
        store.put_event(PositionEvent(ACCOUNT, 1001, "position_modified", "abc", str(i), T0 + i))
    bad = _put_bad_rows(store)
    for i in range(good_events // 2, good_events):
        store.put_event(PositionEvent(ACCOUNT, 1001, "position_modified", "abc", str(i), T0 + i))
        store.put_margin_sample(ACCOUNT, REPORT, T0 + i)
    await store.flush()
    assert {(r.table, r.key) for r in store.refused_rows} == bad
    assert store.refused_count == len(bad)
    assert all(r.account in (ACCOUNT, OTHER) and r.value is not None for r in store.refused_rows)
    assert [p.ticket for p in await store.positions(ACCOUNT, open_only=False)] == [1001]
    assert [d["ticket"] for d in await store.deals(ACCOUNT)] == [77]
    assert await store.account_state(ACCOUNT) is not None
    assert [t.ticket for t in await store.trailing()] == [1001]
    events = await store.events(ACCOUNT, 1001)
    assert [e.detail for e in events] == [str(i) for i in range(good_events)]
    assert len(await store.margin_history(ACCOUNT)) == good_events - good_events // 2
    store.put_position(_position(3003))  # the same position, now storable: written
    assert [p.ticket for p in await store.positions(ACCOUNT)] == [1001, 3003]
    assert store.refused_count == len(bad)


async def test_f10_free_text_is_cut_to_its_column(store: SyncStore) -> None:
    """Broker comments and a finished trailing stop's reason longer than their column are
    kept, cut, rather than refused (PostgreSQL enforces the length)."""
    store.put_position(_position(comment="c" * 200))
    store.put_deal(ACCOUNT, _deal(77, comment="d" * 200), None)
    store.put_trailing(_trailing(1001, active=False, finished_reason="r" * 200))
    (stored,) = await store.positions(ACCOUNT)
    assert stored.comment == "c" * 64
    assert [d["comment"] for d in await store.deals(ACCOUNT)] == ["d" * 64]
    (trailing,) = await store.trailing(active_only=False)
    assert trailing.finished_reason == "r" * 64
    assert store.refused_count == 0


async def test_f10_buffers_are_bounded(store: SyncStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """While nothing is written (the database down), margin samples and position events
    stop growing at the cap: the oldest go, counted, instead of the bridge's memory."""
    monkeypatch.setattr(sync_store, "BUFFERED_MAX", 50)
    for i in range(60):
        store.put_event(PositionEvent(ACCOUNT, i, "position_opened", None, "", T0 + i))
        store.put_margin_sample(ACCOUNT, REPORT, T0 + i)
    assert store.dropped_count == 20
    events = await store.events(ACCOUNT)
    assert [e.ticket for e in events] == list(range(10, 60))
    assert len(await store.margin_history(ACCOUNT)) == 50


@pytest.mark.postgres
async def test_f10_while_the_database_is_locked_rows_are_kept_and_bounded(
    pg_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flush that cannot take a lock in time (a transient failure, as a lost connection or
    a failover) keeps its rows for the next flush rather than dropping them as refused; the
    margin samples and events kept meanwhile stay within the cap, the newest kept."""
    monkeypatch.setattr(sync_store, "BUFFERED_MAX", 50)
    url = make_url(pg_schema_url)
    options = url.query["options"]
    store = SyncStore(
        url.update_query_dict({"options": f"{options} -clock_timeout=200"}), flush_interval_s=3600
    )
    await store.open()
    locker = create_engine(pg_schema_url, poolclass=NullPool)
    try:
        with locker.connect() as conn:
            conn.execute(text("LOCK TABLE position_events IN ACCESS EXCLUSIVE MODE"))
            store.put_position(_position())
            for i in range(60):
                store.put_event(PositionEvent(ACCOUNT, i, "position_opened", None, "", T0 + i))
            with pytest.raises(OperationalError):
                await store.flush()
            for i in range(60, 80):  # buffered after the failure: merged with the kept rows
                store.put_event(PositionEvent(ACCOUNT, i, "position_opened", None, "", T0 + i))
            conn.rollback()
        await store.flush()
        assert store.refused_count == 0
        assert [p.ticket for p in await store.positions(ACCOUNT)] == [1001]
        assert [e.ticket for e in await store.events(ACCOUNT)] == list(range(30, 80))
        assert store.dropped_count == 30
    finally:
        locker.dispose()
        await store.close()


async def test_a_large_flush_is_written_in_parts_and_all_of_it_lands(store: SyncStore) -> None:
    count = FLUSH_ROWS_MAX * 2 + 7
    for ticket in range(1, count + 1):
        store.put_position(_position(ticket))
        store.put_event(PositionEvent(ACCOUNT, ticket, "position_opened", "abc", "", T0 + ticket))
    assert len([p for p in await store.positions(ACCOUNT)]) == count
    events = await store.events(ACCOUNT)
    assert [e.ticket for e in events] == list(range(1, count + 1))  # in order, once each
