"""Bearer tokens with scopes, compared in constant time.

Scopes: ``read`` (queries), ``trade`` (orders and positions; implies ``read``), ``admin``
(overrides, terminals; implies both). A token is known by its SHA-256 only: the bridge keeps
no token text after start, and every comparison runs over every token, so neither the time
taken nor a log line tells a caller how close its guess was.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass


class Scope(enum.StrEnum):
    READ = "read"
    TRADE = "trade"
    ADMIN = "admin"


_IMPLIED = {
    Scope.READ: frozenset({Scope.READ}),
    Scope.TRADE: frozenset({Scope.READ, Scope.TRADE}),
    Scope.ADMIN: frozenset(Scope),
}

MIN_TOKEN_CHARS = 32
"""A token shorter than this is refused at start (a guessable token is no authentication)."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made a request: the token's configured name and what it may do."""

    name: str
    scopes: frozenset[Scope]


class Tokens:
    """The configured tokens: ``(name, token text, scopes)``."""

    def __init__(self, entries: Iterable[tuple[str, str, Iterable[Scope]]]) -> None:
        self._entries: list[tuple[bytes, Caller]] = []
        for name, token, scopes in entries:
            if len(token) < MIN_TOKEN_CHARS:
                raise ValueError(f"token {name!r} has fewer than {MIN_TOKEN_CHARS} characters")
            granted = frozenset().union(*(_IMPLIED[s] for s in scopes))
            self._entries.append((_digest(token), Caller(name, granted)))

    def __len__(self) -> int:
        return len(self._entries)

    def caller(self, authorization: str | None) -> Caller | None:
        """The caller an ``Authorization: Bearer <token>`` header names; None when it names
        none (missing, malformed or unknown: the same answer for each)."""
        scheme, _, token = (authorization or "").partition(" ")
        digest = _digest(token.strip() if scheme.lower() == "bearer" else "")
        found: Caller | None = None
        for known, caller in self._entries:  # every entry, whatever matches
            if hmac.compare_digest(known, digest):
                found = caller
        return found


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
