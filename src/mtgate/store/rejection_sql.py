"""The SQL of the rejection analytics (:mod:`mtgate.store.rejections`), and its reading.

SQLAlchemy Core, the same statements on SQLite and PostgreSQL; only the expression that turns
``placed_at`` into epoch milliseconds differs. Rejections and orders are aggregated apart
(``GROUP BY`` in each) and joined on the group's dimensions, so the database returns at most
``limit + 1`` rows whatever the size of the journal.

Cost: the window is a range of ``placed_at``, which only the account index
(``account_login, account_server, placed_at``) leads with when an account is given; otherwise
the database scans ``execution_orders`` (the status index narrows the rejected side). No index
was added for it: each index is written by every order on the hot path (docs/schema.md).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    DateTime,
    Engine,
    Select,
    and_,
    bindparam,
    case,
    cast,
    extract,
    func,
    literal_column,
    null,
    select,
    text,
    true,
)
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from mtgate.domain.codes import lookup
from mtgate.domain.enums import Platform
from mtgate.domain.orders import OrderStatus
from mtgate.store import rows
from mtgate.store.migrate import make_engine
from mtgate.store.models import execution_orders
from mtgate.store.rejections import (
    BUCKET_MS,
    Dimension,
    JournalNotFoundError,
    RejectionGroup,
    RejectionQuery,
    RejectionQueryError,
    RejectionReport,
)

_REJECTED = OrderStatus.REJECTED.value

_o = execution_orders.c


def _epoch_ms(dialect: str) -> ColumnElement[int]:
    """``placed_at`` as epoch ms. SQLite keeps times as text; ``julianday`` reads them at
    millisecond precision (its own integer time), which the double holds exactly here."""
    # Constants as SQL literals, not parameters: PostgreSQL must see the SELECT's expression
    # and the GROUP BY's as the same one, which differently numbered parameters are not.
    if dialect == "sqlite":
        days = func.julianday(_o.placed_at) - literal_column("2440587.5")
        return cast(func.round(days * literal_column("86400000.0")), BigInteger)
    return cast(func.round(extract("epoch", _o.placed_at) * literal_column("1000")), BigInteger)


def _dimensions(query: RejectionQuery, dialect: str) -> list[ColumnElement[Any]]:
    """The group's keys other than the code: what the rate's denominator shares."""
    keys: list[ColumnElement[Any]] = []
    for dimension in query.by:
        if dimension == "account":
            keys += [_o.account_login.label("account_login"), _o.account_server.label("server")]
        elif dimension == "symbol":
            keys.append(_o.symbol.label("symbol"))
        elif dimension in BUCKET_MS:
            size = BUCKET_MS[dimension]
            size_sql = literal_column(str(size), BigInteger)
            keys.append(((_epoch_ms(dialect) // size_sql) * size_sql).label("bucket_ms"))
    return keys


def _code_keys() -> list[ColumnElement[Any]]:
    """A terminal's code is told apart by platform (MT4 and MT5 reuse numbers); a refusal
    of the bridge's own has no code and is told apart by its name (``bridge:<rule>``)."""
    coded = _o.rejection_code.is_not(None)
    return [
        case((coded, _o.platform), else_=null()).label("code_platform"),
        _o.rejection_code.label("code"),
        case((coded, null()), else_=_o.rejection_name).label("code_name"),
    ]


def _where(query: RejectionQuery) -> list[ColumnElement[bool]]:
    stamp = DateTime(timezone=True)
    conditions = [
        _o.placed_at >= bindparam("since", type_=stamp),
        _o.placed_at < bindparam("until", type_=stamp),
    ]
    if query.account_login is not None:
        conditions.append(_o.account_login == bindparam("account_login"))
        conditions.append(_o.account_server == bindparam("account_server"))
    if query.symbol is not None:
        conditions.append(_o.symbol == bindparam("symbol"))
    if query.platform is not None:
        conditions.append(_o.platform == bindparam("platform"))
    return conditions


def params(query: RejectionQuery) -> dict[str, Any]:
    """The statements' parameters (times as aware datetimes: SQLAlchemy stores them)."""
    out: dict[str, Any] = {
        "since": rows.ms_to_datetime(query.since_ms),
        "until": rows.ms_to_datetime(query.until_ms),
    }
    if query.account_login is not None:
        out["account_login"], out["account_server"] = query.account_login, query.account_server
    if query.symbol is not None:
        out["symbol"] = query.symbol
    if query.platform is not None:
        out["platform"] = query.platform.value
    return out


def totals_statement(query: RejectionQuery) -> Select[int, int]:
    """One row: orders in the window, and how many of them were rejected."""
    rejected = _o.order_status == _REJECTED
    return select(
        func.count().label("orders"), func.count().filter(rejected).label("rejections")
    ).where(*_where(query))


