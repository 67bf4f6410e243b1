"""Refusals: every rule the simulated server enforces and the code each platform answers with.

:data:`RULES` is the one table (reference §2, §3.7, §4.6). A rule an MT4 server does not have
(filling policy, order-type flags, symbol volume limit) has ``mt4 = None`` and is not checked
on MT4. Choices where the reference leaves the code open (⚠):

- MT5, unknown symbol: the Python API returns None with last_error -2/-4 before any server
  code exists; the EA answers with retcode 10013 INVALID and a message naming the symbol.
- MT5, unknown ticket on modify/cancel: 10013 INVALID (MT4: 4108 ERR_INVALID_TICKET).
- A *read* of an unknown symbol (``tick``): reads report the runtime error, not a trade
  retcode (docs/protocol.md §11): MT4 4106 ERR_UNKNOWN_SYMBOL, MT5 4301
  ERR_MARKET_UNKNOWN_SYMBOL (MQL5 runtime errors, "Market Info" group; not in the project's
  reference, which lists MT4's only) (:func:`unknown_symbol_read`).
- MT4, short-only symbol: MT4 has no short-only code, and 4110/4111 are the terminal's own
  EA-settings checks, not server answers, so the server answers 133 TRADE_DISABLED.
- MT4, close-only symbol: 133 TRADE_DISABLED, for the same reason.
- MT4, pending price on the wrong side of the market: 130 INVALID_STOPS (reference §1.1: a
  pending price "too close to the market" is 130, and §2 lists "wrong side" under 130); MT5
  answers 10015 INVALID_PRICE (§4.3 [O]).
- MT4, an expiration sooner than 10 minutes ahead (the MT4 help: "Order may not expire earlier
  than in 10 minutes"): 3 ERR_INVALID_TRADE_PARAMETERS [O]; 147 is kept for a server that
  forbids expirations (``ServerConfig.expiration_allowed``).
- An expiration outside MQL's ``datetime`` range (negative, or after 3000-12-31 23:59:59,
  ``mtgate.domain.limits.MT_DATETIME_MAX_MS``): MT5 10022 INVALID_EXPIRATION, MT4 3
  ERR_INVALID_TRADE_PARAMETERS (⚠ unverified on real servers: the request's ``expiration``
  field is a ``datetime``, so no real terminal can send one; the codes are those of the
  other bad expiration times). Reached only when a test calls ``TradeServer.handle``
  directly: the simulated EA refuses such a request first, with -2 ``invalid_request``
  (:mod:`mtgate.protocol.ea`).
- A malformed request (an order type the operation does not take, a stop-limit order on MT4):
  MT4 3 ERR_INVALID_TRADE_PARAMETERS, MT5 10013 INVALID.

Position operations (``modify_position``, ``close_position``, ``close_by``; see
:mod:`mtsim.positions`):

- A ticket of a position that was open on the account and is now closed: MT5 10036
  POSITION_CLOSED (reference §3.7: "treat as done for close intents"); MT4 4108
  ERR_INVALID_TICKET. A ticket never seen: 4108 / 10013 as for pending orders. The
  identifier of a live netting position whose ticket changed (reversal) is not its ticket:
  10013, never 10036 (the position is open).
- A close volume above the position's volume: MT5 10038 INVALID_CLOSE_VOLUME (reference §3.6,
  on netting accounts too: ``close_position`` never reverses); MT4 131
  ERR_INVALID_TRADE_VOLUME ⚠ (the volume is invalid for that order; 3 would also be
  plausible). A remainder below ``volume_min``: 131 / 10014 ⚠.
- ``close_by`` on a netting account, with the same ticket twice, with positions on
  different symbols or in the same direction: 10013 INVALID / MT4 3 (malformed request ⚠).
  A symbol whose ``order_mode`` lacks CLOSE_BY (64): 10035 (MT5 only, reference §3.4).
"""

from __future__ import annotations

from dataclasses import dataclass

from mtgate.domain.codes import MT4, MT5, lookup
from mtgate.domain.enums import Platform


class TradeError(Exception):
    """A request the server refused, with the platform's own code and name.

    ``bid``/``ask`` carry the new prices of a requote (reference §3.2 MqlTradeResult).
    """

    def __init__(self, code: int, name: str, message: str, bid: float = 0.0, ask: float = 0.0):
        super().__init__(f"{code} {name}: {message}")
        self.code = code
        self.name = name
        self.message = message
        self.bid = bid
        self.ask = ask


