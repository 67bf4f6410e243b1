"""Rejection analytics over the journal: counts and rates by code, account, symbol, time.

The values here (a checked query, its report) and the parsing of windows and groupings are
pure; the SQL is in :mod:`mtgate.store.rejection_sql`, aggregated in the database (``GROUP
BY``), so a journal of millions of orders costs the database a scan of the window, never the
bridge's memory: a report holds at most ``limit`` groups. Journals run it through
``Journal.rejections``; ``mtgate rejections`` reads a journal's database directly.

What is counted (docs/operations.md, "Reading rejections"): orders *placed* in the window
``[since, until)``, each once, by its journalled status. A rejection is an order whose status
is ``rejected``: a terminal's rejection (with the platform's code), a refusal of the bridge's
own (``bridge:<rule>``, no code) or a human's override to ``rejected``. An order's rate
denominator is every order placed in the same window and the same group, leaving the code out
(the rate of code 10019 on account A is "of A's orders, how many were rejected with 10019").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, get_args

from mtgate.domain.enums import Platform
from mtgate.store import rows

Dimension = Literal["code", "account", "symbol", "minute", "hour", "day"]
DIMENSIONS: Final[tuple[Dimension, ...]] = get_args(Dimension)
BUCKET_MS: Final[dict[str, int]] = {"minute": 60_000, "hour": 3_600_000, "day": 86_400_000}
"""Time buckets, aligned on UTC (an hour bucket starts at hh:00:00.000 UTC)."""

MAX_LIMIT: Final = 100_000
MIN_MS: Final = 0
"""Windows start at the epoch at the earliest: buckets are computed by integer division."""
MAX_MS: Final = 253_402_300_799_999
"""9999-12-31 23:59:59.999 UTC, the last time both backends' timestamps hold."""

_UNITS_MS: Final = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DURATION: Final = re.compile(r"([0-9]{1,12})\s*([smhdw])")


class RejectionQueryError(ValueError):
    """A window, grouping or filter the analytics cannot use; the message says which."""


class JournalNotFoundError(RejectionQueryError):
    """The journal to read does not exist (a SQLite file that is not there)."""


def parse_time(value: str, now_ms: int, *, option: str = "since") -> int:
    """Epoch ms of ``value``: ``now``, a duration before ``now_ms`` (``90s``, ``30m``, ``1h``,
    ``2d``, ``1w``) or an ISO 8601 time (``2026-01-07T10:00:00Z``; without an offset, UTC).

    Raises:
        RejectionQueryError: anything else, or a time before 1970 or after 9999, naming
            ``option`` and what was expected.
    """
    shown = value if len(value) <= 64 else value[:61] + "..."
    stripped = value.strip()
    found = _DURATION.fullmatch(stripped)
    if stripped.lower() == "now":
        at_ms = now_ms
    elif found is not None:
        at_ms = now_ms - int(found[1]) * _UNITS_MS[found[2]]
    else:
        try:
            at = datetime.fromisoformat(stripped)
        except ValueError:
            raise RejectionQueryError(
                f"{option} {shown!r}: expected a duration such as 30m, 1h or 2d (s, m, h, d, "
                "w), 'now', or an ISO 8601 time such as 2026-01-07T10:00:00Z"
            ) from None
        at_ms = rows.datetime_to_ms(at if at.tzinfo is not None else at.replace(tzinfo=UTC))
    if not MIN_MS <= at_ms <= MAX_MS:
        raise RejectionQueryError(f"{option} {shown!r} is outside 1970-01-01 .. 9999-12-31")
    return at_ms


def parse_by(value: str | Iterable[str]) -> tuple[Dimension, ...]:
    """``"code,account"`` (or a list of names) as dimensions, in order, without repeats."""
    names = value.split(",") if isinstance(value, str) else list(value)
    found: list[Dimension] = []
    for raw in names:
        name = raw.strip().lower()
        dimension = next((d for d in DIMENSIONS if d == name), None)
        if dimension is None:
            shown = raw if len(raw) <= 32 else raw[:29] + "..."
            raise RejectionQueryError(
                f"by {shown!r}: expected one or more of {', '.join(DIMENSIONS)}"
            )
        if dimension not in found:
            found.append(dimension)
    if not found:
        raise RejectionQueryError(f"by: name at least one of {', '.join(DIMENSIONS)}")
    if sum(d in BUCKET_MS for d in found) > 1:
        raise RejectionQueryError("by: at most one time bucket (minute, hour or day)")
    return tuple(found)


