"""The bridge's order lifecycle: a table-driven state machine (DESIGN §4).

Every status change goes through :func:`transition`; anything not in the table is a bug and
raises :class:`InvalidTransition` instead of being applied.
"""

from __future__ import annotations

import enum
import itertools
import os
import re
import string
import time


class OrderStatus(enum.StrEnum):
    NEW = "new"
    SUBMITTED = "submitted"
    PLACED = "placed"
    FILLED = "filled"
    REJECTED = "rejected"
    UNKNOWN = "unknown"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    NOT_FOUND = "not_found"


class Trigger(enum.StrEnum):
    SEND = "send"  # the frame left the bridge
    REFUSE = "refuse"  # pre-validation or routing refused it before sending
    FILL = "fill"  # the server filled it (market order, or a pending order activated)
    PLACE = "place"  # the server accepted a pending order
    REJECT = "reject"  # the server answered with a definitive rejection
    LOSE = "lose"  # timeout / lost connection / outcome-unknown code after sending
    CANCEL = "cancel"
    EXPIRE = "expire"
    PROVE_ABSENT = "prove_absent"  # resolution proved the order never reached the server
    # A human decided what the bridge could not prove (docs/operations.md, "Overriding an
    # order"); the event's detail names who and why (mtgate.execution.overrides). One trigger
    # per resulting status, because the table maps (status, trigger) to a single status.
    OVERRIDE_FILL = "override_fill"
    OVERRIDE_REJECT = "override_reject"
    OVERRIDE_ABSENT = "override_absent"
    OVERRIDE_CANCEL = "override_cancel"
    RETRY = "retry"  # a new attempt of an order proven absent (mtgate.execution.retries)
    OVERRIDE_RETRY = "override_retry"  # a human forced a new attempt (mtgate.execution.forced)


class OrderAction(enum.StrEnum):
    """What an order does: open (or add to) a position, or close one (docs/schema.md)."""

    OPEN = "open"  # a market or pending order, as placed by the caller
    CLOSE = "close"  # close all or part of ``position_ticket`` (MT5: a deal with ``position``)
    CLOSE_BY = "close_by"  # close ``position_ticket`` by the opposite ``by_ticket``


ACTION_VALUES: dict[OrderAction, str] = {a: a.value for a in OrderAction}
"""Each action's string by dict lookup (``.value`` is a descriptor call: hot path)."""


S, T = OrderStatus, Trigger

TRANSITIONS: dict[tuple[OrderStatus, Trigger], OrderStatus] = {
    (S.NEW, T.SEND): S.SUBMITTED,
    # Refused before any frame left: nothing can exist on the server.
    (S.NEW, T.REFUSE): S.REJECTED,
    (S.SUBMITTED, T.FILL): S.FILLED,
    (S.SUBMITTED, T.PLACE): S.PLACED,
    (S.SUBMITTED, T.REJECT): S.REJECTED,
    (S.SUBMITTED, T.LOSE): S.UNKNOWN,
    (S.PLACED, T.FILL): S.FILLED,
    (S.PLACED, T.CANCEL): S.CANCELLED,
    (S.PLACED, T.EXPIRE): S.EXPIRED,
    # Activation refused by the server (MT5 10041 REJECT_CANCEL) ends a placed order as rejected.
    (S.PLACED, T.REJECT): S.REJECTED,
    (S.UNKNOWN, T.FILL): S.FILLED,
    (S.UNKNOWN, T.PLACE): S.PLACED,
    (S.UNKNOWN, T.REJECT): S.REJECTED,
    (S.UNKNOWN, T.PROVE_ABSENT): S.NOT_FOUND,
    # Resolution may find an order that was placed and already cancelled or expired meanwhile.
    (S.UNKNOWN, T.CANCEL): S.CANCELLED,
    (S.UNKNOWN, T.EXPIRE): S.EXPIRED,
    # Proven absent, and retried at once instead of ending NOT_FOUND: the next attempt is
    # sent (docs/protocol.md §9 rule 4). Absence is proven before; the table cannot know.
    (S.UNKNOWN, T.RETRY): S.SUBMITTED,
    # The one exception to "final stays final": a human forces a new attempt of an order
    # whose every attempt is proven not to have executed (refused with a code that proves
    # it, or proven absent); audited with who and why (mtgate.execution.forced).
    (S.REJECTED, T.OVERRIDE_RETRY): S.SUBMITTED,
    (S.NOT_FOUND, T.OVERRIDE_RETRY): S.SUBMITTED,
    # Manual overrides (mtgate.execution.overrides): a human's evidence settles an order in
    # doubt that lookups could not. A SUBMITTED order only once nothing carries its request
    # any more (checked there: the table cannot know). Final statuses stay final: only a
    # forced attempt (below) leaves one.
    (S.UNKNOWN, T.OVERRIDE_FILL): S.FILLED,  # e.g. its ticket seen in the terminal's history
    (S.UNKNOWN, T.OVERRIDE_REJECT): S.REJECTED,  # e.g. the broker's journal shows a refusal
    (S.UNKNOWN, T.OVERRIDE_ABSENT): S.NOT_FOUND,  # not on the account, checked by hand
    (S.UNKNOWN, T.OVERRIDE_CANCEL): S.CANCELLED,  # placed, then cancelled, seen by hand
    (S.SUBMITTED, T.OVERRIDE_FILL): S.FILLED,
    (S.SUBMITTED, T.OVERRIDE_REJECT): S.REJECTED,
    (S.SUBMITTED, T.OVERRIDE_ABSENT): S.NOT_FOUND,
    # Also the withdrawal of an intent never sent (cancel_intent): CANCELLED, not NOT_FOUND,
    # because no lookup proved anything and nothing may ever try the order again.
    (S.SUBMITTED, T.OVERRIDE_CANCEL): S.CANCELLED,
}

