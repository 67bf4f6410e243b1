"""The PostgreSQL journal's own behaviour (the contract suite covers what every journal does):
group commit, answers written behind, and what each failure does to a batch."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest
import structlog.testing
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from mtgate.domain.orders import OrderStatus, Trigger
from mtgate.events.model import Entry
from mtgate.store import pg_journal
from mtgate.store.pg_journal import APPLICATION_NAME, PgJournal
from mtgate.store.values import DuplicateOrderError, JournalError, StaleOrderError
from tests.integration.store.conftest import make_order

pytestmark = pytest.mark.postgres


@pytest.fixture
async def journal(pg_schema_url: str) -> AsyncIterator[PgJournal]:
    j = PgJournal(pg_schema_url)
    await j.open()
    try:
        yield j
    finally:
        await j.close()


def _sql(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(sql), params)
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()


def _finishes_without_waiting(coro: Coroutine[Any, Any, None]) -> bool:
    """True if the coroutine ran to its end without once yielding to the event loop."""
    try:
        coro.send(None)
    except StopIteration:
        return True
    coro.close()
    return False


async def test_concurrent_intents_share_a_commit(journal: PgJournal) -> None:
    orders = [make_order() for _ in range(20)]
    before = journal.batches
    await asyncio.gather(*(journal.record_submitted(o) for o in orders))
    assert journal.batches - before <= 3  # one statement takes what queued meanwhile
    for order in orders:
        assert await journal.get(order.client_order_id) == order


async def test_an_answer_is_written_behind_and_read_back(
    journal: PgJournal, pg_schema_url: str
) -> None:
    order = make_order()
    await journal.record_submitted(order)
    order.status, order.fill_price, order.mt_order_id = OrderStatus.FILLED, 1.08515, 77
    # The caller never waits for the database: checked now, queued, returned.
    assert _finishes_without_waiting(
        journal.record_transition(order, OrderStatus.SUBMITTED, Trigger.FILL)
    )
    assert await journal.get(order.client_order_id) == order  # a read runs after it
    trail = [(e.from_status, e.to_status) for e in await journal.events(order.client_order_id)]
    assert trail[-1] == (OrderStatus.SUBMITTED, OrderStatus.FILLED)
    stored = _sql(pg_schema_url, "SELECT order_status FROM execution_orders")
    assert stored == [("filled",)]


async def test_a_stale_answer_is_refused_at_once(journal: PgJournal) -> None:
    order = make_order()
    await journal.record_submitted(order)
    order.status = OrderStatus.FILLED
    await journal.record_transition(order, OrderStatus.SUBMITTED, Trigger.FILL)
    again = dataclasses.replace(order, status=OrderStatus.UNKNOWN)
    with pytest.raises(StaleOrderError):
        await journal.record_transition(again, OrderStatus.SUBMITTED, Trigger.LOSE)


async def test_a_duplicate_in_a_batch_fails_alone(journal: PgJournal) -> None:
    finished = make_order()
    await journal.record_submitted(finished)
    finished.status = OrderStatus.FILLED
    await journal.record_transition(
        finished, OrderStatus.SUBMITTED, Trigger.FILL
    )  # no longer in memory
    others = [make_order() for _ in range(4)]
    reused = make_order(client_order_id=finished.client_order_id)
    errors_before = journal.write_errors
    done = await asyncio.gather(
        *(journal.record_submitted(o) for o in [*others[:2], reused, *others[2:]]),
        return_exceptions=True,
    )
    assert isinstance(done[2], DuplicateOrderError)
    assert [d for i, d in enumerate(done) if i != 2] == [None] * 4
    assert journal.write_errors == errors_before + 1  # the batch was refused, then split
    for order in others:
        assert await journal.get(order.client_order_id) == order
    assert await journal.get(finished.client_order_id) == finished


async def test_a_change_that_misses_its_guard_is_quarantined_whole(
    journal: PgJournal, pg_schema_url: str
) -> None:
    moved, fine = make_order(), make_order()
    for order in (moved, fine):
        await journal.record_submitted(order)
    # Another writer settles one order behind this journal's back.
    _sql(
        pg_schema_url,
        "UPDATE execution_orders SET order_status = 'cancelled' WHERE client_order_id = :c",
        c=moved.client_order_id,
    )
    moved.status = fine.status = OrderStatus.FILLED
    await journal.record_transition(moved, OrderStatus.SUBMITTED, Trigger.FILL)
    await journal.record_transition(fine, OrderStatus.SUBMITTED, Trigger.FILL)
    assert await journal.get(fine.client_order_id) == fine  # the rest of the batch landed
    kept = await journal.get(moved.client_order_id)
    assert (
        kept is not None and kept.status is OrderStatus.CANCELLED
    )  # the other writer's row stands
    events = await journal.events(moved.client_order_id)
    assert OrderStatus.FILLED not in {
        e.to_status for e in events
    }  # nothing of the change was written
    [item] = await journal.quarantined()
    assert (item.client_order_id, item.kind) == (moved.client_order_id, "write")
    assert b'"order_status":"filled"' in item.payload
    assert journal.quarantine_count == 1


async def test_a_lost_connection_keeps_the_answers_behind(
    journal: PgJournal, pg_schema_url: str
) -> None:
    first = make_order()
    await journal.record_submitted(first)
    killed = _sql(
        pg_schema_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = :name AND pid <> pg_backend_pid()",
        name=APPLICATION_NAME,
    )
    assert killed == [(True,)]
    first.status = OrderStatus.FILLED
    await journal.record_transition(
        first, OrderStatus.SUBMITTED, Trigger.FILL
    )  # fails in the writer: kept
    second = make_order()
    for _ in range(50):  # the kept answer is written with the next batch, after a reconnect
        try:
            await journal.record_submitted(second)
            break
        except Exception:
            await asyncio.sleep(0.1)
    assert journal.write_errors >= 1
    assert await journal.get(first.client_order_id) == first
    assert await journal.get(second.client_order_id) == second


async def test_an_intent_while_the_database_is_gone_fails_and_is_not_sent(
    journal: PgJournal, pg_schema_url: str
) -> None:
    _sql(
        pg_schema_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = :name AND pid <> pg_backend_pid()",
        name=APPLICATION_NAME,
    )
    order = make_order()
    with pytest.raises(JournalError, match="unreachable"):
        await journal.record_submitted(order)
    await journal.record_submitted(order)  # the id was released: the next try reconnects
    assert await journal.get(order.client_order_id) == order


async def test_non_finite_floats_are_kept_not_nulled(journal: PgJournal) -> None:
    order = make_order()
    await journal.record_submitted(order)
    order.status = OrderStatus.FILLED
    order.slippage_points, order.execution_time_ms = math.inf, -math.inf
    order.fill_price = 1.1
    await journal.record_transition(order, OrderStatus.SUBMITTED, Trigger.FILL)
    read = await journal.get(order.client_order_id)
    assert read is not None
    assert (read.slippage_points, read.execution_time_ms) == (math.inf, -math.inf)
    nan = make_order(requested_price=math.nan)
    await journal.record_submitted(nan)
    back = await journal.get(nan.client_order_id)
    assert back is not None and back.requested_price is not None
    assert math.isnan(back.requested_price)


async def test_close_writes_what_was_queued(pg_schema_url: str) -> None:
    journal = PgJournal(pg_schema_url)
    await journal.open()
    order = make_order()
    await journal.record_submitted(order)
    order.status = OrderStatus.FILLED
    await journal.record_transition(order, OrderStatus.SUBMITTED, Trigger.FILL)
    await journal.close()  # nothing awaited the answer: close must still write it
    stored = _sql(pg_schema_url, "SELECT order_status FROM execution_orders")
    assert stored == [("filled",)]


async def test_a_batch_that_cannot_even_be_encoded_fails_only_its_bad_item(
    journal: PgJournal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Containment: whatever breaks in the writer (here the encoder) fails the item that
    breaks it; the batch's other items land and the writer goes on."""
    real = pg_journal._encode

    def encode(data: object) -> bytes:
        if "poison" in repr(data):
            raise TypeError("cannot encode this value")
        return real(data)

    monkeypatch.setattr(pg_journal, "_encode", encode)
    good = [make_order() for _ in range(3)]
    bad = make_order(comment="mg:poison")
    done = await asyncio.gather(
        *(journal.record_submitted(o) for o in [good[0], bad, *good[1:]]),
        return_exceptions=True,
    )
    assert isinstance(done[1], TypeError)
    assert [done[0], *done[2:]] == [None, None, None]
    for order in good:
        assert await journal.get(order.client_order_id) == order
    assert await journal.get(bad.client_order_id) is None
    monkeypatch.setattr(pg_journal, "_encode", real)
    await journal.record_submitted(bad)  # its id was released
    assert await journal.get(bad.client_order_id) == bad


