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
from mtgate.domain.orders import CLIENT_ID_MAX, OrderStatus

Volume = Annotated[float, msgspec.Meta(gt=0)]
Price = Annotated[float, msgspec.Meta(ge=0)]
ClientId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=CLIENT_ID_MAX, pattern=r"^[A-Za-z0-9._-]+$")
]
Account = Annotated[str, msgspec.Meta(pattern=r"^[0-9]+@.+$")]
Magic = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
"""MT4 magic numbers are 32-bit ints (docs/protocol.md §13)."""


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


class MarketOrderRequest(_Request, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Buy or sell at market. ``price`` (optional) is the price the decision was made at: the
    terminal fills within ``deviation_points`` of it under instant execution, and slippage is
    measured against it (against the last known Ask/Bid when omitted)."""

    account: Account
    symbol: str
    side: Side
    volume: Volume
    sl: Price | None = None
    tp: Price | None = None
    price: Price | None = None
    deviation_points: Annotated[int, msgspec.Meta(ge=0)] = 10
    magic: Magic = 0
    client_order_id: ClientId | None = None
    signal_id: str | None = None


class PendingOrderRequest(_Request, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Limit, stop or (MT5) stop-limit order. ``stoplimit`` is the limit price a stop-limit
    order places when ``price`` is reached. ``expiration_ms`` (epoch ms, trade-server time)
    makes it expire; none means good till cancelled."""

    account: Account
    symbol: str
    kind: PendingKind
    volume: Volume
    price: Annotated[float, msgspec.Meta(gt=0)]
    stoplimit: Price | None = None
    sl: Price | None = None
    tp: Price | None = None
    expiration_ms: Annotated[int, msgspec.Meta(gt=0)] | None = None
    magic: Magic = 0
    client_order_id: ClientId | None = None
    signal_id: str | None = None


class ModifyOrderRequest(_Request, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """New values for a placed pending order; a field left out keeps its current value and
    0 removes an SL or TP. Name the order by ``client_order_id`` or by ``ticket``."""

    account: Account
    client_order_id: ClientId | None = None
    ticket: Annotated[int, msgspec.Meta(gt=0)] | None = None
    price: Annotated[float, msgspec.Meta(gt=0)] | None = None
    stoplimit: Price | None = None
    sl: Price | None = None
    tp: Price | None = None
    expiration_ms: Annotated[int, msgspec.Meta(ge=0)] | None = None


class CancelOrderRequest(_Request, frozen=True, forbid_unknown_fields=True, kw_only=True):
    account: Account
    client_order_id: ClientId | None = None
    ticket: Annotated[int, msgspec.Meta(gt=0)] | None = None


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