@dataclass(frozen=True, slots=True)
class Rule:
    """A trade rule; ``step`` is its place in the order of checks (reference §4.6)."""

    name: str
    step: int
    mt5: int
    mt4: int | None
    reference: str

    def code(self, platform: Platform) -> int:
        code = self.mt5 if platform == Platform.MT5 else self.mt4
        if code is None:
            raise ValueError(f"rule {self.name} does not exist on {platform}")
        return code


BAD_REQUEST = Rule("bad_request", 0, MT5.INVALID, MT4.INVALID_TRADE_PARAMETERS, "§1.2, §3.2")
NO_CONNECTION = Rule("no_connection", 1, MT5.CONNECTION, MT4.NO_CONNECTION, "§4.6 #1")
ALGO_DISABLED = Rule("algo_disabled", 2, MT5.CLIENT_DISABLES_AT, MT4.TRADE_NOT_ALLOWED, "§4.6 #2")
UNKNOWN_SYMBOL = Rule("unknown_symbol", 3, MT5.INVALID, MT4.UNKNOWN_SYMBOL, "§4.6 #3")
UNKNOWN_TICKET = Rule("unknown_ticket", 3, MT5.INVALID, MT4.INVALID_TICKET, "§2 4108")
POSITION_CLOSED = Rule("position_closed", 3, 10036, MT4.INVALID_TICKET, "§3.7 10036 ⚠")
NO_CHANGES = Rule("no_changes", 3, MT5.NO_CHANGES, MT4.NO_RESULT, "§1.1 OrderModify, §3.7")
MARKET_CLOSED = Rule("market_closed", 4, MT5.MARKET_CLOSED, MT4.MARKET_CLOSED, "§4.6 #4, §8")
TRADE_DISABLED = Rule("trade_disabled", 5, MT5.TRADE_DISABLED, MT4.TRADE_DISABLED, "§4.6 #5")
LONG_ONLY = Rule("long_only", 5, MT5.LONG_ONLY, MT4.LONG_POSITIONS_ONLY_ALLOWED, "§4.6 #5")
SHORT_ONLY = Rule("short_only", 5, MT5.SHORT_ONLY, MT4.TRADE_DISABLED, "§4.6 #5 ⚠")
CLOSE_ONLY = Rule("close_only", 5, MT5.CLOSE_ONLY, MT4.TRADE_DISABLED, "§4.6 #5 ⚠")
ORDER_TYPE_DENIED = Rule("order_type_denied", 6, MT5.INVALID_ORDER, None, "§3.4 order_mode")
INVALID_FILL = Rule("invalid_fill", 7, MT5.INVALID_FILL, None, "§3.3")
EXPIRATION_DENIED = Rule(
    "expiration_denied", 8, MT5.INVALID_EXPIRATION, MT4.TRADE_EXPIRATION_DENIED, "§3.4, §2 147"
)
EXPIRATION_TIME = Rule(
    "expiration_time", 8, MT5.INVALID_EXPIRATION, MT4.INVALID_TRADE_PARAMETERS, "§3.4 ⚠"
)
"""An expiration time the server cannot take: in the past, too soon (MT4), or outside
MQL's datetime range (see the module docstring)."""
INVALID_VOLUME = Rule("invalid_volume", 9, MT5.INVALID_VOLUME, MT4.INVALID_TRADE_VOLUME, "§4.5")
INVALID_CLOSE_VOLUME = Rule(
    "invalid_close_volume", 9, 10038, MT4.INVALID_TRADE_VOLUME, "§3.6 10038, MT4 ⚠"
)
INVALID_PRICE = Rule("invalid_price", 10, MT5.INVALID_PRICE, MT4.INVALID_PRICE, "§4.6 #10, §1.1")
WRONG_SIDE = Rule("wrong_side", 10, MT5.INVALID_PRICE, MT4.INVALID_STOPS, "§4.2, §4.3 ⚠")
INVALID_STOPS = Rule("invalid_stops", 11, MT5.INVALID_STOPS, MT4.INVALID_STOPS, "§4.3")
FROZEN = Rule("frozen", 12, MT5.FROZEN, MT4.TRADE_MODIFY_DENIED, "§4.4")
NO_MONEY = Rule("no_money", 13, MT5.NO_MONEY, MT4.NOT_ENOUGH_MONEY, "§5.2")
LIMIT_ORDERS = Rule("limit_orders", 14, MT5.LIMIT_ORDERS, MT4.TRADE_TOO_MANY_ORDERS, "§4.6 #14")
LIMIT_POSITIONS = Rule(
    "limit_positions", 14, MT5.LIMIT_POSITIONS, MT4.TRADE_TOO_MANY_ORDERS, "§4.6 #14"
)
LIMIT_VOLUME = Rule("limit_volume", 14, MT5.LIMIT_VOLUME, None, "§4.5 #3")
HEDGE_PROHIBITED = Rule(
    "hedge_prohibited", 15, MT5.HEDGE_PROHIBITED, MT4.TRADE_HEDGE_PROHIBITED, "§1.3, §3.6"
)
FIFO_CLOSE = Rule("fifo_close", 15, MT5.FIFO_CLOSE, MT4.TRADE_PROHIBITED_BY_FIFO, "§1.3, §3.6")
REQUOTE = Rule("requote", 16, MT5.REQUOTE, MT4.REQUOTE, "§1.1, §8")

