"""Error registries: every MT4 error number and MT5 trade return code, classified.

One table per platform (reference §2, §3.7). The classification drives the bridge:

- ``OK``: success or a no-op;
- ``REJECTED``: permanent for this request, never retried as is;
- ``RETRYABLE``: safe to retry, either at once with a fresh price (``retry_now``) or later with
  backoff; the order did not execute;
- ``UNKNOWN``: the outcome is unknown; the order must be resolved against the account before
  anything is resent.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mtgate.domain.enums import Platform


class Classification(enum.StrEnum):
    OK = "ok"
    REJECTED = "rejected"
    RETRYABLE = "retryable"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class PlatformCode:
    platform: Platform
    code: int
    name: str
    description: str
    classification: Classification
    retry_now: bool = False
    """Retry immediately with a refreshed price (requote, price changed, off quotes)."""


_OK, _REJ, _RET, _UNK = (
    Classification.OK,
    Classification.REJECTED,
    Classification.RETRYABLE,
    Classification.UNKNOWN,
)

# (code, name, description, classification, retry_now)
_MT4_ROWS: tuple[tuple[int, str, str, Classification, bool], ...] = (
    (0, "ERR_NO_ERROR", "No error", _OK, False),
    (1, "ERR_NO_RESULT", "No error, but the result is unknown (unchanged values)", _OK, False),
    (2, "ERR_COMMON_ERROR", "Common error", _REJ, False),
    (3, "ERR_INVALID_TRADE_PARAMETERS", "Invalid trade parameters", _REJ, False),
    (4, "ERR_SERVER_BUSY", "Trade server is busy", _RET, False),
    (5, "ERR_OLD_VERSION", "Old version of the client terminal", _REJ, False),
    (6, "ERR_NO_CONNECTION", "No connection with trade server", _RET, False),
    (7, "ERR_NOT_ENOUGH_RIGHTS", "Not enough rights", _REJ, False),
    (8, "ERR_TOO_FREQUENT_REQUESTS", "Too frequent requests", _RET, False),
    (9, "ERR_MALFUNCTIONAL_TRADE", "Malfunctional trade operation", _REJ, False),
    (64, "ERR_ACCOUNT_DISABLED", "Account disabled", _REJ, False),
    (65, "ERR_INVALID_ACCOUNT", "Invalid account", _REJ, False),
    (128, "ERR_TRADE_TIMEOUT", "Trade timeout", _UNK, False),
    (129, "ERR_INVALID_PRICE", "Invalid price", _RET, True),
    (130, "ERR_INVALID_STOPS", "Invalid stops", _REJ, False),
    (131, "ERR_INVALID_TRADE_VOLUME", "Invalid trade volume", _REJ, False),
    (132, "ERR_MARKET_CLOSED", "Market is closed", _RET, False),
    (133, "ERR_TRADE_DISABLED", "Trade is disabled", _REJ, False),
    (134, "ERR_NOT_ENOUGH_MONEY", "Not enough money", _REJ, False),
    (135, "ERR_PRICE_CHANGED", "Price changed", _RET, True),
    (136, "ERR_OFF_QUOTES", "Off quotes", _RET, True),
    (137, "ERR_BROKER_BUSY", "Broker is busy", _RET, False),
    (138, "ERR_REQUOTE", "Requote", _RET, True),
    (139, "ERR_ORDER_LOCKED", "Order is locked", _REJ, False),
    (140, "ERR_LONG_POSITIONS_ONLY_ALLOWED", "Long positions only allowed", _REJ, False),
    (141, "ERR_TOO_MANY_REQUESTS", "Too many requests", _RET, False),
    (142, "ERR_ORDER_QUEUED", "Order queued (terminal-server internal)", _UNK, False),
    (143, "ERR_ORDER_ACCEPTED_BY_DEALER", "Order accepted by dealer (internal)", _UNK, False),
    (144, "ERR_ORDER_DISCARDED", "Order discarded during manual confirmation", _UNK, False),
    (145, "ERR_TRADE_MODIFY_DENIED", "Modification denied: too close to market", _RET, False),
    (146, "ERR_TRADE_CONTEXT_BUSY", "Trade context is busy", _RET, False),
    (147, "ERR_TRADE_EXPIRATION_DENIED", "Expirations are denied by broker", _REJ, False),
    (148, "ERR_TRADE_TOO_MANY_ORDERS", "Open and pending orders limit reached", _REJ, False),
    (149, "ERR_TRADE_HEDGE_PROHIBITED", "Hedging is prohibited", _REJ, False),
    (150, "ERR_TRADE_PROHIBITED_BY_FIFO", "Prohibited by FIFO rules", _REJ, False),
    (4105, "ERR_NO_ORDER_SELECTED", "No order selected", _REJ, False),
    (4106, "ERR_UNKNOWN_SYMBOL", "Unknown symbol", _REJ, False),
    (4107, "ERR_INVALID_PRICE_PARAM", "Invalid price parameter for trade function", _REJ, False),
    (4108, "ERR_INVALID_TICKET", "Invalid ticket", _REJ, False),
    (4109, "ERR_TRADE_NOT_ALLOWED", "Trade is not allowed (AutoTrading off)", _REJ, False),
    (4110, "ERR_LONGS_NOT_ALLOWED", "Longs are not allowed", _REJ, False),
    (4111, "ERR_SHORTS_NOT_ALLOWED", "Shorts are not allowed", _REJ, False),
    (
        4112,
        "ERR_TRADE_EXPERT_DISABLED_BY_SERVER",
        "Automated trading disabled by server",
        _REJ,
        False,
    ),
)

_MT5_ROWS: tuple[tuple[int, str, str, Classification, bool], ...] = (
    (10004, "TRADE_RETCODE_REQUOTE", "Requote", _RET, True),
    (10006, "TRADE_RETCODE_REJECT", "Request rejected", _REJ, False),
    (10007, "TRADE_RETCODE_CANCEL", "Request canceled by trader", _REJ, False),
    (10008, "TRADE_RETCODE_PLACED", "Order placed", _OK, False),
    (10009, "TRADE_RETCODE_DONE", "Request completed", _OK, False),
    (10010, "TRADE_RETCODE_DONE_PARTIAL", "Only part of the request was completed", _OK, False),
    (10011, "TRADE_RETCODE_ERROR", "Request processing error", _UNK, False),
    (10012, "TRADE_RETCODE_TIMEOUT", "Request canceled by timeout", _UNK, False),
    (10013, "TRADE_RETCODE_INVALID", "Invalid request", _REJ, False),
    (10014, "TRADE_RETCODE_INVALID_VOLUME", "Invalid volume in the request", _REJ, False),
    (10015, "TRADE_RETCODE_INVALID_PRICE", "Invalid price in the request", _REJ, False),
    (10016, "TRADE_RETCODE_INVALID_STOPS", "Invalid stops in the request", _REJ, False),
    (10017, "TRADE_RETCODE_TRADE_DISABLED", "Trade is disabled", _REJ, False),
    (10018, "TRADE_RETCODE_MARKET_CLOSED", "Market is closed", _RET, False),
    (
        10019,
        "TRADE_RETCODE_NO_MONEY",
        "There is not enough money to complete the request",
        _REJ,
        False,
    ),
    (10020, "TRADE_RETCODE_PRICE_CHANGED", "Prices changed", _RET, True),
    (10021, "TRADE_RETCODE_PRICE_OFF", "There are no quotes to process the request", _RET, True),
    (10022, "TRADE_RETCODE_INVALID_EXPIRATION", "Invalid order expiration date", _REJ, False),
    (10023, "TRADE_RETCODE_ORDER_CHANGED", "Order state changed", _RET, False),
    (10024, "TRADE_RETCODE_TOO_MANY_REQUESTS", "Too frequent requests", _RET, False),
    (10025, "TRADE_RETCODE_NO_CHANGES", "No changes in request", _OK, False),
    (10026, "TRADE_RETCODE_SERVER_DISABLES_AT", "Autotrading disabled by server", _REJ, False),
    (
        10027,
        "TRADE_RETCODE_CLIENT_DISABLES_AT",
        "Autotrading disabled by client terminal",
        _REJ,
        False,
    ),
    (10028, "TRADE_RETCODE_LOCKED", "Request locked for processing", _RET, False),
    (10029, "TRADE_RETCODE_FROZEN", "Order or position frozen", _RET, False),
    (10030, "TRADE_RETCODE_INVALID_FILL", "Invalid order filling type", _REJ, False),
    (10031, "TRADE_RETCODE_CONNECTION", "No connection with the trade server", _UNK, False),
    (10032, "TRADE_RETCODE_ONLY_REAL", "Operation is allowed only for live accounts", _REJ, False),
    (
        10033,
        "TRADE_RETCODE_LIMIT_ORDERS",
        "The number of pending orders has reached the limit",
        _REJ,
        False,
    ),
    (
        10034,
        "TRADE_RETCODE_LIMIT_VOLUME",
        "The volume of orders and positions for the symbol has reached the limit",
        _REJ,
        False,
    ),
    (10035, "TRADE_RETCODE_INVALID_ORDER", "Incorrect or prohibited order type", _REJ, False),
    (
        10036,
        "TRADE_RETCODE_POSITION_CLOSED",
        "Position with the specified identifier has already been closed",
        _REJ,
        False,
    ),
    (
        10038,
        "TRADE_RETCODE_INVALID_CLOSE_VOLUME",
        "A close volume exceeds the current position volume",
        _REJ,
        False,
    ),
    (
        10039,
        "TRADE_RETCODE_CLOSE_ORDER_EXIST",
        "A close order already exists for the position",
        _REJ,
        False,
    ),
    (
        10040,
        "TRADE_RETCODE_LIMIT_POSITIONS",
        "The number of open positions has reached the limit",
        _REJ,
        False,
    ),
    (
        10041,
        "TRADE_RETCODE_REJECT_CANCEL",
        "Pending order activation rejected; the order is canceled",
        _REJ,
        False,
    ),
    (
        10042,
        "TRADE_RETCODE_LONG_ONLY",
        "Only long positions are allowed for the symbol",
        _REJ,
        False,
    ),
    (
        10043,
        "TRADE_RETCODE_SHORT_ONLY",
        "Only short positions are allowed for the symbol",
        _REJ,
        False,
    ),
    (
        10044,
        "TRADE_RETCODE_CLOSE_ONLY",
        "Only position closing is allowed for the symbol",
        _REJ,
        False,
    ),
    (
        10045,
        "TRADE_RETCODE_FIFO_CLOSE",
        "Position closing is allowed only by the FIFO rule",
        _REJ,
        False,
    ),
    (
        10046,
        "TRADE_RETCODE_HEDGE_PROHIBITED",
        "Opposite positions on a single symbol are disabled",
        _REJ,
        False,
    ),
)


def _table(
    platform: Platform, rows: tuple[tuple[int, str, str, Classification, bool], ...]
) -> dict[int, PlatformCode]:
    return {c: PlatformCode(platform, c, n, d, k, r) for c, n, d, k, r in rows}


MT4_CODES: dict[int, PlatformCode] = _table(Platform.MT4, _MT4_ROWS)
MT5_CODES: dict[int, PlatformCode] = _table(Platform.MT5, _MT5_ROWS)
_TABLES = {Platform.MT4: MT4_CODES, Platform.MT5: MT5_CODES}


PROTOCOL_CODES: dict[int, PlatformCode] = {
    # Protocol-level codes (docs/protocol.md §4.2): -1..-6 guarantee nothing was executed.
    c: PlatformCode(Platform.MT5, c, n, d, k)
    for c, n, d, k in (
        (-1, "unknown_operation", "The terminal does not know the operation", _REJ),
        (-2, "invalid_request", "A field of the request is invalid", _REJ),
        (-3, "not_ready", "The terminal is not ready to trade yet", _RET),
        (-4, "internal", "The EA failed before executing the request", _REJ),
        (-5, "too_large", "The answer would exceed the frame limit", _REJ),
        # Nothing executed: the trade's turn came after its deadline (§4.4). Safe to retry.
        (-6, "deadline_passed", "The trade request's deadline passed before it started", _RET),
        # The one negative code that says the opposite: the platform's trade function was
        # called and what it did is not known (the MetaTrader5 package's IPC failed inside
        # order_send). Resolved against the account (§9), never resent.
        (-7, "outcome_unknown", "The trade call failed after it may have executed", _UNK),
    )
}


_OK_CODES = {
    platform: frozenset(
        code
        for code, entry in (*table.items(), *PROTOCOL_CODES.items())
        if entry.classification == Classification.OK
        and (code >= 0) == (code in table)  # as lookup() reads: the table, or protocol codes
    )
    for platform, table in _TABLES.items()
}


def is_ok(platform: Platform, code: int) -> bool:
    """Whether ``code`` is a success or no-op on ``platform`` (``lookup(...).classification
    == OK``, by a set: every answer asks it)."""
    return code in _OK_CODES[platform]


def lookup(platform: Platform, code: int) -> PlatformCode:
    """The registry entry for ``code``; an unlisted code is treated as outcome-unknown.

    A code the registry does not know cannot be proven harmless, so it must never lead to a
    blind resend: classifying it UNKNOWN forces resolution against the account.
    """
    entry = _TABLES[platform].get(code) if code >= 0 else PROTOCOL_CODES.get(code)
    if entry is not None:
        return entry
    return PlatformCode(platform, code, f"UNLISTED_{code}", "Code not in the registry", _UNK)


class MT4:
    """MT4 error numbers the project refers to by name."""

    NO_ERROR = 0
    NO_RESULT = 1
    COMMON_ERROR = 2
    INVALID_TRADE_PARAMETERS = 3
    NO_CONNECTION = 6
    TRADE_TIMEOUT = 128
    INVALID_PRICE = 129
    INVALID_STOPS = 130
    INVALID_TRADE_VOLUME = 131
    MARKET_CLOSED = 132
    TRADE_DISABLED = 133
    NOT_ENOUGH_MONEY = 134
    PRICE_CHANGED = 135
    OFF_QUOTES = 136
    REQUOTE = 138
    LONG_POSITIONS_ONLY_ALLOWED = 140
    TRADE_MODIFY_DENIED = 145
    TRADE_CONTEXT_BUSY = 146
    TRADE_EXPIRATION_DENIED = 147
    TRADE_TOO_MANY_ORDERS = 148
    TRADE_HEDGE_PROHIBITED = 149
    TRADE_PROHIBITED_BY_FIFO = 150
    UNKNOWN_SYMBOL = 4106
    INVALID_TICKET = 4108
    TRADE_NOT_ALLOWED = 4109


class MT5:
    """MT5 trade return codes the project refers to by name."""

    REQUOTE = 10004
    REJECT = 10006
    PLACED = 10008
    DONE = 10009
    ERROR = 10011
    TIMEOUT = 10012
    INVALID = 10013
    INVALID_VOLUME = 10014
    INVALID_PRICE = 10015
    INVALID_STOPS = 10016
    TRADE_DISABLED = 10017
    MARKET_CLOSED = 10018
    NO_MONEY = 10019
    PRICE_CHANGED = 10020
    PRICE_OFF = 10021
    INVALID_EXPIRATION = 10022
    NO_CHANGES = 10025
    CLIENT_DISABLES_AT = 10027
    FROZEN = 10029
    INVALID_FILL = 10030
    CONNECTION = 10031
    LIMIT_ORDERS = 10033
    LIMIT_VOLUME = 10034
    INVALID_ORDER = 10035
    LIMIT_POSITIONS = 10040
    LONG_ONLY = 10042
    SHORT_ONLY = 10043
    CLOSE_ONLY = 10044
    FIFO_CLOSE = 10045
    HEDGE_PROHIBITED = 10046
