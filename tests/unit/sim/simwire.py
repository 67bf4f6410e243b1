"""Test helper: the bridge end of one connection to a :class:`SimTerminal`, over a real
loopback socket on port 0, reduced to the handshake, requests and the frames read."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from typing import Any

from mtgate.protocol import codec
from mtgate.protocol import messages as m
from mtgate.protocol.auth import (
    TO_BRIDGE,
    TO_EA,
    FrameSeal,
    Secret,
    bridge_proof,
    new_key,
    new_nonce,
    session_key,
)
from mtsim.terminal import SimTerminal, TerminalConfig
from tests.unit.sim.simdesk import Desk


class WireBridge:
    """What the bridge side reads and writes; ``frames`` keeps every frame read, in order."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = codec.FrameDecoder()
        self.bodies: list[bytes] = []
        self.received: list[bytes] = []
        self.sent: list[bytes] = []
        """Every body read and written, as on the wire (the handshake's go into the key)."""
        self.frames: list[Any] = []
        self.hello: m.Hello | None = None
        """The terminal's ``hello``, once :func:`wire_session` has read it."""
        self.tx: FrameSeal | None = None
        self.rx: FrameSeal | None = None
        """Once the terminal's ``auth`` is in: the frames' seals (docs/protocol.md §3.5)."""

    def seal(self, key: Secret, ea_nonce: str, bridge_nonce: str, terminal_id: str = "t1") -> None:
        """Seal from now on, as the bridge does once the terminal's proof is checked."""
        hello, welcome = self.received[0], self.sent[0]
        frames = session_key(key, terminal_id, ea_nonce, bridge_nonce, hello, welcome)
        self.tx, self.rx = FrameSeal(frames, TO_EA), FrameSeal(frames, TO_BRIDGE)

    async def receive(self, timeout_s: float = 5.0) -> Any:
        """The next frame; ConnectionError once the terminal has closed the socket."""
        while not self.bodies:
            data = await asyncio.wait_for(self.reader.read(65536), timeout_s)
            if not data:
                raise ConnectionError("closed")
            self.bodies.extend(self.decoder.feed(data))
        body = self.bodies.pop(0)
        self.received.append(body)
        frame = codec.decode_for_bridge(body if self.rx is None else self.rx.open(body))
        self.frames.append(frame)
        return frame

    @property
    def events(self) -> list[m.Event]:
        """Every event read so far, in order (whoever read it)."""
        return [f for f in self.frames if isinstance(f, m.Event)]

    async def snapshot(self, timeout_s: float = 5.0) -> m.Snapshot:
        """The next ``snapshot`` event's payload, reading past anything else."""
        while True:
            frame = await self.receive(timeout_s)
            if isinstance(frame, m.Event) and frame.name == "snapshot":
                snap = codec.decode_event("snapshot", frame.data)
                assert isinstance(snap, m.Snapshot)
                return snap

    async def no_snapshot_for(self, seconds: float) -> None:
        """Read for ``seconds``; fail on a snapshot."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while (left := end - loop.time()) > 0:
            try:
                frame = await self.receive(left)
            except TimeoutError:
                return
            assert not (isinstance(frame, m.Event) and frame.name == "snapshot")

    def send(self, *messages: m.Message) -> None:
        """Write ``messages`` in one write: they arrive together."""
        self.writer.write(b"".join(self.encode(msg) for msg in messages))

    def encode(self, msg: m.Message) -> bytes:
        """One frame of ``msg``, sealed once the session is."""
        frame = codec.encode(msg)
        if self.tx is None:
            self.sent.append(frame[codec.HEADER_BYTES :])
            return frame
        sealed = self.tx.seal(frame[codec.HEADER_BYTES :])
        return struct.pack(">I", len(sealed)) + sealed

    async def request(self, message: m.Request) -> m.Response:
        self.send(message)
        while True:
            frame = await self.receive()
            if isinstance(frame, m.Response) and frame.id == message.id:
                return frame

    async def until_closed(self, timeout_s: float = 5.0) -> list[Any]:
        """Read until the terminal closes the connection, at most ``timeout_s`` in all
        (TimeoutError: still open, e.g. kept alive by its pings); returns the frames read
        meanwhile."""
        start = len(self.frames)
        async with asyncio.timeout(timeout_s):
            with contextlib.suppress(ConnectionError):
                while True:
                    await self.receive(timeout_s)
        return self.frames[start:]


class BridgeEnd:
    """A listener on a free loopback port standing in for the bridge: each connection a
    terminal makes arrives as a :class:`WireBridge` (:meth:`accepted`)."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[WireBridge] = asyncio.Queue()
        self._listener: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> BridgeEnd:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._queue.put(WireBridge(reader, writer))

        self._listener = await asyncio.start_server(accept, "127.0.0.1", 0)
        self.port = self._listener.sockets[0].getsockname()[1]
        return self

    async def accepted(self, timeout_s: float = 5.0) -> WireBridge:
        return await asyncio.wait_for(self._queue.get(), timeout_s)

    async def __aexit__(self, *_: object) -> None:
        assert self._listener is not None
        self._listener.close()
        with contextlib.suppress(Exception):
            await self._listener.wait_closed()


@contextlib.asynccontextmanager
async def wire_session(
    desk: Desk,
    *,
    heartbeat_ms: int = 60_000,
    deadline: bool = False,
    withheld: frozenset[str] = frozenset(),
    **config: Any,
) -> AsyncIterator[tuple[WireBridge, SimTerminal]]:
    """A terminal on ``desk``'s account, connected and past ``ready``; ``heartbeat_ms`` is
    what the bridge's ``welcome`` announces (the bridge side sends no pings by itself);
    ``withheld``: features the EA offers that the welcome does not take."""
    key = new_key()
    async with BridgeEnd() as end:
        terminal = SimTerminal(
            desk.server, TerminalConfig(terminal_id="t1", key=key, login=desk.login, **config)
        )
        await terminal.connect("127.0.0.1", end.port)
        bridge = await end.accepted()
        try:
            hello = bridge.hello = await bridge.receive()
            assert isinstance(hello, m.Hello)
            nonce = new_nonce()
            bridge.send(
                m.Welcome(
                    v=m.PROTOCOL_VERSION,
                    nonce=nonce,
                    proof=bridge_proof(key, "t1", hello.nonce, nonce),
                    session="s1",
                    heartbeat_ms=heartbeat_ms,
                    # "deadline" only when asked: under it the EA pings at once after ``ready``.
                    features=[
                        f
                        for f in hello.features
                        if (deadline or f != m.DEADLINE_FEATURE) and f not in withheld
                    ],
                )
            )
            assert isinstance(await bridge.receive(), m.Auth)
            bridge.seal(key, hello.nonce, nonce)
            bridge.send(m.Ready())
            await asyncio.wait_for(terminal.connected.wait(), 5)
            yield bridge, terminal
        finally:
            terminal.stop()
            bridge.writer.close()
