"""The HTTP API as an ASGI application (Litestar), made from :data:`ENDPOINTS`.

Litestar routes and serves; the bodies, parameters, errors and the OpenAPI document are the
project's own (:mod:`mtgate.api.endpoints`, :mod:`mtgate.api.openapi`), so that a request
over HTTP is parsed exactly as the same request made through the Python API.

Every error is ``{"error": {"code", "message", "field"?}}`` with a 4xx status for anything a
caller sent: 401 ``unauthorized``, 403 ``forbidden``, 404 ``not_found`` / ``unknown_account``
/ ``no_route``, 405 ``method_not_allowed``, 413 ``body_too_large``, 422 ``invalid_request``.
5xx is for the bridge's state, never for input: 503 ``not_routable`` (the account's terminals
are down) or ``not_ready``, 504 ``terminal_timeout``, 502 ``terminal_error``; 500
``internal`` is a bug (logged with its traceback, the body says nothing of it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple

import msgspec
from litestar import Litestar, Request, Response, route
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.types import (
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    HTTPScope,
    Receive,
    Send,
)
from litestar.types import Scope as AsgiScope

from mtgate import logs
from mtgate.api.auth import Scope, Tokens
from mtgate.api.endpoints import ENDPOINTS, Call, Conflict, Endpoint, NotFound, Probe
from mtgate.api.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from mtgate.api.metrics import exposition, registry_for
from mtgate.api.stream import stream_route
from mtgate.bridge import Bridge
from mtgate.execution.requests import InvalidRequest
from mtgate.execution.service import account_key
from mtgate.positions.errors import PositionError
from mtgate.sessions.errors import NotRoutable, RequestTimeout, SessionError, TerminalRejected

log = logs.get("mtgate.api")

MAX_BODY_BYTES = 64 * 1024
"""No request of the API comes near this; a larger body is refused unread."""

_JSON = "application/json"
_encoder = msgspec.json.Encoder()


class ErrorDetail(msgspec.Struct, frozen=True, omit_defaults=True):
    code: str
    message: str
    field: str | None = None


class ErrorBody(msgspec.Struct, frozen=True):
    error: ErrorDetail


class Answer(NamedTuple):
    """An answer of the API, whichever layer sends it."""

    status: int
    body: bytes
    www_authenticate: bool = False


def _error(status: int, code: str, message: str, field: str | None = None) -> Answer:
    body = _encoder.encode(ErrorBody(ErrorDetail(code, message[:2000], field)))
    return Answer(status, body, www_authenticate=status == 401)


def _ok(value: Any, status: int = 200) -> Answer:
    return Answer(status, _encoder.encode(value))


def _response(answer: Answer) -> Response[bytes]:
    headers = {"WWW-Authenticate": "Bearer"} if answer.www_authenticate else None
    return Response(
        content=answer.body, status_code=answer.status, media_type=_JSON, headers=headers
    )


async def _answer(
    endpoint: Endpoint,
    bridge: Bridge,
    tokens: Tokens,
    authorization: str | None,
    body: Callable[[], Awaitable[bytes]],
    path: Mapping[str, str],
    query: Mapping[str, str],
) -> Answer:
    """One call of ``endpoint``: the caller's token and scope, then the endpoint's own run,
    every failure of it an error answer (``body`` is read only once the caller is known)."""
    caller = None
    if endpoint.scope is not None:
        caller = tokens.caller(authorization)
        if caller is None:
            return _error(401, "unauthorized", "a valid bearer token is needed")
        if endpoint.scope not in caller.scopes:
            return _error(403, "forbidden", f"this call needs the {endpoint.scope} scope")
    call = Call(
        body=await body() if endpoint.body is not None else b"",
        path=path,
        query=query,
        caller=caller.name if caller is not None else "",
    )
    try:
        result = await endpoint.run(bridge, call)
    except InvalidRequest as exc:
        return _error(422, "invalid_request", str(exc), exc.field)
    except NotFound as exc:
        return _error(404, "not_found", str(exc))
    except Conflict as exc:
        return _error(409, "conflict", str(exc))
    except NotRoutable as exc:
        return _not_routable(bridge, call, exc)
    except PositionError as exc:  # a trailing stop on a position that cannot be found
        return _position_refused(bridge, call, exc)
    except RequestTimeout as exc:
        return _error(504, "terminal_timeout", str(exc))
    except TerminalRejected as exc:
        return _error(502, "terminal_error", f"the terminal refused the read: {exc}")
    except SessionError as exc:
        return _error(503, "not_routable", str(exc))
    except Exception as exc:  # a bug: contained here, logged, never shown
        log.error("API call failed", path=endpoint.path, method=endpoint.method, error=repr(exc))
        return _error(500, "internal", "the bridge failed to handle this call")
    if isinstance(result, Probe) and result.status != "ok":
        return _ok(result, 503)
    return _ok(result)


def _handler(endpoint: Endpoint, bridge: Bridge, tokens: Tokens) -> Any:
    """``endpoint`` as a Litestar route: the calls the direct path leaves (path parameters,
    a query string)."""

    async def handle(request: Request[Any, Any, Any]) -> Response[bytes]:
        answer = await _answer(
            endpoint,
            bridge,
            tokens,
            request.headers.get("authorization"),
            request.body,
            {k: str(v) for k, v in request.path_params.items()},
            dict(request.query_params),
        )
        return _response(answer)

    handle.__name__ = handle.__qualname__ = endpoint.operation_id or "handle"
    path = endpoint.path.replace("}", ":str}")
    return route(path, http_method=[endpoint.method], include_in_schema=False, status_code=200)(
        handle
    )


def _position_refused(bridge: Bridge, call: Call, exc: PositionError) -> Answer:
    """Unknown position: 404; its account not routable: as any call's; else 422."""
    r = exc.refusal
    if r.rule == "not_routable":
        return _not_routable(bridge, call, exc)
    if r.rule == "no_position":
        return _error(404, "not_found", r.message, r.field)
    if r.rule == "lookup_failed":
        return _error(503, "not_routable", r.message, r.field)
    return _error(422, "invalid_request", r.message, r.field)


