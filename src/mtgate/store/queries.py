"""SQL statements of both journals, all derived from the models' tables.

The SQLAlchemy journal executes the Core statements. The SQLite fast path compiles the reads
for the SQLite dialect (:func:`sqlite_sql`, once at import), and builds its writes with
:class:`NullAwareSql`: text with ``?`` placeholders for the non-NULL values only, because the
stdlib driver spends ~0.4 µs binding each ``None`` (it looks for an adapter first) and a typical
order row has twenty of them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from itertools import compress, repeat
from operator import is_not
from typing import Any, Final

from sqlalchemy import Insert, Select, Table, Update, bindparam, insert, select, update
from sqlalchemy.dialects import sqlite

from mtgate.domain.orders import OrderStatus
from mtgate.store import rows
from mtgate.store.models import bridge_health_metrics, execution_orders, order_events

_ORDER_COLS = [execution_orders.c[name] for name in rows.ORDER_COLUMNS]
_EVENT_COLS = [order_events.c[name] for name in rows.EVENT_READ_COLUMNS]

INSERT_ORDER: Insert = insert(execution_orders)
INSERT_EVENT: Insert = insert(order_events)
INSERT_HEALTH: Insert = insert(bridge_health_metrics)

UPDATE_ORDER: Update = update(execution_orders).where(
    execution_orders.c.order_id == bindparam(rows.WHERE_ORDER_ID),
    execution_orders.c.client_order_id == bindparam(rows.WHERE_CLIENT_ID),
    execution_orders.c.order_status == bindparam(rows.WHERE_STATUS),
)
"""Optimistic guard: updates nothing unless the order is still in the status the caller read."""

SELECT_BY_CLIENT_ID: Select[Any] = select(*_ORDER_COLS).where(
    execution_orders.c.client_order_id == bindparam("client_order_id")
)
SELECT_BY_TICKET: Select[Any] = select(*_ORDER_COLS).where(
    execution_orders.c.account_login == bindparam("account_login"),
    execution_orders.c.account_server == bindparam("account_server"),
    execution_orders.c.mt_order_id == bindparam("ticket"),
)
SELECT_STATUS: Select[Any] = select(execution_orders.c.order_status).where(
    execution_orders.c.client_order_id == bindparam("client_order_id")
)
SELECT_EXISTING: Select[Any] = select(execution_orders.c.order_id).where(
    (execution_orders.c.client_order_id == bindparam("client_order_id"))
    | (execution_orders.c.order_id == bindparam("order_id"))
)
SELECT_EVENTS: Select[Any] = (
    select(*_EVENT_COLS)
    .where(order_events.c.client_order_id == bindparam("client_order_id"))
    .order_by(order_events.c.id)
)


def check_limit(limit: int | None) -> None:
    """``list_orders``' ``limit``: a positive count, or None for every matching row."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be positive or None, got {limit}")


def list_orders(
    account_login: int | None,
    account_server: str | None,
    statuses: Collection[OrderStatus] | None,
    limit: int | None,
    position_ticket: int | None = None,
) -> Select[Any]:
    """Newest first (by placement time, then client order id for a stable order).

    The account filters are SQL, not applied afterwards, so a limit counts only the account's
    rows (a login is unique only on its server); ``limit=None`` reads them all, which
    reconciliation needs (an account's oldest unfinished orders are the ones it must not miss).
    """
    stmt = select(*_ORDER_COLS)
    if account_login is not None:
        stmt = stmt.where(execution_orders.c.account_login == account_login)
    if account_server is not None:
        stmt = stmt.where(execution_orders.c.account_server == account_server)
    if statuses is not None:
        stmt = stmt.where(execution_orders.c.order_status.in_([s.value for s in statuses]))
    if position_ticket is not None:
        stmt = stmt.where(execution_orders.c.position_ticket == position_ticket)
    stmt = stmt.order_by(
        execution_orders.c.placed_at.desc(), execution_orders.c.client_order_id.desc()
    )
    return stmt if limit is None else stmt.limit(limit)


_SQLITE: Final = sqlite.dialect(paramstyle="named")
_quote = _SQLITE.identifier_preparer.quote


def sqlite_sql(stmt: Select[Any]) -> str:
    """SQL text with ``:name`` parameters, for a statement without literal values."""
    return str(stmt.compile(dialect=_SQLITE))


def sqlite_sql_with_params(stmt: Select[Any]) -> tuple[str, dict[str, Any]]:
    """SQL text and parameters for a statement built with literal values (e.g. ``IN`` lists)."""
    compiled = stmt.compile(dialect=_SQLITE, compile_kwargs={"render_postcompile": True})
    return str(compiled), dict(compiled.params)


Mask = tuple[bool, ...]


class NullAwareSql:
    """SQL text per pattern of NULLs in a row, built once per pattern and then reused.

    ``bind(values)`` returns the text for this row's pattern and the non-None values in
    placeholder order. Patterns are few in practice (a market order's submit, its fill, a
    pending order's placement...); the stdlib driver keeps each text prepared in its cache.
    """

    __slots__ = ("_build", "_cache")

    MAX_PATTERNS: Final = 256
    """Beyond this the cache starts over; the driver's statement cache is sized to match."""

    def __init__(self, build: Callable[[Mask], str]) -> None:
        self._build = build
        self._cache: dict[Mask, str] = {}

    def bind(self, values: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
        mask = tuple(map(is_not, values, repeat(None)))
        sql = self._cache.get(mask)
        if sql is None:
            if len(self._cache) >= self.MAX_PATTERNS:
                self._cache.clear()
            sql = self._cache[mask] = self._build(mask)
        return sql, tuple(compress(values, mask))


def _columns(table: Table, names: Sequence[str]) -> list[str]:
    """Quoted column names; a name that is not a column of ``table`` raises KeyError."""
    return [_quote(table.c[name].name) for name in names]


def sqlite_insert(table: Table, names: Sequence[str]) -> NullAwareSql:
    """INSERT of the given columns; NULL ones are left out (no column has a default)."""
    quoted = _columns(table, names)

    def build(mask: Mask) -> str:
        present = list(compress(quoted, mask))
        placeholders = ", ".join("?" * len(present))
        return f"INSERT INTO {_quote(table.name)} ({', '.join(present)}) VALUES ({placeholders})"

    return NullAwareSql(build)


def sqlite_guarded_update(
    table: Table, set_names: Sequence[str], where_names: Sequence[str]
) -> NullAwareSql:
    """``UPDATE table SET a = ?, b = NULL ... WHERE x = ? AND y = ?``.

    Values are the SET values followed by the WHERE values (which must not be None: ``x = NULL``
    matches nothing).
    """
    sets = _columns(table, set_names)
    where = " AND ".join(f"{name} = ?" for name in _columns(table, where_names))

    def build(mask: Mask) -> str:
        if not all(mask[len(sets) :]):
            raise ValueError(f"UPDATE {table.name}: a WHERE value is None")
        assignments = ", ".join(
            f"{name} = ?" if present else f"{name} = NULL"
            for name, present in zip(sets, mask, strict=False)
        )
        return f"UPDATE {_quote(table.name)} SET {assignments} WHERE {where}"

    return NullAwareSql(build)
