"""The Journal contract, run against every backend (SQLite fast path, SQLAlchemy, PostgreSQL)."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from sqlalchemy import create_engine, select
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
)
from mtgate.store.models import bridge_health_metrics
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
    assert found[1]["last_heartbeat"] is None
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
