"""Alembic environment for mtgate's journal, driven by :func:`mtgate.store.migrate.migrate`.

The caller passes an open connection in ``config.attributes["connection"]``; there is no
``alembic.ini`` and no URL here, so migrations run exactly where the application points them.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from mtgate.store.models import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things; batch mode recreates the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError(
        "mtgate migrations run through mtgate.store.migrate(url), which supplies a connection"
    )
_run(connection)
