"""SQLAlchemy models of the journal's tables (DESIGN §6; adaptations in docs/schema.md).

The models are the reference for both journals: the SQLAlchemy journal executes them directly
and the SQLite fast path compiles its statements from them, so a column cannot exist in one and
not the other. The Alembic migration is hand-written and a test checks it matches these models.

Portability rules (the same migration runs on SQLite and PostgreSQL): no server-side defaults or
functions, enumerations as strings with named CHECK constraints, ``Uuid`` for ids the
application generates, ``Double`` for prices and volumes (MetaTrader itself uses ``double``),
timezone-aware timestamps always written in UTC.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mtgate.domain.enums import OrderType, Platform
from mtgate.domain.orders import OrderAction, OrderStatus, Trigger

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Explicit constraint names, so both backends (and the migration) agree on them."""

ORDER_TYPE_NAMES: dict[OrderType, str] = {t: t.name.lower() for t in OrderType}
"""The stored spelling of each order type (``buy_stop_limit``): readable in SQL, unlike 6."""


def one_of(column: str, values: Iterable[str]) -> str:
    """``column = 'a' OR column = 'b' ...``: a CHECK as cheap as it gets.

    Not ``IN (...)``: SQLite evaluates a constant IN list of more than two values by building
    a temporary index on every INSERT, which cost ~13 µs of the hot path's budget.
    """
    return " OR ".join(f"{column} = '{value}'" for value in values)


_STATUSES = [s.value for s in OrderStatus]

# Portable timestamp: TIMESTAMP WITH TIME ZONE on PostgreSQL, an ISO string on SQLite.
_TS = DateTime(timezone=True)
# SQLite only auto-increments an ``INTEGER PRIMARY KEY``; PostgreSQL gets a BIGSERIAL.
_EVENT_ID = BigInteger().with_variant(Integer(), "sqlite")


