"""Server knobs and trade sessions of a simulated broker.

Times are *server* time (reference §6.4 ⚠, §8): the injected clock's epoch milliseconds are
read as the broker's own clock with no offset, so day boundaries, weekdays and sessions are
computed directly from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

DAY_MS = 86_400_000
MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class Session:
    """A trade session: ``weekday`` 0 = Monday .. 6 = Sunday, minutes of the server day,
    ``start_min`` included, ``end_min`` excluded (``end_min`` 1440 = up to midnight)."""

    weekday: int
    start_min: int
    end_min: int

    def __post_init__(self) -> None:
        if not (0 <= self.weekday <= 6 and 0 <= self.start_min < self.end_min <= 1440):
            raise ValueError(f"bad session {self}")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Behaviour of one simulated trade server.

    Attributes:
        trade_allowed: algo trading enabled in the terminal (False: MT5 10027 / MT4 4109).
        connected: terminal connected to the trade server (False: 10031 / 6).
        sessions: trade sessions per symbol; a symbol not listed trades at all times.
        max_orders: MT4: open + pending orders (148); MT5: pending orders (10033) and open
            positions (10040), each counted separately. 0: no limit.
        hedging_allowed: False refuses a position opposite to an open one (149 / 10046).
        fifo: FIFO close rule (150 / 10045); enforced by close operations.
        comment_max: longer comments are truncated, as servers do (reference §6.2 [O]).
        slippage_points: market execution fills at the current price plus a slippage drawn
            uniformly in whole ticks from [-n, +n] points (0: none). Positive is worse for
            the client.
        requote_probability: instant/request execution: chance that a request that would fill
            is requoted anyway (10004 / 138 with the current prices).
        seed: seed of the slippage and requote draws.
        expiration_allowed: MT4: False refuses any expiration (147).
        recent_ms: MT4 instant execution: a requested price quoted within this many
            milliseconds is "still in the recent price stream" (reference §1.1).
        mt4_min_expiration_ms: MT4: an expiration must be at least this far ahead (⚠ the MT4
            help says 10 minutes; error 3).
        company: broker name reported in the account report.
        stop_out: close positions when the margin level falls to ``margin_so_so``
            (reference §5.2, :mod:`mtsim.stopout`). Off by default, so that tests can hold an
            account below stop out.
        rewrite_comment: a broker that rewrites the comments of trade requests (None: the
            request's comment is kept). When set, every order, position and deal a trade
            request creates carries this text instead of the request's comment: market
            orders, pending orders and the positions and deals their fills create, and MT5
            close orders and their deals. ``""`` models a broker that drops EA comments.
            Comments the server writes itself (``[sl]``, ``to #N``, stop-out and close-by
            markers) are unaffected. With it no ``mg:`` id survives, so a lookup by client
            id finds nothing and only the ticket or the history (magic, symbol, type,
            volume, time) finds the order again (DESIGN §7, docs/protocol.md §9 rule 3).
    """

    trade_allowed: bool = True
    connected: bool = True
    sessions: Mapping[str, tuple[Session, ...]] = field(default_factory=dict)
    max_orders: int = 0
    hedging_allowed: bool = True
    fifo: bool = False
    comment_max: int = 31
    slippage_points: int = 0
    requote_probability: float = 0.0
    seed: int = 0
    expiration_allowed: bool = True
    recent_ms: int = 3_000
    mt4_min_expiration_ms: int = 10 * MINUTE_MS
    company: str = "mtsim"
    stop_out: bool = False
    rewrite_comment: str | None = None


def market_open(sessions: Mapping[str, tuple[Session, ...]], symbol: str, now_ms: int) -> bool:
    """Whether ``symbol`` is inside one of its trade sessions at server time ``now_ms``."""
    table = sessions.get(symbol)
    if table is None:
        return True
    days, in_day = divmod(now_ms, DAY_MS)
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday
    minute = in_day // MINUTE_MS
    return any(s.weekday == weekday and s.start_min <= minute < s.end_min for s in table)


def end_of_day_ms(time_ms: int) -> int:
    """The server-time midnight that ends the day containing ``time_ms``."""
    return (time_ms // DAY_MS + 1) * DAY_MS


def weekday_sessions(start_min: int, end_min: int, days: range = range(5)) -> tuple[Session, ...]:
    """The same session on each of ``days`` (default Monday to Friday)."""
    return tuple(Session(d, start_min, end_min) for d in days)
