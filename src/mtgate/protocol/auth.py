"""Mutual HMAC-SHA256 authentication of the handshake (docs/protocol.md §Handshake)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

NONCE_BYTES = 16
MIN_KEY_BYTES = 32


class Secret:
    """A key whose ``repr`` never shows it, so it cannot leak into a log line."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = value

    @classmethod
    def from_hex(cls, text: str) -> Secret:
        return cls(bytes.fromhex(text))

    def reveal(self) -> bytes:
        return self._value

    def __repr__(self) -> str:
        return "Secret(****)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)


def new_nonce() -> str:
    return secrets.token_hex(NONCE_BYTES)


def new_key() -> Secret:
    return Secret(secrets.token_bytes(MIN_KEY_BYTES))


def _proof(role: str, key: Secret, terminal_id: str, ea_nonce: str, bridge_nonce: str) -> str:
    text = f"mtgate/1 {role}|{terminal_id}|{ea_nonce}|{bridge_nonce}".encode()
    return hmac.new(key.reveal(), text, hashlib.sha256).hexdigest()


def bridge_proof(key: Secret, terminal_id: str, ea_nonce: str, bridge_nonce: str) -> str:
    return _proof("bridge", key, terminal_id, ea_nonce, bridge_nonce)


def ea_proof(key: Secret, terminal_id: str, ea_nonce: str, bridge_nonce: str) -> str:
    return _proof("ea", key, terminal_id, ea_nonce, bridge_nonce)


def proofs_match(expected: str, received: str) -> bool:
    return hmac.compare_digest(expected.encode(), received.encode())


_NONCE = re.compile(rf"[0-9a-f]{{{2 * NONCE_BYTES}}}")


def valid_nonce(nonce: str) -> bool:
    """32 lowercase hex characters (16 bytes), nothing else."""
    return _NONCE.fullmatch(nonce) is not None


# --- frame authentication (protocol 2, docs/protocol.md §3.5) ------------------------------

MAC_HEX = 64
"""A frame's MAC: HMAC-SHA256, as lowercase hex."""
SEQ_HEX = 16
"""A frame's sequence number: 64 bits, as lowercase hex."""
SEAL_BYTES = MAC_HEX + SEQ_HEX
"""What sealing adds to a frame's body: the MAC, then the sequence number, then the JSON."""

TO_EA = "mtgate/2 bridge>ea|"
TO_BRIDGE = "mtgate/2 ea>bridge|"
"""Direction labels: a frame sealed for one direction never verifies in the other."""

_SEQ_MAX = (1 << 64) - 1
_HEX_DIGITS = frozenset(b"0123456789abcdef")


def session_key(
    key: Secret, terminal_id: str, ea_nonce: str, bridge_nonce: str, hello: bytes, welcome: bytes
) -> bytes:
    """The session's frame key: HMAC-SHA256 under the terminal key, labelled apart from both
    proofs, over the terminal id, both nonces (fresh on each side for each connection) and the
    SHA-256 of the ``hello`` and ``welcome`` bodies exactly as they crossed the wire, so a
    handshake changed on the path (a feature taken out, a heartbeat changed) gives the two
    sides different keys and the first sealed frame ends the session."""
    digests = f"{hashlib.sha256(hello).hexdigest()}|{hashlib.sha256(welcome).hexdigest()}"
    text = f"mtgate/2 session|{terminal_id}|{ea_nonce}|{bridge_nonce}|{digests}".encode()
    return hmac.new(key.reveal(), text, hashlib.sha256).digest()


class FrameAuthError(ValueError):
    """A sealed frame that does not verify. ``code`` is the ``bye`` code: ``bad_mac`` (the MAC,
    or the frame's form) or ``out_of_order`` (a sequence number other than the next)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class FrameSeal:
    """One direction of a session's frames: :meth:`seal` on the sending side, :meth:`open` on
    the receiving side, each keeping the next sequence number (the first sealed frame is 0).

    ``MAC = HMAC-SHA256(session_key, label || seq_hex || json)``, the body on the wire
    ``mac_hex || seq_hex || json``."""

    __slots__ = ("_base", "_label", "seq")

    def __init__(self, key: bytes, label: str) -> None:
        base = hmac.new(key, label.encode(), hashlib.sha256)
        self._base = base
        self._label = label
        self.seq = 0

    def _mac(self, seq_hex: bytes, body: bytes | memoryview) -> bytes:
        h = self._base.copy()
        h.update(seq_hex)
        h.update(body)
        return h.hexdigest().encode()

    def seal(self, body: bytes) -> bytes:
        """The sealed body of the next frame sent."""
        seq = self.seq
        if seq > _SEQ_MAX:
            raise FrameAuthError("out_of_order", "sequence numbers exhausted")
        self.seq = seq + 1
        seq_hex = b"%016x" % seq
        return self._mac(seq_hex, body) + seq_hex + body

    def open(self, sealed: bytes) -> bytes:
        """The JSON body of the next frame received, once its MAC and number are checked.

        Raises:
            FrameAuthError: not a sealed body, a wrong MAC, or another number than the next.
        """
        if len(sealed) < SEAL_BYTES:
            raise FrameAuthError("bad_mac", f"frame of {len(sealed)} bytes carries no seal")
        mac, seq_hex = sealed[:MAC_HEX], sealed[MAC_HEX:SEAL_BYTES]
        if not _HEX_DIGITS.issuperset(seq_hex):
            raise FrameAuthError("bad_mac", "frame carries no seal")
        body = memoryview(sealed)[SEAL_BYTES:]
        if not hmac.compare_digest(self._mac(seq_hex, body), mac):
            raise FrameAuthError("bad_mac", "frame MAC does not verify")
        seq = int(seq_hex, 16)
        if seq != self.seq:
            raise FrameAuthError("out_of_order", f"frame number {seq} where {self.seq} was next")
        self.seq = seq + 1
        return bytes(body)


def prf_nonce(key: Secret, terminal_id: str, counter: int, entropy: str = "") -> str:
    """A terminal-side nonce without a CSPRNG (MQL has none): the first 16 bytes of
    HMAC-SHA256 under the terminal key over a counter the EA persists and increments before
    each use, and whatever changing values it has (``entropy``: its microsecond counter, local
    and GMT time), as 32 lowercase hex chars. Unpredictable without the key, and never repeated
    while the counter is not (docs/protocol.md §3.2)."""
    if not 0 <= counter < 1 << 64:
        raise ValueError(f"counter {counter} is outside 0..2**64-1")
    text = f"mtgate/2 nonce|{terminal_id}|{counter}|{entropy}".encode()
    return hmac.new(key.reveal(), text, hashlib.sha256).hexdigest()[: 2 * NONCE_BYTES]
