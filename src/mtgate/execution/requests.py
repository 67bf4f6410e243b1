"""The order API's requests and results (the in-process API; the HTTP API reuses them).

Requests are msgspec structs validated on construction through :func:`parse`, so a bad
payload is refused with the field's name before anything else happens.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from mtgate.domain.codes import Classification
from mtgate.domain.enums import OrderType
from mtgate.domain.limits import (
    INT32_MAX,
    INT64_MAX,
    MT_DATETIME_MAX_MS,
    PRICE_MAX,
    SERVER_MAX,
    SIGNAL_ID_MAX,
    SYMBOL_MAX,
    VOLUME_MAX,
)
from mtgate.domain.orders import CLIENT_ID_MAX, CLIENT_ID_PATTERN, OrderStatus

# Every field is bounded by the MetaTrader type or journal column it becomes (limits.py), so
# nothing out of range reaches the wire encoder, the journal's driver or a date conversion.
Volume = Annotated[float, msgspec.Meta(gt=0, le=VOLUME_MAX)]
Price = Annotated[float, msgspec.Meta(ge=0, le=PRICE_MAX)]
PositivePrice = Annotated[float, msgspec.Meta(gt=0, le=PRICE_MAX)]
ClientId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=CLIENT_ID_MAX, pattern=CLIENT_ID_PATTERN)
]
"""Not ending in ``.`` and one or two digits, which name an attempt (docs/protocol.md §9)."""
Account = Annotated[
    str,
    msgspec.Meta(
        max_length=19 + 1 + SERVER_MAX, pattern=rf"^[0-9]{{1,19}}@[^\x00-\x1f]{{1,{SERVER_MAX}}}$"
    ),
]
"""``<login>@<server>``: the login an MT5 ``long`` (checked against its maximum when parsed),
the server name at most the journal's column."""
Symbol = Annotated[str, msgspec.Meta(min_length=1, max_length=SYMBOL_MAX)]
SignalId = Annotated[str, msgspec.Meta(min_length=1, max_length=SIGNAL_ID_MAX)]
Magic = Annotated[int, msgspec.Meta(ge=0, le=INT32_MAX)]
"""MT4 magic numbers are 32-bit ints (docs/protocol.md §13)."""
Points = Annotated[int, msgspec.Meta(ge=0, le=INT32_MAX)]
"""Distances in points (MQL ``int``: deviation, slippage, levels)."""
Ticket = Annotated[int, msgspec.Meta(gt=0, le=INT64_MAX)]
"""MT5 tickets are ``ulong``; the journal keeps them in signed 64-bit columns."""
ExpirationMs = Annotated[int, msgspec.Meta(gt=0, le=MT_DATETIME_MAX_MS)]
"""Epoch ms within MQL's ``datetime`` range (up to 3000-12-31 23:59:59)."""


class Side(enum.StrEnum):
    BUY = "buy"
    SELL = "sell"


class PendingKind(enum.StrEnum):
    BUY_LIMIT = "buy_limit"
    SELL_LIMIT = "sell_limit"
    BUY_STOP = "buy_stop"
    SELL_STOP = "sell_stop"
    BUY_STOP_LIMIT = "buy_stop_limit"
    SELL_STOP_LIMIT = "sell_stop_limit"


PENDING_TYPES: dict[PendingKind, OrderType] = {
    PendingKind.BUY_LIMIT: OrderType.BUY_LIMIT,
    PendingKind.SELL_LIMIT: OrderType.SELL_LIMIT,
    PendingKind.BUY_STOP: OrderType.BUY_STOP,
    PendingKind.SELL_STOP: OrderType.SELL_STOP,
    PendingKind.BUY_STOP_LIMIT: OrderType.BUY_STOP_LIMIT,
    PendingKind.SELL_STOP_LIMIT: OrderType.SELL_STOP_LIMIT,
}

ORDER_TYPE_NAMES: dict[OrderType, str] = {
    OrderType.BUY: "buy",
    OrderType.SELL: "sell",
    **{t: k.value for k, t in PENDING_TYPES.items()},
}


