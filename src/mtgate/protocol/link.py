"""A framed asyncio protocol: bytes in, frame bodies out. Shared by both ends of the wire.

After the handshake both ends :meth:`FramedLink.seal` the link (docs/protocol.md §3.5): every
frame written is sealed (MAC and sequence number), every frame read is opened, and one that does
not verify reaches the handler as a protocol error (``bad_mac`` / ``out_of_order``), never as a
frame.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Final, Protocol, cast

from mtgate.protocol.auth import SEAL_BYTES, FrameAuthError, FrameSeal
from mtgate.protocol.codec import HEADER_BYTES, FrameDecoder, ProtocolError, decode_for_terminal
from mtgate.protocol.messages import MAX_FRAME_BYTES, Bye

_LEN: Final = struct.Struct(">I")


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
        self._tx: FrameSeal | None = None
        self._rx: FrameSeal | None = None
        self._plain_bye = False
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
                if self._rx is not None:
                    body = self._open(body)
                handler.on_frame(body)
            if frames and self._decoder.failed:
                self._decoder.feed(b"")
        except ProtocolError as exc:
            handler.on_protocol_error(exc)
        finally:
            self._uncork()

    def seal(self, tx: FrameSeal, rx: FrameSeal, *, plain_bye: bool = False) -> None:
        """Seal every frame written from now on with ``tx``, open every frame read with ``rx``.

        ``plain_bye``: the terminal's side, just after its ``auth``: until the first sealed
        frame arrives, an unsealed ``bye`` is still taken (the bridge's answer to a proof it
        refused has no session key to seal with); it can only end the session."""
        self._tx, self._rx, self._plain_bye = tx, rx, plain_bye

    @property
    def sealed(self) -> bool:
        return self._tx is not None

    def _open(self, body: bytes) -> bytes:
        rx = self._rx
        assert rx is not None
        try:
            opened = rx.open(body)
        except FrameAuthError as exc:
            if self._plain_bye and body[:1] == b"{" and _is_bye(body):
                return body
            raise ProtocolError(exc.code, str(exc)) from None
        self._plain_bye = False
        return opened

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
        """Write one encoded frame (header and body), sealed once the link is.

        Raises:
            ProtocolError: ``frame_too_large``, the sealed body over the frame limit.
        """
        self.write_wire(self.wire_frame(frame))

    def wire_frame(self, frame: bytes) -> bytes:
        """``frame`` as it goes on the wire: sealed once the link is, taking the next number.

        Raises:
            ProtocolError: ``frame_too_large``, the sealed body over the frame limit (before
                it takes a number).
        """
        if self._tx is None:
            return frame
        size = len(frame) - HEADER_BYTES + SEAL_BYTES
        if size > MAX_FRAME_BYTES:
            raise ProtocolError("frame_too_large", f"{size} bytes sealed > {MAX_FRAME_BYTES}")
        sealed = self._tx.seal(frame[HEADER_BYTES:])
        return _LEN.pack(len(sealed)) + sealed

    def write_wire(self, data: bytes) -> None:
        """Write bytes already made for the wire (:meth:`wire_frame`), as they are."""
        if self._corked:
            self._out.append(data)
        elif self._transport is not None:
            self._transport.write(data)

    def close(self) -> None:
        """Close after the frames already written (a ``bye`` included) have left."""
        if self._transport is not None:
            self._uncork()
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


def _is_bye(body: bytes) -> bool:
    """The body decodes, as the terminal side decodes every frame, to a ``bye``: one parser
    decides (a check of ``type`` alone could read a duplicated member otherwise than the
    decoder the frame then goes to)."""
    try:
        return isinstance(decode_for_terminal(body), Bye)
    except ProtocolError:
        return False
