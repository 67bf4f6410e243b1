"""Schema migrations, run programmatically (no ``alembic.ini``), and engine construction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import URL, Engine, create_engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """A SQLAlchemy engine with the journal's connection settings.

    On SQLite the stdlib driver neither enforces foreign keys nor wraps DDL in a transaction by
    default; both are switched on here so a migration that fails half-way leaves nothing behind
    and the audit trail cannot point at a missing order.
    """
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Hand transaction control to SQLAlchemy (see _sqlite_on_begin) instead of the driver.
    dbapi_connection.isolation_level = None
    dbapi_connection.execute("PRAGMA foreign_keys = ON")


def _sqlite_on_begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN")


def alembic_config(connection: Connection) -> Config:
    """Alembic configuration for our migrations, running on ``connection``."""
    config = Config()
    # ConfigParser interpolates '%': escape it in case the install path contains one.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def migrate(url: str | URL) -> None:
    """Bring the database at ``url`` to the newest schema (``alembic upgrade head``).

    Idempotent; runs in one transaction on both SQLite and PostgreSQL, so a failure leaves the
    schema as it was.
    """
    engine = make_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), "head")
    finally:
        engine.dispose()
