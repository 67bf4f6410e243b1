"""The conformance run's own listener: it plays a bridge that misbehaves on purpose.

A terminal dials it as it would dial the bridge. Each probe takes one connection of the
terminal under test (others are cut and dial again), drives the handshake itself, and then
sends what a real bridge never would (a bad proof, an unsealed frame, frames out of order),
recording what the terminal answers. Nothing here trusts the terminal: every frame it sends
goes through the same decoder and seals as the bridge's."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from mtgate.protocol import codec
from mtgate.protocol import messages as m
from mtgate.protocol.auth import (
    TO_BRIDGE,
    TO_EA,
    FrameSeal,
    Secret,
    bridge_proof,
    ea_proof,
    new_nonce,
    proofs_match,
    session_key,
)
from mtgate.protocol.link import FramedLink


@dataclass
class ProbeConn:
    """One connection of the terminal, as the probe sees it (a FrameHandler)."""

    received: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    link: FramedLink | None = None
    hello: m.Hello | None = None
    hello_body: bytes = b""
    errors: list[str] = field(default_factory=list)
    skipped: list[Any] = field(default_factory=list)

    def on_connected(self, link: FramedLink) -> None:
        self.link = link

    def on_frame(self, body: bytes) -> None:
        try:
            msg = codec.decode_for_bridge(body)
        except codec.ProtocolError as exc:
            self.errors.append(f"{exc.code}: {exc.message}")
            return
        if self.hello is None and isinstance(msg, m.Hello):
            self.hello, self.hello_body = msg, body
        self.received.put_nowait(msg)

    def on_protocol_error(self, error: codec.ProtocolError) -> None:
        self.errors.append(f"{error.code}: {error.message}")

    def on_closed(self, exc: Exception | None) -> None:
        self.closed.set()

    async def next(self, timeout_s: float) -> Any:
        """The next message, or None when the connection closed or ``timeout_s`` passed."""
        get = asyncio.ensure_future(self.received.get())
        gone = asyncio.ensure_future(self.closed.wait())
        try:
            done, _ = await asyncio.wait(
                {get, gone}, timeout=timeout_s, return_when="FIRST_COMPLETED"
            )
        finally:
            for f in (get, gone):
                if not f.done():
                    f.cancel()
        if get in done:
            return get.result()
        if not self.received.empty():
            return self.received.get_nowait()
        return None

    async def until(self, kind: type, timeout_s: float) -> Any:
        """The first message of ``kind`` within ``timeout_s``, or None; the messages before
        it are kept in :attr:`skipped` (a check of what else the terminal sent reads them)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while (left := end - loop.time()) > 0:
            msg = await self.next(left)
            if msg is None:
                return None
            if isinstance(msg, kind):
                return msg
            self.skipped.append(msg)
        return None

    def send(self, msg: m.Message) -> None:
        if self.link is not None:
            self.link.write(codec.encode(msg))

    def abort(self) -> None:
        if self.link is not None:
            self.link.abort()


class ProbeServer:
    """Listens where the terminal dials; :meth:`connection` hands out its next connection."""

    def __init__(self) -> None:
        self._conns: asyncio.Queue[ProbeConn] = asyncio.Queue()
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        loop = asyncio.get_running_loop()

        def factory() -> FramedLink:
            conn = ProbeConn()
            self._conns.put_nowait(conn)
            return FramedLink(lambda: conn)

        self._server = await loop.create_server(factory, host, port, reuse_address=True)
        sock = self._server.sockets[0].getsockname()
        return str(sock[0]), int(sock[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        while not self._conns.empty():
            self._conns.get_nowait().abort()

    async def connection(self, terminal_id: str, timeout_s: float) -> ProbeConn | None:
        """The next connection whose ``hello`` names ``terminal_id`` (others are cut)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while (left := end - loop.time()) > 0:
            try:
                async with asyncio.timeout(left):
                    conn = await self._conns.get()
            except TimeoutError:
                return None
            first = await conn.next(min(left, 5.0))
            if isinstance(first, m.Hello) and first.terminal_id == terminal_id:
                return conn
            conn.abort()
        return None


@dataclass
class Handshake:
    """What a completed probe handshake knows: the sealed link is ready to misuse."""

    conn: ProbeConn
    heartbeat_ms: int


async def handshake(
    conn: ProbeConn, key: Secret, *, heartbeat_ms: int = 1000, timeout_s: float = 5.0
) -> Handshake | str:
    """Run the bridge's side of the handshake properly (welcome, the terminal's auth, ready,
    sealed from there on); returns the reason on failure."""
    hello = conn.hello
    assert hello is not None and conn.link is not None
    nonce = new_nonce()
    welcome = m.Welcome(
        v=m.PROTOCOL_VERSION,
        nonce=nonce,
        proof=bridge_proof(key, hello.terminal_id, hello.nonce, nonce),
        session="conformance",
        heartbeat_ms=heartbeat_ms,
        features=sorted(hello.features),
    )
    frame = codec.encode(welcome)
    conn.link.write(frame)
    reply = await conn.next(timeout_s)
    if isinstance(reply, m.Bye):
        return f"terminal refused the welcome: {reply.code}: {reply.reason}"
    if not isinstance(reply, m.Auth):
        return f"expected auth, got {type(reply).__name__ if reply is not None else 'nothing'}"
    if not proofs_match(ea_proof(key, hello.terminal_id, hello.nonce, nonce), reply.proof):
        return "the terminal's proof does not verify"
    frames = session_key(
        key, hello.terminal_id, hello.nonce, nonce, conn.hello_body, frame[codec.HEADER_BYTES :]
    )
    conn.link.seal(FrameSeal(frames, TO_EA), FrameSeal(frames, TO_BRIDGE))
    conn.send(m.Ready())
    return Handshake(conn, heartbeat_ms)
