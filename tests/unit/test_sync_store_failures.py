"""Review F10: which write failures keep the sync store's rows for the next flush (the database
could not take them now) and which are the rows' own fault (isolated, the refused ones
dropped). Guessing wrong either way loses something: a row's fault taken for an outage is
retried forever and holds back every other row; an outage taken for a row's fault drops
good rows."""

from __future__ import annotations

import errno
import sqlite3

import psycopg
import pytest
from psycopg import errors as pg
from sqlalchemy import exc as sa

from mtgate.store.sync_store import transient
from mtgate.store.values import JournalNotOpenError

SQL = "INSERT INTO positions ..."


def _wrapped(
    cls: type[sa.DBAPIError], orig: BaseException, *, invalidated: bool = False
) -> sa.DBAPIError:
    """What SQLAlchemy raises for a driver error (the PostgreSQL path)."""
    return cls(SQL, {}, orig, connection_invalidated=invalidated)


TRANSIENT: list[tuple[str, BaseException]] = [
    ("sqlite locked", sqlite3.OperationalError("database is locked")),
    ("sqlite disk full", sqlite3.OperationalError("database or disk is full")),
    ("sqlite corrupt file", sqlite3.DatabaseError("database disk image is malformed")),
    (
        "pg connection lost",
        _wrapped(sa.OperationalError, psycopg.OperationalError("server closed the connection")),
    ),
    (
        "pg connection invalidated",
        _wrapped(sa.InterfaceError, psycopg.InterfaceError("closed"), invalidated=True),
    ),
    ("pg lock timeout", _wrapped(sa.OperationalError, pg.LockNotAvailable("lock timeout"))),
    ("pg deadlock", _wrapped(sa.OperationalError, pg.DeadlockDetected("deadlock detected"))),
    (
        "pg read-only standby (a failover)",
        _wrapped(sa.InternalError, pg.ReadOnlySqlTransaction("read-only transaction")),
    ),
    ("pg shutting down", pg.AdminShutdown("terminating connection")),
    ("pool exhausted", sa.TimeoutError("QueuePool limit reached")),
    ("store not open", JournalNotOpenError()),
    ("connection reset", ConnectionResetError()),
    ("wrapped sqlite lock", sa.StatementError("x", SQL, {}, sqlite3.OperationalError("locked"))),
]

REFUSED: list[tuple[str, BaseException]] = [
    (
        "sqlite int beyond 64 bits",
        OverflowError("Python int too large to convert to SQLite INTEGER"),
    ),
    ("sqlite NOT NULL (a NaN)", sqlite3.IntegrityError("NOT NULL constraint failed")),
    ("sqlite unbindable value", sqlite3.ProgrammingError("Error binding parameter 1")),
    (
        "pg VARCHAR too long",
        _wrapped(sa.DataError, pg.StringDataRightTruncation("value too long for type varchar(32)")),
    ),
    (
        "pg INTEGER out of range",
        _wrapped(sa.DataError, pg.NumericValueOutOfRange("integer out of range")),
    ),
    ("pg CHECK", _wrapped(sa.IntegrityError, pg.CheckViolation("violates check constraint"))),
    ("time beyond gmtime", OSError(errno.EOVERFLOW, "Value too large for defined data type")),
    ("time beyond datetime", OverflowError("date value out of range")),
    ("bad value", ValueError("time 253402300800000 ms is outside the years 1-9999")),
    ("bad type", TypeError("unsupported operand")),
    ("wrapped overflow", sa.StatementError("x", SQL, {}, OverflowError("too large"))),
]


@pytest.mark.parametrize(("case", "error"), TRANSIENT, ids=[c for c, _ in TRANSIENT])
def test_f10_failures_of_the_database_keep_the_rows(case: str, error: BaseException) -> None:
    assert transient(error), case


@pytest.mark.parametrize(("case", "error"), REFUSED, ids=[c for c, _ in REFUSED])
def test_f10_failures_of_a_row_isolate_it(case: str, error: BaseException) -> None:
    assert not transient(error), case
