"""The SQLite journal's intent log: durable before the frame leaves, folded in after a crash."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import textwrap
from pathlib import Path

from mtgate.domain.orders import OrderStatus
from mtgate.store.sqlite_journal import SqliteJournal

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
