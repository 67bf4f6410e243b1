"""SQL text the SQLite fast path builds from the models."""

from __future__ import annotations

import sqlite3

import pytest

from mtgate.store import queries, rows
from mtgate.store.models import execution_orders, order_events


def test_insert_leaves_null_columns_out() -> None:
    insert = queries.sqlite_insert(order_events, rows.EVENT_COLUMNS)
    sql, values = insert.bind(("ab", "c1", None, "new", None, "", "2026-01-01 00:00:00.000000"))
    assert sql == (
        "INSERT INTO order_events (order_id, client_order_id, to_status, detail, at) "
        "VALUES (?, ?, ?, ?, ?)"
    )
    assert values == ("ab", "c1", "new", "", "2026-01-01 00:00:00.000000")


def test_reserved_words_are_quoted() -> None:
    insert = queries.sqlite_insert(order_events, rows.EVENT_COLUMNS)
    sql, _ = insert.bind(("ab", "c1", "new", "submitted", "send", "", "t"))
    assert '"trigger"' in sql


def test_one_text_per_null_pattern() -> None:
    insert = queries.sqlite_insert(order_events, rows.EVENT_COLUMNS)
    first, _ = insert.bind(("a", "b", None, "new", None, "", "t"))
    again, _ = insert.bind(("x", "y", None, "new", None, "z", "u"))
    other, _ = insert.bind(("x", "y", "new", "submitted", "send", "", "u"))
    assert first is again
    assert other != first


def test_guarded_update_sets_nulls_explicitly() -> None:
    update = queries.sqlite_guarded_update(
        execution_orders, ("stop_loss", "take_profit"), ("order_id", "order_status")
    )
    sql, values = update.bind((None, 1.2, "ab", "placed"))
    assert sql == (
        "UPDATE execution_orders SET stop_loss = NULL, take_profit = ? "
        "WHERE order_id = ? AND order_status = ?"
    )
    assert values == (1.2, "ab", "placed")


def test_guarded_update_refuses_a_null_guard() -> None:
    update = queries.sqlite_guarded_update(execution_orders, ("stop_loss",), ("order_id",))
    with pytest.raises(ValueError, match="WHERE value is None"):
        update.bind((1.0, None))


def test_unknown_columns_are_refused_when_building() -> None:
    with pytest.raises(KeyError):
        queries.sqlite_insert(order_events, ("order_id", "no_such_column"))


def test_every_pattern_of_the_order_insert_is_valid_sql() -> None:
    """All-NULL optional columns and all-set columns both compile against the real schema."""
    conn = sqlite3.connect(":memory:")
    conn.execute(
        f"CREATE TABLE execution_orders ({', '.join(rows.ORDER_COLUMNS)})"  # untyped copy
    )
    insert = queries.sqlite_insert(execution_orders, rows.ORDER_COLUMNS)
    for row in (tuple(range(len(rows.ORDER_COLUMNS))), (1,) + (None,) * 32):
        conn.execute(*insert.bind(row))
    assert conn.execute("SELECT count(*) FROM execution_orders").fetchone() == (2,)


def _compiled(
    account_login: int | None = None, account_server: str | None = None, limit: int | None = 1000
) -> str:
    stmt = queries.list_orders(account_login, account_server, None, limit)
    return queries.sqlite_sql_with_params(stmt)[0]


def test_f18_list_orders_filters_the_server_in_sql_and_none_is_no_limit() -> None:
    both = _compiled(account_login=1, account_server="S", limit=None)
    assert "execution_orders.account_login = " in both
    assert "execution_orders.account_server = " in both
    assert "LIMIT" not in both
    assert "LIMIT" in _compiled(limit=10)
    assert "account_server =" not in _compiled(account_login=1)
    queries.check_limit(None)
    with pytest.raises(ValueError, match="limit"):
        queries.check_limit(0)
