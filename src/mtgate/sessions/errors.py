"""What a request to a terminal can end in, besides a result."""

from __future__ import annotations


class SessionError(Exception):
    """Base of the failures of a request to a terminal."""


class SessionClosed(SessionError):
    """The session closed while the request was in flight (or before it was sent)."""

    def __init__(self, reason: str, *, sent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sent = sent


class TradeWithdrawn(SessionError):
    """A trade the bridge held in its queue for the terminal and never wrote: it could not
    have finished before its deadline behind the trades ahead of it (or the queue was full).
    Never sent, so never executed: a proof of absence in itself."""

    def __init__(self, reason: str, *, wait_ms: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait_ms = wait_ms
        """How long the trades ahead of it were expected to take."""


class RequestTimeout(SessionError):
    """No answer within the request's deadline. The frame was sent: outcome unknown."""

    def __init__(self, op: str, timeout_s: float) -> None:
        super().__init__(f"{op}: no answer within {timeout_s:g} s")
        self.op = op
        self.timeout_s = timeout_s


class TerminalRejected(SessionError):
    """The terminal answered ``ok: false`` with the platform's own code."""

    def __init__(
        self, code: int, name: str, message: str, bid: float = 0.0, ask: float = 0.0
    ) -> None:
        super().__init__(f"{code} {name}: {message}")
        self.code = code
        self.name = name
        self.message = message
        self.bid = bid
        self.ask = ask


class NotRoutable(SessionError):
    """No ready terminal serves the account; nothing was sent. ``rule`` names why for the
    API's refusal (``not_routable``, or ``failover_pending`` while orders another terminal
    carried are still unknown)."""

    def __init__(self, message: str, *, rule: str = "not_routable") -> None:
        super().__init__(message)
        self.rule = rule


class IdentityMismatch(Exception):
    """The terminal reports another account than the one its ``hello`` claimed (and its key
    is bound to): it is not let trade."""
