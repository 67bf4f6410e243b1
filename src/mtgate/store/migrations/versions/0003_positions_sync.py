"""Positions, deals, account states, margin-level history, position events, trailing stops;
close orders in execution_orders (action, position_ticket, by_ticket).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

Enumerations are spelled out literally, as in 0001. ``execution_orders`` gains its columns in
batch mode (SQLite cannot add a CHECK constraint in place); rows written before this revision
are orders that open positions, so ``action`` is filled with ``open`` before it becomes NOT
NULL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

ACTIONS = ("open", "close", "close_by")
SIDES = ("buy", "sell")
POSITION_STATES = ("open", "closed")
TRAILING_STATES = ("active", "finished")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return " OR ".join(f"{column} = '{value}'" for value in values)


def _check(sqltext: str, name: str) -> sa.CheckConstraint:
    return sa.CheckConstraint(sqltext, name=op.f(name))


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _id() -> sa.Column[int]:
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        nullable=False,
        autoincrement=True,
    )


def _account() -> list[sa.Column[object]]:
    return [
        sa.Column("account_login", sa.BigInteger(), nullable=False),
        sa.Column("account_server", sa.String(64), nullable=False),
    ]


def _close_orders() -> None:
    with op.batch_alter_table("execution_orders") as batch:
        batch.add_column(sa.Column("action", sa.String(8), nullable=True))
        batch.add_column(sa.Column("position_ticket", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("by_ticket", sa.BigInteger(), nullable=True))
    op.execute("UPDATE execution_orders SET action = 'open'")
    with op.batch_alter_table("execution_orders") as batch:
        batch.alter_column("action", existing_type=sa.String(8), nullable=False)
        batch.create_check_constraint(
            op.f("ck_execution_orders_action"), sa.text(_one_of("action", ACTIONS))
        )


def _create_positions() -> None:
    op.create_table(
        "positions",
        _id(),
        *_account(),
        sa.Column("ticket", sa.BigInteger(), nullable=False),
        sa.Column("identifier", sa.BigInteger(), nullable=False),
        sa.Column("origin_ticket", sa.BigInteger(), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("volume", sa.Double(), nullable=False),
        sa.Column("price_open", sa.Double(), nullable=False),
        sa.Column("stop_loss", sa.Double(), nullable=True),
        sa.Column("take_profit", sa.Double(), nullable=True),
        sa.Column("magic", sa.BigInteger(), nullable=False),
        sa.Column("comment", sa.String(64), nullable=False),
        sa.Column("client_order_id", sa.String(20), nullable=True),
        sa.Column("external", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("profit", sa.Double(), nullable=False),
        sa.Column("opened_at", _ts(), nullable=False),
        sa.Column("closed_at", _ts(), nullable=True),
        sa.Column("close_reason", sa.String(16), nullable=True),
        sa.Column("close_deal", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_positions")),
        sa.UniqueConstraint(
            "account_login", "account_server", "ticket", name=op.f("uq_positions_account_login")
        ),
        _check(_one_of("side", SIDES), "ck_positions_side"),
        _check(_one_of("state", POSITION_STATES), "ck_positions_state"),
    )
    op.create_index(
        op.f("ix_positions_open"), "positions", ["account_login", "account_server", "state"]
    )
    where = sa.text("client_order_id IS NOT NULL")
    op.create_index(
        op.f("ix_positions_client_order_id"),
        "positions",
        ["client_order_id"],
        sqlite_where=where,
        postgresql_where=where,
    )


def _create_deals() -> None:
    op.create_table(
        "deals",
        _id(),
        *_account(),
        sa.Column("ticket", sa.BigInteger(), nullable=False),
        sa.Column("order_ticket", sa.BigInteger(), nullable=False),
        sa.Column("position_id", sa.BigInteger(), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("deal_type", sa.Integer(), nullable=False),
        sa.Column("entry", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Integer(), nullable=False),
        sa.Column("volume", sa.Double(), nullable=False),
        sa.Column("price", sa.Double(), nullable=False),
        sa.Column("profit", sa.Double(), nullable=False),
        sa.Column("swap", sa.Double(), nullable=False),
        sa.Column("commission", sa.Double(), nullable=False),
        sa.Column("magic", sa.BigInteger(), nullable=False),
        sa.Column("comment", sa.String(64), nullable=False),
        sa.Column("client_order_id", sa.String(20), nullable=True),
        sa.Column("time", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deals")),
        sa.UniqueConstraint(
            "account_login", "account_server", "ticket", name=op.f("uq_deals_account_login")
        ),
    )
    op.create_index(
        op.f("ix_deals_account_time"), "deals", ["account_login", "account_server", "time"]
    )
    op.create_index(op.f("ix_deals_position"), "deals", ["account_login", "position_id"])


def _create_account_states() -> None:
    op.create_table(
        "account_states",
        *_account(),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("leverage", sa.Integer(), nullable=False),
        sa.Column("balance", sa.Double(), nullable=False),
        sa.Column("credit", sa.Double(), nullable=False),
        sa.Column("equity", sa.Double(), nullable=False),
        sa.Column("margin", sa.Double(), nullable=False),
        sa.Column("margin_free", sa.Double(), nullable=False),
        sa.Column("margin_level", sa.Double(), nullable=False),
        sa.Column("positions", sa.Integer(), nullable=False),
        sa.Column("pending_orders", sa.Integer(), nullable=False),
        sa.Column("stale", sa.Boolean(), nullable=False),
        sa.Column("history_cursor", _ts(), nullable=True),
        sa.Column("synced_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("account_login", "account_server", name=op.f("pk_account_states")),
    )


def _create_margin_level_history() -> None:
    op.create_table(
        "margin_level_history",
        _id(),
        *_account(),
        sa.Column("balance", sa.Double(), nullable=False),
        sa.Column("equity", sa.Double(), nullable=False),
        sa.Column("margin", sa.Double(), nullable=False),
        sa.Column("margin_free", sa.Double(), nullable=False),
        sa.Column("margin_level", sa.Double(), nullable=False),
        sa.Column("at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_margin_level_history")),
    )
    op.create_index(
        op.f("ix_margin_level_history_account_time"),
        "margin_level_history",
        ["account_login", "account_server", "at"],
    )


def _create_position_events() -> None:
    op.create_table(
        "position_events",
        _id(),
        *_account(),
        sa.Column("ticket", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("client_order_id", sa.String(20), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_position_events")),
    )
    op.create_index(
        op.f("ix_position_events_ticket"),
        "position_events",
        ["account_login", "account_server", "ticket"],
    )


def _create_trailing_stops() -> None:
    op.create_table(
        "trailing_stops",
        _id(),
        *_account(),
        sa.Column("ticket", sa.BigInteger(), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("distance_points", sa.Integer(), nullable=False),
        sa.Column("step_points", sa.Integer(), nullable=False),
        sa.Column("activation_points", sa.Integer(), nullable=True),
        sa.Column("min_interval_ms", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("stop_loss", sa.Double(), nullable=True),
        sa.Column("moves", sa.Integer(), nullable=False),
        sa.Column("last_moved_at", _ts(), nullable=True),
        sa.Column("finished_reason", sa.String(64), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trailing_stops")),
        _check(_one_of("side", SIDES), "ck_trailing_stops_side"),
        _check(_one_of("state", TRAILING_STATES), "ck_trailing_stops_state"),
        _check("distance_points > 0 AND step_points > 0", "ck_trailing_stops_distances"),
    )
    op.create_index(
        op.f("ix_trailing_stops_position"),
        "trailing_stops",
        ["account_login", "account_server", "ticket"],
    )
    op.create_index(op.f("ix_trailing_stops_state"), "trailing_stops", ["state"])


def upgrade() -> None:
    _close_orders()
    _create_positions()
    _create_deals()
    _create_account_states()
    _create_margin_level_history()
    _create_position_events()
    _create_trailing_stops()


def downgrade() -> None:
    for table in (
        "trailing_stops",
        "position_events",
        "margin_level_history",
        "account_states",
        "deals",
        "positions",
    ):
        op.drop_table(table)
    with op.batch_alter_table("execution_orders") as batch:
        batch.drop_constraint(op.f("ck_execution_orders_action"), type_="check")
        batch.drop_column("by_ticket")
        batch.drop_column("position_ticket")
        batch.drop_column("action")
