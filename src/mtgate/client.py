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

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import httpx
import msgspec

from mtgate.api.endpoints import Probe, TerminalChange
from mtgate.domain.backoff import Backoff
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


class StreamEvent(msgspec.Struct, frozen=True):
    """One event as the stream carries it (docs/events.md, "Envelope"); ``data`` decoded."""

    id: str
    seq: int
    type: str
    at: str
    key: str
    account: str | None
    terminal_id: str | None
    data: dict[str, Any]


class _Control(msgspec.Struct, frozen=True):
    control: str
    seq: int = 0
    after: int = 0
    head: int = 0
    message: str = ""


class StreamGap(Exception):
    """The bridge pruned the events after ``after``: reload the state over HTTP, then
    stream after ``head``."""

    def __init__(self, after: int, head: int, message: str) -> None:
        super().__init__(message)
        self.after, self.head = after, head


class _Frames:
    """Decodes a frame as an event or a control frame (they share no required key)."""

    def __init__(self) -> None:
        self._event = msgspec.json.Decoder(StreamEvent)
        self._control = msgspec.json.Decoder(_Control)

    def decode(self, frame: str | bytes) -> StreamEvent | _Control:
        try:
            return self._event.decode(frame)
        except msgspec.ValidationError:
            return self._control.decode(frame)


_frame_decoder = _Frames()
_REFUSALS = {4400: (422, "invalid_request"), 4401: (401, "unauthorized"), 4403: (403, "forbidden")}


def _refusal(code: int | None, exc: BaseException) -> ApiError | None:
    if code == 1011:
        return ApiError(503, "no_events", str(exc), None)
    found = _REFUSALS.get(code or 0)
    return None if found is None else ApiError(found[0], found[1], str(exc), None)


def _ssl_context(verify: Any) -> Any:
    import ssl

    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return ssl.create_default_context()


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
        self._base_url = base_url.rstrip("/")
        self._token = token
        self._verify = verify
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

    # --- the event stream (docs/events.md, "WebSocket") -----------------------------------------

    async def events(
        self,
        after: int = 0,
        *,
        types: Sequence[str] = (),
        account: str | None = None,
        backoff_base_s: float = 0.2,
        backoff_cap_s: float = 10.0,
        on_reconnect: Callable[[int, BaseException], None] | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Every event after ``after`` (a ``seq``), forever, in ``seq`` order: a dropped
        connection is dialled again with backoff and resumed after the last ``seq`` seen (or
        heartbeat-confirmed), so nothing is missed; an event may come twice across a
        reconnect only if the bridge relayed it twice (de-duplicate on ``id``). Raises
        :class:`StreamGap` when the bridge no longer keeps what comes after ``after``, and
        :class:`ApiError` for a refusal (bad token, scope or parameter), which a retry
        cannot cure. ``on_reconnect(attempt, error)`` is told of each drop."""
        import websockets
        from websockets.exceptions import ConnectionClosed, InvalidHandshake

        backoff = Backoff(base_s=backoff_base_s, cap_s=backoff_cap_s)
        query = {"after": str(after)}
        if types:
            query["types"] = ",".join(types)
        if account is not None:
            query["account"] = account
        ws_base = (
            "ws" + self._base_url[len("http") :]
            if self._base_url.startswith("http")
            else self._base_url
        )
        ssl_context = _ssl_context(self._verify) if ws_base.startswith("wss") else None
        while True:
            query["after"] = str(after)
            url = f"{ws_base}/v1/events?{urlencode(query)}"
            try:
                async with websockets.connect(
                    url,
                    additional_headers={"Authorization": f"Bearer {self._token}"},
                    ssl=ssl_context,
                    open_timeout=10,
                    max_size=2**22,
                ) as ws:
                    async for frame in ws:
                        decoded = _frame_decoder.decode(frame)
                        if isinstance(decoded, StreamEvent):
                            if decoded.seq > after:
                                after = decoded.seq
                                backoff.reset()
                                yield decoded
                        elif decoded.control == "heartbeat":
                            after = max(after, decoded.seq)
                            backoff.reset()
                        elif decoded.control == "gap":
                            raise StreamGap(decoded.after, decoded.head, decoded.message)
                    raise ConnectionError("the bridge closed the stream")
            except ConnectionClosed as exc:
                refusal = _refusal(exc.rcvd.code if exc.rcvd is not None else None, exc)
                if refusal is not None:
                    raise refusal from exc
                drop: BaseException = exc
            except (OSError, InvalidHandshake, TimeoutError, ConnectionError) as exc:
                drop = exc
            if on_reconnect is not None:
                on_reconnect(backoff.attempt + 1, drop)
            await asyncio.sleep(backoff.next_delay_s())

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
