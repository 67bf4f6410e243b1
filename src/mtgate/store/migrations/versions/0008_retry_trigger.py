"""order_events.trigger accepts ``retry``: a new attempt of an order proven absent.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

An order whose attempt had an unknown outcome and was then proven absent may be tried again
instead of ending ``not_found`` (mtgate.execution.retries): its status goes back from
``unknown`` to ``submitted`` on the new trigger ``retry``. Only the CHECK changes, dropped
and created again in batch mode (SQLite cannot alter a constraint in place); values are
spelled out literally, as in 0001 and 0007.

A downgrade refuses to run while the journal holds a retry event: the old CHECK would refuse
the row, and an order's audit trail is not dropped to make it fit.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None

TRIGGERS_0007 = (
    "send",
    "refuse",
    "fill",
    "place",
    "reject",
    "lose",
    "cancel",
    "expire",
    "prove_absent",
    "override_fill",
    "override_reject",
    "override_absent",
    "override_cancel",
)
CHECK = "ck_order_events_trigger"


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return " OR ".join(f"{column} = '{value}'" for value in values)


def _replace_check(values: tuple[str, ...]) -> None:
    with op.batch_alter_table("order_events") as batch:
        batch.drop_constraint(op.f(CHECK), type_="check")
        batch.create_check_constraint(op.f(CHECK), sa.text(_one_of("trigger", values)))


def upgrade() -> None:
    _replace_check((*TRIGGERS_0007, "retry"))


def downgrade() -> None:
    found = (
        op.get_bind()
        .execute(sa.text("SELECT count(*) FROM order_events WHERE trigger = 'retry'"))
        .scalar_one()
    )
    if found:
        raise RuntimeError(
            f"order_events holds {found} retry event(s), which the schema before 0008 cannot "
            "hold; export them before downgrading (nothing was changed)"
        )
    _replace_check(TRIGGERS_0007)