def _not_routable(bridge: Bridge, call: Call, exc: Exception) -> Answer:
    """An account no terminal is configured for is the caller's mistake (404); one whose
    terminals are all down is the bridge's state (503)."""
    text = call.path.get("account") or call.query.get("account") or _body_account(call.body)
    try:
        known = account_key(text) in bridge.registry.configured_accounts()
    except InvalidRequest:
        known = False
    if not known:
        return _error(404, "unknown_account", f"no terminal is configured for account {text!r}")
    return _error(503, "not_routable", str(exc))


class _Named(msgspec.Struct):
    account: str = ""


def _body_account(body: bytes) -> str:
    """The ``account`` a request body names ("" when it names none)."""
    try:
        return msgspec.json.decode(body, type=_Named).account if body else ""
    except msgspec.MsgspecError:
        return ""


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    """Litestar's own refusals (no route, wrong method, body too large) in the API's shape."""
    codes = {404: "no_route", 405: "method_not_allowed", 413: "body_too_large"}
    status = exc.status_code if 400 <= exc.status_code < 500 else 400
    return _response(_error(status, codes.get(status, "bad_request"), str(exc.detail)))


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.error("API request failed", path=request.url.path, error=repr(exc))
    return _response(_error(500, "internal", "the bridge failed to handle this call"))


def _openapi_route() -> Any:
    from mtgate.api.openapi import render  # the document imports this module

    body = render().encode()

    async def openapi_document() -> Response[bytes]:
        return Response(content=body, media_type=_JSON)

    return route("/v1/openapi.json", http_method=["GET"], include_in_schema=False)(openapi_document)


def _metrics_route(bridge: Bridge, tokens: Tokens) -> Any:
    """``GET /metrics`` (scope ``read``): Prometheus's text format (mtgate.api.metrics)."""
    registry = registry_for(bridge)

    async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
        caller = tokens.caller(request.headers.get("authorization"))
        if caller is None:
            return _response(_error(401, "unauthorized", "a valid bearer token is needed"))
        if Scope.READ not in caller.scopes:
            return _response(_error(403, "forbidden", "this call needs the read scope"))
        return Response(content=exposition(registry), media_type=METRICS_CONTENT_TYPE)

    return route("/metrics", http_method=["GET"], include_in_schema=False)(metrics)


class _TooLarge(Exception):
    """The body is over :data:`MAX_BODY_BYTES` (413, read no further)."""


class _Gone(Exception):
    """The caller went away before its body was read: nobody to answer."""


class DirectPath:
    """The API's ASGI application: a call of an endpoint whose path has no parameters and that
    carries no query string (the order and position calls: the hot path of an execution
    engine) is answered here; everything else (paths with parameters, queries, the event
    stream, ``/metrics``, the OpenAPI document, unknown paths and methods) goes to Litestar.

    Both answer through :func:`_answer`, so a call means the same on either. The direct path
    exists for latency: Litestar's per-request work (its request, header and signature models)
    cost more CPU than the rest of an order's HTTP handling (docs/api.md, "Latency through
    HTTP")."""

    def __init__(self, app: Litestar, bridge: Bridge, tokens: Tokens) -> None:
        self.litestar = app
        self._bridge = bridge
        self._tokens = tokens
        self._static: dict[tuple[str, str], Endpoint] = {
            (e.method, e.path): e for e in ENDPOINTS if "{" not in e.path
        }

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and not scope["query_string"]:
            endpoint = self._static.get((str(scope["method"]), scope["path"]))
            if endpoint is not None:
                await self._direct(endpoint, scope, receive, send)
                return
        await self.litestar(scope, receive, send)

    async def _direct(
        self, endpoint: Endpoint, scope: HTTPScope, receive: Receive, send: Send
    ) -> None:
        authorization = None
        declared = 0
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"content-length":
                declared = int(value) if value.isdigit() else MAX_BODY_BYTES + 1

        async def body() -> bytes:
            if declared > MAX_BODY_BYTES:
                raise _TooLarge
            chunks: list[bytes] = []
            size = 0
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    raise _Gone
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise _TooLarge
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)

        try:
            answer = await _answer(
                endpoint, self._bridge, self._tokens, authorization, body, {}, {}
            )
        except _TooLarge:
            answer = _error(
                413, "body_too_large", f"a request body is at most {MAX_BODY_BYTES} bytes"
            )
        except _Gone:
            return
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(answer.body)).encode()),
        ]
        if answer.www_authenticate:
            headers.append((b"www-authenticate", b"Bearer"))
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": answer.status,
            "headers": headers,
        }
        await send(start)
        body_event: HTTPResponseBodyEvent = {
            "type": "http.response.body",
            "body": answer.body,
            "more_body": False,
        }
        await send(body_event)


def create_app(bridge: Bridge, tokens: Tokens) -> DirectPath:
    """The API over ``bridge`` (started by the caller), for the callers ``tokens`` name."""
    app = Litestar(
        route_handlers=[
            *(_handler(e, bridge, tokens) for e in ENDPOINTS),
            _openapi_route(),
            _metrics_route(bridge, tokens),
            stream_route(bridge, tokens),
        ],
        openapi_config=None,
        exception_handlers={HTTPException: _http_error, Exception: _internal},
        request_max_body_size=MAX_BODY_BYTES,
        logging_config=None,
    )
    return DirectPath(app, bridge, tokens)
