"""Frame authentication (docs/protocol.md §3.5): the session key, the seal, and every way a
frame fails to open. The vectors are the protocol's, checked against OpenSSL when written."""

from __future__ import annotations

import struct

import pytest

from mtgate.protocol import auth, codec, vectors
from mtgate.protocol import messages as m
from mtgate.protocol.link import FramedLink

KEY = auth.Secret.from_hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
EA_NONCE, BRIDGE_NONCE = "3f9c0a7d52e14b8c9a6f0e1d2c3b4a59", "b7e2c41f09d83a6e5f1c2b3a4d5e6f70"
_EXCHANGE = vectors.build()["exchange"]
HELLO, WELCOME = (_EXCHANGE[i]["json"].encode() for i in (0, 1))
"""The §14 example's handshake bodies, which the session key covers."""
SESSION_KEY = "3eaa9d1984f1ff01d5401fff0263558a2a50dc908a8c52df0b78313c35d7cf40"
READY_SEALED = (
    b"30f6ab3f2ded0fbbcc319ae93c64072e200d63d6a623196e1a70ace1142ad367"
    b"0000000000000000"
    b'{"type":"ready"}'
)
PING_SEALED = (
    b"288e7bd503dac06e4e88ee95134ee78a1ca333b35156f2ad1d6ebf0b88693c1d"
    b"0000000000000000"
    b'{"type":"ping","t_ms":1700000000000}'
)


def _key() -> bytes:
    return auth.session_key(KEY, "ftmo-01", EA_NONCE, BRIDGE_NONCE, HELLO, WELCOME)


def test_the_protocol_vectors() -> None:
    assert _key().hex() == SESSION_KEY
    assert auth.FrameSeal(_key(), auth.TO_EA).seal(b'{"type":"ready"}') == READY_SEALED
    ping = b'{"type":"ping","t_ms":1700000000000}'
    assert auth.FrameSeal(_key(), auth.TO_BRIDGE).seal(ping) == PING_SEALED


def test_frames_open_in_order_and_count_per_direction() -> None:
    tx, rx = auth.FrameSeal(_key(), auth.TO_EA), auth.FrameSeal(_key(), auth.TO_EA)
    bodies = [b'{"type":"ready"}', b'{"type":"ping","t_ms":1}', b"{}"]
    for i, body in enumerate(bodies):
        sealed = tx.seal(body)
        assert sealed[auth.MAC_HEX : auth.SEAL_BYTES] == b"%016x" % i
        assert rx.open(sealed) == body
    assert (tx.seq, rx.seq) == (3, 3)


def _fails(rx: auth.FrameSeal, sealed: bytes, code: str) -> None:
    before = rx.seq
    with pytest.raises(auth.FrameAuthError) as info:
        rx.open(sealed)
    assert info.value.code == code
    assert rx.seq == before  # a frame that fails takes no number


def test_a_changed_byte_anywhere_fails_the_mac() -> None:
    for i in range(len(READY_SEALED)):
        forged = bytearray(READY_SEALED)
        forged[i] ^= 0x01
        _fails(auth.FrameSeal(_key(), auth.TO_EA), bytes(forged), "bad_mac")


def test_a_frame_for_the_other_direction_or_another_session_fails() -> None:
    _fails(auth.FrameSeal(_key(), auth.TO_BRIDGE), READY_SEALED, "bad_mac")
    other = auth.session_key(KEY, "ftmo-01", EA_NONCE, auth.new_nonce(), HELLO, WELCOME)
    _fails(auth.FrameSeal(other, auth.TO_EA), READY_SEALED, "bad_mac")


def test_a_handshake_changed_on_the_path_gives_another_key() -> None:
    """A feature taken out of the offer, or the welcome's heartbeat changed: the two sides
    derive different keys, so the first sealed frame ends the session."""
    stripped = HELLO.replace(b'"nonce"', b'"features":[],"nonce"')
    slower = WELCOME.replace(b'"heartbeat_ms":1000', b'"heartbeat_ms":60000')
    for hello, welcome in ((stripped, WELCOME), (HELLO, slower)):
        changed = auth.session_key(KEY, "ftmo-01", EA_NONCE, BRIDGE_NONCE, hello, welcome)
        assert changed != _key()
        _fails(auth.FrameSeal(changed, auth.TO_EA), READY_SEALED, "bad_mac")


def test_an_unsealed_short_or_malformed_frame_fails() -> None:
    rx = auth.FrameSeal(_key(), auth.TO_EA)
    _fails(rx, b'{"type":"ready"}', "bad_mac")
    _fails(rx, b"", "bad_mac")
    _fails(rx, READY_SEALED[: auth.SEAL_BYTES - 1], "bad_mac")
    upper = READY_SEALED[: auth.MAC_HEX] + b"000000000000000A" + READY_SEALED[auth.SEAL_BYTES :]
    _fails(rx, upper, "bad_mac")


