"""Mapping between :class:`OrderRecord` and table rows, shared by both journals.

Rows are tuples in the column orders declared here (tuples bind faster than dicts on the hot
path; the SQLAlchemy journal zips them with the names). Each journal supplies how an epoch-ms
time and the order id are bound: the SQLAlchemy journal passes ``datetime`` objects and UUID
strings and lets SQLAlchemy's types convert them; the SQLite fast path writes exactly what
SQLAlchemy's SQLite types would have written (:func:`sqlite_ts`, :func:`sqlite_uuid`) without
their per-value overhead. Keeping the field ↔ column mapping in one place is what makes the two
journals read each other's rows (a test proves they do).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Final

from mtgate.domain.enums import OrderType, Platform
from mtgate.domain.orders import ACTION_VALUES, OrderAction, OrderStatus, Trigger
from mtgate.domain.records import OrderRecord
from mtgate.store.models import ORDER_TYPE_NAMES
from mtgate.store.values import HealthSample, OrderEvent, UnstorableOrderError

TsOut = Callable[[int], Any]
"""Epoch ms → the value bound for a timestamp column."""
TsIn = Callable[[Any], int]
"""A timestamp column's value as read → epoch ms."""

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
ORDER_TYPES_BY_NAME: dict[str, OrderType] = {v: k for k, v in ORDER_TYPE_NAMES.items()}

IDENTITY_COLUMNS = (
    "order_id",
    "client_order_id",
    "signal_id",
    "account_login",
    "account_server",
    "terminal_id",
    "platform",
    "symbol",
    "order_type",
    "volume",
    "magic",
    "comment",
    "placed_at",
    "action",
    "position_ticket",
    "by_ticket",
    "server_time_at_send",
    "trade_deadline_at",
)
"""Written once at creation: what was asked for, and of whom, the server's clock then, and
the deadline after which the terminal never starts it."""

MUTABLE_COLUMNS = (
    "order_status",
    "requested_price",
    "stoplimit_price",
    "stop_loss",
    "take_profit",
    "expiration",
    "deviation_points",
    "mt_order_id",
    "mt_position_id",
    "mt_deal_id",
    "fill_price",
    "fill_volume",
    "slippage_points",
    "execution_time_ms",
    "rejection_code",
    "rejection_name",
    "rejection_reason",
    "retry_count",
    "updated_at",
    "filled_at",
)
"""Rewritten from the record on every transition or recorded event."""

ATTEMPT_COLUMNS = (
    "terminal_id",
    "volume",
    "comment",
    "server_time_at_send",
    "trade_deadline_at",
)
"""Identity columns a new attempt of the order rewrites (``record_attempt``): who carries it,
how much it asks for, the comment that finds it again, and its send time and deadline. Each
attempt's values are also in its event's detail, so the audit trail keeps every one."""

ORDER_COLUMNS = IDENTITY_COLUMNS + MUTABLE_COLUMNS
SENT_AT_INDEX: Final = ORDER_COLUMNS.index("server_time_at_send")
"""Where migration 0004 put its column in a row: an intent logged before it lacks the value."""
DEADLINE_INDEX: Final = ORDER_COLUMNS.index("trade_deadline_at")
"""Where migration 0005 put its column in a row: an intent logged before it lacks the value."""
EVENT_READ_COLUMNS = ("from_status", "to_status", "trigger", "detail", "at")
"""What :func:`event_from_row` needs, in the order the fast path selects them."""
EVENT_COLUMNS = (
    "order_id",
    "client_order_id",
    "from_status",
    "to_status",
    "trigger",
    "detail",
    "at",
)
HEALTH_COLUMNS = (
    "metric_id",
    "terminal_id",
    "account_login",
    "account_server",
    "connection_status",
    "last_heartbeat",
    "execution_latency_ms",
    "rejection_rate",
    "sync_delay_ms",
    "recorded_at",
    "heartbeat_rtt_ms",
    "latency_p50_ms",
    "latency_p99_ms",
    "disconnects",
    "flaps",
    "snapshot_age_ms",
    "ready",
)