async def test_racing_answers_of_an_order_not_in_memory_land_once(pg_schema_url: str) -> None:
    """After a restart the journal holds no status in memory: a fill and a rejection of the
    same order, recorded at once, cannot both land; the other caller is told it is stale."""
    first = PgJournal(pg_schema_url)
    await first.open()
    order = make_order()
    await first.record_submitted(order)
    await first.close()
    journal = PgJournal(pg_schema_url)
    await journal.open()
    try:
        filled = dataclasses.replace(order, status=OrderStatus.FILLED, fill_price=1.1)
        rejected = dataclasses.replace(order, status=OrderStatus.REJECTED, rejection_code=10006)
        done = await asyncio.gather(
            journal.record_transition(filled, OrderStatus.SUBMITTED, Trigger.FILL),
            journal.record_transition(rejected, OrderStatus.SUBMITTED, Trigger.REJECT),
            return_exceptions=True,
        )
        assert done[0] is None and isinstance(done[1], StaleOrderError)
        assert await journal.get(order.client_order_id) == filled
        moves = [(e.from_status, e.to_status) for e in await journal.events(order.client_order_id)]
        assert moves[-1] == (OrderStatus.SUBMITTED, OrderStatus.FILLED)
        assert (OrderStatus.SUBMITTED, OrderStatus.REJECTED) not in moves
        assert await journal.quarantined() == []
    finally:
        await journal.close()


