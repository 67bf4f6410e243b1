"""execution_orders.trade_deadline_at: when the terminal stops being allowed to start a trade.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

Nullable: orders journalled before this revision, and orders sent to a terminal without the
feature ``deadline`` (docs/protocol.md §4.4), have none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("execution_orders") as batch:
        batch.add_column(sa.Column("trade_deadline_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("execution_orders") as batch:
        batch.drop_column("trade_deadline_at")
