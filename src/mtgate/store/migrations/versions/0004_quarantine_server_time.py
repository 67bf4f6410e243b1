"""The journal's quarantine (journal_quarantine); execution_orders.server_time_at_send.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-10

``journal_quarantine`` keeps what the journal could not write (an intent the order tables
refused, a status change whose row was missing) for a human, instead of dropping it.
``server_time_at_send`` is nullable: orders journalled before this revision have none.
The CHECK's values are spelled out literally, as in 0001.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

QUARANTINE_KINDS = ("intent", "write")


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("execution_orders") as batch:
        batch.add_column(sa.Column("server_time_at_send", _ts(), nullable=True))
    op.create_table(
        "journal_quarantine",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
            autoincrement=True,
        ),
        sa.Column("client_order_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journal_quarantine")),
        sa.CheckConstraint(
            " OR ".join(f"kind = '{kind}'" for kind in QUARANTINE_KINDS),
            name=op.f("ck_journal_quarantine_kind"),
        ),
    )
    op.create_index(
        op.f("ix_journal_quarantine_client_order_id"), "journal_quarantine", ["client_order_id"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_journal_quarantine_client_order_id"), table_name="journal_quarantine")
    op.drop_table("journal_quarantine")
    with op.batch_alter_table("execution_orders") as batch:
        batch.drop_column("server_time_at_send")
