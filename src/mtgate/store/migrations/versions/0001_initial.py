"""Initial journal schema: execution_orders, order_events, bridge_health_metrics.

Revision ID: 0001
Revises:
Create Date: 2025-11-25

Hand-written, explicit operations; portable to SQLite and PostgreSQL (see docs/schema.md).
Enumerations are spelled out literally: this migration must keep creating what it created
even after the domain enums grow (a later migration then alters the CHECK constraints).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

STATUSES = (
    "new",
    "submitted",
    "placed",
    "filled",
    "rejected",
    "unknown",
    "cancelled",
    "expired",
    "not_found",
)
TRIGGERS = ("send", "refuse", "fill", "place", "reject", "lose", "cancel", "expire", "prove_absent")
ORDER_TYPES = (
    "buy",
    "sell",
    "buy_limit",
    "sell_limit",
    "buy_stop",
    "sell_stop",
    "buy_stop_limit",
    "sell_stop_limit",
)
PLATFORMS = ("mt4", "mt5")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    # OR-chain rather than IN: SQLite builds a temporary index per row for a constant IN list.
    return " OR ".join(f"{column} = '{value}'" for value in values)


def _check(sqltext: str, name: str) -> sa.CheckConstraint:
    # op.f(): the name is final, not run through the models' naming convention again.
    return sa.CheckConstraint(sqltext, name=op.f(name))


def _partial_index(name: str, table: str, column: str) -> None:
    where = sa.text(f"{column} IS NOT NULL")
    op.create_index(op.f(name), table, [column], sqlite_where=where, postgresql_where=where)


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _create_execution_orders() -> None:
    op.create_table(
        "execution_orders",
        sa.Column("order_id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("client_order_id", sa.String(20), nullable=False),
        sa.Column("signal_id", sa.String(64), nullable=True),
        sa.Column("account_login", sa.BigInteger(), nullable=False),
        sa.Column("account_server", sa.String(64), nullable=False),
        sa.Column("terminal_id", sa.String(64), nullable=False),
        sa.Column("platform", sa.String(3), nullable=True),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("order_type", sa.String(16), nullable=False),
        sa.Column("volume", sa.Double(), nullable=False),
        sa.Column("magic", sa.BigInteger(), nullable=False),
        sa.Column("comment", sa.String(64), nullable=False),
        sa.Column("requested_price", sa.Double(), nullable=True),
        sa.Column("stoplimit_price", sa.Double(), nullable=True),
        sa.Column("stop_loss", sa.Double(), nullable=True),
        sa.Column("take_profit", sa.Double(), nullable=True),
        sa.Column("expiration", _ts(), nullable=True),
        sa.Column("deviation_points", sa.Integer(), nullable=True),
        sa.Column("order_status", sa.String(16), nullable=False),
        sa.Column("mt_order_id", sa.BigInteger(), nullable=True),
        sa.Column("mt_position_id", sa.BigInteger(), nullable=True),
        sa.Column("mt_deal_id", sa.BigInteger(), nullable=True),
        sa.Column("fill_price", sa.Double(), nullable=True),
        sa.Column("fill_volume", sa.Double(), nullable=True),
        sa.Column("slippage_points", sa.Double(), nullable=True),
        sa.Column("execution_time_ms", sa.Double(), nullable=True),
        sa.Column("rejection_code", sa.Integer(), nullable=True),
        sa.Column("rejection_name", sa.String(64), nullable=True),
        sa.Column("rejection_reason", sa.Text(), nullable=True),
        sa.Column("retry_count", sa.Integer(), nullable=False),
        sa.Column("placed_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.Column("filled_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_execution_orders")),
        sa.UniqueConstraint("client_order_id", name=op.f("uq_execution_orders_client_order_id")),
        _check(
            "length(client_order_id) BETWEEN 1 AND 20",
            "ck_execution_orders_client_order_id_length",
        ),
        _check(_one_of("platform", PLATFORMS), "ck_execution_orders_platform"),
        _check(_one_of("order_type", ORDER_TYPES), "ck_execution_orders_order_type"),
        _check(_one_of("order_status", STATUSES), "ck_execution_orders_order_status"),
        _check("retry_count >= 0", "ck_execution_orders_retry_count"),
    )
    _partial_index("ix_execution_orders_signal", "execution_orders", "signal_id")
    op.create_index(
        op.f("ix_execution_orders_account_time"),
        "execution_orders",
        ["account_login", "account_server", "placed_at"],
    )
    _partial_index("ix_execution_orders_mt_id", "execution_orders", "mt_order_id")
    op.create_index(op.f("ix_execution_orders_status"), "execution_orders", ["order_status"])


def _create_order_events() -> None:
    op.create_table(
        "order_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
            autoincrement=True,
        ),
        sa.Column("order_id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("client_order_id", sa.String(20), nullable=False),
        sa.Column("from_status", sa.String(16), nullable=True),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_events")),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["execution_orders.order_id"],
            name=op.f("fk_order_events_order_id_execution_orders"),
        ),
        _check(_one_of("from_status", STATUSES), "ck_order_events_from_status"),
        _check(_one_of("to_status", STATUSES), "ck_order_events_to_status"),
        _check(_one_of("trigger", TRIGGERS), "ck_order_events_trigger"),
    )
    op.create_index(op.f("ix_order_events_client_order_id"), "order_events", ["client_order_id"])


def _create_bridge_health_metrics() -> None:
    op.create_table(
        "bridge_health_metrics",
        sa.Column("metric_id", sa.Uuid(), nullable=False),
        sa.Column("terminal_id", sa.String(64), nullable=False),
        sa.Column("account_login", sa.BigInteger(), nullable=True),
        sa.Column("account_server", sa.String(64), nullable=True),
        sa.Column("connection_status", sa.String(20), nullable=False),
        sa.Column("last_heartbeat", _ts(), nullable=True),
        sa.Column("execution_latency_ms", sa.Double(), nullable=True),
        sa.Column("rejection_rate", sa.Double(), nullable=True),
        sa.Column("sync_delay_ms", sa.Double(), nullable=True),
        sa.Column("recorded_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("metric_id", name=op.f("pk_bridge_health_metrics")),
    )
    op.create_index(
        op.f("ix_bridge_health_metrics_terminal_time"),
        "bridge_health_metrics",
        ["terminal_id", "recorded_at"],
    )
    op.create_index(
        op.f("ix_bridge_health_metrics_account_time"),
        "bridge_health_metrics",
        ["account_login", "recorded_at"],
    )


def upgrade() -> None:
    _create_execution_orders()
    _create_order_events()
    _create_bridge_health_metrics()


def downgrade() -> None:
    op.drop_table("bridge_health_metrics")
    op.drop_table("order_events")
    op.drop_table("execution_orders")
