"""order_events.trigger accepts ``override_retry``: a human forced a new attempt.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

An order refused with a code that proves nothing executed, or proven absent, may be tried
again when an operator forces it (mtgate.execution.forced, docs/operations.md "Overriding an
order"): its status goes from ``rejected`` / ``not_found`` back to ``submitted`` on the new
trigger. Only the CHECK changes, as in 0007 and 0008; values are spelled out literally.

A downgrade refuses to run while the journal holds such an event.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None

TRIGGERS_0008 = (
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
    "retry",
)
CHECK = "ck_order_events_trigger"


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return " OR ".join(f"{column} = '{value}'" for value in values)


def _replace_check(values: tuple[str, ...]) -> None:
    with op.batch_alter_table("order_events") as batch:
        batch.drop_constraint(op.f(CHECK), type_="check")
        batch.create_check_constraint(op.f(CHECK), sa.text(_one_of("trigger", values)))


def upgrade() -> None:
    _replace_check((*TRIGGERS_0008, "override_retry"))


def downgrade() -> None:
    found = (
        op.get_bind()
        .execute(sa.text("SELECT count(*) FROM order_events WHERE trigger = 'override_retry'"))
        .scalar_one()
    )
    if found:
        raise RuntimeError(
            f"order_events holds {found} forced attempt event(s), which the schema before "
            "0010 cannot hold; export them before downgrading (nothing was changed)"
        )
    _replace_check(TRIGGERS_0008)
