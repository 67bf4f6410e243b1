"""MetaTrader enumerations, by value, as the wire protocol carries them.

Values follow MQL5 (reference §3); MT4 uses the same numbers for the six order types it has.
"""

from __future__ import annotations

import enum
from typing import TypeVar


class Platform(enum.StrEnum):
    MT4 = "mt4"
    MT5 = "mt5"


class MarginMode(enum.IntEnum):
    """ACCOUNT_MARGIN_MODE. MT4 accounts are always hedging."""

    NETTING = 0
    EXCHANGE = 1
    HEDGING = 2


class OrderType(enum.IntEnum):
    """ENUM_ORDER_TYPE (MT4 ``OP_*`` for 0..5)."""

    BUY = 0
    SELL = 1
    BUY_LIMIT = 2
    SELL_LIMIT = 3
    BUY_STOP = 4
    SELL_STOP = 5
    BUY_STOP_LIMIT = 6
    SELL_STOP_LIMIT = 7

    @property
    def is_buy(self) -> bool:
        return not self & 1  # the int itself: ``.value`` is a descriptor call (hot path)

    # The tests below compare the int itself (hot path): BUY, SELL are 0, 1; the limits 2, 3;
    # the stops 4, 5; the stop-limits 6, 7.

    @property
    def is_market(self) -> bool:
        return self < 2

    @property
    def is_pending(self) -> bool:
        return self > 1

    @property
    def is_limit(self) -> bool:
        return 2 <= self <= 3

    @property
    def is_stop(self) -> bool:
        return 4 <= self <= 5

    @property
    def is_stop_limit(self) -> bool:
        return self > 5


PENDING_TYPES = tuple(t for t in OrderType if t.is_pending)


class PositionType(enum.IntEnum):
    BUY = 0
    SELL = 1


class ExecutionMode(enum.IntEnum):
    """SYMBOL_TRADE_EXECUTION (``trade_exemode``)."""

    REQUEST = 0
    INSTANT = 1
    MARKET = 2
    EXCHANGE = 3


class TradeMode(enum.IntEnum):
    """SYMBOL_TRADE_MODE."""

    DISABLED = 0
    LONG_ONLY = 1
    SHORT_ONLY = 2
    CLOSE_ONLY = 3
    FULL = 4


class Filling(enum.IntEnum):
    """ORDER_FILLING_*."""

    FOK = 0
    IOC = 1
    RETURN = 2
    BOC = 3


class SymbolFillingFlag(enum.IntFlag):
    """SYMBOL_FILLING_* bits of ``filling_mode``."""

    FOK = 1
    IOC = 2
    BOC = 4


class TimeInForce(enum.IntEnum):
    """ORDER_TIME_*."""

    GTC = 0
    DAY = 1
    SPECIFIED = 2
    SPECIFIED_DAY = 3


class ExpirationFlag(enum.IntFlag):
    """SYMBOL_EXPIRATION_* bits of ``expiration_mode``."""

    GTC = 1
    DAY = 2
    SPECIFIED = 4
    SPECIFIED_DAY = 8


class OrderModeFlag(enum.IntFlag):
    """SYMBOL_ORDER_* bits of ``order_mode``."""

    MARKET = 1
    LIMIT = 2
    STOP = 4
    STOP_LIMIT = 8
    SL = 16
    TP = 32
    CLOSE_BY = 64


class CalcMode(enum.IntEnum):
    """SYMBOL_CALC_MODE (the OTC modes the simulator models)."""

    FOREX = 0
    FUTURES = 1
    CFD = 2
    CFD_INDEX = 3
    CFD_LEVERAGE = 4
    FOREX_NO_LEVERAGE = 5


class DealType(enum.IntEnum):
    BUY = 0
    SELL = 1
    BALANCE = 2


class DealEntry(enum.IntEnum):
    IN = 0
    OUT = 1
    INOUT = 2
    OUT_BY = 3


class DealReason(enum.IntEnum):
    CLIENT = 0
    MOBILE = 1
    WEB = 2
    EXPERT = 3
    SL = 4
    TP = 5
    SO = 6


class OrderState(enum.IntEnum):
    """ORDER_STATE_* as the terminal reports it."""

    STARTED = 0
    PLACED = 1
    CANCELED = 2
    PARTIAL = 3
    FILLED = 4
    REJECTED = 5
    EXPIRED = 6


def calc_mode(value: int) -> CalcMode:
    """``CalcMode(value)`` by a table (the enum's own lookup is several calls: hot path).

    Raises:
        ValueError: ``value`` is not a calculation mode the bridge knows.
    """
    return _member(_CALC_MODES, value, "CalcMode")


def trade_mode(value: int) -> TradeMode:
    """``TradeMode(value)`` by a table, as :func:`calc_mode`."""
    return _member(_TRADE_MODES, value, "TradeMode")


_E = TypeVar("_E", bound=enum.IntEnum)


def _member(table: dict[int, _E], value: int, name: str) -> _E:
    try:
        return table[value]
    except (KeyError, TypeError):
        raise ValueError(f"{value!r} is not a valid {name}") from None


_CALC_MODES: dict[int, CalcMode] = {int(mode): mode for mode in CalcMode}
_TRADE_MODES: dict[int, TradeMode] = {int(mode): mode for mode in TradeMode}


def order_mode_flag(order_type: OrderType) -> OrderModeFlag:
    """The ``order_mode`` bit that must be set for ``order_type`` to be accepted."""
    if order_type.is_market:
        return OrderModeFlag.MARKET
    if order_type.is_limit:
        return OrderModeFlag.LIMIT
    if order_type.is_stop:
        return OrderModeFlag.STOP
    return OrderModeFlag.STOP_LIMIT


ORDER_MODE_BITS: dict[OrderType, int] = {t: int(order_mode_flag(t)) for t in OrderType}
""":func:`order_mode_flag` as a plain int per order type (``int & IntFlag`` makes a flag
through the enum machinery on every test)."""
