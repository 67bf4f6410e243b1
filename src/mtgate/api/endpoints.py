"""What the HTTP API offers: one table, from which both the routes and the OpenAPI document
are made (docs/api.md).

Bodies are parsed by the same strict decoder as the Python API (:func:`parse`): ``"0.01"`` is
not a number of lots, an unknown field is refused, and every refusal names its field. Query
and path values are text by nature and are converted to their field's type, then held to the
same bounds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from mtgate.api.auth import Scope
from mtgate.bridge import Bridge
from mtgate.domain.orders import OrderStatus
from mtgate.execution.overrides import OverrideRefused, OverrideResult
from mtgate.execution.requests import (
    Account,
    CancelOrderRequest,
    ClientId,
    InvalidRequest,
    MarketOrderRequest,
    ModifyOrderRequest,
    OrderResult,
    PendingOrderRequest,
    Ticket,
    parse,
)
from mtgate.execution.signals import SignalRequest, SignalResult
from mtgate.health.alerts import Alert, TerminalHealth
from mtgate.positions.requests import (
    BulkCloseRequest,
    BulkItem,
    BulkModifyRequest,
    CloseByRequest,
    ClosePositionRequest,
    ModifyPositionRequest,
    PositionResult,
    ReversalResult,
    ReversePositionRequest,
    TrailingStopRequest,
)
from mtgate.protocol import messages as m
from mtgate.sessions.registry import TerminalStatus
from mtgate.store.rejections import RejectionQueryError, RejectionReport

TerminalId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
Symbol = Annotated[str, msgspec.Meta(max_length=32)]


class NotFound(Exception):
    """The thing a path names does not exist (HTTP 404, code ``not_found``)."""


class Conflict(Exception):
    """The order's state forbids the change (HTTP 409, code ``conflict``); nothing changed."""


@dataclass(frozen=True, slots=True)
class Call:
    """One request as an endpoint sees it: the body's bytes, the path's and query's values."""

    body: bytes
    path: Mapping[str, str]
    query: Mapping[str, str]
    caller: str = ""
    """The name of the token that made the call (an override's operator unless it names one)."""


Run = Callable[[Bridge, Call], Awaitable[Any]]
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: Literal["GET", "POST", "DELETE"]
    path: str
    """OpenAPI form: ``/v1/orders/{client_order_id}``."""
    scope: Scope | None
    """None: no token needed (liveness and readiness probes)."""
    summary: str
    run: Run
    body: type[msgspec.Struct] | None = None
    params: type[msgspec.Struct] | None = None
    """Path and query values, converted and bounded as this struct's fields."""
    response: Any = None
    operation_id: str = ""


# --- parameters ------------------------------------------------------------------------------


class _Params(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class AccountParams(_Params, frozen=True, forbid_unknown_fields=True, kw_only=True):
    account: Account


class SymbolParams(_Params, frozen=True, forbid_unknown_fields=True, kw_only=True):
    account: Account
    symbol: Symbol = ""
    """Only this symbol's ("": every symbol)."""


class OrderByIdParams(_Params, frozen=True, forbid_unknown_fields=True, kw_only=True):
    client_order_id: ClientId
    account: Account


class OrderByTicketParams(_Params, frozen=True, forbid_unknown_fields=True, kw_only=True):
    ticket: Ticket
    account: Account


class OrdersParams(_Params, frozen=True, forbid_unknown_fields=True, kw_only=True):
    account: Account | None = None
    status: Annotated[str, msgspec.Meta(max_length=200)] = ""
    """Comma-separated statuses (``filled,rejected``); empty: every status."""
    limit: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1000


class TerminalParams(_Params, frozen=True, forbid_unknown_fields=True, kw_only=True):
    terminal_id: TerminalId


class TrailingParams(_Params, frozen=True, forbid_unknown_fields=True, kw_only=True):
    ticket: Ticket
    account: Account


class RejectionParams(_Params, frozen=True, forbid_unknown_fields=True, kw_only=True):
    since: Annotated[str, msgspec.Meta(max_length=40)] = "1h"
    """A duration before now (``30m``, ``1h``, ``2d``), ``now``, or an ISO 8601 time."""
    until: Annotated[str, msgspec.Meta(max_length=40)] | None = None
    by: Annotated[str, msgspec.Meta(max_length=60)] = "code"
    """Comma-separated: ``code``, ``account``, ``symbol``, and one of minute/hour/day."""
    account: Account | None = None
    symbol: Symbol | None = None
    platform: Literal["mt4", "mt5"] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1000


OverrideText = Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]


