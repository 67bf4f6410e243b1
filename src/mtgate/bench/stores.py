"""Where `mtgate bench` and `mtgate soak` keep their orders: ``--store``.

``sqlite`` (the default): a file in the run's temporary directory, deleted with it. A
PostgreSQL URL: a schema made for the run (``mtgate_bench_<random>``, reached through the
connection's ``search_path``), dropped when the run ends, so a run neither reads nor leaves
anything in the database it is pointed at; the role needs ``CREATE`` on the database. A SQLite
URL: that file, kept (the caller chose it).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from mtgate.store.journal import POSTGRES_SCHEMES, SQLITE_SCHEMES

DEFAULT = "sqlite"


class StoreChoiceError(ValueError):
    """``--store`` names no store a run can use (the message says why)."""


def kind_of(store: str) -> str:
    """``sqlite`` or ``postgresql``; raises StoreChoiceError for anything else."""
    if store == DEFAULT:
        return "sqlite"
    try:
        scheme = make_url(store).drivername
    except ArgumentError:
        raise StoreChoiceError(
            f"--store {store!r}: expected 'sqlite' or a database URL "
            "(sqlite:///path.db, postgresql+psycopg://user@host/db)"
        ) from None
    if scheme in SQLITE_SCHEMES:
        return "sqlite"
    if scheme in POSTGRES_SCHEMES:
        return "postgresql"
    raise StoreChoiceError(f"--store: scheme {scheme!r} is not supported (sqlite or postgresql)")


@contextlib.contextmanager
def run_store(store: str, tmp: Path, name: str) -> Iterator[str]:
    """The URL the run's journal and sync store use, for the run's duration."""
    kind = kind_of(store)
    if store == DEFAULT:
        yield f"sqlite:///{tmp / name}.db"
        return
    if kind == "sqlite":
        yield store
        return
    url = make_url(store).set(drivername="postgresql+psycopg")
    schema = f"mtgate_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except SQLAlchemyError as exc:
        admin.dispose()
        shown = url.render_as_string(hide_password=True)
        raise StoreChoiceError(f"--store {shown}: cannot create the run's schema: {exc}") from exc
    try:
        options = url.query.get("options", "")
        scoped = url.update_query_dict({"options": f"{options} -csearch_path={schema}".strip()})
        yield scoped.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