class _Request(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class RetryRequest(_Request, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What the caller allows the bridge to retry, beyond the defaults (docs/operations.md,
    "Retries"). Every retry is a new attempt made only once the previous one is proven not to
    have executed; nothing here can make an order execute twice."""

    enabled: bool = True
    """False: one attempt only, whatever the code."""
    market_closed_wait_s: Annotated[float, msgspec.Meta(ge=0, le=86_400)] = 0.0
    """Retry "market closed" (MT4 132, MT5 10018) for at most this long (the bridge's
    ``retry.market_closed_cap_s`` caps it). 0: never."""
    min_volume: Volume | None = None
    """No money (MT4 134, MT5 10019): retry with half the volume, rounded down to the
    symbol's step, while it stays at or above this floor. None: never."""
    round_volume: bool = False
    """Invalid volume (MT4 131, MT5 10014): retry with the volume rounded down to the step."""
    next_filling: bool = False
    """Unsupported filling (MT5 10030): retry with the next mode the symbol allows."""


Filling = Literal["fok", "ioc", "return"]
FILLING_MODES: dict[str, int] = {"fok": 0, "ioc": 1, "return": 2}
"""MT5 ``ORDER_FILLING_*`` values (docs/protocol.md §6)."""


class MarketOrderRequest(_Request, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Buy or sell at market. ``price`` (optional) is the price the decision was made at: the
    terminal fills within ``deviation_points`` of it under instant execution, and slippage is
    measured against it (against the last known Ask/Bid when omitted)."""

    account: Account
    symbol: Symbol
    side: Side
    volume: Volume
    sl: Price | None = None
    tp: Price | None = None
    price: Price | None = None
    deviation_points: Points = 10
    magic: Magic | None = None
    """None: the bridge's configured magic number."""
    client_order_id: ClientId | None = None
    signal_id: SignalId | None = None
    filling: Filling | None = None
    """MT5 filling mode; None: the EA picks the first the symbol allows (ignored on MT4)."""
    retry: RetryRequest | None = None
    """None: the bridge's default retries (no opt-in strategy)."""


class PendingOrderRequest(_Request, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Limit, stop or (MT5) stop-limit order. ``stoplimit`` is the limit price a stop-limit
    order places when ``price`` is reached. ``expiration_ms`` (epoch ms, trade-server time)
    makes it expire; none means good till cancelled."""

    account: Account
    symbol: Symbol
    kind: PendingKind
    volume: Volume
    price: PositivePrice
    stoplimit: Price | None = None
    sl: Price | None = None
    tp: Price | None = None
    expiration_ms: ExpirationMs | None = None
    magic: Magic | None = None
    """None: the bridge's configured magic number."""
    client_order_id: ClientId | None = None
    signal_id: SignalId | None = None
    retry: RetryRequest | None = None
    """None: the bridge's default retries (no opt-in strategy)."""


class ModifyOrderRequest(_Request, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """New values for a placed pending order; a field left out keeps its current value and
    0 removes an SL or TP. Name the order by ``client_order_id`` or by ``ticket``."""

    account: Account
    client_order_id: ClientId | None = None
    ticket: Ticket | None = None
    price: PositivePrice | None = None
    stoplimit: Price | None = None
    sl: Price | None = None
    tp: Price | None = None
    expiration_ms: Annotated[int, msgspec.Meta(ge=0, le=MT_DATETIME_MAX_MS)] | None = None


class CancelOrderRequest(_Request, frozen=True, forbid_unknown_fields=True, kw_only=True):
    account: Account
    client_order_id: ClientId | None = None
    ticket: Ticket | None = None


class OrderQuery(_Request, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One order of the journal, by exactly one of client order id and ticket."""

    account: Account
    client_order_id: ClientId | None = None
    ticket: Ticket | None = None


class OrdersQuery(_Request, frozen=True, forbid_unknown_fields=True, kw_only=True):
    account: Account | None = None
    statuses: frozenset[OrderStatus] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1000


class AccountQuery(_Request, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A read of one account's terminal (``symbol`` "" = every symbol)."""

    account: Account
    symbol: Annotated[str, msgspec.Meta(max_length=SYMBOL_MAX)] = ""


class OrderError(msgspec.Struct, frozen=True, omit_defaults=True):
    """Why an order did not do what was asked.

    ``source``: ``bridge`` (pre-validation or routing refused it; nothing was sent),
    ``terminal`` (the platform's own ``code`` and ``name``), or ``link`` (the request was
    sent and no answer came: the order is UNKNOWN until resolved)."""

    source: Literal["bridge", "terminal", "link"]
    message: str
    code: int | None = None
    name: str | None = None
    classification: Classification | None = None
    field: str | None = None
    rule: str | None = None


class AttemptReport(msgspec.Struct, frozen=True, omit_defaults=True):
    """One attempt of an order that needed more than one: what it asked, what came of it,
    and what the bridge did next."""

    attempt: int
    terminal_id: str
    comment: str
    volume: float
    outcome: str
    """``rejected`` (with ``code``), ``absent`` (outcome unknown, then proven not executed),
    or the order's final status for the last attempt."""
    code: int | None = None
    name: str | None = None
    next: str | None = None
    """The strategy of the attempt that followed (``fresh_price``, ``backoff``, ...)."""


class OrderResult(msgspec.Struct, frozen=True, omit_defaults=True):
    client_order_id: str
    account: str
    terminal_id: str
    symbol: str
    order_type: str
    status: OrderStatus
    volume: float
    ticket: int | None = None
    position_id: int | None = None
    deal: int | None = None
    requested_price: float | None = None
    fill_price: float | None = None
    fill_volume: float | None = None
    unfilled_volume: float | None = None
    """A partial fill (MT5 IOC, 10010): the lots not filled, cancelled by the server."""
    slippage_points: float | None = None
    sl: float | None = None
    tp: float | None = None
    execution_time_ms: float | None = None
    action: str = "open"
    position_ticket: int | None = None
    """Close orders: the position closed."""
    remainder_ticket: int | None = None
    """Partial closes: the ticket holding what is left (MT4: a new ticket; MT5: the same)."""
    error: OrderError | None = None
    attempts: tuple[AttemptReport, ...] = ()
    """Every attempt, when there was more than one (empty: the order took one attempt)."""


class InvalidRequest(ValueError):
    """A request payload that does not parse; ``field`` names the offending field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


R = TypeVar("R", bound=msgspec.Struct)

_NAMED_FIELD = re.compile(r"(?:unknown|required) field `([^`]+)`")


def _field_of(text: str) -> str | None:
    """The field a msgspec validation message is about."""
    if "at `$." in text:
        return text.rpartition("at `$.")[2].rstrip("`").split("[")[0].split(".")[0]
    named = _NAMED_FIELD.search(text)
    return named.group(1) if named else None


def parse(kind: type[R], payload: dict[str, Any] | bytes) -> R:
    """Build a request from a dict or JSON bytes, raising :class:`InvalidRequest` naming the field."""
    try:
        if isinstance(payload, bytes | bytearray):
            return msgspec.json.decode(payload, type=kind)
        return msgspec.convert(payload, kind)
    except msgspec.ValidationError as exc:
        text = str(exc)
        raise InvalidRequest(text, field=_field_of(text)) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"malformed JSON: {exc}") from None


def checked(kind: type[R], request: R | None, fields: dict[str, Any]) -> R:
    """The request of an API call, given either built (``request``) or as ``fields``,
    validated the same way in both cases.

    A struct's constructor checks neither types nor constraints (``side="BUY"``,
    ``volume=-1`` and a 25-digit ticket all construct), so a built request goes through
    :func:`parse` again, from its builtins."""
    if request is None:
        return parse(kind, fields)
    if fields:
        raise InvalidRequest(f"give a request or fields, not both (got {sorted(fields)[:5]})")
    if type(request) is not kind:
        raise InvalidRequest(f"expected a {kind.__name__}, got {type(request).__name__}")
    try:
        builtins = msgspec.to_builtins(request)
    except (TypeError, ValueError, OverflowError) as exc:  # a value JSON cannot carry
        raise InvalidRequest(f"{kind.__name__}: {exc}") from None
    return parse(kind, builtins)
