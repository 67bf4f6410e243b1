"""SQLite fast path specifics: file handling, pragmas, and one file format with SQLAlchemy."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from mtgate.domain.orders import OrderStatus, Trigger
from mtgate.store import JournalConfigError, open_journal
from mtgate.store.sql_journal import SqlJournal
from mtgate.store.sqlite_journal import SqliteJournal

from .conftest import full_order, make_order


async def test_creates_the_parent_directory_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "journal.db"
    journal = open_journal(f"sqlite:///{path}")
    await journal.open()
    await journal.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.mark.parametrize("level", ["normal", "full", "extra", "FULL"])
async def test_durability_levels(tmp_path: Path, level: str) -> None:
    journal = open_journal(f"sqlite:///{tmp_path / 'j.db'}", synchronous=level)
    assert isinstance(journal, SqliteJournal)
    assert journal.synchronous == level.lower()
    await journal.open()
    order = make_order()
    await journal.record_submitted(order)
    assert await journal.get(order.client_order_id) == order
    await journal.close()


@pytest.mark.parametrize("level", ["off", "", "fast"])
def test_a_level_that_can_lose_commits_is_refused(tmp_path: Path, level: str) -> None:
    with pytest.raises(JournalConfigError, match="synchronous"):
        open_journal(f"sqlite:///{tmp_path / 'j.db'}", synchronous=level)


async def test_fast_path_rows_read_back_through_sqlalchemy(tmp_path: Path) -> None:
    """Proves the hand-bound values match what SQLAlchemy's types store and read."""
    url = f"sqlite:///{tmp_path / 'j.db'}"
    fast = open_journal(url)
    await fast.open()
    order = full_order(status=OrderStatus.SUBMITTED)
    await fast.record_submitted(order)
    order.status, order.updated_at_ms = OrderStatus.FILLED, order.updated_at_ms + 1
    await fast.record_transition(order, OrderStatus.SUBMITTED, Trigger.FILL, "filled")
    events = await fast.events(order.client_order_id)
    await fast.close()

    slow = SqlJournal(url)
    await slow.open()
    try:
        assert await slow.get(order.client_order_id) == order
        assert await slow.events(order.client_order_id) == events
        ticket = order.mt_order_id
        assert ticket is not None
        found = await slow.find_by_ticket(order.account_login, order.account_server, ticket)
        assert found == order
    finally:
        await slow.close()


async def test_sqlalchemy_rows_read_back_through_the_fast_path(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'j.db'}"
    slow = SqlJournal(url)
    await slow.open()
    order = full_order(status=OrderStatus.SUBMITTED, expiration_ms=None)
    await slow.record_submitted(order)
    order.status = OrderStatus.UNKNOWN
    await slow.record_transition(order, OrderStatus.SUBMITTED, Trigger.LOSE, "timeout")
    events = await slow.events(order.client_order_id)
    await slow.close()

    fast = open_journal(url)
    await fast.open()
    try:
        assert await fast.get(order.client_order_id) == order
        assert await fast.events(order.client_order_id) == events
        # And the fast path can continue the order SQLAlchemy started.
        order.status = OrderStatus.NOT_FOUND
        await fast.record_transition(order, OrderStatus.UNKNOWN, Trigger.PROVE_ABSENT)
        assert await fast.get(order.client_order_id) == order
    finally:
        await fast.close()


async def _eventually(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.01)


def _checkpoint_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "mtgate-journal-checkpoint"]


async def test_a_background_thread_checkpoints_the_wal(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path / "j.db", checkpoint_interval_s=0.01)
    await journal.open()
    try:
        stats = journal.checkpoint_stats
        assert stats is not None
        for _ in range(50):
            await journal.record_submitted(make_order())
        await _eventually(lambda: stats.checkpointed_frames > 0)
        assert stats.failures == 0
        assert len(_checkpoint_threads()) == 1
    finally:
        await journal.close()
    assert _checkpoint_threads() == []


@pytest.mark.parametrize(
    ("synchronous", "interval_s"), [("full", 0.01), ("extra", 0.01), ("normal", None)]
)
async def test_no_checkpoint_thread_when_the_writer_checkpoints(
    tmp_path: Path, synchronous: str, interval_s: float | None
) -> None:
    journal = SqliteJournal(
        tmp_path / "j.db", synchronous=synchronous, checkpoint_interval_s=interval_s
    )
    await journal.open()
    try:
        assert journal.checkpoint_stats is None
        assert _checkpoint_threads() == []
        order = make_order()
        await journal.record_submitted(order)
        assert await journal.get(order.client_order_id) == order
    finally:
        await journal.close()