def groups_statement(query: RejectionQuery, dialect: str) -> Select[Any]:
    """The groups with rejections, most first, at most ``limit + 1`` (one more says there
    are more). Rejections and orders are aggregated apart and joined on the dimensions."""
    dims = _dimensions(query, dialect)
    codes = _code_keys() if "code" in query.by else []
    ms = _epoch_ms(dialect)
    rejected = (
        select(
            *dims,
            *codes,
            func.count().label("rejections"),
            func.min(ms).label("first_ms"),
            func.max(ms).label("last_ms"),
            func.max(_o.rejection_name).label("stored_name"),
        )
        .where(*_where(query), _o.order_status == _REJECTED)
        .group_by(*dims, *codes)
        .subquery("rejected")
    )
    placed = (
        select(*dims, func.count().label("orders"))
        .where(*_where(query))
        .group_by(*dims)
        .subquery("placed")
    )
    names = [d.name for d in dims]
    joined = rejected.join(
        placed, and_(*(rejected.c[n] == placed.c[n] for n in names)) if names else true()
    )
    # NULLs sort first on SQLite and last on PostgreSQL: say where, so both list alike.
    tie_break = [
        key
        for n in [*names, *(c.name for c in codes)]
        for key in (rejected.c[n].is_(None), rejected.c[n])
    ]
    return (
        select(rejected, placed.c.orders)
        .select_from(joined)
        .order_by(rejected.c.rejections.desc(), *tie_break)
        .limit(query.limit + 1)
    )


# --- reading ----------------------------------------------------------------------------------


def read(engine: Engine, query: RejectionQuery) -> RejectionReport:
    """The report, from ``engine`` (blocking: call it in a worker thread). Both statements
    read one snapshot (one transaction; read-only on PostgreSQL)."""
    with engine.connect() as conn:
        return read_on(conn, query)


def read_on(conn: Connection, query: RejectionQuery) -> RejectionReport:
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
    bound = params(query)
    totals = conn.execute(totals_statement(query), bound).one()
    found = conn.execute(groups_statement(query, dialect), bound).mappings().all()
    groups = [_group(row, query.by) for row in found[: query.limit]]
    return RejectionReport(
        query, int(totals.orders), int(totals.rejections), groups, len(found) > query.limit
    )


def _group(row: Any, by: Sequence[Dimension]) -> RejectionGroup:
    source: Literal["terminal", "bridge"] | None = None
    platform: Platform | None = None
    code: int | None = None
    name: str | None = None
    classification: str | None = None
    if "code" in by:
        code = row["code"]
        stored = row["stored_name"]
        if code is not None and row["code_platform"] is not None:
            platform = Platform(row["code_platform"])
            entry = lookup(platform, code)
            known = not entry.name.startswith("UNLISTED_")
            name = entry.name if known or not stored else stored
            classification = entry.classification.value
            source = "terminal"
        elif code is not None:
            name, source = stored, "terminal"
        else:
            name = row["code_name"]
            bridge = name is not None and name.startswith("bridge:")
            source = "bridge" if bridge else "terminal"
            # A refusal of the bridge's own is final for its request (docs/architecture.md).
            classification = "rejected" if bridge else None
    account = None
    if "account" in by:
        account = f"{row['account_login']}@{row['server']}"
    return RejectionGroup(
        rejections=int(row["rejections"]),
        orders=int(row["orders"]),
        first_ms=int(row["first_ms"]),
        last_ms=int(row["last_ms"]),
        account=account,
        symbol=row["symbol"] if "symbol" in by else None,
        bucket_ms=int(row["bucket_ms"]) if any(d in BUCKET_MS for d in by) else None,
        source=source,
        platform=platform,
        code=code,
        name=name,
        classification=classification,
    )


def read_engine(url: str) -> Engine:
    """An engine that reads the journal at ``url`` without writing to it: no migration, no
    folding of logged intents (a running bridge's journal may be read at the same time).
    SQLite is opened read-only and must exist.

    Raises:
        JournalNotFoundError: a SQLite URL whose file does not exist.
        RejectionQueryError: not a database URL.
    """
    try:
        parsed = make_url(url)
    except Exception:
        shown = url.split("://", 1)[0] + "://..." if "://" in url else "<no scheme>"
        raise RejectionQueryError(f"store URL {shown!r} is not a database URL") from None
    if parsed.get_backend_name() != "sqlite":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return make_engine(parsed, poolclass=NullPool)
    database = parsed.database or ""
    path = Path(database)
    if not database or database == ":memory:" or not path.is_file():
        raise JournalNotFoundError(f"no journal at {database or url!r}")
    uri = path.resolve().as_uri() + "?mode=ro"

    def connect() -> Any:

        return sqlite3.connect(uri, uri=True)

    return make_engine("sqlite://", creator=connect, poolclass=NullPool)