def test_a_replayed_or_skipped_frame_is_out_of_order() -> None:
    tx, rx = auth.FrameSeal(_key(), auth.TO_EA), auth.FrameSeal(_key(), auth.TO_EA)
    first, second, third = (tx.seal(b'{"n":%d}' % i) for i in range(3))
    assert rx.open(first) == b'{"n":0}'
    _fails(rx, first, "out_of_order")  # replayed
    _fails(rx, third, "out_of_order")  # one lost in between
    assert rx.open(second) == b'{"n":1}'


def test_prf_nonces_are_nonces_and_differ_by_counter() -> None:
    nonces = {auth.prf_nonce(KEY, "ftmo-01", n, "t=1") for n in range(100)}
    assert len(nonces) == 100 and all(auth.valid_nonce(x) for x in nonces)
    assert auth.prf_nonce(KEY, "ftmo-01", 7) != auth.prf_nonce(KEY, "ftmo-02", 7)
    with pytest.raises(ValueError, match="counter"):
        auth.prf_nonce(KEY, "ftmo-01", -1)


class _Handler:
    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.errors: list[str] = []

    def on_connected(self, link: object) -> None: ...

    def on_frame(self, body: bytes) -> None:
        self.frames.append(body)

    def on_protocol_error(self, error: codec.ProtocolError) -> None:
        self.errors.append(error.code)

    def on_closed(self, exc: Exception | None) -> None: ...


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def get_extra_info(self, name: str) -> None:
        return None

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        self.written.append(data)


def _link(*, plain_bye: bool) -> tuple[FramedLink, _Handler, _Transport, auth.FrameSeal]:
    handler, transport = _Handler(), _Transport()
    link = FramedLink(lambda: handler)
    link.connection_made(transport)  # type: ignore[arg-type]
    link.seal(
        auth.FrameSeal(_key(), auth.TO_BRIDGE), auth.FrameSeal(_key(), auth.TO_EA),
        plain_bye=plain_bye,
    )  # fmt: skip
    return link, handler, transport, auth.FrameSeal(_key(), auth.TO_EA)


def _wire(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def test_the_terminal_takes_one_unsealed_bye_before_its_first_sealed_frame() -> None:
    bye = codec.encode(m.Bye(reason="terminal failed to prove its key", code="auth_failed"))
    link, handler, _, _ = _link(plain_bye=True)
    link.data_received(bye)
    assert handler.frames == [bye[codec.HEADER_BYTES :]] and handler.errors == []
    link, handler, _, peer = _link(plain_bye=True)
    link.data_received(_wire(peer.seal(b'{"type":"ready"}')) + bye)  # too late now
    assert handler.frames == [b'{"type":"ready"}'] and handler.errors == ["bad_mac"]


def test_only_a_bye_passes_unsealed_and_only_on_the_terminal_side() -> None:
    ready = codec.encode(m.Ready())
    link, handler, _, _ = _link(plain_bye=True)
    link.data_received(ready)
    assert handler.frames == [] and handler.errors == ["bad_mac"]
    bye = codec.encode(m.Bye(reason="x", code="closed"))
    link, handler, _, _ = _link(plain_bye=False)
    link.data_received(bye)
    assert handler.frames == [] and handler.errors == ["bad_mac"]


def test_a_frame_too_large_once_sealed_is_refused_before_it_takes_a_number() -> None:
    link, _, transport, _ = _link(plain_bye=False)
    body = b'{"type":"x","pad":"' + b"a" * (m.MAX_FRAME_BYTES - 40) + b'"}'
    with pytest.raises(codec.ProtocolError, match="frame_too_large"):
        link.write(_wire(body))
    link.write(codec.encode(m.Ready()))
    [sent] = transport.written
    opened = auth.FrameSeal(_key(), auth.TO_BRIDGE).open(sent[codec.HEADER_BYTES :])
    assert opened == b'{"type":"ready"}'  # number 0: the refused frame took none


def test_a_frame_that_is_a_bye_only_to_a_lax_parser_is_refused() -> None:
    """``type`` twice: a check of the last one would see a bye, the decoder refuses it; one
    parser decides, so it is refused as unsealed."""
    body = b'{"type":"ready","reason":"x","type":"bye"}'
    link, handler, _, _ = _link(plain_bye=True)
    link.data_received(_wire(body))
    assert handler.frames == [] and handler.errors == ["bad_mac"]
