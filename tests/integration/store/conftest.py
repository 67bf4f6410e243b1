"""Journal backends for the contract suite, and order records to feed them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mtgate.domain.enums import OrderType, Platform
from mtgate.domain.orders import OrderStatus, new_client_id
from mtgate.domain.records import OrderRecord
from mtgate.store.journal import Journal, open_journal
from mtgate.store.sql_journal import SqlJournal

T0 = 1_767_780_000_123  # 2026-01-07 10:00:00.123 UTC


@dataclass
class Backend:
    name: str
    url: str
    """A SQLAlchemy URL of the same database, for direct reads in assertions."""
    make: Callable[[], Journal]


def _backend(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if name == "sqlite":
        path = tmp_path / "nested" / "journal.db"
        return Backend(name, f"sqlite:///{path}", lambda: open_journal(f"sqlite:///{path}"))
    if name == "sqlalchemy-sqlite":
        # The PostgreSQL journal's code on SQLite: runs everywhere, and shares the file format
        # with the fast path (see test_sqlite_journal.py).
        url = f"sqlite:///{tmp_path / 'sa.db'}"
        return Backend(name, url, lambda: SqlJournal(url))
    url = request.getfixturevalue("pg_schema_url")
    return Backend(name, url, lambda: open_journal(url))


BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("sqlalchemy-sqlite", id="sqlalchemy-sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return _backend(request.param, request, tmp_path)


@pytest.fixture
async def journal(backend: Backend) -> AsyncIterator[Journal]:
    j = backend.make()
    await j.open()
    try:
        yield j
    finally:
        await j.close()


def make_order(**overrides: Any) -> OrderRecord:
    """A market buy, just submitted. Override any field."""
    fields: dict[str, Any] = {
        "order_id": str(uuid.uuid4()),
        "client_order_id": new_client_id(),
        "account_login": 5_001_234,
        "account_server": "Broker-Demo",
        "terminal_id": "term-1",
        "platform": Platform.MT5,
        "symbol": "EURUSD",
        "order_type": OrderType.BUY,
        "volume": 0.1,
        "magic": 42,
        "comment": "mg:x",
        "placed_at_ms": T0,
        "status": OrderStatus.SUBMITTED,
        "requested_price": 1.08512,
        "deviation_points": 10,
        "updated_at_ms": T0 + 1,
    }
    fields.update(overrides)
    if "comment" not in overrides:
        fields["comment"] = "mg:" + fields["client_order_id"]
    return OrderRecord(**fields)


def full_order(**overrides: Any) -> OrderRecord:
    """Every field set, each to a distinct value, so a swapped column cannot go unnoticed."""
    fields: dict[str, Any] = {
        "order_type": OrderType.SELL_STOP_LIMIT,
        "platform": Platform.MT5,
        "signal_id": "sig-7f3a",
        "volume": 1.25,
        "magic": 2**40 + 7,
        "requested_price": 1.1002,
        "stoplimit_price": 1.1011,
        "stop_loss": 1.1204,
        "take_profit": 1.0803,
        "expiration_ms": T0 + 86_400_000,
        "deviation_points": 17,
        "mt_order_id": 3_000_000_001,
        "mt_position_id": 3_000_000_002,
        "mt_deal_id": 3_000_000_003,
        "fill_price": 1.10007,
        "fill_volume": 1.2,
        "slippage_points": -2.5,
        "execution_time_ms": 0.237,
        "rejection_code": 10_019,
        "rejection_name": "TRADE_RETCODE_NO_MONEY",
        "rejection_reason": "not enough money",
        "retry_count": 3,
        "filled_at_ms": T0 + 5,
        "updated_at_ms": T0 + 6,
        "sent_server_ms": T0 + 7_200_000 - 2,  # a GMT+2 server's clock, 2 ms behind ours
    }
    fields.update(overrides)
    return make_order(**fields)