RULES: tuple[Rule, ...] = (
    BAD_REQUEST,
    NO_CONNECTION,
    ALGO_DISABLED,
    UNKNOWN_SYMBOL,
    UNKNOWN_TICKET,
    POSITION_CLOSED,
    NO_CHANGES,
    MARKET_CLOSED,
    TRADE_DISABLED,
    LONG_ONLY,
    SHORT_ONLY,
    CLOSE_ONLY,
    ORDER_TYPE_DENIED,
    INVALID_FILL,
    EXPIRATION_DENIED,
    EXPIRATION_TIME,
    INVALID_VOLUME,
    INVALID_CLOSE_VOLUME,
    INVALID_PRICE,
    WRONG_SIDE,
    INVALID_STOPS,
    FROZEN,
    NO_MONEY,
    LIMIT_ORDERS,
    LIMIT_POSITIONS,
    LIMIT_VOLUME,
    HEDGE_PROHIBITED,
    FIFO_CLOSE,
    REQUOTE,
)


# Faults the simulator injects (mtsim.faults), not rules a request can break: the codes a
# terminal or trade server answers when it is busy, has no price or no link (reference §2,
# §3.7, §8). ``step`` is where the answer comes from: 1, before any server check (the
# terminal itself, or its link), 16 at the end, where a dealer's price decision is made.
PRICE_CHANGED = Rule("price_changed", 16, MT5.PRICE_CHANGED, MT4.PRICE_CHANGED, "§2 135, §3.7")
OFF_QUOTES = Rule("off_quotes", 16, MT5.PRICE_OFF, MT4.OFF_QUOTES, "§2 136, §3.7, §8")
CONTEXT_BUSY = Rule("context_busy", 1, 10024, MT4.TRADE_CONTEXT_BUSY, "§2 146; MT5 ⚠ 10024")
"""MT5 has no single trade context: 10024 TOO_MANY_REQUESTS is the nearest (mtsim.faults)."""
TOO_MANY_REQUESTS = Rule("too_many_requests", 1, 10024, 141, "§2 141, §3.7 10024")
TRADE_TIMEOUT = Rule("trade_timeout", 16, MT5.TIMEOUT, MT4.TRADE_TIMEOUT, "§2 128, §3.7 10012")
FOK_UNFILLED = Rule("fok_unfilled", 16, MT5.REJECT, None, "§3.3 FOK, §8 ⚠")
"""An FOK order the market cannot fill in full: nothing filled (⚠ code, mtsim.faults)."""

FAULT_RULES: tuple[Rule, ...] = (
    NO_CONNECTION,
    CONTEXT_BUSY,
    TOO_MANY_REQUESTS,
    MARKET_CLOSED,
    REQUOTE,
    PRICE_CHANGED,
    OFF_QUOTES,
    TRADE_TIMEOUT,
    FOK_UNFILLED,
)


def refuse(
    platform: Platform, rule: Rule, message: str, *, bid: float = 0.0, ask: float = 0.0
) -> TradeError:
    """The error the server answers when ``rule`` is broken (to be raised by the caller)."""
    code = rule.code(platform)
    return TradeError(code, lookup(platform, code).name, message, bid, ask)


MT5_ERR_MARKET_UNKNOWN_SYMBOL = 4301
"""MQL5 runtime error of a symbol the terminal does not know (``GetLastError()``)."""


def unknown_symbol_read(mt4: bool, symbol: str) -> TradeError:
    """What a read of ``symbol`` that the terminal does not know answers (a runtime error)."""
    if mt4:
        return TradeError(MT4.UNKNOWN_SYMBOL, "ERR_UNKNOWN_SYMBOL", f"unknown symbol {symbol!r}")
    return TradeError(
        MT5_ERR_MARKET_UNKNOWN_SYMBOL, "ERR_MARKET_UNKNOWN_SYMBOL", f"unknown symbol {symbol!r}"
    )
