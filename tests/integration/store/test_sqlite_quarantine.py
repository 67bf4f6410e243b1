"""The SQLite journal's write-behind under failure: nothing is dropped, nothing stays locked.

Review 2026-12, F2 (a poison value in a flush), F9 (a fold whose client id another writer
took), F3 (rows the reader cannot read), F8 (a failed group commit). Each test that names a
finding fails on the code at bde1687.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from mtgate.domain.enums import OrderType
from mtgate.domain.orders import OrderStatus, Trigger
from mtgate.domain.records import OrderRecord
from mtgate.store import DuplicateOrderError, Journal, UnreadableOrderError, queries, rows
from mtgate.store.models import execution_orders
from mtgate.store.sql_journal import SqlJournal
from mtgate.store.sqlite_journal import SqliteJournal

from .conftest import T0, make_order

S, T = OrderStatus, Trigger


def _count(path: Path, table: str, where: str = "1") -> int:
    with sqlite3.connect(path) as raw:
        found: int = raw.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()[0]
    return found


def _write_lock_is_free(path: Path) -> bool:
    """True unless a connection (the journal's) holds the write lock: an open transaction."""
    raw = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        raw.close()


async def _eventually(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.01)


async def test_f2_flush_overflow_is_quarantined_and_the_rest_lands(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    journal = SqliteJournal(path)
    await journal.open()
    good, poison, other = make_order(), make_order(deviation_points=2**63), make_order()
    # One group commit: msgpack takes the uint64, so the poison intent is durable (and sent).
    await asyncio.gather(*(journal.record_submitted(o) for o in (good, poison, other)))
    good.status, good.mt_order_id = S.FILLED, 9_001
    await journal.record_transition(good, S.SUBMITTED, T.FILL)

    # The write-behind flush runs as a loop callback, on its own.
    await _eventually(lambda: _count(path, "journal_intents") == 0)
    assert _write_lock_is_free(path)
    assert _count(path, "execution_orders") == 2
    assert await journal.get(good.client_order_id) == good
    assert await journal.get(other.client_order_id) == other
    assert await journal.get(poison.client_order_id) is None
    [held] = await journal.quarantined()
    assert (held.client_order_id, held.kind) == (poison.client_order_id, "intent")
    assert "OverflowError" in held.error
    document = json.loads(held.payload)
    assert document["order"]["deviation_points"] == 2**63
    assert document["order"]["order_id"] == poison.order_id.replace("-", "")
    assert [e["to_status"] for e in document["events"]] == ["new", "submitted"]
    assert journal.quarantine_count == 1

    # The sent order's later changes are kept too, and its id stays taken.
    poison.status = S.UNKNOWN
    await journal.record_transition(poison, S.SUBMITTED, T.LOSE)
    held_intent, held_write = await journal.quarantined()
    assert held_intent == held
    assert (held_write.client_order_id, held_write.kind) == (poison.client_order_id, "write")
    change = json.loads(held_write.payload)
    assert change["changes"]["order_status"] == "unknown"
    assert change["where"]["order_status"] == "submitted"
    with pytest.raises(DuplicateOrderError):
        await journal.record_submitted(make_order(client_order_id=poison.client_order_id))
    await journal.close()

    again = SqliteJournal(path)
    await again.open()
    try:
        assert len(await again.quarantined()) == 2
        assert await again.get(good.client_order_id) == good
        with pytest.raises(DuplicateOrderError):
            await again.record_submitted(make_order(client_order_id=poison.client_order_id))
        fresh = make_order()
        await again.record_submitted(fresh)
        assert await again.get(fresh.client_order_id) == fresh
    finally:
        await again.close()


def _insert_row(path: Path, order: OrderRecord) -> None:
    """Another writer on the same file takes a row, synchronously (no await in between)."""
    row = rows.order_row(order, rows.sqlite_uuid(order.order_id), rows.sqlite_ts)
    with sqlite3.connect(path) as raw:
        raw.execute(*queries.sqlite_insert(execution_orders, rows.ORDER_COLUMNS).bind(row))


async def test_f9_fold_conflict_quarantines_the_intent(tmp_path: Path) -> None:
    """The intent of an order that was sent is never deleted: it moves to the quarantine."""
    path = tmp_path / "j.db"
    journal = SqliteJournal(path)
    await journal.open()
    try:
        sent, other = make_order(), make_order()
        await journal.record_submitted(sent)
        await journal.record_submitted(other)
        # Before the fold runs, another writer takes the sent order's client id.
        taken = make_order(
            client_order_id=sent.client_order_id, status=S.REJECTED, rejection_reason="other"
        )
        _insert_row(path, taken)

        assert await journal.get(sent.client_order_id) == taken  # the table's row stays
        assert await journal.get(other.client_order_id) == other  # the rest of the batch lands
        [held] = await journal.quarantined()
        assert (held.client_order_id, held.kind) == (sent.client_order_id, "intent")
        assert "UNIQUE" in held.error
        assert json.loads(held.payload)["order"]["order_id"] == sent.order_id.replace("-", "")
        assert _count(path, "journal_intents") == 0  # moved, in the transaction that deleted it
        assert _write_lock_is_free(path)

        sent.status = S.FILLED  # its fill does not touch the other writer's row
        await journal.record_transition(sent, S.SUBMITTED, T.FILL)
        kinds = [(q.client_order_id, q.kind) for q in await journal.quarantined()]
        assert kinds == [(sent.client_order_id, "intent"), (sent.client_order_id, "write")]
        assert await journal.get(sent.client_order_id) == taken
    finally:
        await journal.close()


async def test_transient_flush_failure_keeps_every_write(tmp_path: Path) -> None:
    """A locked file fails the flush: nothing is quarantined or lost, it lands on retry."""
    path = tmp_path / "j.db"
    journal = SqliteJournal(path)
    await journal.open()
    try:
        order = make_order()
        await journal.record_submitted(order)
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        order.status = S.FILLED
        await journal.record_transition(order, S.SUBMITTED, T.FILL)
        await _eventually(lambda: journal.write_errors > 0)  # the flush failed and kept it all
        blocker.execute("ROLLBACK")
        blocker.close()
        assert await journal.get(order.client_order_id) == order
        assert [e.to_status for e in await journal.events(order.client_order_id)] == [
            S.NEW,
            S.SUBMITTED,
            S.FILLED,
        ]
        assert await journal.quarantined() == []
        assert _count(path, "journal_intents") == 0
        assert _write_lock_is_free(path)
    finally:
        await journal.close()


async def test_a_failed_group_commit_releases_its_ids(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    journal = SqliteJournal(path)
    await journal.open()
    try:
        order = make_order()
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await journal.record_submitted(order)  # not durable: the caller must not send
        blocker.execute("ROLLBACK")
        blocker.close()
        assert _write_lock_is_free(path)
        await journal.record_submitted(order)  # the id was released, and is free to retry
        assert await journal.get(order.client_order_id) == order
    finally:
        await journal.close()


async def test_f3_far_expiration_reads_back(tmp_path: Path) -> None:
    """The fast path writes a year-10000 expiration (an MT5 pending order accepted by a
    lenient server) and must read it back, in every read that touches the row."""
    journal = SqliteJournal(tmp_path / "j.db")
    await journal.open()
    try:
        order = make_order(order_type=OrderType.BUY_LIMIT, expiration_ms=253_402_300_800_000)
        await journal.record_submitted(order)
        order.status, order.mt_order_id = S.PLACED, 77
        await journal.record_transition(order, S.SUBMITTED, T.PLACE)
        assert await journal.get(order.client_order_id) == order
        found = await journal.find_by_ticket(order.account_login, order.account_server, 77)
        assert found == order
        placed = await journal.list_orders(account_login=order.account_login, statuses={S.PLACED})
        assert placed == [order]
    finally:
        await journal.close()


@pytest.mark.parametrize("kind", ["fast", "sqlalchemy"])
async def test_f3_garbled_row_is_skipped_and_named(tmp_path: Path, kind: str) -> None:
    """A row no reader can turn into a record is left out of lists, counted, and named."""
    path = tmp_path / "j.db"
    journal: Journal = SqliteJournal(path) if kind == "fast" else SqlJournal(f"sqlite:///{path}")
    await journal.open()
    try:
        good = make_order(placed_at_ms=T0)
        bad = make_order(placed_at_ms=T0 + 1)
        for order in (good, bad):
            await journal.record_submitted(order)
        bad.status, bad.mt_order_id = S.PLACED, 55
        await journal.record_transition(bad, S.SUBMITTED, T.PLACE)
        assert await journal.get(bad.client_order_id) == bad  # flushed
        with sqlite3.connect(path) as raw:
            raw.execute(
                "UPDATE execution_orders SET expiration = 'soon' WHERE client_order_id = ?",
                (bad.client_order_id,),
            )
        assert await journal.list_orders() == [good]
        assert journal.unreadable_rows == 1
        with pytest.raises(UnreadableOrderError, match=bad.client_order_id):
            await journal.get(bad.client_order_id)
        with pytest.raises(UnreadableOrderError, match=bad.client_order_id):
            await journal.find_by_ticket(bad.account_login, bad.account_server, 55)
        assert await journal.get(good.client_order_id) == good
    finally:
        await journal.close()
