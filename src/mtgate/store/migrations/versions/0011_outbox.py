"""The transactional outbox of execution events and the sinks' cursors (docs/events.md).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03

``outbox.seq`` is never reused: on SQLite the table is ``AUTOINCREMENT`` (a pruned tail
cannot hand its numbers out again), on PostgreSQL a BIGSERIAL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None

_TS = sa.DateTime(timezone=True)
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("seq", _ID, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("type", sa.String(48), nullable=False),
        sa.Column("key", sa.String(96), nullable=False),
        sa.Column("account_login", sa.BigInteger(), nullable=True),
        sa.Column("account_server", sa.String(64), nullable=True),
        sa.Column("terminal_id", sa.String(64), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_outbox")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_outbox_at"), "outbox", ["at"])
    op.create_table(
        "outbox_cursors",
        sa.Column("sink", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("sink", name=op.f("pk_outbox_cursors")),
    )


def downgrade() -> None:
    op.drop_table("outbox_cursors")
    op.drop_index(op.f("ix_outbox_at"), table_name="outbox")
    op.drop_table("outbox")
