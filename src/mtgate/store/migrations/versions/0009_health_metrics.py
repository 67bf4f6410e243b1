"""bridge_health_metrics: connection-quality columns of the health monitor.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-20

Seven columns the health monitor (docs/operations.md, "Connection health and alerts") writes
with every sample: heartbeat round trip, request latency percentiles over the recent window,
disconnects since start and within the flap window, the age of the account's last snapshot,
and whether the terminal was READY. All nullable: rows written before this revision have
none, and a terminal that is not connected has no round trip nor latency to report. The
existing columns keep their meaning. Added in batch mode, as every change to an existing
table (docs/schema.md, "Writing the next migration").
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None

DOUBLES = ("heartbeat_rtt_ms", "latency_p50_ms", "latency_p99_ms", "snapshot_age_ms")
COUNTS = ("disconnects", "flaps")


def upgrade() -> None:
    with op.batch_alter_table("bridge_health_metrics") as batch:
        for name in DOUBLES:
            batch.add_column(sa.Column(name, sa.Double(), nullable=True))
        for name in COUNTS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=True))
        batch.add_column(sa.Column("ready", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bridge_health_metrics") as batch:
        for name in ("ready", *reversed(COUNTS), *reversed(DOUBLES)):
            batch.drop_column(name)
