"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

Hand-written, explicit operations only. The same migration runs on SQLite and PostgreSQL:
alter existing tables inside ``with op.batch_alter_table(...)`` (SQLite cannot ALTER most
things), write literal values instead of importing enums from the domain (a migration must
keep meaning what it meant when it ran), and no server-side functions or defaults.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}

revision: str = ${repr(up_revision)}
down_revision: str | None = ${repr(down_revision)}
branch_labels: str | None = ${repr(branch_labels)}
depends_on: str | None = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
