"""Reading a terminal's answer to a trade: success, a no-op, a refusal, or no answer at all.

The platform's code decides (docs/protocol.md §4.2, :mod:`mtgate.domain.codes`), never the
``ok`` flag alone: an EA may answer a fill as an error (``retcode != DONE`` for 10010), or a
requote as a success, and either must end in resolution, not in a final status the terminal
did not mean.
"""

from __future__ import annotations

from mtgate.domain.codes import Classification, is_ok, lookup
from mtgate.domain.enums import Platform
from mtgate.execution.requests import OrderError
from mtgate.protocol import messages as m
from mtgate.sessions.errors import RequestTimeout, SessionClosed, TerminalRejected, TradeWithdrawn
from mtgate.sessions.session import TerminalSession

POSITION_CLOSED_MT5 = 10036
REJECTION_NAME_MAX = 64
"""The journal's ``rejection_name`` column; the terminal's text is cut to it."""
REJECTION_REASON_MAX = 1000
"""Of a terminal's free-text message kept in the journal."""


def position_gone(session: TerminalSession, code: int) -> bool:
    """MT5 10036 POSITION_CLOSED: "for a close intent: done" (docs/protocol.md §5.2). MT4 has
    no such code (its 4108 also means an unknown ticket)."""
    return session.platform == Platform.MT5 and code == POSITION_CLOSED_MT5


def code_is_ok(session: TerminalSession, code: int) -> bool:
    """Whether ``code`` is a success or no-op of the session's platform (docs/protocol.md §4.2)."""
    return is_ok(session.platform, code)


def rejection(session: TerminalSession, exc: TerminalRejected) -> OrderError | None:
    """The terminal's refusal of a change as an error; None for a no-op answered as an error
    (MT4 1, MT5 10025: nothing changed, which is what was asked)."""
    entry = lookup(session.platform, exc.code)
    if entry.classification == Classification.OK:
        return None
    return OrderError(
        source="terminal",
        message=exc.message,
        code=exc.code,
        name=exc.name,
        classification=entry.classification,
    )


def link_lost(session: TerminalSession, exc: Exception) -> OrderError:
    """A change sent without an answer. A trade timeout also ends the session: a terminal that
    does not answer a trade in time is not healthy."""
    if isinstance(exc, RequestTimeout):
        session.close(f"trade request timed out ({exc})", code="trade_timeout")
    return OrderError(source="link", message=str(exc), classification=Classification.UNKNOWN)


def not_sent(exc: SessionClosed | TradeWithdrawn) -> OrderError:
    """A change whose frame never left (the trade queue withdrew it, or the session closed
    before it was written): nothing changed, and it may be asked again."""
    busy = isinstance(exc, TradeWithdrawn)
    return OrderError(
        source="bridge",
        message=f"not sent: {exc}",
        field="account",
        rule="terminal_busy" if busy else "not_routable",
        classification=Classification.RETRYABLE,
    )


def unsent(exc: Exception) -> bool:
    """Whether a request's failure proves its frame never left."""
    return isinstance(exc, TradeWithdrawn) or (isinstance(exc, SessionClosed) and not exc.sent)


def contradicts_code(session: TerminalSession, result: m.TradeResult) -> OrderError | None:
    """An ``ok: true`` answer whose code is not a success (an EA bug): the outcome is not
    known, whatever the answer says (docs/protocol.md §4.2)."""
    if code_is_ok(session, result.code):
        return None
    message = f"the terminal answered ok with code {result.code}"
    session.close(message, code="invalid_message")
    return OrderError(source="link", message=message, classification=Classification.UNKNOWN)
