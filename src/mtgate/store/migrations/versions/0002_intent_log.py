"""The SQLite journal's intent log (journal_intents).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

A new order is made durable by one small row here before its frame is sent; the order tables
are written behind it in batches. See docs/schema.md, "Cost of a journal write".
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "journal_intents",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("client_order_id", sa.String(20), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("journal_intents")