def _partial_index(name: str, column: str) -> Index:
    """An index of the rows where ``column`` is set (both dialects support partial indexes)."""
    where = text(f"{column} IS NOT NULL")
    return Index(name, column, sqlite_where=where, postgresql_where=where)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ExecutionOrder(Base):
    """One order from intent to final status: the seed's ``execution_orders``, adapted."""

    __tablename__ = "execution_orders"

    order_id: Mapped[str] = mapped_column(Uuid(as_uuid=False), primary_key=True)
    client_order_id: Mapped[str] = mapped_column(String(20), unique=True)
    signal_id: Mapped[str | None] = mapped_column(String(64))
    account_login: Mapped[int] = mapped_column(BigInteger)
    account_server: Mapped[str] = mapped_column(String(64))
    terminal_id: Mapped[str] = mapped_column(String(64))
    platform: Mapped[str | None] = mapped_column(String(3))
    symbol: Mapped[str] = mapped_column(String(32))
    order_type: Mapped[str] = mapped_column(String(16))
    volume: Mapped[float] = mapped_column(Double)
    magic: Mapped[int] = mapped_column(BigInteger)
    comment: Mapped[str] = mapped_column(String(64))
    requested_price: Mapped[float | None] = mapped_column(Double)
    stoplimit_price: Mapped[float | None] = mapped_column(Double)
    stop_loss: Mapped[float | None] = mapped_column(Double)
    take_profit: Mapped[float | None] = mapped_column(Double)
    expiration: Mapped[datetime | None] = mapped_column(_TS)
    deviation_points: Mapped[int | None] = mapped_column(Integer)
    order_status: Mapped[str] = mapped_column(String(16))
    mt_order_id: Mapped[int | None] = mapped_column(BigInteger)
    mt_position_id: Mapped[int | None] = mapped_column(BigInteger)
    mt_deal_id: Mapped[int | None] = mapped_column(BigInteger)
    fill_price: Mapped[float | None] = mapped_column(Double)
    fill_volume: Mapped[float | None] = mapped_column(Double)
    slippage_points: Mapped[float | None] = mapped_column(Double)
    execution_time_ms: Mapped[float | None] = mapped_column(Double)
    rejection_code: Mapped[int | None] = mapped_column(Integer)
    rejection_name: Mapped[str | None] = mapped_column(String(64))
    rejection_reason: Mapped[str | None] = mapped_column(Text)
    retry_count: Mapped[int] = mapped_column(Integer)
    placed_at: Mapped[datetime] = mapped_column(_TS)
    updated_at: Mapped[datetime] = mapped_column(_TS)
    filled_at: Mapped[datetime | None] = mapped_column(_TS)
    action: Mapped[str] = mapped_column(String(8))
    position_ticket: Mapped[int | None] = mapped_column(BigInteger)
    by_ticket: Mapped[int | None] = mapped_column(BigInteger)
    server_time_at_send: Mapped[datetime | None] = mapped_column(_TS)
    """``OrderRecord.sent_server_ms``: a lower bound of the trade server's clock when the order
    was sent, stored as the epoch value it is (no zone conversion: it reads back unchanged);
    NULL when the session had seen no server time yet, and for orders journalled before 0004."""
    trade_deadline_at: Mapped[datetime | None] = mapped_column(_TS)
    """``OrderRecord.deadline_at_ms``: the bridge's time after which the terminal never starts
    the order's trade call (feature ``deadline``, docs/protocol.md §4.4); NULL when the
    terminal was given no deadline, and for orders journalled before 0005."""

    __table_args__ = (
        CheckConstraint("length(client_order_id) BETWEEN 1 AND 20", name="client_order_id_length"),
        CheckConstraint(one_of("action", [a.value for a in OrderAction]), name="action"),
        CheckConstraint(one_of("platform", [p.value for p in Platform]), name="platform"),
        CheckConstraint(one_of("order_type", ORDER_TYPE_NAMES.values()), name="order_type"),
        CheckConstraint(one_of("order_status", _STATUSES), name="order_status"),
        CheckConstraint("retry_count >= 0", name="retry_count"),
        # Partial: most orders have no signal id and no ticket when they are inserted, and an
        # index entry not written is a page the hot path's commit does not write.
        _partial_index("ix_execution_orders_signal", "signal_id"),
        Index("ix_execution_orders_account_time", "account_login", "account_server", "placed_at"),
        _partial_index("ix_execution_orders_mt_id", "mt_order_id"),
        Index("ix_execution_orders_status", "order_status"),
    )


class OrderEventRow(Base):
    """The audit trail: one row per status change or recorded modification of an order."""

    __tablename__ = "order_events"

    id: Mapped[int] = mapped_column(_EVENT_ID, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(
        Uuid(as_uuid=False), ForeignKey("execution_orders.order_id")
    )
    client_order_id: Mapped[str] = mapped_column(String(20))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str | None] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(_TS)

    __table_args__ = (
        CheckConstraint(one_of("from_status", _STATUSES), name="from_status"),
        CheckConstraint(one_of("to_status", _STATUSES), name="to_status"),
        CheckConstraint(one_of("trigger", [t.value for t in Trigger]), name="trigger"),
        Index("ix_order_events_client_order_id", "client_order_id"),
    )


class BridgeHealthMetric(Base):
    """A periodic health sample of one terminal session: the seed's ``bridge_health_metrics``."""

    __tablename__ = "bridge_health_metrics"

    metric_id: Mapped[uuid.UUID] = mapped_column(Uuid(as_uuid=True), primary_key=True)
    terminal_id: Mapped[str] = mapped_column(String(64))
    account_login: Mapped[int | None] = mapped_column(BigInteger)
    account_server: Mapped[str | None] = mapped_column(String(64))
    connection_status: Mapped[str] = mapped_column(String(20))
    last_heartbeat: Mapped[datetime | None] = mapped_column(_TS)
    execution_latency_ms: Mapped[float | None] = mapped_column(Double)
    rejection_rate: Mapped[float | None] = mapped_column(Double)
    sync_delay_ms: Mapped[float | None] = mapped_column(Double)
    recorded_at: Mapped[datetime] = mapped_column(_TS)
    # Migration 0009: the health monitor's connection-quality figures (docs/schema.md).
    heartbeat_rtt_ms: Mapped[float | None] = mapped_column(Double)
    latency_p50_ms: Mapped[float | None] = mapped_column(Double)
    latency_p99_ms: Mapped[float | None] = mapped_column(Double)
    disconnects: Mapped[int | None] = mapped_column(Integer)
    flaps: Mapped[int | None] = mapped_column(Integer)
    snapshot_age_ms: Mapped[float | None] = mapped_column(Double)
    ready: Mapped[bool | None] = mapped_column(Boolean)

    __table_args__ = (
        Index("ix_bridge_health_metrics_terminal_time", "terminal_id", "recorded_at"),
        Index("ix_bridge_health_metrics_account_time", "account_login", "recorded_at"),
    )


