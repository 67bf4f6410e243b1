"""Framing and message codec: pure functions over bytes (docs/protocol.md §Framing).

A frame is a 4-byte big-endian length followed by that many bytes of one UTF-8 JSON object.
"""

from __future__ import annotations

import struct
from typing import Any, Final, TypeVar

import msgspec

from mtgate.protocol.messages import (
    EVENT_TYPES,
    MAX_FRAME_BYTES,
    RESULT_TYPES,
    BridgeInbound,
    Message,
    Request,
    TerminalInbound,
)

_LEN: Final = struct.Struct(">I")
HEADER_BYTES: Final = _LEN.size

T = TypeVar("T")


class ProtocolError(Exception):
    """The peer broke the protocol. ``code`` is the protocol-level error name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


_encoder = msgspec.json.Encoder()


def encode(message: Message, limit: int = MAX_FRAME_BYTES) -> bytes:
    """One complete frame (header and body) for ``message``; ``limit``: the largest body
    (``MAX_FRAME_BYTES`` less the seal for a frame that will be sealed, docs/protocol.md §3.5)."""
    body = _encoder.encode(message)
    if len(body) > limit:
        raise ProtocolError("frame_too_large", f"{len(body)} bytes > {limit}")
    return _LEN.pack(len(body)) + body


def encode_payload(value: Any) -> msgspec.Raw:
    """Pre-encode a result or event payload so it is embedded as is."""
    return msgspec.Raw(_encoder.encode(value))


class FrameDecoder:
    """Splits a byte stream into frame bodies. Raises on a frame over the size limit before
    buffering it, so a hostile length cannot make the reader allocate."""

    __slots__ = ("_buf", "_error", "_max")

    def __init__(self, max_frame: int = MAX_FRAME_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_frame
        self._error: ProtocolError | None = None

    def feed(self, data: bytes) -> list[bytes]:
        """Complete frame bodies in ``data`` (with what was buffered). Frames that precede an
        oversize header are returned first; the error is raised by the next call, so a good
        answer that shares a chunk with garbage is not lost."""
        if self._error is not None:
            raise self._error
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        pos = 0
        end = len(buf)
        while end - pos >= HEADER_BYTES:
            (size,) = _LEN.unpack_from(buf, pos)
            if size > self._max:
                self._error = ProtocolError(
                    "frame_too_large", f"announced {size} bytes > {self._max}"
                )
                del buf[:]
                if frames:
                    return frames
                raise self._error
            if end - pos - HEADER_BYTES < size:
                break
            start = pos + HEADER_BYTES
            frames.append(bytes(buf[start : start + size]))
            pos = start + size
        if pos:
            del buf[:pos]
        return frames

    @property
    def max_frame(self) -> int:
        return self._max

    @max_frame.setter
    def max_frame(self, value: int) -> None:
        """Frames announced above this are refused from now on (a smaller limit before the
        peer has authenticated)."""
        self._max = value

    @property
    def failed(self) -> bool:
        return self._error is not None

    @property
    def buffered(self) -> int:
        return len(self._buf)


_bridge_decoder = msgspec.json.Decoder(BridgeInbound)
_terminal_decoder = msgspec.json.Decoder(TerminalInbound)


def _decode(decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise ProtocolError("invalid_message", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ProtocolError("bad_json", str(exc)) from None
    except UnicodeDecodeError as exc:
        raise ProtocolError("bad_json", f"invalid UTF-8: {exc.reason}") from None
    except RecursionError:
        raise ProtocolError("bad_json", "JSON nested too deeply") from None


def decode_for_bridge(body: bytes) -> BridgeInbound:
    """A frame body received by the bridge from a terminal."""
    result: BridgeInbound = _decode(_bridge_decoder, body)
    return result


def decode_for_terminal(body: bytes) -> TerminalInbound:
    """A frame body received by a terminal (EA or simulator) from the bridge."""
    result: TerminalInbound = _decode(_terminal_decoder, body)
    return result


_result_decoders: dict[type[Request], msgspec.json.Decoder[Any]] = {
    op: msgspec.json.Decoder(t) for op, t in RESULT_TYPES.items()
}
_event_decoders: dict[str, msgspec.json.Decoder[Any]] = {
    name: msgspec.json.Decoder(t) for name, t in EVENT_TYPES.items()
}


def decode_result(op: type[Request], raw: msgspec.Raw) -> Any:
    """The typed result of a response to a request of type ``op``."""
    return _decode(_result_decoders[op], raw)


def decode_event(name: str, raw: msgspec.Raw) -> Any:
    decoder = _event_decoders.get(name)
    if decoder is None:
        raise ProtocolError("unknown_event", f"event {name!r} is not part of protocol v1")
    return _decode(decoder, raw)


def to_builtins(value: Any) -> Any:
    return msgspec.to_builtins(value)