OVERRIDE_TRIGGERS: dict[OrderStatus, Trigger] = {
    S.FILLED: T.OVERRIDE_FILL,
    S.REJECTED: T.OVERRIDE_REJECT,
    S.NOT_FOUND: T.OVERRIDE_ABSENT,
    S.CANCELLED: T.OVERRIDE_CANCEL,
}
"""The trigger of a manual override that ends an order in each status it may be given."""

TERMINAL = frozenset({S.FILLED, S.REJECTED, S.CANCELLED, S.EXPIRED, S.NOT_FOUND})
OPEN_PENDING = frozenset({S.PLACED})


class InvalidTransition(Exception):
    def __init__(self, status: OrderStatus, trigger: Trigger) -> None:
        super().__init__(f"no transition from {status.value!r} on {trigger.value!r}")
        self.status = status
        self.trigger = trigger


def transition(status: OrderStatus, trigger: Trigger) -> OrderStatus:
    try:
        return TRANSITIONS[(status, trigger)]
    except KeyError:
        raise InvalidTransition(status, trigger) from None


CLIENT_ID_MAX = 20
ATTEMPT_MAX = 99
"""Attempts of one order at most (the first included): the suffix ``.2`` .. ``.99``."""
ATTEMPT_ID_MAX = CLIENT_ID_MAX + 3
"""An attempt's id: the client order id, then ``.<attempt>`` from the second attempt on."""
COMMENT_PREFIX = "mg:"
"""Comment prefix that marks an order as placed by the bridge: ``mg:<client order id>``, and
``mg:<client order id>.<n>`` for its n-th attempt (docs/protocol.md §9)."""

_CLIENT_ID_CHARS = frozenset(string.ascii_letters + string.digits + "-_.")
_ATTEMPT_SUFFIX = re.compile(r"\.([2-9]|[1-9][0-9])\Z")
_DIGIT_SUFFIX = re.compile(r"\.[0-9]{1,2}\Z")
CLIENT_ID_PATTERN = r"^(?![A-Za-z0-9._-]*\.[0-9]{1,2}$)[A-Za-z0-9._-]+$"
"""Valid client order ids as a regular expression (:func:`valid_client_id`)."""


def valid_client_id(value: str) -> bool:
    """1-20 characters of ``[A-Za-z0-9._-]``, not ending in ``.`` and one or two digits: that
    suffix names an attempt (``mg:<id>.2``), and an id ending in it could not be told from
    another id's attempt."""
    return (
        0 < len(value) <= CLIENT_ID_MAX
        and set(value) <= _CLIENT_ID_CHARS
        and _DIGIT_SUFFIX.search(value) is None
    )


def attempt_id(client_id: str, attempt: int) -> str:
    """The id an attempt's comment carries: the client order id for the first, then
    ``<id>.2`` .. ``<id>.99``."""
    if not 1 <= attempt <= ATTEMPT_MAX:
        raise ValueError(f"attempt {attempt} is not in 1..{ATTEMPT_MAX}")
    return client_id if attempt == 1 else f"{client_id}.{attempt}"


def split_attempt(run: str) -> tuple[str, int]:
    """``(client order id, attempt)`` of an id read from a comment."""
    found = _ATTEMPT_SUFFIX.search(run)
    if found is None or found.start() == 0:
        return run, 1
    return run[: found.start()], int(found.group(1))


_sequence = itertools.count(int.from_bytes(os.urandom(2), "big"))


def new_client_id(now_ns: int | None = None) -> str:
    """16 hex characters: the time in µs (48 bits) then a process-wide sequence (16 bits).

    Unique within a bridge process unless 65,536 ids are made in one microsecond, sortable by
    creation time, and short enough to survive servers that cut comments to 16 characters
    after the ``mg:`` prefix is dropped."""
    t_us = (now_ns if now_ns is not None else time.time_ns()) // 1000
    return f"{t_us & 0xFFFF_FFFF_FFFF:012X}{next(_sequence) & 0xFFFF:04X}"


def new_order_id() -> str:
    """A random (version 4) UUID in its canonical form, as ``str(uuid.uuid4())`` makes it at
    a sixth of the cost (the ``uuid.UUID`` object is made and checked for nothing)."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def comment_for(client_id: str, attempt: int = 1) -> str:
    return COMMENT_PREFIX + attempt_id(client_id, attempt)


def comment_id(comment: str) -> str | None:
    """The id a comment carries as an EA reads it (docs/protocol.md §9): after the ``mg:``
    prefix, the longest run of id characters, at most :data:`ATTEMPT_ID_MAX`. Servers append
    markers such as ``[sl]`` or replace comments on partial closes, so only the prefix and
    the id's own characters are trusted."""
    found = _CLIENT_ID_IN_COMMENT.match(comment)
    return None if found is None else found.group(1)


def client_id_from_comment(comment: str) -> str | None:
    """The client order id of the order a comment belongs to, whichever attempt wrote it."""
    run = comment_id(comment)
    return None if run is None else split_attempt(run)[0]


_CLIENT_ID_IN_COMMENT = re.compile(
    rf"{re.escape(COMMENT_PREFIX)}([A-Za-z0-9._-]{{1,{ATTEMPT_ID_MAX}}})"
)