async def test_a_cancelled_answer_of_an_order_not_in_memory_still_lands(
    pg_schema_url: str,
) -> None:
    first = PgJournal(pg_schema_url)
    await first.open()
    order = make_order()
    await first.record_submitted(order)
    await first.close()
    journal = PgJournal(pg_schema_url)
    await journal.open()
    try:
        order.status = OrderStatus.FILLED
        task = asyncio.create_task(
            journal.record_transition(order, OrderStatus.SUBMITTED, Trigger.FILL)
        )
        await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert await journal.get(order.client_order_id) == order
    finally:
        await journal.close()


async def test_while_answers_are_held_reads_refuse_rather_than_lie(
    journal: PgJournal, pg_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's database goes read-only (a failover to a demoted primary): the answer is
    kept, not quarantined, and a read says the journal cannot be read rather than return the
    order as it was before the answer; once writable, the answer lands."""
    order = make_order()
    await journal.record_submitted(order)
    settings = _writer_goes_read_only(pg_schema_url, monkeypatch)
    order.status = OrderStatus.FILLED
    await journal.record_transition(order, OrderStatus.SUBMITTED, Trigger.FILL)
    with pytest.raises(JournalError, match="cannot be read until"):
        await journal.get(order.client_order_id)
    assert journal.quarantine_count == 0
    monkeypatch.setattr(pg_journal, "_WRITER_SETTINGS", settings)
    _terminate_writer(pg_schema_url)
    for _ in range(50):  # kept answers are tried again about once a second
        with contextlib.suppress(JournalError):
            if await journal.get(order.client_order_id) == order:
                break
        await asyncio.sleep(0.1)
    assert await journal.get(order.client_order_id) == order
    assert await journal.quarantined() == []


def _writer_goes_read_only(url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The writer's next connection is read only (it is cut now, so it reconnects); returns
    the settings to put back."""
    settings = pg_journal._WRITER_SETTINGS
    monkeypatch.setattr(
        pg_journal, "_WRITER_SETTINGS", settings + "; SET default_transaction_read_only = on"
    )
    _terminate_writer(url)
    return settings


def _terminate_writer(url: str) -> None:
    _sql(
        url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = :name AND pid <> pg_backend_pid()",
        name=APPLICATION_NAME,
    )


async def test_close_names_what_it_could_not_write(
    pg_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = PgJournal(pg_schema_url)
    await journal.open()
    order = make_order()
    await journal.record_submitted(order)
    _writer_goes_read_only(pg_schema_url, monkeypatch)
    order.status = OrderStatus.FILLED
    await journal.record_transition(order, OrderStatus.SUBMITTED, Trigger.FILL)
    entry = Entry("ev-1", "terminal.connected", "k", None, None, "t1", b"{}", 1, 1)
    journal.record_outbox(entry)
    with structlog.testing.capture_logs() as logs:
        await journal.close()
    [lost] = [e for e in logs if e["event"].startswith("journal closed with writes")]
    assert lost["client_order_ids"] == [order.client_order_id]
    assert lost["event_ids"] == ["ev-1"]
