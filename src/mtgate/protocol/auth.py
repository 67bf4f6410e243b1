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