@dataclass(frozen=True, slots=True)
class RejectionQuery:
    """What to count: orders placed in ``[since_ms, until_ms)``, grouped by ``by``.

    Build it with :func:`rejection_query`, which checks every field."""

    since_ms: int
    until_ms: int
    by: tuple[Dimension, ...] = ("code",)
    account_login: int | None = None
    account_server: str | None = None
    symbol: str | None = None
    platform: Platform | None = None
    limit: int = 1000


def rejection_query(
    *,
    since_ms: int,
    until_ms: int,
    by: str | Iterable[str] = ("code",),
    account_login: int | None = None,
    account_server: str | None = None,
    symbol: str | None = None,
    platform: str | Platform | None = None,
    limit: int = 1000,
) -> RejectionQuery:
    """A checked :class:`RejectionQuery`; raises :class:`RejectionQueryError` naming the field."""
    for name, at in (("since", since_ms), ("until", until_ms)):
        if not MIN_MS <= at <= MAX_MS:
            raise RejectionQueryError(f"{name}: {at} ms is outside 1970-01-01 .. 9999-12-31")
    if since_ms >= until_ms:
        raise RejectionQueryError(
            f"since ({_iso(since_ms)}) must be before until ({_iso(until_ms)})"
        )
    if not 1 <= limit <= MAX_LIMIT:
        raise RejectionQueryError(f"limit: {limit} is not in 1..{MAX_LIMIT}")
    if (account_login is None) != (account_server is None):
        raise RejectionQueryError("account: give both the login and the server")
    if platform is not None:
        try:
            platform = Platform(platform)
        except ValueError:
            raise RejectionQueryError(
                f"platform {str(platform)[:16]!r}: expected one of {', '.join(Platform)}"
            ) from None
    return RejectionQuery(
        since_ms, until_ms, parse_by(by), account_login, account_server, symbol, platform, limit
    )


@dataclass(frozen=True, slots=True)
class RejectionGroup:
    """One group of a report. Fields of dimensions the report is not grouped by are None.

    ``source`` is ``terminal`` for a rejection with the platform's code (``code``, its
    registry ``name`` and ``classification``), or one a terminal reported without a code;
    ``bridge`` for a refusal of the bridge's own (``name`` is ``bridge:<rule>``)."""

    rejections: int
    orders: int
    first_ms: int
    """Placement time of the group's first rejected order in the window."""
    last_ms: int
    account: str | None = None
    symbol: str | None = None
    bucket_ms: int | None = None
    """Start of the time bucket (UTC-aligned), when grouped by minute, hour or day."""
    source: Literal["terminal", "bridge"] | None = None
    platform: Platform | None = None
    code: int | None = None
    name: str | None = None
    classification: str | None = None

    @property
    def rate(self) -> float:
        """Rejected orders of the group over every order of its group (code left out)."""
        return self.rejections / self.orders if self.orders else 0.0


@dataclass(frozen=True, slots=True)
class RejectionReport:
    """Totals of the window, and the groups with the most rejections first."""

    query: RejectionQuery
    orders: int
    """Every order placed in the window that the filters select."""
    rejections: int
    groups: list[RejectionGroup]
    truncated: bool
    """More groups exist than ``query.limit``."""

    @property
    def rate(self) -> float:
        return self.rejections / self.orders if self.orders else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: times as epoch ms and as ISO 8601 UTC text."""
        q = self.query
        return {
            "since": _iso(q.since_ms),
            "until": _iso(q.until_ms),
            "by": list(q.by),
            "filters": {
                "account": None
                if q.account_login is None
                else f"{q.account_login}@{q.account_server}",
                "symbol": q.symbol,
                "platform": None if q.platform is None else q.platform.value,
            },
            "orders": self.orders,
            "rejections": self.rejections,
            "rate": self.rate,
            "truncated": self.truncated,
            "groups": [_group_dict(g) for g in self.groups],
        }


def _group_dict(group: RejectionGroup) -> dict[str, Any]:
    out = asdict(group)
    out["platform"] = None if group.platform is None else group.platform.value
    out["rate"] = group.rate
    out["first_seen"], out["last_seen"] = _iso(group.first_ms), _iso(group.last_ms)
    if group.bucket_ms is not None:
        out["bucket"] = _iso(group.bucket_ms)
    return out


def _iso(ms: int) -> str:
    return rows.ms_to_datetime(ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")
