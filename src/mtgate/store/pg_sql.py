"""The PostgreSQL journal's one write statement, made for each shape of batch.

A batch (everything the journal's writer took off its queue at once) is written by a single
statement, so it costs one round trip and one implicit transaction (the connection is in
autocommit): data-modifying CTEs, each inserting or updating from one JSON array of rows.

- ``ins``: new orders (intents and refusals) into ``execution_orders``;
- ``upd`` / ``att``: guarded updates (status changes and notes; attempts, which also set the
  attempt's identity columns), each matching only the order id, client order id and status
  it was queued against, returning the client order ids it matched (``ok``);
- ``ev``: order events; those of a change are inserted only if its update matched, so a change
  that missed its guard leaves nothing behind (the journal quarantines it);
- ``ob``: outbox rows, after the advisory lock that makes commit order the ``seq`` order
  (:mod:`mtgate.store.outbox`), also only for matched changes;
- ``hl``: health samples.

Values travel as JSON text (msgspec, in C) and are cast in SQL per column; a ``VARCHAR(n)``
column is cast from ``text`` by the assignment, which refuses a value too long rather than
truncating it as an explicit cast would. An update whose order was inserted by the same
statement would not see the row (one snapshot): the journal never puts both in one batch, as a
change is only ever made after its order's intent committed.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final, NamedTuple

from sqlalchemy import Column, Table
from sqlalchemy.dialects import postgresql

from mtgate.store import rows
from mtgate.store.models import bridge_health_metrics, execution_orders, order_events, outbox
from mtgate.store.outbox import COLUMNS as OUTBOX_COLUMNS
from mtgate.store.outbox import PG_LOCK

_DIALECT: Final = postgresql.dialect()  # type: ignore[no-untyped-call]

GUARD: Final = ("order_id", "client_order_id", "order_status")


def _cast(column: Column[object]) -> str:
    compiled = column.type.compile(dialect=_DIALECT)
    if compiled.startswith(("VARCHAR", "TEXT")):
        return "text"
    return compiled.lower()


def _values(table: Table, columns: tuple[str, ...], start: int = 0) -> str:
    return ", ".join(f"(r->>{start + i})::{_cast(table.c[name])}" for i, name in enumerate(columns))


class Shape(NamedTuple):
    """Which parts a batch has: one statement text per shape, prepared by the server."""

    ins: bool
    upd: bool
    att: bool
    ev: bool
    ob: bool
    hl: bool


def _insert(name: str, table: Table, columns: tuple[str, ...], param: str) -> str:
    return (
        f"{name} AS (INSERT INTO {table.name} ({', '.join(columns)}) "
        f"SELECT {_values(table, columns)} FROM jsonb_array_elements(%({param})s::jsonb) AS x(r))"
    )


def _update(name: str, columns: tuple[str, ...]) -> str:
    n = len(columns)
    guard = " AND ".join(
        f"o.{c} = (r->>{n + i})::{_cast(execution_orders.c[c])}" for i, c in enumerate(GUARD)
    )
    return (
        f"{name} AS (UPDATE execution_orders AS o SET ({', '.join(columns)}) = "
        f"ROW({_values(execution_orders, columns)}) "
        f"FROM jsonb_array_elements(%({name})s::jsonb) AS x(r) WHERE {guard} "
        "RETURNING o.client_order_id)"
    )


def _filtered_insert(
    name: str, table: Table, columns: tuple[str, ...], matched: bool, *, locked: bool
) -> str:
    """Rows whose last element is NULL (no guard to pass) or a client order id ``ok`` holds."""
    k = len(columns)
    where = f" WHERE r->>{k} IS NULL OR r->>{k} IN (SELECT client_order_id FROM ok)"
    source = f"jsonb_array_elements(%({name})s::jsonb) WITH ORDINALITY AS x(r, n)"
    if locked:
        source = f"lk, {source}"
    return (
        f"{name} AS (INSERT INTO {table.name} ({', '.join(columns)}) "
        f"SELECT {_values(table, columns)} FROM {source}{where if matched else ''} ORDER BY n)"
    )


@lru_cache(maxsize=64)
def statement(shape: Shape) -> str:
    """The statement of a batch of ``shape``; it returns the client order ids of the guarded
    updates that matched (no row when it has none)."""
    parts: list[str] = []
    if shape.ins:
        parts.append(_insert("ins", execution_orders, rows.ORDER_COLUMNS, "ins"))
    if shape.upd:
        parts.append(_update("upd", rows.MUTABLE_COLUMNS))
    if shape.att:
        parts.append(_update("att", rows.ATTEMPT_COLUMNS + rows.MUTABLE_COLUMNS))
    matched = shape.upd or shape.att
    if matched:
        sources = [
            f"SELECT client_order_id FROM {n}"
            for n, on in (("upd", shape.upd), ("att", shape.att))
            if on
        ]
        parts.append(f"ok AS ({' UNION ALL '.join(sources)})")
    if shape.ev:
        parts.append(
            _filtered_insert("ev", order_events, rows.EVENT_COLUMNS, matched, locked=False)
        )
    if shape.ob:
        parts.append(f"lk AS MATERIALIZED (SELECT pg_advisory_xact_lock({PG_LOCK}))")
        parts.append(_filtered_insert("ob", outbox, OUTBOX_COLUMNS, matched, locked=True))
    if shape.hl:
        parts.append(_insert("hl", bridge_health_metrics, rows.HEALTH_COLUMNS, "hl"))
    tail = "SELECT client_order_id FROM ok" if matched else "SELECT NULL WHERE false"
    return "WITH " + ",\n".join(parts) + "\n" + tail


SELECT_EXISTING: Final = (
    "SELECT 1 FROM execution_orders WHERE client_order_id = %(client_order_id)s "
    "OR order_id = %(order_id)s::uuid"
)