# Bind names of the UPDATE's WHERE clause; prefixed so they never collide with a SET column.
WHERE_ORDER_ID = "w_order_id"
WHERE_CLIENT_ID = "w_client_order_id"
WHERE_STATUS = "w_order_status"

# Enum → stored string by dict lookup: ``.value`` is a slow property on the hot path, and the
# stdlib driver binds a str subclass through its (slower still) adapter lookup.
STATUS_VALUES: dict[OrderStatus | None, str | None] = {s: s.value for s in OrderStatus}
STATUS_VALUES[None] = None
TRIGGER_VALUES: dict[Trigger | None, str | None] = {t: t.value for t in Trigger}
TRIGGER_VALUES[None] = None
PLATFORM_VALUES: dict[Platform | None, str | None] = {p: p.value for p in Platform}
PLATFORM_VALUES[None] = None


def ms_to_datetime(ms: int) -> datetime:
    """Exact (integer) conversion; ``datetime.fromtimestamp`` would go through a float."""
    return EPOCH + ms * _MS


def datetime_to_ms(value: datetime) -> int:
    """Aware datetimes from PostgreSQL; naive ones (SQLite stores no offset) are UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // _MS


@lru_cache(maxsize=1024)
def _second_prefix(epoch_s: int) -> str:
    # Formatted by hand, not ``strftime("%Y")``: that leaves years below 1000 unpadded, where
    # SQLAlchemy writes four digits (and ``fromisoformat`` needs them).
    t = time.gmtime(epoch_s)
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    )


_MS_SUFFIX: Final = tuple(f".{ms:03d}000" for ms in range(1000))


def sqlite_ts(ms: int) -> str:
    """UTC in SQLAlchemy's SQLite ``DATETIME`` storage format, cached per second (hot path).

    Any time ``time.gmtime`` can represent is written, years beyond 9999 included (with more
    digits); :func:`sqlite_ts_to_ms` reads every one of them back. Raises ``OSError`` or
    ``OverflowError`` beyond that (see :data:`TIME_ERRORS`).
    """
    return _second_prefix(ms // 1000) + _MS_SUFFIX[ms % 1000]


TIME_ERRORS: Final = (OverflowError, OSError, ValueError)
"""What converting an out-of-range epoch-ms value raises: ``time.gmtime`` (OSError, OverflowError)
on the SQLite fast path, ``datetime`` arithmetic (OverflowError) for SQLAlchemy."""

_FAR_TS: Final = re.compile(r"(-?\d+)-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?")


def sqlite_ts_to_ms(value: str) -> int:
    """Epoch ms of a SQLite ``DATETIME`` text, of any year :func:`sqlite_ts` can write.

    ``datetime.fromisoformat`` (fast, in C) reads years 1-9999; a row outside that range (a
    far expiration, or a year below 1000 written unpadded by an earlier version) is read by
    calendar arithmetic instead, so one such row cannot make a whole account unreadable.

    Raises:
        ValueError: ``value`` is not a timestamp in that format.
    """
    try:
        return datetime_to_ms(datetime.fromisoformat(value))
    except ValueError:
        return _far_ts_to_ms(value)


def _far_ts_to_ms(value: str) -> int:
    found = _FAR_TS.fullmatch(value)
    if found is None:
        raise ValueError(f"{value!r} is not a journal timestamp")
    year, month, day, hour, minute, second = (int(part) for part in found.groups()[:6])
    if not (1 <= month <= 12 and 1 <= day <= _days_in_month(year, month)):
        raise ValueError(f"{value!r} is not a journal timestamp (no such day)")
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"{value!r} is not a journal timestamp (no such time)")
    micros = int((found.group(7) or "0").ljust(6, "0"))
    seconds = ((_days_from_civil(year, month, day) * 24 + hour) * 60 + minute) * 60 + second
    return seconds * 1000 + micros // 1000


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 in the proleptic Gregorian calendar (``time.gmtime``'s), for any
    year; H. Hinnant's algorithm (400-year eras of 146 097 days, years starting in March)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


_TIME_FIELDS: Final = (
    "placed_at_ms",
    "updated_at_ms",
    "expiration_ms",
    "filled_at_ms",
    "sent_server_ms",
    "deadline_at_ms",
)


def check_times(order: OrderRecord, ts: TsOut) -> None:
    """Raise :class:`UnstorableOrderError` naming the first time of ``order`` that ``ts``
    cannot convert. Called only after building a row failed, to say why (not on the hot path).
    """
    for name in _TIME_FIELDS:
        value = getattr(order, name)
        if value is None:
            continue
        try:
            ts(value)
        except TIME_ERRORS as exc:
            raise UnstorableOrderError(order.client_order_id, name, value, exc) from exc


_CANONICAL_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@lru_cache(maxsize=4096)
def sqlite_uuid(value: str) -> str:
    """SQLAlchemy's SQLite ``Uuid`` format (32 hex digits), validated as PostgreSQL would.

    The canonical form takes a regex instead of ``uuid.UUID`` (four times slower); the
    newest ids are remembered (an order's id is converted at its intent and again at its
    answer).
    """
    if _CANONICAL_UUID.fullmatch(value):
        return value.replace("-", "")
    return _parse_uuid(value).hex


def canonical_uuid(value: Any) -> str:
    """Canonical lower-case dashed form of a UUID given as a string or ``uuid.UUID``.

    Raises:
        ValueError: ``value`` is not a UUID.
    """
    if isinstance(value, str) and _CANONICAL_UUID.fullmatch(value):
        return value  # already canonical (the bridge's own ids): no uuid.UUID round trip
    return str(value if isinstance(value, uuid.UUID) else _parse_uuid(value))


def _parse_uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a UUID ({exc})") from exc


def mutable_row(order: OrderRecord, ts: TsOut) -> tuple[Any, ...]:
    """The values of :data:`MUTABLE_COLUMNS`, in that order."""
    expiration, filled = order.expiration_ms, order.filled_at_ms
    return (
        STATUS_VALUES[order.status],
        order.requested_price,
        order.stoplimit_price,
        order.stop_loss,
        order.take_profit,
        None if expiration is None else ts(expiration),
        order.deviation_points,
        order.mt_order_id,
        order.mt_position_id,
        order.mt_deal_id,
        order.fill_price,
        order.fill_volume,
        order.slippage_points,
        order.execution_time_ms,
        order.rejection_code,
        order.rejection_name,
        order.rejection_reason,
        order.retry_count,
        ts(order.updated_at_ms),
        None if filled is None else ts(filled),
    )


def attempt_row(order: OrderRecord, ts: TsOut) -> tuple[Any, ...]:
    """The values of :data:`ATTEMPT_COLUMNS`, then those of :data:`MUTABLE_COLUMNS`."""
    sent, deadline = order.sent_server_ms, order.deadline_at_ms
    return (
        order.terminal_id,
        order.volume,
        order.comment,
        None if sent is None else ts(sent),
        None if deadline is None else ts(deadline),
        *mutable_row(order, ts),
    )


def order_row(order: OrderRecord, stored_id: Any, ts: TsOut) -> tuple[Any, ...]:
    """The values of :data:`ORDER_COLUMNS`; ``stored_id`` is the order id as bound."""
    return (
        stored_id,
        order.client_order_id,
        order.signal_id,
        order.account_login,
        order.account_server,
        order.terminal_id,
        PLATFORM_VALUES[order.platform],
        order.symbol,
        ORDER_TYPE_NAMES[order.order_type],
        order.volume,
        order.magic,
        order.comment,
        ts(order.placed_at_ms),
        ACTION_VALUES[order.action],
        order.position_ticket,
        order.by_ticket,
        None if order.sent_server_ms is None else ts(order.sent_server_ms),
        None if order.deadline_at_ms is None else ts(order.deadline_at_ms),
        *mutable_row(order, ts),
    )


def event_row(
    order: OrderRecord,
    stored_id: Any,
    from_status: OrderStatus | None,
    trigger: Trigger | None,
    detail: str,
    at: Any,
) -> tuple[Any, ...]:
    """The values of :data:`EVENT_COLUMNS` for an event leading to ``order.status``."""
    return (
        stored_id,
        order.client_order_id,
        STATUS_VALUES[from_status],
        STATUS_VALUES[order.status],
        TRIGGER_VALUES[trigger],
        detail,
        at,
    )


def created_row(order: OrderRecord, stored_id: Any, at: Any) -> tuple[Any, ...]:
    """The creation event: no previous status, to NEW."""
    return (stored_id, order.client_order_id, None, STATUS_VALUES[OrderStatus.NEW], None, "", at)


def health_row(sample: HealthSample, metric_id: Any, ts: TsOut) -> tuple[Any, ...]:
    """The values of :data:`HEALTH_COLUMNS`."""
    heartbeat = sample.last_heartbeat_ms
    return (
        metric_id,
        sample.terminal_id,
        sample.account_login,
        sample.account_server,
        sample.connection_status,
        None if heartbeat is None else ts(heartbeat),
        sample.execution_latency_ms,
        sample.rejection_rate,
        sample.sync_delay_ms,
        ts(sample.recorded_at_ms),
        sample.heartbeat_rtt_ms,
        sample.latency_p50_ms,
        sample.latency_p99_ms,
        sample.disconnects,
        sample.flaps,
        sample.snapshot_age_ms,
        sample.ready,
    )


def _opt_in(value: Any, ts_in: TsIn) -> int | None:
    return None if value is None else ts_in(value)


def record_from_row(row: Mapping[Any, Any], ts_in: TsIn) -> OrderRecord:
    """Rebuild the record from a row keyed by column name."""
    platform = row["platform"]
    return OrderRecord(
        order_id=canonical_uuid(row["order_id"]),
        client_order_id=row["client_order_id"],
        signal_id=row["signal_id"],
        account_login=row["account_login"],
        account_server=row["account_server"],
        terminal_id=row["terminal_id"],
        platform=None if platform is None else Platform(platform),
        symbol=row["symbol"],
        order_type=ORDER_TYPES_BY_NAME[row["order_type"]],
        volume=row["volume"],
        magic=row["magic"],
        comment=row["comment"],
        placed_at_ms=ts_in(row["placed_at"]),
        status=OrderStatus(row["order_status"]),
        requested_price=row["requested_price"],
        stoplimit_price=row["stoplimit_price"],
        stop_loss=row["stop_loss"],
        take_profit=row["take_profit"],
        expiration_ms=_opt_in(row["expiration"], ts_in),
        deviation_points=row["deviation_points"],
        mt_order_id=row["mt_order_id"],
        mt_position_id=row["mt_position_id"],
        mt_deal_id=row["mt_deal_id"],
        fill_price=row["fill_price"],
        fill_volume=row["fill_volume"],
        slippage_points=row["slippage_points"],
        execution_time_ms=row["execution_time_ms"],
        rejection_code=row["rejection_code"],
        rejection_name=row["rejection_name"],
        rejection_reason=row["rejection_reason"],
        retry_count=row["retry_count"],
        updated_at_ms=ts_in(row["updated_at"]),
        filled_at_ms=_opt_in(row["filled_at"], ts_in),
        action=OrderAction(row["action"]),
        position_ticket=row["position_ticket"],
        by_ticket=row["by_ticket"],
        sent_server_ms=_opt_in(row["server_time_at_send"], ts_in),
        deadline_at_ms=_opt_in(row["trade_deadline_at"], ts_in),
    )


def event_from_row(row: Mapping[Any, Any], ts_in: TsIn) -> OrderEvent:
    from_status, trigger = row["from_status"], row["trigger"]
    return OrderEvent(
        from_status=None if from_status is None else OrderStatus(from_status),
        to_status=OrderStatus(row["to_status"]),
        trigger=None if trigger is None else Trigger(trigger),
        detail=row["detail"],
        at_ms=ts_in(row["at"]),
    )