class JournalIntent(Base):
    """The SQLite journal's intent log: one small row per new order, committed before the
    order's frame is sent, and folded into ``execution_orders`` and ``order_events`` shortly
    after (then deleted). A row still here at start-up is folded in before anything else runs.
    The PostgreSQL journal writes the order tables directly and leaves this table empty."""

    __tablename__ = "journal_intents"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_order_id: Mapped[str] = mapped_column(String(20))
    payload: Mapped[bytes] = mapped_column(LargeBinary)


QUARANTINE_KINDS = ("intent", "write")


class JournalQuarantineRow(Base):
    """What the journal could not write, kept for a human instead of dropped (migration 0004).

    ``kind`` ``intent``: an order whose intent was committed (so the order may have been sent)
    but whose rows the order tables refused; the intent-log row moves here in the transaction
    that deletes it. ``write``: a status change or note whose guarded UPDATE failed or matched
    no row. ``payload`` is a JSON document of the rows as they would have been written (an intent
    that could not even be decoded keeps its intent-log bytes). No constraint may refuse a row:
    the quarantine is the last place a write can go. Normally empty."""

    __tablename__ = "journal_quarantine"

    id: Mapped[int] = mapped_column(_EVENT_ID, primary_key=True, autoincrement=True)
    client_order_id: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(8))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    error: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(_TS)

    __table_args__ = (
        CheckConstraint(one_of("kind", QUARANTINE_KINDS), name="kind"),
        Index("ix_journal_quarantine_client_order_id", "client_order_id"),
    )


POSITION_STATES = ("open", "closed")
SIDES = ("buy", "sell")
TRAILING_STATES = ("active", "finished")


class PositionRow(Base):
    """A position as the synchronizer last saw it (docs/schema.md, "Positions and deals").

    The terminal decides what exists; this row is the bridge's last view of it, kept after
    the close with the reason the deal history gives. ``client_order_id`` follows the
    position through MT4 renumbering (``origin_ticket``: the first ticket of the chain)."""

    __tablename__ = "positions"

    id: Mapped[int] = mapped_column(_EVENT_ID, primary_key=True, autoincrement=True)
    account_login: Mapped[int] = mapped_column(BigInteger)
    account_server: Mapped[str] = mapped_column(String(64))
    ticket: Mapped[int] = mapped_column(BigInteger)
    identifier: Mapped[int] = mapped_column(BigInteger)
    origin_ticket: Mapped[int] = mapped_column(BigInteger)
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    volume: Mapped[float] = mapped_column(Double)
    price_open: Mapped[float] = mapped_column(Double)
    stop_loss: Mapped[float | None] = mapped_column(Double)
    take_profit: Mapped[float | None] = mapped_column(Double)
    magic: Mapped[int] = mapped_column(BigInteger)
    comment: Mapped[str] = mapped_column(String(64))
    client_order_id: Mapped[str | None] = mapped_column(String(20))
    external: Mapped[bool] = mapped_column(Boolean)
    state: Mapped[str] = mapped_column(String(8))
    profit: Mapped[float] = mapped_column(Double)
    opened_at: Mapped[datetime] = mapped_column(_TS)
    closed_at: Mapped[datetime | None] = mapped_column(_TS)
    close_reason: Mapped[str | None] = mapped_column(String(16))
    close_deal: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(_TS)

    __table_args__ = (
        UniqueConstraint("account_login", "account_server", "ticket"),
        CheckConstraint(one_of("side", SIDES), name="side"),
        CheckConstraint(one_of("state", POSITION_STATES), name="state"),
        Index("ix_positions_open", "account_login", "account_server", "state"),
        _partial_index("ix_positions_client_order_id", "client_order_id"),
    )


