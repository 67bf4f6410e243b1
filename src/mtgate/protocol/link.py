"""A framed asyncio protocol: bytes in, frame bodies out. Shared by both ends of the wire."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol, cast

from mtgate.protocol.codec import FrameDecoder, ProtocolError


class FrameHandler(Protocol):
    def on_connected(self, link: FramedLink) -> None: ...
    def on_frame(self, body: bytes) -> None: ...
    def on_protocol_error(self, error: ProtocolError) -> None: ...
    def on_closed(self, exc: Exception | None) -> None: ...


class FramedLink(asyncio.Protocol):
    """The socket edge. Frame parsing is the pure :class:`FrameDecoder`; everything the
    frames mean is the handler's business."""

    def __init__(self, handler_factory: Callable[[], FrameHandler]) -> None:
        self._handler = handler_factory()
        self._decoder = FrameDecoder()
        self._transport: asyncio.Transport | None = None
        self._corked = False
        self._out: list[bytes] = []
        self.peer: str = "?"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = f"{peer[0]}:{peer[1]}"
        self._handler.on_connected(self)

    def data_received(self, data: bytes) -> None:
        # Frames written while handling a chunk (answers, events, pongs) leave in one write:
        # one system call, and the peer wakes once, instead of once per frame.
        handler = self._handler
        self._corked = True
        try:
            frames = self._decoder.feed(data)
            for body in frames:
                if self._transport is None or self._transport.is_closing():
                    return
                handler.on_frame(body)
            if frames and self._decoder.failed:
                self._decoder.feed(b"")
        except ProtocolError as exc:
            handler.on_protocol_error(exc)
        finally:
            self._uncork()

    def flush(self) -> None:
        """Send what is held back now (before a deliberate abort, for instance)."""
        corked = self._corked
        self._uncork()
        self._corked = corked

    def _uncork(self) -> None:
        self._corked = False
        if self._out:
            out = self._out[0] if len(self._out) == 1 else b"".join(self._out)
            self._out.clear()
            if self._transport is not None:
                self._transport.write(out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._handler.on_closed(exc)

    @property
    def max_frame(self) -> int:
        return self._decoder.max_frame

    @max_frame.setter
    def max_frame(self, value: int) -> None:
        self._decoder.max_frame = value

    @property
    def open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def write(self, frame: bytes) -> None:
        if self._corked:
            self._out.append(frame)
        elif self._transport is not None:
            self._transport.write(frame)

    def close(self) -> None:
        """Close after the frames already written (a ``bye`` included) have left."""
        if self._transport is not None:
            self._uncork()
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
