"""The Journal contract, run against every backend (SQLite fast path, SQLAlchemy, PostgreSQL)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import pytest
from sqlalchemy import Engine, create_engine, insert, select, text
from sqlalchemy.pool import NullPool

from mtgate.domain.enums import OrderType
from mtgate.domain.orders import InvalidTransition, OrderStatus, Trigger
from mtgate.domain.records import OrderRecord
from mtgate.store import (
    DuplicateOrderError,
    HealthSample,
    Journal,
    JournalError,
    JournalNotOpenError,
    OrderEvent,
    StaleOrderError,
    TransitionMismatchError,
    UnreadableOrderError,
    UnstorableOrderError,
    rows,
)
from mtgate.store.models import bridge_health_metrics, execution_orders
from mtgate.store.rows import datetime_to_ms

from .conftest import T0, Backend, full_order, make_order

S, T = OrderStatus, Trigger


def created(at_ms: int) -> OrderEvent:
    return OrderEvent(None, S.NEW, None, "", at_ms)


async def test_submitted_order_reads_back_equal(journal: Journal) -> None:
    order = make_order()
    await journal.record_submitted(order)
    assert await journal.get(order.client_order_id) == order
    assert await journal.events(order.client_order_id) == [
        created(order.placed_at_ms),
        OrderEvent(S.NEW, S.SUBMITTED, T.SEND, "", order.updated_at_ms),
    ]


async def test_every_field_round_trips(journal: Journal) -> None:
    order = full_order(status=S.SUBMITTED)
    await journal.record_submitted(order)
    assert await journal.get(order.client_order_id) == order


@pytest.mark.parametrize("order_type", list(OrderType))
async def test_all_order_types_are_accepted(journal: Journal, order_type: OrderType) -> None:
    order = make_order(order_type=order_type)
    await journal.record_submitted(order)
    stored = await journal.get(order.client_order_id)
    assert stored is not None
    assert stored.order_type is order_type


async def test_order_id_is_stored_in_canonical_form(journal: Journal) -> None:
    raw = uuid.uuid4()
    order = make_order(order_id=str(raw).upper())
    await journal.record_submitted(order)
    stored = await journal.get(order.client_order_id)
    assert stored is not None
    assert stored.order_id == str(raw)


async def test_refused_order_is_journalled_rejected(journal: Journal) -> None:
    order = make_order(
        status=S.REJECTED,
        platform=None,  # refused before any terminal of its account ever connected
        rejection_code=None,
        rejection_name="NO_TERMINAL",
        rejection_reason="no terminal is ready for 5001234@Broker-Demo",
    )
    await journal.record_refused(order)
    assert await journal.get(order.client_order_id) == order
    assert await journal.events(order.client_order_id) == [
        created(order.placed_at_ms),
        OrderEvent(S.NEW, S.REJECTED, T.REFUSE, order.rejection_reason or "", order.updated_at_ms),
    ]


async def test_fill_updates_every_mutable_field(journal: Journal) -> None:
    order = make_order()
    await journal.record_submitted(order)
    filled = full_order(
        order_id=order.order_id,
        client_order_id=order.client_order_id,
        comment=order.comment,
        order_type=order.order_type,
        signal_id=None,
        magic=order.magic,
        volume=order.volume,
        sent_server_ms=order.sent_server_ms,  # written once, at creation
        status=S.FILLED,
    )
    await journal.record_transition(filled, S.SUBMITTED, T.FILL, "deal 3000000003")
    assert await journal.get(order.client_order_id) == filled
    events = await journal.events(order.client_order_id)
    assert events[-1] == OrderEvent(S.SUBMITTED, S.FILLED, T.FILL, "deal 3000000003", T0 + 6)
    assert len(events) == 3


async def test_pending_order_lifecycle_and_modify(journal: Journal) -> None:
    order = make_order(order_type=OrderType.BUY_LIMIT, requested_price=1.07)
    await journal.record_submitted(order)
    order.status, order.mt_order_id, order.updated_at_ms = S.PLACED, 77, T0 + 10
    await journal.record_transition(order, S.SUBMITTED, T.PLACE)
    order.stop_loss, order.requested_price, order.updated_at_ms = 1.06, 1.071, T0 + 20
    await journal.record_event(order, "modify: price 1.071, sl 1.06")
    order.stop_loss, order.updated_at_ms = None, T0 + 25  # a later modify removes the SL
    await journal.record_event(order, "modify: sl removed")
    order.status, order.fill_price, order.filled_at_ms, order.updated_at_ms = (
        S.FILLED,
        1.071,
        T0 + 30,
        T0 + 30,
    )
    await journal.record_transition(order, S.PLACED, T.FILL)
    assert await journal.get(order.client_order_id) == order
    assert await journal.events(order.client_order_id) == [
        created(T0),
        OrderEvent(S.NEW, S.SUBMITTED, T.SEND, "", T0 + 1),
        OrderEvent(S.SUBMITTED, S.PLACED, T.PLACE, "", T0 + 10),
        OrderEvent(S.PLACED, S.PLACED, None, "modify: price 1.071, sl 1.06", T0 + 20),
        OrderEvent(S.PLACED, S.PLACED, None, "modify: sl removed", T0 + 25),
        OrderEvent(S.PLACED, S.FILLED, T.FILL, "", T0 + 30),
    ]


async def _assert_unchanged(journal: Journal, stored: OrderRecord, n_events: int) -> None:
    assert await journal.get(stored.client_order_id) == stored
    assert len(await journal.events(stored.client_order_id)) == n_events


async def test_transition_outside_the_table_writes_nothing(journal: Journal) -> None:
    order = make_order()
    await journal.record_submitted(order)
    before = dataclasses.replace(order)
    changed = dataclasses.replace(order, status=S.CANCELLED, updated_at_ms=T0 + 9)
    with pytest.raises(InvalidTransition, match="no transition from 'submitted' on 'cancel'"):
        await journal.record_transition(changed, S.SUBMITTED, T.CANCEL)
    await _assert_unchanged(journal, before, 2)


async def test_status_not_matching_the_trigger_writes_nothing(journal: Journal) -> None:
    order = make_order()
    await journal.record_submitted(order)
    before = dataclasses.replace(order)
    wrong = dataclasses.replace(order, status=S.PLACED)
    with pytest.raises(TransitionMismatchError, match="leads to 'filled'") as info:
        await journal.record_transition(wrong, S.SUBMITTED, T.FILL)
    assert isinstance(info.value, InvalidTransition)
    await _assert_unchanged(journal, before, 2)


async def test_stale_previous_status_is_refused(journal: Journal) -> None:
    order = make_order()
    await journal.record_submitted(order)
    mine = dataclasses.replace(order)
    order.status, order.updated_at_ms = S.FILLED, T0 + 5  # another writer got there first
    await journal.record_transition(order, S.SUBMITTED, T.FILL)
    mine.status = S.UNKNOWN
    with pytest.raises(StaleOrderError, match="expected in status 'submitted' but it is 'filled'"):
        await journal.record_transition(mine, S.SUBMITTED, T.LOSE)
    await _assert_unchanged(journal, order, 3)


async def test_record_event_on_a_changed_status_is_refused(journal: Journal) -> None:
    order = make_order()
    await journal.record_submitted(order)
    mine = dataclasses.replace(order)
    order.status = S.UNKNOWN
    await journal.record_transition(order, S.SUBMITTED, T.LOSE)
    mine.stop_loss = 1.0
    with pytest.raises(StaleOrderError) as info:
        await journal.record_event(mine, "modify")
    assert (info.value.expected, info.value.actual) == (S.SUBMITTED, S.UNKNOWN)
    await _assert_unchanged(journal, order, 3)


async def test_transition_of_an_unknown_order_is_refused(journal: Journal) -> None:
    order = make_order(status=S.FILLED)
    with pytest.raises(StaleOrderError, match="not in the journal") as info:
        await journal.record_transition(order, S.SUBMITTED, T.FILL)
    assert info.value.actual is None
    assert await journal.get(order.client_order_id) is None
    assert await journal.events(order.client_order_id) == []


async def test_transition_with_another_order_id_is_refused(journal: Journal) -> None:
    order = make_order()
    await journal.record_submitted(order)
    impostor = dataclasses.replace(order, order_id=str(uuid.uuid4()), status=S.FILLED)
    with pytest.raises(StaleOrderError):
        await journal.record_transition(impostor, S.SUBMITTED, T.FILL)
    await _assert_unchanged(journal, order, 2)


async def test_duplicate_client_order_id_is_refused(journal: Journal) -> None:
    order = make_order()
    await journal.record_submitted(order)
    again = make_order(client_order_id=order.client_order_id, volume=5.0)
    with pytest.raises(DuplicateOrderError, match=order.client_order_id):
        await journal.record_submitted(again)
    await _assert_unchanged(journal, order, 2)


async def test_duplicate_order_id_is_refused(journal: Journal) -> None:
    order = make_order()
    await journal.record_submitted(order)
    again = make_order(order_id=order.order_id)
    with pytest.raises(DuplicateOrderError):
        await journal.record_refused(dataclasses.replace(again, status=S.REJECTED))
    assert await journal.get(again.client_order_id) is None
    await _assert_unchanged(journal, order, 2)


async def test_submit_requires_the_submitted_status(journal: Journal) -> None:
    order = make_order(status=S.NEW)
    with pytest.raises(TransitionMismatchError):
        await journal.record_submitted(order)
    with pytest.raises(TransitionMismatchError):
        await journal.record_refused(order)
    assert await journal.get(order.client_order_id) is None


async def test_order_id_must_be_a_uuid(journal: Journal) -> None:
    order = make_order(order_id="not-a-uuid")
    with pytest.raises(ValueError, match="is not a UUID"):
        await journal.record_submitted(order)
    assert await journal.get(order.client_order_id) is None


async def test_constraint_violation_writes_nothing(journal: Journal) -> None:
    order = make_order(retry_count=-1)  # CHECK (retry_count >= 0)
    with pytest.raises(Exception, match=r"(?i)check") as info:
        await journal.record_submitted(order)
    assert not isinstance(info.value, JournalError)  # a driver error, not a duplicate
    assert await journal.get(order.client_order_id) is None
    assert await journal.events(order.client_order_id) == []


async def test_find_by_ticket(journal: Journal) -> None:
    order = make_order()
    await journal.record_submitted(order)
    order.status, order.mt_order_id = S.FILLED, 9_000_000_001
    await journal.record_transition(order, S.SUBMITTED, T.FILL)
    login, server = order.account_login, order.account_server
    assert await journal.find_by_ticket(login, server, 9_000_000_001) == order
    assert await journal.find_by_ticket(login, "Other-Server", 9_000_000_001) is None
    assert await journal.find_by_ticket(login + 1, server, 9_000_000_001) is None
    assert await journal.find_by_ticket(login, server, 9_000_000_002) is None


async def test_list_orders_filters_and_orders_newest_first(journal: Journal) -> None:
    a = make_order(placed_at_ms=T0)
    b = make_order(placed_at_ms=T0 + 1000)
    c = make_order(placed_at_ms=T0 + 2000, account_login=7)
    for order in (a, b, c):
        await journal.record_submitted(order)
    b.status = S.UNKNOWN
    await journal.record_transition(b, S.SUBMITTED, T.LOSE)

    def ids(orders: list[OrderRecord]) -> list[str]:
        return [o.client_order_id for o in orders]

    assert ids(await journal.list_orders()) == ids([c, b, a])
    assert ids(await journal.list_orders(limit=2)) == ids([c, b])
    assert ids(await journal.list_orders(account_login=a.account_login)) == ids([b, a])
    assert await journal.list_orders(statuses={S.UNKNOWN, S.PLACED}) == [b]
    assert ids(await journal.list_orders(account_login=7, statuses=[S.SUBMITTED])) == ids([c])
    assert await journal.list_orders(statuses=()) == []
    with pytest.raises(ValueError, match="limit"):
        await journal.list_orders(limit=0)


async def test_events_of_an_unknown_order_are_empty(journal: Journal) -> None:
    assert await journal.events("nope") == []
    assert await journal.get("nope") is None


async def test_record_health(journal: Journal, backend: Backend) -> None:
    sample = HealthSample(
        terminal_id="term-1",
        connection_status="ready",
        recorded_at_ms=T0 + 1000,
        account_login=5_001_234,
        account_server="Broker-Demo",
        last_heartbeat_ms=T0 + 900,
        execution_latency_ms=0.35,
        rejection_rate=1.5,
        sync_delay_ms=12.25,
        heartbeat_rtt_ms=0.75,
        latency_p50_ms=1.25,
        latency_p99_ms=40.5,
        disconnects=3,
        flaps=2,
        snapshot_age_ms=950.0,
        ready=True,
    )
    await journal.record_health(sample)
    await journal.record_health(HealthSample("term-2", "disconnected", T0 + 2000))
    engine = create_engine(backend.url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            table = bridge_health_metrics
            found = conn.execute(select(table).order_by(table.c.recorded_at)).mappings().all()
    finally:
        engine.dispose()
    assert len(found) == 2
    first = found[0]
    assert first["terminal_id"] == "term-1"
    assert (first["account_login"], first["account_server"]) == (5_001_234, "Broker-Demo")
    assert first["connection_status"] == "ready"
    assert datetime_to_ms(first["recorded_at"]) == T0 + 1000
    assert datetime_to_ms(first["last_heartbeat"]) == T0 + 900
    assert (first["execution_latency_ms"], first["rejection_rate"], first["sync_delay_ms"]) == (
        0.35,
        1.5,
        12.25,
    )
    assert (first["heartbeat_rtt_ms"], first["latency_p50_ms"], first["latency_p99_ms"]) == (
        0.75,
        1.25,
        40.5,
    )
    assert (first["disconnects"], first["flaps"], first["snapshot_age_ms"]) == (3, 2, 950.0)
    assert first["ready"] is True
    assert found[1]["last_heartbeat"] is None
    assert (found[1]["ready"], found[1]["disconnects"], found[1]["latency_p99_ms"]) == (
        None,
        None,
        None,
    )
    assert isinstance(first["metric_id"], uuid.UUID)


async def test_orders_survive_a_restart(backend: Backend) -> None:
    order = make_order()
    first = backend.make()
    await first.open()
    await first.record_submitted(order)
    await first.close()
    second = backend.make()  # migrations run again: a no-op
    await second.open()
    try:
        assert await second.get(order.client_order_id) == order
    finally:
        await second.close()


async def test_calls_need_an_open_journal(backend: Backend) -> None:
    journal = backend.make()
    with pytest.raises(JournalNotOpenError):
        await journal.get("x")
    await journal.open()
    with pytest.raises(JournalError, match="already open"):
        await journal.open()
    await journal.close()
    with pytest.raises(JournalNotOpenError):
        await journal.record_submitted(make_order())
    await journal.close()  # closing twice is harmless


# --- Review 2026-12 findings (each test fails on the code at bde1687) -----------------------


def _engine(backend: Backend) -> Engine:
    return create_engine(backend.url, poolclass=NullPool)


async def test_server_time_at_send_is_journalled(journal: Journal, backend: Backend) -> None:
    order = make_order(sent_server_ms=T0 + 7_200_000)
    await journal.record_submitted(order)
    order.status = S.FILLED
    await journal.record_transition(order, S.SUBMITTED, T.FILL)
    assert await journal.get(order.client_order_id) == order
    engine = _engine(backend)
    try:
        with engine.connect() as conn:
            stored = conn.execute(
                select(execution_orders.c.server_time_at_send).where(
                    execution_orders.c.client_order_id == order.client_order_id
                )
            ).scalar_one()
    finally:
        engine.dispose()
    assert datetime_to_ms(stored) == T0 + 7_200_000
    unseen = make_order()  # no server time seen yet
    await journal.record_submitted(unseen)
    stored_unseen = await journal.get(unseen.client_order_id)
    assert stored_unseen is not None
    assert stored_unseen.sent_server_ms is None


async def test_trade_deadline_is_journalled(journal: Journal, backend: Backend) -> None:
    """The deadline is what lets a standby prove the order absent after a bridge restart."""
    order = make_order(deadline_at_ms=T0 + 10_000)
    await journal.record_submitted(order)
    order.status = S.UNKNOWN
    await journal.record_transition(order, S.SUBMITTED, T.LOSE)
    assert await journal.get(order.client_order_id) == order
    engine = _engine(backend)
    try:
        with engine.connect() as conn:
            stored = conn.execute(
                select(execution_orders.c.trade_deadline_at).where(
                    execution_orders.c.client_order_id == order.client_order_id
                )
            ).scalar_one()
    finally:
        engine.dispose()
    assert datetime_to_ms(stored) == T0 + 10_000
    plain = make_order()  # a terminal without the feature: no deadline
    await journal.record_submitted(plain)
    stored_plain = await journal.get(plain.client_order_id)
    assert stored_plain is not None and stored_plain.deadline_at_ms is None


async def test_f2_quarantine_is_empty_when_nothing_failed(journal: Journal) -> None:
    order = make_order()
    await journal.record_submitted(order)
    order.status = S.FILLED
    await journal.record_transition(order, S.SUBMITTED, T.FILL)
    assert await journal.quarantined() == []
    assert journal.quarantine_count == 0


async def test_f9_refusal_while_intent_unfolded_is_duplicate(journal: Journal) -> None:
    """Two requests with one client id in one loop turn: the one being sent keeps the id."""
    sent = make_order()
    refused = make_order(
        client_order_id=sent.client_order_id,
        status=S.REJECTED,
        rejection_reason="stops too close",
    )
    submitting = asyncio.create_task(journal.record_submitted(sent))
    await asyncio.sleep(0)  # the submit is under way: its intent is not committed yet
    with pytest.raises(DuplicateOrderError):
        await journal.record_refused(refused)
    await submitting
    assert await journal.get(sent.client_order_id) == sent
    sent.status = S.FILLED  # the sent order's later changes land on its own row
    await journal.record_transition(sent, S.SUBMITTED, T.FILL)
    assert await journal.get(sent.client_order_id) == sent
    assert await journal.quarantined() == []


async def test_f8_cancelled_caller_does_not_cancel_the_batch(journal: Journal) -> None:
    """One caller cancelled while its submit waits (a shared group commit on SQLite, a queued
    call in the worker on PostgreSQL): the others are unaffected, and its own order is
    journalled SUBMITTED, known to the journal, its id taken."""
    first, cancelled, last = make_order(), make_order(), make_order()
    tasks = [asyncio.create_task(journal.record_submitted(o)) for o in (first, cancelled, last)]
    await asyncio.sleep(0)  # every submit is waiting for its commit
    tasks[1].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert done[0] is None
    assert isinstance(done[1], asyncio.CancelledError)
    assert done[2] is None
    for order in (first, cancelled, last):
        assert await journal.get(order.client_order_id) == order
    with pytest.raises(DuplicateOrderError):
        await journal.record_submitted(make_order(client_order_id=cancelled.client_order_id))
    cancelled.status = S.UNKNOWN  # the execution layer settles it later
    await journal.record_transition(cancelled, S.SUBMITTED, T.LOSE)
    assert await journal.get(cancelled.client_order_id) == cancelled


async def test_f8_get_right_after_a_cancelled_write_sees_it(journal: Journal) -> None:
    """A fill journalled in memory must reach the journal even if its caller is cancelled
    while the write waits behind another (PostgreSQL's single worker thread)."""
    ahead, behind = make_order(), make_order()
    for order in (ahead, behind):
        await journal.record_submitted(order)
        order.status = S.FILLED
    tasks = [
        asyncio.create_task(journal.record_transition(o, S.SUBMITTED, T.FILL))
        for o in (ahead, behind)
    ]
    await asyncio.sleep(0)
    tasks[1].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert await journal.get(behind.client_order_id) == behind
    assert await journal.get(ahead.client_order_id) == ahead


FAR_MS = 253_402_300_800_000  # 10000-01-01 00:00:00 UTC


def _set_far_expiration(backend: Backend, client_order_id: str) -> None:
    """What another writer (or an earlier version) may have left: a year-10000 expiration."""
    engine = _engine(backend)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "sqlite":
                value, sql = "10000-01-01 00:00:00.000000", ":v"
            else:
                value, sql = "10000-01-01 00:00:00+00", "CAST(:v AS TIMESTAMP WITH TIME ZONE)"
            conn.execute(
                text(f"UPDATE execution_orders SET expiration = {sql} WHERE client_order_id = :c"),
                {"v": value, "c": client_order_id},
            )
    finally:
        engine.dispose()


async def test_f3_far_row_does_not_stop_list_orders(journal: Journal, backend: Backend) -> None:
    older = make_order(placed_at_ms=T0)
    far = make_order(placed_at_ms=T0 + 1000, order_type=OrderType.BUY_LIMIT, status=S.SUBMITTED)
    newer = make_order(placed_at_ms=T0 + 2000)
    for order in (older, far, newer):
        await journal.record_submitted(order)
    assert await journal.get(far.client_order_id) == far  # written, and flushed
    _set_far_expiration(backend, far.client_order_id)

    listed = await journal.list_orders(account_login=far.account_login, statuses={S.SUBMITTED})
    ids = [o.client_order_id for o in listed]
    if backend.name == "sqlite":  # the fast path reads every year it can write
        assert ids == [newer.client_order_id, far.client_order_id, older.client_order_id]
        assert listed[1].expiration_ms == FAR_MS
        assert journal.unreadable_rows == 0
    else:  # SQLAlchemy's types and psycopg stop at 9999: the row is left out, and counted
        assert ids == [newer.client_order_id, older.client_order_id]
        assert journal.unreadable_rows == 1
        with pytest.raises(UnreadableOrderError, match=far.client_order_id) as info:
            await journal.get(far.client_order_id)
        assert isinstance(info.value, JournalError)
        assert info.value.client_order_id == far.client_order_id
    assert await journal.get(newer.client_order_id) == newer


async def test_f3_time_the_journal_cannot_store_is_a_clear_error(journal: Journal) -> None:
    order = make_order(order_type=OrderType.BUY_LIMIT, expiration_ms=2**70)
    with pytest.raises(UnstorableOrderError, match="expiration_ms") as info:
        await journal.record_submitted(order)
    assert isinstance(info.value, JournalError)
    assert info.value.field == "expiration_ms"
    assert await journal.get(order.client_order_id) is None
    assert await journal.quarantined() == []
    # A modify to such a time is refused too, and the order is left as it was.
    placed = make_order(order_type=OrderType.BUY_LIMIT)
    await journal.record_submitted(placed)
    changed = dataclasses.replace(placed, expiration_ms=2**70)
    with pytest.raises(UnstorableOrderError, match="expiration_ms"):
        await journal.record_event(changed, "modify: expiration")
    await _assert_unchanged(journal, placed, 2)


def _bulk_insert(backend: Backend, orders: list[OrderRecord]) -> None:
    """Many rows at once (a journal writes them one order at a time)."""
    engine = _engine(backend)
    try:
        with engine.begin() as conn:
            values = [
                dict(
                    zip(
                        rows.ORDER_COLUMNS,
                        rows.order_row(o, rows.canonical_uuid(o.order_id), rows.ms_to_datetime),
                        strict=True,
                    )
                )
                for o in orders
            ]
            conn.execute(insert(execution_orders), values)
    finally:
        engine.dispose()


async def test_f18_list_orders_by_server_without_limit(journal: Journal, backend: Backend) -> None:
    """Reconciliation reads every unfinished order of one account (login and server)."""
    login = 6_000_001
    mine = [
        make_order(
            account_login=login,
            account_server="Broker-Live",
            placed_at_ms=T0 + i,
            status=S.PLACED if i % 2 else S.SUBMITTED,
        )
        for i in range(1001)
    ]
    finished = make_order(
        account_login=login, account_server="Broker-Live", placed_at_ms=T0 + 5000, status=S.FILLED
    )
    same_login_elsewhere = [
        make_order(account_login=login, account_server="Broker-Demo", placed_at_ms=T0 + 9000 + i)
        for i in range(3)
    ]
    _bulk_insert(backend, [*mine, finished, *same_login_elsewhere])
    unfinished = {S.SUBMITTED, S.PLACED, S.UNKNOWN}

    everything = await journal.list_orders(
        account_login=login, account_server="Broker-Live", statuses=unfinished, limit=None
    )
    assert [o.client_order_id for o in everything] == [o.client_order_id for o in reversed(mine)]
    assert everything[-1] == mine[0]  # the oldest, which a limit of 1000 would have cut
    capped = await journal.list_orders(
        account_login=login, account_server="Broker-Live", statuses=unfinished
    )
    assert len(capped) == 1000
    demo = await journal.list_orders(account_login=login, account_server="Broker-Demo")
    assert [o.client_order_id for o in demo] == [
        o.client_order_id for o in reversed(same_login_elsewhere)
    ]
    assert await journal.list_orders(account_server="Nowhere", limit=None) == []
    with pytest.raises(ValueError, match="limit"):
        await journal.list_orders(limit=0)
