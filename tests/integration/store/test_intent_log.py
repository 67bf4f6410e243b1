"""The SQLite journal's intent log: durable before the frame leaves, folded in after a crash."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import textwrap
from pathlib import Path

import msgspec
import pytest

from mtgate.domain.orders import OrderStatus, Trigger
from mtgate.store import DuplicateOrderError, rows
from mtgate.store.sqlite_journal import SqliteJournal

from .conftest import make_order

CRASHING_WRITER = textwrap.dedent(
    """
    import asyncio, os, sys, uuid
    from pathlib import Path
    from mtgate.domain.enums import OrderType, Platform
    from mtgate.domain.orders import OrderStatus
    from mtgate.domain.records import OrderRecord
    from mtgate.store.sqlite_journal import SqliteJournal

    async def main() -> None:
        journal = SqliteJournal(Path(sys.argv[1]))
        await journal.open()
        order = OrderRecord(
            order_id=str(uuid.uuid4()), client_order_id="crash-1", account_login=1,
            account_server="S", terminal_id="t", platform=Platform.MT5, symbol="EURUSD",
            order_type=OrderType.BUY, volume=0.1, magic=0, comment="mg:crash-1",
            placed_at_ms=1_767_780_000_000, status=OrderStatus.SUBMITTED,
        )
        await journal.record_submitted(order)
        os._exit(0)  # the process dies before the loop folds the intent in

    asyncio.run(main())
    """
)


async def test_an_intent_logged_before_a_crash_is_folded_in_at_start(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    writer = await asyncio.create_subprocess_exec(sys.executable, "-c", CRASHING_WRITER, str(db))
    assert await asyncio.wait_for(writer.wait(), 60) == 0
    with sqlite3.connect(db) as raw:
        logged = raw.execute("SELECT client_order_id FROM journal_intents").fetchall()
        tables = raw.execute("SELECT count(*) FROM execution_orders").fetchone()
    assert logged == [("crash-1",)]
    assert tables == (0,)

    journal = SqliteJournal(db)
    await journal.open()
    try:
        found = await journal.get("crash-1")
        assert found is not None
        assert found.status == OrderStatus.SUBMITTED
        trail = await journal.events("crash-1")
        assert [(e.from_status, e.to_status) for e in trail] == [
            (None, OrderStatus.NEW),
            (OrderStatus.NEW, OrderStatus.SUBMITTED),
        ]
    finally:
        await journal.close()
    with sqlite3.connect(db) as raw:
        assert raw.execute("SELECT count(*) FROM journal_intents").fetchone() == (0,)


POISONING_WRITER = textwrap.dedent(
    """
    import asyncio, os, sys, uuid
    from pathlib import Path
    from mtgate.domain.enums import OrderType, Platform
    from mtgate.domain.orders import OrderStatus
    from mtgate.domain.records import OrderRecord
    from mtgate.store.sqlite_journal import SqliteJournal

    def order(cid: str, deviation: int) -> OrderRecord:
        return OrderRecord(
            order_id=str(uuid.uuid4()), client_order_id=cid, account_login=1,
            account_server="S", terminal_id="t", platform=Platform.MT5, symbol="EURUSD",
            order_type=OrderType.BUY, volume=0.1, magic=0, comment="mg:" + cid,
            placed_at_ms=1_767_780_000_000, status=OrderStatus.SUBMITTED,
            deviation_points=deviation,
        )

    async def main() -> None:
        journal = SqliteJournal(Path(sys.argv[1]))
        await journal.open()
        await asyncio.gather(
            journal.record_submitted(order("good-1", 10)),
            journal.record_submitted(order("poison-1", 2**63)),  # msgpack takes it, SQLite not
            journal.record_submitted(order("good-2", 10)),
        )
        os._exit(0)  # sent, and the process dies before the fold

    asyncio.run(main())
    """
)


async def test_f2_poison_intent_does_not_stop_open(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    writer = await asyncio.create_subprocess_exec(sys.executable, "-c", POISONING_WRITER, str(db))
    assert await asyncio.wait_for(writer.wait(), 60) == 0
    for _ in range(2):  # and again: the quarantine is durable, the log is clean
        journal = SqliteJournal(db)
        await journal.open()
        try:
            for cid in ("good-1", "good-2"):
                found = await journal.get(cid)
                assert found is not None
                assert found.status == OrderStatus.SUBMITTED
            assert await journal.get("poison-1") is None
            [held] = await journal.quarantined()
            assert (held.client_order_id, held.kind) == ("poison-1", "intent")
            assert json.loads(held.payload)["order"]["deviation_points"] == 2**63
            with pytest.raises(DuplicateOrderError):  # the order may be on the wire
                await journal.record_submitted(make_order(client_order_id="poison-1"))
        finally:
            await journal.close()
        with sqlite3.connect(db) as raw:
            assert raw.execute("SELECT count(*) FROM journal_intents").fetchone() == (0,)


async def _log_raw(db: Path, cid: str, payload: bytes) -> None:
    """An intent-log row as a crash (or another version) left it."""
    journal = SqliteJournal(db)
    await journal.open()  # creates and migrates the file
    await journal.close()
    with sqlite3.connect(db) as raw:
        raw.execute(
            "INSERT INTO journal_intents (client_order_id, payload) VALUES (?, ?)", (cid, payload)
        )


async def test_f2_undecodable_intent_is_quarantined_as_logged(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    await _log_raw(db, "junk-1", b"\x00not msgpack")
    journal = SqliteJournal(db)
    await journal.open()
    try:
        [held] = await journal.quarantined()
        assert (held.client_order_id, held.kind, held.payload) == (
            "junk-1",
            "intent",
            b"\x00not msgpack",
        )
        assert "kept as logged" in held.error
        assert journal.quarantine_count == 1
        fresh = make_order(client_order_id="after-1")
        await journal.record_submitted(fresh)
        assert await journal.get("after-1") == fresh
    finally:
        await journal.close()


async def test_an_intent_logged_before_0004_is_folded_without_a_server_time(
    tmp_path: Path,
) -> None:
    """A crash of the previous version leaves rows without ``server_time_at_send``."""
    db = tmp_path / "journal.db"
    order = make_order(client_order_id="old-1")
    stored_id = rows.sqlite_uuid(order.order_id)
    row = list(rows.order_row(order, stored_id, rows.sqlite_ts))
    del row[rows.DEADLINE_INDEX]  # neither column existed then
    del row[rows.SENT_AT_INDEX]
    created = rows.created_row(order, stored_id, rows.sqlite_ts(order.placed_at_ms))
    moved = rows.event_row(
        order, stored_id, OrderStatus.NEW, Trigger.SEND, "", rows.sqlite_ts(order.updated_at_ms)
    )
    await _log_raw(db, "old-1", msgspec.msgpack.encode((row, created, moved)))
    journal = SqliteJournal(db)
    await journal.open()
    try:
        assert await journal.get("old-1") == order
        assert await journal.quarantined() == []
    finally:
        await journal.close()


async def test_an_intent_logged_before_0005_keeps_its_server_time_and_has_no_deadline(
    tmp_path: Path,
) -> None:
    """A crash of the version before trade deadlines leaves rows one value short."""
    db = tmp_path / "journal.db"
    order = make_order(client_order_id="old-2", sent_server_ms=1_700_000_000_000)
    stored_id = rows.sqlite_uuid(order.order_id)
    row = list(rows.order_row(order, stored_id, rows.sqlite_ts))
    del row[rows.DEADLINE_INDEX]
    created = rows.created_row(order, stored_id, rows.sqlite_ts(order.placed_at_ms))
    moved = rows.event_row(
        order, stored_id, OrderStatus.NEW, Trigger.SEND, "", rows.sqlite_ts(order.updated_at_ms)
    )
    await _log_raw(db, "old-2", msgspec.msgpack.encode((row, created, moved)))
    journal = SqliteJournal(db)
    await journal.open()
    try:
        stored = await journal.get("old-2")
        assert stored is not None
        assert stored.sent_server_ms == 1_700_000_000_000
        assert stored.deadline_at_ms is None
        assert stored == order
    finally:
        await journal.close()
