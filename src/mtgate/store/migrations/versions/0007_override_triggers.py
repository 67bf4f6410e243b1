"""order_events.trigger accepts the manual overrides' triggers (override_fill, ...).

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-14

A human's override of an order in doubt is journalled like any status change, with one of
four new triggers (docs/operations.md, "Overriding an order"). Only the CHECK changes; it is
dropped and created again in batch mode (SQLite cannot alter a constraint in place). The
values are spelled out literally, as in 0001. 0006 was reserved for another change that did
not exist yet when this was written: this revision follows 0005, the newest one then.

A downgrade refuses to run while the journal holds an override: the old CHECK would refuse
the row, and the audit trail of a human's decision must not be dropped to make it fit.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

TRIGGERS_0001 = (
    "send",
    "refuse",
    "fill",
    "place",
    "reject",
    "lose",
    "cancel",
    "expire",
    "prove_absent",
)
OVERRIDES = ("override_fill", "override_reject", "override_absent", "override_cancel")
CHECK = "ck_order_events_trigger"


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return " OR ".join(f"{column} = '{value}'" for value in values)


def _replace_check(values: tuple[str, ...]) -> None:
    with op.batch_alter_table("order_events") as batch:
        batch.drop_constraint(op.f(CHECK), type_="check")
        batch.create_check_constraint(op.f(CHECK), sa.text(_one_of("trigger", values)))


def upgrade() -> None:
    _replace_check(TRIGGERS_0001 + OVERRIDES)


def downgrade() -> None:
    found = (
        op.get_bind()
        .execute(
            sa.text(f"SELECT count(*) FROM order_events WHERE {_one_of('trigger', OVERRIDES)}")
        )
        .scalar_one()
    )
    if found:
        raise RuntimeError(
            f"order_events holds {found} manual override event(s), which the schema before "
            "0007 cannot hold; export them before downgrading (nothing was changed)"
        )
    _replace_check(TRIGGERS_0001)
