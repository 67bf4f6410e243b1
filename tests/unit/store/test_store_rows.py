"""Row mapping and storage formats shared by both journals: pure functions, fed values."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import DateTime, Uuid
from sqlalchemy.dialects import sqlite

from mtgate.domain.enums import OrderType
from mtgate.domain.orders import TRANSITIONS, InvalidTransition, OrderStatus, Trigger
from mtgate.domain.records import OrderRecord
from mtgate.store import rows
from mtgate.store.models import (
    ORDER_TYPE_NAMES,
    bridge_health_metrics,
    execution_orders,
    order_events,
)
from mtgate.store.values import TransitionMismatchError, UnstorableOrderError, check_transition

# 1970 .. 2200, in ms.
EPOCH_MS = st.integers(min_value=0, max_value=7_258_118_400_000)


def test_column_lists_cover_each_table_exactly() -> None:
    assert len(set(rows.ORDER_COLUMNS)) == len(rows.ORDER_COLUMNS)
    assert set(rows.ORDER_COLUMNS) == set(execution_orders.c.keys())
    assert not set(rows.IDENTITY_COLUMNS) & set(rows.MUTABLE_COLUMNS)
    assert set(rows.EVENT_COLUMNS) == set(order_events.c.keys()) - {"id"}
    assert set(rows.HEALTH_COLUMNS) == set(bridge_health_metrics.c.keys())


def test_identity_columns_are_never_updated() -> None:
    assert "order_id" not in rows.MUTABLE_COLUMNS
    assert "client_order_id" not in rows.MUTABLE_COLUMNS
    assert "placed_at" not in rows.MUTABLE_COLUMNS


def test_order_types_are_stored_by_name() -> None:
    assert ORDER_TYPE_NAMES == {
        OrderType.BUY: "buy",
        OrderType.SELL: "sell",
        OrderType.BUY_LIMIT: "buy_limit",
        OrderType.SELL_LIMIT: "sell_limit",
        OrderType.BUY_STOP: "buy_stop",
        OrderType.SELL_STOP: "sell_stop",
        OrderType.BUY_STOP_LIMIT: "buy_stop_limit",
        OrderType.SELL_STOP_LIMIT: "sell_stop_limit",
    }


_SA_SQLITE = sqlite.dialect()
_sa_datetime = DateTime(timezone=True).dialect_impl(_SA_SQLITE).bind_processor(_SA_SQLITE)
_sa_uuid = Uuid(as_uuid=False).dialect_impl(_SA_SQLITE).bind_processor(_SA_SQLITE)


@given(EPOCH_MS)
def test_sqlite_timestamps_are_what_sqlalchemy_stores(ms: int) -> None:
    assert _sa_datetime is not None
    assert rows.sqlite_ts(ms) == _sa_datetime(rows.ms_to_datetime(ms))


@given(EPOCH_MS)
def test_timestamps_round_trip(ms: int) -> None:
    assert rows.sqlite_ts_to_ms(rows.sqlite_ts(ms)) == ms
    assert rows.datetime_to_ms(rows.ms_to_datetime(ms)) == ms


def test_naive_datetimes_read_as_utc() -> None:
    aware = datetime(2026, 1, 7, 10, 0, 0, 123_000, tzinfo=UTC)
    assert rows.datetime_to_ms(aware.replace(tzinfo=None)) == rows.datetime_to_ms(aware)
    assert rows.datetime_to_ms(aware) == 1_767_780_000_123


@given(st.uuids())
def test_sqlite_uuids_are_what_sqlalchemy_stores(value: uuid.UUID) -> None:
    assert _sa_uuid is not None
    assert rows.sqlite_uuid(str(value)) == _sa_uuid(str(value))
    assert rows.canonical_uuid(rows.sqlite_uuid(str(value))) == str(value)


@pytest.mark.parametrize(
    "spelling",
    [
        "12345678-1234-5678-1234-567812345678".upper(),
        "{12345678-1234-5678-1234-567812345678}",
        "urn:uuid:12345678-1234-5678-1234-567812345678",
        "12345678123456781234567812345678",
    ],
)
def test_other_uuid_spellings_are_normalised(spelling: str) -> None:
    assert rows.sqlite_uuid(spelling) == "12345678123456781234567812345678"
    assert rows.canonical_uuid(spelling) == "12345678-1234-5678-1234-567812345678"


@pytest.mark.parametrize("bad", ["", "not-a-uuid", "12345678-1234-5678-1234-56781234567g"])
def test_a_non_uuid_order_id_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="is not a UUID"):
        rows.sqlite_uuid(bad)
    with pytest.raises(ValueError, match="is not a UUID"):
        rows.canonical_uuid(bad)


@pytest.mark.parametrize("previous", list(OrderStatus))
@pytest.mark.parametrize("trigger", list(Trigger))
def test_check_transition_follows_the_table(previous: OrderStatus, trigger: Trigger) -> None:
    target = TRANSITIONS.get((previous, trigger))
    for status in OrderStatus:
        if target is None:
            with pytest.raises(InvalidTransition) as info:
                check_transition(previous, trigger, status)
            assert not isinstance(info.value, TransitionMismatchError)
        elif status is target:
            check_transition(previous, trigger, status)
        else:
            with pytest.raises(TransitionMismatchError):
                check_transition(previous, trigger, status)


# Review 2026-12, F3: every time the SQLite writer can produce is read back.
ANY_MS = st.integers(min_value=-(2**63), max_value=2**63 - 1)
DATETIME_MS = st.integers(min_value=-62_135_596_800_000, max_value=253_402_300_799_999)
"""Years 1 to 9999: what ``datetime`` (and so SQLAlchemy) can hold."""


@given(ANY_MS)
def test_f3_sqlite_timestamps_of_any_year_read_back(ms: int) -> None:
    assert rows.sqlite_ts_to_ms(rows.sqlite_ts(ms)) == ms


@given(DATETIME_MS)
def test_f3_sqlite_timestamps_are_what_sqlalchemy_stores_for_every_year(ms: int) -> None:
    assert _sa_datetime is not None
    assert rows.sqlite_ts(ms) == _sa_datetime(rows.ms_to_datetime(ms))


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("10000-01-01 00:00:00.000000", 253_402_300_800_000),
        ("9999-12-31 23:59:59.999000", 253_402_300_799_999),
        ("999-01-01 00:00:00.000000", -30_641_760_000_000),  # unpadded, as strftime wrote it
        ("0999-01-01 00:00:00.000000", -30_641_760_000_000),
        ("292278994-08-17 07:12:55.807000", 2**63 - 1),
        ("2026-01-07 10:00:00.123456", 1_767_780_000_123),  # SQLAlchemy keeps microseconds
    ],
)
def test_f3_far_timestamps_are_read(text: str, ms: int) -> None:
    assert rows.sqlite_ts_to_ms(text) == ms


@pytest.mark.parametrize(
    "bad", ["soon", "", "10000-13-01 00:00:00", "10000-02-30 00:00:00", "10001-01-01 24:00:00"]
)
def test_f3_a_value_that_is_no_timestamp_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="journal timestamp"):
        rows.sqlite_ts_to_ms(bad)


def test_f3_leap_days_beyond_9999() -> None:
    assert (
        rows.sqlite_ts_to_ms("10000-02-29 00:00:00") - rows.sqlite_ts_to_ms("10000-02-28 00:00:00")
        == 86_400_000
    )  # 10000 is divisible by 400
    with pytest.raises(ValueError, match="no such day"):
        rows.sqlite_ts_to_ms("10100-02-29 00:00:00")


@pytest.mark.parametrize("ts", [rows.sqlite_ts, rows.ms_to_datetime])
def test_f3_a_time_beyond_the_backend_is_named(ts: rows.TsOut) -> None:
    order = OrderRecord(
        order_id="12345678-1234-5678-1234-567812345678",
        client_order_id="far-1",
        account_login=1,
        account_server="S",
        terminal_id="t",
        platform=None,
        symbol="EURUSD",
        order_type=OrderType.BUY_LIMIT,
        volume=0.1,
        magic=0,
        comment="",
        placed_at_ms=0,
        expiration_ms=2**70,
    )
    with pytest.raises(UnstorableOrderError, match=r"far-1.*expiration_ms") as info:
        rows.check_times(order, ts)
    assert info.value.field == "expiration_ms"
    rows.check_times(dataclasses.replace(order, expiration_ms=1), ts)  # nothing to say