class DealRow(Base):
    """One deal of an account's history, synced incrementally (MT4: synthetic deals)."""

    __tablename__ = "deals"

    id: Mapped[int] = mapped_column(_EVENT_ID, primary_key=True, autoincrement=True)
    account_login: Mapped[int] = mapped_column(BigInteger)
    account_server: Mapped[str] = mapped_column(String(64))
    ticket: Mapped[int] = mapped_column(BigInteger)
    order_ticket: Mapped[int] = mapped_column(BigInteger)
    position_id: Mapped[int] = mapped_column(BigInteger)
    symbol: Mapped[str] = mapped_column(String(32))
    deal_type: Mapped[int] = mapped_column(Integer)
    entry: Mapped[int] = mapped_column(Integer)
    reason: Mapped[int] = mapped_column(Integer)
    volume: Mapped[float] = mapped_column(Double)
    price: Mapped[float] = mapped_column(Double)
    profit: Mapped[float] = mapped_column(Double)
    swap: Mapped[float] = mapped_column(Double)
    commission: Mapped[float] = mapped_column(Double)
    magic: Mapped[int] = mapped_column(BigInteger)
    comment: Mapped[str] = mapped_column(String(64))
    client_order_id: Mapped[str | None] = mapped_column(String(20))
    time: Mapped[datetime] = mapped_column(_TS)

    __table_args__ = (
        UniqueConstraint("account_login", "account_server", "ticket"),
        Index("ix_deals_account_time", "account_login", "account_server", "time"),
        Index("ix_deals_position", "account_login", "position_id"),
    )


class AccountStateRow(Base):
    """The last synced figures of an account (one row per account, replaced on change)."""

    __tablename__ = "account_states"

    account_login: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account_server: Mapped[str] = mapped_column(String(64), primary_key=True)
    currency: Mapped[str] = mapped_column(String(8))
    leverage: Mapped[int] = mapped_column(Integer)
    balance: Mapped[float] = mapped_column(Double)
    credit: Mapped[float] = mapped_column(Double)
    equity: Mapped[float] = mapped_column(Double)
    margin: Mapped[float] = mapped_column(Double)
    margin_free: Mapped[float] = mapped_column(Double)
    margin_level: Mapped[float] = mapped_column(Double)
    positions: Mapped[int] = mapped_column(Integer)
    pending_orders: Mapped[int] = mapped_column(Integer)
    stale: Mapped[bool] = mapped_column(Boolean)
    history_cursor: Mapped[datetime | None] = mapped_column(_TS)
    """Time of the newest deal or history order synced: where the next session resumes."""
    synced_at: Mapped[datetime] = mapped_column(_TS)


class MarginLevelSample(Base):
    """Margin-level history: one sample per account at most every sampling interval."""

    __tablename__ = "margin_level_history"

    id: Mapped[int] = mapped_column(_EVENT_ID, primary_key=True, autoincrement=True)
    account_login: Mapped[int] = mapped_column(BigInteger)
    account_server: Mapped[str] = mapped_column(String(64))
    balance: Mapped[float] = mapped_column(Double)
    equity: Mapped[float] = mapped_column(Double)
    margin: Mapped[float] = mapped_column(Double)
    margin_free: Mapped[float] = mapped_column(Double)
    margin_level: Mapped[float] = mapped_column(Double)
    at: Mapped[datetime] = mapped_column(_TS)

    __table_args__ = (
        Index("ix_margin_level_history_account_time", "account_login", "account_server", "at"),
    )


