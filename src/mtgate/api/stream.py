"""``GET /v1/events`` as a WebSocket: the event stream, resumable (docs/events.md, "WebSocket").

The client authenticates with a bearer token of scope ``read`` (the ``Authorization`` header
of the upgrade request) and names where to resume: ``after`` (the last ``seq`` it handled; 0
or absent: from the oldest event kept). Optional filters: ``types`` (comma-separated type
prefixes, ``execution.order.,bridge.``) and ``account`` (``login@server``). The server then
sends every matching event after ``after`` in ``seq`` order, one text frame per envelope
(the same JSON as Kafka and NATS carry), and a control frame ``{"control": "heartbeat",
"seq": N}`` after each idle period: everything up to ``N`` that matches was sent, so a client
resumes after ``N`` even if it saw no event. A resume point older than the retention gets
``{"control": "gap", ...}`` and the close code 4410: reload the state over HTTP, resume
from the frame's ``head``.

Close codes: 4401 no or bad token, 4403 the token lacks ``read``, 4400 a bad parameter (the
reason says which), 4410 the gap, 1011 the bridge runs without events.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Final

import msgspec
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect

from mtgate import logs
from mtgate.api.auth import Scope, Tokens
from mtgate.bridge import Bridge
from mtgate.events.relay import ResumeGap
from mtgate.store.outbox import Stored

log = logs.get("mtgate.api")

SEQ_MAX: Final = 2**63 - 1
IDLE_S: Final = 15.0
_encode = msgspec.json.Encoder().encode


class Heartbeat(msgspec.Struct, frozen=True):
    control: str
    seq: int


class Gap(msgspec.Struct, frozen=True):
    control: str
    after: int
    pruned_through: int
    head: int
    message: str


class BadParameter(ValueError):
    pass


def _filters(query: dict[str, str]) -> tuple[int, tuple[str, ...], str | None]:
    unknown = sorted(set(query) - {"after", "types", "account"})
    if unknown:
        raise BadParameter(f"unknown parameter {unknown[0][:40]!r}")
    raw = query.get("after", "0")
    if not raw.isdigit() or int(raw) > SEQ_MAX:
        raise BadParameter(f"after: {raw[:40]!r} is not a sequence number (0..{SEQ_MAX})")
    types = tuple(t.strip() for t in query.get("types", "").split(",") if t.strip())
    if any(len(t) > 64 for t in types) or len(types) > 32:
        raise BadParameter("types: at most 32 prefixes of at most 64 characters")
    account = query.get("account") or None
    if account is not None and (len(account) > 96 or "@" not in account):
        raise BadParameter(f"account: {account[:40]!r} is not login@server")
    return int(raw), types, account


def _matches(stored: Stored, types: tuple[str, ...], account: str | None) -> bool:
    e = stored.event
    if account is not None and e.account != account:
        return False
    return not types or e.type.startswith(types)


def stream_route(bridge: Bridge, tokens: Tokens) -> Any:
    async def events(socket: WebSocket[Any, Any, Any]) -> None:
        await socket.accept()
        caller = tokens.caller(socket.headers.get("authorization"))
        if caller is None:
            await socket.close(4401, "a valid bearer token is needed")
            return
        if Scope.READ not in caller.scopes:
            await socket.close(4403, "this stream needs the read scope")
            return
        try:
            after, types, account = _filters(dict(socket.query_params))
        except BadParameter as exc:
            await socket.close(4400, str(exc)[:120])
            return
        if not bridge.has_events:
            await socket.close(1011, "the bridge runs without events ([events] enabled = false)")
            return
        pump = asyncio.ensure_future(_pump(socket, bridge, after, types, account))
        listen = asyncio.ensure_future(_until_closed(socket))
        try:
            await asyncio.wait({pump, listen}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, listen):
                task.cancel()
            await asyncio.gather(pump, listen, return_exceptions=True)
        if listen.done() and not listen.cancelled():
            return  # the client left: nothing more to send
        try:
            pump.result()
        except (WebSocketDisconnect, asyncio.CancelledError):
            return
        except ResumeGap as gap:
            frame = Gap("gap", gap.after, gap.pruned_through, gap.head, str(gap))
            await socket.send_data(_encode(frame).decode())
            await socket.close(4410, "events pruned; reload and resume from head")

    return websocket("/v1/events")(events)


async def _until_closed(socket: WebSocket[Any, Any, Any]) -> None:
    """Reads (and ignores) what the client sends, to learn at once that it left: the pump
    would only find out at its next send, up to a heartbeat later."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await socket.receive_data("text")


async def _pump(
    socket: WebSocket[Any, Any, Any],
    bridge: Bridge,
    after: int,
    types: tuple[str, ...],
    account: str | None,
) -> None:
    relay = bridge.relay
    loop = asyncio.get_running_loop()
    beat_at = loop.time()
    async for batch in relay.stream(after, idle_s=IDLE_S):
        sent = False
        for stored in batch:
            if _matches(stored, types, account):
                await socket.send_data(_encode(stored.event).decode())
                sent = True
        if batch:
            after = batch[-1].event.seq
        # Idle, or only others' events for a while: say how far the stream got.
        if not sent and (not batch or loop.time() - beat_at >= 1.0):
            await socket.send_data(_encode(Heartbeat("heartbeat", after)).decode())
            beat_at = loop.time()
