"""The hand-written migration and the models agree, on SQLite and on PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import CheckConstraint, Engine, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import NullPool

from mtgate.domain.orders import OrderStatus, Trigger
from mtgate.store import migrate
from mtgate.store.migrate import alembic_config, make_engine
from mtgate.store.models import Base

from .conftest import make_order


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    url: str = request.getfixturevalue("pg_schema_url")
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    migrate(db_url)
    engine = make_engine(db_url, poolclass=NullPool)
    yield engine
    engine.dispose()


def test_migration_matches_the_models(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_check_constraints_match_the_models(engine: Engine) -> None:
    """Alembic does not compare CHECK constraints; names (and on SQLite the text) are here."""
    inspector = inspect(engine)
    for table in Base.metadata.sorted_tables:
        expected = {
            str(c.name): str(c.sqltext) for c in table.constraints if isinstance(c, CheckConstraint)
        }
        found = {c["name"]: c["sqltext"] for c in inspector.get_check_constraints(table.name)}
        assert set(found) == set(expected), table.name
        if engine.dialect.name == "sqlite":  # PostgreSQL rewrites the expression text
            assert found == expected, table.name


def _predicate(value: object) -> str:
    return re.sub(r"[()\s]+", " ", str(value)).strip().lower()


def test_partial_indexes_match_the_models(engine: Engine) -> None:
    """Alembic does not compare index predicates either."""
    dialect = engine.dialect.name
    key = f"{dialect}_where"
    inspector = inspect(engine)
    for table in Base.metadata.sorted_tables:
        expected = {
            ix.name: _predicate(ix.dialect_options[dialect]["where"])
            for ix in table.indexes
            if ix.dialect_options[dialect]["where"] is not None
        }
        found = {
            ix["name"]: _predicate(ix["dialect_options"][key])
            for ix in inspector.get_indexes(table.name)
            if ix.get("dialect_options", {}).get(key) is not None
        }
        assert found == expected, table.name
        if table.name == "execution_orders":
            assert set(found) == {"ix_execution_orders_signal", "ix_execution_orders_mt_id"}


def test_migrate_is_idempotent_and_at_head(db_url: str, engine: Engine) -> None:
    migrate(db_url)
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_heads()
        script = ScriptDirectory.from_config(alembic_config(conn))
        assert current == tuple(script.get_heads()) == ("0011",)


def test_downgrade_removes_everything_and_upgrade_restores_it(engine: Engine) -> None:
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")
    assert {t.name for t in Base.metadata.sorted_tables} <= set(inspect(engine).get_table_names())


def _insert_order(engine: Engine, *, with_action: bool = True) -> str:
    order = make_order()
    action = (", action", ", 'open'") if with_action else ("", "")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO execution_orders (order_id, client_order_id, account_login, "
                "account_server, terminal_id, platform, symbol, order_type, volume, magic, "
                f"comment, order_status, retry_count, placed_at, updated_at{action[0]}) VALUES "
                "(:id, :cid, 1, 's', 't', 'mt5', 'EURUSD', 'buy', 0.1, 0, '', 'submitted', 0, "
                f"'2026-01-01 00:00:00', '2026-01-01 00:00:00'{action[1]})"
            ),
            {"id": order.order_id.replace("-", ""), "cid": order.client_order_id},
        )
    return order.client_order_id


def test_orders_journalled_before_0003_become_open_orders(db_url: str) -> None:
    """Rows written before close orders existed are orders that open positions."""
    engine = make_engine(db_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0002")
        cid = _insert_order(engine, with_action=False)
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")
        with engine.connect() as conn:
            action = conn.execute(
                text("SELECT action FROM execution_orders WHERE client_order_id = :c"), {"c": cid}
            ).scalar_one()
        assert action == "open"
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text("UPDATE execution_orders SET action = 'reopen'"))
    finally:
        engine.dispose()


def test_status_check_accepts_every_status_and_nothing_else(engine: Engine) -> None:
    cid = _insert_order(engine)
    update = text("UPDATE execution_orders SET order_status = :s WHERE client_order_id = :c")
    with engine.begin() as conn:
        for status in OrderStatus:
            conn.execute(update, {"s": status.value, "c": cid})
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(update, {"s": "pending", "c": cid})


def test_event_checks_accept_every_trigger_and_nothing_else(engine: Engine) -> None:
    cid = _insert_order(engine)
    with engine.connect() as conn:
        order_id = conn.execute(
            text("SELECT order_id FROM execution_orders WHERE client_order_id = :c"), {"c": cid}
        ).scalar_one()
    insert = text(
        "INSERT INTO order_events (order_id, client_order_id, from_status, to_status, "
        "\"trigger\", detail, at) VALUES (:o, :c, :f, :t, :g, '', '2026-01-01 00:00:00')"
    )
    row = {"o": order_id, "c": cid, "f": None, "t": "new", "g": None}
    with engine.begin() as conn:
        for trigger in Trigger:
            conn.execute(insert, {**row, "g": trigger.value})
    for bad in ({"g": "create"}, {"t": "pending"}, {"f": "pending"}):
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(insert, {**row, **bad})


def test_orders_journalled_before_0004_have_no_server_time(db_url: str) -> None:
    engine = make_engine(db_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0003")
        cid = _insert_order(engine)
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")
        with engine.connect() as conn:
            sent = conn.execute(
                text("SELECT server_time_at_send FROM execution_orders WHERE client_order_id = :c"),
                {"c": cid},
            ).scalar_one()
        assert sent is None
    finally:
        engine.dispose()


def test_quarantine_kind_check(engine: Engine) -> None:
    insert = text(
        "INSERT INTO journal_quarantine (client_order_id, kind, payload, error, at) "
        "VALUES ('c', :k, :p, 'e', '2026-01-01 00:00:00')"
    )
    with engine.begin() as conn:
        for kind in ("intent", "write"):
            conn.execute(insert, {"k": kind, "p": b"{}"})
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert, {"k": "other", "p": b"{}"})