class PositionEventRow(Base):
    """What happened to a position: the synchronizer's changes and the bridge's own
    operations on it (modify, close, trailing-stop moves), in order."""

    __tablename__ = "position_events"

    id: Mapped[int] = mapped_column(_EVENT_ID, primary_key=True, autoincrement=True)
    account_login: Mapped[int] = mapped_column(BigInteger)
    account_server: Mapped[str] = mapped_column(String(64))
    ticket: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    client_order_id: Mapped[str | None] = mapped_column(String(20))
    detail: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(_TS)

    __table_args__ = (
        Index("ix_position_events_ticket", "account_login", "account_server", "ticket"),
    )


class TrailingStopRow(Base):
    """A bridge-managed trailing stop; active rows are reloaded at start-up."""

    __tablename__ = "trailing_stops"

    id: Mapped[int] = mapped_column(_EVENT_ID, primary_key=True, autoincrement=True)
    account_login: Mapped[int] = mapped_column(BigInteger)
    account_server: Mapped[str] = mapped_column(String(64))
    ticket: Mapped[int] = mapped_column(BigInteger)
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    distance_points: Mapped[int] = mapped_column(Integer)
    step_points: Mapped[int] = mapped_column(Integer)
    activation_points: Mapped[int | None] = mapped_column(Integer)
    min_interval_ms: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(8))
    stop_loss: Mapped[float | None] = mapped_column(Double)
    moves: Mapped[int] = mapped_column(Integer)
    last_moved_at: Mapped[datetime | None] = mapped_column(_TS)
    finished_reason: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(_TS)
    updated_at: Mapped[datetime] = mapped_column(_TS)

    __table_args__ = (
        CheckConstraint(one_of("side", SIDES), name="side"),
        CheckConstraint(one_of("state", TRAILING_STATES), name="state"),
        CheckConstraint("distance_points > 0 AND step_points > 0", name="distances"),
        Index("ix_trailing_stops_position", "account_login", "account_server", "ticket"),
        Index("ix_trailing_stops_state", "state"),
    )


class OutboxRow(Base):
    """The transactional outbox (docs/events.md): one row per execution event, inserted in the
    transaction of the state change it describes, relayed to the sinks after.

    ``seq`` is the stream's position: never reused (SQLite ``AUTOINCREMENT``), and in commit
    order (SQLite has one writer at a time; on PostgreSQL every inserting transaction first
    takes :data:`mtgate.store.outbox.PG_LOCK`), so a reader that has seen ``seq`` N has seen
    every event before it. ``data`` is the event's JSON document; ``key`` the partition key
    (the account, or the terminal for a terminal without one)."""

    __tablename__ = "outbox"

    seq: Mapped[int] = mapped_column(_EVENT_ID, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36))
    type: Mapped[str] = mapped_column(String(48))
    key: Mapped[str] = mapped_column(String(96))
    account_login: Mapped[int | None] = mapped_column(BigInteger)
    account_server: Mapped[str | None] = mapped_column(String(64))
    terminal_id: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(_TS)

    __table_args__ = (
        Index("ix_outbox_at", "at"),
        {"sqlite_autoincrement": True},
    )


class OutboxCursorRow(Base):
    """How far each durable sink has relayed the outbox: it resumes after ``seq``."""

    __tablename__ = "outbox_cursors"

    sink: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(_TS)


execution_orders = Base.metadata.tables[ExecutionOrder.__tablename__]
journal_intents = Base.metadata.tables[JournalIntent.__tablename__]
journal_quarantine = Base.metadata.tables[JournalQuarantineRow.__tablename__]
order_events = Base.metadata.tables[OrderEventRow.__tablename__]
bridge_health_metrics = Base.metadata.tables[BridgeHealthMetric.__tablename__]
positions = Base.metadata.tables[PositionRow.__tablename__]
deals = Base.metadata.tables[DealRow.__tablename__]
account_states = Base.metadata.tables[AccountStateRow.__tablename__]
margin_level_history = Base.metadata.tables[MarginLevelSample.__tablename__]
position_events = Base.metadata.tables[PositionEventRow.__tablename__]
trailing_stops = Base.metadata.tables[TrailingStopRow.__tablename__]
outbox = Base.metadata.tables[OutboxRow.__tablename__]
outbox_cursors = Base.metadata.tables[OutboxCursorRow.__tablename__]