class ResolveOverride(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Mark an order in doubt resolved as a human found it on the terminal."""

    client_order_id: ClientId
    status: Literal["filled", "placed", "rejected", "cancelled", "not_found"]
    evidence: OverrideText
    reason: OverrideText
    operator: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    """Who decided (default: the token's name)."""


class CancelOverride(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Withdraw a journalled intent nothing carries; or (``force-attempt``) send an order
    proven not to have executed again, as its next attempt."""

    client_order_id: ClientId
    reason: OverrideText
    operator: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None


class TrailingView(msgspec.Struct, frozen=True):
    account: str
    ticket: int
    symbol: str
    distance_points: int
    step_points: int
    activation_points: int | None
    min_interval_ms: int
    active: bool
    stop_loss: float | None
    moves: int


class TrailingCancelled(msgspec.Struct, frozen=True):
    account: str
    ticket: int
    cancelled: bool
    """False when no trailing stop of the position was active."""


class Probe(msgspec.Struct, frozen=True):
    status: str
    """``ok``, or ``not_ready`` with the accounts no ready terminal serves."""
    accounts_without_terminal: list[str] = []


class TerminalChange(msgspec.Struct, frozen=True):
    terminal_id: str
    drained: bool


def params(kind: type[msgspec.Struct], call: Call) -> Any:
    """The path and query values of ``call`` as ``kind``; :class:`InvalidRequest` naming the
    field at fault. A value given twice in the query is refused by the framework's parser
    taking the last one: here a parameter is one value."""
    values = {**call.query, **call.path}
    try:
        return msgspec.convert(values, kind, strict=False)
    except msgspec.ValidationError as exc:
        text = str(exc)
        field = text.rpartition("`$.")[2].rstrip("`") if "`$." in text else None
        if field is None and "field `" in text:
            field = text.split("field `", 1)[1].split("`", 1)[0]
        raise InvalidRequest(text, field=field) from None


def _statuses(text: str) -> set[OrderStatus] | None:
    if not text:
        return None
    out: set[OrderStatus] = set()
    for part in text.split(","):
        try:
            out.add(OrderStatus(part.strip()))
        except ValueError:
            names = ", ".join(s.value for s in OrderStatus)
            raise InvalidRequest(
                f"status {part.strip()[:40]!r} is not one of {names}", field="status"
            ) from None
    return out


# --- what each endpoint does -----------------------------------------------------------------


async def _market(bridge: Bridge, call: Call) -> OrderResult:
    return await bridge.place_market_order(parse(MarketOrderRequest, call.body))


async def _signal(bridge: Bridge, call: Call) -> SignalResult:
    return await bridge.execute_signal(parse(SignalRequest, call.body))


async def _pending(bridge: Bridge, call: Call) -> OrderResult:
    return await bridge.place_pending_order(parse(PendingOrderRequest, call.body))


async def _modify_order(bridge: Bridge, call: Call) -> OrderResult:
    return await bridge.modify_order(parse(ModifyOrderRequest, call.body))


async def _cancel_order(bridge: Bridge, call: Call) -> OrderResult:
    return await bridge.cancel_order(parse(CancelOrderRequest, call.body))


async def _order_by_id(bridge: Bridge, call: Call) -> OrderResult:
    p: OrderByIdParams = params(OrderByIdParams, call)
    found = await bridge.get_order(p.account, client_order_id=p.client_order_id)
    if found is None:
        raise NotFound(f"no order {p.client_order_id!r} on account {p.account}")
    return found


async def _order_by_ticket(bridge: Bridge, call: Call) -> OrderResult:
    p: OrderByTicketParams = params(OrderByTicketParams, call)
    found = await bridge.get_order(p.account, ticket=p.ticket)
    if found is None:
        raise NotFound(f"no order with ticket {p.ticket} on account {p.account}")
    return found


async def _orders(bridge: Bridge, call: Call) -> list[OrderResult]:
    p: OrdersParams = params(OrdersParams, call)
    return await bridge.list_orders(p.account, _statuses(p.status), p.limit)


async def _account(bridge: Bridge, call: Call) -> m.AccountReport:
    p: AccountParams = params(AccountParams, call)
    return await bridge.get_account(p.account)


async def _positions(bridge: Bridge, call: Call) -> list[m.PositionReport]:
    p: SymbolParams = params(SymbolParams, call)
    return await bridge.list_positions(p.account, p.symbol)


async def _pending_orders(bridge: Bridge, call: Call) -> list[m.OrderReport]:
    p: SymbolParams = params(SymbolParams, call)
    return await bridge.list_pending_orders(p.account, p.symbol)


async def _modify_position(bridge: Bridge, call: Call) -> PositionResult:
    return await bridge.modify_position(parse(ModifyPositionRequest, call.body))


async def _close_position(bridge: Bridge, call: Call) -> OrderResult:
    return await bridge.close_position(parse(ClosePositionRequest, call.body))


async def _close_by(bridge: Bridge, call: Call) -> OrderResult:
    return await bridge.close_by(parse(CloseByRequest, call.body))


async def _reverse(bridge: Bridge, call: Call) -> ReversalResult:
    return await bridge.reverse_position(parse(ReversePositionRequest, call.body))


async def _bulk_modify(bridge: Bridge, call: Call) -> list[BulkItem]:
    return await bridge.bulk_modify(parse(BulkModifyRequest, call.body))


async def _bulk_close(bridge: Bridge, call: Call) -> list[BulkItem]:
    return await bridge.bulk_close(parse(BulkCloseRequest, call.body))


async def _trail(bridge: Bridge, call: Call) -> TrailingView:
    t = await bridge.trail_position(parse(TrailingStopRequest, call.body))
    return TrailingView(
        str(t.account), t.ticket, t.symbol, t.distance_points, t.step_points,
        t.activation_points, t.min_interval_ms, t.active, t.stop_loss, t.moves,
    )  # fmt: skip


async def _untrail(bridge: Bridge, call: Call) -> TrailingCancelled:
    p: TrailingParams = params(TrailingParams, call)
    return TrailingCancelled(p.account, p.ticket, bridge.cancel_trailing(p.account, p.ticket))


async def _rejections(bridge: Bridge, call: Call) -> RejectionReport:
    p: RejectionParams = params(RejectionParams, call)
    try:
        return await bridge.rejections(
            p.since, p.until, by=p.by.split(","), account=p.account, symbol=p.symbol,
            platform=p.platform, limit=p.limit,
        )  # fmt: skip
    except RejectionQueryError as exc:
        raise InvalidRequest(str(exc)) from None


async def _resolve(bridge: Bridge, call: Call) -> OverrideResult:
    o = parse(ResolveOverride, call.body)
    return await _overriding(
        bridge.override_resolve(
            o.client_order_id, o.status, evidence=o.evidence,
            operator=o.operator or call.caller, reason=o.reason,
        )
    )  # fmt: skip


async def _withdraw(bridge: Bridge, call: Call) -> OverrideResult:
    o = parse(CancelOverride, call.body)
    return await _overriding(
        bridge.override_cancel(o.client_order_id, operator=o.operator or call.caller,
                               reason=o.reason)
    )  # fmt: skip


async def _force(bridge: Bridge, call: Call) -> OrderResult:
    o = parse(CancelOverride, call.body)
    return await _overriding(
        bridge.override_force_attempt(o.client_order_id, operator=o.operator or call.caller,
                                      reason=o.reason)
    )  # fmt: skip


async def _overriding(call: Awaitable[V]) -> V:
    """An override refused (the order's state forbids it) is the caller's to see: 409."""
    try:
        return await call
    except OverrideRefused as exc:
        raise Conflict(str(exc)) from None


async def _terminals(bridge: Bridge, call: Call) -> list[TerminalStatus]:
    return bridge.terminals()


async def _drain(bridge: Bridge, call: Call) -> TerminalChange:
    p: TerminalParams = params(TerminalParams, call)
    bridge.drain_terminal(p.terminal_id)
    return TerminalChange(p.terminal_id, drained=True)


async def _enable(bridge: Bridge, call: Call) -> TerminalChange:
    p: TerminalParams = params(TerminalParams, call)
    bridge.enable_terminal(p.terminal_id)
    return TerminalChange(p.terminal_id, drained=False)


async def _health(bridge: Bridge, call: Call) -> list[TerminalHealth]:
    return bridge.health_metrics()


async def _alerts(bridge: Bridge, call: Call) -> list[Alert]:
    return bridge.active_alerts()


async def _live(bridge: Bridge, call: Call) -> Probe:
    return Probe("ok")


async def _ready(bridge: Bridge, call: Call) -> Probe:
    missing = [
        str(account)
        for account in bridge.registry.configured_accounts()
        if bridge.registry.lookup_session(account) is None
    ]
    return Probe("not_ready" if missing else "ok", sorted(missing))


R, T, A = Scope.READ, Scope.TRADE, Scope.ADMIN

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("POST", "/v1/orders/market", T, "Buy or sell at market", _market,
             body=MarketOrderRequest, response=OrderResult, operation_id="placeMarketOrder"),
    Endpoint("POST", "/v1/signals", T,
             "One trade decision on many accounts, each sized by its risk", _signal,
             body=SignalRequest, response=SignalResult, operation_id="executeSignal"),
    Endpoint("POST", "/v1/orders/pending", T, "Place a limit, stop or stop-limit order",
             _pending, body=PendingOrderRequest, response=OrderResult,
             operation_id="placePendingOrder"),
    Endpoint("POST", "/v1/orders/modify", T, "Change a placed pending order", _modify_order,
             body=ModifyOrderRequest, response=OrderResult, operation_id="modifyOrder"),
    Endpoint("POST", "/v1/orders/cancel", T, "Delete a placed pending order", _cancel_order,
             body=CancelOrderRequest, response=OrderResult, operation_id="cancelOrder"),
    Endpoint("GET", "/v1/orders", R, "Orders in the journal, newest first", _orders,
             params=OrdersParams, response=list[OrderResult], operation_id="listOrders"),
    Endpoint("GET", "/v1/orders/{client_order_id}", R, "One order, by client order id",
             _order_by_id, params=OrderByIdParams, response=OrderResult,
             operation_id="getOrder"),
    Endpoint("GET", "/v1/tickets/{ticket}", R, "One order, by its terminal ticket",
             _order_by_ticket, params=OrderByTicketParams, response=OrderResult,
             operation_id="getOrderByTicket"),
    Endpoint("GET", "/v1/accounts/{account}", R,
             "Balance, equity and margin as the terminal reports them now", _account,
             params=AccountParams, response=m.AccountReport, operation_id="getAccount"),
    Endpoint("GET", "/v1/accounts/{account}/positions", R,
             "Open positions as the terminal reports them now", _positions,
             params=SymbolParams, response=list[m.PositionReport],
             operation_id="listPositions"),
    Endpoint("GET", "/v1/accounts/{account}/pending-orders", R,
             "Pending orders as the terminal reports them now", _pending_orders,
             params=SymbolParams, response=list[m.OrderReport],
             operation_id="listPendingOrders"),
    Endpoint("POST", "/v1/positions/modify", T, "Change a position's SL and/or TP",
             _modify_position, body=ModifyPositionRequest, response=PositionResult,
             operation_id="modifyPosition"),
    Endpoint("POST", "/v1/positions/close", T, "Close all or part of a position",
             _close_position, body=ClosePositionRequest, response=OrderResult,
             operation_id="closePosition"),
    Endpoint("POST", "/v1/positions/close-by", T, "Close a position by an opposite one",
             _close_by, body=CloseByRequest, response=OrderResult, operation_id="closeBy"),
    Endpoint("POST", "/v1/positions/reverse", T, "Turn a position around", _reverse,
             body=ReversePositionRequest, response=ReversalResult,
             operation_id="reversePosition"),
    Endpoint("POST", "/v1/positions/bulk-modify", T,
             "Change SL/TP of every synced position a filter selects", _bulk_modify,
             body=BulkModifyRequest, response=list[BulkItem], operation_id="bulkModify"),
    Endpoint("POST", "/v1/positions/bulk-close", T,
             "Close every synced position a filter selects", _bulk_close,
             body=BulkCloseRequest, response=list[BulkItem], operation_id="bulkClose"),
    Endpoint("POST", "/v1/positions/trailing", T,
             "Start or replace a bridge-managed trailing stop", _trail,
             body=TrailingStopRequest, response=TrailingView, operation_id="startTrailing"),
    Endpoint("DELETE", "/v1/positions/trailing/{ticket}", T,
             "Stop trailing a position (its SL stays)", _untrail, params=TrailingParams,
             response=TrailingCancelled, operation_id="stopTrailing"),
    Endpoint("GET", "/v1/rejections", R, "Rejection counts and rates from the journal",
             _rejections, params=RejectionParams, response=RejectionReport,
             operation_id="rejections"),
    Endpoint("POST", "/v1/overrides/resolve", A,
             "Mark an order in doubt resolved as found on the terminal (audited)", _resolve,
             body=ResolveOverride, response=OverrideResult, operation_id="overrideResolve"),
    Endpoint("POST", "/v1/overrides/cancel", A,
             "Withdraw a journalled intent nothing carries (audited)", _withdraw,
             body=CancelOverride, response=OverrideResult, operation_id="overrideCancel"),
    Endpoint("POST", "/v1/overrides/force-attempt", A,
             "Send a rejected or not-found order again as its next attempt (audited)",
             _force, body=CancelOverride, response=OrderResult,
             operation_id="overrideForceAttempt"),
    Endpoint("GET", "/v1/terminals", R, "Every configured terminal and its state",
             _terminals, response=list[TerminalStatus], operation_id="listTerminals"),
    Endpoint("POST", "/v1/terminals/{terminal_id}/drain", A,
             "Send no new orders to a terminal", _drain, params=TerminalParams,
             response=TerminalChange, operation_id="drainTerminal"),
    Endpoint("POST", "/v1/terminals/{terminal_id}/enable", A,
             "Make a drained terminal eligible again", _enable, params=TerminalParams,
             response=TerminalChange, operation_id="enableTerminal"),
    Endpoint("GET", "/v1/health", R, "Connection health of every terminal", _health,
             response=list[TerminalHealth], operation_id="getHealth"),
    Endpoint("GET", "/v1/alerts", R, "Alerts raised and not cleared", _alerts,
             response=list[Alert], operation_id="listAlerts"),
    Endpoint("GET", "/livez", None, "The bridge process answers", _live, response=Probe,
             operation_id="live"),
    Endpoint("GET", "/readyz", None,
             "Every configured account has a ready terminal (503 when not)", _ready,
             response=Probe, operation_id="ready"),
)  # fmt: skip
