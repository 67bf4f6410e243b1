"""The journal and its schema: SQLAlchemy models, Alembic migrations, SQLite and PostgreSQL.

Start with :func:`open_journal`; the contract is :class:`Journal`.
"""

from mtgate.store.journal import Journal, open_journal
from mtgate.store.migrate import migrate
from mtgate.store.values import (
    DuplicateOrderError,
    HealthSample,
    JournalConfigError,
    JournalError,
    JournalNotOpenError,
    OrderEvent,
    QuarantinedRecord,
    StaleOrderError,
    TransitionMismatchError,
    UnreadableOrderError,
    UnstorableOrderError,
)

__all__ = [
    "DuplicateOrderError",
    "HealthSample",
    "Journal",
    "JournalConfigError",
    "JournalError",
    "JournalNotOpenError",
    "OrderEvent",
    "QuarantinedRecord",
    "StaleOrderError",
    "TransitionMismatchError",
    "UnreadableOrderError",
    "UnstorableOrderError",
    "migrate",
    "open_journal",
]
