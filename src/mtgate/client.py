"""`mtgate.client`: the HTTP API from Python, async and typed (docs/api.md).

    async with Client("http://127.0.0.1:8780", token=os.environ["MTGATE_ENGINE_TOKEN"]) as api:
        result = await api.place_market_order(
            MarketOrderRequest(account="2001@Sim-MT5", symbol="EURUSD", side=Side.BUY, volume=0.1)
        )

Requests are the same structs as the in-process API's, results the same types. An error
answer raises :class:`ApiError` with its status, code and field; an order the terminal
rejected is a result (``status`` rejected), as in-process.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from mtgate.api.endpoints import Probe, TerminalChange
from mtgate.execution.requests import (
    CancelOrderRequest,
    MarketOrderRequest,
    ModifyOrderRequest,
    OrderResult,
    PendingOrderRequest,
)
from mtgate.execution.signals import SignalRequest, SignalResult
from mtgate.positions.requests import (
    CloseByRequest,
    ClosePositionRequest,
    ModifyPositionRequest,
    PositionResult,
    ReversalResult,
    ReversePositionRequest,
)
from mtgate.protocol import messages as m

T = TypeVar("T")


class ApiError(Exception):
    """An error answer: ``status`` (HTTP), ``code`` (docs/api.md, "Errors"), the ``field``
    at fault when one is."""

    def __init__(self, status: int, code: str, message: str, field: str | None) -> None:
        super().__init__(f"{status} {code}: {message}" + (f" (field {field})" if field else ""))
        self.status = status
        self.code = code
        self.message = message
        self.field = field


class _Detail(msgspec.Struct):
    code: str = "unknown"
    message: str = ""
    field: str | None = None


class _Error(msgspec.Struct):
    error: _Detail


_encoder = msgspec.json.Encoder()


class Client:
    """One bridge's API. ``transport`` replaces the network (tests, an ASGI app in process)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: Any = True,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_s,
            transport=transport,
            verify=verify,
        )

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    # --- orders ------------------------------------------------------------------------------

    async def place_market_order(self, request: MarketOrderRequest) -> OrderResult:
        return await self._post("/v1/orders/market", request, OrderResult)

    async def place_pending_order(self, request: PendingOrderRequest) -> OrderResult:
        return await self._post("/v1/orders/pending", request, OrderResult)

    async def modify_order(self, request: ModifyOrderRequest) -> OrderResult:
        return await self._post("/v1/orders/modify", request, OrderResult)

    async def cancel_order(self, request: CancelOrderRequest) -> OrderResult:
        return await self._post("/v1/orders/cancel", request, OrderResult)

    async def execute_signal(self, request: SignalRequest) -> SignalResult:
        return await self._post("/v1/signals", request, SignalResult)

    async def get_order(
        self, account: str, *, client_order_id: str | None = None, ticket: int | None = None
    ) -> OrderResult | None:
        """The order, or None when the bridge has none by that id or ticket."""
        if (client_order_id is None) == (ticket is None):
            raise ValueError("name the order by exactly one of client_order_id or ticket")
        path = (
            f"/v1/orders/{quote(client_order_id, safe='')}"
            if client_order_id is not None
            else f"/v1/tickets/{ticket}"
        )
        try:
            return await self._get(path, OrderResult, account=account)
        except ApiError as exc:
            if exc.code == "not_found":
                return None
            raise

    async def list_orders(
        self, account: str | None = None, statuses: set[str] | None = None, limit: int = 1000
    ) -> list[OrderResult]:
        query: dict[str, Any] = {"limit": limit}
        if account is not None:
            query["account"] = account
        if statuses:
            query["status"] = ",".join(sorted(statuses))
        return await self._get("/v1/orders", list[OrderResult], **query)

    # --- accounts and positions --------------------------------------------------------------

    async def get_account(self, account: str) -> m.AccountReport:
        return await self._get(f"/v1/accounts/{quote(account, safe='@')}", m.AccountReport)

    async def list_positions(self, account: str, symbol: str = "") -> list[m.PositionReport]:
        path = f"/v1/accounts/{quote(account, safe='@')}/positions"
        return await self._get(
            path, list[m.PositionReport], **({"symbol": symbol} if symbol else {})
        )

    async def list_pending_orders(self, account: str, symbol: str = "") -> list[m.OrderReport]:
        path = f"/v1/accounts/{quote(account, safe='@')}/pending-orders"
        return await self._get(path, list[m.OrderReport], **({"symbol": symbol} if symbol else {}))

    async def modify_position(self, request: ModifyPositionRequest) -> PositionResult:
        return await self._post("/v1/positions/modify", request, PositionResult)

    async def close_position(self, request: ClosePositionRequest) -> OrderResult:
        return await self._post("/v1/positions/close", request, OrderResult)

    async def close_by(self, request: CloseByRequest) -> OrderResult:
        return await self._post("/v1/positions/close-by", request, OrderResult)

    async def reverse_position(self, request: ReversePositionRequest) -> ReversalResult:
        return await self._post("/v1/positions/reverse", request, ReversalResult)

    # --- operations --------------------------------------------------------------------------

    async def terminals(self) -> list[dict[str, Any]]:
        return await self._get("/v1/terminals", list[dict[str, Any]])

    async def drain_terminal(self, terminal_id: str) -> TerminalChange:
        return await self._post(
            f"/v1/terminals/{quote(terminal_id, safe='')}/drain", None, TerminalChange
        )

    async def enable_terminal(self, terminal_id: str) -> TerminalChange:
        return await self._post(
            f"/v1/terminals/{quote(terminal_id, safe='')}/enable", None, TerminalChange
        )

    async def ready(self) -> Probe:
        """``/readyz``: ``status`` ok, or not_ready with the accounts no terminal serves."""
        r = await self._http.get("/readyz")
        return msgspec.json.decode(r.content, type=Probe)

    # --- the wire ----------------------------------------------------------------------------

    async def _post(self, path: str, body: msgspec.Struct | None, kind: type[T]) -> T:
        content = _encoder.encode(body) if body is not None else b""
        r = await self._http.post(
            path, content=content, headers={"content-type": "application/json"}
        )
        return _decoded(r, kind)

    async def _get(self, path: str, kind: type[T], **query: Any) -> T:
        return _decoded(await self._http.get(path, params=query), kind)


def _decoded(r: httpx.Response, kind: type[T]) -> T:
    if r.status_code != 200:
        try:
            detail = msgspec.json.decode(r.content, type=_Error).error
        except msgspec.MsgspecError:
            detail = _Detail("http_error", r.text[:200])
        raise ApiError(r.status_code, detail.code, detail.message, detail.field)
    return msgspec.json.decode(r.content, type=kind)
